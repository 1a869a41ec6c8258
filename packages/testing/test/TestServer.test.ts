import { assert, describe, expect, it } from "@effect/vitest"
import * as Net from "node:net"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import { TestServer } from "../src/index.js"
import { formatHttpDate } from "../src/internal/reply.js"

interface RawResult {
  readonly data: string
  /** How the connection ended: the peer's FIN, a reset, or still open when we gave up. */
  readonly end: "fin" | "reset" | "open"
}

/** Sends one raw HTTP/1.1 request over a fresh socket and reports exactly what came back. */
const raw = (port: number, request: string, options?: { readonly giveUpAfterMs?: number }) =>
  Effect.async<RawResult>((resume) => {
    const socket = Net.connect(port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    let done = false
    const finish = (end: RawResult["end"]) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed({ data: Buffer.concat(chunks).toString("utf8"), end }))
    }
    const timer = setTimeout(() => finish("open"), options?.giveUpAfterMs ?? 2_000)
    socket.on("data", (c) => chunks.push(c))
    socket.on("end", () => finish("fin"))
    socket.on("error", (e: NodeJS.ErrnoException) => finish(e.code === "ECONNRESET" ? "reset" : "fin"))
    socket.write(request)
  })

const get = (path: string, headers = "") => `GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n${headers}\r\n`
const post = (path: string, body: string, headers = "") =>
  `POST ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${headers}\r\n${body}`

const json = (r: RawResult) => JSON.parse(r.data.slice(r.data.indexOf("\r\n\r\n") + 4))
const statusOf = (r: RawResult) => Number(r.data.slice(9, 12))
const header = (r: RawResult, name: string) =>
  new RegExp(`\\r\\n${name}: ([^\\r]*)`, "i").exec(r.data)?.[1]

describe("TestServer faults happen at the socket level", () => {
  it.scoped("reset before headers: a TCP reset and no byte", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/r", then: TestServer.fault("reset-before-headers") }] })
      const r = yield* raw(server.port, get("/r"))
      expect(r).toEqual({ data: "", end: "reset" })
    }))

  it.scoped("reset after headers: the status line arrives, then a reset", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [{ path: "/r", then: { ...TestServer.fault("reset-after-headers"), json: { a: "b".repeat(100) } } }]
      })
      const r = yield* raw(server.port, get("/r"))
      expect(r.end).toBe("reset")
      expect(statusOf(r)).toBe(200)
    }))

  it.scoped("truncated body: fewer bytes than Content-Length, then a FIN", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/t", then: TestServer.fault("truncated-body") }] })
      const r = yield* raw(server.port, get("/t"))
      expect(r.end).toBe("fin")
      const promised = Number(header(r, "content-length"))
      const got = Buffer.byteLength(r.data.slice(r.data.indexOf("\r\n\r\n") + 4))
      expect(got).toBeGreaterThan(0)
      expect(got).toBeLessThan(promised)
    }))

  it.scoped("malformed JSON, hang and endless body", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [
          { path: "/m", then: TestServer.fault("malformed-json") },
          { path: "/h", then: TestServer.fault("hang") },
          { path: "/e", then: TestServer.fault("endless-body", { chunkDelay: 0 }) }
        ]
      })
      const m = yield* raw(server.port, get("/m"))
      expect(header(m, "content-type")).toBe("application/json")
      expect(() => json(m)).toThrow()
      const h = yield* raw(server.port, get("/h"), { giveUpAfterMs: 200 })
      expect(h).toEqual({ data: "", end: "open" })
      const e = yield* raw(server.port, get("/e"), { giveUpAfterMs: 200 })
      expect(e.end).toBe("open")
      expect(e.data.split("data: ").length).toBeGreaterThan(1)
    }))
})

