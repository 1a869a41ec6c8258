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
 * the adaptive limiter's shared state. Here the adaptive limiter's every
 * decision runs inside the store, atomically on the shared state (one call,
 * store time), so a fleet sharing a Redis store behaves as one client: see
 * `feedback`.
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
import * as Adaptive from "./internal/adaptive.js"
import type { Quota } from "./RateLimitHeaders.js"

/**
 * A reserved slot: go after `waitMillis`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Reservation {
  readonly _tag: "Reserved"
  /** Store time of the slot. */
  readonly slot: number
  readonly waitMillis: number
  /** Interval the slot was reserved at (to give it back exactly). */
  readonly intervalMillis: number
  /** Permits it took (a weighted request's cost); a missing weight is one. */
  readonly weight?: number | undefined
  /** Adaptive epoch when reserved: a 429 for an older epoch is already accounted for. */
  readonly epoch: number
  /** Total pause time added to the schedule so far, to learn what a later pause owes. */
  readonly shift: number
}

/**
 * No slot within `maxWait`: nothing was reserved.
 *
 * @since 0.1.0
 * @category models
 */
export interface Rejection {
  readonly _tag: "Rejected"
  readonly waitMillis: number
}

/**
 * The shared state of an adaptive limiter, as its gauges and tests read it.
 *
 * @since 0.1.0
 * @category models
 */
export interface AdaptiveState {
  /** Permits per second a reservation made now would use. */
  readonly rate: number
  readonly epoch: number
  /** Store time until which nobody is admitted (from `Retry-After` or a spent quota). */
  readonly pausedUntil: number
  /** Store time now. */
  readonly now: number
}

/**
 * The adaptive limiter's settings, sent with every call (the store keeps no configuration).
 *
 * @since 0.2.0
 * @category models
 */
export type AdaptiveParams = Adaptive.Params

/**
 * @since 0.1.0
 * @category models
 */
export interface ReserveOptions {
  /** Milliseconds between permits; `undefined` means "the adaptive rate" (then `adaptive` is required). */
  readonly intervalMillis: number | undefined
  /** Permits that may be taken at once from a full bucket. */
  readonly burst: number
  /** Refuse when the slot is further than this. `Infinity` never refuses. */
  readonly maxWaitMillis: number
  /**
   * Permits this reservation takes (a request's cost, e.g. its LLM tokens). Default 1. A heavy
   * reservation waits until the bucket has refilled that much, in slot order: the light ones
   * behind it do not overtake it, and it does not starve.
   */
  readonly weight?: number | undefined
  readonly adaptive?: AdaptiveParams | undefined
}

/**
 * @since 0.2.0
 * @category models
 */
export interface Owed {
  readonly millis: number
  readonly epoch: number
}

/**
 * What one answer taught an adaptive limiter.
 *
 * @since 0.2.0
 * @category models
 */
export type Feedback =
  /**
   * The server admitted the request (a 2xx, or a 4xx other than 429), maybe announcing its quota;
   * `sentAt` is the store time its permit was granted (to learn a quota window's length).
   */
  | {
    readonly _tag: "Success"
    readonly quota?: Quota | undefined
    readonly sentAt?: number | undefined
    /** Permits the request took (its cost): what the server accepted, for the measured rate. Default 1. */
    readonly weight?: number | undefined
  }
  /** A 429 for a permit of `epoch`. */
  | {
    readonly _tag: "RateLimited"
    readonly epoch: number
    readonly retryAfterMillis?: number | undefined
    readonly quota?: Quota | undefined
  }

/**
 * @since 0.2.0
 * @category models
 */
export interface FeedbackResult {
  /** Whether this 429 made the decrease (one per congestion event). */
  readonly decreased: boolean
  /** The rate now. */
  readonly rate: number
}

/**
 * The store could not be reached or answered something unexpected.
 *
 * @since 0.1.0
 * @category errors
 */
export class RateLimiterStoreError extends Schema.TaggedError<RateLimiterStoreError>(
  "@sluice/core/RateLimiterStoreError"
)("RateLimiterStoreError", { message: Schema.String, cause: Schema.optional(Schema.Defect) }) {}

/**
 * @since 0.1.0
 * @category models
 */
