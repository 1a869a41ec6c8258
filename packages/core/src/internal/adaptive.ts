/**
 * The adaptive limiter's decisions, as pure steps on one key's shared state.
 * The memory store runs them as written; `@sluice/redis` runs the same steps
 * in Lua, one script per decision, on Redis time. Keep the two in step: the
 * shared tests run both against the same scenarios.
 *
 * What it learns, and from what:
 *
 * - **The capacity, at each 429.** Successes are counted over a memory of
 *   5 to 10 s (the count halves with its span). The rate accepted over that
 *   span, less the time paused in it, is a lower bound of the server's
 *   capacity (low when we sent below it for most of the span); the
 *   rate that met the 429 is an upper bound (high when a burst hid the
 *   overshoot for a while). Their geometric mean is the estimate, at most a
 *   halving. A span under a second says nothing of a rate (a window accepts
 *   its whole count at any rate); when it held at least `WINDOW_COUNT_MIN`
 *   successes and ended in a `Retry-After`, the count over the longer of the
 *   span and the wait is the estimate, at least `margin` down and at most
 *   `penalty` down (a halving when the count is under a third of the rate;
 *   when the count is the last one's again, a window's, as deep as the count
 *   says but at most to a quarter, and when the count itself is taken the
 *   next probe waits 12 s); otherwise the rate drops by `penalty`. A second
 *   and more with nobody reserving restarts the count: idle time is not a
 *   low rate accepted. Whatever the server's algorithm (token bucket of any
 *   burst, fixed or sliding window), no assumption about its burst is made. A probe's estimate near the last one
 *   (the same capacity, seen again) moves it a quarter of the way; one far
 *   from it (a step) is taken as it is.
 * - **Hold, then probe rarely.** After a decrease the rate is
 *   `(1 − margin)` × the estimate and rises along a cubic (fast at first,
 *   flat near it) over `k` to the hold, `HOLD` (97 %) of the estimate: a
 *   server's threshold is sharp, and every 429 costs a whole `Retry-After`
 *   for everyone, so the hold stays just under it. Only after `k` does it
 *   probe above, along a convex cubic (+0.5 % after 1 s, double after
 *   `PROBE_CUBIC_MILLIS`): gentle where the capacity was, fast when it has
 *   grown. A probe's 429 that finds the same capacity again (within 15 %)
 *   moves it a quarter of the way and makes `k` four times longer (3, 12, 20 s); a
 *   429 below the probe (at the hold or on the way to it) says the estimate
 *   was too high: the new one is taken as it is, and `k` stays if the
 *   capacity is the same; a new capacity resets `k` to 3 s, so a step up or
 *   down is followed fast and a held rate is probed rarely. Time on
 *   that curve passes only while callers queue for permits and the limiter
 *   is not paused: no growth while idle.
 * - **One decrease per congestion event**: a 429 for a permit of an older
 *   epoch changes nothing but the pause. Under a `Retry-After` pause the
 *   decrease drops the queue's schedule: every waiter then queued is of the
 *   old epoch and reserves again at the new rate from the pause's end (their
 *   old slots would otherwise hold it back by up to a queue's worth of the
 *   old spacing).
 * - **`Retry-After` pauses every caller** sharing the key, whatever the
 *   epoch, for at most `maxPause`.
 * - **Quota headers pace before any 429**: a policy's `q / w` caps the rate;
 *   remaining permits are spread from when the answered request was sent
 *   (those sent since are in flight) to the reset (the earliest
 *   reset announced for the window); none left holds back the first permit
 *   that would go before the reset, and pauses everyone from then (not from
 *   the answer: the pace already put the next slot about there). A slot past
 *   the window's end (reserved behind a queue) belongs to the next window
 *   and takes its pace, `limit` over the window's length, rather than what
 *   was left of the current one. The window's length is learned from when
 *   windows start (a window's first request is the one that shows
 *   `limit − 1` left; see `applyQuota`), so a reset rounded to the (epoch)
 *   second does not stretch a one-second window, and is paced 1 % long: it
 *   is learned from send times, which the network's jitter moves.
 */
import type { Quota } from "../RateLimitHeaders.js"

