/**
 * `withTypedErrors`: any `HttpClient`'s failures and error answers as
 * Sluice's typed errors, the ones `ApiClient` fails with.
 *
 * - An answer outside 2xx fails: a 429 as `ServerSideRateLimitError` (its
 *   `Retry-After` parsed), any other as `HttpStatusError` (with a
 *   `Retry-After` when one was sent). The error carries a bounded excerpt of
 *   the body; every credential the request was sent with (`Authorization`,
 *   `Cookie`, `Proxy-Authorization`, `X-API-Key`, and `secretHeaders`) is
 *   masked in it, in every form a server echoes it. An error's `url` has no
 *   query, fragment or user info (a key in the query stays out of messages).
 * - A platform `HttpClientError` becomes a `TransportError` (with its phase),
 *   a `RequestTimeoutError` (a transport's deadline) or a
 *   `RequestEncodeError` (a request the transport would not send). Other
 *   errors (an `AuthenticationError`, a limiter's) pass unchanged.
 *
 * With it, `Retry.withRetry` can judge a plain client's failures.
 *
 * @example
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { Effect } from "effect"
 * import { AuthProvider, RateLimiter, Retry, TypedErrors } from "@sluice/core"
 *
 * const client = Effect.gen(function* () {
 *   const auth = yield* AuthProvider.AuthProvider
 *   const limiter = yield* RateLimiter.RateLimiter
 *   const retry = yield* Retry.RetryPolicy
 *   return (yield* HttpClient.HttpClient).pipe(
 *     AuthProvider.withAuth(auth),
 *     RateLimiter.limit(limiter),
 *     TypedErrors.withTypedErrors(),
 *     Retry.withRetry(retry)
 *   )
 * })
 * ```
 *
 * @since 0.4.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import { hasProperty } from "effect/Predicate"
import type {
  HttpStatusError,
  RequestEncodeError,
  RequestTimeoutError,
  ServerSideRateLimitError,
  TransportError
} from "./ApiError.js"
import { fromHttpClientError, shownUrl } from "./internal/errors.js"
import { makeResponseReader } from "./internal/responseReader.js"
import { Scrubber } from "./internal/scrub.js"
import * as Redirects from "./Redirects.js"

/**
 * @since 0.4.0
 * @category models
 */
export interface Options {
  /** More headers that carry a credential, masked in error excerpts like `Authorization`. */
  readonly secretHeaders?: ReadonlyArray<string> | undefined
}

/**
 * The errors `withTypedErrors` makes.
 *
 * @since 0.4.0
 * @category models
 */
export type Error = HttpStatusError | ServerSideRateLimitError | TransportError | RequestTimeoutError | RequestEncodeError

// The headers ApiClient masks by name too: the ones Redirects drops across origins, and the default API key header.
const CREDENTIAL_HEADERS = [...Redirects.CREDENTIAL_HEADERS, "x-api-key"]

/**
 * @since 0.4.0
 * @category combinators
 */
export const withTypedErrors: {
  (options?: Options): <E, R>(
    self: HttpClient.HttpClient.With<E, R>
  ) => HttpClient.HttpClient.With<Exclude<E, HttpClientError.HttpClientError> | Error, R>
  <E, R>(
    self: HttpClient.HttpClient.With<E, R>,
    options?: Options
  ): HttpClient.HttpClient.With<Exclude<E, HttpClientError.HttpClientError> | Error, R>
} = dual(
  (args) => hasProperty(args[0], HttpClient.TypeId),
  <E, R>(
    self: HttpClient.HttpClient.With<E, R>,
    options?: Options
  ): HttpClient.HttpClient.With<Exclude<E, HttpClientError.HttpClientError> | Error, R> => {
    const secretHeaders = [...CREDENTIAL_HEADERS, ...(options?.secretHeaders ?? []).map((h) => h.toLowerCase())]
    // transform's type keeps E; onFailure maps every HttpClientError of E.
    return HttpClient.transform(self, (effect, request) =>
      Effect.matchEffect(effect, {
        onFailure: (error) =>
          Effect.fail(
            HttpClientError.isHttpClientError(error)
              ? fromHttpClientError(error, request.method, shownUrl(request.url))
              : error as Exclude<E, HttpClientError.HttpClientError>
          ),
        onSuccess: (response) => {
          if (response.status >= 200 && response.status < 300) return Effect.succeed(response)
          // The request as sent holds the credentials an inner combinator (withAuth) added.
          const scrubber = new Scrubber()
          const sent = response.request.headers
          for (const name of secretHeaders) {
            const value = sent[name]
            if (value !== undefined) scrubber.addHeaders({ [name]: value })
          }
          const reader = makeResponseReader({ maxResponseSize: 0, timeout: Duration.infinity, scrubber })
          return reader.failStatus(response, request.method, shownUrl(request.url)) as Effect.Effect<never, Error>
        }
      })) as HttpClient.HttpClient.With<Exclude<E, HttpClientError.HttpClientError> | Error, R>
  }
)
