/**
 * Following redirects without leaking credentials.
 *
 * `@effect/platform`'s `HttpClient.followRedirects` resends every header,
 * `Authorization` included, to whatever origin a `Location` names, and keeps
 * a POST a POST after a 303. This combinator follows the Fetch standard
 * instead: on a cross-origin hop it drops `Authorization`, `Cookie`,
 * `Proxy-Authorization`, any header you name (`ApiClient` names the API key
 * header and every header its `AuthProvider` sets) and any header registered
 * in `Headers.currentRedactedNames`, and a
 * 303 (or a 301/302 after POST) becomes a GET without a body.
 *
 * @example
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { Effect } from "effect"
 * import { Redirects } from "@sluice/core"
 *
 * const client = Effect.map(HttpClient.HttpClient, Redirects.follow({ maxRedirects: 5 }))
 * ```
 *
 * @since 0.1.0
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import { dual } from "effect/Function"
import { hasProperty } from "effect/Predicate"
import * as ResponseBody from "./internal/responseBody.js"
import * as TransportDeadline from "./TransportDeadline.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Hops to follow before returning the last 3xx response as it is. Default 10. */
  readonly maxRedirects?: number | undefined
  /** More header names to drop on a cross-origin hop (case-insensitive). */
  readonly sensitiveHeaders?: ReadonlyArray<string> | undefined
}

/**
 * Headers that never cross to another origin.
 *
 * @since 0.1.0
 * @category constants
 */
export const CREDENTIAL_HEADERS: ReadonlyArray<string> = ["authorization", "cookie", "proxy-authorization"]

const originOf = (url: string): string | undefined => {
  try {
    return new URL(url).origin
  } catch {
    return undefined
  }
}

/**
 * The request to send for a redirect `response` to `request`, or `undefined`
 * when the response is not a followable redirect.
 *
 * @since 0.1.0
 * @category utils
 */
export const nextRequest = (
  request: HttpClientRequest.HttpClientRequest,
  response: HttpClientResponse.HttpClientResponse,
  sensitive: ReadonlyArray<string>,
  redacted: ReadonlyArray<string | RegExp> = []
): HttpClientRequest.HttpClientRequest | undefined => {
  const status = response.status
  if (status !== 301 && status !== 302 && status !== 303 && status !== 307 && status !== 308) return undefined
  const location = response.headers["location"]
  if (location === undefined || location === "") return undefined
  let target: URL
  try {
    target = new URL(location, request.url)
  } catch {
    return undefined
  }
  if (target.protocol !== "http:" && target.protocol !== "https:") return undefined
  let headers = request.headers
  if (target.origin !== originOf(request.url)) {
    // A header registered as redacted is a secret too, whoever set it.
    headers = Headers.remove(headers, [...sensitive, ...redacted])
  }
  let method = request.method
  let body = request.body
  if (status === 303 ? method !== "HEAD" : (status === 301 || status === 302) && method === "POST") {
    method = "GET"
    body = HttpBody.empty
    headers = Headers.remove(headers, ["content-type", "content-length", "content-encoding", "content-language"])
  }
  // setUrl with a URL takes its query as the parameters: the old ones are not appended twice.
  return HttpClientRequest.make(method)(target, { headers, body })
}

/**
 * Follows up to `maxRedirects` redirects, stripping credentials across
 * origins. Over a `TransportDeadline.DeadlineClient` the result is one too:
 * every hop belongs to the same attempt and gets its deadline.
 *
 * @since 0.1.0
 * @category combinators
 */
export const follow: {
  (options?: Options): <E, R>(self: HttpClient.HttpClient.With<E, R>) => HttpClient.HttpClient.With<E, R>
  <E, R>(self: HttpClient.HttpClient.With<E, R>, options?: Options): HttpClient.HttpClient.With<E, R>
} = dual(
  (args) => hasProperty(args[0], HttpClient.TypeId),
  <E, R>(self: HttpClient.HttpClient.With<E, R>, options?: Options): HttpClient.HttpClient.With<E, R> => {
    const maxRedirects = options?.maxRedirects ?? 10
    const sensitive = [...CREDENTIAL_HEADERS, ...(options?.sensitiveHeaders ?? []).map((h) => h.toLowerCase())]
    const loop = (
      send: (request: HttpClientRequest.HttpClientRequest) => Effect.Effect<HttpClientResponse.HttpClientResponse, E, R>,
      request: HttpClientRequest.HttpClientRequest,
      hops: number
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, E, R> =>
      Effect.flatMap(send(request), (response) => {
        if (hops >= maxRedirects || response.status < 300 || response.status >= 400) return Effect.succeed(response)
        return Effect.flatMap(FiberRef.get(Headers.currentRedactedNames), (redacted) => {
          const next = nextRequest(request, response, sensitive, redacted)
          if (next === undefined) return Effect.succeed(response)
          // Drain the redirect's own body so its connection goes back to the pool (a large one closes it).
          return Effect.zipRight(ResponseBody.discard(response), loop(send, next, hops + 1))
        })
      })
    if (TransportDeadline.isDeadlineClient(self as unknown as HttpClient.HttpClient)) {
      return TransportDeadline.transform(self as unknown as HttpClient.HttpClient, (send) => (request) =>
        loop(send as never, request, 0) as never) as unknown as HttpClient.HttpClient.With<E, R>
    }
    return HttpClient.makeWith(
      (request: Effect.Effect<HttpClientRequest.HttpClientRequest, E, R>) =>
        Effect.flatMap(request, (r) => loop(self.execute, r, 0)),
      Effect.succeed
    )
  }
)
