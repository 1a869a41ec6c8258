/**
 * `RateLimiter`: client-side rate limiting as a Layer.
 *
 * - **Token bucket** (`layerTokenBucket`): `limit` per `window`, a burst
 *   (default: one second's worth), waiters served in arrival order, and a
 *   `maxWait` after which (or, when the queue already makes the wait longer,
 *   at once) acquisition fails with `TokenAcquisitionTimeoutError`.
 * - **Adaptive** (`layerAdaptive`): starts at `limit` per `window` and learns
 *   the server's real capacity: the rate it accepted around each 429, held
 *   just under and probed rarely; `Retry-After` pauses every caller (at most
 *   `maxPause`); quota headers in every form (`RateLimitHeaders`) pace it
 *   before any 429. The algorithm: `internal/adaptive.ts`.
 * - **Cost-weighted permits** (`unit: "tokens"`): a request takes its `cost`
 *   (e.g. its LLM tokens), in arrival order; `all` / `layerAll` hold a
 *   requests and a tokens quota together.
 * - An optional **concurrency cap** (in-flight limit) on either.
 *
 * State lives in a `RateLimiterStore` (memory here, Redis in `@sluice/redis`).
 * `ApiClient` applies the limiter found in its context to every attempt, and
 * `RateLimiter.limit` applies it to any `HttpClient`.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { ApiClient, RateLimiter, RateLimiterStore } from "@sluice/core"
 *
 * const Limiter = RateLimiter.layerAdaptive({ ...RateLimiter.presets.balanced, window: "1 minute" }).pipe(
 *   Layer.provide(RateLimiterStore.layerMemory)
 * )
 * const Api = ApiClient.layer({ baseUrl: "https://api.example.com" }).pipe(Layer.provide(Limiter))
 * ```
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { hasProperty } from "effect/Predicate"
import { dual } from "effect/Function"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as internal from "./internal/rateLimiter.js"
import type { RateLimiterStore, RateLimiterStoreError } from "./RateLimiterStore.js"

/**
 * No permit could be had within `maxWait`. `waited` is how long this caller
 * waited before giving up: zero when the queue ahead already made the wait
 * longer than `maxWait`.
 *
 * @since 0.1.0
 * @category errors
 */
export class TokenAcquisitionTimeoutError extends Schema.TaggedError<TokenAcquisitionTimeoutError>(
  "@sluice/core/TokenAcquisitionTimeoutError"
)("TokenAcquisitionTimeoutError", {
  waited: Schema.DurationFromSelf,
  maxWait: Schema.DurationFromSelf,
  key: Schema.String
}) {
  override get message(): string {
    return `no rate-limit permit for "${this.key}" within ${internal.formatMillis(this.maxWait)} (waited ${
      internal.formatMillis(this.waited)
    })`
  }
}

/**
 * What an attempt told the limiter. 5xx and transport failures are `Neutral`: neither penalty nor recovery.
 *
 * @since 0.1.0
 * @category models
 */
export type Outcome =
  | { readonly _tag: "Success"; readonly headers: Readonly<Record<string, string>> }
  | {
    readonly _tag: "RateLimited"
    readonly retryAfter: Option.Option<Duration.Duration>
    readonly headers: Readonly<Record<string, string>>
  }
  | { readonly _tag: "Neutral" }

/**
 * A granted permit, to report the outcome against.
 *
 * @since 0.1.0
 * @category models
 */
