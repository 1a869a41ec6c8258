import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as CB from "../CircuitBreaker.js"
import { CircuitOpenError } from "../CircuitBreaker.js"
import type { Admission, Outcome, Params, Transition } from "../CircuitBreakerStore.js"
import { CircuitBreakerStore } from "../CircuitBreakerStore.js"

const transitions = Metric.counter("sluice_circuit_breaker_transitions", { incremental: true })
const rejections = Metric.counter("sluice_circuit_breaker_rejected", { incremental: true })
const stateGauge = Metric.gauge("sluice_circuit_breaker_state")
const STATE_VALUE: Record<Transition, number> = { closed: 0, opened: 1, "half-opened": 2 }

/** Trips in a row whose open period the schedule sets; later ones repeat the last. */
const SCHEDULED_TRIPS = 16

const defaultOpenFor = Schedule.exponential("5 seconds").pipe(
  Schedule.modifyDelay((_, d) => Duration.min(d, Duration.seconds(60)))
)

const FAILING_TAGS = new Set(["TransportError", "RequestTimeoutError"])
const SUCCEEDING_TAGS = new Set(["ResponseDecodeError", "ResponseTooLargeError"])

export const defaultClassify = (observation: CB.Observation): Outcome => {
  if (observation._tag === "Response") {
    return observation.status === 429 ? "ignored" : observation.status >= 500 ? "failure" : "success"
  }
  const error = observation.error as { readonly _tag?: unknown; readonly reason?: unknown } | undefined
  const tag = typeof error?._tag === "string" ? error._tag : undefined
  if (tag === undefined) return "ignored"
  if (FAILING_TAGS.has(tag)) return "failure"
  if (SUCCEEDING_TAGS.has(tag)) return "success"
  // @effect/platform's own errors, for a plain HttpClient: a transport failure, or a body that broke off.
  if (tag === "RequestError") return error!.reason === "Transport" ? "failure" : "ignored"
  if (tag === "ResponseError") return error!.reason === "Decode" ? "failure" : "success"
  return "ignored"
}

/**
 * What failed, as the breaker sees it: an answer made a typed error
 * (`HttpStatusError`, `ServerSideRateLimitError`: by `ApiClient` or by a
 * `TypedErrors.withTypedErrors`) is still the answer's status.
 */
export const observeFailure = <E>(cause: Cause.Cause<E>): CB.Observation => {
  // By tag, as everywhere errors are judged (Retry.decide): a second copy of this package makes
  // errors of other classes with the same tags.
  const error = Cause.failureOption(cause)
  if (Option.isNone(error)) return { _tag: "Failure", error: Cause.squash(cause) }
  const e = error.value as { readonly _tag?: unknown; readonly status?: unknown }
  if (e._tag === "HttpStatusError" && typeof e.status === "number") return { _tag: "Response", status: e.status }
  if (e._tag === "ServerSideRateLimitError") return { _tag: "Response", status: 429 }
  return { _tag: "Failure", error: error.value }
}

/** A plain client's exit: its status, or what failed. */
export const observeResponse = <A extends { readonly status: number }, E>(exit: Exit.Exit<A, E>): CB.Observation =>
  Exit.isSuccess(exit) ? { _tag: "Response", status: exit.value.status } : observeFailure(exit.cause)

const validate = (options: CB.Options) => {
  const whole = (n: number, name: string, min: number) => {
    if (!(Number.isInteger(n) && n >= min)) throw new Error(`CircuitBreaker: ${name} must be a whole number >= ${min} (got ${n})`)
    return n
  }
  const consecutiveFailures = whole(options.consecutiveFailures ?? 5, "consecutiveFailures", 0)
  const rate = options.failureRate
  if (rate !== undefined && !(rate.threshold > 0 && rate.threshold <= 1)) {
    throw new Error(`CircuitBreaker: failureRate.threshold must be in (0, 1] (got ${rate.threshold})`)
  }
  const windowMillis = Duration.toMillis(Duration.decode(rate?.window ?? "60 seconds"))
  if (!(windowMillis > 0 && Number.isFinite(windowMillis))) throw new Error("CircuitBreaker: failureRate.window must be a positive, finite duration")
  if (consecutiveFailures === 0 && rate === undefined) {
    throw new Error("CircuitBreaker: no rule to trip on: set consecutiveFailures >= 1 or a failureRate")
  }
  return {
    consecutiveFailures,
    failureRate: rate?.threshold ?? 0,
    windowMillis,
    minimumCalls: whole(rate?.minimumCalls ?? 20, "failureRate.minimumCalls", 1),
    halfOpenProbes: whole(options.halfOpenProbes ?? 1, "halfOpenProbes", 1),
    successesToClose: whole(options.successesToClose ?? 1, "successesToClose", 1)
  }
}

