import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"
import type * as AP from "../AuthProvider.js"
import type { AuthenticationError } from "../AuthProvider.js"

/** What a fetch of a credential gives: the headers to send and how long they are good for. */
export interface Fetched {
  readonly headers: Readonly<Record<string, string>>
  readonly lifetimeMillis: number
}

export interface Options {
  /** Refresh this long before expiry, clamped to half the lifetime. */
  readonly refreshMarginMillis: number
  /** First backoff after a failure; doubles, up to 30 s. */
  readonly backoffBaseMillis: number
  /** How long a permanent (non-transient) failure is answered from memory. */
  readonly permanentTtlMillis: number
}

interface Cached {
  readonly credential: AP.Credential
  readonly refreshAt: number
  readonly expiresAt: number
}

/**
 * A cached credential with one shared refresh.
 *
 * - Fresh: served from memory. In the refresh window: served from memory
 *   while one background refresh runs. Expired: every caller waits on the
 *   one refresh.
 * - The refresh runs in the cache's scope, so a caller that gives up (is
 *   interrupted) does not cancel it for the others.
 * - A failure fails the callers waiting on it with that one error and delays
 *   the next refresh by a backoff; callers arriving meanwhile wait for it.
 *   A permanent failure is answered from memory for a while.
 * - Time is the monotonic Effect clock (`TestClock` under test).
 */
export const make = (
  fetch: Effect.Effect<Fetched, AuthenticationError>,
  options: Options
): Effect.Effect<Pick<AP.Service, "credential" | "rejected">, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const clock = yield* Effect.clock
    const now = () => Number(clock.unsafeCurrentTimeNanos() / 1_000_000n)

    let generation = 0
    let cached: Cached | undefined
    let inflight: Deferred.Deferred<AP.Credential, AuthenticationError> | undefined
    let failures = 0
    let nextAttemptAt = 0
    let permanent: { readonly error: AuthenticationError; readonly until: number } | undefined

    const refresh = Effect.suspend(() => {
      if (inflight !== undefined) return Effect.succeed(inflight)
      const deferred = Deferred.unsafeMake<AP.Credential, AuthenticationError>(FiberId.none)
      inflight = deferred
      const run = Effect.suspend(() => {
        const wait = nextAttemptAt - now()
        return wait > 0 ? Effect.zipRight(Effect.sleep(Duration.millis(wait)), fetch) : fetch
      }).pipe(
        Effect.map((fetched): AP.Credential => {
          const receivedAt = now()
          const credential = { headers: fetched.headers, generation: ++generation }
          const expiresAt = receivedAt + fetched.lifetimeMillis
          cached = {
            credential,
            expiresAt,
            refreshAt: expiresAt - Math.min(options.refreshMarginMillis, fetched.lifetimeMillis / 2)
          }
          failures = 0
          permanent = undefined
          return credential
        }),
        Effect.tapError((error) =>
          Effect.sync(() => {
            failures++
            nextAttemptAt = now() + Math.min(30_000, options.backoffBaseMillis * 2 ** (failures - 1))
            if (!error.transient) permanent = { error, until: now() + options.permanentTtlMillis }
          })
        ),
        Effect.exit,
        Effect.flatMap((exit) =>
          Effect.zipRight(
            Effect.sync(() => {
              inflight = undefined
            }),
            Deferred.done(deferred, exit)
          )
        )
      )
      return Effect.as(Effect.forkIn(run, scope), deferred)
    })

    const credential: Effect.Effect<AP.Credential, AuthenticationError> = Effect.suspend(() => {
      const t = now()
      if (cached !== undefined && t < cached.refreshAt) return Effect.succeed(cached.credential)
      if (cached !== undefined && t < cached.expiresAt) return Effect.as(refresh, cached.credential)
      if (permanent !== undefined && t < permanent.until) return Effect.fail(permanent.error)
      return Effect.flatMap(refresh, Deferred.await)
    })

    return {
      credential,
      rejected: (c: AP.Credential) =>
        Effect.sync(() => {
          if (cached !== undefined && cached.credential.generation === c.generation) cached = undefined
        })
    }
  })
