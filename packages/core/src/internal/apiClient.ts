import * as Headers from "@effect/platform/Headers"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import type { HttpMethod } from "@effect/platform/HttpMethod"
import * as TraceContext from "@effect/platform/HttpTraceContext"
import * as UrlParams from "@effect/platform/UrlParams"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import { constTrue } from "effect/Function"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as ApiClient from "../ApiClient.js"
import type * as AuthProvider from "../AuthProvider.js"
import type * as CircuitBreaker from "../CircuitBreaker.js"
import * as AuthProviderModule from "../AuthProvider.js"
import type * as RateLimiter from "../RateLimiter.js"
import type * as Retry from "../Retry.js"
import {
  excerpt,
  HttpStatusError,
  RequestEncodeError,
  ResponseDecodeError,
  ResponseTooLargeError,
  ServerSideRateLimitError
} from "../ApiError.js"
import * as Redirects from "../Redirects.js"
import * as RetryAfter from "../RetryAfter.js"
import * as Sse from "../Sse.js"
import * as TransportDeadline from "../TransportDeadline.js"
import { fromHttpClientError, totalTimeout } from "./errors.js"
import * as ResponseBody from "./responseBody.js"
import { Scrubber } from "./scrub.js"

const EMPTY_OPTIONS: ApiClient.RequestOptions<any, any> = {}

/** 32 MiB: far above any JSON answer an API sends, far below what would take the process down. */
export const DEFAULT_MAX_RESPONSE_SIZE = 32 * 1024 * 1024

/** `https://x/api/` and `https://x/api` are the same base. */
export const normaliseBaseUrl = (url: string): string => url.replace(/\/+$/, "")

const TEMPLATE = /\{([^}]+)\}/g

/**
 * `/users/{id}` with `{ id: "a b" }` is `/users/a%20b`. A missing parameter is an encode error,
 * and so is `.` or `..`: encoding does not help there, since the URL standard reads `%2E%2E` as
 * `..` too, so `/users/{id}/profile` with `id: ".."` would request `/profile`.
 */
export const expandPath = (path: string, params: ApiClient.RequestOptions["path"]): string => {
  if (params === undefined || path.indexOf("{") === -1) return path
  return path.replace(TEMPLATE, (_, name: string) => {
    const value = params[name]
    if (value === undefined) throw new Error(`path parameter "${name}" is missing`)
    const text = String(value)
    if (text === "." || text === "..") {
      throw new Error(`path parameter "${name}" is "${text}", which would climb out of the path template`)
    }
    return encodeURIComponent(text)
  })
}

const ABSOLUTE = /^[a-z][a-z0-9+.-]*:\/\//i

const originOf = (url: string): string | undefined => {
  try {
    return new URL(url).origin
  } catch {
    return undefined
  }
}

/**
 * Why a base URL is refused, or `undefined` when it is fine: it must parse, be
 * http(s), and carry no `user:password@` (which would put the password into
 * every error message and span).
 */
export const invalidBaseUrl = (baseUrl: string): string | undefined => {
  let url: URL
  try {
    url = new URL(baseUrl)
  } catch {
    return `baseUrl is not a URL: ${JSON.stringify(baseUrl.slice(0, 200))}`
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `baseUrl must be http or https, not ${url.protocol}`
  }
  if (url.username !== "" || url.password !== "") {
    url.username = ""
    url.password = ""
    return `baseUrl must not carry credentials (user:password@): use ${url.href.replace(/\/$/, "")} ` +
      `with AuthProvider.layerBasic(username, Redacted.make(password)) instead`
  }
  return undefined
}

const paramsToUrlParams = (params: NonNullable<ApiClient.RequestOptions["params"]>): UrlParams.UrlParams => {
  const out: Array<[string, string]> = []
  for (const key in params) {
    const value = params[key]
    if (value === undefined) continue
    if (Array.isArray(value)) for (const v of value) out.push([key, String(v)])
    else out.push([key, String(value)])
  }
  return out
}

type Decoder<A> = (u: unknown) => Effect.Effect<A, ParseResult.ParseError>

