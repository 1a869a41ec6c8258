/**
 * Scenario 1: the cost of each layer of the HTTP stack. Raw `undici.request`,
 * `@effect/platform-node`'s `NodeHttpClient.layerUndici`, the Sluice
 * `NodeTransport`, and `ApiClient` on top of it, against one keep-alive
 * server, at concurrency 1 and 64, interleaved round by round so drift in
 * the machine hits every client alike.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { ApiClient, ClientCredentials, RateLimiter, RateLimiterStore, Retry } from "@sluice/core"
import { NodeTransport } from "@sluice/node"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Redacted from "effect/Redacted"
import { Agent } from "undici"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import { median, runPromiseLoops, type Sample, summarise } from "./measure.js"

export interface Options {
  readonly url: string
  readonly rounds: number
  readonly durationMs: number
  readonly concurrencies: ReadonlyArray<number>
}

type Runner = (concurrency: number, durationMs: number) => Promise<Sample>

const effectRunner = (run: (concurrency: number, durationMs: number) => Effect.Effect<Sample>): Runner =>
  (c, d) => Effect.runPromise(run(c, d))

/** Runs `once` in `concurrency` fibers until the deadline: the way an Effect program drives a client. */
const effectLoops = <E>(once: Effect.Effect<unknown, E>) => (concurrency: number, durationMs: number) =>
  Effect.suspend(() => {
    const latencies: Array<number> = []
    const start = performance.now()
    const deadline = start + durationMs
    const timed = Effect.suspend(() => {
      const t0 = performance.now()
      return Effect.map(Effect.orDie(once), () => {
        latencies.push(performance.now() - t0)
      })
    })
    const loop = Effect.whileLoop({ while: () => performance.now() < deadline, body: () => timed, step: () => {} })
    return Effect.forEach(Array.from({ length: concurrency }), () => loop, { concurrency: "unbounded", discard: true }).pipe(
      Effect.map(() => summarise(latencies, (performance.now() - start) / 1000))
    )
  })

