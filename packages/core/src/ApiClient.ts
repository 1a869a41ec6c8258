/**
 * `ApiClient`: a JSON API client on `@effect/platform`'s `HttpClient`.
 *
 * Base URL, default headers, an API key header, JSON in and out (with
 * `Schema`), 204/empty bodies as no value, a total timeout, streaming POST
 * (bytes, lines, server-sent events), and every failure a tagged error.
 *
 * @example
 * ```ts
 * import { Effect, Layer, Redacted, Schema } from "effect"
 * import { ApiClient } from "@sluice/core"
 * import { NodeTransport } from "@sluice/node"
 *
 * const Slot = Schema.Struct({ id: Schema.String, at: Schema.String })
 *
 * const program = Effect.gen(function* () {
 *   const api = yield* ApiClient.ApiClient
 *   const slots = yield* api.get("/slots", { params: { date: "2026-11-22" }, schema: Schema.Array(Slot) })
 *   yield* api.post("/bookings", { body: { slot: slots[0]!.id } })
 * })
 *
 * const MainLive = ApiClient.layer({ baseUrl: "https://api.example.com", apiKey: Redacted.make("secret") }).pipe(
 *   Layer.provide(NodeTransport.layer())
 * )
 * Effect.runPromise(Effect.provide(program, MainLive))
 * ```
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as Headers from "@effect/platform/Headers"
import type { HttpMethod } from "@effect/platform/HttpMethod"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import type {
  HttpStatusError,
  RequestEncodeError,
  RequestTimeoutError,
  ResponseDecodeError,
  ResponseTooLargeError,
  ServerSideRateLimitError,
  TransportError
} from "./ApiError.js"
import type { AuthenticationError } from "./AuthProvider.js"
import { CircuitBreaker, type CircuitOpenError } from "./CircuitBreaker.js"
import { AuthProvider } from "./AuthProvider.js"
import * as internal from "./internal/apiClient.js"
import type { TokenAcquisitionTimeoutError } from "./RateLimiter.js"
import { RateLimiter } from "./RateLimiter.js"
import type { RateLimiterStoreError } from "./RateLimiterStore.js"
import { RetryPolicy } from "./Retry.js"
import type * as Sse from "./Sse.js"

/**
 * The API client service.
 *
 * @since 0.1.0
 * @category tags
 */
export class ApiClient extends Context.Tag("@sluice/core/ApiClient")<ApiClient, ApiClient.Service>() {}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace ApiClient {
  /**
   * Every error a request can fail with.
   */
  export type Error =
    | HttpStatusError
    | ServerSideRateLimitError
    | TransportError
    | RequestTimeoutError
    | ResponseDecodeError
    | ResponseTooLargeError
    | RequestEncodeError
    | AuthenticationError
    | TokenAcquisitionTimeoutError
    | RateLimiterStoreError
    | CircuitOpenError

  export interface Service {
    /**
     * The configured `HttpClient` under the JSON layer (transport, redirects,
     * `transformClient`): everything in `@effect/platform` works with it.
     */
    readonly httpClient: HttpClient.HttpClient
    /** The base URL without a trailing slash. */
    readonly baseUrl: string
    readonly request: <A = unknown, I = unknown>(
      method: HttpMethod,
      path: string,
      options?: RequestOptions<A, I>
    ) => Effect.Effect<A, Error>
    readonly get: <A = unknown, I = unknown>(path: string, options?: RequestOptions<A, I>) => Effect.Effect<A, Error>
    readonly post: <A = unknown, I = unknown>(path: string, options?: RequestOptions<A, I>) => Effect.Effect<A, Error>
    readonly put: <A = unknown, I = unknown>(path: string, options?: RequestOptions<A, I>) => Effect.Effect<A, Error>
    readonly patch: <A = unknown, I = unknown>(path: string, options?: RequestOptions<A, I>) => Effect.Effect<A, Error>
    readonly del: <A = unknown, I = unknown>(path: string, options?: RequestOptions<A, I>) => Effect.Effect<A, Error>
    /** The response body as bytes; the connection is released when the stream ends, fails or is interrupted. */
    readonly stream: (method: HttpMethod, path: string, options?: RequestOptions) => Stream.Stream<Uint8Array, Error>
    readonly postStream: (path: string, options?: RequestOptions) => Stream.Stream<Uint8Array, Error>
    /** The response body as text lines (`\n`, `\r\n` or `\r`). */
    readonly postStreamLines: (path: string, options?: RequestOptions) => Stream.Stream<string, Error>
    /** The response body as server-sent events. */
    readonly postStreamEvents: (
      path: string,
      options?: RequestOptions
    ) => Stream.Stream<Sse.Event, Error | Sse.SseEventTooLargeError>
  }
}

