/**
 * OAuth2 client credentials (RFC 6749 §4.4) as an `AuthProvider`.
 *
 * The token is cached and refreshed `refreshMargin` before it expires
 * (clamped to half its lifetime, so a 30-second token is not fetched on every
 * call), with expiry measured on the monotonic Effect clock from the moment
 * the response arrived. One refresh runs at a time and every caller shares
 * it: 1,000 callers at expiry cause one token request. A failed refresh fails
 * its waiters with one typed error and spaces the next attempt by an
 * exponential backoff; 5xx, 429 and timeouts are `transient` (the retry
 * policy retries, each retry waiting on the shared refresh), while
 * `invalid_client` and friends are permanent and not asked again for
 * `permanentFailureTtl`.
 *
 * @example
 * ```ts
 * import { Layer, Redacted } from "effect"
 * import { ApiClient, ClientCredentials } from "@sluice/core"
 * import { NodeTransport } from "@sluice/node"
 *
 * const Api = ApiClient.layer({ baseUrl: "https://api.example.com" }).pipe(
 *   Layer.provide(ClientCredentials.layer({
 *     tokenUrl: "https://idp.example.com/oauth/token",
 *     clientId: "my-app",
 *     clientSecret: Redacted.make(process.env.CLIENT_SECRET!),
 *     scope: "read write"
 *   })),
 *   Layer.provideMerge(NodeTransport.layer())
 * )
 * ```
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { type AuthenticationError, AuthProvider } from "./AuthProvider.js"
import { TokenStore } from "./TokenStore.js"
import type * as AP from "./AuthProvider.js"
import * as internal from "./internal/clientCredentials.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly tokenUrl: string
  readonly clientId: string
  readonly clientSecret: Redacted.Redacted<string>
  readonly scope?: string | undefined
  readonly audience?: string | undefined
  /** `basic` (RFC 6749's preferred way, the default) or `body` (form fields, as stkai does). */
  readonly credentialsIn?: "basic" | "body" | undefined
  /** Bound on one token request. Default 10 seconds. */
  readonly tokenTimeout?: Duration.DurationInput | undefined
  /** Refresh this long before expiry, at most half the token's lifetime. Default 60 seconds. */
  readonly refreshMargin?: Duration.DurationInput | undefined
  /** Lifetime assumed when the response has no `expires_in`. Default 5 minutes. */
  readonly defaultLifetime?: Duration.DurationInput | undefined
  /** First backoff after a failed refresh (doubling, up to 30 s). Default 500 ms. */
  readonly retryBackoff?: Duration.DurationInput | undefined
  /** How long a permanent failure (`invalid_client`) is answered from memory. Default 60 seconds. */
  readonly permanentFailureTtl?: Duration.DurationInput | undefined
  /**
   * The token URL must be `https` (or a loopback address). Set this to send
   * client secrets over plain HTTP anyway; a warning is logged.
   */
  readonly allowInsecureTokenUrl?: boolean | undefined
  /**
   * With `layerShared`: the key the shared token is stored under. Default
   * the client id, token URL, scope and audience joined, so clients with
   * the same credentials share one token and no others do.
   */
  readonly sharedKey?: string | undefined
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<AP.Service, AuthenticationError, HttpClient.HttpClient | Scope.Scope> => internal.make(options)

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<AuthProvider, AuthenticationError, HttpClient.HttpClient> =>
  Layer.scoped(AuthProvider, make(options))

/**
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config.Wrap<Options>
): Layer.Layer<AuthProvider, AuthenticationError | ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.scoped(AuthProvider, Effect.flatMap(Config.unwrap(options), make))

/**
 * One token for every client that shares the `TokenStore` (every process,
 * with `RedisStore.layerTokenStore`): one token request per refresh for the
 * whole fleet. A client that finds the shared token due takes the refresh
 * lock and fetches for everyone; the others keep using the current token
 * meanwhile, wait for the new one (at most `tokenTimeout`), then fetch on
 * their own. A 401 drops the shared token for everyone, once. The store
 * away: each client fetches its own tokens (the local single-flight cache)
 * with one warning, and shares again when the store returns.
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
 * }).pipe(Layer.provide(RedisStore.layerTokenStore({ url: "redis://localhost:6379" })))
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeShared = (
  options: Options
): Effect.Effect<AP.Service, AuthenticationError, HttpClient.HttpClient | TokenStore | Scope.Scope> =>
  Effect.flatMap(TokenStore, (store) => internal.make(options, store))

/**
 * @since 0.3.0
 * @category layers
 */
export const layerShared = (options: Options): Layer.Layer<AuthProvider, AuthenticationError, HttpClient.HttpClient | TokenStore> =>
  Layer.scoped(AuthProvider, makeShared(options))