/** One key's adaptive state, as the store keeps it. Times are store milliseconds. */
export interface State {
  /** GCRA theoretical arrival time of the next permit. */
  tat: number
  pausedUntil: number
  /** Total pause time added to the schedule so far. */
  shift: number
  /** Congestion events so far. */
  epoch: number
  /** The accepted rate measured at the last congestion event (per second). */
  wmax: number
  /** The rate right after the last decrease. */
  r0: number
  /** Milliseconds of demand since the last decrease: the position on the curve. */
  grown: number
  /** Time of the last reservation. */
  lastAt: number
  /** Milliseconds the rise from `r0` to `wmax` takes. */
  k: number
  /** Successes counted since `okSince` (halved, with its span, past 10 s). */
  okCount: number
  okSince: number
  /** Pause time elapsed (`pausedBy`) at `okSince`: what of the span was paused is not measured. */
  okPaused: number
  /** Header pace: at most `qRate` per second until `qUntil`. */
  qRate: number
  qUntil: number
  qRemaining: number
  /** A policy's rate ceiling per second; 0 for none. */
  ceiling: number
  /** When the first request of the current quota window was sent. */
  qStart: number
  /** The window's length as learned from the resets announced; 0 while unknown. */
  qWin: number
  /** When the last request a window counted first (remaining `limit − 1`) was sent; 0 for none. */
  qFirst: number
  /** The next window's pace: `limit` over `qWin`, per second; 0 while unknown. */
  qNext: number
  /** The count a window accepted at the last decrease, when it was judged by one; 0 otherwise. */
  wCount: number
  /** A spent window's end: the first permit that would go before it pauses everyone until it; 0 for none. */
  qHold: number
}

export interface Params {
  /** The most the limiter ever sends, per second. */
  readonly maxRate: number
  readonly floorRate: number
  /** How far below the accepted rate to hold. */
  readonly margin: number
  /** Decrease when there is no measurement. */
  readonly penalty: number
  /** The longest pause a `Retry-After` or a reset may cause. */
  readonly maxPauseMillis: number
}

/** A remaining count beyond this is as good as unbounded (and stays an exact integer everywhere). */
export const MAX_REMAINING = 1_000_000_000

export const PROBE_MIN_MILLIS = 3_000
export const PROBE_MAX_MILLIS = 20_000
/** How much longer the wait before the next probe gets each time a probe finds the same capacity. */
export const PROBE_BACKOFF = 4
/** The probe above the hold is a convex cubic: the rate doubles this long after it starts. */
export const PROBE_CUBIC_MILLIS = 6_000
/** The held rate, as a fraction of the estimate (in thousandths, an exact integer in Lua too). */
export const HOLD_PERMILLE = 970
/** A probe's 429 within this fraction of the estimate found the same capacity again (permille). */
export const SAME_CAPACITY_PERMILLE = 150
/** Successes are remembered for 5 to 10 s. */
export const MEMORY_MILLIS = 10_000
/** A shorter span says nothing about the accepted rate. */
export const MIN_MEASURE_MILLIS = 1_000
/** A short span's count, over the `Retry-After` that ends it, is taken as a window's from this many successes. */
export const WINDOW_COUNT_MIN = 10
/** The most a server's rounding (to the second, or the epoch second) adds to an announced reset. */
export const RESET_ROUNDING_MILLIS = 1_000
/**
 * A window's length as learned is paced this fraction longer: it is learned from when requests
 * were sent, which differ from when the server counted them by the network's jitter, and a
 * request a millisecond early is counted in the old window, a 429 that costs a whole second.
 */
export const WINDOW_SLACK = 0.01
/** A pace never spreads over less than this: the reset may be the next moment. */
export const MIN_PACE_SPAN_MILLIS = 50

export const initial = (now: number, params: Params): State => ({
  tat: 0,
  pausedUntil: 0,
  shift: 0,
  epoch: 0,
  wmax: params.maxRate,
  r0: params.maxRate,
  grown: 0,
  lastAt: now,
  k: PROBE_MIN_MILLIS,
  okCount: 0,
  okSince: now,
  okPaused: 0,
  qRate: 0,
  qUntil: 0,
  qRemaining: 0,
  ceiling: 0,
  qStart: 0,
  qWin: 0,
  qFirst: 0,
  qNext: 0,
  wCount: 0,
  qHold: 0
})

