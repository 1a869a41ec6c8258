/**
 * Scenario 2: adapting to a hidden capacity, over a matrix of the server
 * shapes users meet. In each cell four clients run side by side, each with
 * 10 workers and demand far above capacity, each against its own
 * `TestServer` of that shape, over real HTTP (a few cells with answers
 * 60 ms after the server counts a request, as real APIs answer):
 *
 * - sluice `RateLimiter.layerAdaptive` (limit 200/s, far above capacity);
 *   a worker waits out a 429's `Retry-After` as `Retry` would;
 * - stkai's AIMD, reimplemented from its documentation as the baseline: a
 *   token bucket whose rate drops by `penalty` (0.3) on **every** 429 and
 *   grows additively on success (`recovery` × max per second), floored at
 *   `floor` × max; a 429 is retried after 0.9 × `Retry-After`;
 * - AWS SDK's adaptive limiter: CUBIC, re-implemented here from
 *   smithy-typescript's `DefaultRateLimiter` (β 0.7, scale 0.4, the sending
 *   rate measured in half-second buckets smoothed by 0.8; throttling enabled
 *   at the first 429), waiting out `Retry-After` as the SDK's retry does;
 * - the oracle: a fixed token bucket (burst 1) set by hand to the true
 *   initial capacity; it cannot follow a change.
 *
 * The fleet cell runs each client as 4 processes sharing one server's quota
 * (in one Node process, each with its own client, limiter and connections):
 * Sluice's 4 limiters share their state through one `RedisStore` on a
 * private `redis-server`, the peers learn each on its own (they have no
 * shared store), and the oracle is split by hand, a quarter each.
 */
import { ApiClient, RateLimiter as SluiceRateLimiter, RateLimiterStore } from "@sluice/core"
import { NodeTransport } from "@sluice/node"
import { RedisStore, TestRedis } from "@sluice/redis"
import { TestServer } from "@sluice/testing"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"

/** Where a client runs: alone, or as one of a fleet sharing the server's quota. */
interface Placement {
  readonly processes: number
  /** A Redis the fleet's processes share (fleet cells only). */
  readonly redis?: { readonly socket: string; readonly prefix: string } | undefined
}

interface Contender {
  readonly name: string
  /** One worker's request: resolves after the answer (and whatever the client does on a 429). */
  readonly build: (url: string, initialCapacity: number, placement: Placement) => Effect.Effect<Effect.Effect<void>, never, Scope.Scope>
}

const WORKERS = 10

const apiClient = <A>(url: string, extra: Layer.Layer<A, never, never>) =>
  Effect.map(
    Layer.build(
      ApiClient.layer({ baseUrl: url }).pipe(
        Layer.provide(extra),
        Layer.provide(NodeTransport.layer({ connections: WORKERS }))
      )
    ),
    (ctx) => Context.get(ctx, ApiClient.ApiClient)
  ).pipe(Effect.orDie)

const waitOut = (e: { readonly _tag: string; readonly retryAfter?: Option.Option<Duration.Duration> }, factor = 1) =>
  e._tag === "ServerSideRateLimitError"
    ? Effect.sleep(Duration.millis(Math.min(60_000, Duration.toMillis(Option.getOrElse(e.retryAfter ?? Option.none(), () => Duration.millis(100)))) * factor))
    : Effect.void

const sluice: Contender = {
  name: "sluice adaptive",
  build: (url, _, placement) =>
    Effect.map(
      apiClient(
        url,
        SluiceRateLimiter.layerAdaptive({ limit: 200, window: "1 second", maxWait: Duration.infinity }).pipe(
          Layer.provide(
            placement.redis === undefined
              ? RateLimiterStore.layerMemory
              : Layer.orDie(RedisStore.layer({ path: placement.redis.socket, prefix: placement.redis.prefix }))
          )
        )
      ),
      // The limiter pauses everyone on a Retry-After; the worker waits it out too, as Retry would.
      (api) => Effect.catchAll(Effect.asVoid(api.post("/api")), (e) => waitOut(e))
    )
}

