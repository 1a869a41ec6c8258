import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as AP from "../AuthProvider.js"
import type { AuthenticationError } from "../AuthProvider.js"
import type * as TokenStore from "../TokenStore.js"

/** What a fetch of a credential gives: the headers to send and how long they are good for. */
export interface Fetched {
  readonly headers: Readonly<Record<string, string>>
  readonly lifetimeMillis: number
  /** The lifetime it was issued with, when it was issued earlier (a shared token): the margin is a share of it. */
  readonly issuedLifetimeMillis?: number | undefined
}

/** A token shared through a `TokenStore` (many processes, one token request per refresh). */
export interface Shared {
  readonly store: TokenStore.Store
  readonly key: string
  /** This client's name as a lock owner. */
  readonly owner: string
  /** How long the refresh lock is held at most (a refresher that died frees it then). */
  readonly lockTtlMillis: number
  /** How long to wait for another client's refresh before fetching on our own. */
  readonly waitMillis: number
}

/** How often a client waiting for another's refresh looks for the new token. */
const POLL_MILLIS = 50

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
  fetchOwn: Effect.Effect<Fetched, AuthenticationError>,
  options: Options,
  shared?: Shared
): Effect.Effect<Pick<AP.Service, "credential" | "rejected">, never, Scope.Scope> =>
  Effect.gen(function*() {
    const fetch = shared === undefined ? fetchOwn : viaStore(fetchOwn, options, shared)
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
            refreshAt: expiresAt - Math.min(options.refreshMarginMillis, (fetched.issuedLifetimeMillis ?? fetched.lifetimeMillis) / 2)
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
        Effect.zipRight(
          Effect.sync(() => {
            if (cached !== undefined && cached.credential.generation === c.generation) cached = undefined
          }),
          // Dropped for everyone, once: only while the shared token is still this one.
          shared === undefined ? Effect.void : Effect.ignore(shared.store.drop(shared.key, c.headers))
        )
    }
  })

/**
 * A fetch through the shared store: its token when fresh; else this client
 * takes the refresh lock and fetches for everyone; else it waits (bounded)
 * for the holder's token, then fetches on its own. The store away: the
 * client's own fetch, with one warning per outage.
 */
const viaStore = (
  fetchOwn: Effect.Effect<Fetched, AuthenticationError>,
  options: Options,
  shared: Shared
): Effect.Effect<Fetched, AuthenticationError> => {
  const { key, owner, store } = shared
  const fresh = (entry: TokenStore.Entry) =>
    entry.remainingMillis > Math.min(options.refreshMarginMillis, entry.lifetimeMillis / 2)
  const fromEntry = (entry: TokenStore.Entry): Fetched => ({
    headers: entry.headers,
    lifetimeMillis: entry.remainingMillis,
    issuedLifetimeMillis: entry.lifetimeMillis
  })
  const freshEntry = Effect.map(store.get(key), Option.filter(fresh))
  const fetchAndPublish = Effect.flatMap(freshEntry, (again): Effect.Effect<Fetched, AuthenticationError | TokenStore.TokenStoreError> =>
    Option.isSome(again)
      ? Effect.as(store.unlock(key, owner), fromEntry(again.value))
      : fetchOwn.pipe(
        Effect.tap((fetched) => Effect.ignore(store.publish(key, owner, fetched.headers, fetched.lifetimeMillis))),
        Effect.onError(() => Effect.ignore(store.unlock(key, owner)))
      ))
  // Looks for the holder's token every POLL_MILLIS, for at most `waitMillis`.
  const waitForHolder = freshEntry.pipe(
    Effect.delay(Duration.millis(POLL_MILLIS)),
    Effect.repeat({ until: Option.isSome, times: Math.max(0, Math.ceil(shared.waitMillis / POLL_MILLIS) - 1) }),
    Effect.map(Option.map(fromEntry))
  )
  let warned = false
  const warnOnce = (message: string) =>
    warned ? Effect.void : Effect.zipRight(
      Effect.sync(() => (warned = true)),
      Effect.logWarning(`sluice: the shared token store is unreachable (${message}); fetching tokens locally until it returns`)
    )
  const viaShared = Effect.gen(function*() {
    const entry = yield* freshEntry
    if (Option.isSome(entry)) return Option.some(fromEntry(entry.value))
    if (yield* store.tryLock(key, owner, shared.lockTtlMillis)) return Option.some(yield* fetchAndPublish)
    return yield* waitForHolder
  })
  return Effect.gen(function*() {
    const got = yield* Effect.catchAll(
      Effect.tap(viaShared, () => Effect.sync(() => (warned = false))),
      (e): Effect.Effect<Option.Option<Fetched>, AuthenticationError> =>
        e._tag === "TokenStoreError" ? Effect.as(warnOnce(e.message), Option.none()) : Effect.fail(e)
    )
    return Option.isSome(got) ? got.value : yield* fetchOwn
  })
}