export interface Services {
  readonly auth?: AuthProvider.Service | undefined
  readonly limiter?: RateLimiter.Service | undefined
  readonly retry?: Retry.Service | undefined
  readonly breaker?: CircuitBreaker.Service | undefined
}

/** An attempt's outcome as the circuit breaker sees it: the answer's status, or what failed. */
const observeAttempt = (exit: Exit.Exit<unknown, ApiClient.ApiClient.Error>, status: number): CircuitBreaker.Observation => {
  if (Exit.isSuccess(exit)) return { _tag: "Response", status }
  const error = Cause.failureOption(exit.cause)
  if (Option.isNone(error)) return { _tag: "Failure", error: Cause.squash(exit.cause) }
  const e = error.value
  if (e._tag === "HttpStatusError") return { _tag: "Response", status: e.status }
  if (e._tag === "ServerSideRateLimitError") return { _tag: "Response", status: 429 }
  return { _tag: "Failure", error: e }
}

export const make = (
  options: ApiClient.Options,
  base: HttpClient.HttpClient,
  services: Services = {}
): ApiClient.ApiClient.Service => {
  const { auth, breaker, limiter, retry } = services
  const baseUrl = normaliseBaseUrl(options.baseUrl)
  const timeout = Duration.decode(options.timeout ?? Duration.seconds(10))
  const apiKeyHeader = (options.apiKeyHeader ?? "X-API-Key").toLowerCase()
  const maxResponseSize = options.maxResponseSize ?? DEFAULT_MAX_RESPONSE_SIZE

  const baseOrigin = originOf(baseUrl)
  const allowAbsoluteUrls = options.allowAbsoluteUrls === true

  // Headers for the base URL's origin (with the API key), and for any other origin (without).
  let foreignDefaults = Headers.fromInput({ accept: "application/json" })
  if (options.headers) foreignDefaults = Headers.merge(foreignDefaults, Headers.fromInput(options.headers))
  const defaults = options.apiKey !== undefined
    ? Headers.set(foreignDefaults, apiKeyHeader, Redacted.value(options.apiKey))
    : foreignDefaults
  // Default headers that carry credentials stay at home too.
  foreignDefaults = Headers.remove(foreignDefaults, [...Redirects.CREDENTIAL_HEADERS, "x-api-key", apiKeyHeader])

  // Every secret this client sends, masked in whatever a server echoes back into an error.
  const scrubber = new Scrubber()
  if (options.apiKey !== undefined) scrubber.add(Redacted.value(options.apiKey))
  for (const name of [...Redirects.CREDENTIAL_HEADERS, "x-api-key"]) {
    const value = defaults[name]
    if (value !== undefined) scrubber.addHeaders({ [name]: value })
  }
  let lastCredential: AuthProvider.Credential | undefined
  const noteCredential = (credential: AuthProvider.Credential) => {
    if (credential === lastCredential) return
    lastCredential = credential
    scrubber.addHeaders(credential.headers)
  }
  /** An excerpt of what a server said, with every secret the client holds masked. */
  const bodyExcerpt = (text: string) =>
    excerpt(scrubber.scrub(text.length > ResponseBody.ERROR_BODY_READ_LIMIT ? text.slice(0, ResponseBody.ERROR_BODY_READ_LIMIT) : text))

  // Every header that carries a credential: the API key's and every one the auth provider sets.
  const credentialHeaders = [
    ...(options.apiKey !== undefined ? [apiKeyHeader] : []),
    ...(auth?.secretHeaders ?? []).map((h) => h.toLowerCase())
  ]

  // Only a template that is itself an absolute URL can name another origin: parameters are encoded.
  const isForeign = (template: string, url: string) => ABSOLUTE.test(template) && originOf(url) !== baseOrigin

  const decorate = (inner: HttpClient.HttpClient): HttpClient.HttpClient => {
    let c = inner
    if (options.followRedirects !== undefined && options.followRedirects !== false) {
      c = Redirects.follow({
        maxRedirects: options.followRedirects === true ? 10 : options.followRedirects,
        sensitiveHeaders: credentialHeaders
      })(c)
    }
    return options.transformClient ? options.transformClient(c) : c
  }
  const client = decorate(base)
  // A transport that enforces a deadline itself (TransportDeadline: NodeTransport, also under
  // Redirects.follow or a TransportDeadline.transform) gets the attempt's deadline as an argument;
  // any other client is raced against the attempt timeout, which also bounds what it adds.
  const deadlineClient = TransportDeadline.isDeadlineClient(client) ? client : undefined
  // One span per request: ApiClient's own (method, URL template, status), which also propagates the
  // trace headers; the platform's per-attempt client span is switched off for these requests
  // (a DeadlineClient's executeBefore opens none: TransportDeadline).
  const traced = HttpClient.withTracerDisabledWhen(client, constTrue)
  const timeoutMillis = Duration.isFinite(timeout) ? Duration.toMillis(timeout) : undefined

  /**
   * `attempt` bounded by the attempt timeout: over a `DeadlineClient` (when
   * `atTransport`) it gets the deadline to send with, and nothing is armed
   * here; otherwise it is raced (`Effect.timeoutFail`).
   */
  const bounded = <A, E>(
    attempt: (deadline: number | undefined) => Effect.Effect<A, E>,
    atTransport: boolean,
    method: string,
    url: string
  ): Effect.Effect<A, E | ApiClient.ApiClient.Error> => {
    if (timeoutMillis === undefined) return attempt(undefined)
    if (atTransport) return Effect.clockWith((clock) => attempt(clock.unsafeCurrentTimeMillis() + timeoutMillis))
    return Effect.timeoutFail(attempt(undefined), { duration: timeout, onTimeout: () => totalTimeout(method, url, timeout) })
  }

  // The platform redacts authorization and x-api-key in logs and spans already; other secret headers are registered.
  const extraSecrets = credentialHeaders.filter((h) => !["authorization", "cookie", "set-cookie", "x-api-key"].includes(h))
  const registerRedacted: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R> = extraSecrets.length > 0
    ? Effect.locallyWith(Headers.currentRedactedNames, (names) => [...names, ...extraSecrets])
    : (effect) => effect

  const buildRequest = (
    method: HttpMethod,
    path: string,
    opts: ApiClient.RequestOptions<any, any>
  ): HttpClientRequest.HttpClientRequest | RequestEncodeError => {
    const expanded = opts.path === undefined ? path : expandPath(path, opts.path)
    let url: string
    let headers = defaults
    if (ABSOLUTE.test(expanded)) {
      // An absolute URL as a path (axios' CVE-2025-27152): refused when it names another origin,
      // unless allowed; even then the API key and the auth provider's credential stay at home.
      url = expanded
      const origin = originOf(expanded)
      if (origin === undefined || origin !== baseOrigin) {
        if (!allowAbsoluteUrls || origin === undefined) {
          return new RequestEncodeError({
            method,
            url: origin ?? expanded.slice(0, 200),
            description: origin === undefined
              ? "the path is not a valid absolute URL"
              : `the path is an absolute URL of another origin (${origin}) than the base URL (${baseOrigin}); ` +
                "pass a path, or set allowAbsoluteUrls: true (credentials are never sent to another origin)"
          })
        }
        headers = foreignDefaults
      }
    } else {
      url = expanded.charCodeAt(0) === 47 ? baseUrl + expanded : `${baseUrl}/${expanded}`
    }
    if (opts.headers !== undefined) headers = Headers.merge(headers, Headers.fromInput(opts.headers))
    let body: HttpBody.HttpBody = HttpBody.empty
    if (opts.body !== undefined) {
      let text: string | undefined
      try {
        text = JSON.stringify(opts.body)
      } catch (cause) {
        return new RequestEncodeError({ method, url, description: `body is not JSON-serialisable: ${String(cause)}` })
      }
      body = HttpBody.text(text ?? "null", "application/json")
    }
    return HttpClientRequest.make(method)(url, {
      headers,
      body,
      ...(opts.params !== undefined ? { urlParams: paramsToUrlParams(opts.params) } : {})
    })
  }

  const tryBuild = (method: HttpMethod, path: string, opts: ApiClient.RequestOptions<any, any>) => {
    try {
      return buildRequest(method, path, opts)
    } catch (cause) {
      return new RequestEncodeError({ method, url: path, description: (cause as Error).message })
    }
  }

  /** A success's body: at most `maxResponseSize` bytes, or a `ResponseTooLargeError`. */
  const readBody = (
    response: HttpClientResponse.HttpClientResponse,
    method: string,
    url: string
  ): Effect.Effect<string, ApiClient.ApiClient.Error> =>
    Effect.mapError(
      ResponseBody.readText(response, maxResponseSize, false, (overflow) =>
        new ResponseTooLargeError({ method, url, status: response.status, maxResponseSize, ...overflow })),
      (error) => error._tag === "ResponseError" ? fromHttpClientError(error, method, url, timeout) : error
    )

  /** An error answer's body, for its excerpt: the first bytes only, whatever its size. */
  const readErrorBody = (
    response: HttpClientResponse.HttpClientResponse,
    method: string,
    url: string
  ): Effect.Effect<string, ApiClient.ApiClient.Error> =>
    Effect.mapError(
      ResponseBody.readText(response, ResponseBody.ERROR_BODY_READ_LIMIT, true, () => undefined as never),
      (error: HttpClientError.ResponseError) => fromHttpClientError(error, method, url, timeout)
    )

  const failStatus = (
    response: HttpClientResponse.HttpClientResponse,
    method: string,
    url: string
  ): Effect.Effect<never, ApiClient.ApiClient.Error> =>
    Effect.flatMap(readErrorBody(response, method, url), (text): Effect.Effect<never, ApiClient.ApiClient.Error> => {
      if (response.status === 429) {
        return Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.fail(
            new ServerSideRateLimitError({
              method,
              url,
              retryAfter: RetryAfter.parse(response.headers["retry-after"], now),
              body: bodyExcerpt(text)
            })
          ))
      }
      const retryAfter = response.headers["retry-after"]
      if (retryAfter === undefined) {
        return Effect.fail(new HttpStatusError({ status: response.status, method, url, body: bodyExcerpt(text) }))
      }
      return Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.fail(
          new HttpStatusError({
            status: response.status,
            method,
            url,
            body: bodyExcerpt(text),
            retryAfter: RetryAfter.parse(retryAfter, now)
          })
        ))
    })

  const decodeBody = <A>(
    response: HttpClientResponse.HttpClientResponse,
    method: string,
    url: string,
    decode: Decoder<A> | undefined
  ): Effect.Effect<A, ApiClient.ApiClient.Error> => {
    const status = response.status
    const parse = (text: string): Effect.Effect<A, ResponseDecodeError> => {
      let json: unknown = undefined
      if (text !== "") {
        try {
          json = JSON.parse(text)
        } catch (cause) {
          return Effect.fail(
            new ResponseDecodeError({
              method,
              url,
              status,
              reason: "Json",
              issue: scrubber.scrub(cause instanceof Error ? cause.message : String(cause)),
              body: bodyExcerpt(text)
            })
          )
        }
      }
      if (decode === undefined) return Effect.succeed(json as A)
      return Effect.mapError(decode(json), (error) =>
        new ResponseDecodeError({
          method,
          url,
          status,
          reason: "Schema",
          issue: scrubber.scrub(ParseResult.TreeFormatter.formatErrorSync(error)),
          body: bodyExcerpt(text)
        }))
    }
    if (status === 204 || status === 205 || method === "HEAD") {
      // No body by definition: drop whatever the connection holds and decode "no value".
      return Effect.zipRight(Effect.ignore(response.arrayBuffer), parse(""))
    }
    return Effect.flatMap(readBody(response, method, url), parse)
  }

  /** `deadline`: the attempt's, for a transport that enforces it (`TransportDeadline`). */
  const send = (request: HttpClientRequest.HttpClientRequest, deadline: number | undefined) =>
    Effect.mapError(
      deadline === undefined
        ? traced.execute(request)
        : deadlineClient!.executeBefore(request, deadline),
      (error) => fromHttpClientError(error, request.method, request.url, timeout)
    )

  /**
   * One request, end to end: retry (outermost), then per attempt the rate
   * limiter's permit, then the credential (taken right before sending, so a
   * long wait for a permit never sends an expired token), then the transport
   * under the attempt timeout, then `handle` on the response. A 401 with a
   * refreshable credential is refreshed once and replayed once, through the
   * limiter again.
   *
   * `atTransport`: the attempt timeout may be left to the transport
   * (`TransportDeadline`), which bounds the request and its whole body.
   * `foreign`: the URL is of another origin than the base URL's (only with
   * `allowAbsoluteUrls`): no credential is taken or sent.
   */
  const obtain = <X>(
    req: HttpClientRequest.HttpClientRequest,
    handle: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<X, ApiClient.ApiClient.Error>,
    atTransport: boolean,
    foreign: boolean,
    cost: number | undefined
  ): Effect.Effect<X, ApiClient.ApiClient.Error> => {
    // A request to another origin (allowAbsoluteUrls) never carries the provider's credential.
    const provider = foreign ? undefined : auth
    const method = req.method
    const url = req.url
    const limited = limiter !== undefined && limiter.appliesTo(req)
    /** One attempt under the circuit breaker (before the limiter: an open circuit takes no permit). */
    const attempt = (onCredential?: (c: AuthProvider.Credential) => void): Effect.Effect<X, ApiClient.ApiClient.Error> => {
      if (breaker === undefined) return attemptLimited(handle, onCredential)
      return Effect.suspend(() => {
        let status = 0
        return breaker.run(
          attemptLimited((response) => {
            status = response.status
            return handle(response)
          }, onCredential),
          (exit) => observeAttempt(exit, status)
        )
      })
    }
    const attemptLimited = (
      handle: (response: HttpClientResponse.HttpClientResponse) => Effect.Effect<X, ApiClient.ApiClient.Error>,
      onCredential?: (c: AuthProvider.Credential) => void
    ): Effect.Effect<X, ApiClient.ApiClient.Error> => {
      if (provider === undefined && !limited) {
        return bounded((deadline) => Effect.flatMap(send(req, deadline), handle), atTransport, method, url)
      }
      return Effect.suspend(() => {
        // The response headers, for the limiter to learn from (RateLimit-*).
        let headers: Readonly<Record<string, string>> = {}
        const exchange = (request: HttpClientRequest.HttpClientRequest) =>
          bounded(
            (deadline) =>
              Effect.flatMap(send(request, deadline), (response) => {
                headers = response.headers
                return handle(response)
              }),
            atTransport,
            method,
            url
          )
        const sent = provider === undefined ? exchange(req) : Effect.flatMap(provider.credential, (credential) => {
          noteCredential(credential)
          onCredential?.(credential)
          return exchange(HttpClientRequest.setHeaders(req, credential.headers))
        })
        if (!limited) return sent
        return limiter!.run(sent, (exit): RateLimiter.Outcome => {
          if (Exit.isSuccess(exit)) return { _tag: "Success", headers }
          const error = Cause.failureOption(exit.cause)
          if (Option.isNone(error)) return { _tag: "Neutral" }
          const e = error.value
          if (e._tag === "ServerSideRateLimitError") return { _tag: "RateLimited", retryAfter: e.retryAfter, headers }
          // A 4xx answer was admitted by the server's quota; 5xx and transport failures teach nothing.
          if (e._tag === "HttpStatusError" && e.status < 500) return { _tag: "Success", headers }
          return { _tag: "Neutral" }
        }, cost)
      })
    }
    let once: Effect.Effect<X, ApiClient.ApiClient.Error>
    if (provider === undefined) {
      once = attempt()
    } else {
      const isUnauthorized = (e: ApiClient.ApiClient.Error) => e._tag === "HttpStatusError" && e.status === 401
      const toAuthError = (e: ApiClient.ApiClient.Error) =>
        isUnauthorized(e) ? AuthProviderModule.unauthorizedAfterRefresh(method, url) : e
      once = Effect.suspend(() => {
        let used: AuthProvider.Credential | undefined
        const first = attempt((c) => {
          used = c
        })
        if (!provider.refreshable) return Effect.mapError(first, toAuthError)
        return Effect.catchIf(
          first,
          isUnauthorized,
          () => Effect.zipRight(used ? provider.rejected(used) : Effect.void, Effect.mapError(attempt(), toAuthError))
        )
      })
    }
    if (retry === undefined) return once
    // With retries, each attempt is a span of its own under the request's.
    return retry.retry(Effect.withSpan(once, "sluice.attempt", { captureStackTrace: false }), { method, headers: req.headers })
  }

  const request = <A = unknown, I = unknown>(
    method: HttpMethod,
    path: string,
    opts?: ApiClient.RequestOptions<A, I>
  ): Effect.Effect<A, ApiClient.ApiClient.Error> => {
    const o: ApiClient.RequestOptions<A, I> = opts ?? EMPTY_OPTIONS
    const built = tryBuild(method, path, o)
    if (built instanceof RequestEncodeError) return Effect.fail(built)
    const req = built
    const url = req.url
    const decode = o.schema === undefined ? undefined : (Schema.decodeUnknown(o.schema) as Decoder<A>)
    // A query written into the template may hold a key: it never goes into the span.
    const template = path.indexOf("?") === -1 ? path : path.slice(0, path.indexOf("?"))
    return Effect.useSpan(
      `sluice ${method} ${template}`,
      { kind: "client", captureStackTrace: false, attributes: { "http.request.method": method, "url.template": template } },
      (span) =>
        Effect.flatMap(FiberRef.get(HttpClient.currentTracerPropagation), (propagate) =>
          obtain(
            propagate ? HttpClientRequest.setHeaders(req, TraceContext.toHeaders(span)) : req,
            (response): Effect.Effect<A, ApiClient.ApiClient.Error> => {
              span.attribute("http.response.status_code", response.status)
              return response.status >= 200 && response.status < 300
                ? decodeBody(response, method, url, decode)
                : failStatus(response, method, url)
            },
            deadlineClient !== undefined,
            isForeign(path, url),
            o.cost
          )).pipe(Effect.withParentSpan(span), registerRedacted)
    )
  }

  const stream = (
    method: HttpMethod,
    path: string,
    opts?: ApiClient.RequestOptions
  ): Stream.Stream<Uint8Array, ApiClient.ApiClient.Error> => {
    const o = opts ?? EMPTY_OPTIONS
    return Stream.unwrapScoped(Effect.suspend(() => {
      const built = tryBuild(method, path, o)
      if (built instanceof RequestEncodeError) return Effect.fail(built)
      const req = HttpClientRequest.setHeader(built, "accept", "*/*")
      const url = req.url
      // For a stream the timeout bounds the wait for the response headers; the body may run long,
      // so the deadline is never left to the transport (it would cut the body off).
      return obtain(
        req,
        (response) =>
          response.status >= 200 && response.status < 300
            ? Effect.succeed(Stream.mapError(response.stream, (error) => fromHttpClientError(error, method, url)))
            : failStatus(response, method, url),
        false,
        isForeign(path, url),
        o.cost
      ).pipe(registerRedacted)
    }))
  }

  const withMethod = (method: HttpMethod) =>
  <A = unknown, I = unknown>(path: string, opts?: ApiClient.RequestOptions<A, I>) => request(method, path, opts)

  return {
    httpClient: client,
    baseUrl,
    request,
    get: withMethod("GET"),
    post: withMethod("POST"),
    put: withMethod("PUT"),
    patch: withMethod("PATCH"),
    del: withMethod("DELETE"),
    stream,
    postStream: (path, opts) => stream("POST", path, opts),
    postStreamLines: (path, opts) => stream("POST", path, opts).pipe(Stream.decodeText(), Sse.splitLines),
    postStreamEvents: (path, opts) => Sse.decode(stream("POST", path, opts))
  }
}