/** stkai's AdaptiveRateLimitedHttpClient + Retrying, as documented, on a token bucket we keep here. */
const stkai: Contender = {
  name: "stkai AIMD",
  build: (url) =>
    Effect.gen(function*() {
      const api = yield* apiClient(url, Layer.empty)
      const max = 200
      const floor = 0.1 * max
      const penalty = 0.3
      const recovery = 0.05
      let rate = max
      let next = 0
      const acquire = Effect.suspend(() => {
        const now = Date.now()
        const at = Math.max(now, next)
        next = at + 1000 / rate
        return at > now ? Effect.sleep(Duration.millis(at - now)) : Effect.void
      })
      return Effect.gen(function*() {
        yield* acquire
        const result = yield* Effect.either(api.post("/api"))
        if (result._tag === "Right") {
          rate = Math.min(max, rate + (recovery * max) / Math.max(1, rate))
          return
        }
        if (result.left._tag === "ServerSideRateLimitError") {
          rate = Math.max(floor, rate * (1 - penalty))
          // stkai's Retrying waits 0.9 × Retry-After, and ignores values over 60 s
          yield* waitOut(result.left, 0.9)
        }
      })
    })
}

/**
 * AWS SDK's adaptive retry mode: CUBIC on a client-side token bucket,
 * written here from smithy-typescript's `DefaultRateLimiter`.
 */
const awsCubic: Contender = {
  name: "AWS SDK CUBIC",
  build: (url) =>
    Effect.gen(function*() {
      const api = yield* apiClient(url, Layer.empty)
      const beta = 0.7
      const scale = 0.4
      const smooth = 0.8
      const seconds = () => Date.now() / 1000
      let enabled = false
      let fillRate = 0.5
      let maxCapacity = 1
      let capacity = 0
      let lastRefill = 0
      let lastMaxRate = 0
      let lastThrottle = seconds()
      let timeWindow = 0
      let measured = 0
      let count = 0
      let bucket = Math.floor(seconds() * 2) / 2
      const refill = () => {
        const t = seconds()
        if (lastRefill === 0) {
          lastRefill = t
          return
        }
        capacity = Math.min(maxCapacity, capacity + (t - lastRefill) * fillRate)
        lastRefill = t
      }
      const acquire = Effect.suspend(() => {
        if (!enabled) return Effect.void
        refill()
        const wait = capacity >= 1 ? 0 : ((1 - capacity) / fillRate) * 1000
        capacity -= 1
        return wait > 0 ? Effect.sleep(Duration.millis(wait)) : Effect.void
      })
      const measure = () => {
        const t = seconds()
        const b = Math.floor(t * 2) / 2
        count++
        if (b > bucket) {
          measured = (count / (b - bucket)) * smooth + measured * (1 - smooth)
          count = 0
          bucket = b
        }
      }
      const update = (throttled: boolean) => {
        measure()
        let rate: number
        if (throttled) {
          const use = enabled ? Math.min(measured, fillRate) : measured
          lastMaxRate = use
          timeWindow = Math.cbrt((lastMaxRate * (1 - beta)) / scale)
          lastThrottle = seconds()
          rate = use * beta
          enabled = true
        } else {
          timeWindow = Math.cbrt((lastMaxRate * (1 - beta)) / scale)
          rate = scale * Math.pow(seconds() - lastThrottle - timeWindow, 3) + lastMaxRate
        }
        rate = Math.min(rate, 2 * measured)
        refill()
        fillRate = Math.max(rate, 0.5)
        maxCapacity = Math.max(rate, 1)
        capacity = Math.min(capacity, maxCapacity)
      }
      return Effect.gen(function*() {
        yield* acquire
        const result = yield* Effect.either(api.post("/api"))
        update(result._tag === "Left" && result.left._tag === "ServerSideRateLimitError")
        if (result._tag === "Left") yield* waitOut(result.left)
      })
    })
}

const oracle: Contender = {
  name: "fixed bucket at capacity (oracle)",
  build: (url, capacity, placement) =>
    Effect.map(
      apiClient(
        url,
        SluiceRateLimiter.layerTokenBucket({ limit: capacity / placement.processes, window: "1 second", burst: 1, maxWait: Duration.infinity }).pipe(
          Layer.provide(RateLimiterStore.layerMemory)
        )
      ),
      (api) => Effect.catchAll(Effect.asVoid(api.post("/api")), (e) => waitOut(e))
    )
}

export const contenders: ReadonlyArray<Contender> = [sluice, stkai, awsCubic, oracle]

export interface Cell {
  readonly name: string
  readonly capacity: TestServer.Capacity
  /** Capacity changes: at `at` seconds, the new capacity. */
  readonly steps?: ReadonlyArray<{ readonly at: number; readonly capacity: TestServer.Capacity }>
  readonly seconds: number
  /** Measured from this second. */
  readonly from: number
  /** No demand between these seconds. */
  readonly idle?: { readonly from: number; readonly to: number }
  /** Each client runs as this many processes sharing the quota (Sluice's through Redis). */
  readonly processes?: number
  /** The server answers this many ms after it counts a request (loopback answers take about 1 ms). */
  readonly latencyMillis?: number
  readonly targets: { readonly goodput: number; readonly share429: number }
}

