/**
 * Scenario 2: adapting to a hidden capacity. Three clients, each with 10
 * workers and demand far above capacity, each against its own TestServer
 * with a hidden token-bucket capacity, run side by side:
 *
 * - sluice `RateLimiter.layerAdaptive` (limit 200/s, far above capacity);
 * - stkai's AIMD, reimplemented from its documentation as the baseline:
 *   a token bucket whose rate drops by `penalty` (0.3) on **every** 429 and
 *   grows additively on success (`recovery` × max per second), floored at
 *   `floor` × max; a 429 is retried after 0.9 × `Retry-After`;
 * - Effect's own `RateLimiter` (token bucket) set by hand to the initial
 *   capacity: it cannot adapt.
 *
 * Runs: steady (20 req/s for `steadySeconds`) and step down (100 → 10 req/s).
 */
import { ApiClient, RateLimiter as SluiceRateLimiter, RateLimiterStore } from "@sluice/core"
import { NodeTransport } from "@sluice/node"
import { TestServer } from "@sluice/testing"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as EffectRateLimiter from "effect/RateLimiter"
import type * as Scope from "effect/Scope"

interface Contender {
  readonly name: string
  /** One worker's request: resolves after the answer (and whatever the client does on a 429). */
  readonly build: (url: string, initialCapacity: number) => Effect.Effect<Effect.Effect<void>, never, Scope.Scope>
}

const WORKERS = 10

const apiClient = (url: string, extra: Layer.Layer<never, never, never> | Layer.Layer<SluiceRateLimiter.RateLimiter>) =>
  Effect.map(
    Layer.build(
      ApiClient.layer({ baseUrl: url }).pipe(
        Layer.provide(extra as Layer.Layer<SluiceRateLimiter.RateLimiter>),
        Layer.provide(NodeTransport.layer({ connections: WORKERS }))
      )
    ),
    (ctx) => Context.get(ctx, ApiClient.ApiClient)
  ).pipe(Effect.orDie)

const sluice: Contender = {
  name: "sluice adaptive",
  build: (url) =>
    Effect.map(
      apiClient(url, SluiceRateLimiter.layerAdaptive({ limit: 200, window: "1 second", maxWait: Duration.infinity }).pipe(
        Layer.provide(RateLimiterStore.layerMemory)
      )),
      (api) => Effect.ignore(api.post("/api"))
    )
}

/** stkai's AdaptiveRateLimitedHttpClient + Retrying, as documented, on a token bucket we keep here. */
const stkai: Contender = {
  name: "stkai AIMD (baseline)",
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
        const e = result.left
        if (e._tag === "ServerSideRateLimitError") {
          rate = Math.max(floor, rate * (1 - penalty))
          // stkai's Retrying waits 0.9 × Retry-After, and ignores values over 60 s
          const ra = Option.getOrElse(e.retryAfter, () => Duration.seconds(1))
          yield* Effect.sleep(Duration.millis(Math.min(60_000, Duration.toMillis(ra)) * 0.9))
        }
      })
    })
}

const effectLimiter: Contender = {
  name: "effect RateLimiter (fixed by hand)",
  build: (url, capacity) =>
    Effect.gen(function*() {
      const api = yield* apiClient(url, Layer.empty)
      const limit = yield* EffectRateLimiter.make({ limit: capacity, interval: "1 second", algorithm: "token-bucket" })
      return Effect.ignore(limit(api.post("/api")))
    })
}

export interface Outcome {
  readonly name: string
  readonly goodput: number
  readonly share429: number
  readonly convergedAfter: number | undefined
}

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

/** First second after `from` from which every 5-second window meets the targets. */
const converged = (samples: ReadonlyArray<Sample>, from: number, goodput: number, share: number) => {
  const end = samples.length === 0 ? 0 : samples[samples.length - 1]!.t
  for (let t = from; t <= end - 5; t++) {
    let ok = true
    for (let u = t; u <= end - 5 && ok; u++) {
      const j = judge(samples, u, u + 5)
      ok = j.goodput >= goodput && j.share429 <= share
    }
    if (ok) return t - from
  }
  return undefined
}

const runOne = (contender: Contender, plan: ReadonlyArray<{ readonly at: number; readonly capacity: number }>, seconds: number) =>
  Effect.scoped(Effect.gen(function*() {
    const server = yield* TestServer.make({
      routes: [{ method: "POST", path: "/api", capacity: { rate: plan[0]!.capacity }, then: { json: { ok: true } } }],
      logLimit: 10
    })
    const once = yield* contender.build(server.url, plan[0]!.capacity)
    const workers = yield* Effect.forkAll(Array.from({ length: WORKERS }, () => Effect.forever(once)))
    const samples: Array<Sample> = []
    let last = yield* server.stats
    let capacity = plan[0]!.capacity
    for (let t = 1; t <= seconds; t++) {
      yield* Effect.sleep("1 second")
      const step = plan.find((p) => p.at === t)
      const stats = yield* server.stats
      const sent = stats.total - last.total
      const tooMany = stats.tooManyRequests - last.tooManyRequests
      samples.push({ t, ok: sent - tooMany, tooMany, capacity })
      last = stats
      if (step) {
        capacity = step.capacity
        yield* server.setCapacity("/api", { rate: capacity })
      }
    }
    yield* Fiber.interrupt(workers)
    return samples
  }))

export const run = (options: { readonly steadySeconds: number; readonly stepBefore: number; readonly stepAfter: number }) =>
  Effect.gen(function*() {
    const contenders = [sluice, stkai, effectLimiter]
    const steady = yield* Effect.forEach(
      contenders,
      (c) => Effect.map(runOne(c, [{ at: 0, capacity: 20 }], options.steadySeconds), (samples) => ({ c, samples })),
      { concurrency: "unbounded" }
    )
    const stepAt = options.stepBefore
    const step = yield* Effect.forEach(
      contenders,
      (c) =>
        Effect.map(
          runOne(c, [{ at: 0, capacity: 100 }, { at: stepAt, capacity: 10 }], stepAt + options.stepAfter),
          (samples) => ({ c, samples })
        ),
      { concurrency: "unbounded" }
    )
    return {
      steady: steady.map(({ c, samples }) => ({
        name: c.name,
        ...judge(samples, 5, options.steadySeconds),
        convergedAfter: converged(samples, 0, 0.9, 0.05)
      })),
      step: step.map(({ c, samples }) => ({
        name: c.name,
        ...judge(samples, stepAt + 4, stepAt + options.stepAfter),
        convergedAfter: converged(samples, stepAt, 0.85, 0.1)
      }))
    }
  })

