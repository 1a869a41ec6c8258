import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as TestClock from "effect/TestClock"
import { CircuitBreaker, CircuitBreakerStore, Retry } from "../src/index.js"
import { setupWith } from "./helpers.js"

const build = (options: CircuitBreaker.Options = {}) =>
  Effect.provideServiceEffect(CircuitBreaker.make(options), CircuitBreakerStore.CircuitBreakerStore, CircuitBreakerStore.makeMemory)

/** One call that answers `status`. */
const answer = (breaker: CircuitBreaker.Service, status: number) =>
  Effect.either(breaker.run(Effect.succeed(status), (exit) =>
    Exit.isSuccess(exit) ? { _tag: "Response", status: exit.value } : { _tag: "Failure", error: undefined }))

/** One call that fails with a tagged error. */
const failWith = (breaker: CircuitBreaker.Service, tag: string) =>
  Effect.either(breaker.run(Effect.fail({ _tag: tag }), (exit) =>
    Exit.isSuccess(exit)
      ? { _tag: "Response", status: 200 }
      : { _tag: "Failure", error: Option.getOrUndefined(Cause.failureOption(exit.cause)) }))

/** Lets forked fibers run up to their next wait. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

const isOpen = (result: Either.Either<unknown, unknown>) =>
  Either.isLeft(result) && (result.left as { _tag?: string })._tag === "CircuitOpenError"

describe("CircuitBreaker", () => {
  it.effect("opens after consecutive failures, refuses with when it may admit, and a half-open probe's success closes it", () =>
    Effect.gen(function*() {
      const breaker = yield* build({ consecutiveFailures: 3, openFor: "10 seconds" })
      yield* answer(breaker, 503)
      yield* answer(breaker, 200) // a success in between starts the count over
      for (let i = 0; i < 2; i++) yield* answer(breaker, 503)
      expect((yield* breaker.state).state).toBe("closed")
      yield* failWith(breaker, "TransportError")
      expect((yield* breaker.state).state).toBe("open")
      const refused = yield* answer(breaker, 200)
      expect(isOpen(refused)).toBe(true)
      const error = (refused as Either.Left<CircuitBreaker.CircuitOpenError, number>).left
      expect(Duration.toMillis(Option.getOrThrow(error.retryAfter))).toBe(10_000)
      expect(error.message).toContain("is open")
      yield* TestClock.adjust("9 seconds")
      expect(isOpen(yield* answer(breaker, 200))).toBe(true)
      yield* TestClock.adjust("1 second")
      // half-open: one probe goes; its success closes the circuit
      expect(yield* answer(breaker, 200)).toEqual(Either.right(200))
      expect((yield* breaker.state).state).toBe("closed")
      expect(yield* answer(breaker, 200)).toEqual(Either.right(200))
    }))

  it.effect("a probe's failure opens it again for the schedule's next, longer period", () =>
    Effect.gen(function*() {
      const breaker = yield* build({
        consecutiveFailures: 1,
        openFor: Schedule.exponential("1 second").pipe(Schedule.modifyDelay((_, d) => Duration.min(d, Duration.seconds(3))))
      })
      const openPeriods: Array<number> = []
      yield* answer(breaker, 500)
      for (let trip = 0; trip < 4; trip++) {
        const s = yield* breaker.state
        openPeriods.push(s.openUntil - s.now)
        yield* TestClock.adjust(Duration.millis(s.openUntil - s.now))
        yield* answer(breaker, 502) // the probe fails
      }
      expect(openPeriods).toEqual([1_000, 2_000, 3_000, 3_000])
      // a success closes it and the next trip starts from the first period again
      const s = yield* breaker.state
      yield* TestClock.adjust(Duration.millis(s.openUntil - s.now))
      yield* answer(breaker, 200)
      yield* answer(breaker, 500)
      const again = yield* breaker.state
      expect(again.openUntil - again.now).toBe(1_000)
    }))

  it.effect("trips on the failure rate over the window once it holds the minimum number of calls", () =>
    Effect.gen(function*() {
      const breaker = yield* build({
        consecutiveFailures: 0,
        failureRate: { threshold: 0.5, window: "10 seconds", minimumCalls: 10 }
      })
      // alternating success and failure: 50 %, but only once 10 calls are in the window
      for (let i = 0; i < 8; i++) yield* answer(breaker, i % 2 === 0 ? 200 : 503)
      expect((yield* breaker.state).state).toBe("closed")
      // calls older than the window no longer count
      yield* TestClock.adjust("11 seconds")
      yield* answer(breaker, 200)
      yield* answer(breaker, 503)
      expect((yield* breaker.state).state).toBe("closed")
      for (let i = 0; i < 8; i++) yield* answer(breaker, i % 2 === 0 ? 200 : 503)
      expect((yield* breaker.state).state).toBe("open")
    }))

  it.effect("a 429, an authentication or limiter failure is not a failure; classify overrides", () =>
    Effect.gen(function*() {
      const breaker = yield* build({ consecutiveFailures: 2 })
      for (let i = 0; i < 5; i++) yield* answer(breaker, 429)
      for (const tag of ["AuthenticationError", "TokenAcquisitionTimeoutError", "RequestEncodeError"]) yield* failWith(breaker, tag)
      expect((yield* breaker.state).state).toBe("closed")
      yield* failWith(breaker, "RequestTimeoutError")
      yield* answer(breaker, 504)
      expect((yield* breaker.state).state).toBe("open")

      const strict = yield* build({ key: "strict", consecutiveFailures: 2, classify: (o) => o._tag === "Response" && o.status === 429 ? "failure" : undefined })
      yield* answer(strict, 429)
      yield* answer(strict, 429)
      expect((yield* strict.state).state).toBe("open")
    }))

  it.effect("half-open lets halfOpenProbes through at once and needs successesToClose to close", () =>
    Effect.gen(function*() {
      const breaker = yield* build({ consecutiveFailures: 1, openFor: "5 seconds", halfOpenProbes: 2, successesToClose: 3 })
      yield* answer(breaker, 500)
      yield* TestClock.adjust("5 seconds")
      // two slow probes hold both places: a third call is refused
      const slow = (n: number) =>
        breaker.run(Effect.as(Effect.sleep("1 second"), n), (exit) =>
          Exit.isSuccess(exit) ? { _tag: "Response", status: 200 } : { _tag: "Failure", error: undefined })
      const probes = yield* Effect.fork(Effect.all([slow(1), slow(2)], { concurrency: "unbounded" }))
      yield* settle
      expect(isOpen(yield* answer(breaker, 200))).toBe(true)
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(probes)).toEqual([1, 2])
      expect((yield* breaker.state).state).toBe("half-open")
      yield* answer(breaker, 200) // the third success
      expect((yield* breaker.state).state).toBe("closed")
    }))

  it.effect("an interrupted probe frees its place; a lost one (its process died) frees it after an open period", () =>
    Effect.gen(function*() {
      const breaker = yield* build({ consecutiveFailures: 1, openFor: "5 seconds" })
      yield* answer(breaker, 500)
      yield* TestClock.adjust("5 seconds")
      const hung = yield* Effect.fork(breaker.run(Effect.never, () => ({ _tag: "Response", status: 200 })))
      yield* settle
      expect(isOpen(yield* answer(breaker, 200))).toBe(true)
      yield* Fiber.interrupt(hung)
      expect(yield* answer(breaker, 200)).toEqual(Either.right(200))

      // a probe admitted straight through the store, never answered
      const store = yield* CircuitBreakerStore.makeMemory
      const lost = yield* Effect.provideService(CircuitBreaker.make({ consecutiveFailures: 1, openFor: "5 seconds" }), CircuitBreakerStore.CircuitBreakerStore, store)
      yield* answer(lost, 500)
      yield* TestClock.adjust("5 seconds")
      const params: CircuitBreakerStore.Params = {
        consecutiveFailures: 1,
        failureRate: 0,
        windowMillis: 60_000,
        minimumCalls: 20,
        openMillis: [5_000],
        halfOpenProbes: 1,
        successesToClose: 1
      }
      expect((yield* store.admit("sluice", params)).probe).toBe(true)
      expect(isOpen(yield* answer(lost, 200))).toBe(true)
      yield* TestClock.adjust("5 seconds")
      expect(yield* answer(lost, 200)).toEqual(Either.right(200))
    }))

  it("refuses settings that can never trip", () => {
    expect(() => Effect.runSync(build({ consecutiveFailures: 0 }))).toThrow(/no rule to trip on/)
    expect(() => Effect.runSync(build({ failureRate: { threshold: 1.5 } }))).toThrow(/threshold/)
  })
})

describe("CircuitBreaker with ApiClient, against a real server", () => {
  it.scoped("a 503 storm: the server sees a bounded number of requests while open; calls resume once it heals", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { routes: [{ method: "GET", path: "/api", then: { json: { ok: true } } }] },
        {},
        () => CircuitBreaker.layer({ consecutiveFailures: 3, openFor: "10 seconds" }).pipe(Layer.provide(CircuitBreakerStore.layerMemory))
      )
      yield* server.setReply("/api", { status: 503, json: { error: "down" } })
      const tags: Array<string> = []
      for (let i = 0; i < 50; i++) {
        const r = yield* Effect.either(api.get("/api"))
        tags.push(Either.isLeft(r) ? r.left._tag : "ok")
      }
      expect(tags.slice(0, 3)).toEqual(["HttpStatusError", "HttpStatusError", "HttpStatusError"])
      expect(new Set(tags.slice(3))).toEqual(new Set(["CircuitOpenError"]))
      expect((yield* server.stats).total).toBe(3)
      // still down at the first probe: open again, for longer
      yield* TestClock.adjust("10 seconds")
      expect((yield* Effect.either(api.get("/api")))._tag).toBe("Left")
      expect((yield* server.stats).total).toBe(4)
      // healed
      yield* server.setReply("/api", undefined)
      yield* TestClock.adjust("20 seconds")
      for (let i = 0; i < 5; i++) expect(yield* api.get("/api")).toEqual({ ok: true })
      expect((yield* server.stats).total).toBe(9)
    }))

  it.scoped("Retry waits out an open circuit as it would a Retry-After; a 429 storm never trips it", () =>
    Effect.gen(function*() {
      const { api, server } = yield* setupWith(
        { routes: [{ method: "POST", path: "/api", then: { json: { ok: true } } }] },
        {},
        () =>
          Layer.mergeAll(
            CircuitBreaker.layer({ consecutiveFailures: 2, openFor: "3 seconds" }).pipe(Layer.provide(CircuitBreakerStore.layerMemory)),
            Retry.layer({ maxAttempts: 3, budget: false })
          )
      )
      // 429s are the limiter's business: ten in a row leave the circuit closed
      yield* server.enqueue("/api", Array.from({ length: 10 }, () => ({ retryAfter: 0 })))
      for (let i = 0; i < 5; i++) {
        const r = yield* Effect.fork(Effect.either(api.post("/api")))
        for (let j = 0; j < 20; j++) {
          yield* TestClock.adjust("100 millis")
          yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 2)))
        }
        yield* Fiber.join(r)
      }
      yield* server.setReply("/api", { status: 503 })
      // a POST is not replayed after a 503 without Retry-After: two calls, two failures, open
      yield* Effect.either(api.post("/api"))
      yield* Effect.either(api.post("/api"))
      const before = (yield* server.stats).total
      yield* server.setReply("/api", undefined)
      // open: the POST was never sent, so Retry may replay it once the circuit may admit
      const call = yield* Effect.fork(api.post("/api"))
      for (let j = 0; j < 40 && (yield* server.stats).total === before; j++) {
        yield* TestClock.adjust("100 millis")
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 2)))
      }
      expect(yield* Fiber.join(call)).toEqual({ ok: true })
      expect((yield* server.stats).total).toBe(before + 1)
    }))
})
