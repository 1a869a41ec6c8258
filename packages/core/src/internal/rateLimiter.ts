import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import type * as MetricKeyType from "effect/MetricKeyType"
import * as Option from "effect/Option"
import * as Clock from "effect/Clock"
import type * as RL from "../RateLimiter.js"
import { TokenAcquisitionTimeoutError } from "../RateLimiter.js"
import { RateLimiterStore } from "../RateLimiterStore.js"
import type { Feedback, RateLimiterStoreError, Reservation, ReserveOptions, Store } from "../RateLimiterStore.js"
import * as RateLimitHeaders from "../RateLimitHeaders.js"
import * as RetryAfter from "../RetryAfter.js"
import type * as Adaptive from "./adaptive.js"
import { outcomeOfStatus } from "./outcome.js"

/** A pause is bounded even when `maxPause` is not: a day, far inside every store's integer range. */
const MAX_PAUSE_MILLIS = 86_400_000

export const formatMillis = (d: Duration.Duration): string =>
  Duration.isFinite(d) ? `${Math.round(Duration.toMillis(d))}ms` : "forever"

// Metrics, tagged with the limiter's key.
const permitsGranted = MetricKey.counter("sluice_ratelimiter_permits_granted", { incremental: true })
const acquisitionTimeouts = MetricKey.counter("sluice_ratelimiter_timeouts", { incremental: true })
const serverRateLimited = MetricKey.counter("sluice_ratelimiter_429s", { incremental: true })
const waitMillis = MetricKey.histogram(
  "sluice_ratelimiter_wait_ms",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 18 })
)
const currentRate = MetricKey.gauge("sluice_ratelimiter_rate_per_second")

/**
 * The metric of `metricKey` tagged with the limiter's key, tagged in its key.
 * `Metric.tagged` tags at each update instead: a new tag array, a hash of the
 * whole key and a registry lookup per permit. A metric made from a tagged
 * key finds its registry entry once.
 */
const keyed = <Type extends MetricKeyType.MetricKeyType<any, any>>(metricKey: MetricKey.MetricKey<Type>, key: string) =>
  Metric.fromMetricKey(MetricKey.tagged(metricKey, "key", key))

export const outcomeOfResponse = (
  status: number,
  headers: Readonly<Record<string, string>>,
  nowMillis: number
): RL.Outcome => outcomeOfStatus(status, headers, () => RetryAfter.parse(headers["retry-after"], nowMillis))

export const classifyResponseExit = <E>(
  exit: Exit.Exit<HttpClientResponse.HttpClientResponse, E>,
  nowMillis: number
): RL.Outcome => {
  if (Exit.isSuccess(exit)) return outcomeOfResponse(exit.value.status, exit.value.headers, nowMillis)
  // An answer a TypedErrors.withTypedErrors inside made a failure is still an answer (its headers
  // are gone: no quota headers from it).
  const error = Cause.failureOption(exit.cause)
  if (Option.isNone(error)) return { _tag: "Neutral" }
  // By tag, as everywhere errors are judged (Retry.decide).
  const e = error.value as { readonly _tag?: unknown; readonly status?: unknown; readonly retryAfter?: unknown }
  const retryAfter = () => Option.isOption(e.retryAfter) ? e.retryAfter as Option.Option<Duration.Duration> : Option.none()
  if (e._tag === "ServerSideRateLimitError") return outcomeOfStatus(429, {}, retryAfter)
  if (e._tag === "HttpStatusError" && typeof e.status === "number") return outcomeOfStatus(e.status, {}, retryAfter)
  return { _tag: "Neutral" }
}

interface Acquirer {
  /** One permit (the fast path: built once). */
  readonly acquire: Effect.Effect<Reservation, TokenAcquisitionTimeoutError | RateLimiterStoreError>
  /** `weight` permits at once (a request's cost). */
  readonly acquireWeighted: (weight: number) => Effect.Effect<Reservation, TokenAcquisitionTimeoutError | RateLimiterStoreError>
}

/**
 * Reserve a slot, then sleep locally until it; re-check for pauses set
 * meanwhile (they move the whole queue back). An interrupted waiter gives
 * its slot back.
 */
