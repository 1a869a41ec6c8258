import * as Http from "node:http"
import * as Net from "node:net"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { interrupt as fiberInterrupt } from "effect/Fiber"
import { none as fiberIdNone } from "effect/FiberId"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type * as TS from "../TestServer.js"
import { TestServerConfigError } from "../TestServer.js"

const FAULTS = new Set<string>([
  "reset-before-headers",
  "reset-after-headers",
  "truncated-body",
  "malformed-json",
  "endless-body",
  "endless-line",
  "huge-body",
  "hang"
])
const SECRET_HEADERS = [
  "authorization",
  "proxy-authorization",
  "cookie",
  "x-api-key",
  "api-key",
  "api-token",
  "x-api-token",
  "x-auth-token",
  "private-token"
]

/** What a `huge-body` answer announces: 2 GiB, which no client can buffer. */
const HUGE_BODY_LENGTH = 2 * 1024 * 1024 * 1024

/** What an `endless-line` body repeats: 64 KiB without a line end. */
const ENDLESS_LINE_CHUNK = "x".repeat(64 * 1024)

/** Query parameters masked in the log: OAuth2's bearer-in-query form and the usual key names. */
const SECRET_QUERY = /([?&](?:access_token|api_key|apikey|key|token|client_secret)=)[^&#]*/gi
const maskQuery = (search: string) => search === "" ? search : search.replace(SECRET_QUERY, "$1***")

const configError = (message: string) => new TestServerConfigError({ message })

const millis = (d: Duration.DurationInput | undefined, what: string): number => {
  if (d === undefined) return 0
  const decoded = Duration.decodeUnknown(d)
  if (decoded._tag === "None" || !Duration.isFinite(decoded.value)) {
    throw configError(`${what}: ${String(d)} is not a finite duration`)
  }
  return Duration.toMillis(decoded.value)
}

const validateReply = (reply: TS.Reply, where: string): void => {
  if (reply.status !== undefined && (!Number.isInteger(reply.status) || reply.status < 100 || reply.status > 599)) {
    throw configError(`${where}: status ${reply.status} is not an HTTP status (100-599)`)
  }
  if (reply.fault !== undefined && !FAULTS.has(reply.fault)) {
    throw configError(`${where}: unknown fault "${reply.fault}" (one of ${[...FAULTS].join(", ")})`)
  }
  if (typeof reply.retryAfter === "number" && (!(reply.retryAfter >= 0) || !Number.isFinite(reply.retryAfter))) {
    throw configError(`${where}: retryAfter must be a non-negative number of seconds`)
  }
  millis(reply.delay, `${where}.delay`)
  millis(reply.chunkDelay, `${where}.chunkDelay`)
}

const validateCapacity = (c: TS.Capacity, where: string): void => {
  if (!(c.rate > 0) || !Number.isFinite(c.rate)) throw configError(`${where}: capacity rate must be > 0 (got ${c.rate})`)
  if (c.burst !== undefined && !(c.burst >= 1)) throw configError(`${where}: capacity burst must be >= 1 (got ${c.burst})`)
  if (c.headers !== undefined && !HEADER_FORMS.includes(c.headers)) {
    throw configError(`${where}: unknown capacity headers "${c.headers as string}" (one of ${HEADER_FORMS.join(", ")})`)
  }
  if (c.retryAfter !== undefined && !["seconds", "http-date", "none"].includes(c.retryAfter)) {
    throw configError(`${where}: unknown capacity retryAfter "${c.retryAfter as string}"`)
  }
  if (c.algorithm !== undefined && !ALGORITHMS.includes(c.algorithm)) {
    throw configError(`${where}: unknown capacity algorithm "${c.algorithm as string}"`)
  }
  if (c.window !== undefined && !(millis(c.window, `${where}.window`) > 0)) throw configError(`${where}: window must be > 0`)
}

const ALGORITHMS = ["token-bucket", "fixed-window", "sliding-window"]
const HEADER_FORMS = ["ietf", "x", "x-epoch", "draft-7", "draft-8", "openai", "anthropic"]

/** A quota kept on the server's clock. Its shape (window, limit) is derived once per capacity, not per request. */
class Quota {
  capacity!: TS.Capacity
  algorithm: "token-bucket" | "fixed-window" | "sliding-window" = "token-bucket"
  windowMs = 1000
  /** The bucket size, or the requests a window admits. */
  limit = 1
  tokens: number
  windowStart: number
  used = 0
  /** Admission times, for a sliding window. */
  admitted: Array<number> = []
  constructor(capacity: TS.Capacity, now: number) {
    this.configure(capacity)
    this.tokens = this.limit
    this.windowStart = capacity.windowStart === "first-request" ? Number.NEGATIVE_INFINITY : now
  }
  private configure(capacity: TS.Capacity) {
    this.capacity = capacity
    this.algorithm = capacity.algorithm ?? "token-bucket"
    const windowed = this.algorithm !== "token-bucket"
    this.windowMs = windowed ? millis(capacity.window ?? 1000, "window") : 1000
    this.limit = capacity.burst ?? (windowed ? capacity.rate * (this.windowMs / 1000) : Math.max(1, capacity.rate))
  }
  set(capacity: TS.Capacity, now: number) {
    this.refill(now)
    this.configure(capacity)
    this.tokens = Math.min(this.tokens, this.limit)
  }
  refill(now: number) {
    if (this.algorithm === "fixed-window") {
      if (now - this.windowStart >= this.windowMs) {
        this.windowStart = this.capacity.windowStart === "first-request" || !Number.isFinite(this.windowStart)
          ? now
          : this.windowStart + Math.floor((now - this.windowStart) / this.windowMs) * this.windowMs
        this.used = 0
      }
      return
    }
    if (this.algorithm === "sliding-window") {
      let drop = 0
      while (drop < this.admitted.length && this.admitted[drop]! <= now - this.windowMs) drop++
      if (drop > 0) this.admitted.splice(0, drop)
      return
    }
    const elapsed = Math.max(0, now - this.windowStart)
    this.windowStart = now
    this.tokens = Math.min(this.limit, this.tokens + (elapsed / 1000) * this.capacity.rate)
  }
  /** Takes one request; returns undefined when admitted, else the ms until one would be. */
  take(now: number): number | undefined {
    this.refill(now)
    if (this.algorithm === "fixed-window") {
      if (this.used < this.limit) {
        this.used++
        return undefined
      }
      return this.windowStart + this.windowMs - now
    }
    if (this.algorithm === "sliding-window") {
      if (this.admitted.length < this.limit) {
        this.admitted.push(now)
        return undefined
      }
      return this.admitted[0]! + this.windowMs - now
    }
    if (this.tokens >= 1) {
      this.tokens -= 1
      return undefined
    }
    return ((1 - this.tokens) / this.capacity.rate) * 1000
  }
  /** What is left and the ms until the quota resets, as a middleware would announce them. */
  private announce(now: number): { readonly remaining: number; readonly resetMs: number } {
    switch (this.algorithm) {
      case "fixed-window":
        return { remaining: Math.max(0, this.limit - this.used), resetMs: Math.max(0, this.windowStart + this.windowMs - now) }
      case "sliding-window":
        return {
          remaining: Math.max(0, this.limit - this.admitted.length),
          resetMs: this.admitted.length === 0 ? 0 : Math.max(0, this.admitted[0]! + this.windowMs - now)
        }
      default:
        return { remaining: Math.max(0, Math.floor(this.tokens)), resetMs: ((this.limit - this.tokens) / this.capacity.rate) * 1000 }
    }
  }
  headers(now: number, form: NonNullable<TS.Capacity["headers"]>, wallNow: number): Record<string, string> {
    const { remaining, resetMs } = this.announce(now)
    const limit = String(Math.floor(this.limit))
    const reset = Math.ceil(resetMs / 1000)
    const w = Math.ceil(this.windowMs / 1000)
    switch (form) {
      case "ietf":
        return { "ratelimit-limit": limit, "ratelimit-remaining": String(remaining), "ratelimit-reset": String(reset), "ratelimit-policy": `${limit};w=${w}` }
      case "x":
        return { "x-ratelimit-limit": limit, "x-ratelimit-remaining": String(remaining), "x-ratelimit-reset": String(reset) }
      case "x-epoch":
        return { "x-ratelimit-limit": limit, "x-ratelimit-remaining": String(remaining), "x-ratelimit-reset": String(Math.ceil((wallNow + resetMs) / 1000)) }
      case "draft-7":
        return { ratelimit: `limit=${limit}, remaining=${remaining}, reset=${reset}`, "ratelimit-policy": `${limit};w=${w}` }
      case "draft-8":
        return { ratelimit: `"default";r=${remaining};t=${reset}`, "ratelimit-policy": `"default";q=${limit};w=${w}` }
      case "openai":
        return {
          "x-ratelimit-limit-requests": limit,
          "x-ratelimit-remaining-requests": String(remaining),
          "x-ratelimit-reset-requests": `${(Math.ceil(resetMs) / 1000).toFixed(3)}s`
        }
      case "anthropic":
        return {
          "anthropic-ratelimit-requests-limit": limit,
          "anthropic-ratelimit-requests-remaining": String(remaining),
          "anthropic-ratelimit-requests-reset": new Date(Math.ceil((wallNow + resetMs) / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z")
        }
    }
  }
}

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

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
const pad = (n: number) => String(n).padStart(2, "0")

/** Writes an HTTP-date in one of its three forms. */
export const formatHttpDate = (at: number, format: "imf-fixdate" | "rfc850" | "asctime" = "imf-fixdate"): string => {
  const d = new Date(at)
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`
  const day = DAYS[d.getUTCDay()]!
  const month = MONTHS[d.getUTCMonth()]!
  switch (format) {
    case "imf-fixdate":
      return `${day.slice(0, 3)}, ${pad(d.getUTCDate())} ${month} ${d.getUTCFullYear()} ${time} GMT`
    case "rfc850":
      return `${day}, ${pad(d.getUTCDate())}-${month}-${pad(d.getUTCFullYear() % 100)} ${time} GMT`
    case "asctime":
      return `${day.slice(0, 3)} ${month} ${String(d.getUTCDate()).padStart(2, " ")} ${time} ${d.getUTCFullYear()}`
  }
}

const writeJson = (res: Http.ServerResponse, status: number, value: unknown) => {
  const body = JSON.stringify(value)
  res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) })
  res.end(body)
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
      if (opts.port !== undefined && !(Number.isInteger(opts.port) && opts.port >= 0 && opts.port < 65536)) {
        throw configError(`port ${opts.port} is not a TCP port`)
      }
      for (const [i, route] of (opts.routes ?? []).entries()) {
        const where = `routes[${i}] (${route.path})`
        if (typeof route.path !== "string" || !route.path.startsWith("/")) {
          throw configError(`${where}: path must start with "/"`)
        }
        route.script?.forEach((r, j) => validateReply(r, `${where}.script[${j}]`))
        if (route.randomFaults) {
          const p = route.randomFaults.probability
          if (!(p >= 0 && p <= 1)) throw configError(`${where}: randomFaults.probability must be between 0 and 1 (got ${p})`)
          validateReply(route.randomFaults.reply, `${where}.randomFaults.reply`)
        }
        if (route.then) validateReply(route.then, `${where}.then`)
        if (route.capacity) validateCapacity(route.capacity, where)
        millis(route.latency?.base, `${where}.latency.base`)
        millis(route.latency?.perInFlight, `${where}.latency.perInFlight`)
        routes.push({
          route,
          script: [...(route.script ?? [])],
          reply: undefined,
          quota: route.capacity ? new Quota(route.capacity, now()) : undefined,
          random: mulberry32(route.randomFaults?.seed ?? 42)
        })
      }
      if (opts.oauth) {
        if (!opts.oauth.clientId || !opts.oauth.clientSecret) throw configError("oauth: clientId and clientSecret are required")
        opts.oauth.script?.forEach((r, j) => validateReply(r, `oauth.script[${j}]`))
        millis(opts.oauth.tokenLifetime, "oauth.tokenLifetime")
      }
    } catch (e) {
      if (e instanceof TestServerConfigError) return yield* Effect.fail(e)
      throw e
    }
    const logLimit = opts.logLimit ?? 10_000
    const oauthPath = opts.oauth?.path ?? "/oauth/token"
    const oauthScript: Array<TS.Reply> = [...(opts.oauth?.script ?? [])]
    const secretHeaders = new Set([...SECRET_HEADERS, ...(opts.secretHeaders ?? []).map((h) => h.toLowerCase())])

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
    let tokenRequests = 0
    let tokensIssued = 0
    let connectionsOpened = 0
    let abandoned = 0
    const faulted = new WeakSet<Http.ServerResponse>()
    const sockets = new Set<Net.Socket>()
    const connectionIds = new WeakMap<Net.Socket, number>()
    let waiters: Array<{ n: number; deferred: Deferred.Deferred<void> }> = []
    const tokens = new Map<string, number>()
    let tokenCounter = 0
    let inFlight = 0

    const mask = (headers: Http.IncomingHttpHeaders): Record<string, string> => {
      const out: Record<string, string> = {}
      for (const [k, v] of Object.entries(headers)) {
        if (v === undefined) continue
        const value = Array.isArray(v) ? v.join(", ") : v
        if (!secretHeaders.has(k)) out[k] = value
        else if (k === "authorization") out[k] = `${value.split(" ")[0]} ***`
        else out[k] = "***"
      }
      return out
    }
    const maskBody = (path: string, body: string) =>
      path === oauthPath ? body.replace(/(client_secret=)[^&]*/g, "$1***") : body

    const send = (
      req: Http.IncomingMessage,
      res: Http.ServerResponse,
      entry: { status: number | undefined },
      reply: TS.Reply,
      extraHeaders: Record<string, string>,
      echoOf: (unmasked: boolean) => unknown
    ) => {
      const socket = req.socket
      const fault = reply.fault
      if (fault !== undefined && fault !== "hang" && fault !== "endless-body" && fault !== "endless-line" &&
        fault !== "huge-body") faulted.add(res)
      const chunkDelay = reply.chunkDelay !== undefined ? millis(reply.chunkDelay, "chunkDelay") : 100
      const cancels: Array<() => void> = []
      res.on("close", () => cancels.forEach((c) => c()))
      const go = () => {
        if (fault === "hang") return
        if (fault === "reset-before-headers") {
          socket.resetAndDestroy()
          return
        }
        const status = reply.status ?? (reply.redirect ? 302 : reply.retryAfter !== undefined ? 429 : 200)
        entry.status = status
        statuses[status] = (statuses[status] ?? 0) + 1
        if (status === 429) tooMany++
        const headers: Record<string, string> = { ...extraHeaders, ...(reply.headers ?? {}) }
        if (reply.redirect) headers["location"] = reply.redirect
        if (reply.retryAfter !== undefined) {
          headers["retry-after"] = typeof reply.retryAfter === "number"
            ? String(Math.ceil(reply.retryAfter))
            : formatHttpDate(reply.retryAfter.at, reply.retryAfter.format)
        }
        let body: string | undefined
        if (fault === "malformed-json") {
          headers["content-type"] = "application/json"
          body = "{\"ok\": tru"
        } else if (reply.echo) {
          headers["content-type"] = "application/json"
          body = JSON.stringify(echoOf(reply.echo === "unmasked"))
        } else if (reply.json !== undefined) {
          headers["content-type"] = "application/json"
          body = JSON.stringify(reply.json)
        } else if (reply.body !== undefined) {
          body = reply.body
        }
        if (fault === "truncated-body") {
          const full = body ?? JSON.stringify({ data: "x".repeat(256) })
          headers["content-length"] = String(Buffer.byteLength(full))
          res.writeHead(status, headers)
          res.write(full.slice(0, Math.floor(full.length / 2)))
          // A FIN after half the promised bytes: truncated, not reset. (Real timers here:
          // these only let the bytes flush, they are not part of the scripted timing.)
          setTimeout(() => socket.end(), 10)
          return
        }
        const endless = fault === "endless-body" || fault === "endless-line" || fault === "huge-body"
        if (fault === "reset-after-headers" || endless || reply.chunks) {
          if (fault === "huge-body") headers["content-length"] = String(HUGE_BODY_LENGTH)
          res.writeHead(status, headers)
          res.flushHeaders()
          if (fault === "reset-after-headers") {
            res.write(body !== undefined ? body.slice(0, Math.max(1, Math.floor(body.length / 2))) : "{\"partial\":")
            setTimeout(() => socket.resetAndDestroy(), 10)
            return
          }
          const chunks = endless ? undefined : [...reply.chunks!]
          if (fault === "endless-line") res.write("data: ")
          const next = () => {
            if (res.destroyed) return
            if (fault === "endless-line" || fault === "huge-body") {
              res.write(ENDLESS_LINE_CHUNK)
            } else if (chunks === undefined) {
              res.write(`data: ${Date.now()}\n\n`)
            } else {
              const chunk = chunks.shift()
              if (chunk === undefined) {
                res.end()
                return
              }
              res.write(chunk)
            }
            cancels.push(after(chunkDelay, next))
          }
          next()
          return
        }
        if (body !== undefined) headers["content-length"] = String(Buffer.byteLength(body))
        res.writeHead(status, headers)
        res.end(body)
      }
      const delay = millis(reply.delay, "delay")
      if (delay > 0) cancels.push(after(delay, go))
      else go()
    }

    const handleOAuth = (
      req: Http.IncomingMessage,
      res: Http.ServerResponse,
      entry: { status: number | undefined },
      body: string,
      echoOf: (unmasked: boolean) => unknown
    ) => {
      tokenRequests++
      const scripted = oauthScript.shift()
      if (scripted !== undefined) return send(req, res, entry, scripted, {}, echoOf)
      const oauth = opts.oauth!
      const form = new URLSearchParams(body)
      let id = form.get("client_id")
      let secret = form.get("client_secret")
      const auth = req.headers.authorization
      if (auth?.startsWith("Basic ")) {
        const decoded = Buffer.from(auth.slice(6), "base64").toString("utf8")
        const i = decoded.indexOf(":")
        id = decodeURIComponent(decoded.slice(0, i))
        secret = decodeURIComponent(decoded.slice(i + 1))
      }
      if (req.method !== "POST") return send(req, res, entry, { status: 405, json: { error: "invalid_request" } }, {}, echoOf)
      if (form.get("grant_type") !== "client_credentials") {
        return send(req, res, entry, { status: 400, json: { error: "unsupported_grant_type" } }, {}, echoOf)
      }
      if (id !== oauth.clientId || secret !== oauth.clientSecret) {
        return send(req, res, entry, { status: 401, json: { error: "invalid_client" } }, {}, echoOf)
      }
      const lifetime = oauth.tokenLifetime !== undefined ? millis(oauth.tokenLifetime, "tokenLifetime") : 3_600_000
      const token = `tok-${++tokenCounter}-${Math.random().toString(36).slice(2, 10)}`
      tokens.set(token, now() + lifetime)
      tokensIssued++
      const json: Record<string, unknown> = { access_token: token, token_type: "Bearer" }
      if (!oauth.omitExpiresIn) json["expires_in"] = Math.round(lifetime / 1000)
      const scope = form.get("scope")
      if (scope) json["scope"] = scope
      send(req, res, entry, { json, headers: { "cache-control": "no-store" } }, {}, echoOf)
    }

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
          headers: mask(req.headers),
          body: maskBody(path, body),
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
        if (opts.oauth && path === oauthPath) return handleOAuth(req, res, entry, body, echoOf)
        const state = routes.find((r) => matches(r.route, method, path))
        if (state === undefined) {
          return send(req, res, entry, { status: 404, json: { error: "no such route", method, path } }, {}, echoOf)
        }
        const route = state.route
        if (route.requireAuth) {
          const auth = req.headers.authorization
          const token = auth?.startsWith("Bearer ") ? auth.slice(7) : undefined
          const expires = token === undefined ? undefined : tokens.get(token)
          if (expires === undefined || expires <= now()) {
            return send(req, res, entry, {
              status: 401,
              headers: { "www-authenticate": "Bearer error=\"invalid_token\"" },
              json: { error: "invalid_token" }
            }, {}, echoOf)
          }
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
      tokenRequests,
      tokensIssued,
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
          if (opts.oauth && path === oauthPath) oauthScript.push(...replies)
          else findRoute(path).script.push(...replies)
        }),
      revokeTokens: Effect.sync(() => tokens.clear()),
      resetStats: Effect.sync(() => {
        log = []
        perRoute = {}
        statuses = {}
        total = 0
        tooMany = 0
        tokenRequests = 0
        tokensIssued = 0
        abandoned = 0
      })
    } satisfies TS.TestServer
  })

export const blackhole: Effect.Effect<{ readonly port: number; readonly url: string }, never, Scope.Scope> = Effect
  .acquireRelease(
    Effect.async<{ server: Net.Server; sockets: Set<Net.Socket> }>((resume) => {
      const sockets = new Set<Net.Socket>()
      const server = Net.createServer((socket) => {
        sockets.add(socket)
        socket.on("error", () => {})
        socket.on("close", () => sockets.delete(socket))
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, sockets })))
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const s of sockets) s.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ server }) => {
    const port = (server.address() as Net.AddressInfo).port
    return { port, url: `https://127.0.0.1:${port}` }
  }))

export const closedPort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as Net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})
