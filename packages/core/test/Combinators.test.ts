import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { assert, describe, expect, it } from "@effect/vitest"
import { NodeTransport } from "@sluice/node"
import { TestServer } from "@sluice/testing"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import { AuthProvider, CircuitBreaker, CircuitBreakerStore, RateLimiter, RateLimiterStore, Retry, TypedErrors } from "../src/index.js"
import { until } from "./helpers.js"

const SECRET = "tok-4f9a8c2e7b"

/** A plain platform client (NodeTransport) and a TestServer, for one scope. */
const plain = (options: TestServer.Options) =>
  Effect.gen(function*() {
    const server = yield* TestServer.make(options)
    const http = yield* NodeTransport.make()
    return { server, http }
  })

describe("TypedErrors.withTypedErrors on a plain HttpClient", () => {
  it.scoped("error answers fail typed (429 with its Retry-After, other statuses with theirs); a 2xx passes as a response", () =>
    Effect.gen(function*() {
      const { http, server } = yield* plain({
        routes: [
          { path: "/missing", then: { status: 404, body: "no such thing" } },
          { path: "/limited", then: { status: 429, retryAfter: 3 } },
          { path: "/down", then: { status: 503, retryAfter: 7 } },
          { path: "/ok", then: { json: { ok: true } } }
        ]
      })
      const client = TypedErrors.withTypedErrors(http)
      const missing = yield* Effect.flip(client.get(`${server.url}/missing?api_key=${SECRET}#frag`))
      assert(missing._tag === "HttpStatusError")
      expect(missing.status).toBe(404)
      // a key written into the URL's query stays out of the error
      expect(missing.url).toBe(`${server.url}/missing`)
      expect(missing.message).not.toContain(SECRET)
      expect(missing.body).toBe("no such thing")
      const limited = yield* Effect.flip(client.get(`${server.url}/limited`))
      assert(limited._tag === "ServerSideRateLimitError")
      expect(limited.retryAfter).toEqual(Option.some(Duration.seconds(3)))
      const down = yield* Effect.flip(http.pipe(TypedErrors.withTypedErrors()).get(`${server.url}/down`))
      assert(down._tag === "HttpStatusError")
      expect(down.status).toBe(503)
      expect(down.retryAfter).toEqual(Option.some(Duration.seconds(7)))
      const ok = yield* client.get(`${server.url}/ok`)
      expect(ok.status).toBe(200)
      expect(yield* ok.json).toEqual({ ok: true })
    }))

  it.scoped("a refused connection is a TransportError in the connect phase", () =>
    Effect.gen(function*() {
      const http = yield* NodeTransport.make()
      const port = yield* TestServer.closedPort
      const error = yield* Effect.flip(TypedErrors.withTypedErrors(http).get(`http://127.0.0.1:${port}/x`))
      assert(error._tag === "TransportError")
      expect(error.phase).toBe("connect")
    }))

  it.scoped("a credential an inner combinator added is masked where a server echoes it into an error answer", () =>
    Effect.gen(function*() {
      const { http, server } = yield* plain({ routes: [{ path: "/echo", then: { status: 400, echo: "unmasked" } }] })
      const client = http.pipe(
        AuthProvider.withAuth(AuthProvider.makeStatic({ authorization: `Bearer ${SECRET}`, "x-tenant-key": `key-${SECRET}` })),
        TypedErrors.withTypedErrors({ secretHeaders: ["X-Tenant-Key"] })
      )
      const error = yield* Effect.flip(client.get(`${server.url}/echo`))
      assert(error._tag === "HttpStatusError")
      // the server did echo the headers; what it echoed is masked
      expect(error.body).toContain("x-tenant-key")
      expect(error.body).not.toContain(SECRET)
      expect(error.body).toContain("***")
    }))
})

describe("RateLimiter.limit around TypedErrors.withTypedErrors", () => {
  it.scoped("a 429 that the inner combinator made an error still teaches the limiter: its Retry-After pauses the next request", () =>
    Effect.gen(function*() {
      const { http, server } = yield* plain({ routes: [{ path: "/api", script: [{ status: 429, retryAfter: 2 }], then: { json: "ok" } }] })
      const limiter = yield* RateLimiter.makeAdaptive({ limit: 100, window: "1 second" }).pipe(Effect.provide(RateLimiterStore.layerMemory))
      const client = http.pipe(TypedErrors.withTypedErrors(), RateLimiter.limit(limiter))
      const refused = yield* Effect.flip(client.get(`${server.url}/api`))
      expect(refused._tag).toBe("ServerSideRateLimitError")
      const next = yield* Effect.fork(client.get(`${server.url}/api`))
      yield* until(server, 2, "250 millis")
      yield* Fiber.join(next)
      const calls = (yield* server.log).filter((r) => r.path === "/api")
      expect(calls.map((r) => r.status)).toEqual([429, 200])
      expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(2000)
    }))
})

