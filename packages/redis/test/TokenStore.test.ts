import { describe, expect, it } from "@effect/vitest"
import { TestServer } from "@sluice/testing"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { Redis } from "ioredis"
import { TestRedis } from "../src/index.js"
import { runWorker } from "./worker.js"

const spawnWorker = (args: ReadonlyArray<string>) => runWorker("token-worker.mjs", args)

interface WorkerResult {
  readonly ok: number
  readonly failed: Readonly<Record<string, number>>
  readonly warnings: ReadonlyArray<string>
}

describe("RedisStore token store: one OAuth2 token for the fleet", () => {
  it.live("3 processes, 3 s tokens: about one token request per refresh for all of them, none sent expired, Redis killed mid-run and back", () =>
    Effect.scoped(Effect.gen(function*() {
      const redis = yield* TestRedis.start
      const server = yield* TestServer.make({
        oauth: { clientId: "fleet", clientSecret: "fleet-secret", tokenLifetime: "3 seconds" },
        routes: [{ path: "/api", requireAuth: true, then: { json: 1 } }],
        logLimit: 10
      })
      const SECONDS = 24
      const workers = yield* Effect.fork(Effect.all(
        Array.from({ length: 3 }, () => spawnWorker([redis.socket, String(SECONDS), server.url])),
        { concurrency: "unbounded" }
      ))
      // 12 s shared, then Redis away for 5 s, then back for the rest
      yield* Effect.sleep("12 seconds")
      const shared = yield* server.stats
      const client = new Redis({ path: redis.socket })
      const stored = yield* Effect.promise(() => client.hgetall("fleet:token:fleet|" + `${server.url}/oauth/token||`))
      const ttl = yield* Effect.promise(() => client.pttl("fleet:token:fleet|" + `${server.url}/oauth/token||`))
      yield* Effect.promise(() => client.quit())
      yield* redis.kill
      yield* Effect.sleep("5 seconds")
      const away = yield* server.stats
      yield* redis.restart
      const results = (yield* Fiber.join(workers)).map((o) => JSON.parse(o) as WorkerResult)
      const end = yield* server.stats

      // a 3 s token refreshes 1.5 s before it expires: about 8 refreshes in 12 s, for the whole fleet
      // (3 processes fetching on their own would make about 24)
      expect(shared.tokenRequests).toBeGreaterThanOrEqual(5)
      expect(shared.tokenRequests).toBeLessThanOrEqual(12)
      // what is stored: the headers sent and the lifetime, for no longer than the token lives
      expect(Object.keys(stored).sort()).toEqual(["h", "l"])
      expect(stored["h"]).toContain("Bearer")
      expect(ttl).toBeGreaterThan(0)
      expect(ttl).toBeLessThanOrEqual(3_000)
      // while Redis was away each process fetched its own: more token requests, none refused
      expect(away.tokenRequests - shared.tokenRequests).toBeGreaterThanOrEqual(3)
      // zero requests with an expired token, every request authenticated, start to end
      expect(end.statuses[401] ?? 0).toBe(0)
      for (const r of results) {
        expect(r.failed).toEqual({})
        expect(r.ok).toBeGreaterThan(100)
        expect(r.warnings.some((w) => w.includes("shared token store is unreachable"))).toBe(true)
        expect(r.warnings.join("\n")).not.toContain("Bearer")
      }
    })), 60_000)
})
