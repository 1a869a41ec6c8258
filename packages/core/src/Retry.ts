/**
 * `RetryPolicy`: retries that honour `Retry-After`, back off with jitter,
 * spend from a retry budget, and never replay a request the server may have
 * processed unless it is idempotent or carries an idempotency key.
 *
 * - `Retry-After` (seconds or HTTP-date) is a floor: the wait is at least
 *   that, jitter only adds. A `Retry-After` beyond `maxRetryAfter` is not
 *   waited for: the 429 is returned at once, carrying the value.
 * - Retried: 408, 429, 500, 502, 503, 504, transport errors and timeouts,
 *   transient authentication errors (a token endpoint outage),
 *   `CircuitOpenError` (after the wait it names, as for a `Retry-After`), and
 *   `TokenAcquisitionTimeoutError` when `retryTokenTimeouts` is on. Never
 *   another 4xx.
 * - GET, HEAD, PUT, DELETE, OPTIONS retry freely. POST and PATCH retry only
 *   when the failure proves the request was not processed (429, 503 with
 *   `Retry-After`, a connect-phase failure, a limiter or auth failure before
 *   sending) or the request carries an `Idempotency-Key` (sent unchanged on
 *   every attempt).
 * - A budget (AWS's retry quota: each retry costs tokens, each success
 *   refunds one) keeps a 503 storm from multiplying the load, and an
 *   optional `deadline` bounds all attempts together, limiter waits included.
 *
 * The backoff is a `Schedule` (exponential, jittered, capped) whose delay is
 * raised to the error's `Retry-After`. `ApiClient` applies the policy it
 * finds in context; `withRetry` applies one to any `HttpClient` (after
 * `TypedErrors.withTypedErrors`).
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { ApiClient, Retry } from "@sluice/core"
 *
 * const Api = ApiClient.layer({ baseUrl: "https://api.example.com" }).pipe(
 *   Layer.provide(Retry.layer({ maxAttempts: 5, maxRetryAfter: "2 minutes", deadline: "5 minutes" }))
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import { hasProperty } from "effect/Predicate"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import { RequestTimeoutError } from "./ApiError.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Attempts in all, the first included. Default 4. */
  readonly maxAttempts?: number | undefined
  /** First backoff. Default 250 ms; doubles each retry, jittered. */
  readonly baseDelay?: Duration.DurationInput | undefined
  /** Cap on the backoff (not on `Retry-After`). Default 20 seconds. */
  readonly maxDelay?: Duration.DurationInput | undefined
  /** A longer `Retry-After` fails at once instead of waiting. Default 60 seconds. */
  readonly maxRetryAfter?: Duration.DurationInput | undefined
  /** Retry `TokenAcquisitionTimeoutError` too. Default false. */
  readonly retryTokenTimeouts?: boolean | undefined
  /** The header that makes a POST/PATCH safe to replay. Default `Idempotency-Key`. */
  readonly idempotencyKeyHeader?: string | undefined
  /** The retry budget, or `false` for none. Default `{ capacity: 500, retryCost: 5, timeoutCost: 10, successRefund: 1 }`. */
  readonly budget?: Budget | false | undefined
  /** Bound on all attempts together, waits included: `RequestTimeoutError` with phase `deadline`. */
  readonly deadline?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Budget {
  readonly capacity: number
  readonly retryCost: number
  readonly timeoutCost: number
  readonly successRefund: number
}

/**
 * What a retry decision needs to know about the request.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestInfo {
  readonly method: string
  readonly headers: Readonly<Record<string, string>>
}

/**
 * The errors the policy knows how to judge; anything else is never retried.
 *
 * @since 0.1.0
 * @category models
 */
export type Retryable = { readonly _tag: string }

/** A failed attempt as the schedule sees it. */
interface Failure {
  readonly error: Retryable
  readonly request: RequestInfo
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly options: Options
  /** Runs `attempt` with retries for `request`. */
  readonly retry: <A, E extends Retryable, R>(
    attempt: Effect.Effect<A, E, R>,
    request: RequestInfo
  ) => Effect.Effect<A, E | RequestTimeoutError, R>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class RetryPolicy extends Context.Tag("@sluice/core/RetryPolicy")<RetryPolicy, Service>() {}

const IDEMPOTENT = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"])
const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504])

