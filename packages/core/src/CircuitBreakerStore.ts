/**
 * `CircuitBreakerStore`: where a circuit breaker keeps its state, behind a
 * port made for atomic remote operations (one call per admission and per
 * answer, time read on the store's side). The in-memory store is here;
 * `@sluice/redis` provides one shared by many processes, so a fleet trips
 * together.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { CircuitBreaker, CircuitBreakerStore } from "@sluice/core"
 *
 * const Breaker = CircuitBreaker.layer({ consecutiveFailures: 5 }).pipe(
 *   Layer.provide(CircuitBreakerStore.layerMemory)
 * )
 * ```
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Steps from "./internal/circuitBreaker.js"

/**
 * The breaker's settings, sent with every call (the store keeps no configuration).
 *
 * @since 0.3.0
 * @category models
 */
export type Params = Steps.Params

/**
 * @since 0.3.0
 * @category models
 */
export type Transition = Steps.Transition

/**
 * What a call's answer was, for the breaker.
 *
 * @since 0.3.0
 * @category models
 */
export type Outcome = Steps.Outcome

/**
 * @since 0.3.0
 * @category models
 */
export type Admission = Steps.Admission

/**
 * @since 0.3.0
 * @category models
 */
export type CircuitState = "closed" | "open" | "half-open"

/**
 * @since 0.3.0
 * @category models
 */
export interface Snapshot {
  readonly state: CircuitState
  /** Store time until which an open circuit refuses every call. */
  readonly openUntil: number
  /** Trips in a row since the circuit last closed. */
  readonly trips: number
  /** Store time now. */
  readonly now: number
}

/**
 * The store could not be reached or answered something unexpected.
 *
 * @since 0.3.0
 * @category errors
 */
export class CircuitBreakerStoreError extends Schema.TaggedError<CircuitBreakerStoreError>(
  "@sluice/core/CircuitBreakerStoreError"
)("CircuitBreakerStoreError", { message: Schema.String, cause: Schema.optional(Schema.Defect) }) {}

/**
 * @since 0.3.0
 * @category models
 */
export interface Store {
  /** Admits a call, or refuses it while the circuit is open (atomically, on store time). */
  readonly admit: (key: string, params: Params) => Effect.Effect<Admission, CircuitBreakerStoreError>
  /** Records an admitted call's answer; returns the state change it caused, if any. */
  readonly record: (
    key: string,
    outcome: Outcome,
    probe: boolean,
    params: Params
  ) => Effect.Effect<Transition | undefined, CircuitBreakerStoreError>
  readonly snapshot: (key: string) => Effect.Effect<Snapshot, CircuitBreakerStoreError>
}

/**
 * @since 0.3.0
 * @category tags
 */
export class CircuitBreakerStore
  extends Context.Tag("@sluice/core/CircuitBreakerStore")<CircuitBreakerStore, Store>()
{}

const NAMES: ReadonlyArray<CircuitState> = ["closed", "open", "half-open"]

/**
 * The name of a state as the steps number it (0 closed, 1 open, 2 half-open).
 *
 * @since 0.3.0
 * @category constructors
 */
export const stateName = (state: number): CircuitState => NAMES[state] ?? "closed"

/**
 * The steps' constants, for stores that run them elsewhere (the Redis store's Lua).
 *
 * @since 0.3.0
 * @category constants
 */
export const constants = { BUCKETS: Steps.BUCKETS, CLOSED: Steps.CLOSED, OPEN: Steps.OPEN, HALF_OPEN: Steps.HALF_OPEN } as const

/**
 * An in-memory store for one process. Reads time from the Effect `Clock`,
 * so `TestClock` drives it; every operation is synchronous.
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<Store> = Effect.map(Effect.clock, (clock) => {
  const keys = new Map<string, Steps.State>()
  const now = () => Math.floor(clock.unsafeCurrentTimeMillis())
  const get = (key: string): Steps.State => {
    let s = keys.get(key)
    if (s === undefined) {
      s = Steps.initial()
      keys.set(key, s)
    }
    return s
  }
  return {
    admit: (key, params) => Effect.sync(() => Steps.admit(get(key), now(), params)),
    record: (key, outcome, probe, params) => Effect.sync(() => Steps.record(get(key), now(), outcome, probe, params)),
    snapshot: (key) =>
      Effect.sync(() => {
        const s = get(key)
        return { state: stateName(s.state), openUntil: s.openUntil, trips: s.trips, now: now() }
      })
  }
})

/**
 * @since 0.3.0
 * @category layers
 */
export const layerMemory: Layer.Layer<CircuitBreakerStore> = Layer.effect(CircuitBreakerStore, makeMemory)
