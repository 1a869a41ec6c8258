/**
 * Scenario 3: one quota in Redis shared by 1, 4 and 8 processes.
 *
 * - Throughput: a quota far above what the processes can take, so every
 *   acquisition is one script round trip: aggregate acquisitions per second
 *   and per-acquisition latency.
 * - Accuracy: a shared quota of 200/s (burst 1): the admitted rate against
 *   the configured rate, over the seconds all processes ran.
 */
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { TestRedis } from "@sluice/redis"
import * as Effect from "effect/Effect"
import { median } from "./measure.js"

const here = Path.dirname(fileURLToPath(import.meta.url))

interface WorkerResult {
  readonly count: number
  readonly p50: number
  readonly p99: number
  readonly times: ReadonlyArray<number>
}

const worker = (args: ReadonlyArray<string>) =>
  Effect.async<WorkerResult>((resume) => {
    const child = ChildProcess.spawn(process.execPath, [Path.join(here, "redisWorker.js"), ...args], { stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.stdout!.on("data", (d) => (out += d))
    child.on("close", (code) => resume(code === 0 ? Effect.succeed(JSON.parse(out)) : Effect.dieMessage(`redis worker exited ${code}`)))
  })

const fleet = (socket: string, processes: number, limit: number, seconds: number, key: string) =>
  Effect.gen(function*() {
    const startAt = Date.now() + 1500
    const results = yield* Effect.all(
      Array.from({ length: processes }, () => worker([socket, String(limit), String(seconds), key, String(startAt)])),
      { concurrency: "unbounded" }
    )
    const count = results.reduce((a, r) => a + r.count, 0)
    // the window every process was running in
    const from = Math.max(...results.map((r) => r.times[0] ?? Infinity))
    const to = Math.min(...results.map((r) => r.times[r.times.length - 1] ?? 0))
    const inWindow = results.reduce((a, r) => a + r.times.filter((t) => t >= from && t <= to).length, 0)
    return {
      processes,
      perSecond: count / seconds,
      p50: median(results.map((r) => r.p50)),
      p99: Math.max(...results.map((r) => r.p99)),
      admittedRate: to > from ? (inWindow - 1) / ((to - from) / 1000) : NaN
    }
  })

export const run = (options: { readonly seconds: number }) =>
  Effect.scoped(Effect.gen(function*() {
    const redis = yield* TestRedis.start
    const throughput = []
    const accuracy = []
    for (const p of [1, 4, 8]) {
      throughput.push(yield* fleet(redis.socket, p, 10_000_000, options.seconds, `free-${p}`))
      accuracy.push(yield* fleet(redis.socket, p, 200, options.seconds, `quota-${p}`))
    }
    return { throughput, accuracy }
  }))
