/**
 * Server-sent events (the `text/event-stream` format of the HTML standard)
 * decoded from a byte stream.
 *
 * `@effect/experimental` has an `Sse` parser too; `@sluice/core` depends on
 * `effect` and `@effect/platform` only, so this decoder is built here:
 * `Stream.decodeText`, a line splitter, and one fold with the same guard on
 * event size. The splitter is ours because `Stream.splitLines` does not end a
 * line at a lone `\r`, which the event-stream format allows.
 *
 * @example
 * ```ts
 * import { Stream } from "effect"
 * import { Sse } from "@sluice/core"
 *
 * const events = Stream.make(new TextEncoder().encode("event: tick\ndata: 1\n\n")).pipe(Sse.decode)
 * // Stream<Sse.Event> with { event: "tick", data: "1", id: undefined }
 * ```
 *
 * @since 0.1.0
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"

/**
 * One dispatched event. `event` defaults to `"message"`; `id` is the last event id seen.
 *
 * @since 0.1.0
 * @category models
 */
export interface Event {
  readonly event: string
  readonly data: string
  readonly id: string | undefined
  readonly retry: number | undefined
}

/**
 * A pending event grew past `maxEventSize` characters without being dispatched.
 *
 * @since 0.1.0
 * @category errors
 */
export class SseEventTooLargeError extends Schema.TaggedError<SseEventTooLargeError>(
  "@sluice/core/SseEventTooLargeError"
)("SseEventTooLargeError", { maxEventSize: Schema.Number }) {
  override get message(): string {
    return `a server-sent event exceeded ${this.maxEventSize} characters without being dispatched`
  }
}

const DEFAULT_MAX_EVENT_SIZE = 10 * 1024 * 1024

/**
 * @since 0.1.0
 * @category models
 */
export interface DecodeOptions {
  /**
   * Characters a pending event, and any one line of the stream (terminated or
   * not yet), may hold before the stream fails. Default 10 Mi characters.
   */
  readonly maxEventSize?: number | undefined
}

interface State {
  event: string
  data: string
  hasData: boolean
  id: string | undefined
  retry: number | undefined
  size: number
  first: boolean
}

/**
 * Parses lines of an event stream into events, one fold step per line.
 *
 * @since 0.1.0
 * @category utils
 */
export const fromLines = (options?: DecodeOptions) =>
<E, R>(lines: Stream.Stream<string, E, R>): Stream.Stream<Event, E | SseEventTooLargeError, R> => {
  const maxEventSize = options?.maxEventSize ?? DEFAULT_MAX_EVENT_SIZE
  return Stream.suspend(() => {
    const state: State = { event: "", data: "", hasData: false, id: undefined, retry: undefined, size: 0, first: true }
    // One step per line; a chunk of lines is folded in one go so a chunk costs one Effect.
    const step = (rawLine: string, out: Array<Event>): SseEventTooLargeError | undefined => {
      let line = rawLine
      if (state.first) {
        state.first = false
        if (line.charCodeAt(0) === 0xfeff) line = line.slice(1)
      }
      if (line === "") {
        if (state.hasData) {
          out.push({ event: state.event === "" ? "message" : state.event, data: state.data, id: state.id, retry: state.retry })
        }
        state.event = ""
        state.data = ""
        state.hasData = false
        state.size = 0
        return undefined
      }
      if (line.charCodeAt(0) === 58 /* ":" starts a comment */) return undefined
      const colon = line.indexOf(":")
      const field = colon === -1 ? line : line.slice(0, colon)
      let value = colon === -1 ? "" : line.slice(colon + 1)
      if (value.charCodeAt(0) === 32) value = value.slice(1)
      switch (field) {
        case "data": {
          state.data = state.hasData ? `${state.data}\n${value}` : value
          state.hasData = true
          state.size += value.length + 1
          if (state.size > maxEventSize) return new SseEventTooLargeError({ maxEventSize })
          break
        }
        case "event":
          state.event = value
          break
        case "id":
          if (!value.includes("\u0000")) state.id = value
          break
        case "retry":
          if (/^\d+$/.test(value)) state.retry = Number(value)
          break
      }
      return undefined
    }
    return lines.pipe(
      Stream.mapChunksEffect((chunk) => {
        const out: Array<Event> = []
        for (const line of chunk) {
          const error = step(line, out)
          if (error) return Effect.fail(error)
        }
        return Effect.succeed(Chunk.unsafeFromArray(out))
      })
    )
  })
}

/**
 * Splits text into lines ending in `\n`, `\r\n` or a lone `\r`, across
 * chunk boundaries (a `\r` at the end of a chunk and a `\n` at the start of
 * the next are one line end). A last line without a line end is emitted when
 * the stream ends.
 *
 * @since 0.1.0
 * @category utils
 */
export const splitLines = <E, R>(text: Stream.Stream<string, E, R>): Stream.Stream<string, E, R> =>
  splitLinesBounded(text, Number.POSITIVE_INFINITY, () => undefined as never)

/**
 * `splitLines` that fails with `tooLong()` once a line, terminated or still
 * being received, holds more than `maxLength` characters: a server that never
 * sends a line end cannot grow the carry without bound.
 *
 * @since 0.1.0
 * @category utils
 */
export const splitLinesBounded = <E, R, E2>(
  text: Stream.Stream<string, E, R>,
  maxLength: number,
  tooLong: () => E2
): Stream.Stream<string, E | E2, R> =>
  Stream.suspend(() => {
    let carry = ""
    let skipLf = false
    return text.pipe(
      Stream.mapChunksEffect((chunk) => {
        const out: Array<string> = []
        for (const piece of chunk) {
          let start = 0
          for (let i = 0; i < piece.length; i++) {
            const c = piece.charCodeAt(i)
            if (skipLf) {
              skipLf = false
              if (c === 10) {
                start = i + 1
                continue
              }
            }
            if (c === 10 || c === 13) {
              if (carry.length + i - start > maxLength) return Effect.fail(tooLong())
              out.push(carry + piece.slice(start, i))
              carry = ""
              start = i + 1
              if (c === 13) skipLf = true
            }
          }
          if (carry.length + piece.length - start > maxLength) return Effect.fail(tooLong())
          carry += piece.slice(start)
        }
        return Effect.succeed(Chunk.unsafeFromArray(out))
      }),
      Stream.concat(Stream.suspend(() => (carry === "" ? Stream.empty : Stream.make(carry))))
    )
  })

/**
 * Decodes a UTF-8 byte stream into events. An event not terminated by a blank
 * line when the stream ends is dropped, as the standard says.
 *
 * @since 0.1.0
 * @category parsers
 */
export const decode = <E, R>(
  bytes: Stream.Stream<Uint8Array, E, R>,
  options?: DecodeOptions
): Stream.Stream<Event, E | SseEventTooLargeError, R> => {
  // A line is part of an event, so the event bound bounds a line, terminated or not, too.
  const maxEventSize = options?.maxEventSize ?? DEFAULT_MAX_EVENT_SIZE
  return splitLinesBounded(
    Stream.decodeText(bytes),
    maxEventSize,
    () => new SseEventTooLargeError({ maxEventSize })
  ).pipe(fromLines(options))
}
