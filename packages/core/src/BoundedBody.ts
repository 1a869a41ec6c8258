/**
 * `BoundedBody`: a response that reads its own body up to a limit.
 *
 * `ApiClient` reads every body within a limit: `maxResponseSize` for a
 * success, the first 64 KiB of an error answer for its excerpt. A body whose
 * `Content-Length` fits is read whole. Any other (a chunked body, or one
 * announced too large for an excerpt) has its bytes counted as they arrive,
 * and over an arbitrary response that means its `stream`, which costs
 * several times a whole read. A response that can count its own bytes, and
 * stop and close its connection past the limit, is a {@link BoundedBody};
 * `NodeTransport`'s responses are.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
 * import { BoundedBody } from "@sluice/core"
 *
 * declare const response: HttpClientResponse.HttpClientResponse
 *
 * // At most 1 MiB of the body, whatever its Content-Length says:
 * const head = BoundedBody.isBoundedBody(response)
 *   ? Effect.map(response[BoundedBody.TypeId](1024 * 1024), ({ bytes }) => bytes.subarray(0, 1024 * 1024))
 *   : Effect.map(response.arrayBuffer, (buffer) => new Uint8Array(buffer))
 * ```
 *
 * @since 0.2.0
 */
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as Effect from "effect/Effect"
import { hasProperty } from "effect/Predicate"

/**
 * @since 0.2.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("@sluice/core/BoundedBody")

/**
 * @since 0.2.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * What a bounded read got.
 *
 * @since 0.2.0
 * @category models
 */
export interface Read {
  /**
   * The whole body when it is at most the limit; otherwise what had arrived
   * when it went past the limit (more than the limit, not necessarily all
   * of it), and the connection is closed: the rest is never read.
   */
  readonly bytes: Uint8Array
}

/**
 * A response that reads its body until it ends or until more than `max`
 * bytes have arrived, whichever comes first.
 *
 * @since 0.2.0
 * @category models
 */
export interface BoundedBody {
  readonly [TypeId]: (max: number) => Effect.Effect<Read, HttpClientError.ResponseError>
}

/**
 * Whether a response reads its body within a limit itself.
 *
 * @since 0.2.0
 * @category guards
 */
export const isBoundedBody = (u: unknown): u is BoundedBody => hasProperty(u, TypeId)
