/**
 * Scenario 1b: client CPU per request, `ApiClient` against the transport it
 * runs on, sharing one connection pool.
 *
 * The difference being measured (a few µs on ~250 µs) is smaller than the
 * drift of this 2-core machine between two long rounds, so the variants are
 * interleaved finely: many short blocks, in ABBA order, CPU time summed per
 * variant over all blocks, and the ratio of the sums taken. That is done in
 * several independent passes; the spread between the passes is the noise
 * left.
 *
 * Garbage is fenced: without it, a block pays for the garbage the block
 * before it left (the raced variant leaves the most, and the ApiClient
 * block follows it). Each block starts after a full collection, not measured, and
 * ends with a young-generation collection, measured: a block pays for its
 * own garbage, and no block pays for an old-generation collection that
 * others' garbage made due.
 *
 * The young generation is pinned at 16 MiB, where Node 20 grows it to under
 * a steady load anyway: after a full collection V8 shrinks it, and the next
 * block would collect far more often than any client under load does (that
 * doubled every variant's cost). {@link runInChild} starts a process with
 * these flags.
 */
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { ApiClient, ClientCredentials, RateLimiter, RateLimiterStore, Retry } from "@sluice/core"
import { NodeTransport } from "@sluice/node"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import { median } from "./measure.js"

const here = Path.dirname(fileURLToPath(import.meta.url))

export interface Options {
  readonly passes: number
  readonly blocksPerPass: number
  readonly requestsPerBlock: number
}

/** The variants, in the order they are reported; the first is the baseline. */
export const variants = [
  { key: "transport", label: "NodeTransport (`execute` + `json`)" },
  { key: "api", label: "ApiClient `get` (10 s timeout, enforced by the transport)" },
  { key: "apiRaced", label: "ApiClient `get`, timeout raced with Effect.timeoutFail (any other client)" },
  { key: "apiNoTimeout", label: "ApiClient `get`, no timeout" },
  { key: "apiRetry", label: "ApiClient `get` with `Retry`" },
  { key: "full", label: "full stack: ApiClient, OAuth2 (cached token), token bucket (not binding), `Retry`" }
] as const

export type Key = (typeof variants)[number]["key"]

export interface Row {
  readonly c: number
  /** µs of client CPU per request, per variant, over all passes. */
  readonly micros: Record<Key, number>
  /** Per variant: the ratio to the transport in each pass. */
  readonly passRatios: Record<Key, ReadonlyArray<number>>
}

/** The V8 flags the method needs (see the module's comment). */
export const nodeFlags = ["--expose-gc", "--min-semi-space-size=16", "--max-semi-space-size=16"]

/** {@link run} in a child process started with {@link nodeFlags}. */
export const runInChild = (options: Options): Promise<ReadonlyArray<Row>> =>
  new Promise((resolve, reject) => {
    const child = ChildProcess.spawn(process.execPath, [...nodeFlags, Path.join(here, "cpuWorker.js"), JSON.stringify(options)], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()))
    child.once("error", reject)
    child.once("exit", (code) =>
      code === 0 ? resolve(JSON.parse(out) as ReadonlyArray<Row>) : reject(new Error(`cpu scenario exited with ${code}`))
    )
  })

/** V8's collector, exposed by `node --expose-gc`. */
const gc = (options: { readonly type: "major" | "minor" }): void => {
  const exposed = (globalThis as { gc?: (options: { readonly type: "major" | "minor" }) => void }).gc
  if (exposed === undefined) throw new Error("the cpu scenario needs node --expose-gc: run it with runInChild")
  exposed(options)
}

