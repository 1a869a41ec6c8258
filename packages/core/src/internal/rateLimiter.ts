import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import type * as RL from "../RateLimiter.js"
import { TokenAcquisitionTimeoutError } from "../RateLimiter.js"
import { RateLimiterStore } from "../RateLimiterStore.js"
import type { RateLimiterStoreError, Reservation, Store } from "../RateLimiterStore.js"
import * as RetryAfter from "../RetryAfter.js"

export const formatMillis = (d: Duration.Duration): string =>
  Duration.isFinite(d) ? `${Math.round(Duration.toMillis(d))}ms` : "forever"

// Metrics, tagged with the limiter's key.
const permitsGranted = Metric.counter("sluice_ratelimiter_permits_granted", { incremental: true })
const acquisitionTimeouts = Metric.counter("sluice_ratelimiter_timeouts", { incremental: true })
const serverRateLimited = Metric.counter("sluice_ratelimiter_429s", { incremental: true })
const waitMillis = Metric.histogram(
  "sluice_ratelimiter_wait_ms",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 18 })
)
const currentRate = Metric.gauge("sluice_ratelimiter_rate_per_second")

const headerNumber = (headers: Readonly<Record<string, string>>, ...names: ReadonlyArray<string>) => {
  for (const name of names) {
    const v = headers[name]
    if (v !== undefined) {
      const n = Number(v.split(",")[0])
      if (Number.isFinite(n)) return n
    }
  }
  return undefined
}

export const outcomeOfResponse = (
  status: number,
  headers: Readonly<Record<string, string>>,
  nowMillis: number
): RL.Outcome =>
  status === 429
    ? { _tag: "RateLimited", retryAfter: RetryAfter.parse(headers["retry-after"], nowMillis), headers }
    : status >= 500
    ? { _tag: "Neutral" }
    : { _tag: "Success", headers }

export const classifyResponseExit = <E>(exit: Exit.Exit<HttpClientResponse.HttpClientResponse, E>): RL.Outcome =>
  Exit.isSuccess(exit) ? outcomeOfResponse(exit.value.status, exit.value.headers, Date.now()) : { _tag: "Neutral" }

/**
 * When a server announces its quota is spent (`RateLimit-Remaining: 0`),
 * how long until it resets, in ms. `X-RateLimit-Reset` is often an epoch
 * time in seconds (GitHub): a value past 1e9 is read as one.
 */
export const spentQuotaPause = (headers: Readonly<Record<string, string>>, nowMillis: number): number | undefined => {
  const remaining = headerNumber(headers, "ratelimit-remaining", "x-ratelimit-remaining")
  if (remaining === undefined || remaining > 0) return undefined
  const reset = headerNumber(headers, "ratelimit-reset", "x-ratelimit-reset")
  if (reset === undefined || reset <= 0) return undefined
  const millis = reset > 1e9 ? reset * 1000 - nowMillis : reset * 1000
  return millis > 0 ? Math.min(millis, 3_600_000) : undefined
}

interface Acquirer {
  readonly acquire: Effect.Effect<Reservation, TokenAcquisitionTimeoutError | RateLimiterStoreError>
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
  reserveOptions: () => Parameters<Store["reserve"]>[1],
  onWait: (millis: number) => void
): Acquirer => {
  const maxWaitMillis = Duration.isFinite(maxWait) ? Duration.toMillis(maxWait) : Infinity
  const granted = Metric.tagged(permitsGranted, "key", key)
  const timeouts = Metric.tagged(acquisitionTimeouts, "key", key)
  const waits = Metric.tagged(waitMillis, "key", key)
  const timeout = (waited: number) =>
    Effect.zipRight(
      Metric.increment(timeouts),
      Effect.fail(new TokenAcquisitionTimeoutError({ waited: Duration.millis(waited), maxWait, key }))
    )
  const grant = (reservation: Reservation, waited: number) =>
    Effect.as(Effect.zipRight(Metric.increment(granted), Metric.update(waits, waited)), reservation)

  const waitFor = (reservation: Reservation): Effect.Effect<Reservation, TokenAcquisitionTimeoutError | RateLimiterStoreError> => {
    onWait(reservation.waitMillis)
    let paid = 0
    const loop = (waited: number, sleepMillis: number): Effect.Effect<number, TokenAcquisitionTimeoutError | RateLimiterStoreError> =>
      Effect.zipRight(
        Effect.sleep(Duration.millis(sleepMillis)),
        Effect.flatMap(store.owed(key, reservation), (owed) => {
          const extra = owed - paid
          const total = waited + sleepMillis
          if (extra <= 0) return Effect.succeed(total)
          if (total + extra > maxWaitMillis) {
            return Effect.zipRight(Effect.ignore(store.release(key, reservation)), timeout(total))
          }
          paid = owed
          return loop(total, extra)
        })
      )
    return Effect.onInterrupt(
      Effect.flatMap(loop(0, reservation.waitMillis), (waited) => grant(reservation, waited)),
      () => Effect.ignore(store.release(key, reservation))
    )
  }

  return {
    acquire: Effect.flatMap(Effect.suspend(() => store.reserve(key, reserveOptions())), (r) => {
      if (r._tag === "Rejected") return timeout(0)
      // The fast path: a free permit costs one synchronous store call, no fiber, no queue.
      if (r.waitMillis <= 0) return grant(r, 0)
      return waitFor(r)
    })
  }
}

