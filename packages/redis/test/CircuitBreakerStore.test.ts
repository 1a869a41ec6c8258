import { describe, expect, it } from "@effect/vitest"
import { CircuitBreaker, CircuitBreakerStore } from "@sluice/core"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import { Redis } from "ioredis"
import { RedisStore, TestRedis } from "../src/index.js"

const PARAMS: CircuitBreakerStore.Params = {
  consecutiveFailures: 3,
  failureRate: 0.5,
  windowMillis: 10_000,
  minimumCalls: 6,
  openMillis: [300, 1000],
  halfOpenProbes: 2,
  successesToClose: 2
}

/** One call through a breaker that answers `status`. */
const answer = (breaker: CircuitBreaker.Service, status: number) =>
  Effect.either(breaker.run(Effect.succeed(status), (exit) =>
    Exit.isSuccess(exit) ? { _tag: "Response", status: exit.value } : { _tag: "Failure", error: undefined }))

describe("RedisStore circuit breaker", () => {
  it.live("the Lua runs the breaker's steps of the memory store: the same calls, the same decisions", () =>
    Effect.scoped(Effect.gen(function*() {
      const redis = yield* TestRedis.start
      const remote = yield* RedisStore.makeCircuitBreaker({ path: redis.socket, prefix: "parity:" })
      const local = yield* CircuitBreakerStore.makeMemory
      const run = (store: CircuitBreakerStore.Store) =>
        Effect.gen(function*() {
          const seen: Array<unknown> = []
          const admit = Effect.tap(store.admit("k", PARAMS), (a) =>
            Effect.sync(() => seen.push(["admit", a.admitted, a.probe, a.transition ?? "", a.admitted ? 0 : a.retryAfterMillis > 0])))
          const record = (outcome: CircuitBreakerStore.Outcome, probe = false) =>
            Effect.tap(store.record("k", outcome, probe, PARAMS), (t) => Effect.sync(() => seen.push(["record", outcome, t ?? ""])))
          // closed: a success resets the run of failures; the rate rule needs 6 calls
          for (const o of ["failure", "failure", "success", "failure", "ignored", "success"] as const) {
            yield* admit
            yield* record(o)
          }
          yield* record("failure") // 4 of 6 failed, over the 50 % rate: open
          yield* record("failure") // answers admitted before the trip: ignored
          yield* record("failure")
          yield* admit // refused
          yield* Effect.sleep("350 millis")
          yield* admit // half-open: a probe
          yield* admit // a second probe
          yield* admit // refused: both places taken
          yield* record("failure", true) // a probe failed: open again, for the next period
          yield* Effect.sleep("500 millis")
          yield* admit // still open (1 s)
          yield* Effect.sleep("650 millis")
          yield* admit
          yield* record("success", true)
          yield* admit
          yield* record("success", true) // the second success closes it
          yield* admit
          const snapshot = yield* store.snapshot("k")
          seen.push(["snapshot", snapshot.state, snapshot.trips])
          return seen
        })
      const [a, b] = yield* Effect.all([run(remote), run(local)], { concurrency: "unbounded" })
      expect(a).toEqual(b)
      expect(a.filter((x) => (x as Array<unknown>)[2] === "opened").length).toBe(2)
      expect(a[a.length - 1]).toEqual(["snapshot", "closed", 0])
    })), 30_000)

  it.live("a fleet trips together: one process's failures open the circuit for every process on the key", () =>
    Effect.scoped(Effect.gen(function*() {
      const redis = yield* TestRedis.start
      const breakerOn = Effect.gen(function*() {
        // each its own connection, as separate processes would have
        const store = yield* RedisStore.makeCircuitBreaker({ path: redis.socket, prefix: "fleet:" })
        return yield* Effect.provideService(
          CircuitBreaker.make({ key: "api", consecutiveFailures: 3, openFor: "400 millis" }),
          CircuitBreakerStore.CircuitBreakerStore,
          store
        )
      })
      const a = yield* breakerOn
      const b = yield* breakerOn
      for (let i = 0; i < 3; i++) yield* answer(a, 503)
      const refused = yield* answer(b, 200)
      expect(Either.isLeft(refused) && (refused.left as { _tag: string })._tag).toBe("CircuitOpenError")
      expect((yield* b.state).state).toBe("open")
      yield* Effect.sleep("450 millis")
      // b's probe succeeds: closed for a too
      expect(yield* answer(b, 200)).toEqual(Either.right(200))
      expect((yield* a.state).state).toBe("closed")
      expect(yield* answer(a, 200)).toEqual(Either.right(200))
      // the state has a TTL and the prefix
      const client = new Redis({ path: redis.socket })
      const ttl = yield* Effect.promise(() => client.pttl("fleet:api:circuit"))
      expect(ttl).toBeGreaterThan(0)
      yield* Effect.promise(() => client.quit())
    })), 30_000)

  it.live("Redis away: the breaker fails open (calls go through) and works again when Redis returns", () =>
    Effect.scoped(Effect.gen(function*() {
      const redis = yield* TestRedis.start
      const store = yield* RedisStore.makeCircuitBreaker({ path: redis.socket, prefix: "outage:" })
      const breaker = yield* Effect.provideService(
        CircuitBreaker.make({ consecutiveFailures: 2, openFor: "10 seconds" }),
        CircuitBreakerStore.CircuitBreakerStore,
        store
      )
      yield* redis.kill
      for (let i = 0; i < 5; i++) expect(yield* answer(breaker, 503)).toEqual(Either.right(503))
      yield* redis.restart
      // ioredis reconnects in the background; once it has, two failures open the circuit again
      let state = "closed"
      for (let i = 0; i < 100 && state !== "open"; i++) {
        yield* answer(breaker, 503)
        state = yield* Effect.match(breaker.state, { onFailure: () => "unknown", onSuccess: (s) => s.state })
        if (state !== "open") yield* Effect.sleep("50 millis")
      }
      expect(state).toBe("open")
    })), 30_000)
})
