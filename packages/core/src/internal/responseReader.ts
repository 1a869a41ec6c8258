/**
 * What a response becomes: a success's body read within `maxResponseSize`
 * and decoded (JSON, then the schema; 204, 205 and HEAD as no value), or an
 * error answer's typed error (`ServerSideRateLimitError` for a 429,
 * `HttpStatusError` otherwise) with an excerpt of its body, every secret the
 * client holds masked.
 */
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import type * as ApiClient from "../ApiClient.js"
import { excerpt, HttpStatusError, ResponseDecodeError, ResponseTooLargeError, ServerSideRateLimitError } from "../ApiError.js"
import * as RetryAfter from "../RetryAfter.js"
import { fromHttpClientError } from "./errors.js"
import * as ResponseBody from "./responseBody.js"
import type { Scrubber } from "./scrub.js"

/** A schema's decoder, or none for the JSON as it is. */
export type Decoder<A> = (u: unknown) => Effect.Effect<A, ParseResult.ParseError>

export const makeResponseReader = (options: {
  readonly maxResponseSize: number
  readonly timeout: Duration.Duration
  readonly scrubber: Scrubber
}) => {
  const { maxResponseSize, scrubber, timeout } = options
  /** An excerpt of what a server said, with every secret the client holds masked. */
  const bodyExcerpt = (text: string) =>
    excerpt(scrubber.scrub(text.length > ResponseBody.ERROR_BODY_READ_LIMIT ? text.slice(0, ResponseBody.ERROR_BODY_READ_LIMIT) : text))

  /** A success's body: at most `maxResponseSize` bytes, or a `ResponseTooLargeError`. */
  const readBody = (
    response: HttpClientResponse.HttpClientResponse,
    method: string,
    url: string
  ): Effect.Effect<string, ApiClient.ApiClient.Error> =>
    Effect.mapError(
      ResponseBody.readText(response, maxResponseSize, false, (overflow) =>
        new ResponseTooLargeError({ method, url, status: response.status, maxResponseSize, ...overflow })),
      (error) => error._tag === "ResponseError" ? fromHttpClientError(error, method, url, timeout) : error
    )

  /** An error answer's body, for its excerpt: the first bytes only, whatever its size. */
  const readErrorBody = (
    response: HttpClientResponse.HttpClientResponse,
    method: string,
    url: string
  ): Effect.Effect<string, ApiClient.ApiClient.Error> =>
    Effect.mapError(
      ResponseBody.readText(response, ResponseBody.ERROR_BODY_READ_LIMIT, true, () => undefined as never),
      (error: HttpClientError.ResponseError) => fromHttpClientError(error, method, url, timeout)
    )

  const failStatus = (
    response: HttpClientResponse.HttpClientResponse,
    method: string,
    url: string
  ): Effect.Effect<never, ApiClient.ApiClient.Error> =>
    Effect.flatMap(readErrorBody(response, method, url), (text): Effect.Effect<never, ApiClient.ApiClient.Error> => {
      if (response.status === 429) {
        return Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.fail(
            new ServerSideRateLimitError({
              method,
              url,
              retryAfter: RetryAfter.parse(response.headers["retry-after"], now),
              body: bodyExcerpt(text)
            })
          ))
      }
      const retryAfter = response.headers["retry-after"]
      if (retryAfter === undefined) {
        return Effect.fail(new HttpStatusError({ status: response.status, method, url, body: bodyExcerpt(text) }))
      }
      return Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.fail(
          new HttpStatusError({
            status: response.status,
            method,
            url,
            body: bodyExcerpt(text),
            retryAfter: RetryAfter.parse(retryAfter, now)
          })
        ))
    })

  const decodeBody = <A>(
    response: HttpClientResponse.HttpClientResponse,
    method: string,
    url: string,
    decode: Decoder<A> | undefined
  ): Effect.Effect<A, ApiClient.ApiClient.Error> => {
    const status = response.status
    const parse = (text: string): Effect.Effect<A, ResponseDecodeError> => {
      let json: unknown = undefined
      if (text !== "") {
        try {
          json = JSON.parse(text)
        } catch (cause) {
          return Effect.fail(
            new ResponseDecodeError({
              method,
              url,
              status,
              reason: "Json",
              issue: scrubber.scrub(cause instanceof Error ? cause.message : String(cause)),
              body: bodyExcerpt(text)
            })
          )
        }
      }
      if (decode === undefined) return Effect.succeed(json as A)
      return Effect.mapError(decode(json), (error) =>
        new ResponseDecodeError({
          method,
          url,
          status,
          reason: "Schema",
          issue: scrubber.scrub(ParseResult.TreeFormatter.formatErrorSync(error)),
          body: bodyExcerpt(text)
        }))
    }
    if (status === 204 || status === 205 || method === "HEAD") {
      // No body by definition: drop whatever the connection holds and decode "no value".
      return Effect.zipRight(Effect.ignore(response.arrayBuffer), parse(""))
    }
    return Effect.flatMap(readBody(response, method, url), parse)
  }

  return { decodeBody, failStatus }
}
