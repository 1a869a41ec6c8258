import { assert, describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { RateLimiter, RateLimiterStore } from "../src/index.js"
import { fixedWindow, judge, type Shape, simulate, slidingWindow, tokenBucket } from "./quotaSim.js"

const LIMIT = 200
const params: RateLimiterStore.AdaptiveParams = {
  maxRate: LIMIT,
  floorRate: LIMIT * 0.01,
  margin: 0.05,
  penalty: 0.3,
  maxPauseMillis: 60_000
}

const build = (options: Partial<RateLimiter.AdaptiveOptions> = {}) =>
  Effect.gen(function*() {
    const store = yield* RateLimiterStore.makeMemory
    const limiter = yield* RateLimiter.makeAdaptive({ limit: LIMIT, window: "1 second", maxWait: Duration.infinity, ...options }).pipe(
      Effect.provideService(RateLimiterStore.RateLimiterStore, store)
    )
    return { store, limiter }
  })

const rateLimited = (seconds?: number, headers: Record<string, string> = {}): RateLimiter.Outcome => ({
  _tag: "RateLimited",
  retryAfter: seconds === undefined ? Option.none() : Option.some(Duration.seconds(seconds)),
  headers
})

/** Lets forked fibers run up to their next wait. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

const acquiredAt = (limiter: RateLimiter.Service) => Effect.zipRight(limiter.acquire, TestClock.currentTimeMillis)

/** `n` requests through the limiter, each answered with a success `spacing` ms after its permit. */
const succeed = (limiter: RateLimiter.Service, n: number, spacing: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < n; i++) {
      const p = yield* limiter.acquire
      yield* TestClock.adjust(Duration.millis(spacing))
      yield* limiter.report(p, { _tag: "Success", headers: {} })
    }
  })

