/**
 * `TestServer`: a real HTTP server on loopback that misbehaves the way real
 * APIs do, for testing API clients.
 *
 * Each route serves a script of replies in order, then a default: any status,
 * headers and JSON, a delay before headers, a slow chunked body, a `429` with
 * `Retry-After` in seconds or in any HTTP-date form, redirects, and faults at
 * the socket level (a reset before or after the headers, a truncated body,
 * malformed JSON, an endless body, a request that never gets an answer).
 * A route can hide a capacity (token bucket or fixed window) and answer 429
 * when it is exceeded; the capacity can be changed while running. An OAuth2
 * client-credentials token endpoint issues tokens that routes can require.
 *
 * The server reads time from the Effect `Clock` it was built with, so under
 * `TestClock` its delays, token lifetimes and quotas follow the test clock.
 *
 * @example
 * ```ts
 * import { it, expect } from "@effect/vitest"
 * import { Effect } from "effect"
 * import { TestServer } from "@sluice/testing"
 *
 * it.scoped("retries after a 429", () =>
 *   Effect.gen(function* () {
 *     const server = yield* TestServer.make({
 *       routes: [{ path: "/v1/items", script: [TestServer.tooManyRequests({ retryAfter: 1 })], then: { json: [] } }]
 *     })
 *     // point your client at server.url, then:
 *     expect((yield* server.stats).requests["/v1/items"]).toBe(2)
 *   }))
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/server.js"

/**
 * What a route answers to one request.
 *
 * @since 0.1.0
 * @category models
 */