export const run = async (options: Options): Promise<ReadonlyArray<Row>> => {
  const child = ChildProcess.spawn(process.execPath, [Path.join(here, "server.js")], { stdio: ["ignore", "pipe", "inherit"] })
  const url = await new Promise<string>((resolve) =>
    child.stdout!.once("data", (d: Buffer) => resolve(/listening on (\S+)/.exec(d.toString())![1]!))
  )
  const scope = Effect.runSync(Scope.make())
  // One pool for every variant: a second pool would change the socket count, and with it the cost of everything.
  const http = await Effect.runPromise(Scope.extend(NodeTransport.make({ keepAliveTimeout: "60 seconds" }), scope))
  const api = (options: Partial<ApiClient.Options>) =>
    Effect.runPromise(Effect.provideService(ApiClient.make({ baseUrl: url, ...options }), HttpClient.HttpClient, http))
  // Services built once in the scope every variant shares, as a layer graph a user would write.
  const withServices = <ROut, E>(layer: Layer.Layer<ROut, E, HttpClient.HttpClient>) =>
    Effect.runPromise(Scope.extend(
      Effect.flatMap(
        Layer.build(Layer.provideMerge(layer, Layer.succeed(HttpClient.HttpClient, http))),
        (services) => Effect.provide(ApiClient.make({ baseUrl: url }), services)
      ),
      scope
    ))
  const clients = {
    api: await api({}),
    apiRetry: await withServices(Retry.layer()),
    // The whole stack as a user runs it, as in scenario 1.
    full: await withServices(Layer.mergeAll(
      ClientCredentials.layer({ tokenUrl: `${url}/oauth/token`, clientId: "bench", clientSecret: Redacted.make("bench-secret") }),
      RateLimiter.layerTokenBucket({ limit: 1_000_000, window: "1 second" }).pipe(Layer.provide(RateLimiterStore.layerMemory)),
      Retry.layer()
    )),
    // A transformClient makes a new client that does not enforce TransportDeadline: the attempt is raced.
    apiRaced: await api({ transformClient: (client) => HttpClient.mapRequest(client, (request) => request) }),
    apiNoTimeout: await api({ timeout: Duration.infinity })
  }
  const once: Record<Key, Effect.Effect<unknown, unknown>> = {
    transport: Effect.flatMap(http.execute(HttpClientRequest.get(`${url}/items`)), (r) => r.json),
    api: clients.api.get("/items"),
    apiRaced: clients.apiRaced.get("/items"),
    apiNoTimeout: clients.apiNoTimeout.get("/items"),
    apiRetry: clients.apiRetry.get("/items"),
    full: clients.full.get("/items")
  }
  const keys = variants.map((v) => v.key)

  const rows: Array<Row> = []
  for (const c of [1, 64]) {
    const perFiber = Math.ceil(options.requestsPerBlock / c)
    const block = async (key: Key) => {
      gc({ type: "major" })
      const before = process.cpuUsage()
      await Effect.runPromise(
        Effect.forEach(Array.from({ length: c }), () => Effect.repeatN(Effect.orDie(once[key]), perFiber - 1), {
          concurrency: "unbounded",
          discard: true
        })
      )
      gc({ type: "minor" })
      const used = process.cpuUsage(before)
      return used.user + used.system
    }
    // warm-up: JIT, sockets
    for (let i = 0; i < 3; i++) for (const key of keys) await block(key)
    const total = Object.fromEntries(keys.map((k) => [k, 0])) as Record<Key, number>
    const passRatios = Object.fromEntries(keys.map((k) => [k, [] as Array<number>])) as Record<Key, Array<number>>
    for (let pass = 0; pass < options.passes; pass++) {
      const sum = Object.fromEntries(keys.map((k) => [k, 0])) as Record<Key, number>
      for (let b = 0; b < options.blocksPerPass; b++) {
        for (const key of b % 2 === 0 ? keys : [...keys].reverse()) sum[key] += await block(key)
      }
      for (const key of keys) {
        total[key] += sum[key]
        passRatios[key].push(sum[key] / sum.transport)
      }
    }
    const requests = options.passes * options.blocksPerPass * perFiber * c
    const micros = Object.fromEntries(keys.map((k) => [k, total[k] / requests])) as Record<Key, number>
    rows.push({ c, micros, passRatios })
  }
  await Effect.runPromise(Scope.close(scope, Exit.void))
  child.kill("SIGTERM")
  return rows
}

/** The median of a variant's per-pass ratios to the transport. */
export const medianRatio = (row: Row, key: Key): number => median(row.passRatios[key])