const makeAcquirer = (
  store: Store,
  key: string,
  maxWait: Duration.Duration,
  reserveOptions: ReserveOptions
): Acquirer => {
  const maxWaitMillis = Duration.isFinite(maxWait) ? Duration.toMillis(maxWait) : Infinity
  const granted = keyed(permitsGranted, key)
  const timeouts = keyed(acquisitionTimeouts, key)
  const waits = keyed(waitMillis, key)
  const timeout = (waited: number) =>
    Effect.zipRight(
      Metric.increment(timeouts),
      Effect.fail(new TokenAcquisitionTimeoutError({ waited: Duration.millis(waited), maxWait, key }))
    )
  /**
   * The granted reservation; one that waited out pauses set after it was made went later than its
   * slot, and its slot is moved to when it went (the adaptive limiter learns quota windows from it).
   */
  const grant = (reservation: Reservation, waited: number, paid = 0) =>
    // Both metrics in one step (`Metric.increment` and `Metric.update` read the labels once each).
    FiberRef.getWith(FiberRef.currentMetricLabels, (labels) => {
      granted.unsafeUpdate(1, labels)
      waits.unsafeUpdate(waited, labels)
      return Effect.succeed(paid > 0 ? { ...reservation, slot: reservation.slot + paid } : reservation)
    })

  const adaptive = reserveOptions.intervalMillis === undefined

  /**
   * Sleeps until the slot, then asks what pauses set meanwhile owe. An
   * adaptive waiter whose epoch has passed (the rate dropped while it
   * queued) reserves again at the new rate instead of going at the old
   * spacing: a queue reserved at the old rate would overrun the server
   * right after the pause.
   */
  const waitFor = (
    reservation: Reservation,
    before: number
  ): Effect.Effect<Reservation, TokenAcquisitionTimeoutError | RateLimiterStoreError> => {
    let paid = 0
    const loop = (
      waited: number,
      sleepMillis: number
    ): Effect.Effect<Reservation, TokenAcquisitionTimeoutError | RateLimiterStoreError> =>
      Effect.zipRight(
        Effect.sleep(Duration.millis(sleepMillis)),
        Effect.flatMap(store.owed(key, reservation), (owed) => {
          const extra = owed.millis - paid
          const total = waited + sleepMillis
          if (adaptive && owed.epoch !== reservation.epoch) return reserveAgain(total, reservation.weight)
          if (extra <= 0) return grant(reservation, total, paid)
          if (total + extra > maxWaitMillis) {
            return Effect.zipRight(Effect.ignore(store.release(key, reservation)), timeout(total))
          }
          paid = owed.millis
          return loop(total, extra)
        })
      )
    return Effect.onInterrupt(
      loop(before, reservation.waitMillis),
      () => Effect.ignore(store.release(key, reservation))
    )
  }

  const reserveAgain = (waited: number, weight: number | undefined) =>
    Effect.flatMap(
      Effect.suspend(() => store.reserve(key, { ...reserveOptions, weight, maxWaitMillis: Math.max(0, maxWaitMillis - waited) })),
      (r) => r._tag === "Rejected" ? timeout(waited) : r.waitMillis <= 0 ? grant(r, waited) : waitFor(r, waited)
    )

  const acquireWith = (options: ReserveOptions) =>
    Effect.flatMap(Effect.suspend(() => store.reserve(key, options)), (r) => {
      if (r._tag === "Rejected") return timeout(0)
      // The fast path: a free permit costs one synchronous store call, no fiber, no queue, no span.
      if (r.waitMillis <= 0) return grant(r, 0)
      return Effect.withSpan(waitFor(r, 0), "sluice.ratelimiter.wait", {
        captureStackTrace: false,
        attributes: { "sluice.ratelimiter.key": key, "sluice.ratelimiter.wait_ms": Math.round(r.waitMillis), "sluice.ratelimiter.weight": options.weight ?? 1 }
      })
    })
  const acquire = acquireWith(reserveOptions)
  return {
    acquire,
    acquireWeighted: (weight) => weight === 1 ? acquire : acquireWith({ ...reserveOptions, weight })
  }
}

/**
 * A limiter's service. `learnsFrom`: what `report` is for. The adaptive
 * limiter learns from every answer, so the report runs in an exit handler,
 * uninterruptibly. A fixed bucket only counts 429s in a metric (a 429 may
 * come as a failure, from `ApiClient`, or as a response, through
 * `RateLimiter.limit` on a plain client): its report runs after the attempt
 * on either path, without the exit handler's uninterruptible region (five
 * runtime steps fewer per request; an interrupted attempt had no answer to
 * count).
 */