const retries = Metric.counter("sluice_retries", { incremental: true })
const budgetRefused = Metric.counter("sluice_retry_budget_exhausted", { incremental: true })

/**
 * `Some(retryAfter)` (possibly zero) when the error may be retried for this request, `None` when not.
 *
 * @since 0.1.0
 * @category utils
 */
export const decide = (
  retryable: Retryable,
  request: RequestInfo,
  options: Pick<Options, "retryTokenTimeouts" | "idempotencyKeyHeader" | "maxRetryAfter">
): Option.Option<Duration.Duration> => {
  // Sluice's errors carry these fields by tag; anything else is read as absent.
  const error = retryable as Retryable & Readonly<Record<string, unknown>>
  const keyHeader = (options.idempotencyKeyHeader ?? "idempotency-key").toLowerCase()
  const replayable = IDEMPOTENT.has(request.method.toUpperCase()) || request.headers[keyHeader] !== undefined
  const retryAfter: Option.Option<Duration.Duration> = Option.isOption(error["retryAfter"])
    ? (error["retryAfter"] as Option.Option<Duration.Duration>)
    : Option.none()
  const maxRetryAfter = Duration.decode(options.maxRetryAfter ?? "60 seconds")
  if (Option.isSome(retryAfter) && Duration.greaterThan(retryAfter.value, maxRetryAfter)) return Option.none()
  const floor = Option.getOrElse(retryAfter, () => Duration.zero)
  switch (error._tag) {
    case "ServerSideRateLimitError":
    case "CircuitOpenError":
      // Nothing was processed: either may be replayed, after the wait it names.
      return Option.some(floor)
    case "HttpStatusError": {
      if (typeof error["status"] !== "number" || !RETRY_STATUS.has(error["status"])) return Option.none()
      if (replayable || (error["status"] === 503 && Option.isSome(retryAfter))) return Option.some(floor)
      return Option.none()
    }
    case "TransportError":
      return error["phase"] === "connect" || replayable ? Option.some(floor) : Option.none()
    case "RequestTimeoutError":
      if (error["phase"] === "deadline") return Option.none()
      return error["phase"] === "connect" || replayable ? Option.some(floor) : Option.none()
    case "AuthenticationError":
      return error["transient"] === true ? Option.some(floor) : Option.none()
    case "TokenAcquisitionTimeoutError":
      return options.retryTokenTimeouts ? Option.some(floor) : Option.none()
    default:
      return Option.none()
  }
}