/** The rate (per second) a reservation made now uses. */
export const rateAt = (s: State, now: number, p: Params): number => {
  let r: number
  // Within an announced window the pace is the headers'; at zero remaining the pause holds
  // everyone until the reset, and those queued meanwhile keep the pace of the window.
  if (now < s.qUntil && (s.qRemaining > 0 || s.qRate > 0)) {
    r = s.qRate
    // A slot past the window's end belongs to the next window: the whole limit over a window.
    if (s.qNext > 0 && s.qWin > 0 && s.qStart > 0 && Math.max(now, s.tat, s.pausedUntil) >= s.qStart + paceWindow(s)) r = s.qNext
  } else {
    const hold = (s.wmax * HOLD_PERMILLE) / 1000
    if (s.grown <= s.k) {
      const u = 1 - s.grown / s.k
      r = hold - (hold - s.r0) * u * u * u
    } else {
      const x = Math.min(100, (s.grown - s.k) / PROBE_CUBIC_MILLIS)
      r = hold * (1 + x * x * x)
    }
    r = Math.max(p.floorRate, r)
  }
  if (s.ceiling > 0) r = Math.min(r, s.ceiling)
  return Math.max(1e-3, Math.min(p.maxRate, r))
}

/** The pause time elapsed by `now`: every pause so far, less what is still to come. */
export const pausedBy = (s: State, now: number): number => s.shift - Math.max(0, s.pausedUntil - now)

/** Time on the curve passes only while callers queue (the slot is in the future) and nothing pauses. */
export const noteReservation = (s: State, now: number, waited: boolean): void => {
  if (waited && now >= s.pausedUntil) s.grown += Math.max(0, Math.min(1_000, now - s.lastAt))
  // A second and more with nobody asking (idle, not paused): what was accepted before it says nothing
  // of the rate now, and counted over the idle time it reads as a capacity far too low.
  if (now - s.lastAt >= MIN_MEASURE_MILLIS && now >= s.pausedUntil) {
    s.okCount = 0
    s.okSince = now
    s.okPaused = pausedBy(s, now)
  }
  s.lastAt = now
}

/** Nobody is admitted before `now + millis` (at most `maxPause`); queued reservations move back. */
export const pause = (s: State, now: number, millis: number, p: Params): void =>
  pauseUntil(s, now, now + Math.ceil(Math.min(Math.max(0, millis), p.maxPauseMillis)))

const pauseUntil = (s: State, now: number, until: number): void => {
  if (until > s.pausedUntil) {
    const extra = until - Math.max(now, s.pausedUntil)
    s.shift += extra
    s.tat = Math.max(s.tat, now) + extra
    s.pausedUntil = until
  }
}

/**
 * A spent window's end holds back the first permit that would go before it:
 * from then on everyone is paused until the end, as by a `Retry-After`. Called
 * when a permit is about to go (a reservation granted at once, or a waiter
 * woken at its slot; waiters wake in the order of their slots). Paused from
 * the answer that said none is left, every queued slot moved back by the whole
 * time to the end, though the pace had already put the next one about there:
 * each one-second window of 20 lasted a spacing longer (92 % on loopback).
 */
export const holdFrom = (s: State, now: number): void => {
  if (s.qHold > now) pauseUntil(s, now, s.qHold)
  s.qHold = 0
}

/** The window's length paced by: as learned, and a little longer (see `WINDOW_SLACK`). */
const paceWindow = (s: State): number => s.qWin * (1 + WINDOW_SLACK)

