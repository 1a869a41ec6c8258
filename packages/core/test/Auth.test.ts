import * as HttpClient from "@effect/platform/HttpClient"
import { assert, describe, expect, it } from "@effect/vitest"
import { TestServer } from "@sluice/testing"
import { NodeTransport } from "@sluice/node"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import { ApiClient, AuthProvider, ClientCredentials, Retry, TokenStore } from "../src/index.js"
import { setupWith, until } from "./helpers.js"

const SECRET = "cl1ent-s3cret-value"
const oauth = (extra: Partial<TestServer.OAuth> = {}): TestServer.OAuth => ({
  clientId: "app",
  clientSecret: SECRET,
  tokenLifetime: "10 minutes",
  ...extra
})
const cc = (server: TestServer.TestServer, extra: Partial<ClientCredentials.Options> = {}) =>
  ClientCredentials.layer({
    tokenUrl: `${server.url}/oauth/token`,
    clientId: "app",
    clientSecret: Redacted.make(SECRET),
    ...extra
  })

describe("static providers", () => {
  it.scoped("bearer, API key and Basic reach the server", () =>
    Effect.gen(function*() {
      const routes = [{ path: "/echo", then: { echo: true } }]
      const bearer = yield* setupWith({ routes }, {}, () => AuthProvider.layerBearer(Redacted.make("tok")))
      yield* bearer.api.get("/echo")
      expect((yield* bearer.server.log)[0]!.headers["authorization"]).toBe("Bearer ***")
      const key = yield* setupWith({ routes, secretHeaders: [] }, {}, () => AuthProvider.layerApiKey(Redacted.make("k"), "X-Key"))
      yield* key.api.get("/echo")
      expect((yield* key.server.log)[0]!.headers["x-key"]).toBe("k")
      const basic = yield* setupWith({ routes }, {}, () => AuthProvider.layerBasic("ada", Redacted.make("pw")))
      yield* basic.api.get("/echo")
      expect((yield* basic.server.log)[0]!.headers["authorization"]).toBe("Basic ***")
    }))

  it.scoped("a 401 with a static credential is an AuthenticationError at once", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { routes: [{ path: "/x", then: TestServer.status(401) }] },
        {},
        () => AuthProvider.layerBearer(Redacted.make("tok"))
      )
      const error = yield* Effect.flip(api.get("/x"))
      assert(error._tag === "AuthenticationError")
      expect(error.reason).toBe("Unauthorized")
      expect((yield* server.stats).total).toBe(1)
    }))
})