describe("TestServer scripts and replies", () => {
  it.scoped("a script is served in order, then the default; the log records each request", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [{
          method: "POST",
          path: "/x",
          script: [TestServer.status(503), TestServer.tooManyRequests({ retryAfter: 2 })],
          then: { json: { ok: true } }
        }]
      })
      const a = yield* raw(server.port, post("/x", "{}", "authorization: Bearer secret-token\r\nx-api-key: k\r\n"))
      const b = yield* raw(server.port, post("/x", "{}"))
      const c = yield* raw(server.port, post("/x", "{}"))
      expect([statusOf(a), statusOf(b), statusOf(c)]).toEqual([503, 429, 200])
      expect(header(b, "retry-after")).toBe("2")
      const log = yield* server.log
      expect(log.map((r) => r.status)).toEqual([503, 429, 200])
      expect(log[0]!.headers["authorization"]).toBe("Bearer ***")
      expect(log[0]!.headers["x-api-key"]).toBe("***")
      expect(JSON.stringify(log)).not.toContain("secret-token")
      expect(new Set(log.map((r) => r.connectionId)).size).toBe(3)
      const stats = yield* server.stats
      expect(stats.requests["/x"]).toBe(3)
      expect(stats.statuses).toEqual({ 200: 1, 429: 1, 503: 1 })
      expect(stats.tooManyRequests).toBe(1)
      const viaHttp = yield* raw(server.port, get("/__sluice/stats"))
      expect(json(viaHttp).requests["/x"]).toBe(3)
    }))

  it.scoped("the log and the echo mask the common secret headers and query parameters by default", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/e", then: { echo: true } }] })
      const secrets = ["cookie", "x-api-key", "api-token", "x-auth-token", "private-token", "proxy-authorization"]
      const r = yield* raw(
        server.port,
        get(
          "/e?access_token=qs-secret-1&keep=1&api_key=qs-secret-2",
          secrets.map((h, i) => `${h}: hdr-secret-${i}\r\n`).join("") + "x-visible: v\r\n"
        )
      )
      const echo = json(r) as { query: string; headers: Record<string, string> }
      const logged = (yield* server.log)[0]!
      for (const seen of [echo, logged]) {
        for (const h of secrets) expect(seen.headers[h], h).toBe("***")
        expect(seen.headers["x-visible"]).toBe("v")
        expect(seen.query).toBe("?access_token=***&keep=1&api_key=***")
      }
      expect(JSON.stringify([echo, logged])).not.toMatch(/secret-/)
    }))

  it.scoped("Retry-After as every HTTP-date form", () =>
    Effect.gen(function*() {
      const at = Date.UTC(2031, 10, 6, 8, 49, 37)
      const server = yield* TestServer.make({
        routes: [
          { path: "/imf", then: TestServer.tooManyRequests({ retryAfter: { at } }) },
          { path: "/850", then: TestServer.tooManyRequests({ retryAfter: { at, format: "rfc850" } }) },
          { path: "/asc", then: TestServer.tooManyRequests({ retryAfter: { at, format: "asctime" } }) }
        ]
      })
      expect(header(yield* raw(server.port, get("/imf")), "retry-after")).toBe("Thu, 06 Nov 2031 08:49:37 GMT")
      expect(header(yield* raw(server.port, get("/850")), "retry-after")).toBe("Thursday, 06-Nov-31 08:49:37 GMT")
      expect(header(yield* raw(server.port, get("/asc")), "retry-after")).toBe("Thu Nov  6 08:49:37 2031")
      expect(formatHttpDate(at)).toBe(new Date(at).toUTCString())
    }))

  it.scoped("a delay before the headers follows the Effect clock", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/slow", then: { delay: "30 seconds", json: 1 } }] })
      const fiber = yield* Effect.fork(raw(server.port, get("/slow"), { giveUpAfterMs: 5_000 }))
      yield* server.awaitRequests(1)
      yield* TestClock.adjust("29 seconds")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      const r = yield* Fiber.join(fiber)
      expect(statusOf(r)).toBe(200)
    }))

  it.scoped("enqueue adds replies to a running route", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/q", then: { json: "default" } }] })
      yield* server.enqueue("/q", [TestServer.status(502)])
      expect(statusOf(yield* raw(server.port, get("/q")))).toBe(502)
      expect(json(yield* raw(server.port, get("/q")))).toBe("default")
    }))
})