export interface Reply {
  /** Default 200 (302 with `redirect`, 429 with `retryAfter`). */
  readonly status?: number | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** A JSON body. */
  readonly json?: unknown
  /** A raw body (ignored when `json` is set). */
  readonly body?: string | undefined
  /** Send the body in these pieces (chunked), `chunkDelay` apart. */
  readonly chunks?: ReadonlyArray<string> | undefined
  readonly chunkDelay?: Duration.DurationInput | undefined
  /** Wait this long before sending the headers. */
  readonly delay?: Duration.DurationInput | undefined
  /** Sets `Retry-After`: seconds, or a time (epoch ms) written as an HTTP-date in the given form. */
  readonly retryAfter?: number | RetryAfterDate | undefined
  /** Answer a redirect to this URL. */
  readonly redirect?: string | undefined
  /**
   * Answer with the request echoed as JSON: method, path, query, headers,
   * body; secrets masked, or, with `"unmasked"`, exactly as received (a
   * careless server that echoes credentials into its answer; the log still
   * masks them).
   */
  readonly echo?: boolean | "unmasked" | undefined
  /** A fault instead of (or in the middle of) a normal answer. */
  readonly fault?: Fault | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RetryAfterDate {
  readonly at: number
  readonly format?: "imf-fixdate" | "rfc850" | "asctime" | undefined
}

/**
 * @since 0.1.0
 * @category utils
 */
export const Fault = Schema.Literal(
  /** The connection is reset (TCP RST) before any byte of the response. */
  "reset-before-headers",
  /** Headers and part of the body are sent, then the connection is reset. */
  "reset-after-headers",
  /** `Content-Length` promises more than is sent; the connection is then closed (FIN). */
  "truncated-body",
  /** 200, `application/json`, and a body that is not JSON. */
  "malformed-json",
  /** A chunked body that never ends (one chunk per `chunkDelay`, default 100 ms). */
  "endless-body",
  /** A chunked body that is one line that never ends: `data: ` then 64 KiB of `x` per `chunkDelay`. */
  "endless-line",
  /** `Content-Length: 2147483648` (2 GiB), then 64 KiB of `x` per `chunkDelay` until the client gives up. */
  "huge-body",
  /** The request is read and never answered. */
  "hang"
)
/**
 * @since 0.1.0
 * @category models
 */
export type Fault = typeof Fault.Type

/**
 * A quota the server enforces without telling the client what it is.
 *
 * @since 0.1.0
 * @category models
 */
export interface Capacity {
  /**
   * `token-bucket` (default) refills continuously; `fixed-window` admits
   * `burst` (default `rate × window`) per `window`; `sliding-window` admits at
   * most that many in any `window` (a sliding log).
   */
  readonly algorithm?: "token-bucket" | "fixed-window" | "sliding-window" | undefined
  /** Requests per second. */
  readonly rate: number
  /** Bucket size (default: one second's worth, at least 1) or, for a window, its size in requests. */
  readonly burst?: number | undefined
  /** The window's length. Default 1 second. */
  readonly window?: Duration.DurationInput | undefined
  /**
   * When a fixed window starts: on the server's clock every `window`
   * (`clock`, default), or at the first request after the last window ended
   * (`first-request`, as express-rate-limit and @fastify/rate-limit do).
   */
  readonly windowStart?: "clock" | "first-request" | undefined
  /**
   * The 429's `Retry-After`: whole seconds until a request would be admitted,
   * rounded up (`seconds`, default), the same as an HTTP-date (`http-date`),
   * or none at all (`none`: a bare 429).
   */
  readonly retryAfter?: "seconds" | "http-date" | "none" | undefined
  /**
   * Quota headers with every answer: draft-6 `RateLimit-*` (`ietf`),
   * `X-RateLimit-*` with delta seconds (`x`) or epoch seconds (`x-epoch`),
   * draft-7's combined `RateLimit` (`draft-7`), the structured draft-8+
   * fields (`draft-8`), OpenAI's (`openai`) or Anthropic's (`anthropic`).
   * Resets are rounded up to whole seconds, as the middlewares do.
   */
  readonly headers?: "ietf" | "x" | "x-epoch" | "draft-7" | "draft-8" | "openai" | "anthropic" | undefined
}

/**
 * Latency that grows with the requests in flight: `base + perInFlight × inFlight`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Latency {
  readonly base?: Duration.DurationInput | undefined
  readonly perInFlight?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Route {
  /** `GET`, `POST`, … or `*` (the default). */
  readonly method?: string | undefined
  /** An exact path, or a prefix ending in `*`. */
  readonly path: string
  /** Replies served one per request, in order. */
  readonly script?: ReadonlyArray<Reply> | undefined
  /** The reply once the script is used up. Default `{ echo: true }`. */
  readonly then?: Reply | undefined
  readonly capacity?: Capacity | undefined
  readonly latency?: Latency | undefined
  /** Require `Authorization: Bearer <token>` with a live token from the OAuth endpoint (401 otherwise). */
  readonly requireAuth?: boolean | undefined
  /** Answer this share of requests (0-1) with `reply` instead, drawn from a seeded generator. */
  readonly randomFaults?: { readonly probability: number; readonly reply: Reply; readonly seed?: number | undefined } | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface OAuth {
  /** Default `/oauth/token`. */
  readonly path?: string | undefined
  readonly clientId: string
  readonly clientSecret: string
  /** Lifetime of issued tokens. Default 1 hour. */
  readonly tokenLifetime?: Duration.DurationInput | undefined
  /** Leave `expires_in` out of token responses. */
  readonly omitExpiresIn?: boolean | undefined
  /** Replies the token endpoint serves before it issues tokens (failures to inject). */
  readonly script?: ReadonlyArray<Reply> | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Default 0: a free port. */
  readonly port?: number | undefined
  /** Default `127.0.0.1`. */
  readonly host?: string | undefined
  readonly routes?: ReadonlyArray<Route> | undefined
  readonly oauth?: OAuth | undefined
  /**
   * More header names to mask in the request log. Masked always: `authorization`,
   * `proxy-authorization`, `cookie`, `x-api-key`, `api-key`, `api-token`, `x-api-token`,
   * `x-auth-token`, `private-token`; in the query, `access_token`, `api_key`, `apikey`,
   * `key`, `token` and `client_secret`.
   */
  readonly secretHeaders?: ReadonlyArray<string> | undefined
  /** Requests the log keeps (the oldest go first); counters count them all. Default 10,000. */
  readonly logLimit?: number | undefined
}

/**
 * One request as the server saw it. Secrets in headers, the query and token-request bodies are masked.
 *
 * @since 0.1.0
 * @category models
 */
export interface LoggedRequest {
  readonly id: number
  readonly method: string
  readonly path: string
  readonly query: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
  readonly at: number
  readonly connectionId: number
  readonly status: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  readonly requests: Readonly<Record<string, number>>
  /** Answers sent, by status code. */
  readonly statuses: Readonly<Record<number, number>>
  readonly total: number
  readonly tooManyRequests: number
  readonly tokenRequests: number
  readonly tokensIssued: number
  readonly connectionsOpened: number
  readonly connectionsOpen: number
  /** Requests whose client went away (closed or reset the connection) before the answer was complete. */
  readonly abandoned: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TestServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  readonly port: number
  readonly log: Effect.Effect<ReadonlyArray<LoggedRequest>>
  readonly stats: Effect.Effect<Stats>
  /** Completes once `n` requests (in total) have arrived. Needs no clock. */
  readonly awaitRequests: (n: number) => Effect.Effect<void>
  /** Replace a capacity route's quota while running (step down, step up). */
  readonly setCapacity: (path: string, capacity: Capacity) => Effect.Effect<void, TestServerConfigError>
  /**
   * Every later request to the route (after its script) gets `reply` instead
   * of the route's `then`, until set again; `undefined` restores `then`. A
   * 503 storm, then healed: `setReply(path, { status: 503 })`, later
   * `setReply(path, undefined)`.
   */
  readonly setReply: (path: string, reply: Reply | undefined) => Effect.Effect<void, TestServerConfigError>
  /** Append replies to a route's script (the OAuth endpoint included, by its path). */
  readonly enqueue: (path: string, replies: ReadonlyArray<Reply>) => Effect.Effect<void, TestServerConfigError>
  /** Every token issued so far stops being accepted. */
  readonly revokeTokens: Effect.Effect<void>
  /** Clears the log and the counters. */
  readonly resetStats: Effect.Effect<void>
}

/**
 * The configuration cannot be served: the message says which part and why.
 *
 * @since 0.1.0
 * @category errors
 */
export class TestServerConfigError extends Schema.TaggedError<TestServerConfigError>(
  "@sluice/testing/TestServerConfigError"
)("TestServerConfigError", { message: Schema.String }) {}

/**
 * @since 0.1.0
 * @category tags
 */
export class TestServerTag extends Context.Tag("@sluice/testing/TestServer")<TestServerTag, TestServer>() {}

/**
 * Starts a server for the life of the scope; every socket is closed with it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<TestServer, TestServerConfigError, Scope.Scope> =
  internal.make

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<TestServerTag, TestServerConfigError> =>
  Layer.scoped(TestServerTag, make(options))

/**
 * A 429 reply with `Retry-After`.
 *
 * @since 0.1.0
 * @category utils
 */
export const tooManyRequests = (options?: {
  readonly retryAfter?: number | RetryAfterDate | undefined
  readonly json?: unknown
}): Reply => ({
  status: 429,
  retryAfter: options?.retryAfter,
  json: options?.json ?? { error: "rate_limited" }
})

/**
 * A reply of this status with a small JSON error body.
 *
 * @since 0.1.0
 * @category utils
 */
export const status = (code: number, json?: unknown): Reply => ({ status: code, json: json ?? { status: code } })

/**
 * @since 0.1.0
 * @category utils
 */
export const fault = (kind: Fault, options?: { readonly chunkDelay?: Duration.DurationInput }): Reply => ({
  fault: kind,
  chunkDelay: options?.chunkDelay
})

/**
 * A listener that accepts TCP connections and never sends a byte: over TLS
 * (`https://`) a client's connect never completes (its connect timeout
 * fires); over plain HTTP the request is never answered.
 *
 * @since 0.1.0
 * @category utils
 */
export const blackhole: Effect.Effect<{ readonly port: number; readonly url: string }, never, Scope.Scope> =
  internal.blackhole

/**
 * A loopback port with nothing listening: connecting to it is refused at once.
 *
 * @since 0.1.0
 * @category utils
 */
export const closedPort: Effect.Effect<number> = internal.closedPort
