import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { assert, describe, expect, it } from "@effect/vitest"
import { TestServer } from "@sluice/testing"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { ApiClient, ApiError } from "../src/index.js"
import { recordingTracer, setup } from "./helpers.js"

const SECRET = "sk-live-0123456789abcdef"

/** Polls a condition on the real clock, bounded: for effects of the peer's socket handling. */
const eventually = <A>(check: Effect.Effect<A, unknown>) =>
  check.pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.intersect(Schedule.recurs(150)))))

const failure = <A, E>(exit: Exit.Exit<A, E>): E => {
  assert(Exit.isFailure(exit), "expected a failure")
  const e = Cause.failureOption(exit.cause)
  assert(Option.isSome(e), `expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  return e.value
}

describe("ApiClient", () => {
  it.scoped("GET joins a base URL (trailing slash normalised) and a path template, sends default headers and params", () =>
    Effect.gen(function*() {
      const srv = yield* TestServer.make({ routes: [{ path: "/v1/users/*", then: { echo: true } }] })
      const { api } = yield* setup({ routes: [] }, { baseUrl: `${srv.url}/v1/`, headers: { "x-tenant": "acme" } })
      expect(api.baseUrl).toBe(`${srv.url}/v1`)
      const echo = (yield* api.get("/users/{id}", {
        path: { id: "a b/c" },
        params: { q: "x y", tags: ["1", "2"], skip: undefined }
      })) as { path: string; query: string; headers: Record<string, string>; method: string }
      expect(echo.method).toBe("GET")
      expect(echo.path).toBe("/v1/users/a%20b%2Fc")
      expect(echo.query).toBe("?q=x+y&tags=1&tags=2")
      expect(echo.headers["accept"]).toBe("application/json")
      expect(echo.headers["x-tenant"]).toBe("acme")
      expect(echo.headers["content-type"]).toBeUndefined()
    }))

  it.scoped("a request's own headers add to and override the defaults, for that request only", () =>
    Effect.gen(function*() {
      const { api } = yield* setup({ routes: [{ path: "/h", then: { echo: true } }] }, { headers: { "x-tenant": "acme", "x-mode": "a" } })
      type Echo = { headers: Record<string, string> }
      const own = (yield* api.get("/h", { headers: { "X-Mode": "b", "x-request": "1", "content-type": "text/plain" } })) as Echo
      expect(own.headers["x-tenant"]).toBe("acme")
      expect(own.headers["x-mode"]).toBe("b")
      expect(own.headers["x-request"]).toBe("1")
      // no body, no Content-Type (as the platform's request constructor does)
      expect(own.headers["content-type"]).toBeUndefined()
      const posted = (yield* api.post("/h", { body: [1], headers: { "x-request": "2" } })) as Echo
      expect(posted.headers["content-type"]).toBe("application/json")
      expect(posted.headers["x-request"]).toBe("2")
      const next = (yield* api.get("/h")) as Echo
      expect(next.headers["x-mode"]).toBe("a")
      expect(next.headers["x-request"]).toBeUndefined()
    }))

  it.scoped("POST sends JSON with a content type; the API key goes in its header", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setup(
        { routes: [{ path: "/items", then: { echo: true } }] },
        { apiKey: Redacted.make(SECRET) }
      )
      const echo = (yield* api.post("/items", { body: { name: "x", n: 1 } })) as {
        body: string
        headers: Record<string, string>
      }
      expect(JSON.parse(echo.body)).toEqual({ name: "x", n: 1 })
      expect(echo.headers["content-type"]).toBe("application/json")
      // the server masks secrets in its log and echo; check the raw header arrived
      expect(echo.headers["x-api-key"]).toBe("***")
      const log = yield* server.log
      expect(log[0]!.headers["x-api-key"]).toBe("***")
    }))

  it.scoped("204 and an empty 200 body give undefined, never a JSON error", () =>
    Effect.gen(function*() {
      const { api } = yield* setup({
        routes: [
          { path: "/no-content", then: { status: 204 } },
          { path: "/empty", then: { status: 200, body: "" } }
        ]
      })
      expect(yield* api.del("/no-content")).toBeUndefined()
      expect(yield* api.get("/empty")).toBeUndefined()
      expect(yield* api.del("/no-content", { schema: Schema.Void })).toBeUndefined()
    }))

  it.scoped("schema variants decode, and a mismatch names the path and the issue", () =>
    Effect.gen(function*() {
      const User = Schema.Struct({ id: Schema.Number, name: Schema.String })
      const { api } = yield* setup({
        routes: [
          { path: "/good", then: { json: { id: 1, name: "ada" } } },
          { path: "/bad", then: { json: { id: "1", name: "ada" } } }
        ]
      })
      const user = yield* api.get("/good", { schema: User })
      expect(user).toEqual({ id: 1, name: "ada" })
      const error = yield* Effect.flip(api.get("/bad", { schema: User }))
      assert(error._tag === "ResponseDecodeError")
      expect(error.reason).toBe("Schema")
      expect(error.url).toContain("/bad")
      expect(error.issue).toContain("id")
      expect(error.message).toContain("/bad")
    }))

  it.scoped("malformed JSON is a ResponseDecodeError with reason Json", () =>
    Effect.gen(function*() {
      const { api } = yield* setup({ routes: [{ path: "/broken", then: TestServer.fault("malformed-json") }] })
      const error = yield* Effect.flip(api.get("/broken"))
      assert(error._tag === "ResponseDecodeError")
      expect(error.reason).toBe("Json")
      expect(error.status).toBe(200)
    }))

  it.scoped("4xx and 5xx become HttpStatusError with status, method, URL and a bounded excerpt", () =>
    Effect.gen(function*() {
      const { api } = yield* setup({
        routes: [
          { path: "/missing", then: { status: 404, json: { error: "not found" } } },
          { path: "/huge", then: { status: 500, body: "e".repeat(10_000) } }
        ]
      }, { apiKey: Redacted.make(SECRET) })
      const notFound = yield* Effect.flip(api.get("/missing"))
      assert(notFound._tag === "HttpStatusError")
      expect(notFound.status).toBe(404)
      expect(notFound.method).toBe("GET")
      expect(notFound.url).toMatch(/\/missing$/)
      expect(notFound.body).toContain("not found")
      // a key written into the path's query (not sent as a header, not as params) stays out of errors
      const keyed = yield* Effect.flip(api.get(`/missing?api_key=${SECRET}#top`))
      assert(keyed._tag === "HttpStatusError")
      expect(keyed.url).toMatch(/\/missing$/)
      const huge = yield* Effect.flip(api.post("/huge", { body: {} }))
      assert(huge._tag === "HttpStatusError")
      expect(huge.status).toBe(500)
      expect(huge.body.length).toBeLessThan(ApiError.BODY_EXCERPT_LIMIT + 40)
      // no secret in any rendering of the errors
      for (const e of [notFound, keyed, huge]) {
        expect(e.message).not.toContain(SECRET)
        expect(JSON.stringify(e)).not.toContain(SECRET)
        expect(String(e)).not.toContain(SECRET)
      }
    }))

  it.scoped("429 becomes ServerSideRateLimitError with the parsed Retry-After", () =>
    Effect.gen(function*() {
      const { api } = yield* setup({ routes: [{ path: "/limited", then: TestServer.tooManyRequests({ retryAfter: 7 }) }] })
      const error = yield* Effect.flip(api.post("/limited"))
      assert(error._tag === "ServerSideRateLimitError")
      expect(error.retryAfter).toEqual(Option.some(Duration.seconds(7)))
      expect(error.method).toBe("POST")
    }))

  it.scoped("a reset before the headers is a TransportError; a truncated body is a response-phase TransportError", () =>
    Effect.gen(function*() {
      const { api } = yield* setup({
        routes: [
          { path: "/reset", then: TestServer.fault("reset-before-headers") },
          { path: "/truncated", then: TestServer.fault("truncated-body") },
          { path: "/reset-mid", then: TestServer.fault("reset-after-headers") }
        ]
      })
      const reset = yield* Effect.flip(api.get("/reset"))
      assert(reset._tag === "TransportError")
      expect(reset.phase).toBe("request")
      const truncated = yield* Effect.flip(api.get("/truncated"))
      assert(truncated._tag === "TransportError")
      expect(truncated.phase).toBe("response")
      const mid = yield* Effect.flip(api.get("/reset-mid"))
      assert(mid._tag === "TransportError")
      expect(mid.phase).toBe("response")
    }))

  it.scoped("a refused connection is a connect-phase TransportError", () =>
    Effect.gen(function*() {
      const port = yield* TestServer.closedPort
      const { api } = yield* setup({ routes: [] }, { baseUrl: `http://127.0.0.1:${port}` })
      const error = yield* Effect.flip(api.get(`/x?token=${SECRET}`))
      assert(error._tag === "TransportError")
      expect(error.phase).toBe("connect")
      expect(error.code).toBe("ECONNREFUSED")
      expect(error.url).toBe(`http://127.0.0.1:${port}/x`)
      expect(error.message).not.toContain(SECRET)
    }))

  it.scoped("a connect that never completes is a RequestTimeoutError in the connect phase", () =>
    Effect.gen(function*() {
      const hole = yield* TestServer.blackhole
      const { api } = yield* setup({ routes: [] }, { baseUrl: hole.url }, { connectTimeout: "150 millis" })
      const error = yield* Effect.flip(api.get("/x"))
      assert(error._tag === "RequestTimeoutError")
      expect(error.phase).toBe("connect")
    }))

  it.scoped("the total timeout fires on the Effect clock (TestClock) and aborts the request", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setup(
        { routes: [{ path: "/slow", then: { delay: "1 minute", json: { late: true } } }] },
        { timeout: "10 seconds" }
      )
      const fiber = yield* Effect.fork(api.get("/slow"))
      yield* server.awaitRequests(1)
      yield* TestClock.adjust("9 seconds")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      const error = failure(yield* Fiber.await(fiber))
      assert(error._tag === "RequestTimeoutError")
      expect(error.phase).toBe("total")
      expect(error.timeout).toEqual(Duration.seconds(10))
    }))

  it.live("on the live clock the timeout aborts the request: no answer, or a body that stalls", () =>
    Effect.scoped(Effect.gen(function*() {
      const { api, server } = yield* setup(
        {
          routes: [
            { path: "/hang", then: TestServer.fault("hang") },
            { path: "/stall", then: { chunks: ["{\"a\":", "1}"], chunkDelay: "1 minute" } }
          ]
        },
        { timeout: "200 millis" }
      )
      for (const path of ["/hang", "/stall"]) {
        const started = Date.now()
        const error = yield* Effect.flip(api.get(path))
        assert(error._tag === "RequestTimeoutError")
        expect(error.phase).toBe("total")
        expect(Date.now() - started).toBeLessThan(2_000)
      }
      // both requests were aborted: the server sees the client go away before its answer was complete
      yield* eventually(server.stats.pipe(Effect.filterOrFail((s) => s.abandoned === 2)))
    })))

  it.scoped("bad input is a typed RequestEncodeError, not a defect", () =>
    Effect.gen(function*() {
      const { api } = yield* setup({ routes: [] })
      const circular: Record<string, unknown> = {}
      circular["self"] = circular
      const e1 = yield* Effect.flip(api.post("/x", { body: circular }))
      expect(e1._tag).toBe("RequestEncodeError")
      const e2 = yield* Effect.flip(api.get("/users/{id}", { path: {} }))
      assert(e2._tag === "RequestEncodeError")
      expect(e2.message).toContain("id")
      const e3 = yield* Effect.flip(api.post("/x", { body: { n: 1n } }))
      expect(e3._tag).toBe("RequestEncodeError")
    }))

  it.scoped("one span per request with method, URL template and status; no secret in any attribute", () =>
    Effect.gen(function*() {
      const { tracer, spans } = yield* recordingTracer
      const { api } = yield* setup(
        { routes: [{ path: "/users/*", then: { json: { ok: true } } }] },
        { apiKey: Redacted.make(SECRET), apiKeyHeader: "X-Custom-Key" }
      )
      yield* api.get("/users/{id}", { path: { id: "42" } }).pipe(Effect.withTracer(tracer))
      yield* Effect.flip(api.get("/nope").pipe(Effect.withTracer(tracer)))
      const ours = spans.filter((s) => s.name.startsWith("sluice "))
      expect(ours.map((s) => s.name)).toEqual(["sluice GET /users/{id}", "sluice GET /nope"])
      expect(ours[0]!.attributes.get("url.template")).toBe("/users/{id}")
      expect(ours[0]!.attributes.get("http.request.method")).toBe("GET")
      const all = JSON.stringify(spans.map((s) => [s.name, [...s.attributes.entries()]]))
      expect(all).toContain("http.response.status_code")
      expect(all).not.toContain(SECRET)
    }))

  it.scoped("a request's span is the parent of what runs inside it; the caller's span is current again after it succeeds, fails or is interrupted", () =>
    Effect.gen(function*() {
      const { tracer, spans } = yield* recordingTracer
      const { api, server } = yield* setup(
        { routes: [{ path: "/ok", then: { json: { ok: true } } }, { path: "/slow", then: { delay: "1 hour", json: {} } }] },
        { transformClient: (client) => HttpClient.transform(client, (effect) => Effect.withSpan(effect, "inside")) }
      )
      const current = Effect.map(Effect.currentSpan, (span) => span.name)
      const afterEach = yield* Effect.gen(function*() {
        yield* api.get("/ok")
        const afterSuccess = yield* current
        yield* Effect.flip(api.get("/missing"))
        return [afterSuccess, yield* current]
      }).pipe(Effect.withSpan("caller"), Effect.withTracer(tracer))
      expect(afterEach).toEqual(["caller", "caller"])

      const inInterruption = yield* Ref.make("")
      const fiber = yield* api.get("/slow").pipe(
        Effect.onInterrupt(() => Effect.orDie(Effect.flatMap(current, (name) => Ref.set(inInterruption, name)))),
        Effect.withSpan("caller"),
        Effect.withTracer(tracer),
        Effect.fork
      )
      yield* server.awaitRequests(3)
      yield* Fiber.interrupt(fiber)
      expect(yield* Ref.get(inInterruption)).toBe("caller")

      const named = (name: string) => spans.filter((s) => s.name === name)
      const requests = [...named("sluice GET /ok"), ...named("sluice GET /missing"), ...named("sluice GET /slow")]
      expect(requests).toHaveLength(3)
      const callers = named("caller")
      for (const [i, request] of requests.entries()) {
        // each request's span: under its caller's, ended, and the parent of the span made inside it
        expect(Option.map(request.parent, (p) => p.spanId)).toEqual(Option.some(callers[i === 2 ? 1 : 0]!.spanId))
        expect(request.status._tag).toBe("Ended")
        const inside = named("inside").filter((s) => Option.getOrUndefined(s.parent)?.spanId === request.spanId)
        expect(inside).toHaveLength(1)
      }
    }))
})