describe("adaptive: the defects of the first limiter", () => {
  it.effect("a 429's Retry-After pauses every caller, whatever epoch its permit came from", () =>
    Effect.gen(function*() {
      const { limiter } = yield* build()
      const old = yield* limiter.acquire
      yield* TestClock.adjust("1 second")
      const other = yield* limiter.acquire
      yield* TestClock.adjust("1 second")
      yield* limiter.report(other, rateLimited()) // the congestion event: a decrease, no pause
      // the older permit's 429 comes later and says "2 s": everyone waits 2 s
      yield* limiter.report(old, rateLimited(2))
      const at = yield* Effect.fork(acquiredAt(limiter))
      yield* settle
      yield* TestClock.adjust("5 seconds")
      expect(yield* Fiber.join(at)).toBeGreaterThanOrEqual(4_000)
    }))

  it.effect("growth compounds from the store's current rate while callers queue, and stops while idle", () =>
    Effect.gen(function*() {
      const { limiter, store } = yield* build()
      // three congestion events with nothing accepted in between bring the rate well down
      for (let i = 0; i < 3; i++) {
        const p = yield* limiter.acquire
        yield* TestClock.adjust("2 seconds")
        yield* limiter.report(p, rateLimited())
      }
      const after = (yield* store.adaptiveState("sluice", params)).rate
      expect(after).toBeLessThan(LIMIT / 4)
      // nobody asks for 30 s: the rate does not move
      yield* TestClock.adjust("30 seconds")
      expect((yield* store.adaptiveState("sluice", params)).rate).toBe(after)
      // ten callers queue for 15 s: the rate climbs back past where it was, and keeps climbing
      const callers = yield* Effect.fork(Effect.all(Array.from({ length: 10 }, () => Effect.forever(limiter.acquire)), { concurrency: "unbounded" }))
      const seen: Array<number> = []
      for (let i = 0; i < 15; i++) {
        yield* TestClock.adjust("1 second")
        seen.push((yield* store.adaptiveState("sluice", params)).rate)
      }
      yield* Fiber.interrupt(callers)
      expect(seen[seen.length - 1]!).toBeGreaterThan(after * 2)
      for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThanOrEqual(seen[i - 1]!)
    }))

  it.effect("quota headers pace before any 429: what is left is spread over the time to the reset, and zero pauses until it", () =>
    Effect.gen(function*() {
      const { limiter } = yield* build()
      const p = yield* limiter.acquire
      yield* limiter.report(p, { _tag: "Success", headers: { ratelimit: "limit=20, remaining=10, reset=2", "ratelimit-policy": "20;w=2" } })
      const times = yield* Effect.fork(Effect.forEach(Array.from({ length: 10 }), () => acquiredAt(limiter)))
      yield* settle
      yield* TestClock.adjust("3 seconds")
      const at = yield* Fiber.join(times)
      // ten permits over the two seconds to the reset, the last one a spacing before it
      // (11 spacings of 182 ms): spread, not all at once
      expect(at[9]! - at[0]!).toBeGreaterThanOrEqual(1_600)
      expect(at[9]!).toBeLessThan(2_000)
      const q = yield* limiter.acquire
      yield* limiter.report(q, { _tag: "Success", headers: { "x-ratelimit-limit": "20", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "4" } })
      const start = yield* TestClock.currentTimeMillis
      const next = yield* Effect.fork(acquiredAt(limiter))
      yield* settle
      yield* TestClock.adjust("5 seconds")
      const waited = (yield* Fiber.join(next)) - start
      expect(waited).toBeGreaterThanOrEqual(4_000)
      expect(waited).toBeLessThan(4_500)
    }))

  it.effect("a pause is bounded by maxPause: a Retry-After of year 9999 pauses one minute, not forever", () =>
    Effect.gen(function*() {
      const { limiter, store } = yield* build({ maxWait: "2 minutes" })
      const p = yield* limiter.acquire
      const farFuture = Duration.millis(Date.parse("9999-12-31T23:59:59Z"))
      yield* limiter.report(p, { _tag: "RateLimited", retryAfter: Option.some(farFuture), headers: {} })
      const q = yield* limiter.acquire.pipe(Effect.fork)
      yield* settle
      yield* TestClock.adjust("61 seconds")
      const permit = yield* Fiber.join(q)
      expect(permit.epoch).toBeGreaterThanOrEqual(0)
      const state = yield* store.adaptiveState("sluice", params)
      expect(state.pausedUntil).toBeLessThanOrEqual(60_000 + 1)
      // Number.MAX_SAFE_INTEGER seconds too
      yield* limiter.report(permit, rateLimited(Number.MAX_SAFE_INTEGER))
      const s2 = yield* store.adaptiveState("sluice", params)
      expect(s2.pausedUntil - s2.now).toBeLessThanOrEqual(60_000)
    }))

  it.effect("time paused is not time the server accepted nothing: the rate accepted is measured over the time sent in", () =>
    Effect.gen(function*() {
      const { limiter, store } = yield* build()
      const old = yield* limiter.acquire
      yield* TestClock.adjust("1 second")
      // three congestion events with nothing accepted halve the rate three times: 200 → 25
      for (let i = 0; i < 3; i++) {
        const p = yield* limiter.acquire
        yield* TestClock.adjust("2 seconds")
        yield* limiter.report(p, rateLimited())
      }
      const before = (yield* store.adaptiveState("sluice", params)).rate
      expect(before).toBeLessThan(25)
      // an older permit's 429 pauses everyone for 2 s (no decrease: another epoch)
      yield* limiter.report(old, rateLimited(2))
      yield* TestClock.adjust("2 seconds")
      // then 20/s is accepted for 1.2 s, and a 429
      yield* succeed(limiter, 24, 50)
      const p = yield* limiter.acquire
      yield* limiter.report(p, rateLimited())
      // 24 accepted over the 1.2 s sent in is 20/s, and the estimate lies between it and the rate
      // that met the 429; over 3.2 s with the pause it would be 7.5/s, and the rate about 13/s
      const after = (yield* store.adaptiveState("sluice", params)).rate
      expect(after).toBeGreaterThan(19)
      expect(after).toBeLessThan(before)
    }))

  it.effect("a window accepts its whole count at any rate: a 429 within a second of the last pause is judged by that count over the Retry-After", () =>
    Effect.gen(function*() {
      const { limiter, store } = yield* build()
      const rate = () => Effect.map(store.adaptiveState("sluice", params), (st) => st.rate)
      // a window of 20 per second met at the limiter's rate, three times: 20 accepted in under a
      // second, then a 429 saying 1 s
      const seen: Array<number> = []
      for (let round = 0; round < 3; round++) {
        // whole milliseconds over the limiter's spacing, so no acquisition waits on the TestClock
        const spacing = Math.ceil(1_010 / (yield* rate()))
        yield* succeed(limiter, 20, spacing)
        const p = yield* limiter.acquire
        yield* limiter.report(p, rateLimited(1))
        yield* TestClock.adjust("1 second")
        seen.push(yield* rate())
      }
      // 20 per 1 s wait at 200/s: the rate halves (the penalty alone took it to 140), since a bucket
      // of small burst shows a count as small
      expect(seen[0]!).toBeLessThan(100)
      expect(seen[0]!).toBeGreaterThan(90)
      // the same count again is a window's: the count over the wait, cut by at most a quarter at
      // once (the halving went on to 47.5, and start-up took five 429s)
      expect(seen[1]!).toBeLessThan(25)
      expect(seen[1]!).toBeGreaterThan(20)
      // and then the count itself, less the margin
      expect(seen[2]!).toBeCloseTo(19, 0)
      // a count seen twice is a sure estimate: the next probe waits as after a probe that found the
      // same capacity (12 s, not 3), so ten callers queued for 10 s keep the rate at the hold
      const callers = yield* Effect.fork(Effect.all(Array.from({ length: 10 }, () => Effect.forever(limiter.acquire)), { concurrency: "unbounded" }))
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.interrupt(callers)
      const held = yield* rate()
      expect(held).toBeGreaterThan(19.3)
      expect(held).toBeLessThan(19.5)
      // a 429 after too few successes to be a window's count (a bucket of burst 1, its refill far
      // shorter than the 1 s wait): the penalty, not 3 per second
      yield* TestClock.adjust("1 minute")
      yield* succeed(limiter, 3, 60)
      const p = yield* limiter.acquire
      yield* limiter.report(p, rateLimited(1))
      const afterBucket = yield* rate()
      expect(afterBucket).toBeGreaterThan(held * 0.6)
      expect(afterBucket).toBeLessThan(held * 0.7)
    }))

  it.effect("a second with nobody asking restarts the count: a 429 after an idle spell measures only the demand since", () =>
    Effect.gen(function*() {
      const { limiter, store } = yield* build({ limit: 40 })
      const rate = () => Effect.map(store.adaptiveState("sluice", { ...params, maxRate: 40 }), (st) => st.rate)
      yield* succeed(limiter, 10, 100)
      yield* TestClock.adjust("20 seconds")
      // demand again: 20/s accepted for 2 s, then a bare 429 at 40/s
      yield* succeed(limiter, 40, 50)
      const p = yield* limiter.acquire
      yield* limiter.report(p, rateLimited())
      // the estimate is the geometric mean of 20 and 40 (28.3, less the margin: 26.9); counted over
      // the idle spell too, the rate accepted read about 4/s and the rate halved to 20
      expect(yield* rate()).toBeGreaterThan(26)
      expect(yield* rate()).toBeLessThan(28)
    }))

  it.effect("a decrease drops the old queue's slots: its waiters go right after the pause, at the new rate", () =>
    Effect.gen(function*() {
      const { limiter } = yield* build()
      // 20 callers at 200/s: slots every 5 ms, the last ~100 ms ahead
      const first = yield* limiter.acquire
      const queued = yield* Effect.fork(Effect.all(Array.from({ length: 19 }, () => acquiredAt(limiter)), { concurrency: "unbounded" }))
      yield* settle
      // a 429 at once: one decrease (a new epoch, so every queued waiter reserves again) and a 1 s pause
      yield* limiter.report(first, rateLimited(1))
      yield* TestClock.adjust("3 seconds")
      const at = (yield* Fiber.join(queued)).sort((a, b) => a - b)
      expect(at[0]!).toBeGreaterThanOrEqual(1_000)
      // the queue reserved at the old spacing is gone: nobody waits behind its ~100 ms of old slots
      expect(at[0]!).toBeLessThan(1_050)
    }))

  it.effect("a reset rounded up to the epoch second does not stretch a one-second window", () =>
    Effect.gen(function*() {
      // express's legacy headers: 20 per 1 s window from the first request, the reset in epoch
      // seconds (up to a second late); a limiter pacing by the reset alone gets ~60-80 %, one
      // pausing from the answer that said none was left (not from the next permit) 94.8 %
      const epochMillis = 1_764_000_000_437
      yield* TestClock.setTime(epochMillis)
      const shape = fixedWindow(20, 1000, { headers: "x-epoch", epochMillis })
      const { limiter } = yield* build()
      const log = yield* simulate(limiter, shape, { seconds: 30 })
      const j = judge(shape, log, 5, 30)
      assert(j.goodput >= 0.95, `goodput ${(100 * j.goodput).toFixed(1)} % < 95 %`)
      assert(j.share429 <= 0.01, `429 share ${(100 * j.share429).toFixed(1)} % > 1 %`)
    }), 60_000)

  it.effect("a negative X-RateLimit-Remaining is malformed, not spent", () =>
    Effect.gen(function*() {
      const { limiter } = yield* build()
      const p = yield* limiter.acquire
      yield* limiter.report(p, { _tag: "Success", headers: { "x-ratelimit-remaining": "-1", "x-ratelimit-reset": "30" } })
      const at = yield* Effect.fork(acquiredAt(limiter))
      yield* settle
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(at)).toBeLessThan(100)
    }))
})

