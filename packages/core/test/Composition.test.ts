import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { assert, describe, expect, it } from "@effect/vitest"
import { NodeTransport } from "@sluice/node"
import { TestServer } from "@sluice/testing"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import { AuthProvider, ClientCredentials, RateLimiter, RateLimiterStore } from "../src/index.js"
import { setupWith, until } from "./helpers.js"

const oauth: TestServer.OAuth = { clientId: "app", clientSecret: "s", tokenLifetime: "10 seconds" }
const credentials = (server: TestServer.TestServer) =>
  ClientCredentials.layer({
    tokenUrl: `${server.url}/oauth/token`,
    clientId: "app",
    clientSecret: Redacted.make("s"),
    refreshMargin: "0 millis"
  })
const slowLimiter = RateLimiter.layerTokenBucket({ limit: 1, window: "20 seconds", burst: 1, maxWait: "1 minute" }).pipe(
  Layer.provide(RateLimiterStore.layerMemory)
)

describe("composition: retry → limiter → auth → transport", () => {
  it.scoped("the token is taken after the permit: a long wait never sends an expired token", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { oauth, routes: [{ path: "/api", requireAuth: true, then: { json: 1 } }] },
        {},
        (s) => Layer.merge(credentials(s), slowLimiter)
      )
      yield* api.get("/api") // token 1 at t=0, good for 10 s
      const second = yield* Effect.fork(api.get("/api")) // waits 20 s for its permit
      yield* until(server, 4, "500 millis")
      expect(yield* Fiber.join(second)).toBe(1)
      const stats = yield* server.stats
      // a fresh token was fetched after the wait; no 401 and no replay
      expect(stats.tokenRequests).toBe(2)
      expect(stats.requests["/api"]).toBe(2)
    }))

  it.scoped("a 401 replay takes a new permit", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { oauth: { ...oauth, tokenLifetime: "1 hour" }, routes: [{ path: "/api", requireAuth: true, then: { json: 1 } }] },
        {},
        (s) => Layer.merge(credentials(s), RateLimiter.layerTokenBucket({ limit: 1, window: "1 second", burst: 1 }).pipe(Layer.provide(RateLimiterStore.layerMemory)))
      )
      yield* api.get("/api")
      yield* server.revokeTokens
      const replayed = yield* Effect.fork(api.get("/api"))
      yield* until(server, 5, "100 millis")
      expect(yield* Fiber.join(replayed)).toBe(1)
      const calls = (yield* server.log).filter((r) => r.path === "/api")
      expect(calls.map((r) => r.status)).toEqual([200, 401, 200])
      // the replay waited for its own permit, a second after the refused attempt
      expect(calls[2]!.at - calls[1]!.at).toBeGreaterThanOrEqual(999)
    }))

  it.scoped("RateLimiter.limit applies a limiter to any HttpClient (data-last; data-first is the same limiter)", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/x", then: { json: 1 } }, { path: "/free", then: { json: 2 } }] })
      const limiter = yield* RateLimiter.makeTokenBucket({
        limit: 1,
        window: "1 second",
        burst: 1,
        appliesTo: (request) => request.url.endsWith("/x")
      }).pipe(Effect.provide(RateLimiterStore.layerMemory))
      const transport = yield* NodeTransport.make()
      const client = RateLimiter.limit(limiter)(transport)
      const get = (path: string) => Effect.flatMap(client.execute(HttpClientRequest.get(`${server.url}${path}`)), (r) => r.json)
      // data-first, on the same limiter: its request takes the one permit the bucket holds
      yield* Effect.flatMap(RateLimiter.limit(transport, limiter).execute(HttpClientRequest.get(`${server.url}/x`)), (r) => r.json)
      expect(yield* get("/free")).toBe(2) // not limited
      const second = yield* Effect.fork(get("/x"))
      yield* until(server, 3, "100 millis")
      yield* Fiber.join(second)
      const log = (yield* server.log).filter((r) => r.path === "/x")
      expect(log).toHaveLength(2)
      expect(log[1]!.at - log[0]!.at).toBeGreaterThanOrEqual(999)
    }))
})

