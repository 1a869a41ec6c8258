/**
 * The batch's input and output files.
 *
 * Input: one JSON object per line, `{"id", "method", "path", "body",
 * "headers", "idempotencyKey", "cost"}` (`cost`: what the request takes from
 * `--token-rate`, e.g. its LLM tokens). A bad line becomes a failed record (with its
 * line number) rather than stopping the batch. An id is compared as text:
 * `1` and `"1"` are the same id, so the second is a duplicate (reported with
 * its line, not sent). A line without an id is `line-N` (its line number);
 * an explicit id of that form is refused, so the two can never collide.
 *
 * Output: one JSON object per finished request, appended as it finishes.
 * Re-reading it tells which ids are done; a last line cut off by a kill is
 * dropped before new records are appended.
 *
 * @since 0.1.0
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Readline from "node:readline"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

export const RequestLine = Schema.Struct({
  id: Schema.optional(Schema.Union(Schema.String, Schema.Number)),
  method: Schema.optionalWith(
    Schema.Literal("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "get", "post", "put", "patch", "delete", "head", "options"),
    { default: () => "GET" as const }
  ),
  path: Schema.String,
  body: Schema.optional(Schema.Unknown),
  headers: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  idempotencyKey: Schema.optional(Schema.String),
  cost: Schema.optional(Schema.Number.pipe(Schema.positive(), Schema.finite()))
})

export interface BatchRequest {
  readonly id: string
  readonly line: number
  readonly method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
  readonly path: string
  readonly body: unknown
  readonly headers: Readonly<Record<string, string>>
  /** What it takes from a tokens limiter (`--token-rate`). */
  readonly cost?: number | undefined
}

export interface Invalid {
  readonly _tag: "Invalid"
  readonly id: string
  readonly line: number
  readonly message: string
}

const decodeLine = Schema.decodeUnknownEither(RequestLine)

/** The id given to a line without one. */
const GENERATED_ID = /^line-\d+$/

/** Parses one input line; `undefined` for a blank line. */
export const parseLine = (text: string, line: number): BatchRequest | Invalid | undefined => {
  if (text.trim() === "") return undefined
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    return { _tag: "Invalid", id: `line-${line}`, line, message: `line ${line}: not JSON: ${(e as Error).message}` }
  }
  const decoded = decodeLine(json)
  const rawId = typeof json === "object" && json !== null && "id" in json ? (json as { id: unknown }).id : undefined
  const id = typeof rawId === "string" || typeof rawId === "number" ? String(rawId) : `line-${line}`
  if (rawId !== undefined && GENERATED_ID.test(id)) {
    // `line-N` names a line without an id: an explicit one could collide with it.
    return {
      _tag: "Invalid",
      id: `line-${line}`,
      line,
      message: `line ${line}: id "${id}" is reserved (ids of the form line-N name lines without an id); choose another`
    }
  }
  if (decoded._tag === "Left") {
    const issue = decoded.left.message.split("\n").slice(0, 4).join(" ")
    return { _tag: "Invalid", id, line, message: `line ${line}: not a request: ${issue}` }
  }
  const r = decoded.right
  const headers = { ...(r.headers ?? {}) }
  if (r.idempotencyKey !== undefined) headers["Idempotency-Key"] = r.idempotencyKey
  return { id, line, method: r.method.toUpperCase() as BatchRequest["method"], path: r.path, body: r.body, headers, cost: r.cost }
}

/** The output record of one request. */
export interface OutputRecord {
  readonly id: string
  readonly ok: boolean
  readonly status?: number | undefined
  readonly attempts: number
  readonly durationMs: number
  readonly body?: unknown
  readonly error?: { readonly tag: string; readonly message: string } | undefined
  readonly line?: number | undefined
}

/**
 * Drops a last line that a kill cut off mid-write, so the file stays valid
 * JSONL: reads backwards from the end in blocks for the last line end, never
 * the whole file. Returns whether it cut anything.
 */