/**
 * The server shapes users meet, each against the limiter in a closed loop
 * (10 workers, 20 ms answers, `Retry-After` honoured by the worker as
 * `Retry` would). The floors are what this algorithm reaches today, so any
 * regression fails; where a floor is under the target (≥ 90 %
 * goodput, ≥ 95 % with quota headers), BENCHMARKS.md says so.
 */
describe("adaptive: simulated servers (TestClock)", () => {
  const cells: ReadonlyArray<{
    readonly name: string
    readonly shape: () => Shape
    readonly seconds: number
    readonly from: number
    readonly goodput: number
    readonly share429: number
    readonly idle?: { readonly from: number; readonly to: number }
    readonly latencyMs?: number
    readonly epochMillis?: number
  }> = [
    { name: "token bucket, burst one second", shape: () => tokenBucket(() => 20, (r) => r), seconds: 40, from: 5, goodput: 0.93, share429: 0.05 },
    { name: "token bucket, burst 5", shape: () => tokenBucket(() => 20, () => 5), seconds: 40, from: 5, goodput: 0.86, share429: 0.05 },
    { name: "token bucket, burst 1", shape: () => tokenBucket(() => 20, () => 1), seconds: 40, from: 5, goodput: 0.8, share429: 0.05 },
    { name: "fixed window 1 s (express)", shape: () => fixedWindow(20, 1000), seconds: 40, from: 5, goodput: 0.9, share429: 0.05 },
    { name: "fixed window 10 s (express)", shape: () => fixedWindow(200, 10_000), seconds: 40, from: 5, goodput: 0.83, share429: 0.05 },
    // Paused from the answer that said none was left, every queued slot moved back by the whole
    // time to the window's end, though the pace had already put the next one about there: each
    // window lasted a spacing longer (95.6 % here; at 1 ms answers with the reset in epoch seconds,
    // 95.4 %). The pause now starts when the next permit would go.
    { name: "fixed window 1 s with draft-7 headers", shape: () => fixedWindow(20, 1000, { headers: true }), seconds: 40, from: 5, goodput: 0.97, share429: 0.01 },
    {
      name: "fixed window 1 s with X-RateLimit epoch headers, answers in 1 ms, windows from whole seconds",
      shape: () => fixedWindow(20, 1000, { headers: "x-epoch", epochMillis: 1_764_000_000_000 }),
      seconds: 30,
      from: 5,
      goodput: 0.98,
      share429: 0.01,
      latencyMs: 1,
      epochMillis: 1_764_000_000_000
    },
    // Answers in 60 ms: `remaining` says nothing of the requests sent since, still in flight; spread
    // from the answer's arrival, the last few of each window went early (88 % and 0.7 % 429s; with
    // the reset in epoch seconds, 48 % and 5 %: an answer arriving after the announced reset read
    // as a new window one tenth of a second long).
    { name: "fixed window 1 s with draft-7 headers, answers in 60 ms", shape: () => fixedWindow(20, 1000, { headers: true }), seconds: 40, from: 5, goodput: 0.94, share429: 0.01, latencyMs: 60 },
    { name: "sliding window 1 s", shape: () => slidingWindow(20, 1000), seconds: 40, from: 5, goodput: 0.92, share429: 0.05 },
    // The same shapes at another capacity: a limiter tuned to 20/s shows it here (the time it was
    // paused counted as time nothing was accepted: 81 % and 77 %).
    { name: "fixed window 1 s (express) at 30/s", shape: () => fixedWindow(30, 1000), seconds: 40, from: 5, goodput: 0.91, share429: 0.05 },
    { name: "sliding window 1 s at 30/s", shape: () => slidingWindow(30, 1000), seconds: 40, from: 5, goodput: 0.9, share429: 0.05 },
    { name: "bare 429 (no Retry-After)", shape: () => tokenBucket(() => 20, (r) => r, "none"), seconds: 40, from: 5, goodput: 0.93, share429: 0.05 },
    // A one-second bucket banks a whole burst in the 1 s wait, so a window's count read soon after a
    // pause is a little high on the way down (93.5 % on the first window-count rule, 98 % now; over
    // HTTP, BENCHMARKS.md's cell: 98 %, target 85 %).
    { name: "step down 100 → 10 at 15 s", shape: () => tokenBucket((t) => (t < 15_000 ? 100 : 10), (r) => r), seconds: 45, from: 19, goodput: 0.96, share429: 0.1 },
    { name: "step up 10 → 40 at 15 s", shape: () => tokenBucket((t) => (t < 15_000 ? 10 : 40), (r) => r), seconds: 45, from: 23, goodput: 0.95, share429: 0.05 },
    { name: "idle 25 s, then full demand", shape: () => tokenBucket(() => 20, (r) => r), seconds: 50, from: 35, goodput: 0.95, share429: 0.05, idle: { from: 5, to: 30 } }
  ]
  for (const c of cells) {
    it.effect(c.name, () =>
      Effect.gen(function*() {
        if (c.epochMillis !== undefined) yield* TestClock.setTime(c.epochMillis)
        const shape = c.shape()
        const { limiter } = yield* build()
        const log = yield* simulate(limiter, shape, {
          seconds: c.seconds,
          ...(c.idle ? { idle: c.idle } : {}),
          ...(c.latencyMs !== undefined ? { latencyMs: c.latencyMs } : {})
        })
        const j = judge(shape, log, c.from, c.seconds)
        assert(j.goodput >= c.goodput, `goodput ${(100 * j.goodput).toFixed(1)} % < ${100 * c.goodput} %`)
        assert(j.share429 <= c.share429, `429 share ${(100 * j.share429).toFixed(1)} % > ${100 * c.share429} %`)
      }), 60_000)
  }

  // With the reset in epoch seconds and answers in 60-100 ms, the pace depended on where in the
  // second the server's windows fell: 53-100 % over ten offsets (here 53, 58, 99, 100 % at 60 ms).
  // A window whose only answer was lost to a 429 was not seen to end, so the next one's third
  // answer was taken as its start and the window learned 5 % short; a window a millisecond short
  // meets a 429 at each end, at 60 ms answers already sent when the answer saying none is left comes.
  it.effect("fixed window 1 s with X-RateLimit epoch headers, answers in 60 and 100 ms, windows at four offsets into the second", () =>
    Effect.gen(function*() {
      const goodputs: Array<number> = []
      let run = 0
      for (const latencyMs of [60, 100]) {
        for (const offset of [0, 300, 600, 900]) {
          // each run on its own whole minute of the wall clock (the TestClock only moves forward)
          const epochMillis = 1_764_000_000_000 + 60_000 * run++ + offset
          yield* TestClock.setTime(epochMillis)
          const shape = fixedWindow(20, 1000, { headers: "x-epoch", epochMillis })
          const { limiter } = yield* build()
          const log = yield* simulate(limiter, shape, { seconds: 30, latencyMs })
          const j = judge(shape, log, 5, 30)
          assert(j.share429 <= 0.01, `${latencyMs} ms, +${offset} ms: 429 share ${(100 * j.share429).toFixed(1)} % > 1 %`)
          goodputs.push(j.goodput)
        }
      }
      const worst = Math.min(...goodputs)
      const mean = goodputs.reduce((a, b) => a + b, 0) / goodputs.length
      assert(worst >= 0.9, `worst goodput ${(100 * worst).toFixed(1)} % < 90 % (${goodputs.map((g) => (100 * g).toFixed(1)).join(", ")})`)
      assert(mean >= 0.95, `mean goodput ${(100 * mean).toFixed(1)} % < 95 %`)
    }), 120_000)
})
