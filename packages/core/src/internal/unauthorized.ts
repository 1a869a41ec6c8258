/**
 * The one 401 rule, shared by `AuthProvider.withAuth` and `ApiClient`: an
 * attempt answered 401 with a refreshable provider's credential drops that
 * credential (`rejected`, which a newer one survives) and runs once more,
 * taking a fresh one. Once, never more: a second 401 says the credentials
 * themselves are refused, and each caller reports it (`ApiClient` as an
 * `AuthenticationError`, `withAuth` too, or the 401 response itself when the
 * provider cannot refresh).
 */
import * as Effect from "effect/Effect"
import type * as AuthProvider from "../AuthProvider.js"

export const replayOnce = <A, E, R, U extends E, A2, E2, R2>(
  provider: AuthProvider.Service,
  /** One attempt; it calls `use` with the credential it sends. */
  attempt: (use: (credential: AuthProvider.Credential) => void) => Effect.Effect<A, E, R>,
  unauthorized: {
    /** Whether the attempt's failure is a 401. */
    readonly is: (error: E) => error is U
    /** Frees what a replayed 401 holds (an unread body). */
    readonly discard?: (error: U) => Effect.Effect<void>
    /**
     * The 401 that is not replayed: the second one, or the first when the provider cannot
     * refresh. Here rather than around the whole (one handler per request fewer).
     */
    readonly last: (error: U) => Effect.Effect<A2, E2, R2>
  }
): Effect.Effect<A | A2, Exclude<E, U> | E2, R | R2> => {
  const once = (use: (credential: AuthProvider.Credential) => void) =>
    Effect.catchIf(attempt(use), unauthorized.is, unauthorized.last)
  if (!provider.refreshable) return once(noop)
  return Effect.suspend(() => {
    let used: AuthProvider.Credential | undefined
    return Effect.catchIf(attempt((credential) => {
      used = credential
    }), unauthorized.is, (error) =>
      Effect.zipRight(
        Effect.zipRight(unauthorized.discard?.(error) ?? Effect.void, used ? provider.rejected(used) : Effect.void),
        once(noop)
      ))
  })
}

const noop = (): void => {}