describe("hidden capacity", () => {
  it.scoped("token bucket: a burst is admitted, then 429 with Retry-After; refills on the clock", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [{ path: "/api", capacity: { rate: 5, burst: 5, headers: "ietf" }, then: { json: { ok: true } } }]
      })
      const first = yield* Effect.forEach(Array.from({ length: 7 }), () => raw(server.port, get("/api")))
      expect(first.map(statusOf)).toEqual([200, 200, 200, 200, 200, 429, 429])
      expect(header(first[5]!, "retry-after")).toBe("1")
      expect(header(first[0]!, "ratelimit-limit")).toBe("5")
      yield* TestClock.adjust("400 millis")
      const after = yield* Effect.forEach(Array.from({ length: 3 }), () => raw(server.port, get("/api")))
      expect(after.map(statusOf)).toEqual([200, 200, 429])
      expect((yield* server.stats).tooManyRequests).toBe(3)
    }))

  it.scoped("fixed window with X-RateLimit headers, and a step down while running", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [{ path: "/api", capacity: { algorithm: "fixed-window", rate: 3, window: "1 second", headers: "x" } }]
      })
      const a = yield* Effect.forEach(Array.from({ length: 4 }), () => raw(server.port, get("/api")))
      expect(a.map(statusOf)).toEqual([200, 200, 200, 429])
      expect(header(a[2]!, "x-ratelimit-remaining")).toBe("0")
      yield* TestClock.adjust("1 second")
      yield* server.setCapacity("/api", { algorithm: "fixed-window", rate: 1, window: "1 second" })
      const b = yield* Effect.forEach(Array.from({ length: 2 }), () => raw(server.port, get("/api")))
      expect(b.map(statusOf)).toEqual([200, 429])
    }))

  it.scoped("quota shapes: a window from the first request (express), a sliding window, a bare 429, every header form", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [
          { path: "/express", capacity: { algorithm: "fixed-window", rate: 2, window: "2 seconds", burst: 2, windowStart: "first-request", headers: "draft-7" } },
          { path: "/sliding", capacity: { algorithm: "sliding-window", rate: 2, window: "1 second", retryAfter: "none", headers: "draft-8" } },
          { path: "/openai", capacity: { rate: 5, headers: "openai" } },
          { path: "/anthropic", capacity: { rate: 5, headers: "anthropic", retryAfter: "http-date" } }
        ]
      })
      // express: the window starts at the first request, not on the clock
      yield* TestClock.adjust("1500 millis")
      const e = yield* Effect.forEach(Array.from({ length: 3 }), () => raw(server.port, get("/express")))
      expect(e.map(statusOf)).toEqual([200, 200, 429])
      expect(header(e[0]!, "ratelimit")).toBe("limit=2, remaining=1, reset=2")
      expect(header(e[0]!, "ratelimit-policy")).toBe("2;w=2")
      expect(header(e[2]!, "retry-after")).toBe("2")
      yield* TestClock.adjust("1 second")
      expect(statusOf(yield* raw(server.port, get("/express")))).toBe(429)
      yield* TestClock.adjust("1 second")
      expect(statusOf(yield* raw(server.port, get("/express")))).toBe(200)
      // sliding: at most 2 in any second; a bare 429
      const sl = yield* Effect.forEach(Array.from({ length: 3 }), () => raw(server.port, get("/sliding")))
      expect(sl.map(statusOf)).toEqual([200, 200, 429])
      expect(header(sl[2]!, "retry-after")).toBeUndefined()
      expect(header(sl[0]!, "ratelimit")).toBe("\"default\";r=1;t=1")
      expect(header(sl[0]!, "ratelimit-policy")).toBe("\"default\";q=2;w=1")
      yield* TestClock.adjust("600 millis")
      expect(statusOf(yield* raw(server.port, get("/sliding")))).toBe(429)
      yield* TestClock.adjust("500 millis")
      expect(statusOf(yield* raw(server.port, get("/sliding")))).toBe(200)
      const o = yield* raw(server.port, get("/openai"))
      expect(header(o, "x-ratelimit-remaining-requests")).toBe("4")
      expect(header(o, "x-ratelimit-reset-requests")).toMatch(/^\d+\.\d{3}s$/)
      const an = yield* raw(server.port, get("/anthropic"))
      expect(header(an, "anthropic-ratelimit-requests-reset")).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/)
      const bad = yield* Effect.flip(TestServer.make({ routes: [{ path: "/x", capacity: { rate: 1, headers: "nope" as never } }] }))
      expect(bad.message).toContain("unknown capacity headers")
    }))

  it.scoped("capacity can be changed over HTTP for out-of-process use", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/api", capacity: { rate: 100 } }] })
      const r = yield* raw(server.port, post("/__sluice/capacity", JSON.stringify({ path: "/api", rate: 1, burst: 1 })))
      expect(statusOf(r)).toBe(204)
      const b = yield* Effect.forEach(Array.from({ length: 2 }), () => raw(server.port, get("/api")))
      expect(b.map(statusOf)).toEqual([200, 429])
      const bad = yield* raw(server.port, post("/__sluice/capacity", JSON.stringify({ path: "/api", rate: -1 })))
      expect(statusOf(bad)).toBe(400)
      expect(json(bad).error).toContain("rate")
    }))
})

