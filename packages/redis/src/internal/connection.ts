import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { Redis } from "ioredis"
import type * as RS from "../RedisStore.js"

/** Runs one of the scripts the connection was made with: one round trip, atomic on the server. */
export type RunScript<E> = <A>(name: string, keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) => Effect.Effect<A, E>

/**
 * One scoped ioredis connection for a store, with its Lua scripts defined
 * (sent once, then called by SHA and reloaded if Redis forgot them). It
 * fails fast while Redis is away (no offline queue, a command timeout):
 * a store must never hang its callers.
 */
export const connect = <E>(
  options: RS.Options,
  scripts: Readonly<Record<string, { readonly lua: string; readonly keys: number }>>,
  toError: (message: string, cause?: unknown) => E
): Effect.Effect<RunScript<E>, E, Scope.Scope> =>
  Effect.gen(function*() {
    const commandTimeout = options.commandTimeoutMillis ?? 1_000
    if (options.url === undefined && options.path === undefined) {
      return yield* Effect.fail(toError("RedisStore needs a url (redis://host:port) or a unix socket path"))
    }
    const common = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout,
      connectTimeout: 2_000,
      lazyConnect: true,
      retryStrategy: (times: number) => Math.min(1_000, 50 * times)
    }
    const redis = yield* Effect.acquireRelease(
      Effect.sync(() =>
        options.path !== undefined
          ? new Redis({ path: options.path, ...common })
          : new Redis(typeof options.url === "string" ? options.url : Redacted.value(options.url!), common)
      ),
      // quit waits for Redis; if it is away, just drop the connection.
      (r): Effect.Effect<void> =>
        r.status === "ready"
          ? Effect.promise(() => r.quit().catch(() => r.disconnect())).pipe(
            Effect.timeout("1 second"),
            Effect.ignore,
            Effect.ensuring(Effect.sync(() => r.disconnect()))
          )
          : Effect.sync(() => r.disconnect())
    )
    redis.on("error", () => {}) // reported per operation instead
    yield* Effect.tryPromise({
      try: () => redis.connect(),
      catch: (cause) => toError(`cannot connect to Redis: ${(cause as Error).message}`, cause)
    })
    for (const [name, { keys, lua }] of Object.entries(scripts)) {
      redis.defineCommand(`sluice_${name.toLowerCase()}`, { numberOfKeys: keys, lua })
    }
    const commands = redis as unknown as Record<string, (...a: Array<string | number>) => Promise<unknown>>
    return <A>(name: string, keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) =>
      Effect.tryPromise({
        try: () => commands[`sluice_${name.toLowerCase()}`]!(...keys, ...args) as Promise<A>,
        catch: (cause) => toError(`Redis: ${(cause as Error).message}`, cause)
      }).pipe(
        Effect.timeoutFail({ duration: commandTimeout + 100, onTimeout: () => toError("Redis did not answer in time") })
      )
  })