describe("ClientCredentials", () => {
  it.scoped("Basic (default) and body credentials both obtain a token that the API accepts", () =>
    Effect.gen(function*() {
      for (const credentialsIn of ["basic", "body"] as const) {
        const { api, server } = yield* setupWith(
          { oauth: oauth(), routes: [{ path: "/api", requireAuth: true, then: { json: "ok" } }] },
          {},
          (s) => cc(s, { credentialsIn, scope: "read" })
        )
        expect(yield* api.get("/api")).toBe("ok")
        const token = (yield* server.log)[0]!
        expect(token.path).toBe("/oauth/token")
        if (credentialsIn === "basic") {
          expect(token.headers["authorization"]).toBe("Basic ***")
          expect(token.body).toBe("grant_type=client_credentials&scope=read")
        } else {
          expect(token.headers["authorization"]).toBeUndefined()
          expect(token.body).toContain("client_secret=***")
        }
      }
    }))

  it.scoped("a stampede at expiry causes exactly one token request", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { oauth: oauth({ tokenLifetime: "10 minutes" }), routes: [{ path: "/api", requireAuth: true, then: { json: 1 } }] },
        {},
        (s) => cc(s)
      )
      yield* Effect.all(Array.from({ length: 300 }, () => api.get("/api")), { concurrency: "unbounded" })
      expect((yield* server.stats).tokenRequests).toBe(1)
      yield* TestClock.adjust("11 minutes")
      yield* Effect.all(Array.from({ length: 300 }, () => api.get("/api")), { concurrency: "unbounded" })
      expect((yield* server.stats).tokenRequests).toBe(2)
    }))

  it.scoped("refreshes early, by the margin clamped to half the lifetime, in the background", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { oauth: oauth({ tokenLifetime: "30 seconds" }), routes: [{ path: "/api", requireAuth: true, then: { json: 1 } }] },
        {},
        (s) => cc(s, { refreshMargin: "60 seconds" })
      )
      yield* api.get("/api")
      // a 30 s token with a 60 s margin refreshes at 15 s, not on every call
      yield* TestClock.adjust("10 seconds")
      yield* api.get("/api")
      yield* api.get("/api")
      expect((yield* server.stats).tokenRequests).toBe(1)
      yield* TestClock.adjust("6 seconds")
      yield* api.get("/api") // still valid: served at once, refresh started behind it
      yield* until(server, 5)
      expect((yield* server.stats).tokenRequests).toBe(2)
    }))

  it.scoped("identity provider down: bounded token requests, typed transient errors, then recovery with retry", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        {
          oauth: oauth({ script: [TestServer.status(503), TestServer.status(503), TestServer.status(503)] }),
          routes: [{ path: "/api", requireAuth: true, then: { json: "ok" } }]
        },
        {},
        (s) => cc(s)
      )
      const errors = yield* Effect.all(
        Array.from({ length: 50 }, () => Effect.flip(api.get("/api"))),
        { concurrency: "unbounded" }
      )
      for (const e of errors) {
        assert(e._tag === "AuthenticationError")
        expect(e.transient).toBe(true)
        expect(e.reason).toBe("TokenEndpointError")
        expect(e.message).not.toContain(SECRET)
      }
      expect((yield* server.stats).tokenRequests).toBe(1)
      // with a retry policy the same batch waits on the shared, backed-off refresh and gets through
      const retrying = yield* setupWith(
        {
          oauth: oauth({ script: [TestServer.status(503), TestServer.status(503)] }),
          routes: [{ path: "/api", requireAuth: true, then: { json: "ok" } }]
        },
        {},
        (s) => Layer.merge(cc(s), Retry.layer({ maxAttempts: 6, baseDelay: "200 millis" }))
      )
      const batch = yield* Effect.fork(Effect.all(Array.from({ length: 50 }, () => retrying.api.get("/api")), { concurrency: "unbounded" }))
      yield* until(retrying.server, 53, "50 millis")
      expect(yield* Fiber.join(batch)).toHaveLength(50)
      expect((yield* retrying.server.stats).tokenRequests).toBe(3)
    }))

  it.scoped("invalid_client is permanent: failed at once and not asked again for every request", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { oauth: oauth({ clientSecret: "another" }), routes: [{ path: "/api", requireAuth: true }] },
        {},
        (s) => Layer.merge(cc(s), Retry.layer())
      )
      for (let i = 0; i < 5; i++) {
        const e = yield* Effect.flip(api.get("/api"))
        assert(e._tag === "AuthenticationError")
        expect(e.reason).toBe("InvalidCredentials")
        expect(e.transient).toBe(false)
        expect(e.message).toContain("invalid_client")
        expect(e.message).not.toContain(SECRET)
      }
      expect((yield* server.stats).tokenRequests).toBe(1)
    }))

  it.scoped("a revoked token: 401, one refresh, one replay; a second 401 is a typed error, never a loop", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { oauth: oauth(), routes: [{ path: "/api", requireAuth: true, then: { json: "ok" } }, { path: "/never", script: [], then: TestServer.status(401) }] },
        {},
        (s) => cc(s)
      )
      yield* api.get("/api")
      yield* server.revokeTokens
      expect(yield* api.get("/api")).toBe("ok")
      const stats = yield* server.stats
      expect(stats.tokenRequests).toBe(2)
      expect(stats.requests["/api"]).toBe(3)
      const e = yield* Effect.flip(api.get("/never"))
      assert(e._tag === "AuthenticationError")
      expect(e.reason).toBe("Unauthorized")
      expect((yield* server.stats).requests["/never"]).toBe(2)
    }))

  it.scoped("malformed token responses are typed errors", () =>
    Effect.gen(function*() {
      const cases: Array<[TestServer.Reply, string]> = [
        [{ body: "<html>", status: 200 }, "no access_token"],
        [{ json: { token_type: "Bearer" } }, "no access_token"],
        [{ json: { access_token: "x", token_type: "mac" } }, "not Bearer"],
        [{ json: { access_token: "x", expires_in: -5 } }, "expires_in"]
      ]
      for (const [reply, message] of cases) {
        const { api } = yield* setupWith({ oauth: oauth({ script: [reply] }), routes: [{ path: "/api" }] }, {}, (s) => cc(s))
        const e = yield* Effect.flip(api.get("/api"))
        assert(e._tag === "AuthenticationError")
        expect(e.reason).toBe("InvalidTokenResponse")
        expect(e.message).toContain(message)
      }
    }))

  it.scoped("expires_in missing: the documented default lifetime (5 minutes)", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { oauth: oauth({ omitExpiresIn: true }), routes: [{ path: "/api", requireAuth: true, then: { json: 1 } }] },
        {},
        (s) => cc(s, { refreshMargin: "0 millis" })
      )
      yield* api.get("/api")
      yield* TestClock.adjust("4 minutes")
      yield* api.get("/api")
      expect((yield* server.stats).tokenRequests).toBe(1)
      yield* TestClock.adjust("61 seconds")
      yield* api.get("/api")
      expect((yield* server.stats).tokenRequests).toBe(2)
    }))

  it.scoped("the token URL must be https (loopback excepted) unless explicitly allowed", () =>
    Effect.gen(function*() {
      const make = (tokenUrl: string, allowInsecureTokenUrl?: boolean) =>
        Effect.flip(Effect.scoped(Layer.build(
          ClientCredentials.layer({ tokenUrl, clientId: "a", clientSecret: Redacted.make(SECRET), allowInsecureTokenUrl }).pipe(
            Layer.provide(Layer.succeed(HttpClient.HttpClient, null as never))
          )
        )))
      const e = yield* make("http://idp.example.com/token")
      assert(e._tag === "AuthenticationError")
      expect(e.reason).toBe("NotConfigured")
      expect(e.message).toContain("https")
      const bad = yield* make("not a url")
      expect(bad.message).toContain("not a URL")
    }))

  it.scoped("secrets never appear in logs", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const logger = Logger.make(({ message }) => lines.push(JSON.stringify(message)))
      const { api } = yield* setupWith(
        { oauth: oauth({ script: [TestServer.status(500)] }), routes: [{ path: "/api", requireAuth: true, then: TestServer.status(500) }] },
        {},
        (s) => cc(s)
      )
      yield* Effect.flip(api.get("/api")).pipe(
        Effect.tap((e) => Effect.logError("request failed", e)),
        Effect.provide(Logger.replace(Logger.defaultLogger, logger))
      )
      yield* TestClock.adjust("1 second")
      yield* Effect.flip(api.get("/api")).pipe(
        Effect.tap((e) => Effect.logError("request failed", e)),
        Effect.provide(Logger.replace(Logger.defaultLogger, logger))
      )
      const all = lines.join("\n")
      expect(all).toContain("request failed")
      expect(all).not.toContain(SECRET)
      expect(all).not.toMatch(/tok-\d+-/)
    }))
})

