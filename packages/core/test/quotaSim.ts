/**
 * Simulated servers of the shapes users meet, and a closed-loop run of the
 * adaptive limiter against one of them on the `TestClock`: fast and
 * deterministic, for the algorithm's own tests. (`pnpm bench` runs the same
 * shapes over real HTTP, side by side with other clients.)
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import type { RateLimiter } from "../src/index.js"

export interface Answer {
  readonly ok: boolean
  /** Seconds, as a server would send `Retry-After`; undefined for a bare 429. */
  readonly retryAfter?: number | undefined
  readonly headers?: Readonly<Record<string, string>>
}

export interface Shape {
  readonly name: string
  /** Answers a request arriving at `t` ms. */
  readonly serve: (t: number) => Answer
  /** The capacity at `t`, per second (for goodput). */
  readonly capacity: (t: number) => number
  /** The request finished (for concurrency limits). */
  readonly done?: (t: number) => void
}

type RetryAfterMode = "seconds" | "none"

/** A token bucket of `rate(t)` per second holding at most `burst`. */
export const tokenBucket = (rate: (t: number) => number, burst: (r: number) => number, mode: RetryAfterMode = "seconds"): Shape => {
  let tokens = burst(rate(0))
  let last = 0
  return {
    name: "bucket",
    capacity: rate,
    serve: (t) => {
      const r = rate(t)
      tokens = Math.min(burst(r), tokens + ((t - last) / 1000) * r)
      last = t
      if (tokens >= 1) {
        tokens -= 1
        return { ok: true }
      }
      return { ok: false, retryAfter: mode === "none" ? undefined : Math.max(1, Math.ceil((1 - tokens) / r)) }
    }
  }
}

/**
 * express-rate-limit's fixed window: `limit` per `windowMs`, the window
 * starting at the first request after the last one expired; every request
 * counts, rejected ones too; `Retry-After` the seconds to the window's end,
 * rounded up; optionally draft-7 headers (`true` or `"draft-7"`), or
 * express's legacy `X-RateLimit-*` with the reset in epoch seconds, rounded
 * up (`"x-epoch"`: the run's time 0 is `epochMillis` on the wall clock).
 */
export const fixedWindow = (
  limit: number,
  windowMs: number,
  options: { readonly headers?: boolean | "draft-7" | "x-epoch"; readonly epochMillis?: number; readonly mode?: RetryAfterMode } = {}
): Shape => {
  let resetAt = -1
  let hits = 0
  return {
    name: "fixed-window",
    capacity: () => (limit * 1000) / windowMs,
    serve: (t) => {
      if (t >= resetAt) {
        resetAt = t + windowMs
        hits = 0
      }
      hits++
      const reset = Math.max(0, Math.ceil((resetAt - t) / 1000))
      const remaining = Math.max(0, limit - hits)
      const headers: Record<string, string> | undefined = options.headers === "x-epoch"
        ? {
          "x-ratelimit-limit": String(limit),
          "x-ratelimit-remaining": String(remaining),
          "x-ratelimit-reset": String(Math.ceil(((options.epochMillis ?? 0) + resetAt) / 1000))
        }
        : options.headers
        ? {
          "ratelimit-policy": `${limit};w=${Math.ceil(windowMs / 1000)}`,
          ratelimit: `limit=${limit}, remaining=${remaining}, reset=${reset}`
        }
        : undefined
      if (hits <= limit) return { ok: true, ...(headers ? { headers } : {}) }
      return { ok: false, retryAfter: options.mode === "none" ? undefined : reset, ...(headers ? { headers } : {}) }
    }
  }
}

/** A sliding log: at most `limit` admitted in any `windowMs`. */
export const slidingWindow = (limit: number, windowMs: number): Shape => {
  const admitted: Array<number> = []
  return {
    name: "sliding-window",
    capacity: () => (limit * 1000) / windowMs,
    serve: (t) => {
      while (admitted.length > 0 && admitted[0]! <= t - windowMs) admitted.shift()
      if (admitted.length < limit) {
        admitted.push(t)
        return { ok: true }
      }
      return { ok: false, retryAfter: Math.max(1, Math.ceil((admitted[0]! + windowMs - t) / 1000)) }
    }
  }
}

export interface Run {
  readonly goodput: number
  readonly share429: number
  readonly log: ReadonlyArray<{ readonly t: number; readonly ok: boolean }>
}

/**
 * `workers` closed loops through the limiter against `shape` for
 * `seconds`; each answer takes `latencyMs`; a 429's `Retry-After` is also
 * waited out by its worker (as `Retry` would). Goodput and the 429 share are
 * measured over `[from, to)` seconds.
 */
export const simulate = (
  limiter: RateLimiter.Service,
  shape: Shape,
  options: { readonly seconds: number; readonly workers?: number; readonly latencyMs?: number; readonly idle?: { readonly from: number; readonly to: number } }
) =>
  Effect.gen(function*() {
    const log: Array<{ t: number; ok: boolean }> = []
    const latency = options.latencyMs ?? 20
    // Shapes and the log see time from the start of this run.
    const start = yield* TestClock.currentTimeMillis
    const worker = Effect.forever(Effect.gen(function*() {
      const before = (yield* TestClock.currentTimeMillis) - start
      if (options.idle && before >= options.idle.from * 1000 && before < options.idle.to * 1000) {
        yield* Effect.sleep(Duration.millis(options.idle.to * 1000 - before))
        return
      }
      const permit = yield* Effect.orDie(limiter.acquire)
      const t = (yield* TestClock.currentTimeMillis) - start
      const answer = shape.serve(t)
      log.push({ t, ok: answer.ok })
      yield* Effect.sleep(Duration.millis(latency))
      shape.done?.(t)
      const headers = answer.headers ?? {}
      if (answer.ok) {
        yield* limiter.report(permit, { _tag: "Success", headers })
      } else {
        const retryAfter = answer.retryAfter === undefined ? Option.none() : Option.some(Duration.seconds(answer.retryAfter))
        yield* limiter.report(permit, { _tag: "RateLimited", retryAfter, headers })
        yield* Effect.sleep(Option.getOrElse(retryAfter, () => Duration.millis(100)))
      }
    }))
    const workers = yield* Effect.forkAll(Array.from({ length: options.workers ?? 10 }, () => worker))
    // One adjustment: the TestClock wakes every sleeper in time order, letting each run in between.
    yield* TestClock.adjust(Duration.seconds(options.seconds))
    yield* Fiber.interrupt(workers)
    return log
  })

/** Goodput (admitted over capacity) and the 429 share over `[from, to)` seconds. */
export const judge = (shape: Shape, log: ReadonlyArray<{ readonly t: number; readonly ok: boolean }>, from: number, to: number) => {
  const window = log.filter((x) => x.t >= from * 1000 && x.t < to * 1000)
  const ok = window.filter((x) => x.ok).length
  let capacity = 0
  for (let t = from * 1000; t < to * 1000; t += 100) capacity += shape.capacity(t) / 10
  return { goodput: ok / capacity, share429: window.length === 0 ? 0 : (window.length - ok) / window.length }
}
