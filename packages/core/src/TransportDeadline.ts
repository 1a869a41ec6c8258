/**
 * `TransportDeadline`: an attempt deadline that the transport enforces
 * itself.
 *
 * `ApiClient` bounds every attempt (request, response and body) by its
 * timeout. On an arbitrary `HttpClient` it does that by racing the attempt
 * in a forked fiber, which costs more CPU than the rest of `ApiClient`
 * together (see BENCHMARKS.md 1b). A transport that can abort its
 * own request at a given instant declares so with {@link declare}; for such
 * a transport `ApiClient` only sets {@link current} around the attempt and
 * the transport aborts the request (and its body) at that instant with a
 * {@link DeadlineExceeded} reason, which `ApiClient` reports as a
 * `RequestTimeoutError` with phase `total`.
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
 * // A transport that reads the deadline when it dispatches and aborts the
 * // request with `new TransportDeadline.DeadlineExceeded(deadline)` when it passes:
 * declare const myTransport: HttpClient.HttpClient
 * export const transport = TransportDeadline.declare(myTransport)
 * ```
 *
 * @since 0.2.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"

/**
 * The instant, in epoch milliseconds of the live clock (`Date.now()`), by
 * which the request being sent must be complete, body included; `undefined`
 * when the caller set none. Set by `ApiClient` only on the live clock.
 */
export const current: FiberRef.FiberRef<number | undefined> = globalValue(
  "@sluice/core/TransportDeadline/current",
  () => FiberRef.unsafeMake<number | undefined>(undefined)
)

/**
 * The abort reason a transport uses when {@link current} passes. It is an
 * `Error` so that it survives as the `cause` of the platform's
 * `RequestError`/`ResponseError`.
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
 */
export const isDeadlineExceeded = (u: unknown): u is DeadlineExceeded =>
  u instanceof Error && (u as { readonly _tag?: unknown })._tag === "DeadlineExceeded"

/**
 * {@link current} of the fiber that is running right now, for a transport
 * that is called synchronously from its fiber (as `@effect/platform-node`'s
 * undici adapter calls `Dispatcher.request`) and has no other way to see it.
 */
export const unsafeCurrent = (): number | undefined => {
  const fiber = Fiber.getCurrentFiber()
  return fiber._tag === "Some" ? fiber.value.getFiberRef(current) : undefined
}

const declared = globalValue("@sluice/core/TransportDeadline/declared", () => new WeakSet<HttpClient.HttpClient>())

/**
 * Declares that `client` aborts every request at {@link current}. Returns
 * the same client.
 */
export const declare = <C extends HttpClient.HttpClient>(client: C): C => {
  declared.add(client)
  return client
}

/** Whether `client` itself was declared with {@link declare}. */
export const isEnforcedBy = (client: HttpClient.HttpClient): boolean => declared.has(client)
