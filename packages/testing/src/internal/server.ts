/**
 * The fault-injecting server: routes, the request log and stats, and the
 * server's lifecycle. What a route answers is in `reply.ts` (faults
 * included), its hidden capacity in `quota.ts`, the token endpoint in
 * `tokenEndpoint.ts`, option checks in `config.ts`, log masking in
 * `masking.ts`.
 */
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import { interrupt as fiberInterrupt } from "effect/Fiber"
import { none as fiberIdNone } from "effect/FiberId"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type * as TS from "../TestServer.js"
import { TestServerConfigError } from "../TestServer.js"
import { configError, millis, validateCapacity, validateOptions, validateReply } from "./config.js"
import { makeMasker, maskQuery } from "./masking.js"
import { Quota } from "./quota.js"
import { makeSend, writeJson } from "./reply.js"
import { makeTokenEndpoint } from "./tokenEndpoint.js"

export { formatHttpDate } from "./reply.js"
export { blackhole, closedPort } from "./sockets.js"

interface RouteState {
  readonly route: TS.Route
  readonly script: Array<TS.Reply>
  /** Set by `setReply`: answers in place of the route's `then` (an outage, then healed). */
  reply: TS.Reply | undefined
  quota: Quota | undefined
  readonly random: () => number
}

/** A small seeded generator, so random faults repeat run to run. */
const mulberry32 = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const matches = (route: TS.Route, method: string, path: string) =>
  (route.method === undefined || route.method === "*" || route.method.toUpperCase() === method) &&
  (route.path.endsWith("*") ? path.startsWith(route.path.slice(0, -1)) : route.path === path)

