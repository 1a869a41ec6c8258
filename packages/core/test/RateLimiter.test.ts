import { assert, describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import fc from "fast-check"
import * as Metric from "effect/Metric"
import { RateLimiter, RateLimiterStore } from "../src/index.js"

const tokenBucket = (options: RateLimiter.TokenBucketOptions) =>
  RateLimiter.makeTokenBucket(options).pipe(Effect.provide(RateLimiterStore.layerMemory))

/** Lets forked fibers run up to their next wait. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

describe("token bucket", () => {
  it.effect("serves waiters in arrival order and never early", () =>
    Effect.gen(function*() {
      const limiter = yield* tokenBucket({ limit: 1, window: "1 second", burst: 1 })
      const granted: Array<[number, number]> = []
      const fibers = []
      for (let i = 0; i < 5; i++) {
        fibers.push(yield* Effect.fork(Effect.tap(limiter.acquire, () =>
          Effect.map(TestClock.currentTimeMillis, (t) => {
            granted.push([i, t])
          }))))
        yield* settle
      }
      yield* TestClock.adjust("10 seconds")
      yield* Effect.forEach(fibers, Fiber.join)
      expect(granted).toEqual([[0, 0], [1, 1000], [2, 2000], [3, 3000], [4, 4000]])
    }))

  it.effect("burst defaults to one second's worth, not the whole window", () =>
    Effect.gen(function*() {
      const limiter = yield* tokenBucket({ limit: 600, window: "1 minute" })
      // 10 per second: ten are free at once, the eleventh waits 100 ms
      for (let i = 0; i < 10; i++) yield* limiter.acquire
      const fiber = yield* Effect.fork(limiter.acquire)
      yield* settle
      yield* TestClock.adjust("99 millis")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(fiber)
    }))

  it.effect("fails at once when the queue ahead makes the wait longer than maxWait", () =>
    Effect.gen(function*() {
      const limiter = yield* tokenBucket({ limit: 1, window: "1 second", burst: 1, maxWait: "2500 millis" })
      yield* limiter.acquire
      const waiting = yield* Effect.forkAll([limiter.acquire, limiter.acquire])
      yield* settle
      // slots at 1 s and 2 s are taken; the next would be 3 s > 2.5 s: no sleep, an immediate typed failure
      const error = yield* Effect.flip(limiter.acquire)
      assert(error._tag === "TokenAcquisitionTimeoutError")
      expect(error.waited).toEqual(Duration.zero)
      expect(error.maxWait).toEqual(Duration.millis(2500))
      expect(yield* TestClock.currentTimeMillis).toBe(0)
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(waiting)
    }))

  it.effect("maxWait: Infinity waits as long as it takes", () =>
    Effect.gen(function*() {
      const limiter = yield* tokenBucket({ limit: 1, window: "1 hour", burst: 1, maxWait: Duration.infinity })
      yield* limiter.acquire
      const fiber = yield* Effect.fork(limiter.acquire)
      yield* settle
      yield* TestClock.adjust("59 minutes")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(fiber)
    }))

  it.effect("an interrupted waiter gives its place back and consumes nothing", () =>
    Effect.gen(function*() {
      const limiter = yield* tokenBucket({ limit: 1, window: "1 second", burst: 1 })
      yield* limiter.acquire
      const b = yield* Effect.fork(limiter.acquire) // slot 1 s
      yield* settle
      const c = yield* Effect.fork(limiter.acquire) // slot 2 s
      yield* settle
      yield* Fiber.interrupt(c)
      const d = yield* Effect.fork(Effect.zipRight(limiter.acquire, TestClock.currentTimeMillis))
      yield* settle
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(b)
      // d takes c's slot at 2 s, not 3 s
      expect(yield* Fiber.join(d)).toBe(2000)
    }))

  it.effect("the concurrency cap bounds requests in flight", () =>
    Effect.gen(function*() {
      const limiter = yield* tokenBucket({ limit: 1000, window: "1 second", concurrency: 2 })
      let inFlight = 0
      let most = 0
      const work = limiter.run(
        Effect.gen(function*() {
          inFlight++
          most = Math.max(most, inFlight)
          yield* Effect.sleep("10 millis")
          inFlight--
        }),
        () => ({ _tag: "Neutral" })
      )
      const fiber = yield* Effect.fork(Effect.all(Array.from({ length: 10 }, () => work), { concurrency: "unbounded" }))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      expect(most).toBe(2)
    }))

  it("property: admitted requests never exceed burst + rate × elapsed over any interval", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }), // permits per second
        fc.integer({ min: 1, max: 20 }), // burst
        fc.array(fc.integer({ min: 0, max: 5_000 }), { minLength: 1, maxLength: 200 }), // arrival times (ms)
        fc.integer({ min: 0, max: 3_000 }), // maxWait
        (rate, burst, arrivals, maxWait) => {
          const state = { tat: 0, pausedUntil: 0 }
          const interval = 1000 / rate
          const admitted: Array<number> = []
          for (const t of [...arrivals].sort((a, b) => a - b)) {
            const r = RateLimiterStore.reserveSlot(state, t, interval, burst, maxWait)
            if ("slot" in r) {
              expect(r.slot).toBeGreaterThanOrEqual(t)
              expect(r.waitMillis).toBeLessThanOrEqual(maxWait)
              admitted.push(r.slot)
            }
          }
          admitted.sort((a, b) => a - b)
          for (let i = 0; i < admitted.length; i++) {
            for (let j = i; j < admitted.length; j++) {
              const count = j - i + 1
              const elapsed = admitted[j]! - admitted[i]!
              expect(count).toBeLessThanOrEqual(burst + (rate * elapsed) / 1000 + 1e-9)
            }
          }
        }
      ),
      { numRuns: 300 }
    )
  })
})

/** What `makeAdaptive({ limit, window: "1 second" })` sends the store with every call. */
const paramsFor = (limit: number): RateLimiterStore.AdaptiveParams => ({
  maxRate: limit,
  floorRate: limit * 0.01,
  margin: 0.05,
  penalty: 0.3,
  maxPauseMillis: 60_000
})

const adaptive = (options: Partial<RateLimiter.AdaptiveOptions> = {}) =>
  RateLimiter.makeAdaptive({ limit: 100, window: "1 second", ...options })

const rateLimited = (retryAfterSeconds?: number): RateLimiter.Outcome => ({
  _tag: "RateLimited",
  retryAfter: retryAfterSeconds === undefined ? Option.none() : Option.some(Duration.seconds(retryAfterSeconds)),
  headers: {}
})

describe("adaptive (AIMD)", () => {
  it.effect("64 simultaneous 429s make one decrease, not 0.7^64", () =>
    Effect.gen(function*() {
      const store = yield* RateLimiterStore.makeMemory
      const limiter = yield* adaptive().pipe(Effect.provideService(RateLimiterStore.RateLimiterStore, store))
      const permits = yield* Effect.forEach(Array.from({ length: 64 }), () => limiter.acquire, { concurrency: "unbounded" })
        .pipe(Effect.fork, Effect.tap(() => TestClock.adjust("1 second")), Effect.flatMap(Fiber.join))
      yield* TestClock.adjust("5 seconds")
      yield* Effect.forEach(permits, (p) => limiter.report(p, rateLimited()))
      const state = yield* store.adaptiveState("sluice", paramsFor(100))
      expect(state.epoch).toBe(1)
      expect(state.rate).toBeGreaterThanOrEqual(10)
      expect(state.rate).toBeLessThan(100)
    }))

  it.effect("5xx and transport errors are neither penalty nor recovery; idle success does not grow the rate", () =>
    Effect.gen(function*() {
      const store = yield* RateLimiterStore.makeMemory
      const limiter = yield* adaptive({ limit: 10 }).pipe(Effect.provideService(RateLimiterStore.RateLimiterStore, store))
      const p = yield* limiter.acquire
      yield* TestClock.adjust("10 seconds")
      yield* limiter.report(p, rateLimited())
      const after429 = (yield* store.adaptiveState("sluice", paramsFor(10))).rate
      expect(after429).toBeLessThan(10)
      for (let i = 0; i < 50; i++) {
        const permit = yield* limiter.acquire
        yield* limiter.report(permit, { _tag: "Neutral" })
        yield* TestClock.adjust("1 second")
      }
      expect((yield* store.adaptiveState("sluice", paramsFor(10))).rate).toBe(after429)
      // one request a second is far below the limit: successes do not raise it
      for (let i = 0; i < 60; i++) {
        const permit = yield* limiter.acquire
        yield* limiter.report(permit, { _tag: "Success", headers: {} })
        yield* TestClock.adjust("1 second")
      }
      expect((yield* store.adaptiveState("sluice", paramsFor(10))).rate).toBe(after429)
    }))

  it.effect("Retry-After pauses every caller, queued ones included", () =>
    Effect.gen(function*() {
      const limiter = yield* adaptive({ limit: 10 }).pipe(Effect.provide(RateLimiterStore.layerMemory))
      const first = yield* limiter.acquire
      const times: Array<number> = []
      const queued = yield* Effect.fork(Effect.forEach(
        Array.from({ length: 3 }),
        () => Effect.zipRight(limiter.acquire, Effect.map(TestClock.currentTimeMillis, (t) => times.push(t))),
        { concurrency: "unbounded" }
      ))
      yield* settle
      // queued for 100, 200 and 300 ms when the 429 says "retry after 2 s"
      yield* limiter.report(first, rateLimited(2))
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(queued)
      expect(times).toHaveLength(3)
      expect(Math.min(...times)).toBeGreaterThanOrEqual(2000)
      // they keep their spacing instead of all going at once when the pause ends
      const sorted = [...times].sort((a, b) => a - b)
      expect(sorted[2]! - sorted[0]!).toBeGreaterThanOrEqual(150)
      // new arrivals queue behind them
      const next = yield* Effect.zipRight(limiter.acquire, TestClock.currentTimeMillis)
      expect(next).toBeGreaterThanOrEqual(10_000)
    }))

  it.effect("a queued waiter whose pause would outlast maxWait fails by maxWait, not after", () =>
    Effect.gen(function*() {
      const limiter = yield* adaptive({ limit: 10, maxWait: "1500 millis" }).pipe(Effect.provide(RateLimiterStore.layerMemory))
      const first = yield* limiter.acquire
      const waiter = yield* Effect.fork(Effect.either(limiter.acquire))
      yield* settle
      yield* limiter.report(first, rateLimited(5))
      yield* TestClock.adjust("1500 millis")
      const result = yield* Fiber.join(waiter)
      assert(result._tag === "Left" && result.left._tag === "TokenAcquisitionTimeoutError")
      expect(Duration.toMillis(result.left.waited)).toBeLessThanOrEqual(1500)
    }))
})

describe("adaptive: RateLimit-* headers and metrics", () => {
  it.effect("metrics: permits granted, timeouts and 429s are counted per key", () =>
    Effect.gen(function*() {
      const limiter = yield* tokenBucket({ limit: 1, window: "1 second", burst: 1, maxWait: "0 millis", key: "metrics-test" })
      const granted = Metric.tagged(Metric.counter("sluice_ratelimiter_permits_granted", { incremental: true }), "key", "metrics-test")
      const timeouts = Metric.tagged(Metric.counter("sluice_ratelimiter_timeouts", { incremental: true }), "key", "metrics-test")
      const before = (yield* Metric.value(granted)).count
      const permit = yield* limiter.acquire
      yield* Effect.flip(limiter.acquire)
      yield* limiter.report(permit, rateLimited(1))
      expect((yield* Metric.value(granted)).count - before).toBe(1)
      expect((yield* Metric.value(timeouts)).count).toBeGreaterThanOrEqual(1)
    }))

  it.effect("a fixed bucket counts a 429 whether the attempt failed with it (ApiClient) or returned it (RateLimiter.limit on a plain client)", () =>
    Effect.gen(function*() {
      const limiter = yield* tokenBucket({ limit: 1000, window: "1 second", key: "429s-test" })
      const limited = Metric.tagged(Metric.counter("sluice_ratelimiter_429s", { incremental: true }), "key", "429s-test")
      const count = Effect.map(Metric.value(limited), (state) => state.count)
      const answered = (outcome: RateLimiter.Outcome) => () => outcome
      yield* limiter.run(Effect.succeed("a 429 response"), answered(rateLimited(1)))
      expect(yield* count).toBe(1)
      yield* Effect.flip(limiter.run(Effect.fail("a 429 error"), answered(rateLimited())))
      expect(yield* count).toBe(2)
      yield* limiter.run(Effect.succeed("a 200 response"), answered({ _tag: "Success", headers: {} }))
      yield* Effect.flip(limiter.run(Effect.fail("a 503 error"), answered({ _tag: "Neutral" })))
      expect(yield* count).toBe(2)
    }))
})

describe("RateLimiter.limit on any HttpClient", () => {
  it.effect("postOnly applies to POST only", () =>
    Effect.sync(() => {
      expect(RateLimiter.postOnly({ method: "POST" } as never)).toBe(true)
      expect(RateLimiter.postOnly({ method: "GET" } as never)).toBe(false)
    }))
})


describe("cost-weighted permits (unit: tokens)", () => {
  const at = (effect: Effect.Effect<unknown, unknown>) => Effect.zipRight(effect, TestClock.currentTimeMillis)

  it.effect("a request takes its cost; a heavy one waits for the refill it lacks, and lighter ones behind it do not overtake it", () =>
    Effect.gen(function*() {
      // 100 tokens per second, a bucket of 100
      const limiter = yield* tokenBucket({ limit: 100, window: "1 second", burst: 100, unit: "tokens" })
      expect(yield* at(limiter.acquireWeighted(80))).toBe(0)
      const heavy = yield* Effect.fork(at(limiter.acquireWeighted(50))) // 20 left: 30 more take 300 ms
      yield* settle
      const light = yield* Effect.fork(at(limiter.acquireWeighted(1)))
      yield* settle
      const huge = yield* Effect.fork(at(limiter.acquireWeighted(250))) // more than the bucket: waits for its refill, in turn
      yield* settle
      const after = yield* Effect.fork(at(limiter.acquireWeighted(1)))
      yield* settle
      yield* TestClock.adjust("10 seconds")
      const [h, l, g, a] = yield* Effect.all([Fiber.join(heavy), Fiber.join(light), Fiber.join(huge), Fiber.join(after)])
      expect(h).toBe(300)
      expect(l).toBeGreaterThanOrEqual(h)
      expect(g).toBeGreaterThanOrEqual(l)
      expect(g).toBe(2_810) // 80 + 50 + 1 + 250 tokens at 100/s, less the bucket of 100
      expect(a).toBeGreaterThanOrEqual(g)
    }))

  it.effect("maxWait refuses a heavy request up front, without taking anything", () =>
    Effect.gen(function*() {
      const limiter = yield* tokenBucket({ limit: 100, window: "1 second", burst: 100, unit: "tokens", maxWait: "1 second" })
      const refused = yield* Effect.flip(limiter.acquireWeighted(500))
      expect(refused._tag).toBe("TokenAcquisitionTimeoutError")
      expect(yield* at(limiter.acquireWeighted(100))).toBe(0)
    }))

  it.effect("a requests limiter takes one permit whatever the cost; all() holds a requests and a tokens quota together", () =>
    Effect.gen(function*() {
      const requests = yield* tokenBucket({ limit: 2, window: "1 second", burst: 2, key: "rpm" })
      const tokens = yield* tokenBucket({ limit: 1000, window: "1 second", burst: 1000, key: "tpm", unit: "tokens" })
      const both = RateLimiter.all([requests, tokens])
      const call = (cost: number) => at(both.run(Effect.void, () => ({ _tag: "Neutral" }), cost))
      const times: Array<number> = []
      const fibers = []
      // two cheap requests: the requests quota binds (2/s); then heavy ones: the tokens quota binds
      for (const cost of [1, 1, 1, 900, 900]) {
        fibers.push(yield* Effect.fork(call(cost)))
        yield* settle
      }
      yield* TestClock.adjust("10 seconds")
      for (const f of fibers) times.push(yield* Fiber.join(f))
      // the requests quota binds the first four (two at once, then one every 500 ms)
      expect(times.slice(0, 4)).toEqual([0, 0, 500, 1_000])
      // the fifth: its requests permit comes at 1,500 ms, but the bucket of 1,000 tokens has
      // refilled only 800 of the 900 spent at 1,000 ms: the tokens quota holds it to 1,800 ms
      expect(times[4]).toBe(1_800)
      // the requests limiter alone ignores the cost
      const alone = yield* tokenBucket({ limit: 1, window: "1 second", burst: 1, key: "alone" })
      expect(yield* at(alone.run(Effect.void, () => ({ _tag: "Neutral" }), 1_000_000))).toBe(10_000)
    }))

  it.effect("an adaptive tokens limiter paces from the token quota headers, not the request ones", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.makeAdaptive({ limit: 100_000, window: "1 second", unit: "tokens", maxWait: Duration.infinity }).pipe(
        Effect.provide(RateLimiterStore.layerMemory)
      )
      // paced at the most it may send (100,000 tokens/s): 1,000 tokens take 10 ms
      const first = yield* Effect.fork(limiter.acquireWeighted(1000))
      yield* settle
      yield* TestClock.adjust("10 millis")
      const permit = yield* Fiber.join(first)
      // OpenAI: 10,000 tokens a minute, none left, full again in 6 s; plenty of requests left
      yield* limiter.report(permit, {
        _tag: "Success",
        headers: {
          "x-ratelimit-limit-requests": "500",
          "x-ratelimit-remaining-requests": "499",
          "x-ratelimit-reset-requests": "120ms",
          "x-ratelimit-limit-tokens": "10000",
          "x-ratelimit-remaining-tokens": "0",
          "x-ratelimit-reset-tokens": "6s"
        }
      })
      const next = yield* Effect.fork(at(limiter.acquireWeighted(1000)))
      yield* settle
      yield* TestClock.adjust("10 seconds")
      // refilling continuously: 1,000 tokens of a 10,000-token minute come back in 600 ms, not at once
      expect(yield* Fiber.join(next)).toBeGreaterThanOrEqual(600)
      expect(yield* Fiber.join(next)).toBeLessThan(1_000)
    }))
})