export interface Permit {
  /** The adaptive epoch the permit was granted in. */
  readonly epoch: number
  /** Store time the permit was granted at (its slot, plus the pauses it waited out). */
  readonly sentAt?: number | undefined
  /** Permits it took (a request's cost, for a tokens limiter); a missing weight is one. */
  readonly weight?: number | undefined
  /** The permits of each limiter, for limiters combined with `all`. */
  readonly parts?: ReadonlyArray<Permit> | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The key the limiter's state is stored under. */
  readonly key: string
  /** What one permit is: a request, or one unit of a request's cost (e.g. an LLM token). */
  readonly unit: "requests" | "tokens"
  /** Whether a request goes through this limiter (default: every request). */
  readonly appliesTo: (request: HttpClientRequest.HttpClientRequest) => boolean
  readonly acquire: Effect.Effect<Permit, TokenAcquisitionTimeoutError | RateLimiterStoreError>
  /**
   * `weight` permits at once, in arrival order: a heavy request waits until
   * the bucket has refilled that much; lighter ones behind it do not overtake it.
   */
  readonly acquireWeighted: (weight: number) => Effect.Effect<Permit, TokenAcquisitionTimeoutError | RateLimiterStoreError>
  readonly report: (permit: Permit, outcome: Outcome) => Effect.Effect<void>
  /**
   * Runs `effect` under a permit (and a concurrency slot, when capped),
   * reporting its outcome as `classify` says. `cost` is the request's cost
   * (e.g. an estimate of its LLM tokens): a tokens limiter takes that many
   * permits, a requests limiter one.
   */
  readonly run: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    classify: (exit: Exit.Exit<A, E>) => Outcome,
    cost?: number
  ) => Effect.Effect<A, E | TokenAcquisitionTimeoutError | RateLimiterStoreError, R>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class RateLimiter extends Context.Tag("@sluice/core/RateLimiter")<RateLimiter, Service>() {}

/**
 * @since 0.1.0
 * @category models
 */