export const run = async (options: Options) => {
  const scope = Effect.runSync(Scope.make())
  const build = <I, S, E>(layer: Layer.Layer<I, E, never>, tag: Context.Tag<I, S>) =>
    Effect.runPromise(Layer.buildWithScope(layer, scope)).then((ctx) => Context.get(ctx, tag))

  const agent = new Agent({ keepAliveTimeout: 60_000, connect: { timeout: 5_000 } })
  const undiciUrl = new URL(`${options.url}/items`)
  const raw: Runner = (c, d) =>
    runPromiseLoops(async () => {
      const r = await agent.request({ origin: undiciUrl.origin, path: undiciUrl.pathname, method: "GET" })
      await r.body.json()
    }, c, d)

  const platform = await build(NodeHttpClient.layerUndici, HttpClient.HttpClient)
  const transport = await build(NodeTransport.layer({ keepAliveTimeout: "60 seconds" }), HttpClient.HttpClient)
  const api = await build(
    ApiClient.layer({ baseUrl: options.url }).pipe(Layer.provide(NodeTransport.layer({ keepAliveTimeout: "60 seconds" }))),
    ApiClient.ApiClient
  )
  // The whole stack as a user runs it: OAuth2 (token cached), a token bucket far above demand, retries.
  const stack = await build(
    ApiClient.layer({ baseUrl: options.url }).pipe(
      Layer.provide(ClientCredentials.layer({
        tokenUrl: `${options.url}/oauth/token`,
        clientId: "bench",
        clientSecret: Redacted.make("bench-secret")
      })),
      Layer.provide(RateLimiter.layerTokenBucket({ limit: 1_000_000, window: "1 second" })),
      Layer.provide(RateLimiterStore.layerMemory),
      Layer.provide(Retry.layer()),
      Layer.provideMerge(NodeTransport.layer({ keepAliveTimeout: "60 seconds" }))
    ),
    ApiClient.ApiClient
  )
  const viaClient = (client: HttpClient.HttpClient) =>
    effectLoops(Effect.flatMap(client.execute(HttpClientRequest.get(`${options.url}/items`)), (r) => r.json))

  const runners: Array<[string, Runner]> = [
    ["raw undici.request", raw],
    ["platform-node layerUndici", effectRunner(viaClient(platform))],
    ["sluice NodeTransport", effectRunner(viaClient(transport))],
    ["sluice NodeTransport, tracer off", effectRunner((c, d) => Effect.withTracerEnabled(viaClient(transport)(c, d), false))],
    ["sluice ApiClient (GET JSON)", effectRunner(effectLoops(api.get("/items")))],
    ["sluice ApiClient, chunked body (no Content-Length)", effectRunner(effectLoops(api.get("/chunked")))],
    ["sluice full stack (OAuth2, limiter, retry)", effectRunner(effectLoops(stack.get("/items")))]
  ]

  const results: Record<string, Record<number, Array<Sample & { readonly cpuMicros: number }>>> = {}
  // warm-up: connections, JIT
  for (const [, runner] of runners) await runner(8, 300)
  for (let round = 0; round < options.rounds; round++) {
    for (const c of options.concurrencies) {
      // Alternate the order: a client that always ran after the same other one would pay for its garbage.
      for (const [name, runner] of round % 2 === 0 ? runners : [...runners].reverse()) {
        const cpu0 = process.cpuUsage()
        const sample = await runner(c, options.durationMs)
        const cpu = process.cpuUsage(cpu0)
        // client-process CPU per request: steadier than throughput on a shared machine
        ;((results[name] ??= {})[c] ??= []).push({ ...sample, cpuMicros: (cpu.user + cpu.system) / Math.max(1, sample.requests) })
      }
    }
  }
  // Heap held per request in flight: 1,000 requests to a route that answers after a second.
  V8.setFlagsFromString("--expose-gc")
  const gc = Vm.runInNewContext("gc") as () => void
  const slowUrl = new URL(`${options.url}/slow`)
  const holders: Array<[string, () => Promise<unknown>]> = [
    ["raw undici.request", () => agent.request({ origin: slowUrl.origin, path: "/slow", method: "GET" }).then((r) => r.body.json())],
    ["platform-node layerUndici", () => Effect.runPromise(Effect.flatMap(platform.execute(HttpClientRequest.get(slowUrl)), (r) => r.json))],
    ["sluice NodeTransport", () => Effect.runPromise(Effect.flatMap(transport.execute(HttpClientRequest.get(slowUrl)), (r) => r.json))],
    ["sluice ApiClient (GET JSON)", () => Effect.runPromise(api.get("/slow"))],
    ["sluice full stack (OAuth2, limiter, retry)", () => Effect.runPromise(stack.get("/slow"))]
  ]
  const heapPer1000: Record<string, number> = {}
  for (const [name, once] of holders) {
    // warm: sockets for 1,000 requests at once exist before the measurement
    await Promise.all(Array.from({ length: 1_000 }, once))
    gc()
    const before = process.memoryUsage().heapUsed
    const all = Promise.all(Array.from({ length: 1_000 }, once))
    await new Promise((resolve) => setTimeout(resolve, 500))
    gc()
    heapPer1000[name] = process.memoryUsage().heapUsed - before
    await all
  }
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await agent.close()

  const rows = runners.map(([name]) => ({
    name,
    byConcurrency: Object.fromEntries(options.concurrencies.map((c) => {
      const samples = results[name]![c]!
      return [c, {
        rps: median(samples.map((s) => s.rps)),
        cpu: median(samples.map((s) => s.cpuMicros)),
        p50: median(samples.map((s) => s.p50)),
        p99: median(samples.map((s) => s.p99))
      }]
    })),
    heapPer1000: heapPer1000[name]
  }))
  return rows
}
