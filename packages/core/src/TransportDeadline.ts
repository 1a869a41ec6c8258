/**
 * `TransportDeadline`: an attempt deadline that the transport enforces
 * itself.
 *
 * `ApiClient` bounds every attempt (request, response and body) by its
 * timeout. On an arbitrary `HttpClient` it does that by racing the attempt
 * in a forked fiber, which costs more CPU than the rest of `ApiClient`
 * together (see BENCHMARKS.md 1b). A transport that can abort its
 * own request at a given instant declares so with {@link declare}; for such
 * a transport `ApiClient` only {@link attach}es the attempt's deadline to the
 * request it sends, and the transport fails the request (and its body) at
 * that instant with a {@link DeadlineExceeded}, which `ApiClient` reports as
 * a `RequestTimeoutError` with phase `total`.
 *
 * `NodeTransport` (`@sluice/node`) declares it. A client wrapped after being
 * made (e.g. with `HttpClient.retryTransient`, or `ApiClient`'s
 * `transformClient`) is a new client that declares nothing, so `ApiClient`
 * races it as before: effects around the transport stay bounded.
 *
 * @example
 * ```ts
 * import * as HttpClient from "@effect/platform/HttpClient"
 * import { TransportDeadline } from "@sluice/core"
 *
 * // A transport that reads `TransportDeadline.of(request)` when it sends and
 * // fails the request with `new TransportDeadline.DeadlineExceeded(deadline)` when it passes:
 * declare const myTransport: HttpClient.HttpClient
 * export const transport = TransportDeadline.declare(myTransport)
 * ```
 *
 * @since 0.2.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { globalValue } from "effect/GlobalValue"

/**
 * Where a request's deadline is kept: a property of its headers object, under
 * a registered symbol (so two copies of this package agree on it).
 *
 * Why on the headers, and not in a `FiberRef`: a `FiberRef` set and restored
 * around every attempt (`Effect.locally`) copies the fiber's refs twice per
 * request; with it, `ApiClient` measured 9 to 10 % over its transport at
 * concurrency 64, without it 2 to 6 % (BENCHMARKS.md 1b). Why the headers
 * object and not the request: `@effect/platform`'s adapters hand the
 * request's headers to their dispatcher and never the request itself, so a
 * transport under such an adapter (`NodeTransport`'s undici agent) can still
 * find it. Why an enumerable property and not a weak map keyed by the object:
 * the platform copies the headers (`{ ...headers }`) when it adds its trace
 * headers, and a spread copies the property along; header iteration
 * (`Object.keys`, `Object.entries`, `for … in`) never sees a symbol.
 */
const DEADLINE = Symbol.for("@sluice/core/TransportDeadline/deadline")

/**
 * A copy of `request` that must be complete, body included, by `deadline`
 * (epoch milliseconds of the live clock, as `Date.now()`). Requests derived
 * from the copy with `HttpClientRequest.setHeader(s)` keep it; the original
 * is unchanged.
 *
 * @since 0.1.0
 * @category utils
 */
export const attach = (
  request: HttpClientRequest.HttpClientRequest,
  deadline: number
): HttpClientRequest.HttpClientRequest => {
  // A headers object of its own: the original's (often shared) is never touched.
  const attached = HttpClientRequest.setHeaders(request, EMPTY)
  ;(attached.headers as unknown as Record<symbol, number>)[DEADLINE] = deadline
  return attached
}

const EMPTY: Record<string, string> = {}

/**
 * The deadline {@link attach}ed to `request`, if any.
 *
 * @since 0.1.0
 * @category utils
 */
export const of = (request: HttpClientRequest.HttpClientRequest): number | undefined => ofHeaders(request.headers)

/**
 * The deadline of the request whose headers object this is, for a transport
 * that is handed only the headers (as `@effect/platform-node`'s undici
 * adapter hands `Dispatcher.request` the request's `headers`).
 *
 * @since 0.1.0
 * @category utils
 */
export const ofHeaders = (headers: unknown): number | undefined =>
  typeof headers === "object" && headers !== null
    ? (headers as Record<symbol, number | undefined>)[DEADLINE]
    : undefined

/**
 * The abort reason a transport uses when a request's deadline passes. It is
 * an `Error` so that it survives as the `cause` of the platform's
 * `RequestError`/`ResponseError`.
 *
 * @since 0.1.0
 * @category models
 */
export class DeadlineExceeded extends Error {
  readonly _tag = "DeadlineExceeded"
  constructor(readonly deadline: number) {
    super("the request's deadline passed")
    this.name = "DeadlineExceeded"
  }
}

/**
 * Whether `u` is a {@link DeadlineExceeded}. By its tag, not `instanceof`: a
 * transport may have been built against another copy of this package.
 *
 * @since 0.1.0
 * @category guards
 */
export const isDeadlineExceeded = (u: unknown): u is DeadlineExceeded =>
  u instanceof Error && (u as { readonly _tag?: unknown })._tag === "DeadlineExceeded"

const declared = globalValue("@sluice/core/TransportDeadline/declared", () => new WeakSet<HttpClient.HttpClient>())

/**
 * Declares that `client` fails every request at its {@link attach}ed
 * deadline. Returns the same client.
 *
 * @since 0.1.0
 * @category utils
 */
export const declare = <C extends HttpClient.HttpClient>(client: C): C => {
  declared.add(client)
  return client
}

/**
 * Whether `client` itself was declared with {@link declare}.
 *
 * @since 0.1.0
 * @category guards
 */
export const isEnforcedBy = (client: HttpClient.HttpClient): boolean => declared.has(client)
