/**
 * `RateLimiterStore`: where a rate limiter keeps its state, behind a port
 * made for atomic remote operations: one call per acquisition, time read on
 * the store's side (the store's clock, never the callers'), integer
 * milliseconds. The in-memory store is here; `@sluice/redis` provides one
 * shared by many processes.
 *
 * The model is a reservation (GCRA, the "virtual scheduling" form of a token
 * bucket): a caller reserves the next free slot atomically and sleeps
 * locally until it, so waiting needs no queue, FIFO order comes from slot
 * order, and a wait longer than `maxWait` is known, and refused, up front.
 *
 * `@effect/experimental`'s `RateLimiter` store has a similar shape, but it
 * takes the time from the caller and sets no TTLs, and it has no notion of
 * the adaptive limiter's shared rate, epoch and pause.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { RateLimiter, RateLimiterStore } from "@sluice/core"
 *
 * const Limiter = RateLimiter.layerTokenBucket({ limit: 40, window: "1 second" }).pipe(
 *   Layer.provide(RateLimiterStore.layerMemory)
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"

/** A reserved slot: go after `waitMillis`. */
export interface Reservation {
  readonly _tag: "Reserved"
  /** Store time of the slot. */
  readonly slot: number
  readonly waitMillis: number
  /** Interval the slot was reserved at (to give it back exactly). */
  readonly intervalMillis: number
  /** Adaptive epoch when reserved: feedback from an older epoch is already accounted for. */
  readonly epoch: number
  /** Total pause time added to the schedule so far, to learn what a later pause owes. */
  readonly shift: number
}

/** No slot within `maxWait`: nothing was reserved. */
export interface Rejection {
  readonly _tag: "Rejected"
  readonly waitMillis: number
}

/** The shared state of an adaptive limiter. */
export interface AdaptiveState {
  /** Permits per second now. */
  readonly rate: number
  readonly epoch: number
  /** Store time until which nobody is admitted (from `Retry-After`). */
  readonly pausedUntil: number
  /** Store time now. */
  readonly now: number
}

export interface ReserveOptions {
  /** Milliseconds between permits; `undefined` means "the stored adaptive rate". */
  readonly intervalMillis: number | undefined
  /** Permits that may be taken at once from a full bucket. */
  readonly burst: number
  /** Refuse when the slot is further than this. `Infinity` never refuses. */
  readonly maxWaitMillis: number
  /** Adaptive only: the rate to start from when the key has no state yet. */
  readonly initialRate?: number | undefined
}

/** Feedback that changes an adaptive limiter's shared state. */
export type Adjustment =
  /** Applied only if `epoch` is still current: one decrease per congestion event. Bumps the epoch. */
  | { readonly _tag: "Decrease"; readonly epoch: number; readonly rate: number; readonly pauseMillis: number }
  /** Sets the rate (growth), whatever the epoch. */
  | { readonly _tag: "SetRate"; readonly rate: number }
  /** Admit nobody for this long (a server said its quota is spent until then). */
  | { readonly _tag: "Pause"; readonly pauseMillis: number }

/** The store could not be reached or answered something unexpected. */
export class RateLimiterStoreError extends Schema.TaggedError<RateLimiterStoreError>(
  "@sluice/core/RateLimiterStoreError"
)("RateLimiterStoreError", { message: Schema.String, cause: Schema.optional(Schema.Defect) }) {}

export interface Store {
  readonly reserve: (key: string, options: ReserveOptions) => Effect.Effect<Reservation | Rejection, RateLimiterStoreError>
  /** Gives an unused reservation back (its waiter was interrupted). */
  readonly release: (key: string, reservation: Reservation) => Effect.Effect<void, RateLimiterStoreError>
  /** How much longer a reservation must wait because of pauses set after it was made. */
  readonly owed: (key: string, reservation: Reservation) => Effect.Effect<number, RateLimiterStoreError>
  readonly adaptiveState: (key: string, initialRate: number) => Effect.Effect<AdaptiveState, RateLimiterStoreError>
  /** Returns whether the adjustment was applied (a stale `Decrease` is not). */
  readonly adjust: (key: string, adjustment: Adjustment) => Effect.Effect<boolean, RateLimiterStoreError>
  /** Counts successes for the admitted-rate estimate; `successesSince` reads them back. */
  readonly recordSuccess: (key: string) => Effect.Effect<void, RateLimiterStoreError>
  readonly successesSince: (key: string, sinceMillis: number) => Effect.Effect<number, RateLimiterStoreError>
  /** Store time now. */
  readonly now: Effect.Effect<number, RateLimiterStoreError>
}

export class RateLimiterStore extends Context.Tag("@sluice/core/RateLimiterStore")<RateLimiterStore, Store>() {}

