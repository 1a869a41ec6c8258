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
 * The client is written on the agent's `dispatch` (not through
 * `@effect/platform-node`'s adapter, which cost about five times raw undici's
 * CPU per request: BENCHMARKS.md, scenario 1), with the platform's spans
 * (headers on them only with `spanHeaders`) and trace propagation. It is a
 * `TransportDeadline.DeadlineClient`: `ApiClient` hands it each attempt's
 * deadline, and it fails the request there (queued
 * for a socket, in flight or mid-body) instead of `ApiClient` racing every
 * attempt in a forked fiber. Deadlines are kept on the Effect `Clock` of the
 * scope the client is made in, so `TestClock` drives them in tests.
 * Redirects are left to `Redirects.follow`.
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
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { TransportDeadline } from "@sluice/core"
import { Agent } from "undici"
import * as Deadlines from "./internal/deadlines.js"
import * as UndiciClient from "./internal/undiciClient.js"

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
  /**
   * Record each request's and response's headers on its span
   * (`http.request.header.<name>`, `http.response.header.<name>`, as the
   * platform's client does; a name in `Headers.currentRedactedNames` as
   * `<redacted>`). Default `false`: OpenTelemetry's HTTP conventions make
   * header attributes opt-in, a secret in a header nobody registered as
   * redacted would reach every span exporter, and they were half of what a
   * span cost per request (BENCHMARKS.md, above scenario 1).
   */
  readonly spanHeaders?: boolean | undefined
}

/**
 * A keep-alive undici `Agent`, destroyed when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeAgent = (options?: Options): Effect.Effect<Agent, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() =>
      new Agent({
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
 * An `HttpClient` over a scoped agent, enforcing deadlines
 * (`TransportDeadline.DeadlineClient`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<TransportDeadline.DeadlineClient, never, Scope.Scope> =>
  Effect.zipWith(
    makeAgent(options),
    Deadlines.make,
    (agent, deadlines) => UndiciClient.make(agent, deadlines, { spanHeaders: options?.spanHeaders === true })
  )

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
