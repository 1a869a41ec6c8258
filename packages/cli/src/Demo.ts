/**
 * `sluice demo`: the whole stack against an embedded fault-injecting server.
 *
 * The server (from `@sluice/testing`) issues OAuth2 tokens that expire during
 * the run, hides its capacity (it steps down to half, then back up), answers
 * some requests 503, and sends `Retry-After` with its 429s. The client is
 * `ApiClient` with client-credentials auth, the adaptive rate limiter and
 * the retry policy. It prints a live progress line, then a summary, and
 * writes an SVG chart of the run.
 *
 * @since 0.1.0
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { ApiClient, ClientCredentials, RateLimiter, RateLimiterStore, Retry } from "@sluice/core"
import { NodeTransport } from "@sluice/node"
import { TestServer } from "@sluice/testing"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Redacted from "effect/Redacted"
import * as Chart from "./Chart.js"
import * as Progress from "./Progress.js"

export interface Options {
  readonly requests: number
  readonly capacity: number
  readonly concurrency: number
  readonly chart: string | undefined
  readonly tty: boolean
  readonly log: (line: string) => void
}

const retriesCounter = Metric.counter("sluice_retries", { incremental: true })

export const run = (options: Options) =>
  Effect.gen(function*() {
    if (!(options.requests >= 1)) return yield* Effect.fail(new Error("--requests must be at least 1"))
    if (!(options.capacity > 0)) return yield* Effect.fail(new Error("--capacity must be more than 0"))
    const secret = `demo-${Math.random().toString(36).slice(2)}`
    const server = yield* TestServer.make({
      oauth: { clientId: "sluice-demo", clientSecret: secret, tokenLifetime: "15 seconds" },
      routes: [{
        method: "POST",
        path: "/v1/work",
        requireAuth: true,
        capacity: { rate: options.capacity },
        latency: { base: "5 millis" },
        randomFaults: { probability: 0.02, reply: { status: 503, retryAfter: 1, json: { error: "overloaded" } } },
        then: { json: { ok: true } }
      }],
      logLimit: 1_000
    })
    options.log(`embedded API at ${server.url}: hidden capacity ${options.capacity} req/s (it will halve, then recover)`)

    const stack = ApiClient.layer({ baseUrl: `${server.url}/v1` }).pipe(
      Layer.provide(Layer.mergeAll(
        ClientCredentials.layer({
          tokenUrl: `${server.url}/oauth/token`,
          clientId: "sluice-demo",
          clientSecret: Redacted.make(secret)
        }),
        RateLimiter.layerAdaptive({ limit: options.capacity * 3, window: "1 second", maxWait: "1 minute" }).pipe(
          Layer.provide(RateLimiterStore.layerMemory)
        ),
        Retry.layer({ maxAttempts: 8, retryTokenTimeouts: true })
      )),
      Layer.provide(NodeTransport.layer({ connections: options.concurrency }))
    )
    const api = yield* Effect.provide(ApiClient.ApiClient, yield* Layer.build(stack))

    const counters: Progress.Counters = { done: 0, ok: 0, failed: 0, tooMany: 0, retries: 0 }
    const progress = Progress.make(options.requests, { tty: options.tty, write: (s) => process.stderr.write(s) })
    const retriesAtStart = (yield* Metric.value(retriesCounter)).count
    let capacity = options.capacity
    const samples: Array<Chart.Sample> = []
    const started = performance.now()

    // The chaos: a step down at 35 %, back up at 70 % (and the route's 2 % of 503s with Retry-After).
    const chaos = Effect.gen(function*() {
      let last = yield* server.stats
      let stepped = 0
      while (true) {
        yield* Effect.sleep("1 second")
        const stats = yield* server.stats
        const sent = (stats.requests["/v1/work"] ?? 0) - (last.requests["/v1/work"] ?? 0)
        const tooMany = stats.tooManyRequests - last.tooManyRequests
        const ok = (stats.statuses[200] ?? 0) - (last.statuses[200] ?? 0)
        samples.push({ t: (performance.now() - started) / 1000, sent, ok, tooMany, capacity })
        last = stats
        counters.tooMany = stats.tooManyRequests
        counters.retries = (yield* Metric.value(retriesCounter)).count - retriesAtStart
        progress.update(counters)
        const done = counters.done / options.requests
        if (stepped === 0 && done >= 0.35) {
          stepped = 1
          capacity = options.capacity / 2
          yield* server.setCapacity("/v1/work", { rate: capacity })
        } else if (stepped === 1 && done >= 0.7) {
          stepped = 2
          capacity = options.capacity
          yield* server.setCapacity("/v1/work", { rate: capacity })
        }
      }
    })
    const chaosFiber = yield* Effect.fork(chaos)

    yield* Effect.forEach(
      Array.from({ length: options.requests }, (_, i) => i),
      (i) =>
        api.post("/work", { body: { item: i }, headers: { "Idempotency-Key": `demo-${i}` } }).pipe(
          Effect.either,
          Effect.map((r) => {
            counters.done++
            if (r._tag === "Right") counters.ok++
            else counters.failed++
          })
        ),
      { concurrency: options.concurrency, discard: true }
    )
    const seconds = (performance.now() - started) / 1000
    const stats = yield* server.stats
    counters.tooMany = stats.tooManyRequests
    counters.retries = (yield* Metric.value(retriesCounter)).count - retriesAtStart
    yield* Fiber.interrupt(chaosFiber)
    progress.finish(counters)

    const meanCapacity = samples.length === 0 ? options.capacity : samples.reduce((a, s) => a + s.capacity, 0) / samples.length
    const achieved = counters.ok / seconds
    const rows: Array<[string, string]> = [
      ["requests", String(options.requests)],
      ["succeeded", String(counters.ok)],
      ["failed", String(counters.failed)],
      ["requests sent", `${stats.requests["/v1/work"] ?? 0} (retries and 401 replays included)`],
      ["429s seen", `${stats.tooManyRequests} (${((100 * stats.tooManyRequests) / Math.max(1, stats.requests["/v1/work"] ?? 0)).toFixed(1)} % of requests sent)`],
      ["retries", String(counters.retries)],
      ["token requests", String(stats.tokenRequests)],
      ["time", `${seconds.toFixed(1)} s`],
      ["achieved rate", `${achieved.toFixed(1)} req/s`],
      ["server capacity (mean)", `${meanCapacity.toFixed(1)} req/s`],
      ["achieved / capacity", `${((100 * achieved) / meanCapacity).toFixed(0)} %`]
    ]
    const width = Math.max(...rows.map(([k]) => k.length))
    const table = rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join("\n")
    const chartPath = Path.resolve(options.chart ?? `sluice-demo-${new Date().toISOString().replace(/[:.]/g, "-")}.svg`)
    Fs.writeFileSync(
      chartPath,
      Chart.render(samples, `sluice demo: ${options.requests} requests, capacity ${options.capacity} → ${options.capacity / 2} → ${options.capacity} req/s`)
    )
    process.stdout.write(`\nSummary\n${table}\n\nChart: ${chartPath}\n`)
    return { ok: counters.ok, failed: counters.failed }
  })