const makeService = (
  key: string,
  options: RL.CommonOptions,
  acquireWeighted: (weight: number) => Effect.Effect<RL.Permit, TokenAcquisitionTimeoutError | RateLimiterStoreError>,
  report: (permit: RL.Permit, outcome: RL.Outcome) => Effect.Effect<void>,
  learnsFrom: "answers" | "429s"
): Effect.Effect<RL.Service> =>
  Effect.gen(function*() {
    if (options.concurrency !== undefined && !(options.concurrency >= 1)) {
      return yield* Effect.dieMessage(`RateLimiter: concurrency must be >= 1 (got ${options.concurrency})`)
    }
    const semaphore = options.concurrency !== undefined ? yield* Effect.makeSemaphore(options.concurrency) : undefined
    const appliesTo = options.appliesTo ?? (() => true)
    const unit = options.unit ?? "requests"
    const acquire = acquireWeighted(1)
    /** What a request of this cost takes here: its cost for a tokens limiter, one permit for a requests limiter. */
    const weightOf = (cost: number | undefined) =>
      unit === "tokens" && cost !== undefined && Number.isFinite(cost) && cost > 0 ? cost : 1
    const run = <A, E, R>(effect: Effect.Effect<A, E, R>, classify: (exit: Exit.Exit<A, E>) => RL.Outcome, cost?: number) =>
      Effect.flatMap(weightOf(cost) === 1 ? acquire : acquireWeighted(weightOf(cost)), (permit) => {
        const reported = learnsFrom === "answers"
          ? Effect.onExit(effect, (exit) => report(permit, classify(exit)))
          : Effect.matchCauseEffect(effect, {
            onFailure: (cause) => Effect.zipRight(report(permit, classify(Exit.failCause(cause))), Effect.failCause(cause)),
            onSuccess: (a) => Effect.as(report(permit, classify(Exit.succeed(a))), a)
          })
        return semaphore === undefined ? reported : semaphore.withPermits(1)(reported)
      })
    return { key, unit, appliesTo, acquire, acquireWeighted, report, run }
  })

/**
 * Several limiters as one: a request takes a permit from each that applies
 * to it, in order (a requests-per-minute and a tokens-per-minute quota
 * together), and its outcome is reported to each.
 */
export const all = (limiters: ReadonlyArray<RL.Service>): RL.Service => {
  if (limiters.length === 1) return limiters[0]!
  const run = <A, E, R>(effect: Effect.Effect<A, E, R>, classify: (exit: Exit.Exit<A, E>) => RL.Outcome, cost?: number) =>
    limiters.reduceRight<Effect.Effect<A, E | TokenAcquisitionTimeoutError | RateLimiterStoreError, R>>(
      (inner, limiter) => limiter.run(inner, classify as (exit: Exit.Exit<A, E | TokenAcquisitionTimeoutError | RateLimiterStoreError>) => RL.Outcome, cost),
      effect
    )
  const acquireWeighted = (weight: number) =>
    Effect.map(Effect.forEach(limiters, (l) => l.acquireWeighted(l.unit === "tokens" ? weight : 1)), (parts): RL.Permit => ({ epoch: 0, parts }))
  return {
    key: limiters.map((l) => l.key).join("+"),
    unit: "requests",
    appliesTo: (request) => limiters.some((l) => l.appliesTo(request)),
    acquire: acquireWeighted(1),
    acquireWeighted,
    report: (permit, outcome) =>
      Effect.forEach(limiters, (l, i) => {
        const part = permit.parts?.[i]
        return part === undefined ? Effect.void : l.report(part, outcome)
      }, { discard: true }),
    run
  }
}

const validate = (options: RL.CommonOptions) => {
  const window = Duration.decode(options.window)
  if (!(options.limit > 0) || !Number.isFinite(options.limit)) {
    throw new Error(`RateLimiter: limit must be a positive number (got ${options.limit})`)
  }
  if (!Duration.isFinite(window) || Duration.toMillis(window) <= 0) {
    throw new Error(`RateLimiter: window must be a positive, finite duration (got ${String(options.window)})`)
  }
  return { perSecond: options.limit / (Duration.toMillis(window) / 1000), maxWait: Duration.decode(options.maxWait ?? "45 seconds") }
}