const makeService = (
  key: string,
  options: RL.CommonOptions,
  acquire: Effect.Effect<RL.Permit, TokenAcquisitionTimeoutError | RateLimiterStoreError>,
  report: (permit: RL.Permit, outcome: RL.Outcome) => Effect.Effect<void>
): Effect.Effect<RL.Service> =>
  Effect.gen(function*() {
    if (options.concurrency !== undefined && !(options.concurrency >= 1)) {
      return yield* Effect.dieMessage(`RateLimiter: concurrency must be >= 1 (got ${options.concurrency})`)
    }
    const semaphore = options.concurrency !== undefined ? yield* Effect.makeSemaphore(options.concurrency) : undefined
    const appliesTo = options.appliesTo ?? (() => true)
    const run = <A, E, R>(effect: Effect.Effect<A, E, R>, classify: (exit: Exit.Exit<A, E>) => RL.Outcome) =>
      Effect.flatMap(acquire, (permit) => {
        const reported = Effect.onExit(effect, (exit) => report(permit, classify(exit)))
        return semaphore === undefined ? reported : semaphore.withPermits(1)(reported)
      })
    return { key, appliesTo, acquire, report, run }
  })

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
    const acquirer = makeAcquirer(store, key, maxWait, () => reserve, () => {})
    const limited = Metric.tagged(serverRateLimited, "key", key)
    yield* Metric.set(Metric.tagged(currentRate, "key", key), perSecond)
    return yield* makeService(
      key,
      options,
      acquirer.acquire,
      (_, outcome) => outcome._tag === "RateLimited" ? Metric.increment(limited) : Effect.void
    )
  })

/**
 * The adaptive limiter.
 *
 * It starts at `limit` per `window` and paces permits evenly (burst 1). On a
 * 429 it makes **one** decrease per congestion event: the store applies a
 * decrease only for the epoch it was computed in, so 64 requests in flight
 * that all get 429 lower the rate once. The decrease learns the server's
 * capacity instead of halving blindly:
 *
 * - soon (≤ 2 s) after a start or a pause, the server's bucket was full, so
 *   the successes `S` admitted at rate `r` before the 429 tell its capacity:
 *   with a bucket of one second's worth, `S = r·c / (r − c)`, so
 *   `c = S·r / (r + S)`. The new rate is `min(r × (1 − penalty), c)`.
 * - after a long hold, a 429 means a small overshoot: step down gently
 *   (`penalty / 6`) instead of falling into a sawtooth.
 *
 * `Retry-After` pauses every caller sharing the limiter, queued ones too
 * (the queue moves back as a whole). `RateLimit-Remaining: 0` with a reset
 * pauses until the reset, before any 429. Growth happens only while demand
 * is at the limit (a caller had to wait in the last second), starts 2 s
 * after a decrease, and reaches `recovery` per second 5 s later. 5xx and
 * transport errors change nothing.
 */