interface KeyState {
  tat: number
  rate: number
  epoch: number
  pausedUntil: number
  shift: number
  successes: Array<number>
  successStart: number
}

/**
 * Slot arithmetic shared by every store (Redis runs the same steps in Lua).
 * Exported for tests and for stores written elsewhere.
 */
export const reserveSlot = (
  state: { tat: number; pausedUntil: number },
  now: number,
  intervalMillis: number,
  burst: number,
  maxWaitMillis: number
): { readonly slot: number; readonly waitMillis: number } | { readonly rejectedWait: number } => {
  const tolerance = (Math.max(1, burst) - 1) * intervalMillis
  const slot = Math.max(now, state.tat - tolerance, state.pausedUntil)
  const wait = slot - now
  if (wait > maxWaitMillis) return { rejectedWait: wait }
  state.tat = Math.max(state.tat, now, state.pausedUntil) + intervalMillis
  return { slot, waitMillis: wait }
}

/**
 * An in-memory store for one process. Reads time from the Effect `Clock`, so
 * `TestClock` drives it. Every operation is synchronous: the fast path of an
 * acquisition takes no lock, queue or fiber.
 */
export const makeMemory: Effect.Effect<Store> = Effect.map(Effect.clock, (clock) => {
  const keys = new Map<string, KeyState>()
  const now = () => Math.floor(clock.unsafeCurrentTimeMillis())
  const get = (key: string, initialRate = 1): KeyState => {
    let s = keys.get(key)
    if (s === undefined) {
      s = { tat: 0, rate: initialRate, epoch: 0, pausedUntil: 0, shift: 0, successes: [], successStart: 0 }
      keys.set(key, s)
    }
    return s
  }
  return {
    now: Effect.sync(now),
    reserve: (key, o) =>
      Effect.sync(() => {
        const s = get(key, o.initialRate)
        const t = now()
        const interval = o.intervalMillis ?? 1000 / s.rate
        const r = reserveSlot(s, t, interval, o.burst, o.maxWaitMillis)
        if ("rejectedWait" in r) return { _tag: "Rejected", waitMillis: r.rejectedWait } as const
        return { _tag: "Reserved", slot: r.slot, waitMillis: r.waitMillis, intervalMillis: interval, epoch: s.epoch, shift: s.shift } as const
      }),
    release: (key, reservation) =>
      Effect.sync(() => {
        const s = get(key)
        const t = now()
        // Only a slot still in the future is given back; the schedule never moves before now.
        if (reservation.slot + (s.shift - reservation.shift) >= t) s.tat = Math.max(t, s.tat - reservation.intervalMillis)
      }),
    owed: (key, reservation) => Effect.sync(() => Math.max(0, get(key).shift - reservation.shift)),
    adaptiveState: (key, initialRate) =>
      Effect.sync(() => {
        const s = get(key, initialRate)
        return { rate: s.rate, epoch: s.epoch, pausedUntil: s.pausedUntil, now: now() }
      }),
    adjust: (key, a) =>
      Effect.sync(() => {
        const s = get(key)
        const t = now()
        const pause = (millis: number) => {
          const until = t + Math.ceil(millis)
          if (until > s.pausedUntil) {
            // Everyone already queued moves back by the new part of the pause, keeping their spacing.
            s.shift += until - Math.max(t, s.pausedUntil)
            s.tat = Math.max(s.tat, t) + (until - Math.max(t, s.pausedUntil))
            s.pausedUntil = until
          }
        }
        switch (a._tag) {
          case "Decrease": {
            if (a.epoch !== s.epoch) return false
            s.epoch++
            s.rate = a.rate
            if (a.pauseMillis > 0) pause(a.pauseMillis)
            return true
          }
          case "SetRate":
            s.rate = a.rate
            return true
          case "Pause":
            pause(a.pauseMillis)
            return true
        }
      }),
    recordSuccess: (key) =>
      Effect.sync(() => {
        const s = get(key)
        const t = now()
        s.successes.push(t)
        // keep ten seconds of history
        if (s.successes.length > 4096 && s.successes[0]! < t - 10_000) {
          const cut = s.successes.findIndex((x) => x >= t - 10_000)
          s.successes = s.successes.slice(cut === -1 ? s.successes.length : cut)
        }
      }),
    successesSince: (key, since) =>
      Effect.sync(() => {
        const xs = get(key).successes
        let lo = 0
        let hi = xs.length
        while (lo < hi) {
          const mid = (lo + hi) >>> 1
          if (xs[mid]! < since) lo = mid + 1
          else hi = mid
        }
        return xs.length - lo
      })
  }
})

export const layerMemory: Layer.Layer<RateLimiterStore> = Layer.effect(RateLimiterStore, makeMemory)