export const makeTokenBucket = (options: RL.TokenBucketOptions): Effect.Effect<RL.Service, never, RateLimiterStore> =>
  Effect.gen(function*() {
    const store = yield* RateLimiterStore
    const { maxWait, perSecond } = yield* Effect.try(() => validate(options)).pipe(Effect.orDie)
    const key = options.key ?? "sluice"
    const intervalMillis = 1000 / perSecond
    const burst = options.burst ?? Math.max(1, Math.floor(perSecond))
    const reserve = { intervalMillis, burst, maxWaitMillis: Duration.isFinite(maxWait) ? Duration.toMillis(maxWait) : Infinity }
    const acquirer = makeAcquirer(store, key, maxWait, reserve)
    const limited = keyed(serverRateLimited, key)
    yield* Metric.set(keyed(currentRate, key), perSecond)
    return yield* makeService(
      key,
      options,
      // The reservation is the permit (its epoch and weight): nothing else is reported back.
      acquirer.acquireWeighted,
      (_, outcome) => outcome._tag === "RateLimited" ? Metric.increment(limited) : Effect.void,
      "429s"
    )
  })

/**
 * The adaptive limiter: permits at the rate the store computes from the
 * shared state, and every answer reported back to the store as one atomic
 * decision (`internal/adaptive.ts` says what it learns and from what).
 */
export const makeAdaptive = (options: RL.AdaptiveOptions): Effect.Effect<RL.Service, never, RateLimiterStore> =>
  Effect.gen(function*() {
    const store = yield* RateLimiterStore
    const { maxWait, perSecond: maxRate } = yield* Effect.try(() => validate(options)).pipe(Effect.orDie)
    const key = options.key ?? "sluice"
    const maxPause = Duration.decode(options.maxPause ?? "60 seconds")
    const params: Adaptive.Params = {
      maxRate,
      floorRate: maxRate * (options.floor ?? 0.01),
      margin: options.margin ?? 0.05,
      penalty: options.penalty ?? 0.3,
      maxPauseMillis: Duration.isFinite(maxPause) ? Duration.toMillis(maxPause) : MAX_PAUSE_MILLIS
    }
    const maxWaitMillis = Duration.isFinite(maxWait) ? Duration.toMillis(maxWait) : Infinity
    const rateGauge = keyed(currentRate, key)
    const limited = keyed(serverRateLimited, key)
    yield* Metric.set(rateGauge, maxRate)

    const acquirer = makeAcquirer(store, key, maxWait, { intervalMillis: undefined, burst: 1, maxWaitMillis, adaptive: params })
    const unit = options.unit ?? "requests"
    const acquireWeighted = (weight: number) =>
      Effect.map(acquirer.acquireWeighted(weight), (r): RL.Permit => ({ epoch: r.epoch, sentAt: r.slot, weight }))

    const tell = (feedback: Feedback) =>
      Effect.flatMap(store.feedback(key, feedback, params), (result) => Metric.set(rateGauge, result.rate))

    const report = (permit: RL.Permit, outcome: RL.Outcome): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeMillis, (now): Effect.Effect<void, RateLimiterStoreError> => {
        if (outcome._tag === "Neutral") return Effect.void
        const quota = RateLimitHeaders.parse(outcome.headers, now, unit)
        if (outcome._tag === "Success") return tell({ _tag: "Success", quota, sentAt: permit.sentAt, weight: permit.weight })
        const retryAfterMillis = Option.match(outcome.retryAfter, {
          onNone: () => undefined,
          onSome: (d) => Duration.isFinite(d) ? Math.min(MAX_PAUSE_MILLIS, Duration.toMillis(d)) : MAX_PAUSE_MILLIS
        })
        return Effect.zipRight(
          Metric.increment(limited),
          tell({ _tag: "RateLimited", epoch: permit.epoch, retryAfterMillis, quota })
        )
      }).pipe(
        Effect.catchAll((e) => Effect.logWarning(`sluice rate limiter ${key}: feedback not stored: ${e.message}`))
      )

    return yield* makeService(key, options, acquireWeighted, report, "answers")
  })
