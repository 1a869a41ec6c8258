/**
 * One process of the Redis scenario: takes permits from a limiter whose
 * state is in Redis for `seconds`, and reports count, latency percentiles and
 * the span it ran over. Args: socket, limit per second, seconds, key, start-at (epoch ms).
 */
import { RateLimiter } from "@sluice/core"
import { RedisStore } from "@sluice/redis"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { percentile } from "./measure.js"

const [socket, limit, seconds, key, startAt] = process.argv.slice(2)

const program = Effect.gen(function*() {
  const ctx = yield* Layer.build(
    RateLimiter.layerTokenBucket({ limit: Number(limit), window: "1 second", burst: 1, key: key!, maxWait: Duration.infinity }).pipe(
      Layer.provide(RedisStore.layer({ path: socket!, prefix: "bench:" }))
    )
  )
  const limiter = Context.get(ctx, RateLimiter.RateLimiter)
  yield* limiter.acquire // connect and warm up before the common start
  const wait = Number(startAt) - Date.now()
  if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
  const deadline = Date.now() + Number(seconds) * 1000
  const latencies: Array<number> = []
  const times: Array<number> = []
  while (Date.now() < deadline) {
    const t0 = performance.now()
    yield* limiter.acquire
    latencies.push(performance.now() - t0)
    times.push(Date.now())
  }
  const sorted = Float64Array.from(latencies).sort()
  return JSON.stringify({ count: latencies.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), times })
})

// Exit only once the result is written: a pipe takes 64 KiB at once, and exit drops what is still queued.
Effect.runPromise(Effect.scoped(program)).then((result) => process.stdout.write(result, () => process.exit(0)), (e) => {
  process.stderr.write(String(e))
  process.exit(1)
})