/** What the headers announce: a ceiling, a pace over the time to the reset, or a pause at zero. */
export const applyQuota = (s: State, now: number, q: Quota, p: Params, sentAt?: number): void => {
  if (q.ceilingPerSecond !== undefined && q.ceilingPerSecond > 0) s.ceiling = Math.min(q.ceilingPerSecond, p.maxRate)
  if (q.remaining === undefined || q.resetMillis === undefined) return
  const reset = Math.min(q.resetMillis, p.maxPauseMillis)
  if (q.continuous === true && q.limit !== undefined && q.limit > 0) {
    // A bucket refilling continuously: `limit` may be spent over the time to full; at zero, one
    // permit's refill time is the wait, not the whole reset.
    s.qUntil = now + reset
    s.qRemaining = Math.min(q.remaining, MAX_REMAINING)
    if (q.remaining === 0) pause(s, now, reset / q.limit, p)
    s.qRate = Math.min(p.maxRate, (q.limit * 1000) / Math.max(MIN_PACE_SPAN_MILLIS, reset))
    if (q.remaining === 0) s.qRemaining = 1
    return
  }
  // A new window (the old one ended, or more is left than before) takes its reset; within a window
  // the earliest reset announced is the closest to the truth (servers round it up).
  // An answer tells of the quota when its request was sent: one sent before the window's end and
  // answered after it (latency) belongs to the old window, not a new one.
  const from = sentAt ?? now
  // The first request a window counted shows `limit − 1`, which no other answer of that window can:
  // a new window, even when the last one's only answer showed as much.
  const limit = q.limit !== undefined && q.limit > 0 ? q.limit : 0
  const first = limit > 0 && q.remaining === limit - 1
  const fresh = from >= s.qUntil || q.remaining > s.qRemaining || first
  if (fresh) {
    s.qUntil = now + reset
    s.qHold = 0
  } else s.qUntil = Math.min(s.qUntil, now + reset)
  // Servers round resets up, to the second or to a whole epoch second (up to a second late on a
  // one-second window). The window's length is learned as the shortest time seen from the first
  // request of a window (when it was sent: never after the server counted it) to the reset
  // announced for it: never shorter than the true window, and close to it after a few windows.
  if (sentAt !== undefined) {
    // Where the limit is announced, a window's start is known only from its first request: a later
    // one taken as the start (its first answer lost to latency or a 429) learns too short a window,
    // and a window paced too short meets a 429 at each end (0 until the next first request).
    if (fresh) s.qStart = first || limit === 0 ? sentAt : 0
    const span = s.qUntil - s.qStart
    if (s.qStart > 0 && span > 0 && (s.qWin === 0 || span < s.qWin)) s.qWin = span
    // The first request a window counted (its remaining is `limit − 1`, which no reordered answer
    // of the same window can show): from one such request to the next is at most a window plus
    // one spacing, a far tighter bound than a reset rounded to the (epoch) second.
    if (first) {
      const between = sentAt - s.qFirst
      if (s.qFirst > 0 && between > 0 && (s.qWin === 0 || between < s.qWin)) s.qWin = between
      s.qFirst = sentAt
    }
  }
  // Only a rounding's worth shorter than announced: a longer gap is another window.
  const end = s.qWin > 0 && s.qUntil - s.qStart - s.qWin <= RESET_ROUNDING_MILLIS
    ? Math.min(s.qUntil, Math.max(now, s.qStart + paceWindow(s)))
    : s.qUntil
  s.qRemaining = Math.min(q.remaining, MAX_REMAINING)
  s.qNext = limit > 0 && s.qWin > 0 ? Math.min(p.maxRate, (limit * 1000) / Math.max(MIN_PACE_SPAN_MILLIS, paceWindow(s))) : 0
  if (q.remaining === 0) {
    // Nobody goes before the end; the pause starts when the first permit would (see `holdFrom`).
    s.qHold = Math.max(now, Math.ceil(end))
    // Reservations made during the pause go out at the next window's pace: `limit` over it.
    s.qRate = limit > 0 ? Math.min(p.maxRate, (limit * 1000) / Math.max(MIN_PACE_SPAN_MILLIS, s.qWin > 0 ? paceWindow(s) : reset)) : 0
  } else {
    // What is left, spread so the last one goes one spacing before the end (not at it: the
    // pace lags by the queue, and at zero the pause costs nothing). Spread from when the request
    // was sent: those sent since are in flight, already counted by the server but not in this
    // `remaining` (from the answer's arrival, a fixed window at 60 ms answers got 88 % with draft-7
    // headers and 48 % with the reset in epoch seconds: the last few of a window went early).
    s.qRate = Math.min(p.maxRate, ((q.remaining + 1) * 1000) / Math.max(MIN_PACE_SPAN_MILLIS, end - from))
  }
}

export const onSuccess = (s: State, now: number, quota: Quota | undefined, p: Params, sentAt?: number, weight = 1): void => {
  s.okCount += weight
  if (now - s.okSince > MEMORY_MILLIS) {
    const paused = pausedBy(s, now)
    s.okCount /= 2
    s.okSince = now - (now - s.okSince) / 2
    s.okPaused = paused - (paused - s.okPaused) / 2
  }
  if (quota !== undefined) applyQuota(s, now, quota, p, sentAt)
}

/**
 * A 429. The pause applies whatever the permit's epoch; the decrease only
 * for the current epoch. Returns whether it decreased.
 */
