/**
 * `CircuitBreaker`: stop calling a server that keeps failing, and find out
 * cheaply when it has healed.
 *
 * - **Trips** on `consecutiveFailures` failures in a row (default 5), or on
 *   a failure rate over a sliding window with a minimum number of calls.
 * - **Open**: every call fails at once with `CircuitOpenError`, carrying
 *   when the circuit may admit again (`Retry` waits for it as for a
 *   `Retry-After`). It stays open for `openFor`: a duration, or a `Schedule`
 *   whose delays back off across repeated trips (default 5 s, doubling, at
 *   most 60 s).
 * - **Half-open**: `halfOpenProbes` calls at a time go through;
 *   `successesToClose` successes close the circuit, one failure opens it
 *   again for the next, longer period.
 * - **What counts**: a 5xx answer, a transport error and a timeout are
 *   failures; a 429 is not (the rate limiter owns it), nor is an
 *   authentication or rate-limiter failure (nothing reached the server);
 *   any other answer is a success. `classify` overrides.
 *
 * Its state lives in a `CircuitBreakerStore` (memory here, Redis in
 * `@sluice/redis`, so a fleet trips together). Every state change is a
 * metric (`sluice_circuit_breaker_transitions`, gauge
 * `sluice_circuit_breaker_state`), a span event on the call that caused it,
 * and a log line. `ApiClient` applies the breaker it finds in its context to
 * every attempt, before the rate limiter (an open circuit takes no permit);
 * `withCircuitBreaker` applies one to any `HttpClient`.
 *
 * A store that cannot be reached fails open: calls go through, with one
 * warning per outage (the limiter, not the breaker, is what must hold).
 *
 * @example
 * ```ts
 * import { Layer, Schedule } from "effect"
 * import { ApiClient, CircuitBreaker, CircuitBreakerStore } from "@sluice/core"
 *
 * const Breaker = CircuitBreaker.layer({
 *   consecutiveFailures: 5,
 *   failureRate: { threshold: 0.5, window: "30 seconds", minimumCalls: 20 },
 *   openFor: Schedule.exponential("2 seconds").pipe(Schedule.upTo("1 minute")),
 *   halfOpenProbes: 2,
 *   successesToClose: 2
 * }).pipe(Layer.provide(CircuitBreakerStore.layerMemory))
 *
 * const Api = ApiClient.layer({ baseUrl: "https://api.example.com" }).pipe(Layer.provide(Breaker))
 * ```
 *
 * @since 0.3.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type { CircuitBreakerStore, CircuitBreakerStoreError, Outcome, Snapshot } from "./CircuitBreakerStore.js"
import * as internal from "./internal/circuitBreakerService.js"

/**
 * The circuit is open: the call was not sent. `retryAfter` is when the
 * circuit may admit again (for `Retry`, like a server's `Retry-After`).
 *
 * @since 0.3.0
 * @category errors
 */
export class CircuitOpenError extends Schema.TaggedError<CircuitOpenError>("@sluice/core/CircuitOpenError")(
  "CircuitOpenError",
  {
    key: Schema.String,
    retryAfter: Schema.OptionFromSelf(Schema.DurationFromSelf)
  }
) {
  override get message(): string {
    return `circuit "${this.key}" is open: the call was not sent` +
      Option.match(this.retryAfter, {
        onNone: () => "",
        onSome: (d) => `; it may admit again in ${Math.ceil(Duration.toMillis(d))}ms`
      })
  }
}

/**
 * What a call came to, for `classify`: an answer's status, or a failure
 * (transport error, timeout, or any other typed error).
 *
 * @since 0.3.0
 * @category models
 */
export type Observation =
  | { readonly _tag: "Response"; readonly status: number }
  | { readonly _tag: "Failure"; readonly error: unknown }

/**
 * @since 0.3.0
 * @category models
 */
