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

export const replayOnce = <A, E, R, U extends E>(
  provider: AuthProvider.Service,
  /** One attempt; it calls `use` with the credential it sends. */
  attempt: (use: (credential: AuthProvider.Credential) => void) => Effect.Effect<A, E, R>,
  /** Whether the attempt's failure is a 401; `discard` frees what it holds (an unread body). */
  unauthorized: { readonly is: (error: E) => error is U; readonly discard?: (error: U) => Effect.Effect<void> }
): Effect.Effect<A, E, R> => {
  if (!provider.refreshable) return attempt(noop)
  return Effect.suspend(() => {
    let used: AuthProvider.Credential | undefined
    return Effect.catchIf(attempt((credential) => {
      used = credential
    }), unauthorized.is, (error) =>
      Effect.zipRight(
        Effect.zipRight(unauthorized.discard?.(error) ?? Effect.void, used ? provider.rejected(used) : Effect.void),
        attempt(noop)
      ))
  })
}

const noop = (): void => {}
