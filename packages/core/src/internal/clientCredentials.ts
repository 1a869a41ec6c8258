import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Duration from "effect/Duration"
import * as Encoding from "effect/Encoding"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as AP from "../AuthProvider.js"
import { AuthenticationError } from "../AuthProvider.js"
import type * as CC from "../ClientCredentials.js"
import { excerpt } from "../ApiError.js"
import { causeInfo } from "./errors.js"
import { ERROR_BODY_READ_LIMIT, readText } from "./responseBody.js"
import type * as TokenStore from "../TokenStore.js"
import { Scrubber } from "./scrub.js"
import * as TokenCache from "./tokenCache.js"

const PERMANENT_ERRORS = new Set(["invalid_client", "unauthorized_client", "invalid_grant", "invalid_scope", "invalid_request"])

const isLoopback = (host: string) =>
  host === "localhost" || host === "[::1]" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host)

/** Checks the token URL: https, or http to a loopback address, or an explicit opt-out. */

/** RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/

/** The shortest token lifetime accepted, in seconds. */
const MIN_EXPIRES_IN = 1

export const checkTokenUrl = (tokenUrl: string, allowInsecure: boolean): AuthenticationError | "insecure" | undefined => {
  let url: URL
  try {
    url = new URL(tokenUrl)
  } catch {
    return new AuthenticationError({ reason: "NotConfigured", message: `token URL "${tokenUrl}" is not a URL`, transient: false })
  }
  if (url.protocol === "https:" || (url.protocol === "http:" && isLoopback(url.hostname))) return undefined
  if (allowInsecure && url.protocol === "http:") return "insecure"
  return new AuthenticationError({
    reason: "NotConfigured",
    message: `token URL ${url.origin} is not https: client secrets would travel in clear text. ` +
      `Use https, or set allowInsecureTokenUrl: true if you really mean it`,
    transient: false
  })
}

/** RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined for Basic. */
const basic = (id: string, secret: string) =>
  `Basic ${Encoding.encodeBase64(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`)}`

/** A token endpoint's answer is a small JSON object: more than this is not one. */
const MAX_TOKEN_RESPONSE_SIZE = 1024 * 1024

/** The shared store's key for these credentials: one token per client, endpoint, scope and audience. */
export const sharedKey = (options: CC.Options): string =>
  [options.clientId, options.tokenUrl, options.scope ?? "", options.audience ?? ""].join("|")

export const make = (
  options: CC.Options,
  store?: TokenStore.Store
): Effect.Effect<AP.Service, AuthenticationError, HttpClient.HttpClient | Scope.Scope> =>
  Effect.gen(function*() {
    const urlCheck = checkTokenUrl(options.tokenUrl, options.allowInsecureTokenUrl === true)
    if (urlCheck instanceof AuthenticationError) return yield* urlCheck
    if (urlCheck === "insecure") {
      yield* Effect.logWarning(`sluice: ClientCredentials sends the client secret over plain HTTP to ${new URL(options.tokenUrl).origin}`)
    }
    if (options.clientId === "") {
      return yield* new AuthenticationError({ reason: "NotConfigured", message: "clientId is empty", transient: false })
    }
    const http = yield* HttpClient.HttpClient
    const tokenTimeout = Duration.decode(options.tokenTimeout ?? "10 seconds")
    const refreshMargin = Duration.toMillis(Duration.decode(options.refreshMargin ?? "60 seconds"))
    const defaultLifetime = Duration.toMillis(Duration.decode(options.defaultLifetime ?? "5 minutes"))
    const backoffBase = Duration.toMillis(Duration.decode(options.retryBackoff ?? "500 millis"))
    const permanentTtl = Duration.toMillis(Duration.decode(options.permanentFailureTtl ?? "60 seconds"))
    const where = `token endpoint ${new URL(options.tokenUrl).origin}${new URL(options.tokenUrl).pathname} (client ${options.clientId})`

    const form: Record<string, string> = { grant_type: "client_credentials" }
    if (options.scope) form["scope"] = options.scope
    if (options.audience) form["audience"] = options.audience
    const headers: Record<string, string> = { accept: "application/json" }
    if ((options.credentialsIn ?? "basic") === "basic") {
      headers["authorization"] = basic(options.clientId, Redacted.value(options.clientSecret))
    } else {
      form["client_id"] = options.clientId
      form["client_secret"] = Redacted.value(options.clientSecret)
    }
    // The client secret, in every form it is sent in, is masked in whatever the endpoint echoes back.
    const scrubber = new Scrubber()
    scrubber.add(Redacted.value(options.clientSecret))
    scrubber.add(encodeURIComponent(Redacted.value(options.clientSecret)))
    scrubber.addHeaders({ authorization: basic(options.clientId, Redacted.value(options.clientSecret)) })
    const said = (text: string) => excerpt(scrubber.scrub(text.slice(0, ERROR_BODY_READ_LIMIT)))

    const request = HttpClientRequest.post(options.tokenUrl, {
      headers,
      body: HttpBody.text(new URLSearchParams(form).toString(), "application/x-www-form-urlencoded")
    })

    const failure = (reason: AP.AuthenticationErrorReason, message: string, transient: boolean, status?: number) =>
      new AuthenticationError({ reason, message: `${where}: ${message}`, transient, ...(status !== undefined ? { status } : {}) })

    const fetchToken: Effect.Effect<TokenCache.Fetched, AuthenticationError> = Effect.gen(function*() {
      const response = yield* http.execute(request).pipe(
        Effect.mapError((e) => failure("TokenEndpointError", `unreachable: ${causeInfo(e.cause).message}`, true))
      )
      const text = yield* readText(response, MAX_TOKEN_RESPONSE_SIZE, false, (overflow) => overflow).pipe(
        Effect.mapError((e) =>
          "_tag" in e
            ? failure("TokenEndpointError", `answer broke off: ${causeInfo(e.cause).message}`, true)
            : failure("InvalidTokenResponse", `the answer is larger than ${MAX_TOKEN_RESPONSE_SIZE} bytes`, true, response.status)
        )
      )
      let body: any
      try {
        body = text === "" ? undefined : JSON.parse(text)
      } catch {
        body = undefined
      }
      if (response.status !== 200) {
        const code = typeof body?.error === "string" ? body.error : undefined
        const detail = code
          ? `${said(code)}${typeof body?.error_description === "string" ? `: ${said(body.error_description)}` : ""}`
          : said(text)
        if (response.status === 429 || response.status >= 500) {
          return yield* failure("TokenEndpointError", `answered ${response.status} (will retry): ${detail}`, true, response.status)
        }
        if (response.status === 400 || response.status === 401 || response.status === 403) {
          const invalid = code === undefined || PERMANENT_ERRORS.has(code) || response.status !== 400
          return yield* failure(
            invalid ? "InvalidCredentials" : "TokenEndpointError",
            `refused the client credentials (${response.status}): ${detail}`,
            false,
            response.status
          )
        }
        return yield* failure("TokenEndpointError", `answered ${response.status}: ${detail}`, false, response.status)
      }
      const token = body?.access_token
      const type = body?.token_type
      const rawExpiresIn: unknown = body?.expires_in
      // A number, or a decimal string as some servers send; `true`, "" or "1h" are not.
      const expiresIn = rawExpiresIn === undefined
        ? undefined
        : typeof rawExpiresIn === "number"
        ? rawExpiresIn
        : typeof rawExpiresIn === "string" && /^\s*\d+(\.\d+)?\s*$/.test(rawExpiresIn)
        ? Number(rawExpiresIn)
        : Number.NaN
      if (typeof token !== "string" || token === "") {
        return yield* failure("InvalidTokenResponse", "the answer has no access_token", true, 200)
      }
      if (!B64TOKEN.test(token)) {
        // A CR/LF (or any character outside RFC 6750's b64token) would make every request fail,
        // cached for the token's whole lifetime. The token itself is never quoted.
        return yield* failure(
          "InvalidTokenResponse",
          `access_token (${token.length} characters) has characters a bearer token may not hold (RFC 6750 b64token)`,
          true,
          200
        )
      }
      if (type !== undefined && (typeof type !== "string" || type.toLowerCase() !== "bearer")) {
        return yield* failure("InvalidTokenResponse", `token_type "${said(String(type))}" is not Bearer`, false, 200)
      }
      if (expiresIn !== undefined && !(Number.isFinite(expiresIn) && expiresIn >= MIN_EXPIRES_IN)) {
        // Below a second, every call would fetch a token of its own.
        return yield* failure(
          "InvalidTokenResponse",
          `expires_in ${JSON.stringify(rawExpiresIn)?.slice(0, 40)} is not a number of seconds of at least ${MIN_EXPIRES_IN}`,
          true,
          200
        )
      }
      return {
        headers: { authorization: `Bearer ${token}` },
        lifetimeMillis: expiresIn !== undefined ? expiresIn * 1000 : defaultLifetime
      }
    }).pipe(
      Effect.timeoutFail({
        duration: tokenTimeout,
        onTimeout: () => failure("TokenEndpointTimeout", `no answer within ${Duration.format(tokenTimeout)}`, true)
      }),
      Effect.withSpan("sluice.auth.client_credentials", { attributes: { "oauth.client_id": options.clientId } })
    )

    const shared: TokenCache.Shared | undefined = store === undefined ? undefined : {
      store,
      key: options.sharedKey ?? sharedKey(options),
      owner: `sluice-${(yield* Random.nextInt).toString(36)}-${(yield* Random.nextInt).toString(36)}`,
      // A refresher that died frees the lock once its token request would have timed out.
      lockTtlMillis: Duration.toMillis(tokenTimeout) + 1_000,
      waitMillis: Duration.toMillis(tokenTimeout)
    }
    const cache = yield* TokenCache.make(fetchToken, {
      refreshMarginMillis: refreshMargin,
      backoffBaseMillis: backoffBase,
      permanentTtlMillis: permanentTtl
    }, shared)
    return { ...cache, refreshable: true, secretHeaders: ["authorization"] } satisfies AP.Service
  })