export interface CommonOptions {
  /** Permits per `window` (the adaptive limiter's maximum). */
  readonly limit: number
  readonly window: Duration.DurationInput
  /** Give up after waiting this long. Default 45 seconds; `Infinity` waits forever. */
  readonly maxWait?: Duration.DurationInput | undefined
  /** At most this many requests in flight at once. Default: no cap. */
  readonly concurrency?: number | undefined
  /** Which requests take a permit. Default: all. `postOnly` reproduces stkai. */
  readonly appliesTo?: ((request: HttpClientRequest.HttpClientRequest) => boolean) | undefined
  /** Store key. Default `"sluice"`; limiters sharing a key (and a store) share a quota. */
  readonly key?: string | undefined
  /**
   * What one permit is. `"requests"` (the default): each request takes one.
   * `"tokens"`: each request takes its `cost` (`ApiClient`'s `cost` option,
   * e.g. an estimate of its LLM tokens; one when not given), and an adaptive
   * limiter learns from the servers' token quota headers (OpenAI's
   * `x-ratelimit-*-tokens`, Anthropic's `anthropic-ratelimit-tokens-*`).
   * Combine one of each with `all` to hold a requests-per-minute and a
   * tokens-per-minute quota together.
   */
  readonly unit?: "requests" | "tokens" | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TokenBucketOptions extends CommonOptions {
  /** Permits a full bucket allows at once. Default one second's worth of refill (at least 1). */
  readonly burst?: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface AdaptiveOptions extends CommonOptions {
  /** The rate never goes below `floor × limit` (a server's quota headers may pace it lower). Default 0.01. */
  readonly floor?: number | undefined
  /**
   * How far below the estimated capacity the rate restarts after a 429; it then rises to the hold,
   * 3 % under the estimate, before probing above. Default 0.05.
   */
  readonly margin?: number | undefined
  /** Decrease on a 429 when too little was measured to know the accepted rate. Default 0.3. */
  readonly penalty?: number | undefined
  /**
   * The longest pause a `Retry-After` (or a spent quota's reset) may impose
   * on everyone sharing the limiter. Default 60 seconds, in line with
   * `Retry`'s `maxRetryAfter` (which fails such a request at once).
   */
  readonly maxPause?: Duration.DurationInput | undefined
  /** @deprecated No longer used: the rate rises along a cubic back to the measured rate, then probes. */
  readonly recovery?: number | undefined
}

/**
 * @since 0.1.0
 * @category utils
 */
export const postOnly = (request: HttpClientRequest.HttpClientRequest): boolean => request.method === "POST"

/**
 * stkai's presets (limit per window, max wait, floor, penalty), with a
 * margin to hold below the measured rate. Pick a `window` to go with them
 * (stkai used one minute).
 *
 * @since 0.1.0
 * @category utils
 */
export const presets = {
  conservative: { limit: 20, maxWait: "120 seconds", floor: 0.05, penalty: 0.5, margin: 0.1 },
  balanced: { limit: 40, maxWait: "45 seconds", floor: 0.1, penalty: 0.3, margin: 0.05 },
  optimistic: { limit: 80, maxWait: "20 seconds", floor: 0.3, penalty: 0.15, margin: 0.02 }
} as const

/**
 * @since 0.1.0
 * @category constructors
 */
export const makeTokenBucket: (
  options: TokenBucketOptions
) => Effect.Effect<Service, never, RateLimiterStore> = internal.makeTokenBucket

/**
 * @since 0.1.0
 * @category constructors
 */
export const makeAdaptive: (options: AdaptiveOptions) => Effect.Effect<Service, never, RateLimiterStore> =
  internal.makeAdaptive

/**
 * @since 0.1.0
 * @category layers
 */
export const layerTokenBucket = (options: TokenBucketOptions): Layer.Layer<RateLimiter, never, RateLimiterStore> =>
  Layer.effect(RateLimiter, makeTokenBucket(options))

/**
 * @since 0.1.0
 * @category layers
 */
export const layerAdaptive = (options: AdaptiveOptions): Layer.Layer<RateLimiter, never, RateLimiterStore> =>
  Layer.effect(RateLimiter, makeAdaptive(options))

/**
 * Classifies a response for the limiter: 429 is `RateLimited`, 5xx `Neutral`, anything else `Success`.
 *
 * @since 0.1.0
 * @category utils
 */
export const outcomeOfResponse: (status: number, headers: Readonly<Record<string, string>>, nowMillis: number) => Outcome =
  internal.outcomeOfResponse

/**
 * Applies a limiter to any `HttpClient`: every request it `appliesTo` takes
 * a permit before it is sent, and its answer is reported: the response, or
 * the `ServerSideRateLimitError` / `HttpStatusError` a
 * `TypedErrors.withTypedErrors` under it made of one (its status and
 * `Retry-After`; quota headers are read from responses only).
 *
 * @since 0.1.0
 * @category utils
 */
export const limit: {
  (limiter: Service): <E, R>(
    self: HttpClient.HttpClient.With<E, R>
  ) => HttpClient.HttpClient.With<E | TokenAcquisitionTimeoutError | RateLimiterStoreError, R>
  <E, R>(
    self: HttpClient.HttpClient.With<E, R>,
    limiter: Service
  ): HttpClient.HttpClient.With<E | TokenAcquisitionTimeoutError | RateLimiterStoreError, R>
} = dual(
  (args) => hasProperty(args[0], HttpClient.TypeId),
  <E, R>(
    self: HttpClient.HttpClient.With<E, R>,
    limiter: Service
  ): HttpClient.HttpClient.With<E | TokenAcquisitionTimeoutError | RateLimiterStoreError, R> =>
    HttpClient.transform(self, (effect, request) =>
      limiter.appliesTo(request)
        ? Effect.flatMap(Clock.currentTimeMillis, (now) => limiter.run(effect, (exit) => internal.classifyResponseExit(exit, now)))
        : effect) as HttpClient.HttpClient.With<E | TokenAcquisitionTimeoutError | RateLimiterStoreError, R>
)

/**
 * Several limiters as one: a request takes a permit from each (a tokens
 * limiter takes its cost), in order, and its outcome is reported to each.
 * The usual pair for an AI API: requests per minute and tokens per minute.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { RateLimiter, RateLimiterStore } from "@sluice/core"
 *
 * const Limiter = RateLimiter.layerAll([
 *   RateLimiter.makeAdaptive({ limit: 500, window: "1 minute", key: "rpm" }),
 *   RateLimiter.makeAdaptive({ limit: 90_000, window: "1 minute", key: "tpm", unit: "tokens" })
 * ]).pipe(Layer.provide(RateLimiterStore.layerMemory))
 * // api.post("/v1/chat/completions", { body, cost: estimatedTokens })
 * ```
 *
 * @since 0.3.0
 * @category combinators
 */
export const all: (limiters: ReadonlyArray<Service>) => Service = internal.all

/**
 * @since 0.3.0
 * @category layers
 */
export const layerAll = (
  limiters: ReadonlyArray<Effect.Effect<Service, never, RateLimiterStore>>
): Layer.Layer<RateLimiter, never, RateLimiterStore> =>
  Layer.effect(RateLimiter, Effect.map(Effect.all(limiters), all))