describe("OAuth2 token endpoint", () => {
  const oauth: TestServer.OAuth = { clientId: "app", clientSecret: "s3cr3t", tokenLifetime: "60 seconds" }
  const form = (id: string, secret: string) => `grant_type=client_credentials&client_id=${id}&client_secret=${secret}`
  const formHeaders = "content-type: application/x-www-form-urlencoded\r\n"

  it.scoped("issues tokens for body or Basic credentials; protected routes require a live one", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ oauth, routes: [{ path: "/api", requireAuth: true, then: { json: 1 } }] })
      const viaBody = json(yield* raw(server.port, post("/oauth/token", form("app", "s3cr3t"), formHeaders)))
      expect(viaBody).toMatchObject({ token_type: "Bearer", expires_in: 60 })
      const basic = Buffer.from("app:s3cr3t").toString("base64")
      const viaBasic = json(
        yield* raw(server.port, post("/oauth/token", "grant_type=client_credentials", `${formHeaders}authorization: Basic ${basic}\r\n`))
      )
      expect(typeof viaBasic.access_token).toBe("string")
      const bad = yield* raw(server.port, post("/oauth/token", form("app", "wrong"), formHeaders))
      expect(statusOf(bad)).toBe(401)
      expect(json(bad).error).toBe("invalid_client")
      expect(statusOf(yield* raw(server.port, get("/api")))).toBe(401)
      const ok = yield* raw(server.port, get("/api", `authorization: Bearer ${viaBody.access_token}\r\n`))
      expect(statusOf(ok)).toBe(200)
      // the secret never reaches the log
      expect(JSON.stringify(yield* server.log)).not.toContain("s3cr3t")
      // expiry follows the clock; revocation is immediate
      yield* TestClock.adjust("61 seconds")
      expect(statusOf(yield* raw(server.port, get("/api", `authorization: Bearer ${viaBody.access_token}\r\n`)))).toBe(401)
      const fresh = json(yield* raw(server.port, post("/oauth/token", form("app", "s3cr3t"), formHeaders)))
      yield* server.revokeTokens
      expect(statusOf(yield* raw(server.port, get("/api", `authorization: Bearer ${fresh.access_token}\r\n`)))).toBe(401)
      expect((yield* server.stats).tokenRequests).toBe(4)
    }))

  it.scoped("can be told to fail first, and to leave out expires_in", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        oauth: { ...oauth, omitExpiresIn: true, script: [TestServer.status(503), { body: "not json", status: 200 }] }
      })
      expect(statusOf(yield* raw(server.port, post("/oauth/token", form("app", "s3cr3t"), formHeaders)))).toBe(503)
      expect((yield* raw(server.port, post("/oauth/token", form("app", "s3cr3t"), formHeaders))).data).toContain("not json")
      const token = json(yield* raw(server.port, post("/oauth/token", form("app", "s3cr3t"), formHeaders)))
      expect(token.expires_in).toBeUndefined()
    }))
})

