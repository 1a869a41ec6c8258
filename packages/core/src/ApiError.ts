/**
 * The typed errors an {@link ApiClient} request can fail with.
 *
 * Every failure of a request is one of these tags, so a caller can handle one
 * cause and let the rest through:
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ApiClient } from "@sluice/core"
 *
 * const program = Effect.gen(function* () {
 *   const api = yield* ApiClient.ApiClient
 *   return yield* api.get("/slots")
 * }).pipe(
 *   Effect.catchTag("HttpStatusError", (e) => e.status === 404 ? Effect.succeed([]) : Effect.fail(e))
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/**
 * How many characters of a response body an error keeps.
 *
 * @since 0.1.0
 * @category constants
 */
export const BODY_EXCERPT_LIMIT = 512

/**
 * @internal
 *
 * @since 0.1.0
 * @category utils
 */
export const excerpt = (body: string): string =>
  body.length <= BODY_EXCERPT_LIMIT ? body : `${body.slice(0, BODY_EXCERPT_LIMIT)}… (${body.length} chars)`

/**
 * The server answered with a status outside 2xx (and not 429, see
 * {@link ServerSideRateLimitError}). Carries a bounded excerpt of the body, never headers.
 *
 * @since 0.1.0
 * @category errors
 */
export class HttpStatusError extends Schema.TaggedError<HttpStatusError>("@sluice/core/HttpStatusError")(
  "HttpStatusError",
  {
    status: Schema.Number,
    method: Schema.String,
    url: Schema.String,
    body: Schema.String,
    /** `Retry-After` on a 503 (or any status that sent one). */
    retryAfter: Schema.optionalWith(Schema.OptionFromSelf(Schema.DurationFromSelf), { default: () => Option.none() })
  }
) {
  override get message(): string {
    return `${this.method} ${this.url} answered ${this.status}${this.body === "" ? "" : `: ${this.body}`}`
  }
}

/**
 * The server answered 429 Too Many Requests. `retryAfter` is the parsed
 * `Retry-After` header (delta-seconds or HTTP-date), if any.
 *
 * @since 0.1.0
 * @category errors
 */
export class ServerSideRateLimitError extends Schema.TaggedError<ServerSideRateLimitError>(
  "@sluice/core/ServerSideRateLimitError"
)("ServerSideRateLimitError", {
  method: Schema.String,
  url: Schema.String,
  retryAfter: Schema.OptionFromSelf(Schema.DurationFromSelf),
  body: Schema.String
}) {
  override get message(): string {
    return `${this.method} ${this.url} was rate limited by the server (429)${
      Option.match(this.retryAfter, {
        onNone: () => "",
        onSome: (d) => `, retry after ${Duration.format(d)}`
      })
    }`
  }
}

/**
 * Where a transport failure happened. `connect` failures prove the request
 * never reached the server, which makes even a POST safe to replay.
 *
 * @since 0.1.0
 * @category utils
 */
export const TransportPhase = Schema.Literal("connect", "request", "response")
/**
 * @since 0.1.0
 * @category models
 */
export type TransportPhase = typeof TransportPhase.Type

/**
 * The connection failed: refused, reset, DNS, TLS, or the body broke off.
 *
 * @since 0.1.0
 * @category errors
 */
export class TransportError extends Schema.TaggedError<TransportError>("@sluice/core/TransportError")(
  "TransportError",
  {
    method: Schema.String,
    url: Schema.String,
    phase: TransportPhase,
    code: Schema.optional(Schema.String),
    description: Schema.String
  }
) {
  override get message(): string {
    return `${this.method} ${this.url} failed in the ${this.phase} phase${this.code ? ` (${this.code})` : ""}: ${this.description}`
  }
}

/**
 * A request took longer than allowed. `phase` is `connect` when the connection
 * could not be established within the transport's connect timeout, `total`
 * when one attempt (connect, send, headers and body) outlived the client's
 * `timeout`, `deadline` when all attempts together, limiter waits included,
 * outlived the retry policy's `deadline`.
 *
 * @since 0.1.0
 * @category errors
 */
export class RequestTimeoutError extends Schema.TaggedError<RequestTimeoutError>(
  "@sluice/core/RequestTimeoutError"
)("RequestTimeoutError", {
  method: Schema.String,
  url: Schema.String,
  phase: Schema.Literal("connect", "total", "deadline"),
  timeout: Schema.optional(Schema.DurationFromSelf)
}) {
  override get message(): string {
    return `${this.method} ${this.url} timed out (${this.phase}${
      this.timeout ? ` after ${Duration.format(this.timeout)}` : ""
    })`
  }
}

/**
 * The response body could not be turned into the expected value: it was not
 * JSON (`reason: "Json"`) or did not match the schema (`reason: "Schema"`).
 *
 * @since 0.1.0
 * @category errors
 */
export class ResponseDecodeError extends Schema.TaggedError<ResponseDecodeError>(
  "@sluice/core/ResponseDecodeError"
)("ResponseDecodeError", {
  method: Schema.String,
  url: Schema.String,
  status: Schema.Number,
  reason: Schema.Literal("Json", "Schema"),
  issue: Schema.String,
  body: Schema.String
}) {
  override get message(): string {
    return `${this.method} ${this.url}: response body ${
      this.reason === "Json" ? "is not valid JSON" : "does not match the schema"
    }: ${this.issue}`
  }
}

/**
 * The response body is larger than `maxResponseSize` (an `ApiClient`
 * option): announced by `Content-Length` (nothing read) or counted as it
 * arrived (`received`, the bytes read when it was cut). The connection is
 * closed, never returned to the pool with a body in it.
 *
 * @since 0.1.0
 * @category errors
 */
export class ResponseTooLargeError extends Schema.TaggedError<ResponseTooLargeError>(
  "@sluice/core/ResponseTooLargeError"
)("ResponseTooLargeError", {
  method: Schema.String,
  url: Schema.String,
  status: Schema.Number,
  maxResponseSize: Schema.Number,
  contentLength: Schema.optional(Schema.Number),
  received: Schema.optional(Schema.Number)
}) {
  override get message(): string {
    return `${this.method} ${this.url}: response body ${
      this.contentLength !== undefined
        ? `of ${this.contentLength} bytes (Content-Length)`
        : `passed ${this.received ?? "?"} bytes`
    } exceeds maxResponseSize ${this.maxResponseSize}`
  }
}

/**
 * The request could not be built or encoded (bad URL, body not serialisable).
 *
 * @since 0.1.0
 * @category errors
 */
export class RequestEncodeError extends Schema.TaggedError<RequestEncodeError>("@sluice/core/RequestEncodeError")(
  "RequestEncodeError",
  {
    method: Schema.String,
    url: Schema.String,
    description: Schema.String
  }
) {
  override get message(): string {
    return `${this.method} ${this.url}: request could not be encoded: ${this.description}`
  }
}
