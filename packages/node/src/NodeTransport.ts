/**
 * `NodeTransport`: the `HttpClient` Sluice runs on in Node, over one scoped,
 * keep-alive undici `Agent`.
 *
 * `NodeHttpClient.layer` from `@effect/platform-node` uses `node:http` with
 * an agent that, on Node 20, opens a new TCP connection per request; its
 * `layerUndici` uses an `Agent` with no connect timeout. This layer owns an
 * `Agent` with keep-alive, a connect timeout (default 5 s) and pool options,
 * and destroys it when the layer's scope closes: in-flight requests are
 * aborted and every socket is closed.
 *
 * The request/response adapter is `@effect/platform-node`'s undici client
 * (`NodeHttpClient.makeUndici`); only the dispatcher is ours. It enforces
 * `TransportDeadline` (declared on the client): `ApiClient` leaves its
 * attempt timeout to the agent, which fails the request at the deadline
 * (queued for a socket, in flight or mid-body) instead of racing every
 * attempt in a forked fiber.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { ApiClient } from "@sluice/core"
 * import { NodeTransport } from "@sluice/node"
 *
 * const Live = ApiClient.layer({ baseUrl: "https://api.example.com" }).pipe(
 *   Layer.provide(NodeTransport.layer({ connectTimeout: "2 seconds", connections: 64 }))
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { TransportDeadline } from "@sluice/core"
import { Agent, type Dispatcher } from "undici"
import { DeadlineHandler } from "./internal/deadlineHandler.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Bound on TCP connect plus TLS handshake. Default 5 seconds. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** How long an idle keep-alive socket is kept. Default 4 seconds (undici's). */
  readonly keepAliveTimeout?: Duration.DurationInput | undefined
  /** Sockets per origin; `undefined` means no limit (undici's default). */
  readonly connections?: number | undefined
  /** Requests pipelined per socket. Default 1 (no pipelining). */
  readonly pipelining?: number | undefined
  /** Accept self-signed TLS certificates: for tests against local servers only. */
  readonly rejectUnauthorized?: boolean | undefined
}

/**
 * An `Agent` whose requests fail at their `TransportDeadline`.
 * `@effect/platform-node`'s undici client hands `request` (which dispatches)
 * the request's own headers object, which is what the deadline was attached
 * to; the request's handler is wrapped for it.
 */
class DeadlineAgent extends Agent {
  override dispatch(options: Agent.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const deadline = TransportDeadline.ofHeaders(options.headers)
    // Only undici's own handler protocol (what `request` uses) is wrapped.
    return super.dispatch(
      options,
      deadline === undefined || handler.onRequestStart !== undefined ? handler : new DeadlineHandler(handler, deadline)
    )
  }
}

/**
 * A keep-alive undici `Agent`, destroyed when the scope closes. Its
 * requests fail at their `TransportDeadline`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeAgent = (options?: Options): Effect.Effect<Agent, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() =>
      new DeadlineAgent({
        connect: {
          timeout: Duration.toMillis(Duration.decode(options?.connectTimeout ?? Duration.seconds(5))),
          ...(options?.rejectUnauthorized === false ? { rejectUnauthorized: false } : {})
        },
        keepAliveTimeout: Duration.toMillis(Duration.decode(options?.keepAliveTimeout ?? Duration.seconds(4))),
        pipelining: options?.pipelining ?? 1,
        ...(options?.connections !== undefined ? { connections: options.connections } : {})
      })
    ),
    // destroy, not close: close would wait for in-flight requests; a closing scope aborts them.
    (agent) => Effect.promise(() => agent.destroy())
  )

/**
 * An `HttpClient` over a scoped agent.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<HttpClient.HttpClient, never, Scope.Scope> =>
  Effect.map(makeAgent(options), (agent) => TransportDeadline.declare(NodeHttpClient.makeUndici(agent)))

/**
 * Provides `HttpClient`. The client is used as made: no per-request context
 * merge (what `HttpClient.layerMergedContext` would add to every request).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<HttpClient.HttpClient> =>
  Layer.scoped(HttpClient.HttpClient, make(options))

/**
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config.Wrap<Options>
): Layer.Layer<HttpClient.HttpClient, ConfigError.ConfigError> =>
  Layer.scoped(HttpClient.HttpClient, Effect.flatMap(Config.unwrap(options), make))