describe("ApiClient streaming", () => {
  it.scoped("server-sent events: multi-line data, event and id fields, comments, frames split across chunks", () =>
    Effect.gen(function*() {
      const { api } = yield* setup({
        routes: [{
          path: "/sse",
          then: {
            headers: { "content-type": "text/event-stream" },
            chunks: ["data: hel", "lo\n\nevent: ping\ndata: a\ndata: b\nid: 7\n\n: a comment\n\n", "data: last\r", "\n\r\n"],
            chunkDelay: 0
          }
        }]
      })
      const events = yield* api.postStreamEvents("/sse", { body: { prompt: "x" } }).pipe(Stream.runCollect)
      expect(Chunk.toArray(events)).toEqual([
        { event: "message", data: "hello", id: undefined, retry: undefined },
        { event: "ping", data: "a\nb", id: "7", retry: undefined },
        { event: "message", data: "last", id: "7", retry: undefined }
      ])
    }))

  it.scoped("lines and bytes", () =>
    Effect.gen(function*() {
      const { api } = yield* setup({
        routes: [{ path: "/lines", then: { chunks: ["one\ntw", "o\r\nthree"], chunkDelay: 0 } }]
      })
      const lines = yield* api.postStreamLines("/lines").pipe(Stream.runCollect)
      expect(Chunk.toArray(lines)).toEqual(["one", "two", "three"])
      const bytes = yield* api.postStream("/lines").pipe(Stream.runCollect)
      expect(new TextDecoder().decode(Buffer.concat(Chunk.toArray(bytes)))).toBe("one\ntwo\r\nthree")
    }))

  it.scoped("a stream's error status is a typed error", () =>
    Effect.gen(function*() {
      const { api } = yield* setup({ routes: [{ path: "/sse", then: TestServer.tooManyRequests({ retryAfter: 3 }) }] })
      const error = yield* Effect.flip(api.postStreamEvents("/sse").pipe(Stream.runDrain))
      expect(error._tag).toBe("ServerSideRateLimitError")
    }))

  it.live("an event stream that is one endless line fails with SseEventTooLargeError and releases its connection", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { api, server } = yield* setup({
        routes: [{ path: "/endless", then: TestServer.fault("endless-line", { chunkDelay: "0 millis" }) }]
      }).pipe(Scope.extend(scope))
      const before = process.memoryUsage().rss
      const error = yield* Effect.flip(api.postStreamEvents("/endless").pipe(Stream.runDrain))
      expect(error._tag).toBe("SseEventTooLargeError")
      // the default bound is 10 Mi characters: nowhere near the hundreds of MB an unbounded carry reached
      expect(process.memoryUsage().rss - before).toBeLessThan(400 * 1024 * 1024)
      yield* eventually(server.stats.pipe(Effect.filterOrFail((s) => s.connectionsOpen === 0)))
      yield* Scope.close(scope, Exit.void)
    }), 20_000)

  it.live("maxResponseSize: a huge Content-Length fails before reading, an endless body once past the bound; both close the connection", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { api, server } = yield* setup({
        routes: [
          { path: "/huge", then: TestServer.fault("huge-body", { chunkDelay: "0 millis" }) },
          { path: "/endless", then: TestServer.fault("endless-line", { chunkDelay: "0 millis" }) },
          { path: "/huge-error", then: { ...TestServer.fault("huge-body", { chunkDelay: "0 millis" }), status: 500 } },
          { path: "/chunked", then: { chunks: ["{\"a\":", "1}"], chunkDelay: "0 millis" } }
        ]
      }, { maxResponseSize: 1024 * 1024 }).pipe(Scope.extend(scope))
      const huge = yield* Effect.flip(api.get("/huge"))
      assert(huge._tag === "ResponseTooLargeError", huge._tag)
      expect(huge.contentLength).toBe(2 * 1024 * 1024 * 1024)
      expect(huge.maxResponseSize).toBe(1024 * 1024)
      const endless = yield* Effect.flip(api.get("/endless"))
      assert(endless._tag === "ResponseTooLargeError", endless._tag)
      expect(endless.received).toBeGreaterThan(1024 * 1024)
      expect(endless.received).toBeLessThan(2 * 1024 * 1024)
      // an error answer is read only as far as its excerpt needs: still the typed status error
      const error = yield* Effect.flip(api.get("/huge-error"))
      assert(error._tag === "HttpStatusError", error._tag)
      expect(error.status).toBe(500)
      expect(yield* api.get("/chunked")).toEqual({ a: 1 })
      yield* eventually(server.stats.pipe(Effect.filterOrFail((s) => s.connectionsOpen <= 1)))
      yield* Scope.close(scope, Exit.void)
    }), 20_000)

  it.live("maxResponseSize over a transport that cannot bound a body itself (platform's fetch client): the body's stream is counted", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [
          { path: "/endless", then: TestServer.fault("endless-line", { chunkDelay: "0 millis" }) },
          { path: "/chunked", then: { chunks: ["{\"a\":", "1}"], chunkDelay: "0 millis" } }
        ]
      })
      const api = yield* ApiClient.make({ baseUrl: server.url, maxResponseSize: 1024 * 1024 }).pipe(
        Effect.provide(FetchHttpClient.layer)
      )
      const endless = yield* Effect.flip(api.get("/endless"))
      assert(endless._tag === "ResponseTooLargeError", endless._tag)
      expect(endless.received).toBeGreaterThan(1024 * 1024)
      expect(endless.received).toBeLessThan(2 * 1024 * 1024)
      expect(yield* api.get("/chunked")).toEqual({ a: 1 })
    })), 20_000)

  it.live("interrupting a stream releases its connection", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { api, server } = yield* setup({
        routes: [{ path: "/endless", then: TestServer.fault("endless-body", { chunkDelay: "5 millis" }) }]
      }).pipe(Scope.extend(scope))
      const lines = yield* api.postStreamLines("/endless").pipe(Stream.take(3), Stream.runCollect)
      expect(lines.length).toBe(3)
      // the endless body is abandoned: the client aborts and the server sees its socket close
      yield* eventually(server.stats.pipe(Effect.filterOrFail((s) => s.connectionsOpen === 0)))
      yield* Scope.close(scope, Exit.void)
    }))
})

