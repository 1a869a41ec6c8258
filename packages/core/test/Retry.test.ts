import { assert, describe, expect, it } from "@effect/vitest"
import { TestServer } from "@sluice/testing"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { CircuitBreaker, RateLimiter, RateLimiterStore, Retry } from "../src/index.js"
import { setupWith, until } from "./helpers.js"

const withRetry = (options: Retry.Options = {}) => () => Retry.layer(options)

/** Waits for the server to have seen `n` requests, letting test time pass in steps meanwhile. */
describe("Retry", () => {
  it.scoped("waits at least Retry-After (seconds) and never less", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { routes: [{ path: "/x", script: [TestServer.tooManyRequests({ retryAfter: 3 })], then: { json: "ok" } }] },
        {},
        withRetry()
      )
      const fiber = yield* Effect.fork(api.post("/x"))
      yield* server.awaitRequests(1)
      yield* until(server, 2, "50 millis")
      const log = yield* server.log
      expect(log[1]!.at - log[0]!.at).toBeGreaterThanOrEqual(3000)
      expect(log[1]!.at - log[0]!.at).toBeLessThanOrEqual(3300 + 50)
      expect(yield* Fiber.join(fiber)).toBe("ok")
    }))

  it.scoped("honours an HTTP-date Retry-After; a past date means now; garbage means backoff", () =>
    Effect.gen(function*() {
      const now = yield* TestClock.currentTimeMillis
      const { api, server } = yield* setupWith(
        {
          routes: [
            { path: "/date", script: [TestServer.tooManyRequests({ retryAfter: { at: now + 5000, format: "rfc850" } })], then: { json: 1 } },
            // the test clock starts at the epoch: one second after it is in the past by the time of the request
            { path: "/past", script: [{ status: 503, retryAfter: { at: 1000, format: "asctime" }, json: {} }], then: { json: 2 } },
            { path: "/junk", script: [{ status: 503, headers: { "retry-after": "soon" } }], then: { json: 3 } }
          ]
        },
        {},
        withRetry({ baseDelay: "1 second" })
      )
      const date = yield* Effect.fork(api.get("/date"))
      yield* server.awaitRequests(1)
      yield* until(server, 2)
      expect(yield* Fiber.join(date)).toBe(1)
      const log = yield* server.log
      expect(log[1]!.at - log[0]!.at).toBeGreaterThanOrEqual(4000) // second precision of HTTP-dates
      const past = yield* Effect.fork(api.get("/past"))
      yield* until(server, 4)
      expect(yield* Fiber.join(past)).toBe(2)
      const junk = yield* Effect.fork(api.get("/junk"))
      yield* until(server, 6)
      expect(yield* Fiber.join(junk)).toBe(3)
      const l = yield* server.log
      // both fell back to the jittered backoff: about a second (0.8-1.2 s)
      for (const [a, b] of [[2, 3], [4, 5]] as const) {
        expect(l[b]!.at - l[a]!.at).toBeGreaterThanOrEqual(800)
        expect(l[b]!.at - l[a]!.at).toBeLessThanOrEqual(1300)
      }
    }))

  it.scoped("a Retry-After beyond maxRetryAfter fails at once with the 429 carrying the value", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { routes: [{ path: "/x", then: TestServer.tooManyRequests({ retryAfter: 3600 }) }] },
        {},
        withRetry({ maxRetryAfter: "1 minute" })
      )
      const error = yield* Effect.flip(api.get("/x"))
      assert(error._tag === "ServerSideRateLimitError")
      expect(error.retryAfter).toEqual(Option.some(Duration.hours(1)))
      expect((yield* server.stats).total).toBe(1)
    }))

  it.scoped("POST is not replayed after a reset mid-request unless it carries an idempotency key", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { routes: [{ path: "/pay", script: [TestServer.fault("reset-before-headers")], then: { json: "paid" } }] },
        {},
        withRetry()
      )
      const error = yield* Effect.flip(api.post("/pay", { body: { amount: 1 } }))
      assert(error._tag === "TransportError")
      expect((yield* server.stats).total).toBe(1)
      yield* server.enqueue("/pay", [TestServer.fault("reset-before-headers")])
      const fiber = yield* Effect.fork(api.post("/pay", { body: { amount: 1 }, headers: { "Idempotency-Key": "k-1" } }))
      yield* until(server, 3)
      expect(yield* Fiber.join(fiber)).toBe("paid")
      const keys = (yield* server.log).slice(1).map((r) => r.headers["idempotency-key"])
      expect(keys).toEqual(["k-1", "k-1"])
    }))

  it.scoped("POST is retried on 429 and on 503 with Retry-After, not on a bare 500; GET is; 4xx never", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        {
          routes: [
            { path: "/a", script: [TestServer.tooManyRequests({ retryAfter: 1 })], then: { json: "a" } },
            { path: "/b", script: [{ status: 503, retryAfter: 1, json: {} }], then: { json: "b" } },
            { path: "/c", script: [TestServer.status(500)], then: { json: "c" } },
            { path: "/d", script: [TestServer.status(500)], then: { json: "d" } },
            { path: "/e", then: TestServer.status(400) }
          ]
        },
        {},
        withRetry()
      )
      const a = yield* Effect.fork(api.post("/a"))
      yield* until(server, 2)
      expect(yield* Fiber.join(a)).toBe("a")
      const b = yield* Effect.fork(api.post("/b"))
      yield* until(server, 4)
      expect(yield* Fiber.join(b)).toBe("b")
      const c = yield* Effect.flip(api.post("/c"))
      expect(c._tag).toBe("HttpStatusError")
      const d = yield* Effect.fork(api.get("/d"))
      yield* until(server, 7)
      expect(yield* Fiber.join(d)).toBe("d")
      const e = yield* Effect.flip(api.get("/e"))
      expect(e._tag).toBe("HttpStatusError")
      expect((yield* server.stats).requests).toEqual({ "/a": 2, "/b": 2, "/c": 1, "/d": 2, "/e": 1 })
    }))

  it.effect("waiting out an open circuit spends no retry budget: it sent nothing", () =>
    Effect.gen(function*() {
      const retry = yield* Retry.make({ maxAttempts: 5, budget: { capacity: 5, retryCost: 5, timeoutCost: 10, successRefund: 1 } })
      let calls = 0
      const attempt = Effect.suspend(() =>
        ++calls < 4
          ? Effect.fail(new CircuitBreaker.CircuitOpenError({ key: "k", retryAfter: Option.some(Duration.millis(100)) }))
          : Effect.succeed("sent")
      )
      const fiber = yield* Effect.fork(retry.retry(attempt, { method: "POST", headers: {} }))
      yield* TestClock.adjust("10 seconds")
      // three retries after an open circuit, with a budget that affords one retry
      expect(yield* Fiber.join(fiber)).toBe("sent")
      expect(calls).toBe(4)
    }))

  it.scoped("the retry budget stops a 503 storm from multiplying load", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { routes: [{ path: "/down", then: TestServer.status(503) }] },
        {},
        withRetry({ maxAttempts: 10, baseDelay: "10 millis", budget: { capacity: 10, retryCost: 5, timeoutCost: 10, successRefund: 1 } })
      )
      const first = yield* Effect.fork(Effect.flip(api.get("/down")))
      yield* until(server, 3, "20 millis")
      expect((yield* Fiber.join(first))._tag).toBe("HttpStatusError")
      // the budget (10 tokens, 5 a retry) allowed two retries in all; the next request gets none
      const second = yield* Effect.flip(api.get("/down"))
      expect(second._tag).toBe("HttpStatusError")
      expect((yield* server.stats).total).toBe(4)
    }))

  it.scoped("an overall deadline bounds all attempts", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { routes: [{ path: "/down", then: TestServer.status(503) }] },
        {},
        withRetry({ maxAttempts: 100, baseDelay: "1 second", maxDelay: "1 second", deadline: "5 seconds", budget: false })
      )
      const fiber = yield* Effect.fork(Effect.flip(api.get("/down")))
      yield* server.awaitRequests(1)
      for (let i = 0; i < 60 && fiber.unsafePoll() === null; i++) {
        yield* TestClock.adjust("100 millis")
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 2)))
      }
      const error = yield* Fiber.join(fiber)
      assert(error._tag === "RequestTimeoutError")
      expect(error.phase).toBe("deadline")
      expect(yield* TestClock.currentTimeMillis).toBeLessThanOrEqual(5100)
    }))

  it.scoped("every attempt takes a permit: retry sits outside the limiter", () =>
    Effect.gen(function*() {
      const store = yield* RateLimiterStore.makeMemory
      const { api, server } = yield* setupWith(
        { routes: [{ path: "/x", script: [TestServer.status(503), TestServer.status(503)], then: { json: 1 } }] },
        {},
        () =>
          Layer.mergeAll(
            Retry.layer({ baseDelay: "10 millis" }),
            RateLimiter.layerTokenBucket({ limit: 1, window: "1 second", burst: 1 }).pipe(
              Layer.provide(Layer.succeed(RateLimiterStore.RateLimiterStore, store))
            )
          )
      )
      const fiber = yield* Effect.fork(api.get("/x"))
      yield* until(server, 3, "50 millis")
      expect(yield* Fiber.join(fiber)).toBe(1)
      const log = yield* server.log
      // three attempts, a second apart: each waited for its own permit (the store keeps integer milliseconds)
      expect(log[1]!.at - log[0]!.at).toBeGreaterThanOrEqual(999)
      expect(log[2]!.at - log[1]!.at).toBeGreaterThanOrEqual(999)
    }))
})