describe("CircuitBreaker.withCircuitBreaker on a plain HttpClient", () => {
  it.scoped("5xx answers open it, whether they arrive as responses or as TypedErrors' errors; a 404 does not count", () =>
    Effect.gen(function*() {
      const { http, server } = yield* plain({
        routes: [{ path: "/down", then: { status: 503 } }, { path: "/missing", then: { status: 404 } }]
      })
      const breaker = CircuitBreaker.make({ consecutiveFailures: 3 }).pipe(Effect.provide(CircuitBreakerStore.layerMemory))
      // over responses
      const raw = CircuitBreaker.withCircuitBreaker(http, yield* breaker)
      for (let i = 0; i < 3; i++) expect((yield* raw.get(`${server.url}/down`)).status).toBe(503)
      expect((yield* Effect.flip(raw.get(`${server.url}/down`)))._tag).toBe("CircuitOpenError")
      // over typed errors (the breaker outside TypedErrors.withTypedErrors), on a breaker of its own
      const typed = http.pipe(TypedErrors.withTypedErrors(), CircuitBreaker.withCircuitBreaker(yield* breaker))
      for (let i = 0; i < 4; i++) expect((yield* Effect.flip(typed.get(`${server.url}/missing`)))._tag).toBe("HttpStatusError")
      for (let i = 0; i < 3; i++) expect((yield* Effect.flip(typed.get(`${server.url}/down`)))._tag).toBe("HttpStatusError")
      expect((yield* Effect.flip(typed.get(`${server.url}/down`)))._tag).toBe("CircuitOpenError")
      const stats = yield* server.stats
      expect(stats.requests["/down"]).toBe(6)
      expect(stats.requests["/missing"]).toBe(4)
    }))
})

describe("Retry.withRetry on a plain HttpClient", () => {
  it.scoped("a GET answered 503 twice is retried until its 200; a POST without an idempotency key is not", () =>
    Effect.gen(function*() {
      const { http, server } = yield* plain({
        routes: [
          { method: "GET", path: "/flaky", script: [{ status: 503 }, { status: 503 }], then: { json: 1 } },
          { method: "POST", path: "/order", script: [{ status: 503 }], then: { json: 2 } }
        ]
      })
      const policy = yield* Retry.make({ maxAttempts: 4 })
      const client = http.pipe(TypedErrors.withTypedErrors(), Retry.withRetry(policy))
      const get = yield* Effect.fork(client.get(`${server.url}/flaky`))
      yield* until(server, 3)
      const response = yield* Fiber.join(get)
      expect(yield* response.json).toBe(1)
      const post = yield* Effect.flip(client.execute(HttpClientRequest.post(`${server.url}/order`)))
      assert(post._tag === "HttpStatusError")
      expect(post.status).toBe(503)
      const stats = yield* server.stats
      expect(stats.requests["/flaky"]).toBe(3)
      expect(stats.requests["/order"]).toBe(1)
    }))

  it.scoped("the stack from combinators: the credential on every attempt, a permit each, the 429's Retry-After waited for", () =>
    Effect.gen(function*() {
      const { http, server } = yield* plain({
        routes: [{ path: "/api", script: [{ status: 429, retryAfter: 2 }], then: { json: "done" } }]
      })
      const limiter = yield* RateLimiter.makeTokenBucket({ limit: 100, window: "1 second" }).pipe(
        Effect.provide(RateLimiterStore.layerMemory)
      )
      const policy = yield* Retry.make()
      const client = http.pipe(
        AuthProvider.withAuth(AuthProvider.makeStatic({ authorization: `Bearer ${SECRET}` })),
        RateLimiter.limit(limiter),
        TypedErrors.withTypedErrors(),
        Retry.withRetry(policy)
      )
      const fiber = yield* Effect.fork(client.get(`${server.url}/api`))
      yield* until(server, 2, "250 millis")
      const response = yield* Fiber.join(fiber)
      expect(yield* response.json).toBe("done")
      const calls = (yield* server.log).filter((r) => r.path === "/api")
      expect(calls.map((r) => r.status)).toEqual([429, 200])
      // the retry waited at least the Retry-After (2 s of test time), with the credential on both
      expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(2000)
      expect(calls.every((r) => r.headers["authorization"] !== undefined)).toBe(true)
    }))

  it.scoped("data-first and data-last are the same combinator", () =>
    Effect.gen(function*() {
      const { http, server } = yield* plain({ routes: [{ path: "/flaky", script: [{ status: 502 }], then: { json: 3 } }] })
      const policy = yield* Retry.make()
      const client: HttpClient.HttpClient.With<TypedErrors.Error> = Retry.withRetry(TypedErrors.withTypedErrors(http), policy)
      const fiber = yield* Effect.fork(client.get(`${server.url}/flaky`))
      yield* until(server, 2)
      expect(yield* (yield* Fiber.join(fiber)).json).toBe(3)
    }))
})
