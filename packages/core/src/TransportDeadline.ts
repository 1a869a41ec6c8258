/**
 * `TransportDeadline`: an `HttpClient` that bounds a request, body included,
 * by a deadline it enforces itself.
 *
 * `ApiClient` bounds every attempt (request, response and body) by its
 * timeout. Over an arbitrary `HttpClient` it does that with
 * `Effect.timeoutFail`, which races the attempt in a forked fiber: that
 * costs more CPU than the rest of `ApiClient` together (BENCHMARKS.md 1b).
 * A transport that can abort its own request at a given instant is a
 * {@link DeadlineClient}: besides `execute` it has `executeBefore(request,
 * deadline)`, and `ApiClient` hands it the attempt's deadline as that
 * argument. The transport fails the request (and later its body) at that
 * instant with a {@link DeadlineExceeded}, which `ApiClient` reports as a
 * `RequestTimeoutError` with phase `total`.
 *
 * The deadline is an instant of the Effect `Clock` (`Clock.currentTimeMillis`),
 * so a transport that waits on the `Clock` is driven by `TestClock` in tests.
 *
 * `NodeTransport` (`@sluice/node`) is one. An `HttpClient` combinator
 * (`HttpClient.tapRequest`, `retryTransient`, ...) makes a new client that is
 * not: `ApiClient` then races the attempt, so what the combinator adds stays
 * bounded. {@link transform} wraps a `DeadlineClient` and keeps the deadline
 * at the transport (for what adds no wait of its own: taps, headers).
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
 * import { TransportDeadline } from "@sluice/core"
 *
 * declare const transport: TransportDeadline.DeadlineClient
 *
 * // A request (and its body) that must be done within 2 seconds:
 * const program = Effect.gen(function*() {
 *   const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
 *   const response = yield* transport.executeBefore(HttpClientRequest.get("https://api.example.com/x"), now + 2_000)
 *   return yield* response.json
 * })
 * ```
 *
 * @since 0.2.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import { hasProperty } from "effect/Predicate"

/**
 * @since 0.2.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("@sluice/core/TransportDeadline")

/**
 * @since 0.2.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * An `HttpClient` that also runs a request under a deadline it enforces.
 *
 * @since 0.2.0
 * @category models
 */
export interface DeadlineClient extends HttpClient.HttpClient {
  readonly [TypeId]: TypeId
  /**
   * `execute`, failing the request with a {@link DeadlineExceeded} (as the
   * `cause` of its `RequestError`, or of the body's `ResponseError`) at
   * `deadline`, epoch milliseconds of the Effect `Clock`: queued for a
   * socket, sending, waiting for headers or reading the body.
   *
   * It opens no span of its own (`execute` opens the platform's client
   * span): a caller that owns an attempt's deadline also owns its trace, as
   * `ApiClient` does with its span per request and per attempt, and would
   * otherwise switch the transport's span off for every request (a
   * `FiberRef` change each time).
   */
  readonly executeBefore: (
    request: HttpClientRequest.HttpClientRequest,
    deadline: number
  ) => Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>
}

/**
 * How a request is sent: with no deadline (`undefined`) or under one.
 *
 * @since 0.2.0
 * @category models
 */
export type Send = (
  request: HttpClientRequest.HttpClientRequest,
  deadline: number | undefined
) => Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>

/**
 * A {@link DeadlineClient} from the one function that sends a request with
 * or without a deadline.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (send: Send): DeadlineClient => {
  const client = HttpClient.makeWith(
    (request: Effect.Effect<HttpClientRequest.HttpClientRequest>) => Effect.flatMap(request, (r) => send(r, undefined)),
    Effect.succeed
  ) as HttpClient.HttpClient & { -readonly [K in keyof DeadlineClient]?: DeadlineClient[K] }
  client[TypeId] = TypeId
  client.executeBefore = send
  // The same as makeWith's execute (preprocess, then postprocess), without composing two effects per request.
  ;(client as { execute: HttpClient.HttpClient["execute"] }).execute = (request) => send(request, undefined)
  return client as DeadlineClient
}

/**
 * Whether `client` enforces a deadline itself.
 *
 * @since 0.2.0
 * @category guards
 */
export const isDeadlineClient = (client: HttpClient.HttpClient): client is DeadlineClient =>
  hasProperty(client, TypeId) && typeof (client as DeadlineClient).executeBefore === "function"

/**
 * Wraps how a client sends each request, keeping a {@link DeadlineClient}'s
 * deadline at its transport: `f` gets the inner client's send (which carries
 * the caller's deadline, if any) and returns the outer one. Over a client
 * that is not a `DeadlineClient` it is a plain `HttpClient` transform.
 *
 * Use it for what adds no wait of its own (taps, header changes, following
 * redirects): whatever `f` waits for is not bounded by the deadline.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
 * import { TransportDeadline } from "@sluice/core"
 *
 * declare const transport: TransportDeadline.DeadlineClient
 * const tagged = TransportDeadline.transform(transport, (send) => (request) =>
 *   send(HttpClientRequest.setHeader(request, "x-client", "sluice")))
 * ```
 *
 * @since 0.2.0
 * @category combinators
 */
export const transform: {
  (
    f: (
      send: (request: HttpClientRequest.HttpClientRequest) => Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>
    ) => (request: HttpClientRequest.HttpClientRequest) => Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>
  ): (self: HttpClient.HttpClient) => HttpClient.HttpClient
  (
    self: HttpClient.HttpClient,
    f: (
      send: (request: HttpClientRequest.HttpClientRequest) => Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>
    ) => (request: HttpClientRequest.HttpClientRequest) => Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>
  ): HttpClient.HttpClient
} = dual(2, (
  self: HttpClient.HttpClient,
  f: (
    send: (request: HttpClientRequest.HttpClientRequest) => Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>
  ) => (request: HttpClientRequest.HttpClientRequest) => Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>
): HttpClient.HttpClient => {
  if (!isDeadlineClient(self)) {
    const outer = f(self.execute)
    return HttpClient.makeWith(
      (request: Effect.Effect<HttpClientRequest.HttpClientRequest>) => Effect.flatMap(request, outer),
      Effect.succeed
    )
  }
  const free = f(self.execute)
  return make((request, deadline) =>
    deadline === undefined ? free(request) : f((r) => self.executeBefore(r, deadline))(request)
  )
})

/**
 * The reason a transport fails a request whose deadline passed. It is an
 * `Error` so that it survives as the `cause` of the platform's
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