describe("a token endpoint's answer is validated", () => {
  const answering = (json: unknown) =>
    setupWith(
      { routes: [{ path: "/oauth/token", then: { json } }, { path: "/api", then: { echo: true } }] },
      {},
      (server) => cc(server)
    )

  it.scoped("an access_token with CR/LF or other non-b64token characters is an InvalidTokenResponse, the token unquoted", () =>
    Effect.gen(function*() {
      for (const token of ["abc\r\nX-Evil: 1", "tok en", "tök", "a=b"]) {
        const { api, server } = yield* answering({ access_token: token, token_type: "Bearer", expires_in: 3600 })
        const error = yield* Effect.flip(api.get("/api"))
        assert(error._tag === "AuthenticationError", `${JSON.stringify(token)}: ${error._tag}`)
        expect(error.reason).toBe("InvalidTokenResponse")
        expect(error.message).not.toContain(token)
        expect((yield* server.stats).requests["/api"] ?? 0).toBe(0)
      }
      const ok = yield* answering({ access_token: "aB9-._~+/==", expires_in: 3600 })
      yield* ok.api.get("/api")
    }))

  it.scoped("expires_in must be a number of seconds of at least 1", () =>
    Effect.gen(function*() {
      for (const expires_in of [true, 0.001, 0, -5, "1h", "", null]) {
        const { api } = yield* answering({ access_token: "tok", expires_in })
        const error = yield* Effect.flip(api.get("/api"))
        assert(error._tag === "AuthenticationError", JSON.stringify(expires_in))
        expect(error.reason, JSON.stringify(expires_in)).toBe("InvalidTokenResponse")
      }
      for (const expires_in of [3600, "3600", 1]) {
        const { api } = yield* answering({ access_token: "tok", expires_in })
        yield* api.get("/api")
      }
    }))

  it.scoped("an invalid header value is a RequestEncodeError, never retried as a TransportError", () =>
    Effect.gen(function*() {
      let attempts = 0
      const { api, server } = yield* setupWith(
        { routes: [{ path: "/api", then: { echo: true } }] },
        { transformClient: HttpClient.tapRequest(() => Effect.sync(() => attempts++)) },
        () => Retry.layer({ maxAttempts: 4 })
      )
      const error = yield* Effect.flip(api.get("/api", { headers: { "x-note": "a\r\nInjected: 1" } }))
      assert(error._tag === "RequestEncodeError", error._tag)
      expect(attempts).toBe(1)
      expect((yield* server.stats).total).toBe(0)
    }))
})


