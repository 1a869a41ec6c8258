import { TokenStore } from "@sluice/core"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as RS from "../RedisStore.js"
import { connect } from "./connection.js"

/**
 * The shared token is one hash, `<prefix>token:<key>`: `h` the headers (as
 * JSON), `l` the lifetime it was issued with; its PTTL is what is left of
 * that lifetime, so Redis forgets it when it expires. The refresh lock is
 * `<prefix>token:<key>:lock`, holding its owner's name, with a PTTL.
 */
const GET = `
local h = redis.call("HMGET", KEYS[1], "h", "l")
if not h[1] then return nil end
return {h[1], h[2], redis.call("PTTL", KEYS[1])}
`

/** ARGV: owner, ttl ms. */
const LOCK = `
if redis.call("SET", KEYS[1] .. ":lock", ARGV[1], "NX", "PX", ARGV[2]) then return 1 end
if redis.call("GET", KEYS[1] .. ":lock") == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1] .. ":lock", ARGV[2])
  return 1
end
return 0
`

/** ARGV: owner, headers JSON, lifetime ms. */
const PUBLISH = `
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], "h", ARGV[2], "l", ARGV[3])
redis.call("PEXPIRE", KEYS[1], ARGV[3])
if redis.call("GET", KEYS[1] .. ":lock") == ARGV[1] then redis.call("DEL", KEYS[1] .. ":lock") end
return 1
`

/** ARGV: owner. */
const UNLOCK = `
if redis.call("GET", KEYS[1] .. ":lock") == ARGV[1] then redis.call("DEL", KEYS[1] .. ":lock") end
return 1
`

/** ARGV: headers JSON. Drops the token only while it is still that one. */
const DROP = `
if redis.call("HGET", KEYS[1], "h") == ARGV[1] then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
`

const storeError = (message: string, cause?: unknown) =>
  new TokenStore.TokenStoreError({ message, ...(cause !== undefined ? { cause } : {}) })

export const make = (options: RS.Options): Effect.Effect<TokenStore.Store, TokenStore.TokenStoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const prefix = options.prefix ?? "sluice:"
    const run = yield* connect(options, {
      TOKEN_GET: { lua: GET, keys: 1 },
      TOKEN_LOCK: { lua: LOCK, keys: 1 },
      TOKEN_PUBLISH: { lua: PUBLISH, keys: 1 },
      TOKEN_UNLOCK: { lua: UNLOCK, keys: 1 },
      TOKEN_DROP: { lua: DROP, keys: 1 }
    }, storeError)
    const tokenKey = (key: string) => `${prefix}token:${key}`
    // The headers as stored: one canonical JSON string, so a drop compares by value.
    const encode = (headers: Readonly<Record<string, string>>) => TokenStore.headersKey(headers)
    const decode = (text: string): Record<string, string> =>
      Object.fromEntries(JSON.parse(text) as Array<[string, string]>)
    const millis = (n: number) => Math.max(1, Math.ceil(n))
    return {
      get: (key) =>
        Effect.flatMap(run<[string, string, number] | null>("TOKEN_GET", [tokenKey(key)], []), (r) => {
          if (r === null || Number(r[2]) <= 0) return Effect.succeed(Option.none())
          return Effect.try({
            try: () => Option.some({ headers: decode(r[0]), lifetimeMillis: Number(r[1]), remainingMillis: Number(r[2]) }),
            catch: () => storeError("the shared token entry is not one Sluice wrote")
          })
        }),
      tryLock: (key, owner, ttlMillis) =>
        Effect.map(run<number>("TOKEN_LOCK", [tokenKey(key)], [owner, millis(ttlMillis)]), (r) => Number(r) === 1),
      publish: (key, owner, headers, lifetimeMillis) =>
        Effect.asVoid(run("TOKEN_PUBLISH", [tokenKey(key)], [owner, encode(headers), millis(lifetimeMillis)])),
      unlock: (key, owner) => Effect.asVoid(run("TOKEN_UNLOCK", [tokenKey(key)], [owner])),
      drop: (key, headers) => Effect.map(run<number>("TOKEN_DROP", [tokenKey(key)], [encode(headers)]), (r) => Number(r) === 1)
    } satisfies TokenStore.Store
  })