/** The open period of each trip in a row: the schedule's successive delays. */
const openPeriods = (openFor: CB.Options["openFor"]): Effect.Effect<ReadonlyArray<number>> => {
  if (openFor !== undefined && !Schedule.isSchedule(openFor)) {
    const d = Duration.decode(openFor as Duration.DurationInput)
    return Effect.succeed([Duration.isFinite(d) ? Duration.toMillis(d) : 86_400_000])
  }
  const schedule = (openFor as Schedule.Schedule<unknown, unknown> | undefined) ?? defaultOpenFor
  return Effect.map(
    Schedule.run(Schedule.delays(schedule), 0, Array.from({ length: SCHEDULED_TRIPS }, () => undefined)),
    (delays) => {
      const ms = Array.from(delays, (d) => Math.min(86_400_000, Math.max(1, Math.round(Duration.toMillis(d)))))
      return ms.length > 0 ? ms : [5_000]
    }
  )
}

export const make = (options: CB.Options = {}): Effect.Effect<CB.Service, never, CircuitBreakerStore> =>
  Effect.gen(function*() {
    const store = yield* CircuitBreakerStore
    const settings = yield* Effect.orDie(Effect.try({ try: () => validate(options), catch: (e) => e as Error }))
    const params: Params = { ...settings, openMillis: yield* openPeriods(options.openFor) }
    const key = options.key ?? "sluice"
    const classify = options.classify === undefined
      ? defaultClassify
      : (o: CB.Observation) => options.classify!(o) ?? defaultClassify(o)
    const changes = Metric.tagged(transitions, "key", key)
    const refused = Metric.tagged(rejections, "key", key)
    const gauge = Metric.tagged(stateGauge, "key", key)
    yield* Metric.set(gauge, 0)

    let storeDown = false
    const unreachable = (message: string) =>
      storeDown ? Effect.void : Effect.zipRight(
        Effect.sync(() => (storeDown = true)),
        Effect.logWarning(`sluice circuit breaker ${key}: store unreachable (${message}); calls go through`)
      )

    /** A state change: a metric, a span event on the call that caused it, a log line. */
    const announce = (transition: Transition | undefined): Effect.Effect<void> =>
      transition === undefined ? Effect.void : Effect.all([
        Metric.increment(Metric.tagged(changes, "to", transition)),
        Metric.set(gauge, STATE_VALUE[transition]),
        Effect.flatMap(Effect.option(Effect.currentSpan), (span) =>
          Option.isSome(span)
            ? Effect.flatMap(Effect.clockWith((c) => c.currentTimeNanos), (nanos) =>
              Effect.sync(() => span.value.event(`sluice.circuit_breaker.${transition}`, nanos, { "sluice.circuit_breaker.key": key })))
            : Effect.void),
        Effect.logInfo(`sluice circuit breaker ${key}: ${transition}`)
      ], { discard: true })

    const admit: Effect.Effect<Admission, CircuitOpenError> = store.admit(key, params).pipe(
      Effect.tap(() => Effect.sync(() => (storeDown = false))),
      Effect.catchAll((e) => Effect.as(unreachable(e.message), { admitted: true, probe: false, retryAfterMillis: 0, transition: undefined } as Admission)),
      Effect.tap((a) => announce(a.transition)),
      Effect.flatMap((a) =>
        a.admitted ? Effect.succeed(a) : Effect.zipRight(
          Metric.increment(refused),
          Effect.fail(new CircuitOpenError({ key, retryAfter: Option.some(Duration.millis(a.retryAfterMillis)) }))
        )
      )
    )

    const record = (outcome: Outcome, probe: boolean) =>
      store.record(key, outcome, probe, params).pipe(
        Effect.flatMap(announce),
        Effect.catchAll((e) => unreachable(e.message))
      )

    const run = <A, E, R>(effect: Effect.Effect<A, E, R>, observe: (exit: Exit.Exit<A, E>) => CB.Observation) =>
      Effect.flatMap(admit, (admission) =>
        Effect.onExit(effect, (exit) =>
          record(
            Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause) ? "ignored" : classify(observe(exit)),
            admission.probe
          )))

    return { key, run, state: store.snapshot(key) }
  })