describe("ClientCredentials.layerShared: one token for every client sharing a TokenStore", () => {
  const sharing = (server: TestServer.TestServer, store: TokenStore.Store) =>
    Effect.map(
      Layer.build(
        ApiClient.layer({ baseUrl: server.url }).pipe(
          Layer.provide(
            ClientCredentials.layerShared({ tokenUrl: `${server.url}/oauth/token`, clientId: "app", clientSecret: Redacted.make(SECRET) }).pipe(
              Layer.provide(Layer.succeed(TokenStore.TokenStore, store))
            )
          ),
          Layer.provideMerge(NodeTransport.layer())
        )
      ),
      (ctx) => Context.get(ctx, ApiClient.ApiClient)
    )

  it.scoped("one token request per refresh for all of them; a 401 drops the shared token once", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        oauth: oauth({ tokenLifetime: "30 seconds" }),
        routes: [{ path: "/api", requireAuth: true, then: { json: 1 } }]
      })
      const store = yield* TokenStore.makeMemory
      const clients = yield* Effect.all([sharing(server, store), sharing(server, store), sharing(server, store)])
      // the clients that wait for another's refresh poll the store: test time passes in small steps meanwhile
      const pumped = <A, E>(effect: Effect.Effect<A, E>) =>
        Effect.raceFirst(
          effect,
          Effect.forever(Effect.zipRight(TestClock.adjust("50 millis"), Effect.promise(() => new Promise((r) => setTimeout(r, 2))))).pipe(
            Effect.zipRight(Effect.never)
          )
        )
      const everyone = pumped(
        Effect.all(clients.flatMap((api) => Array.from({ length: 20 }, () => api.get("/api"))), { concurrency: "unbounded" })
      )
      yield* everyone
      expect((yield* server.stats).tokenRequests).toBe(1)
      // due for refresh (a 30 s token refreshes at 15 s): one client fetches for all, the others wait for it
      yield* TestClock.adjust("16 seconds")
      yield* everyone
      yield* until(server, 122) // 60 + 60 calls and two token requests
      yield* TestClock.adjust("1 second")
      yield* everyone
      expect((yield* server.stats).tokenRequests).toBe(2)
      // past the old token's expiry (and the next refresh, one for all again) no request goes out with it
      yield* TestClock.adjust("20 seconds")
      yield* everyone
      yield* pumped(Effect.sleep("1 second")) // the clients waiting for that refresh take its token
      expect((yield* server.stats).tokenRequests).toBe(3)
      expect((yield* server.stats).statuses[401] ?? 0).toBe(0)
      // revoked: each client meets one 401, the shared token is dropped once, one token request for all
      yield* server.revokeTokens
      yield* pumped(Effect.all(clients.map((api) => api.get("/api"))))
      expect((yield* server.stats).tokenRequests).toBe(4)
      expect((yield* server.stats).statuses[401]).toBe(3)
    }))

  it.scoped("the store away: each client fetches its own token, with a warning, and shares again when it returns", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ oauth: oauth(), routes: [{ path: "/api", requireAuth: true, then: { json: 1 } }] })
      const memory = yield* TokenStore.makeMemory
      let away = true
      const unreachable = new TokenStore.TokenStoreError({ message: "connection refused" })
      const unlessAway = <A>(effect: Effect.Effect<A, TokenStore.TokenStoreError>) =>
        Effect.suspend(() => away ? Effect.fail(unreachable) : effect)
      const flaky: TokenStore.Store = {
        get: (key) => unlessAway(memory.get(key)),
        tryLock: (key, owner, ttl) => unlessAway(memory.tryLock(key, owner, ttl)),
        publish: (key, owner, headers, lifetime) => unlessAway(memory.publish(key, owner, headers, lifetime)),
        unlock: (key, owner) => unlessAway(memory.unlock(key, owner)),
        drop: (key, headers) => unlessAway(memory.drop(key, headers))
      }
      const logs: Array<string> = []
      const logger = Logger.make(({ message }) => logs.push(String(message)))
      const [a, b] = yield* Effect.all([sharing(server, flaky), sharing(server, flaky)]).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, logger))
      )
      yield* Effect.all([a.get("/api"), b.get("/api")]).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      expect((yield* server.stats).tokenRequests).toBe(2)
      expect(logs.some((l) => l.includes("shared token store is unreachable"))).toBe(true)
      expect(logs.join("\n")).not.toContain("Bearer")
      away = false
      yield* TestClock.adjust("11 minutes")
      yield* a.get("/api")
      yield* b.get("/api")
      expect((yield* server.stats).tokenRequests).toBe(3)
    }))
})
