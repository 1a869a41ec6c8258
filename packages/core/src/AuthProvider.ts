/**
 * `AuthProvider`: where a request's credentials come from.
 *
 * A provider gives the headers to send (`Authorization: Bearer …`, an API key
 * header, Basic) and can be told that a credential was rejected. `ApiClient`
 * takes the credential right before each attempt is sent (after the rate
 * limiter's permit, so a long wait never sends an expired token) and, for a
 * refreshable provider, answers a 401 by refreshing once and replaying once.
 *
 * Providers: {@link layerBearer}, {@link layerApiKey}, {@link layerBasic}
 * (static), `ClientCredentials.layer` (OAuth2), `CommandAuth.layer` (a token
 * printed by a CLI command), and `AuthEnvironment.layer` (picks one from
 * `Config`).
 *
 * @example
 * ```ts
 * import { Layer, Redacted } from "effect"
 * import { ApiClient, AuthProvider } from "@sluice/core"
 *
 * const Api = ApiClient.layer({ baseUrl: "https://api.example.com" }).pipe(
 *   Layer.provide(AuthProvider.layerBearer(Redacted.make("token")))
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { setEach } from "./internal/headers.js"
import { replayOnce } from "./internal/unauthorized.js"

/**
 * @since 0.1.0
 * @category utils
 */
export const AuthenticationErrorReason = Schema.Literal(
  "InvalidCredentials",
  "TokenEndpointError",
  "TokenEndpointTimeout",
  "InvalidTokenResponse",
  "Unauthorized",
  "CommandFailed",
  "NotConfigured"
)
/**
 * @since 0.1.0
 * @category models
 */
export type AuthenticationErrorReason = typeof AuthenticationErrorReason.Type

/**
 * Credentials could not be had, or were refused. `transient` says whether
 * trying again later can help (a token endpoint's 5xx, 429 or timeout); the
 * retry policy retries only transient ones. Never holds a secret.
 *
 * @since 0.1.0
 * @category errors
 */
export class AuthenticationError extends Schema.TaggedError<AuthenticationError>("@sluice/core/AuthenticationError")(
  "AuthenticationError",
  {
    reason: AuthenticationErrorReason,
    message: Schema.String,
    transient: Schema.Boolean,
    status: Schema.optional(Schema.Number)
  }
) {}

/**
 * The headers one attempt sends; `generation` tells a refreshed credential from the one it replaced.
 *
 * @since 0.1.0
 * @category models
 */
export interface Credential {
  readonly headers: Readonly<Record<string, string>>
  readonly generation: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The current credential, fetched or refreshed if need be (one fetch shared by all callers). */
  readonly credential: Effect.Effect<Credential, AuthenticationError>
  /** A server refused this credential (401): a refreshable provider drops it if it is still the current one. */
  readonly rejected: (credential: Credential) => Effect.Effect<void>
  /** Whether a 401 is worth one refresh and replay. */
  readonly refreshable: boolean
  /** Header names the provider sets, registered as redacted for logs and spans. */
  readonly secretHeaders: ReadonlyArray<string>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class AuthProvider extends Context.Tag("@sluice/core/AuthProvider")<AuthProvider, Service>() {}

/**
 * A provider whose credential never changes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeStatic = (headers: Readonly<Record<string, string>>): Service => {
  const credential: Credential = { headers, generation: 0 }
  return {
    credential: Effect.succeed(credential),
    rejected: () => Effect.void,
    refreshable: false,
    secretHeaders: Object.keys(headers).map((h) => h.toLowerCase())
  }
}

/**
 * `Authorization: Bearer <token>`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerBearer = (token: Redacted.Redacted<string>): Layer.Layer<AuthProvider> =>
  Layer.sync(AuthProvider, () => makeStatic({ authorization: `Bearer ${Redacted.value(token)}` }))

/**
 * An API key in a header (default `X-API-Key`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerApiKey = (key: Redacted.Redacted<string>, header = "X-API-Key"): Layer.Layer<AuthProvider> =>
  Layer.sync(AuthProvider, () => makeStatic({ [header.toLowerCase()]: Redacted.value(key) }))

/**
 * HTTP Basic.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerBasic = (username: string, password: Redacted.Redacted<string>): Layer.Layer<AuthProvider> =>
  Layer.sync(AuthProvider, () =>
    makeStatic({
      authorization: `Basic ${Encoding.encodeBase64(`${username}:${Redacted.value(password)}`)}`
    }))

/**
 * Applies a provider to any `HttpClient`: credentials on every request, and
 * on a 401 from a refreshable provider, one refresh and one replay. A second
 * 401 is an `AuthenticationError` with reason `Unauthorized`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withAuth: {
  (auth: Service): <E, R>(self: HttpClient.HttpClient.With<E, R>) => HttpClient.HttpClient.With<E | AuthenticationError, R>
  <E, R>(self: HttpClient.HttpClient.With<E, R>, auth: Service): HttpClient.HttpClient.With<E | AuthenticationError, R>
} = dual(2, <E, R>(
  self: HttpClient.HttpClient.With<E, R>,
  auth: Service
): HttpClient.HttpClient.With<E | AuthenticationError, R> =>
  HttpClient.makeWith(
    (requestEffect: Effect.Effect<HttpClientRequest.HttpClientRequest, E, R>) =>
      Effect.flatMap(requestEffect, (request) => {
        // A 401 is an answer, not a failure, for an HttpClient: it fails here only to take the
        // shared replay rule, and is an answer again below when the provider cannot refresh.
        const attempt = (use: (credential: Credential) => void) =>
          Effect.flatMap(auth.credential, (credential) => {
            use(credential)
            return Effect.flatMap(
              self.execute(setEach(request, credential.headers)),
              (response) => response.status === 401 ? Effect.fail(new Unauthorized(response)) : Effect.succeed(response)
            )
          })
        return replayOnce(auth, attempt, {
          is: isUnauthorized,
          discard: (e) => Effect.ignore(e.response.arrayBuffer),
          last: (e) =>
            auth.refreshable
              ? Effect.zipRight(Effect.ignore(e.response.arrayBuffer), Effect.fail(unauthorizedAfterRefresh(request.method, request.url)))
              : Effect.succeed(e.response)
        })
      }),
    Effect.succeed
  ))

/** A 401 answer, carried as a failure through the replay rule. */
class Unauthorized {
  constructor(readonly response: HttpClientResponse.HttpClientResponse) {}
}
const isUnauthorized = (e: unknown): e is Unauthorized => e instanceof Unauthorized

/**
 * The error for a 401 that survived a refresh.
 *
 * @since 0.1.0
 * @category utils
 */
export const unauthorizedAfterRefresh = (method: string, url: string) =>
  new AuthenticationError({
    reason: "Unauthorized",
    message: `${method} ${url} answered 401 with a freshly obtained credential: the credentials are not accepted`,
    transient: false,
    status: 401
  })