/**
 * Per-request options. `path` fills `{name}` placeholders of the path (the
 * template, not the filled path, names the request's span).
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestOptions<A = unknown, I = unknown> {
  /** A JSON-serialisable body. */
  readonly body?: unknown
  readonly params?: Readonly<Record<string, string | number | boolean | ReadonlyArray<string | number> | undefined>>
  readonly headers?: Headers.Input
  readonly path?: Readonly<Record<string, string | number>>
  /** Decode the JSON body with this schema; a mismatch is a `ResponseDecodeError` with `reason: "Schema"`. */
  readonly schema?: Schema.Schema<A, I, never>
  /**
   * The request's cost for a tokens rate limiter (`unit: "tokens"`), e.g. an
   * estimate of its LLM tokens: it takes that many permits. Default 1;
   * requests limiters ignore it.
   */
  readonly cost?: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `https://api.example.com/v1`; a trailing slash is ignored. */
  readonly baseUrl: string
  /** Sent with every request (`Accept: application/json` is the default). */
  readonly headers?: Headers.Input | undefined
  /** Sent in `apiKeyHeader`; the header is registered as redacted for logs and spans. */
  readonly apiKey?: Redacted.Redacted<string> | undefined
  /** Default `X-API-Key`. */
  readonly apiKeyHeader?: string | undefined
  /**
   * Bound on one attempt: waiting for a pooled socket, connect, send, headers
   * and body (for a stream, up to the headers). Default 10 seconds;
   * `Duration.infinity` for none. Over a `TransportDeadline.DeadlineClient`
   * (`NodeTransport`) the deadline is handed to the transport, which fails
   * the request there; over any other client (or a `transformClient` that
   * makes a plain one) the attempt is raced with `Effect.timeoutFail`.
   */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * Follow redirects (off by default): `true` for up to 10 hops, or a number.
   * Credentials never cross to another origin: the API key, every header the
   * `AuthProvider` sets, `Authorization`, `Cookie` and `Proxy-Authorization`
   * are dropped on a cross-origin hop.
   */
  readonly followRedirects?: boolean | number | undefined
  /**
   * A path may be an absolute URL of another origin than `baseUrl`'s (off by
   * default: such a path fails with a `RequestEncodeError` before anything is
   * sent). Even when allowed, no credential goes there: neither the API key,
   * nor the `AuthProvider`'s headers, nor a default `Authorization`.
   */
  readonly allowAbsoluteUrls?: boolean | undefined
  /**
   * Bytes a buffered (non-stream) success body may have. Default 32 MiB;
   * `Infinity` for no bound. A larger `Content-Length` fails before anything
   * is read; a body without one is counted as it arrives. Either way the
   * request fails with `ResponseTooLargeError` and the connection is closed.
   * An error answer's body is read only as far as its excerpt needs.
   */
  readonly maxResponseSize?: number | undefined
  /**
   * The escape hatch: any `HttpClient` combinator, applied under the JSON
   * layer. The attempt timeout then bounds what it adds too, by racing the
   * attempt (a forked fiber per attempt, measurably dearer: BENCHMARKS.md 1b).
   * A combinator that adds no wait of its own (taps, header changes) can keep
   * the deadline at the transport: write it with `TransportDeadline.transform`.
   */
  readonly transformClient?: ((client: HttpClient.HttpClient) => HttpClient.HttpClient) | undefined
}

/**
 * Builds the client over the `HttpClient` in context. The `AuthProvider`,
 * `RateLimiter`, `CircuitBreaker` and `RetryPolicy` found in context, if
 * any, are applied to every request: retry outermost, then the breaker (an
 * open circuit takes no permit), then the limiter, then auth, then the
 * transport. Provide their layers to the client's layer to turn them on.
 *
 * A `baseUrl` that does not parse, is not http(s), or carries
 * `user:password@` fails with `IllegalArgumentException` (use
 * `AuthProvider.layerBasic` for Basic credentials).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<ApiClient.Service, Cause.IllegalArgumentException, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const invalid = internal.invalidBaseUrl(options.baseUrl)
    if (invalid !== undefined) return yield* Effect.fail(new Cause.IllegalArgumentException(invalid))
    const client = yield* HttpClient.HttpClient
    const auth = yield* Effect.serviceOption(AuthProvider)
    const limiter = yield* Effect.serviceOption(RateLimiter)
    const retry = yield* Effect.serviceOption(RetryPolicy)
    const breaker = yield* Effect.serviceOption(CircuitBreaker)
    return internal.make(options, client, {
      auth: Option.getOrUndefined(auth),
      limiter: Option.getOrUndefined(limiter),
      retry: Option.getOrUndefined(retry),
      breaker: Option.getOrUndefined(breaker)
    })
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<ApiClient, Cause.IllegalArgumentException, HttpClient.HttpClient> =>
  Layer.effect(ApiClient, make(options))

/**
 * Reads the options from `Config`.
 *
 * @example
 * ```ts
 * import { Config } from "effect"
 * import { ApiClient } from "@sluice/core"
 *
 * ApiClient.layerConfig({
 *   baseUrl: Config.string("API_URL"),
 *   apiKey: Config.option(Config.redacted("API_KEY")).pipe(Config.map(Option.getOrUndefined))
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config.Wrap<Omit<Options, "transformClient">>,
  transformClient?: Options["transformClient"]
): Layer.Layer<ApiClient, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.effect(
    ApiClient,
    Effect.flatMap(Config.unwrap(options), (resolved) =>
      Effect.mapError(
        make({ ...resolved, transformClient }),
        (error) => ConfigError.InvalidData(["baseUrl"], error.message)
      ))
  )
