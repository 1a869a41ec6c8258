/**
 * `TokenStore`: where `ClientCredentials.layerShared` keeps the one OAuth2
 * token that many clients (many processes, with `@sluice/redis`) share, so
 * a fleet makes one token request per refresh instead of one per process.
 *
 * The protocol: read the shared token; when it is missing or due for
 * refresh, take the refresh lock (with a TTL, so a refresher that dies
 * frees it), fetch, publish the token for its lifetime and release the
 * lock; a client that did not get the lock waits for the token to appear
 * (bounded) and then fetches on its own. A token the server refused (401) is
 * dropped for everyone, once: only if the shared token is still that one.
 *
 * The in-memory store here shares a token between clients of one process
 * (and serves the tests); `RedisStore.layerTokenStore` shares it across
 * processes. The token is a secret at rest: a store keeps it no longer than
 * its lifetime and never logs it.
 *
 * @example
 * ```ts
 * import { Layer, Redacted } from "effect"
 * import { ClientCredentials, TokenStore } from "@sluice/core"
 *
 * const Auth = ClientCredentials.layerShared({
 *   tokenUrl: "https://idp.example.com/oauth/token",
 *   clientId: "my-app",
 *   clientSecret: Redacted.make(process.env.CLIENT_SECRET!)
 * }).pipe(Layer.provide(TokenStore.layerMemory))
 * ```
 *
 * @since 0.3.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/**
 * A shared token as the store holds it.
 *
 * @since 0.3.0
 * @category models
 */
export interface Entry {
  /** The headers to send (`authorization: Bearer …`). */
  readonly headers: Readonly<Record<string, string>>
  /** How much longer it is good for, by the store's clock. */
  readonly remainingMillis: number
  /** The lifetime it was issued with (the refresh margin is a share of it). */
  readonly lifetimeMillis: number
}

/**
 * The store could not be reached or answered something unexpected.
 *
 * @since 0.3.0
 * @category errors
 */
export class TokenStoreError extends Schema.TaggedError<TokenStoreError>("@sluice/core/TokenStoreError")(
  "TokenStoreError",
  { message: Schema.String, cause: Schema.optional(Schema.Defect) }
) {}

/**
 * @since 0.3.0
 * @category models
 */
export interface Store {
  readonly get: (key: string) => Effect.Effect<Option.Option<Entry>, TokenStoreError>
  /** Takes the refresh lock for `ttlMillis`; true when `owner` now holds it. */
  readonly tryLock: (key: string, owner: string, ttlMillis: number) => Effect.Effect<boolean, TokenStoreError>
  /** Publishes a token for `lifetimeMillis` and releases `owner`'s lock. */
  readonly publish: (
    key: string,
    owner: string,
    headers: Readonly<Record<string, string>>,
    lifetimeMillis: number
  ) => Effect.Effect<void, TokenStoreError>
  /** Releases the lock if `owner` holds it. */
  readonly unlock: (key: string, owner: string) => Effect.Effect<void, TokenStoreError>
  /** Drops the shared token if it is still the one with these headers; true when it was dropped. */
  readonly drop: (key: string, headers: Readonly<Record<string, string>>) => Effect.Effect<boolean, TokenStoreError>
}

/**
 * @since 0.3.0
 * @category tags
 */
export class TokenStore extends Context.Tag("@sluice/core/TokenStore")<TokenStore, Store>() {}

/**
 * Headers as one canonical string, to compare a token with the shared one.
 *
 * @since 0.3.0
 * @category constructors
 */
export const headersKey = (headers: Readonly<Record<string, string>>): string =>
  JSON.stringify(Object.keys(headers).sort().map((k) => [k, headers[k]]))

/**
 * A store for the clients of one process, on the Effect `Clock`.
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<Store> = Effect.map(Effect.clock, (clock) => {
  const now = () => clock.unsafeCurrentTimeMillis()
  const tokens = new Map<string, { headers: Readonly<Record<string, string>>; expiresAt: number; lifetimeMillis: number }>()
  const locks = new Map<string, { owner: string; until: number }>()
  const release = (key: string, owner: string) => {
    if (locks.get(key)?.owner === owner) locks.delete(key)
  }
  return {
    get: (key) =>
      Effect.sync(() => {
        const t = tokens.get(key)
        if (t === undefined || t.expiresAt <= now()) return Option.none()
        return Option.some({ headers: t.headers, remainingMillis: t.expiresAt - now(), lifetimeMillis: t.lifetimeMillis })
      }),
    tryLock: (key, owner, ttlMillis) =>
      Effect.sync(() => {
        const held = locks.get(key)
        if (held !== undefined && held.until > now() && held.owner !== owner) return false
        locks.set(key, { owner, until: now() + ttlMillis })
        return true
      }),
    publish: (key, owner, headers, lifetimeMillis) =>
      Effect.sync(() => {
        tokens.set(key, { headers, expiresAt: now() + lifetimeMillis, lifetimeMillis })
        release(key, owner)
      }),
    unlock: (key, owner) => Effect.sync(() => release(key, owner)),
    drop: (key, headers) =>
      Effect.sync(() => {
        const t = tokens.get(key)
        if (t === undefined || headersKey(t.headers) !== headersKey(headers)) return false
        tokens.delete(key)
        return true
      })
  }
})

/**
 * @since 0.3.0
 * @category layers
 */
export const layerMemory: Layer.Layer<TokenStore> = Layer.effect(TokenStore, makeMemory)