export interface Store {
  readonly reserve: (key: string, options: ReserveOptions) => Effect.Effect<Reservation | Rejection, RateLimiterStoreError>
  /** Gives an unused reservation back (its waiter was interrupted). */
  readonly release: (key: string, reservation: Reservation) => Effect.Effect<void, RateLimiterStoreError>
  /**
   * How much longer a reservation must wait because of pauses set after it
   * was made, and the adaptive epoch now (a waiter of an older epoch reserves again).
   * Asked by a waiter at its slot; the first to ask while a spent quota window's
   * hold is ahead starts its pause (adaptive keys only).
   */
  readonly owed: (key: string, reservation: Reservation) => Effect.Effect<Owed, RateLimiterStoreError>
  readonly adaptiveState: (key: string, params: AdaptiveParams) => Effect.Effect<AdaptiveState, RateLimiterStoreError>
  /** Runs one adaptive decision on the shared state, atomically, on store time. */
  readonly feedback: (
    key: string,
    feedback: Feedback,
    params: AdaptiveParams
  ) => Effect.Effect<FeedbackResult, RateLimiterStoreError>
  /** Store time now. */
  readonly now: Effect.Effect<number, RateLimiterStoreError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class RateLimiterStore extends Context.Tag("@sluice/core/RateLimiterStore")<RateLimiterStore, Store>() {}

/**
 * Slot arithmetic shared by every store (Redis runs the same steps in Lua).
 * Exported for tests and for stores written elsewhere.
 *
 * @since 0.1.0
 * @category constructors
 */
export const reserveSlot = (
  state: { tat: number; pausedUntil: number },
  now: number,
  intervalMillis: number,
  burst: number,
  maxWaitMillis: number,
  weight = 1
): { readonly slot: number; readonly waitMillis: number } | { readonly rejectedWait: number } => {
  // A weighted GCRA: `weight` permits fit once the bucket holds that many (a weight over the
  // burst goes into debt: it waits for the refill it lacks).
  const tolerance = (Math.max(1, burst) - weight) * intervalMillis
  const slot = Math.max(now, state.tat - tolerance, state.pausedUntil)
  const wait = slot - now
  if (wait > maxWaitMillis) return { rejectedWait: wait }
  state.tat = Math.max(state.tat, now, state.pausedUntil) + weight * intervalMillis
  return { slot, waitMillis: wait }
}

/**
 * The adaptive algorithm's constants, for stores that run its steps
 * elsewhere (the Redis store's Lua).
 *
 * @since 0.2.0
 * @category constants
 */
export const adaptiveConstants = {
  PROBE_MIN_MILLIS: Adaptive.PROBE_MIN_MILLIS,
  PROBE_MAX_MILLIS: Adaptive.PROBE_MAX_MILLIS,
  PROBE_BACKOFF: Adaptive.PROBE_BACKOFF,
  PROBE_CUBIC_MILLIS: Adaptive.PROBE_CUBIC_MILLIS,
  HOLD_PERMILLE: Adaptive.HOLD_PERMILLE,
  SAME_CAPACITY_PERMILLE: Adaptive.SAME_CAPACITY_PERMILLE,
  MEMORY_MILLIS: Adaptive.MEMORY_MILLIS,
  MIN_MEASURE_MILLIS: Adaptive.MIN_MEASURE_MILLIS,
  WINDOW_COUNT_MIN: Adaptive.WINDOW_COUNT_MIN,
  MIN_PACE_SPAN_MILLIS: Adaptive.MIN_PACE_SPAN_MILLIS,
  RESET_ROUNDING_MILLIS: Adaptive.RESET_ROUNDING_MILLIS,
  WINDOW_SLACK: Adaptive.WINDOW_SLACK,
  MAX_REMAINING: Adaptive.MAX_REMAINING
} as const

/** Parameters for a key reserved only at a fixed interval (its adaptive fields stay unused). */
const FIXED: AdaptiveParams = { maxRate: 1, floorRate: 1, margin: 0, penalty: 0, maxPauseMillis: 0 }

/**
 * An in-memory store for one process. Reads time from the Effect `Clock`, so
 * `TestClock` drives it. Every operation is synchronous: the fast path of an
 * acquisition takes no lock, queue or fiber.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<Store> = Effect.map(Effect.clock, (clock) => {
  const keys = new Map<string, Adaptive.State>()
  const now = () => Math.floor(clock.unsafeCurrentTimeMillis())
  const get = (key: string, params: AdaptiveParams): Adaptive.State => {
    let s = keys.get(key)
    if (s === undefined) {
      s = Adaptive.initial(now(), params)
      keys.set(key, s)
    }
    return s
  }
  return {
    now: Effect.sync(now),
    reserve: (key, o) =>
      Effect.sync(() => {
        const params = o.adaptive ?? FIXED
        const s = get(key, params)
        const t = now()
        // A permit about to go at once meets a spent window's hold (a queued one meets it in `owed`).
        if (o.intervalMillis === undefined && s.tat <= t && s.pausedUntil <= t) Adaptive.holdFrom(s, t)
        const interval = o.intervalMillis ?? 1000 / Adaptive.rateAt(s, t, params)
        const weight = o.weight ?? 1
        const r = reserveSlot(s, t, interval, o.burst, o.maxWaitMillis, weight)
        if ("rejectedWait" in r) return { _tag: "Rejected", waitMillis: r.rejectedWait } as const
        if (o.intervalMillis === undefined) Adaptive.noteReservation(s, t, r.waitMillis > 0)
        return { _tag: "Reserved", slot: r.slot, waitMillis: r.waitMillis, intervalMillis: interval, weight, epoch: s.epoch, shift: s.shift } as const
      }),
    release: (key, reservation) =>
      Effect.sync(() => {
        const s = keys.get(key)
        if (s === undefined) return
        const t = now()
        // Only a slot still in the future is given back; the schedule never moves before now.
        if (reservation.slot + (s.shift - reservation.shift) >= t) {
          s.tat = Math.max(t, s.tat - reservation.intervalMillis * (reservation.weight ?? 1))
        }
      }),
    owed: (key, reservation) =>
      Effect.sync(() => {
        const s = keys.get(key)
        // A waiter woken at its slot: the first to meet a spent window's hold starts its pause.
        if (s !== undefined) Adaptive.holdFrom(s, now())
        return { millis: Math.max(0, (s?.shift ?? 0) - reservation.shift), epoch: s?.epoch ?? 0 }
      }),
    adaptiveState: (key, params) =>
      Effect.sync(() => {
        const s = get(key, params)
        const t = now()
        return { rate: Adaptive.rateAt(s, t, params), epoch: s.epoch, pausedUntil: s.pausedUntil, now: t }
      }),
    feedback: (key, f, params) =>
      Effect.sync(() => {
        const s = get(key, params)
        const t = now()
        let decreased = false
        if (f._tag === "Success") Adaptive.onSuccess(s, t, f.quota, params, f.sentAt, f.weight)
        else decreased = Adaptive.onRateLimited(s, t, f.epoch, f.retryAfterMillis, f.quota, params)
        return { decreased, rate: Adaptive.rateAt(s, t, params) }
      })
  }
})

/**
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<RateLimiterStore> = Layer.effect(RateLimiterStore, makeMemory)