export interface Options {
  /** Store key. Default `"sluice"`; breakers sharing a key (and a store) trip together. */
  readonly key?: string | undefined
  /** Open after this many failures in a row. Default 5; 0 turns this rule off. */
  readonly consecutiveFailures?: number | undefined
  /** Open when the failure rate over `window` (default 60 s) reaches `threshold`, with at least `minimumCalls` (default 20). */
  readonly failureRate?: {
    readonly threshold: number
    readonly window?: Duration.DurationInput | undefined
    readonly minimumCalls?: number | undefined
  } | undefined
  /**
   * How long the circuit stays open: a duration, or a `Schedule` whose
   * successive delays apply to successive trips in a row (the last repeats).
   * Default 5 s, doubling, at most 60 s.
   */
  readonly openFor?: Duration.DurationInput | Schedule.Schedule<unknown, unknown> | undefined
  /** Calls let through at once while half-open. Default 1. */
  readonly halfOpenProbes?: number | undefined
  /** Probe successes that close the circuit. Default 1. */
  readonly successesToClose?: number | undefined
  /** Overrides what counts as a failure; return `undefined` for the default. */
  readonly classify?: ((observation: Observation) => Outcome | undefined) | undefined
}

/**
 * @since 0.3.0
 * @category models
 */
export interface Service {
  readonly key: string
  /**
   * Runs `effect` if the circuit admits it, else fails with
   * `CircuitOpenError`; its outcome (as `observe` describes it, judged by the
   * breaker's classifier) is recorded. An interrupted call counts for nothing.
   */
  readonly run: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    observe: (exit: Exit.Exit<A, E>) => Observation
  ) => Effect.Effect<A, E | CircuitOpenError, R>
  /** The circuit's state as the store holds it. */
  readonly state: Effect.Effect<Snapshot, CircuitBreakerStoreError>
}

/**
 * @since 0.3.0
 * @category tags
 */
export class CircuitBreaker extends Context.Tag("@sluice/core/CircuitBreaker")<CircuitBreaker, Service>() {}

/**
 * The default classification: 5xx, transport errors and timeouts fail; 429,
 * authentication and limiter errors (nothing reached the server, or the
 * limiter owns it) count for nothing; any other answer succeeds.
 *
 * @since 0.3.0
 * @category classifiers
 */
export const defaultClassify: (observation: Observation) => Outcome = internal.defaultClassify

/**
 * @since 0.3.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<Service, never, CircuitBreakerStore> = internal.make

/**
 * @since 0.3.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<CircuitBreaker, never, CircuitBreakerStore> =>
  Layer.effect(CircuitBreaker, make(options))

/**
 * Applies a breaker to any `HttpClient`: an open circuit fails the request
 * with `CircuitOpenError` before it is sent; every answer is recorded, a
 * response or the `HttpStatusError` / `ServerSideRateLimitError` a
 * `TypedErrors.withTypedErrors` under it made of one (by its status).
 *
 * @example
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { Effect } from "effect"
 * import { CircuitBreaker } from "@sluice/core"
 *
 * const guarded = Effect.gen(function*() {
 *   const breaker = yield* CircuitBreaker.CircuitBreaker
 *   return CircuitBreaker.withCircuitBreaker(yield* HttpClient.HttpClient, breaker)
 * })
 * ```
 *
 * @since 0.3.0
 * @category combinators
 */
export const withCircuitBreaker: {
  (breaker: Service): <E, R>(self: HttpClient.HttpClient.With<E, R>) => HttpClient.HttpClient.With<E | CircuitOpenError, R>
  <E, R>(self: HttpClient.HttpClient.With<E, R>, breaker: Service): HttpClient.HttpClient.With<E | CircuitOpenError, R>
} = dual(
  2,
  <E, R>(self: HttpClient.HttpClient.With<E, R>, breaker: Service): HttpClient.HttpClient.With<E | CircuitOpenError, R> =>
    HttpClient.transform(
      self,
      (effect) => breaker.run(effect, internal.observeResponse<HttpClientResponse.HttpClientResponse, E>)
    )
)