export const makeAdaptive = (options: RL.AdaptiveOptions): Effect.Effect<RL.Service, never, RateLimiterStore> =>
  Effect.gen(function*() {
    const store = yield* RateLimiterStore
    const { maxWait, perSecond: maxRate } = yield* Effect.try(() => validate(options)).pipe(Effect.orDie)
    const key = options.key ?? "sluice"
    const floorRate = maxRate * (options.floor ?? 0.1)
    const penalty = options.penalty ?? 0.3
    const recovery = options.recovery ?? 0.05
    const maxWaitMillis = Duration.isFinite(maxWait) ? Duration.toMillis(maxWait) : Infinity
    const clock = yield* Effect.clock
    const localNow = () => clock.unsafeCurrentTimeMillis()
    const rateGauge = Metric.tagged(currentRate, "key", key)
    const limited = Metric.tagged(serverRateLimited, "key", key)

    const startedAt = yield* Effect.orDie(store.now)
    let knownEpoch = (yield* Effect.orDie(store.adaptiveState(key, maxRate))).epoch
    let lastDecreaseAt = startedAt
    let pausedUntil = 0
    let saturatedAt = Number.NEGATIVE_INFINITY
    let lastGrowthAt = localNow()
    yield* Metric.set(rateGauge, maxRate)

    const acquirer = makeAcquirer(
      store,
      key,
      maxWait,
      () => ({ intervalMillis: undefined, burst: 1, maxWaitMillis, initialRate: maxRate }),
      () => {
        saturatedAt = localNow()
      }
    )
    const acquire = Effect.map(acquirer.acquire, (r): RL.Permit & { readonly rate: number } => ({
      epoch: r.epoch,
      rate: 1000 / r.intervalMillis
    }))

    const onSuccess = (permit: RL.Permit & { readonly rate?: number }, headers: Readonly<Record<string, string>>) =>
      Effect.suspend(() => {
        const effects: Array<Effect.Effect<unknown, RateLimiterStoreError>> = [store.recordSuccess(key)]
        const pause = spentQuotaPause(headers, Date.now())
        if (pause !== undefined) {
          pausedUntil = Math.max(pausedUntil, localNow() + pause)
          effects.push(store.adjust(key, { _tag: "Pause", pauseMillis: pause }))
        }
        const t = localNow()
        const rate = permit.rate ?? maxRate
        if (t - saturatedAt < 1000 && t - lastGrowthAt >= 100 && rate < maxRate) {
          const ramp = Math.min(1, Math.max(0, (t - lastDecreaseAt - 2000) / 5_000))
          const next = Math.min(maxRate, rate + rate * recovery * ramp * Math.min(1, (t - lastGrowthAt) / 1000))
          lastGrowthAt = t
          if (next > rate) effects.push(store.adjust(key, { _tag: "SetRate", rate: next }), Metric.set(rateGauge, next))
        } else if (t - lastGrowthAt >= 1000) {
          lastGrowthAt = t
        }
        return Effect.all(effects, { discard: true })
      })

    const onRateLimited = (permit: RL.Permit & { readonly rate?: number }, retryAfter: Option.Option<Duration.Duration>) =>
      Effect.gen(function*() {
        yield* Metric.increment(limited)
        if (permit.epoch < knownEpoch) return
        const now = yield* store.now
        const r = permit.rate ?? maxRate
        const windowStart = Math.max(startedAt, lastDecreaseAt, pausedUntil)
        const window = now - windowStart
        let next: number
        if (window > 0 && window <= 2000) {
          const s = yield* store.successesSince(key, windowStart)
          const estimate = (s * r) / (r + s)
          next = Math.min(r * (1 - penalty), estimate)
        } else {
          next = r * (1 - penalty / 6)
        }
        next = Math.max(floorRate, next)
        // Jitter only ever lengthens a pause, so replicas do not all resume at one instant.
        const jitter = 1 + (yield* Random.next) * 0.1
        const pause = Option.match(retryAfter, { onNone: () => 0, onSome: (d) => Math.ceil(Duration.toMillis(d) * jitter) })
        const applied = yield* store.adjust(key, { _tag: "Decrease", epoch: permit.epoch, rate: next, pauseMillis: pause })
        if (applied) {
          knownEpoch = permit.epoch + 1
          lastDecreaseAt = now
          pausedUntil = Math.max(pausedUntil, now + pause)
          yield* Metric.set(rateGauge, next)
        } else {
          knownEpoch = Math.max(knownEpoch, (yield* store.adaptiveState(key, maxRate)).epoch)
        }
      })

    const report = (permit: RL.Permit, outcome: RL.Outcome): Effect.Effect<void> =>
      (outcome._tag === "Success"
        ? onSuccess(permit, outcome.headers)
        : outcome._tag === "RateLimited"
        ? onRateLimited(permit, outcome.retryAfter)
        : Effect.void).pipe(
          Effect.catchAll((e) => Effect.logWarning(`sluice rate limiter ${key}: feedback not stored: ${e.message}`))
        )

    return yield* makeService(key, options, acquire, report)
  })