export const repairTail = (path: string): boolean => {
  if (!Fs.existsSync(path)) return false
  const fd = Fs.openSync(path, "r+")
  try {
    const size = Fs.fstatSync(fd).size
    if (size === 0) return false
    const block = Buffer.alloc(64 * 1024)
    let end = size
    let keep = -1
    while (end > 0 && keep === -1) {
      const start = Math.max(0, end - block.length)
      const n = Fs.readSync(fd, block, 0, end - start, start)
      const at = block.subarray(0, n).lastIndexOf(10)
      if (at !== -1) keep = start + at + 1
      end = start
    }
    if (keep === -1) keep = 0
    if (keep === size) return false
    Fs.ftruncateSync(fd, keep)
    return true
  } finally {
    Fs.closeSync(fd)
  }
}

/**
 * The ids an output file already records, read as a stream of lines (in
 * memory bounded by the ids, not by the file), after `repairTail`.
 */
export const recordedIds = (path: string) =>
  Effect.tryPromise({
    try: async () => {
      const ids = new Set<string>()
      const repaired = repairTail(path)
      if (!Fs.existsSync(path)) return { ids, repaired }
      const lines = Readline.createInterface({ input: Fs.createReadStream(path), crlfDelay: Infinity })
      for await (const line of lines) {
        if (line.trim() === "") continue
        try {
          const record = JSON.parse(line) as { id?: unknown }
          if (typeof record.id === "string") ids.add(record.id)
        } catch {
          // a line we did not write: leave it, it names no id
        }
      }
      return { ids, repaired }
    },
    catch: (e) => new Error(`reading ${path}: ${(e as Error).message}`)
  })

/** Who holds an output file's lock, as written in the lock file. */
interface LockOwner {
  readonly pid: number
  readonly host: string
  readonly since: string
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    // EPERM: it exists, it is someone else's
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Holds `<output>.lock` for the scope: created with `O_EXCL` and the
 * owner's pid, host and start time, removed when the scope closes. A lock
 * whose owner is gone (same host, no such pid: a `kill -9`) is taken over;
 * any other fails at once with who holds it, before anything is sent.
 */
export const lockOutput = (output: string) => {
  const path = `${output}.lock`
  const me: LockOwner = { pid: process.pid, host: Os.hostname(), since: new Date().toISOString() }
  const tryCreate = (): "created" | LockOwner | undefined => {
    try {
      const fd = Fs.openSync(path, "wx")
      Fs.writeSync(fd, JSON.stringify(me))
      Fs.closeSync(fd)
      return "created"
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
    }
    try {
      return JSON.parse(Fs.readFileSync(path, "utf8")) as LockOwner
    } catch {
      return undefined // being written, or not ours: treated as held
    }
  }
  return Effect.acquireRelease(
    Effect.try({
      try: () => {
        let owner = tryCreate()
        if (owner !== "created" && owner !== undefined && owner.host === me.host && !alive(owner.pid)) {
          Fs.rmSync(path, { force: true })
          owner = tryCreate()
        }
        if (owner === "created") return
        const who = owner === undefined
          ? "another process"
          : `another sluice run (pid ${owner.pid} on ${owner.host}, since ${owner.since})`
        throw new Error(
          `${output} is being written by ${who}: wait for it to finish (two runs on one output would send every request twice), ` +
            `or delete ${path} if that run is gone`
        )
      },
      catch: (e) => e instanceof Error && e.message.includes("is being written") ? e : new Error(`cannot lock ${path}: ${(e as Error).message}`)
    }),
    () => Effect.sync(() => Fs.rmSync(path, { force: true }))
  )
}

/** Appends records, one `write` each, so a kill leaves at most one partial line. */
export const openOutput = (path: string) => {
  let fd: number
  try {
    fd = Fs.openSync(path, "a")
  } catch (e) {
    throw new Error(`cannot write ${path}: ${(e as Error).message}`)
  }
  return {
    write: (record: OutputRecord) => {
      Fs.writeSync(fd, `${JSON.stringify(record)}\n`)
    },
    close: () => Fs.closeSync(fd)
  }
}