const isTimeout = (error: Retryable & Readonly<Record<string, unknown>>) =>
  error._tag === "RequestTimeoutError" || error._tag === "TokenAcquisitionTimeoutError" ||
  (error._tag === "AuthenticationError" && error["reason"] === "TokenEndpointTimeout")

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Service> =>
  Effect.sync(() => {
    const maxAttempts = options.maxAttempts ?? 4
    if (!(Number.isInteger(maxAttempts) && maxAttempts >= 1)) {
      throw new Error(`Retry: maxAttempts must be a whole number >= 1 (got ${maxAttempts})`)
    }
    const baseDelay = Duration.decode(options.baseDelay ?? "250 millis")
    const maxDelay = Duration.decode(options.maxDelay ?? "20 seconds")
    const deadline = options.deadline !== undefined ? Duration.decode(options.deadline) : undefined
    const budget = options.budget === false
      ? undefined
      : options.budget ?? { capacity: 500, retryCost: 5, timeoutCost: 10, successRefund: 1 }
    let tokens = budget?.capacity ?? 0

    const spend = (error: Retryable): boolean => {
      // The budget keeps retries from multiplying the load on a failing server; a retry after an
      // open circuit sent nothing, and waits for the circuit instead.
      if (budget === undefined || error._tag === "CircuitOpenError") return true
      const cost = isTimeout(error as Retryable & Readonly<Record<string, unknown>>) ? budget.timeoutCost : budget.retryCost
      if (tokens < cost) return false
      tokens -= cost
      return true
    }

    // One schedule for the policy; its input carries the request, since whether an error may be
    // replayed depends on the request's method and headers.
    const schedule = Schedule.exponential(baseDelay, 2).pipe(
      Schedule.jittered,
      Schedule.modifyDelay((_, d) => Duration.min(d, maxDelay)),
      Schedule.intersect(Schedule.recurs(maxAttempts - 1)),
      Schedule.zipRight(Schedule.identity<Failure>()),
      Schedule.check(({ error, request }) => Option.isSome(decide(error, request, options))),
      // Retry-After is a floor; a little jitter on top keeps replicas from returning at one instant.
      Schedule.modifyDelayEffect(({ error, request }, d) => {
        const floor = Option.getOrElse(decide(error, request, options), () => Duration.zero)
        if (Duration.lessThanOrEqualTo(floor, d)) return Effect.succeed(d)
        // whole milliseconds: a fractional one is a fractional nanosecond count, which the TestClock cannot sleep
        return Effect.map(Random.next, (u) => Duration.millis(Math.ceil(Duration.toMillis(floor) * (1 + 0.1 * u))))
      }),
      Schedule.check(({ error }) => spend(error)),
      Schedule.tapOutput(() => Metric.increment(retries))
    )

    const retry = <A, E extends Retryable, R>(attempt: Effect.Effect<A, E, R>, request: RequestInfo) => {
      // The schedule's driver is made at the first failure, not per request: `Effect.retry` makes
      // one (and provides its iteration metadata to every attempt) for each request, though most
      // succeed at once and never need it.
      const succeeded = (a: A) =>
        Effect.sync(() => {
          if (budget !== undefined) tokens = Math.min(budget.capacity, tokens + budget.successRefund)
          return a
        })
      const failed = (error: E) =>
        budget !== undefined && tokens < budget.retryCost
          ? Effect.zipRight(Metric.increment(budgetRefused), Effect.fail(error))
          : Effect.fail(error)
      const again = (driver: Schedule.ScheduleDriver<unknown, Failure, never>) => (error: E): Effect.Effect<A, E, R> =>
        Effect.matchEffect(driver.next({ error, request }), {
          onFailure: () => failed(error),
          onSuccess: () => Effect.matchEffect(attempt, { onSuccess: succeeded, onFailure: again(driver) })
        })
      const withRetries = Effect.matchEffect(attempt, {
        onSuccess: succeeded,
        onFailure: (error) => Effect.flatMap(Schedule.driver(schedule), (driver) => again(driver)(error))
      })
      return deadline === undefined
        ? withRetries
        : Effect.timeoutFail(withRetries, {
          duration: deadline,
          onTimeout: () => new RequestTimeoutError({ method: request.method, url: "(all attempts)", phase: "deadline", timeout: deadline })
        })
    }

    return { options, retry }
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<RetryPolicy> => Layer.effect(RetryPolicy, make(options))

/**
 * Applies a policy to any `HttpClient`: each request is retried as the
 * policy decides from its error, its method and its headers. The policy
 * judges Sluice's typed errors, so put it outside `TypedErrors.withTypedErrors`
 * (a platform `HttpClientError` is never retried, and an error answer is not
 * a failure until that combinator makes it one). A request whose body is a
 * stream can be sent once only: give such requests a body that can be read
 * again, or do not retry them.
 *
 * @example
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { Effect } from "effect"
 * import { Retry, TypedErrors } from "@sluice/core"
 *
 * const client = Effect.gen(function* () {
 *   const policy = yield* Retry.make({ maxAttempts: 3 })
 *   return (yield* HttpClient.HttpClient).pipe(TypedErrors.withTypedErrors(), Retry.withRetry(policy))
 * })
 * ```
 *
 * @since 0.4.0
 * @category combinators
 */
export const withRetry: {
  (policy: Service): <E extends Retryable, R>(
    self: HttpClient.HttpClient.With<E, R>
  ) => HttpClient.HttpClient.With<E | RequestTimeoutError, R>
  <E extends Retryable, R>(
    self: HttpClient.HttpClient.With<E, R>,
    policy: Service
  ): HttpClient.HttpClient.With<E | RequestTimeoutError, R>
} = dual(
  (args) => hasProperty(args[0], HttpClient.TypeId),
  <E extends Retryable, R>(self: HttpClient.HttpClient.With<E, R>, policy: Service): HttpClient.HttpClient.With<E | RequestTimeoutError, R> =>
    HttpClient.transform(self, (effect, request) => policy.retry(effect, request))
)