export const onRateLimited = (
  s: State,
  now: number,
  epoch: number,
  retryAfterMillis: number | undefined,
  quota: Quota | undefined,
  p: Params
): boolean => {
  if (retryAfterMillis !== undefined) pause(s, now, retryAfterMillis, p)
  if (quota !== undefined) applyQuota(s, now, quota, p)
  if (epoch !== s.epoch) return false
  const current = rateAt(s, now, p)
  // The span sent in: time paused (a Retry-After, a quota's reset) sent nothing, and counting it
  // would deflate the rate accepted by the pauses' length, which says nothing of the capacity.
  const span = now - s.okSince - Math.max(0, pausedBy(s, now) - s.okPaused)
  // The capacity lies between what was accepted over the span (low when we sent below it for most
  // of the span) and the rate that met the 429 (high when a burst hid the overshoot for a while):
  // take their geometric mean, at most a halving.
  let estimate: number
  let windowCount = 0
  let sure = false
  if (span >= MIN_MEASURE_MILLIS) {
    const measured = (s.okCount * 1000) / span
    estimate = Math.min(current, Math.max(current / 2, Math.sqrt(Math.min(measured, current) * current)))
  } else if (retryAfterMillis !== undefined && s.okCount >= WINDOW_COUNT_MIN) {
    // Soon after the last pause, a window (fixed or sliding) accepts its whole count at any rate, so
    // the rate over the span says nothing; what does is the count it accepted between two pauses
    // and how long it said to wait: about that count over the longer of the span and the wait. A
    // bucket whose small burst refills well within a wait rounded up to the second shows too low a
    // count, so the count never cuts deeper than the penalty, except when it is under a third of
    // the rate (a window met far above its rate: start-up at `limit`), where the rate halves.
    // Without it, a rate ten times the capacity took seven penalties, one per wait, to come down,
    // and a 429 a hair under a second after the last one cut a right estimate by the penalty.
    // The same count twice in a row (within 15 %) is a window's: a bucket's count grows as the rate
    // halves, unless that rate is about nine times its refill, and a quarter of it is still above
    // the refill. So a repeated count cuts as deep as it says, at most to a quarter at once, and
    // start-up from `limit` ends at the second or third 429 (it took five, to about 6.5 s, each
    // costing every caller a whole second).
    const perWait = (s.okCount * 1000) / Math.max(span, Math.min(retryAfterMillis, p.maxPauseMillis))
    const again = s.wCount > 0 && Math.abs(s.okCount - s.wCount) * 1000 <= SAME_CAPACITY_PERMILLE * s.wCount
    const deepest = again ? current / 4 : perWait * 3 < current ? current / 2 : current * (1 - p.penalty)
    windowCount = s.okCount
    estimate = Math.min(current * (1 - p.margin), Math.max(deepest, perWait))
    sure = again && perWait >= deepest
  } else {
    estimate = current * (1 - p.penalty)
  }
  // A probe's 429 (above a hold that held) errs either way: near the last estimate (the same
  // capacity, seen again) the estimate moves a quarter of the way to the new one (halfway, the
  // probe's overshoot lifted it past the capacity, and a correction 429 followed each probe), far
  // from it (a step) the new one is taken as it is. A 429 at or below the hold says the last
  // estimate was too high: the new one is taken.
  const probing = s.grown > s.k
  const accepted = probing && Math.abs(estimate - s.wmax) <= 0.5 * s.wmax ? (estimate + 3 * s.wmax) / 4 : estimate
  const next = Math.max(p.floorRate, accepted)
  // The same capacity again: a probe that found it waits longer before the next one, and a 429 at
  // the hold (the estimate a little high) keeps the wait; another capacity probes again soon.
  const same = Math.abs(next - s.wmax) * 1000 <= SAME_CAPACITY_PERMILLE * s.wmax
  s.k = !same ? PROBE_MIN_MILLIS : probing ? Math.min(PROBE_MAX_MILLIS, s.k * PROBE_BACKOFF) : s.k
  // A window's count seen twice is as sure an estimate as a probe that found the same capacity.
  if (sure) s.k = Math.max(s.k, PROBE_MIN_MILLIS * PROBE_BACKOFF)
  s.wCount = windowCount
  s.wmax = next
  s.r0 = Math.max(p.floorRate, next * (1 - p.margin))
  s.grown = 0
  s.epoch += 1
  // Every waiter now queued is of the old epoch and reserves again. Under a pause their old slots
  // are dropped: the server said when to come back, and the new schedule starts there. Without
  // one nothing says the server has recovered: the slots already promised stand as a cool-down
  // (dropped, a queue re-reserved at once meets the same spent quota and decreases again and
  // again within milliseconds).
  if (s.pausedUntil > now) s.tat = Math.min(s.tat, s.pausedUntil)
  s.okCount = 0
  s.okSince = now
  s.okPaused = pausedBy(s, now)
  return true
}