export const make = (options?: TS.Options): Effect.Effect<TS.TestServer, TestServerConfigError, Scope.Scope> =>
  Effect.gen(function*() {
    const opts = options ?? {}
    const routes: Array<RouteState> = []
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    try {
      validateOptions(opts)
    } catch (e) {
      if (e instanceof TestServerConfigError) return yield* Effect.fail(e)
      throw e
    }
    for (const route of opts.routes ?? []) {
      routes.push({
        route,
        script: [...(route.script ?? [])],
        reply: undefined,
        quota: route.capacity ? new Quota(route.capacity, now()) : undefined,
        random: mulberry32(route.randomFaults?.seed ?? 42)
      })
    }
    const logLimit = opts.logLimit ?? 10_000
    const oauthPath = opts.oauth?.path ?? "/oauth/token"
    const mask = makeMasker(opts.secretHeaders ?? [], oauthPath)

    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    /** Sleeps on the Effect clock (so TestClock drives it), then calls back unless cancelled. */
    const after = (ms: number, f: () => void): (() => void) => {
      if (ms <= 0) {
        // setImmediate, not a direct call: a chunk loop with no delay must not recurse.
        const handle = setImmediate(f)
        return () => clearImmediate(handle)
      }
      const fiber = runFork(Effect.as(Effect.sleep(ms), undefined))
      let cancelled = false
      fiber.addObserver((exit) => {
        if (!cancelled && exit._tag === "Success") f()
      })
      return () => {
        cancelled = true
        runFork(fiberInterrupt(fiber))
      }
    }

    // Counters and log.
    let log: Array<TS.LoggedRequest> = []
    let perRoute: Record<string, number> = {}
    let statuses: Record<number, number> = {}
    let total = 0
    let tooMany = 0
    let connectionsOpened = 0
    let abandoned = 0
    const faulted = new WeakSet<Http.ServerResponse>()
    const sockets = new Set<Net.Socket>()
    const connectionIds = new WeakMap<Net.Socket, number>()
    let waiters: Array<{ n: number; deferred: Deferred.Deferred<void> }> = []
    let inFlight = 0

    const send = makeSend({
      after,
      faulted,
      onStatus: (status) => {
        statuses[status] = (statuses[status] ?? 0) + 1
        if (status === 429) tooMany++
      }
    })
    const oauth = opts.oauth ? makeTokenEndpoint(opts.oauth, now, send) : undefined

    const server = Http.createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
      const url = new URL(req.url ?? "/", "http://localhost")
      const path = url.pathname
      const method = req.method ?? "GET"
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8")
        res.on("close", () => {
          // The server's own resets and FINs (faults) are not the client's doing.
          if (!res.writableFinished && !faulted.has(res)) abandoned++
        })
        const entry: { -readonly [K in keyof TS.LoggedRequest]: TS.LoggedRequest[K] } = {
          id: total + 1,
          method,
          path,
          query: maskQuery(url.search),
          headers: mask.headers(req.headers),
          body: mask.body(path, body),
          at: now(),
          connectionId: connectionIds.get(req.socket) ?? 0,
          status: undefined
        }
        const echoOf = (unmasked: boolean) =>
          unmasked
            ? { method, path, query: url.search, headers: req.headers, body }
            : { method, path, query: entry.query, headers: entry.headers, body: entry.body }
        if (path === "/__sluice/stats") {
          return writeJson(res, 200, statsNow())
        }
        if (path === "/__sluice/capacity" && method === "POST") {
          try {
            const { path: target, ...capacity } = JSON.parse(body) as TS.Capacity & { path: string }
            setCapacityNow(target, capacity)
            res.writeHead(204).end()
          } catch (e) {
            writeJson(res, 400, { error: e instanceof Error ? e.message : String(e) })
          }
          return
        }
        total++
        log.push(entry)
        if (log.length > logLimit) log.splice(0, log.length - logLimit)
        perRoute[path] = (perRoute[path] ?? 0) + 1
        if (waiters.length > 0) {
          const ready = waiters.filter((w) => w.n <= total)
          waiters = waiters.filter((w) => w.n > total)
          for (const w of ready) Deferred.unsafeDone(w.deferred, Effect.void)
        }
        if (oauth && path === oauth.path) return oauth.handle(req, res, entry, body, echoOf)
        const state = routes.find((r) => matches(r.route, method, path))
        if (state === undefined) {
          return send(req, res, entry, { status: 404, json: { error: "no such route", method, path } }, {}, echoOf)
        }
        const route = state.route
        if (route.requireAuth && !oauth?.accepts(req.headers.authorization)) {
          return send(req, res, entry, {
            status: 401,
            headers: { "www-authenticate": "Bearer error=\"invalid_token\"" },
            json: { error: "invalid_token" }
          }, {}, echoOf)
        }
        let extra: Record<string, string> = {}
        let reply: TS.Reply | undefined
        if (state.quota) {
          const t = now()
          const wait = state.quota.take(t)
          const capacity = state.quota.capacity
          if (capacity.headers) extra = state.quota.headers(t, capacity.headers, Date.now())
          if (wait !== undefined) {
            const seconds = Math.max(1, Math.ceil(wait / 1000))
            reply = {
              status: 429,
              json: { error: "rate_limited" },
              ...(capacity.retryAfter === "none"
                ? {}
                : capacity.retryAfter === "http-date"
                ? { retryAfter: { at: Math.ceil((Date.now() + wait) / 1000) * 1000 } }
                : { retryAfter: seconds })
            }
          }
        }
        if (reply === undefined && route.randomFaults && state.random() < route.randomFaults.probability) {
          reply = route.randomFaults.reply
        }
        reply ??= state.script.shift() ?? state.reply ?? route.then ?? { echo: true }
        const latency = route.latency
        if (latency) {
          const ms = millis(latency.base, "latency.base") + millis(latency.perInFlight, "latency.perInFlight") * inFlight
          if (ms > 0) reply = { ...reply, delay: millis(reply.delay, "delay") + ms }
        }
        inFlight++
        res.on("close", () => inFlight--)
        send(req, res, entry, reply, extra, echoOf)
      })
    })
    server.on("connection", (socket: Net.Socket) => {
      connectionsOpened++
      connectionIds.set(socket, connectionsOpened)
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })

    const statsNow = (): TS.Stats => ({
      requests: { ...perRoute },
      statuses: { ...statuses },
      total,
      tooManyRequests: tooMany,
      tokenRequests: oauth?.stats.requests ?? 0,
      tokensIssued: oauth?.stats.issued ?? 0,
      connectionsOpened,
      connectionsOpen: sockets.size,
      abandoned
    })
    const findRoute = (path: string) => {
      const state = routes.find((r) => r.route.path === path)
      if (state === undefined) throw configError(`no route with path ${path}`)
      return state
    }
    const setCapacityNow = (path: string, capacity: TS.Capacity) => {
      validateCapacity(capacity, path)
      const state = findRoute(path)
      if (state.quota) state.quota.set(capacity, now())
      else state.quota = new Quota(capacity, now())
    }

    yield* Effect.acquireRelease(
      Effect.async<void, TestServerConfigError>((resume) => {
        server.once("error", (e) => resume(Effect.fail(configError(`cannot listen: ${e.message}`))))
        server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          for (const s of sockets) s.destroy()
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    const port = (server.address() as Net.AddressInfo).port
    const host = opts.host ?? "127.0.0.1"

    const catchConfig = <A>(f: () => A) =>
      Effect.try({
        try: f,
        catch: (e) => e instanceof TestServerConfigError ? e : configError(String(e))
      })

    return {
      url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
      port,
      log: Effect.sync(() => [...log]),
      stats: Effect.sync(statsNow),
      awaitRequests: (n) =>
        Effect.suspend(() => {
          if (total >= n) return Effect.void
          const deferred = Deferred.unsafeMake<void>(fiberIdNone)
          waiters.push({ n, deferred })
          return Deferred.await(deferred)
        }),
      setCapacity: (path, capacity) => catchConfig(() => setCapacityNow(path, capacity)),
      setReply: (path, reply) =>
        catchConfig(() => {
          if (reply !== undefined) validateReply(reply, `setReply(${path})`)
          findRoute(path).reply = reply
        }),
      enqueue: (path, replies) =>
        catchConfig(() => {
          replies.forEach((r, i) => validateReply(r, `enqueue(${path})[${i}]`))
          if (oauth && path === oauth.path) oauth.script.push(...replies)
          else findRoute(path).script.push(...replies)
        }),
      revokeTokens: Effect.sync(() => {
        oauth?.revoke()
      }),
      resetStats: Effect.sync(() => {
        log = []
        perRoute = {}
        statuses = {}
        total = 0
        tooMany = 0
        if (oauth) {
          oauth.stats.requests = 0
          oauth.stats.issued = 0
        }
        abandoned = 0
      })
    } satisfies TS.TestServer
  })
