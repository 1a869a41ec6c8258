/**
 * `sluice run`: sends a JSONL batch of requests through the Sluice stack,
 * resumably.
 *
 * - Ids already recorded in the output are skipped; every other line is
 *   sent, so a run killed at any moment (even `kill -9`) and re-run sends
 *   each unrecorded request and no recorded one.
 * - SIGINT/SIGTERM stop admitting requests, let the ones in flight finish
 *   (for at most `grace`), record them, and end non-zero with how to resume.
 * - Exit code 0 only when every request succeeded.
 *
 * @since 0.1.0
 */
import * as Fs from "node:fs"
import * as Readline from "node:readline"
import { ApiClient } from "@sluice/core"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Input from "./Input.js"
import * as Progress from "./Progress.js"
import { currentAttemptLog, type AttemptLog } from "./Stack.js"

export interface Options {
  readonly input: string
  readonly output: string
  readonly concurrency: number
  readonly grace: Duration.Duration
  readonly tty: boolean
  readonly log: (line: string) => void
}

export interface Summary {
  readonly total: number
  readonly skipped: number
  readonly ok: number
  readonly failed: number
  readonly invalid: number
  readonly interrupted: boolean
  readonly seconds: number
}

const retriesCounter = Metric.counter("sluice_retries", { incremental: true })

const countLines = (path: string) =>
  Effect.tryPromise({
    try: async () => {
      let n = 0
      const rl = Readline.createInterface({ input: Fs.createReadStream(path), crlfDelay: Infinity })
      for await (const line of rl) if (line.trim() !== "") n++
      return n
    },
    catch: (e) => new Error(`reading ${path}: ${(e as Error).message}`)
  })

export const run = (options: Options) =>
  Effect.gen(function*() {
    const api = yield* ApiClient.ApiClient
    if (!Fs.existsSync(options.input)) {
      return yield* Effect.fail(new Error(`input file ${options.input} does not exist`))
    }
    // Before anything is read or sent: a second run on the same output would send everything twice.
    yield* Input.lockOutput(options.output)
    const { ids: recorded, repaired } = yield* Input.recordedIds(options.output)
    if (repaired) options.log(`${options.output}: dropped a last line cut off by an earlier kill`)
    const total = yield* countLines(options.input)
    const out = yield* Effect.try({ try: () => Input.openOutput(options.output), catch: (e) => e as Error })
    yield* Effect.addFinalizer(() => Effect.sync(() => out.close()))

    const counters: Progress.Counters = { done: 0, ok: 0, failed: 0, tooMany: 0, retries: 0 }
    const progress = Progress.make(total - recorded.size, { tty: options.tty, write: (s) => process.stderr.write(s) })
    const retriesAtStart = (yield* Metric.value(retriesCounter)).count
    let skipped = 0
    let invalid = 0
    const seen = new Set<string>()
    const stop = yield* Deferred.make<void>()
    const started = performance.now()

    // Signals: stop admitting, let in-flight requests finish and be recorded.
    let stopping = false
    const onSignal = (signal: string) => () => {
      if (stopping) return
      stopping = true
      options.log(`\n${signal}: no new requests; waiting for the ones in flight…`)
      Deferred.unsafeDone(stop, Effect.void)
    }
    const onInt = onSignal("SIGINT")
    const onTerm = onSignal("SIGTERM")
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.on("SIGINT", onInt)
        process.on("SIGTERM", onTerm)
      }),
      () =>
        Effect.sync(() => {
          process.off("SIGINT", onInt)
          process.off("SIGTERM", onTerm)
        })
    )

    const record = (r: Input.OutputRecord) =>
      Effect.sync(() => {
        out.write(r)
        counters.done++
        if (r.ok) counters.ok++
        else counters.failed++
        if (r.error?.tag === "ServerSideRateLimitError") counters.tooMany++
        progress.update(counters)
      })

    const send = (request: Input.BatchRequest) =>
      Effect.gen(function*() {
        const attempts: AttemptLog = { attempts: 0, status: undefined }
        const t0 = performance.now()
        const result = yield* api.request(request.method, request.path, {
          ...(request.body !== undefined ? { body: request.body } : {}),
          ...(request.cost !== undefined ? { cost: request.cost } : {}),
          headers: request.headers
        }).pipe(Effect.locally(currentAttemptLog, attempts), Effect.either)
        const durationMs = Math.round(performance.now() - t0)
        counters.retries = (yield* Metric.value(retriesCounter)).count - retriesAtStart
        if (result._tag === "Right") {
          return yield* record({ id: request.id, ok: true, status: attempts.status, attempts: attempts.attempts, durationMs, body: result.right })
        }
        const e = result.left
        return yield* record({
          id: request.id,
          ok: false,
          status: "status" in e && typeof e.status === "number" ? e.status : attempts.status,
          attempts: attempts.attempts,
          durationMs,
          error: { tag: e._tag, message: e.message }
        })
      })

    const lines = Stream.fromAsyncIterable(
      Readline.createInterface({ input: Fs.createReadStream(options.input), crlfDelay: Infinity }),
      (e) => new Error(`reading ${options.input}: ${String(e)}`)
    ).pipe(Stream.zipWithIndex)

    const work = lines.pipe(
      Stream.interruptWhen(Deferred.await(stop)),
      Stream.filterMap(([text, index]) => Option.fromNullable(Input.parseLine(text, index + 1))),
      Stream.mapEffect((parsed) => {
        if (recorded.has(parsed.id)) {
          skipped++
          return Effect.void
        }
        if ("_tag" in parsed) {
          invalid++
          options.log(parsed.message)
          recorded.add(parsed.id)
          return record({ id: parsed.id, ok: false, attempts: 0, durationMs: 0, line: parsed.line, error: { tag: "InvalidLine", message: parsed.message } })
        }
        if (seen.has(parsed.id)) {
          invalid++
          const message = `line ${parsed.line}: duplicate id "${parsed.id}" (first seen earlier in the file); not sent`
          options.log(message)
          return record({ id: `${parsed.id}#line-${parsed.line}`, ok: false, attempts: 0, durationMs: 0, line: parsed.line, error: { tag: "InvalidLine", message } })
        }
        seen.add(parsed.id)
        return send(parsed)
      }, { concurrency: options.concurrency, unordered: true }),
      Stream.runDrain
    )
    // After a stop, requests in flight get `grace` to finish; then they are cut off (and stay unrecorded).
    yield* Effect.raceFirst(
      work,
      Effect.zipRight(Deferred.await(stop), Effect.sleep(options.grace))
    )
    progress.finish(counters)
    return {
      total,
      skipped,
      ok: counters.ok,
      failed: counters.failed - invalid,
      invalid,
      interrupted: stopping,
      seconds: (performance.now() - started) / 1000
    } satisfies Summary
  })