describe("AuthProvider.withAuth on a plain HttpClient", () => {
  it.scoped("sends the credential; a revoked token is refreshed once and replayed (data-first and data-last)", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ oauth, routes: [{ path: "/api", requireAuth: true, then: { json: 1 } }] })
      const transport = yield* NodeTransport.make()
      const provider = yield* ClientCredentials.make({
        tokenUrl: `${server.url}/oauth/token`,
        clientId: "app",
        clientSecret: Redacted.make("s")
      }).pipe(Effect.provideService(HttpClient.HttpClient, transport))
      for (const client of [AuthProvider.withAuth(transport, provider), AuthProvider.withAuth(provider)(transport)]) {
        const get = Effect.flatMap(client.execute(HttpClientRequest.get(`${server.url}/api`)), (r) => Effect.map(r.json, (json) => [r.status, json]))
        expect(yield* get).toEqual([200, 1])
        yield* server.revokeTokens
        expect(yield* get).toEqual([200, 1])
      }
      const statuses = (yield* server.log).filter((r) => r.path === "/api").map((r) => r.status)
      expect(statuses).toEqual([200, 401, 200, 200, 401, 200])
      expect((yield* server.stats).tokenRequests).toBe(3)
    }))

  it.scoped("a 401 after the refresh is an AuthenticationError, once; a provider that cannot refresh gets the 401 answer", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        oauth,
        routes: [{ path: "/api", then: { status: 401, json: { error: "invalid_token" } } }]
      })
      const transport = yield* NodeTransport.make()
      const refreshing = yield* ClientCredentials.make({
        tokenUrl: `${server.url}/oauth/token`,
        clientId: "app",
        clientSecret: Redacted.make("s")
      }).pipe(Effect.provideService(HttpClient.HttpClient, transport))
      const request = HttpClientRequest.get(`${server.url}/api`)
      const error = yield* Effect.flip(AuthProvider.withAuth(transport, refreshing).execute(request))
      assert(error._tag === "AuthenticationError", error._tag)
      expect(error.reason).toBe("Unauthorized")
      // one replay with a fresh token, never more
      expect((yield* server.stats).requests["/api"]).toBe(2)
      expect((yield* server.stats).tokenRequests).toBe(2)
      const fixed = AuthProvider.withAuth(transport, AuthProvider.makeStatic({ authorization: "Bearer static" }))
      const response = yield* fixed.execute(request)
      expect(response.status).toBe(401)
      expect((yield* server.stats).requests["/api"]).toBe(3)
    }))
})

describe("a request's cost", () => {
  it.scoped("ApiClient passes `cost` to a tokens limiter held alongside a requests limiter", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { routes: [{ method: "POST", path: "/v1/complete", then: { json: { ok: true } } }] },
        {},
        () =>
          RateLimiter.layerAll([
            RateLimiter.makeTokenBucket({ limit: 100, window: "1 second", key: "rpm" }),
            RateLimiter.makeTokenBucket({ limit: 1000, window: "1 second", burst: 1000, key: "tpm", unit: "tokens" })
          ]).pipe(Layer.provide(RateLimiterStore.layerMemory))
      )
      const realPause = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 50)))
      // three requests of 600 tokens each: a bucket of 1,000 refilling 1,000 a second sends them at 0, 200 and 800 ms
      const calls = yield* Effect.fork(Effect.all(
        Array.from({ length: 3 }, () => api.post("/v1/complete", { body: { prompt: "hi" }, cost: 600 })),
        { concurrency: "unbounded" }
      ))
      yield* server.awaitRequests(1)
      yield* realPause
      expect((yield* server.stats).total).toBe(1)
      yield* TestClock.adjust("200 millis")
      yield* server.awaitRequests(2)
      yield* realPause
      expect((yield* server.stats).total).toBe(2)
      yield* TestClock.adjust("600 millis")
      yield* server.awaitRequests(3)
      expect(yield* Fiber.join(calls)).toEqual([{ ok: true }, { ok: true }, { ok: true }])
    }))
})
