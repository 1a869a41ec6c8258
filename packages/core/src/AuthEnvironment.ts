/**
 * An `AuthProvider` chosen from configuration (the successor of stkai's
 * `EnvironmentAwareHttpClient` and `create_standalone_auth`).
 *
 * Read through Effect `Config`, in this order, the first that is set wins:
 *
 * 1. `SLUICE_AUTH_COMMAND`, if the command can be run: a token printed by a
 *    CLI command (`CommandAuth`). A command that is not installed is skipped.
 * 2. `SLUICE_AUTH_CLIENT_ID` + `SLUICE_AUTH_CLIENT_SECRET` (+ the required
 *    `SLUICE_AUTH_TOKEN_URL`, optional `SLUICE_AUTH_SCOPE` and
 *    `SLUICE_AUTH_AUDIENCE`): OAuth2 client credentials.
 * 3. `SLUICE_AUTH_BEARER_TOKEN`: a static bearer token.
 * 4. `SLUICE_API_KEY` (header `SLUICE_API_KEY_HEADER`, default `X-API-Key`).
 *
 * With nothing set, the layer fails at construction with an
 * `AuthenticationError` (`NotConfigured`) whose message names every variable.
 * `prefix` replaces `SLUICE`; a `ConfigProvider` can source the values from
 * anywhere.
 *
 * @example
 * ```ts
 * import { NodeContext } from "@effect/platform-node"
 * import { Layer } from "effect"
 * import { ApiClient, AuthEnvironment } from "@sluice/core"
 * import { NodeTransport } from "@sluice/node"
 *
 * const Api = ApiClient.layer({ baseUrl: "https://api.example.com" }).pipe(
 *   Layer.provide(AuthEnvironment.layer()),
 *   Layer.provideMerge(Layer.merge(NodeTransport.layer(), NodeContext.layer))
 * )
 * ```
 *
 * @since 0.1.0
 */
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { AuthenticationError, AuthProvider, makeStatic } from "./AuthProvider.js"
import type * as AP from "./AuthProvider.js"
import * as ClientCredentials from "./ClientCredentials.js"
import * as CommandAuth from "./CommandAuth.js"
import * as TokenStore from "./TokenStore.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Replaces `SLUICE` in every variable name. */
  readonly prefix?: string | undefined
  /** When the environment names OAuth2 client credentials, share their token through this store (`ClientCredentials.layerShared`). */
  readonly tokenStore?: TokenStore.Store | undefined
}

/**
 * The variable names for a prefix.
 *
 * @since 0.1.0
 * @category utils
 */
export const variables = (prefix = "SLUICE") => ({
  command: `${prefix}_AUTH_COMMAND`,
  clientId: `${prefix}_AUTH_CLIENT_ID`,
  clientSecret: `${prefix}_AUTH_CLIENT_SECRET`,
  tokenUrl: `${prefix}_AUTH_TOKEN_URL`,
  scope: `${prefix}_AUTH_SCOPE`,
  audience: `${prefix}_AUTH_AUDIENCE`,
  bearerToken: `${prefix}_AUTH_BEARER_TOKEN`,
  apiKey: `${prefix}_API_KEY`,
  apiKeyHeader: `${prefix}_API_KEY_HEADER`
})

const notConfigured = (message: string) => new AuthenticationError({ reason: "NotConfigured", message, transient: false })

const optional = (name: string) => Config.option(Config.string(name)).pipe(Config.map(Option.filter((s) => s.trim() !== "")))
const optionalSecret = (name: string) =>
  Config.option(Config.redacted(name)).pipe(Config.map(Option.filter((s) => Redacted.value(s).trim() !== "")))

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<
  AP.Service,
  AuthenticationError | ConfigError.ConfigError,
  HttpClient.HttpClient | CommandExecutor.CommandExecutor | Scope.Scope
> =>
  Effect.gen(function*() {
    const v = variables(options.prefix)
    const command = yield* optional(v.command)
    if (Option.isSome(command)) {
      const provider = yield* CommandAuth.make({ command: command.value })
      // "Configured and runnable": run it once now. Not installed: try the next way; failing otherwise: say so.
      const first = yield* Effect.either(provider.credential)
      if (first._tag === "Right") return provider
      if (!first.left.message.includes("was not found")) return yield* first.left
      yield* Effect.logWarning(`sluice: ${v.command} is set but ${first.left.message}; trying the other ways`)
    }
    const clientId = yield* optional(v.clientId)
    const clientSecret = yield* optionalSecret(v.clientSecret)
    if (Option.isSome(clientId) || Option.isSome(clientSecret)) {
      if (Option.isNone(clientId)) return yield* notConfigured(`${v.clientSecret} is set but ${v.clientId} is not: set both`)
      if (Option.isNone(clientSecret)) return yield* notConfigured(`${v.clientId} is set but ${v.clientSecret} is not: set both`)
      const tokenUrl = yield* optional(v.tokenUrl)
      if (Option.isNone(tokenUrl)) {
        return yield* notConfigured(`${v.clientId} and ${v.clientSecret} are set: set ${v.tokenUrl} to the OAuth2 token endpoint too`)
      }
      const scope = yield* optional(v.scope)
      const audience = yield* optional(v.audience)
      const credentials: ClientCredentials.Options = {
        tokenUrl: tokenUrl.value,
        clientId: clientId.value,
        clientSecret: clientSecret.value,
        scope: Option.getOrUndefined(scope),
        audience: Option.getOrUndefined(audience)
      }
      return yield* options.tokenStore === undefined
        ? ClientCredentials.make(credentials)
        : Effect.provideService(ClientCredentials.makeShared(credentials), TokenStore.TokenStore, options.tokenStore)
    }
    const bearer = yield* optionalSecret(v.bearerToken)
    if (Option.isSome(bearer)) return makeStatic({ authorization: `Bearer ${Redacted.value(bearer.value)}` })
    const apiKey = yield* optionalSecret(v.apiKey)
    if (Option.isSome(apiKey)) {
      const header = Option.getOrElse(yield* optional(v.apiKeyHeader), () => "X-API-Key")
      return makeStatic({ [header.toLowerCase()]: Redacted.value(apiKey.value) })
    }
    return yield* notConfigured(
      "no credentials are configured. Set one of: " +
        `${v.command} (a command that prints a token); ` +
        `${v.clientId} + ${v.clientSecret} + ${v.tokenUrl} (OAuth2 client credentials; optional ${v.scope}, ${v.audience}); ` +
        `${v.bearerToken}; ` +
        `${v.apiKey} (optional ${v.apiKeyHeader}, default X-API-Key)`
    )
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<
  AuthProvider,
  AuthenticationError | ConfigError.ConfigError,
  HttpClient.HttpClient | CommandExecutor.CommandExecutor
> => Layer.scoped(AuthProvider, make(options))