const bucket = (rate: number, burst?: number, extra: Partial<TestServer.Capacity> = {}): TestServer.Capacity => ({
  rate,
  ...(burst !== undefined ? { burst } : {}),
  ...extra
})
const express = (limit: number, windowSeconds: number, extra: Partial<TestServer.Capacity> = {}): TestServer.Capacity => ({
  algorithm: "fixed-window",
  rate: limit / windowSeconds,
  burst: limit,
  window: Duration.seconds(windowSeconds),
  windowStart: "first-request",
  ...extra
})

const STEADY = { goodput: 0.9, share429: 0.05 }
const HEADERS = { goodput: 0.95, share429: 0.01 }

export const cells = (seconds: number): ReadonlyArray<Cell> => [
  { name: "token bucket 20/s, burst 1", capacity: bucket(20, 1), seconds, from: 5, targets: STEADY },
  { name: "token bucket 20/s, burst 5", capacity: bucket(20, 5), seconds, from: 5, targets: STEADY },
  { name: "token bucket 20/s, burst 1 s", capacity: bucket(20), seconds, from: 5, targets: STEADY },
  { name: "fixed window 20 / 1 s (express)", capacity: express(20, 1), seconds, from: 5, targets: STEADY },
  // Ten-second windows: a run long enough to hold several of them.
  { name: "fixed window 200 / 10 s (express)", capacity: express(200, 10), seconds: 2 * seconds + 5, from: 5, targets: STEADY },
  { name: "sliding window 20 / 1 s", capacity: { algorithm: "sliding-window", rate: 20, window: "1 second" }, seconds, from: 5, targets: STEADY },
  // The same two shapes at other capacities: a limiter tuned to one capacity would show it here.
  { name: "fixed window 15 / 1 s (express)", capacity: express(15, 1), seconds, from: 5, targets: STEADY },
  { name: "sliding window 30 / 1 s", capacity: { algorithm: "sliding-window", rate: 30, window: "1 second" }, seconds, from: 5, targets: STEADY },
  { name: "bare 429 (bucket 20/s, no Retry-After)", capacity: bucket(20, undefined, { retryAfter: "none" }), seconds, from: 5, targets: STEADY },
  { name: "headers draft-7 (express 20 / 1 s)", capacity: express(20, 1, { headers: "draft-7" }), seconds, from: 5, targets: HEADERS },
  { name: "headers draft-8 (express 20 / 1 s)", capacity: express(20, 1, { headers: "draft-8" }), seconds, from: 5, targets: HEADERS },
  { name: "headers X-RateLimit epoch (express 20 / 1 s)", capacity: express(20, 1, { headers: "x-epoch" }), seconds, from: 5, targets: HEADERS },
  { name: "headers OpenAI (bucket 20/s)", capacity: bucket(20, undefined, { headers: "openai" }), seconds, from: 5, targets: HEADERS },
  // Real APIs answer in tens to hundreds of ms: what is counted and what is answered drift apart.
  { name: "answers in 60 ms: token bucket 20/s, burst 1 s", capacity: bucket(20), latencyMillis: 60, seconds, from: 5, targets: STEADY },
  { name: "answers in 60 ms: fixed window 20 / 1 s (express)", capacity: express(20, 1), latencyMillis: 60, seconds, from: 5, targets: STEADY },
  { name: "answers in 60 ms: headers draft-7 (express 20 / 1 s)", capacity: express(20, 1, { headers: "draft-7" }), latencyMillis: 60, seconds, from: 5, targets: HEADERS },
  {
    name: "answers in 60 ms: headers X-RateLimit epoch (express 20 / 1 s)",
    capacity: express(20, 1, { headers: "x-epoch" }),
    latencyMillis: 60,
    seconds,
    from: 5,
    targets: HEADERS
  },
  {
    name: "step down 100 → 10 at 15 s",
    capacity: bucket(100),
    steps: [{ at: 15, capacity: bucket(10) }],
    seconds: 15 + seconds,
    from: 19,
    targets: { goodput: 0.85, share429: 0.1 }
  },
  {
    name: "step up 10 → 40 at 15 s",
    capacity: bucket(10),
    steps: [{ at: 15, capacity: bucket(40) }],
    seconds: 15 + seconds,
    from: 23,
    targets: { goodput: 0.8, share429: 0.05 }
  },
  {
    name: "4 processes, one quota (bucket 20/s; Sluice shares it through Redis)",
    capacity: bucket(20),
    processes: 4,
    seconds,
    from: 5,
    targets: STEADY
  },
  {
    name: "idle 20 s, then full demand",
    capacity: bucket(20),
    idle: { from: 5, to: 25 },
    seconds: 25 + seconds,
    from: 30,
    targets: STEADY
  }
]

