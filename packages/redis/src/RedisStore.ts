/**
 * `RedisStore`: a `RateLimiterStore` in Redis, so many processes share one
 * quota; a `CircuitBreakerStore` (`layerCircuitBreaker`), so a fleet
 * trips together; and a `TokenStore` (`layerTokenStore`), so a fleet shares
 * one OAuth2 token.
 *
 * Every operation is one Lua script, one round trip, atomic on the server.
 * Time comes from Redis (`TIME`), never from the callers, so replicas with
 * skewed clocks do not break the quota; the callers only sleep for the
 * durations Redis tells them. Every key gets a TTL.
 *
 * Why not `@effect/experimental`'s Redis `RateLimiter` store: it takes the
 * time from the caller, sets no TTL on some keys, and has no notion of the
 * adaptive limiter's shared rate, epoch and pause.
 *
 * When Redis cannot be reached, operations fail fast (no offline queue, a
 * command timeout) with `RateLimiterStoreError`: `onUnavailable: "fail"`
 * (the default) passes that error on; `{ fallback: "local", processes: N }`
 * serves from an in-process store at 1/N of the rate until Redis answers
 * again.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { RateLimiter } from "@sluice/core"
 * import { RedisStore } from "@sluice/redis"
 *
 * // the same limiter, shared by every process that uses this Redis and key
 * const Limiter = RateLimiter.layerTokenBucket({ limit: 50, window: "1 second", key: "acme-api" }).pipe(
 *   Layer.provide(RedisStore.layer({ url: "redis://localhost:6379", prefix: "myapp:" }))
 * )
 * ```
 *
 * @since 0.1.0
 */
import { CircuitBreakerStore, RateLimiterStore, TokenStore } from "@sluice/core"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as circuitBreaker from "./internal/circuitBreakerStore.js"
import * as internal from "./internal/redisStore.js"
import * as tokenStore from "./internal/tokenStore.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `redis://[:password@]host:port/db`. One of `url` or `path`. */
  readonly url?: string | Redacted.Redacted<string> | undefined
  /** A unix socket path. */
  readonly path?: string | undefined
  /** Prepended to every key. Default `sluice:`. */
  readonly prefix?: string | undefined
  /** How long an idle limiter's state is kept. Default 1 hour. */
  readonly idleTtlMillis?: number | undefined
  /** Bound on one command. Default 1,000 ms. */
  readonly commandTimeoutMillis?: number | undefined
  /** What to do while Redis is unreachable. Default `"fail"` (fail closed). */
  readonly onUnavailable?: "fail" | { readonly fallback: "local"; readonly processes: number } | undefined
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: (
  options: Options
) => Effect.Effect<RateLimiterStore.Store, RateLimiterStore.RateLimiterStoreError, Scope.Scope> = internal.make

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<RateLimiterStore.RateLimiterStore, RateLimiterStore.RateLimiterStoreError> =>
  Layer.scoped(RateLimiterStore.RateLimiterStore, make(options))

/**
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config.Wrap<Options>
): Layer.Layer<RateLimiterStore.RateLimiterStore, RateLimiterStore.RateLimiterStoreError | ConfigError.ConfigError> =>
  Layer.scoped(RateLimiterStore.RateLimiterStore, Effect.flatMap(Config.unwrap(options), make))

/**
 * A `CircuitBreakerStore` in Redis: every admission and every answer is one
 * Lua script on Redis time, so every process sharing the Redis and the key
 * sees one circuit (one trips, all refuse; one probe's success closes it for
 * all). The state (`<prefix><key>:circuit`) expires after the idle TTL.
 * Redis away: the operations fail, and the breaker lets calls through (it
 * fails open) with one warning per outage.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { CircuitBreaker } from "@sluice/core"
 * import { RedisStore } from "@sluice/redis"
 *
 * const Breaker = CircuitBreaker.layer({ key: "acme-api" }).pipe(
 *   Layer.provide(RedisStore.layerCircuitBreaker({ url: "redis://localhost:6379" }))
 * )
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeCircuitBreaker: (
  options: Options
) => Effect.Effect<CircuitBreakerStore.Store, CircuitBreakerStore.CircuitBreakerStoreError, Scope.Scope> = circuitBreaker.make

/**
 * @since 0.3.0
 * @category layers
 */
export const layerCircuitBreaker = (
  options: Options
): Layer.Layer<CircuitBreakerStore.CircuitBreakerStore, CircuitBreakerStore.CircuitBreakerStoreError> =>
  Layer.scoped(CircuitBreakerStore.CircuitBreakerStore, makeCircuitBreaker(options))

/**
 * A `TokenStore` in Redis, for `ClientCredentials.layerShared`: every
 * process with the same credentials uses one token, and a refresh is one
 * token request for the whole fleet (a lock with a TTL decides who fetches).
 *
 * The token is a secret at rest. What is stored: the hash
 * `<prefix>token:<key>` (`key` is the client id, token URL, scope and
 * audience joined, or `ClientCredentials`' `sharedKey`) holding the headers
 * sent with each request (`authorization: Bearer …`) and the lifetime the
 * token was issued with; its TTL is what is left of that lifetime, so Redis
 * drops it when it expires. The lock, `<prefix>token:<key>:lock`, holds a
 * random owner name for at most the token timeout. Nothing is logged. Give
 * the fleet a Redis (or a prefix, with ACLs) that only it can read.
 *
 * @example
 * ```ts
 * import { Layer, Redacted } from "effect"
 * import { ClientCredentials } from "@sluice/core"
 * import { RedisStore } from "@sluice/redis"
 *
 * const Auth = ClientCredentials.layerShared({
 *   tokenUrl: "https://idp.example.com/oauth/token",
 *   clientId: "my-app",
 *   clientSecret: Redacted.make(process.env.CLIENT_SECRET!)
 * }).pipe(Layer.provide(RedisStore.layerTokenStore({ url: "redis://localhost:6379", prefix: "myapp:" })))
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeTokenStore: (
  options: Options
) => Effect.Effect<TokenStore.Store, TokenStore.TokenStoreError, Scope.Scope> = tokenStore.make

/**
 * @since 0.3.0
 * @category layers
 */
export const layerTokenStore = (options: Options): Layer.Layer<TokenStore.TokenStore, TokenStore.TokenStoreError> =>
  Layer.scoped(TokenStore.TokenStore, makeTokenStore(options))