describe("Retry.decide", () => {
  it("idempotency rules", () => {
    const get = { method: "GET", headers: {} }
    const post = { method: "POST", headers: {} }
    const keyed = { method: "POST", headers: { "idempotency-key": "x" } }
    const e = (fields: { readonly _tag: string } & Record<string, unknown>): Retry.Retryable => fields
    const reset = { _tag: "TransportError", phase: "request" }
    const refused = { _tag: "TransportError", phase: "connect" }
    expect(Option.isSome(Retry.decide(reset, get, {}))).toBe(true)
    expect(Option.isSome(Retry.decide(reset, post, {}))).toBe(false)
    expect(Option.isSome(Retry.decide(reset, keyed, {}))).toBe(true)
    expect(Option.isSome(Retry.decide(refused, post, {}))).toBe(true)
    expect(Option.isSome(Retry.decide({ _tag: "TokenAcquisitionTimeoutError" }, post, {}))).toBe(false)
    expect(Option.isSome(Retry.decide({ _tag: "TokenAcquisitionTimeoutError" }, post, { retryTokenTimeouts: true }))).toBe(true)
    expect(Option.isSome(Retry.decide(e({ _tag: "AuthenticationError", transient: true }), post, {}))).toBe(true)
    expect(Option.isSome(Retry.decide(e({ _tag: "AuthenticationError", transient: false }), get, {}))).toBe(false)
    expect(Option.isSome(Retry.decide(e({ _tag: "HttpStatusError", status: 404 }), get, {}))).toBe(false)
    expect(Option.isSome(Retry.decide({ _tag: "ResponseDecodeError" }, get, {}))).toBe(false)
  })
})