interface Sample {
  readonly t: number
  readonly ok: number
  readonly tooMany: number
  readonly capacity: number
}

const judge = (samples: ReadonlyArray<Sample>, from: number, to: number) => {
  const window = samples.filter((s) => s.t > from && s.t <= to)
  const ok = window.reduce((a, s) => a + s.ok, 0)
  const tooMany = window.reduce((a, s) => a + s.tooMany, 0)
  const capacity = window.reduce((a, s) => a + s.capacity, 0)
  return { goodput: capacity > 0 ? ok / capacity : 0, share429: ok + tooMany > 0 ? tooMany / (ok + tooMany) : 0 }
}

const rateOf = (c: TestServer.Capacity) => c.rate

const runOne = (contender: Contender, cell: Cell, redisSocket: string | undefined) =>
  Effect.scoped(Effect.gen(function*() {
    const server = yield* TestServer.make({
      routes: [{
        method: "POST",
        path: "/api",
        capacity: cell.capacity,
        then: { json: { ok: true } },
        ...(cell.latencyMillis !== undefined ? { latency: { base: Duration.millis(cell.latencyMillis) } } : {})
      }],
      logLimit: 10
    }).pipe(Effect.orDie)
    const processes = cell.processes ?? 1
    const placement: Placement = {
      processes,
      redis: processes > 1 && redisSocket !== undefined ? { socket: redisSocket, prefix: `fleet-${Date.now()}-${contender.name}:` } : undefined
    }
    // A fleet: one client per process, the workers split between them.
    const onces = yield* Effect.forEach(Array.from({ length: processes }), () => contender.build(server.url, rateOf(cell.capacity), placement))
    const started = Date.now()
    const idle = cell.idle
    const worker = (once: Effect.Effect<void>) =>
      Effect.forever(Effect.suspend(() => {
        const t = (Date.now() - started) / 1000
        if (idle && t >= idle.from && t < idle.to) return Effect.sleep(Duration.millis((idle.to - t) * 1000))
        return once
      }))
    const perProcess = Math.ceil(WORKERS / processes)
    const workers = yield* Effect.forkAll(onces.flatMap((once) => Array.from({ length: perProcess }, () => worker(once))))
    const samples: Array<Sample> = []
    let last = yield* server.stats
    let capacity = rateOf(cell.capacity)
    for (let t = 1; t <= cell.seconds; t++) {
      yield* Effect.sleep(Duration.millis(Math.max(0, started + t * 1000 - Date.now())))
      const stats = yield* server.stats
      const sent = stats.total - last.total
      const tooMany = stats.tooManyRequests - last.tooManyRequests
      const demanded = !(idle && t > idle.from && t <= idle.to)
      samples.push({ t, ok: sent - tooMany, tooMany, capacity: demanded ? capacity : 0 })
      last = stats
      const step = cell.steps?.find((s) => s.at === t)
      if (step) {
        capacity = rateOf(step.capacity)
        yield* server.setCapacity("/api", step.capacity).pipe(Effect.orDie)
      }
    }
    yield* Fiber.interrupt(workers)
    return samples
  }))

export interface Result {
  readonly cell: Cell
  readonly clients: ReadonlyArray<{ readonly name: string; readonly goodput: number; readonly share429: number; readonly samples: ReadonlyArray<Sample> }>
}

/** Every cell in turn; in a cell, every client side by side. */
export const run = (options: { readonly seconds: number; readonly only?: string | undefined }) =>
  Effect.scoped(Effect.gen(function*() {
    const selected = cells(options.seconds).filter((c) => options.only === undefined || c.name.includes(options.only))
    // One private redis-server for the fleet cells.
    const redis = selected.some((c) => (c.processes ?? 1) > 1) ? yield* TestRedis.start : undefined
    return yield* Effect.forEach(selected, (cell) =>
      Effect.map(
        Effect.forEach(
          contenders,
          (c) => Effect.map(runOne(c, cell, redis?.socket), (samples) => ({ name: c.name, ...judge(samples, cell.from, cell.seconds), samples })),
          { concurrency: "unbounded" }
        ),
        (clients): Result => {
          process.stderr.write(`  ${cell.name}: ${clients.map((c) => `${c.name} ${(100 * c.goodput).toFixed(0)} %`).join(", ")}\n`)
          return { cell, clients }
        }
      ))
  }))
