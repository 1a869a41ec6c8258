/**
 * The batch's input and output files.
 *
 * Input: one JSON object per line, `{"id", "method", "path", "body",
 * "headers", "idempotencyKey"}`. A bad line becomes a failed record (with its
 * line number) rather than stopping the batch.
 *
 * Output: one JSON object per finished request, appended as it finishes.
 * Re-reading it tells which ids are done; a last line cut off by a kill is
 * dropped before new records are appended.
 *
 * @since 0.1.0
 */
import * as Fs from "node:fs"
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
  idempotencyKey: Schema.optional(Schema.String)
})

export interface BatchRequest {
  readonly id: string
  readonly line: number
  readonly method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS"
  readonly path: string
  readonly body: unknown
  readonly headers: Readonly<Record<string, string>>
}

export interface Invalid {
  readonly _tag: "Invalid"
  readonly id: string
  readonly line: number
  readonly message: string
}

const decodeLine = Schema.decodeUnknownEither(RequestLine)

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
  if (decoded._tag === "Left") {
    const issue = decoded.left.message.split("\n").slice(0, 4).join(" ")
    return { _tag: "Invalid", id, line, message: `line ${line}: not a request: ${issue}` }
  }
  const r = decoded.right
  const headers = { ...(r.headers ?? {}) }
  if (r.idempotencyKey !== undefined) headers["Idempotency-Key"] = r.idempotencyKey
  return { id, line, method: r.method.toUpperCase() as BatchRequest["method"], path: r.path, body: r.body, headers }
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
 * Reads the ids an output file already records, after dropping a last line
 * that a kill cut off mid-write (so the file stays valid JSONL).
 */
export const recordedIds = (path: string): { readonly ids: Set<string>; readonly repaired: boolean } => {
  const ids = new Set<string>()
  if (!Fs.existsSync(path)) return { ids, repaired: false }
  const text = Fs.readFileSync(path, "utf8")
  let repaired = false
  let end = text.length
  if (text.length > 0 && !text.endsWith("\n")) {
    end = text.lastIndexOf("\n") + 1
    Fs.truncateSync(path, Buffer.byteLength(text.slice(0, end)))
    repaired = true
  }
  for (const line of text.slice(0, end).split("\n")) {
    if (line.trim() === "") continue
    try {
      const record = JSON.parse(line) as { id?: unknown }
      if (typeof record.id === "string") ids.add(record.id)
    } catch {
      // a line we did not write: leave it, it names no id
    }
  }
  return { ids, repaired }
}

/** Appends records, one `write` each, so a kill leaves at most one partial line. */
export const openOutput = (path: string) => {
  const fd = Fs.openSync(path, "a")
  return {
    write: (record: OutputRecord) => {
      Fs.writeSync(fd, `${JSON.stringify(record)}\n`)
    },
    close: () => Fs.closeSync(fd)
  }
}
