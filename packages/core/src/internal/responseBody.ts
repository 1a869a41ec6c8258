import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as BoundedBody from "../BoundedBody.js"

const utf8 = new TextDecoder()

/** Bytes of an error answer read for its excerpt; the rest is never read (the connection is closed). */
export const ERROR_BODY_READ_LIMIT = 64 * 1024

/** Why a body read stopped short: what `Content-Length` announced, or what had arrived. */
export interface Overflow {
  readonly contentLength?: number | undefined
  readonly received?: number | undefined
}

/**
 * The body as text, in bounded memory. A body that fits (announced by a
 * `Content-Length` no larger than `max`) is read as the platform reads it.
 * Otherwise the bytes are counted as they arrive: past `max`, the read stops
 * and the stream's end closes the connection (the platform aborts a response
 * whose stream ended early, so the socket never goes back to the pool with a
 * body in it). Then `truncate` keeps the first `max` bytes; otherwise the
 * read fails with `overflow(...)`. A `Content-Length` over `max` fails at
 * once, before anything is read.
 */
export const readText = <E>(
  response: HttpClientResponse.HttpClientResponse,
  max: number,
  truncate: boolean,
  overflow: (info: Overflow) => E
): Effect.Effect<string, E | HttpClientError.ResponseError> => {
  const header = response.headers["content-length"]
  if (header !== undefined) {
    const length = Number(header)
    if (Number.isFinite(length) && length <= max) return response.text
    if (Number.isFinite(length) && !truncate) {
      return Effect.zipRight(close(response), Effect.fail(overflow({ contentLength: length })))
    }
  } else if (max === Number.POSITIVE_INFINITY) {
    return response.text
  }
  if (BoundedBody.isBoundedBody(response)) {
    // The transport counts the bytes itself (NodeTransport): no stream per read.
    return Effect.flatMap(response[BoundedBody.TypeId](max), ({ bytes }) => {
      if (bytes.length <= max) return Effect.succeed(utf8.decode(bytes))
      return truncate ? Effect.succeed(utf8.decode(bytes.subarray(0, max))) : Effect.fail(overflow({ received: bytes.length }))
    })
  }
  return Effect.suspend(() => {
    const decoder = new TextDecoder()
    let text = ""
    let over = false
    return Effect.flatMap(
      Stream.runFoldWhile(response.stream, 0, () => !over, (received, chunk) => {
        const total = received + chunk.length
        if (total > max) {
          over = true
          if (truncate) text += decoder.decode(chunk.subarray(0, max - received), { stream: true })
        } else {
          text += decoder.decode(chunk, { stream: true })
        }
        return total
      }),
      (received) =>
        over && !truncate ? Effect.fail(overflow({ received })) : Effect.succeed(text + decoder.decode())
    )
  })
}

/**
 * Reads and drops at most `max` bytes of a body (so a small body leaves its
 * connection reusable), and closes the connection if there is more.
 */
export const discard = (
  response: HttpClientResponse.HttpClientResponse,
  max: number = ERROR_BODY_READ_LIMIT
): Effect.Effect<void> => {
  const header = response.headers["content-length"]
  if (header !== undefined && Number(header) <= max) return Effect.ignore(response.arrayBuffer)
  if (BoundedBody.isBoundedBody(response)) return Effect.ignore(response[BoundedBody.TypeId](max))
  let received = 0
  return Effect.ignore(Stream.runFoldWhile(response.stream, 0, () => received <= max, (n, chunk) => {
    received = n + chunk.length
    return received
  }))
}

/** Closes the connection without reading the body: its stream ends after the first chunk. */
const close = (response: HttpClientResponse.HttpClientResponse): Effect.Effect<void> =>
  Effect.ignore(Stream.runDrain(Stream.take(response.stream, 1)))