describe("latency model and random faults", () => {
  it.scoped("latency grows with the requests in flight", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [{ path: "/l", latency: { base: "100 millis", perInFlight: "50 millis" }, then: { json: 1 } }]
      })
      const fibers = yield* Effect.forEach([0, 1, 2], () => Effect.fork(raw(server.port, get("/l"), { giveUpAfterMs: 5_000 })))
      yield* server.awaitRequests(3)
      // 100 ms for the first, 150 and 200 for the ones that found 1 and 2 in flight
      yield* TestClock.adjust("100 millis")
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 50)))
      expect(fibers.filter((f) => f.unsafePoll() !== null)).toHaveLength(1)
      yield* TestClock.adjust("100 millis")
      const all = yield* Effect.forEach(fibers, Fiber.join)
      expect(all.map(statusOf)).toEqual([200, 200, 200])
    }))

  it.scoped("random faults follow their probability and repeat with a seed", () =>
    Effect.gen(function*() {
      const run = Effect.gen(function*() {
        const server = yield* TestServer.make({
          routes: [{ path: "/r", randomFaults: { probability: 0.3, reply: TestServer.status(503), seed: 7 }, then: { json: 1 } }]
        })
        const results = yield* Effect.forEach(Array.from({ length: 60 }), () => raw(server.port, get("/r")))
        return results.map(statusOf)
      })
      const a = yield* Effect.scoped(run)
      const b = yield* Effect.scoped(run)
      expect(a).toEqual(b)
      const share = a.filter((s) => s === 503).length / a.length
      expect(share).toBeGreaterThan(0.1)
      expect(share).toBeLessThan(0.5)
    }))
})

describe("the standalone process", () => {
  it.live("sluice-test-server starts, says where it listens, serves stats, and stops on SIGTERM", () =>
    Effect.gen(function*() {
      const { spawn } = yield* Effect.promise(() => import("node:child_process"))
      const bin = new URL("../dist/bin.js", import.meta.url).pathname
      const child = spawn(process.execPath, [bin, "--capacity", "5", "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] })
      const url = yield* Effect.promise(() =>
        new Promise<string>((resolve, reject) => {
          child.stdout!.once("data", (d: Buffer) => resolve(/listening on (\S+)/.exec(d.toString())![1]!))
          child.once("exit", (code) => reject(new Error(`exited ${code}`)))
        })
      )
      const port = Number(new URL(url).port)
      const statuses = yield* Effect.forEach(Array.from({ length: 7 }), () => raw(port, get("/anything")))
      expect(statuses.map(statusOf)).toEqual([200, 200, 200, 200, 200, 429, 429])
      expect(json(yield* raw(port, get("/__sluice/stats"))).tooManyRequests).toBe(2)
      const code = yield* Effect.promise(() => new Promise<number | null>((resolve) => {
        child.once("exit", (c) => resolve(c))
        child.kill("SIGTERM")
      }))
      expect(code).toBe(0)
      const bad = spawn(process.execPath, [bin, "--capacity", "-1"], { stdio: ["ignore", "pipe", "pipe"] })
      let err = ""
      bad.stderr!.on("data", (d) => (err += d))
      const badCode = yield* Effect.promise(() => new Promise<number | null>((resolve) => bad.once("exit", resolve)))
      expect(badCode).toBe(2)
      expect(err).toContain("rate must be > 0")
    }))
})

describe("TestServer lifecycle and configuration", () => {
  it.scoped("closing the scope closes every socket", () =>
    Effect.gen(function*() {
      const { Scope } = yield* Effect.promise(() => import("effect"))
      const scope = yield* Scope.make()
      const server = yield* TestServer.make({ routes: [{ path: "/h", then: TestServer.fault("hang") }] }).pipe(
        Scope.extend(scope)
      )
      const fiber = yield* Effect.fork(raw(server.port, get("/h"), { giveUpAfterMs: 5_000 }))
      yield* server.awaitRequests(1)
      yield* Scope.close(scope, Exit.void)
      const r = yield* Fiber.join(fiber)
      expect(r.end).not.toBe("open")
    }))

  it.effect("bad configuration fails at construction with a clear message", () =>
    Effect.gen(function*() {
      const cases: Array<[TestServer.Options, string]> = [
        [{ routes: [{ path: "/x", capacity: { rate: -1 } }] }, "rate must be > 0"],
        [{ routes: [{ path: "/x", then: { fault: "explode" as never } }] }, "unknown fault \"explode\""],
        [{ routes: [{ path: "x" }] }, "must start with \"/\""],
        [{ routes: [{ path: "/x", script: [{ status: 42 }] }] }, "status 42"],
        [{ port: -3 }, "port -3"]
      ]
      for (const [options, message] of cases) {
        const error = yield* Effect.flip(Effect.scoped(TestServer.make(options)))
        assert(error._tag === "TestServerConfigError")
        expect(error.message).toContain(message)
      }
    }))
})
