/**
 * Writes a scripted reply: status, headers, `Retry-After`, a JSON or text
 * body, chunks with delays, and the socket-level faults (resets, truncation,
 * endless and huge bodies, hangs). Delays run on the Effect clock (`after`).
 */
import type * as Http from "node:http"
import type * as TS from "../TestServer.js"
import { millis } from "./config.js"

/** What a `huge-body` answer announces: 2 GiB, which no client can buffer. */
const HUGE_BODY_LENGTH = 2 * 1024 * 1024 * 1024

/** What an `endless-line` body repeats: 64 KiB without a line end. */
const ENDLESS_LINE_CHUNK = "x".repeat(64 * 1024)

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
const pad = (n: number) => String(n).padStart(2, "0")

/** Writes an HTTP-date in one of its three forms. */
export const formatHttpDate = (at: number, format: "imf-fixdate" | "rfc850" | "asctime" = "imf-fixdate"): string => {
  const d = new Date(at)
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`
  const day = DAYS[d.getUTCDay()]!
  const month = MONTHS[d.getUTCMonth()]!
  switch (format) {
    case "imf-fixdate":
      return `${day.slice(0, 3)}, ${pad(d.getUTCDate())} ${month} ${d.getUTCFullYear()} ${time} GMT`
    case "rfc850":
      return `${day}, ${pad(d.getUTCDate())}-${month}-${pad(d.getUTCFullYear() % 100)} ${time} GMT`
    case "asctime":
      return `${day.slice(0, 3)} ${month} ${String(d.getUTCDate()).padStart(2, " ")} ${time} ${d.getUTCFullYear()}`
  }
}

export const writeJson = (res: Http.ServerResponse, status: number, value: unknown) => {
  const body = JSON.stringify(value)
  res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) })
  res.end(body)
}

/** What a reply needs from its server. */
export interface ReplyContext {
  /** Calls back after `ms` on the Effect clock; returns a cancel. */
  readonly after: (ms: number, f: () => void) => () => void
  /** Responses the server ends itself on purpose (not abandoned by the client). */
  readonly faulted: WeakSet<Http.ServerResponse>
  /** Each status written, for the stats. */
  readonly onStatus: (status: number) => void
}

export type Send = (
  req: Http.IncomingMessage,
  res: Http.ServerResponse,
  entry: { status: number | undefined },
  reply: TS.Reply,
  extraHeaders: Record<string, string>,
  echoOf: (unmasked: boolean) => unknown
) => void

export const makeSend = ({ after, faulted, onStatus }: ReplyContext): Send => {
  const send: Send = (req, res, entry, reply, extraHeaders, echoOf) => {
    const socket = req.socket
    const fault = reply.fault
    if (fault !== undefined && fault !== "hang" && fault !== "endless-body" && fault !== "endless-line" &&
      fault !== "huge-body") faulted.add(res)
    const chunkDelay = reply.chunkDelay !== undefined ? millis(reply.chunkDelay, "chunkDelay") : 100
    const cancels: Array<() => void> = []
    res.on("close", () => cancels.forEach((c) => c()))
    const go = () => {
      if (fault === "hang") return
      if (fault === "reset-before-headers") {
        socket.resetAndDestroy()
        return
      }
      const status = reply.status ?? (reply.redirect ? 302 : reply.retryAfter !== undefined ? 429 : 200)
      entry.status = status
      onStatus(status)
      const headers: Record<string, string> = { ...extraHeaders, ...(reply.headers ?? {}) }
      if (reply.redirect) headers["location"] = reply.redirect
      if (reply.retryAfter !== undefined) {
        headers["retry-after"] = typeof reply.retryAfter === "number"
          ? String(Math.ceil(reply.retryAfter))
          : formatHttpDate(reply.retryAfter.at, reply.retryAfter.format)
      }
      let body: string | undefined
      if (fault === "malformed-json") {
        headers["content-type"] = "application/json"
        body = "{\"ok\": tru"
      } else if (reply.echo) {
        headers["content-type"] = "application/json"
        body = JSON.stringify(echoOf(reply.echo === "unmasked"))
      } else if (reply.json !== undefined) {
        headers["content-type"] = "application/json"
        body = JSON.stringify(reply.json)
      } else if (reply.body !== undefined) {
        body = reply.body
      }
      if (fault === "truncated-body") {
        const full = body ?? JSON.stringify({ data: "x".repeat(256) })
        headers["content-length"] = String(Buffer.byteLength(full))
        res.writeHead(status, headers)
        res.write(full.slice(0, Math.floor(full.length / 2)))
        // A FIN after half the promised bytes: truncated, not reset. (Real timers here:
        // these only let the bytes flush, they are not part of the scripted timing.)
        setTimeout(() => socket.end(), 10)
        return
      }
      const endless = fault === "endless-body" || fault === "endless-line" || fault === "huge-body"
      if (fault === "reset-after-headers" || endless || reply.chunks) {
        if (fault === "huge-body") headers["content-length"] = String(HUGE_BODY_LENGTH)
        res.writeHead(status, headers)
        res.flushHeaders()
        if (fault === "reset-after-headers") {
          res.write(body !== undefined ? body.slice(0, Math.max(1, Math.floor(body.length / 2))) : "{\"partial\":")
          setTimeout(() => socket.resetAndDestroy(), 10)
          return
        }
        const chunks = endless ? undefined : [...reply.chunks!]
        if (fault === "endless-line") res.write("data: ")
        const next = () => {
          if (res.destroyed) return
          if (fault === "endless-line" || fault === "huge-body") {
            res.write(ENDLESS_LINE_CHUNK)
          } else if (chunks === undefined) {
            res.write(`data: ${Date.now()}\n\n`)
          } else {
            const chunk = chunks.shift()
            if (chunk === undefined) {
              res.end()
              return
            }
            res.write(chunk)
          }
          cancels.push(after(chunkDelay, next))
        }
        next()
        return
      }
      if (body !== undefined) headers["content-length"] = String(Buffer.byteLength(body))
      res.writeHead(status, headers)
      res.end(body)
    }
    const delay = millis(reply.delay, "delay")
    if (delay > 0) cancels.push(after(delay, go))
    else go()
  }
  return send
}