describe("redirects", () => {
  it.scoped("not followed by default", () =>
    Effect.gen(function*() {
      const { api } = yield* setup({ routes: [{ path: "/moved", then: { status: 302, redirect: "/elsewhere" } }] })
      const error = yield* Effect.flip(api.get("/moved"))
      assert(error._tag === "HttpStatusError")
      expect(error.status).toBe(302)
    }))

  it.scoped("a cross-origin hop drops Authorization, Cookie and the API key; same origin keeps them", () =>
    Effect.gen(function*() {
      const other = yield* TestServer.make({ routes: [{ path: "/landing", then: { echo: true } }] })
      const { api, server } = yield* setup(
        {
          routes: [
            { path: "/away", then: { status: 307, redirect: `${other.url}/landing` } },
            { path: "/here", then: { status: 308, redirect: "/home" } },
            { path: "/home", then: { echo: true } }
          ]
        },
        { apiKey: Redacted.make(SECRET), apiKeyHeader: "X-Custom-Key", followRedirects: 5 }
      )
      const headers = { authorization: `Bearer ${SECRET}`, cookie: "session=1", "x-other": "kept" }
      yield* api.post("/away", { body: { a: 1 }, headers })
      const landed = (yield* other.log)[0]!
      expect(landed.method).toBe("POST")
      expect(landed.body).toBe("{\"a\":1}")
      expect(landed.headers["authorization"]).toBeUndefined()
      expect(landed.headers["cookie"]).toBeUndefined()
      expect(landed.headers["x-custom-key"]).toBeUndefined()
      expect(landed.headers["x-other"]).toBe("kept")
      yield* api.get("/here", { headers })
      const home = (yield* server.log).find((r) => r.path === "/home")!
      expect(home.headers["authorization"]).toBe("Bearer ***")
      expect(home.headers["x-custom-key"]).toBeDefined()
    }))

  it.scoped("303, and 301/302 after POST, become GET without a body", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setup(
        {
          routes: [
            { path: "/see-other", then: { status: 303, redirect: "/result" } },
            { path: "/found", then: { status: 302, redirect: "/result" } },
            { path: "/result", then: { echo: true } }
          ]
        },
        { followRedirects: true }
      )
      yield* api.post("/see-other", { body: { a: 1 } })
      yield* api.post("/found", { body: { a: 1 } })
      const results = (yield* server.log).filter((r) => r.path === "/result")
      expect(results.map((r) => [r.method, r.body, r.headers["content-type"]])).toEqual([
        ["GET", "", undefined],
        ["GET", "", undefined]
      ])
    }))

  it.scoped("stops after maxRedirects and returns the last 3xx as an error", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setup(
        { routes: [{ path: "/loop", then: { status: 302, redirect: "/loop" } }] },
        { followRedirects: 3 }
      )
      const error = yield* Effect.flip(api.get("/loop"))
      assert(error._tag === "HttpStatusError")
      expect(error.status).toBe(302)
      expect((yield* server.stats).requests["/loop"]).toBe(4)
    }))
})
