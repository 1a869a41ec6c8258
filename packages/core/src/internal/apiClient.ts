/**
 * `ApiClient`'s request path. A request is built (`requestBuilder.ts`), then
 * sent through, outermost first: its span, `Retry`, the 401 rule (a refused
 * credential dropped and the attempt replayed once: `unauthorized.ts`), the
 * circuit breaker, the rate limiter's permit (its outcome: `outcome.ts`), the
 * credential, the attempt's deadline and the transport; the response becomes
 * a value or a typed error (`responseReader.ts`).
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import type { HttpMethod } from "@effect/platform/HttpMethod"
import * as TraceContext from "@effect/platform/HttpTraceContext"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { constTrue } from "effect/Function"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as ApiClient from "../ApiClient.js"
import { type HttpStatusError, RequestEncodeError } from "../ApiError.js"
import type * as AuthProvider from "../AuthProvider.js"
import * as AuthProviderModule from "../AuthProvider.js"
import type * as CircuitBreaker from "../CircuitBreaker.js"
import type * as RateLimiter from "../RateLimiter.js"
import * as Redirects from "../Redirects.js"
import type * as Retry from "../Retry.js"
import * as Sse from "../Sse.js"
import * as TransportDeadline from "../TransportDeadline.js"
import { observeFailure } from "./circuitBreakerService.js"
import { fromHttpClientError, shownUrl, totalTimeout } from "./errors.js"
import { setEach } from "./headers.js"
import { outcomeOfStatus } from "./outcome.js"
import { inSpan } from "./requestSpan.js"
import { replayOnce } from "./unauthorized.js"
import { makeRequestBuilder, normaliseBaseUrl } from "./requestBuilder.js"
import { type Decoder, makeResponseReader } from "./responseReader.js"
import { Scrubber } from "./scrub.js"

const EMPTY_OPTIONS: ApiClient.RequestOptions<any, any> = {}

const noop = (): void => {}
const isUnauthorized = (e: ApiClient.ApiClient.Error): e is HttpStatusError => e._tag === "HttpStatusError" && e.status === 401

/** 32 MiB: far above any JSON answer an API sends, far below what would take the process down. */
export const DEFAULT_MAX_RESPONSE_SIZE = 32 * 1024 * 1024

export { invalidBaseUrl } from "./requestBuilder.js"

export interface Services {
  readonly auth?: AuthProvider.Service | undefined
  readonly limiter?: RateLimiter.Service | undefined
  readonly retry?: Retry.Service | undefined
  readonly breaker?: CircuitBreaker.Service | undefined
}

/** An attempt's outcome as the circuit breaker sees it: the answer's status, or what failed. */
const observeAttempt = (exit: Exit.Exit<unknown, ApiClient.ApiClient.Error>, status: number): CircuitBreaker.Observation =>
  Exit.isSuccess(exit) ? { _tag: "Response", status } : observeFailure(exit.cause)

export const make = (
  options: ApiClient.Options,
  base: HttpClient.HttpClient,
  services: Services = {}
): ApiClient.ApiClient.Service => {
  const { auth, breaker, limiter, retry } = services
  const baseUrl = normaliseBaseUrl(options.baseUrl)
  const timeout = Duration.decode(options.timeout ?? Duration.seconds(10))
  const maxResponseSize = options.maxResponseSize ?? DEFAULT_MAX_RESPONSE_SIZE
  const builder = makeRequestBuilder(options, baseUrl)
  const { apiKeyHeader, defaults } = builder

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
  const { decodeBody, failStatus } = makeResponseReader({ maxResponseSize, timeout, scrubber })

  // Every header that carries a credential: the API key's and every one the auth provider sets.
  const credentialHeaders = [
    ...(options.apiKey !== undefined ? [apiKeyHeader] : []),
    ...(auth?.secretHeaders ?? []).map((h) => h.toLowerCase())
  ]

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

  // The platform redacts authorization and x-api-key in logs and spans already; other secret headers are registered.
  const extraSecrets = credentialHeaders.filter((h) => !["authorization", "cookie", "set-cookie", "x-api-key"].includes(h))
  const registerRedacted: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R> = extraSecrets.length > 0
    ? Effect.locallyWith(Headers.currentRedactedNames, (names) => [...names, ...extraSecrets])
    : (effect) => effect

  /** `api.get(path, options)` and the like: the request built, its span opened, sent (`obtain`), its answer read. */
  const request = <A = unknown, I = unknown>(
    method: HttpMethod,
    path: string,
    opts?: ApiClient.RequestOptions<A, I>
  ): Effect.Effect<A, ApiClient.ApiClient.Error> => {
    const o: ApiClient.RequestOptions<A, I> = opts ?? EMPTY_OPTIONS
    const built = builder.build(method, path, o)
    if (built instanceof RequestEncodeError) return Effect.fail(built)
    const req = built
    // What errors show: a query written into the template may hold a key.
    const url = shownUrl(req.url)
    const decode = o.schema === undefined ? undefined : (Schema.decodeUnknown(o.schema) as Decoder<A>)
    // A query written into the template may hold a key: it never goes into the span.
    const template = path.indexOf("?") === -1 ? path : path.slice(0, path.indexOf("?"))
    return registerRedacted(inSpan(
      `sluice ${method} ${template}`,
      { kind: "client", captureStackTrace: false, attributes: { "http.request.method": method, "url.template": template } },
      (span, fiber) =>
        obtain(
          fiber.getFiberRef(HttpClient.currentTracerPropagation) ? setEach(req, TraceContext.toHeaders(span)) : req,
          (response): Effect.Effect<A, ApiClient.ApiClient.Error> => {
            span.attribute("http.response.status_code", response.status)
            return response.status >= 200 && response.status < 300
              ? decodeBody(response, method, url, decode)
              : failStatus(response, method, url)
          },
          deadlineClient !== undefined,
          builder.isForeign(path, url),
          o.cost
        )
    ))
  }

  const stream = (
    method: HttpMethod,
    path: string,
    opts?: ApiClient.RequestOptions
  ): Stream.Stream<Uint8Array, ApiClient.ApiClient.Error> => {
    const o = opts ?? EMPTY_OPTIONS
    return Stream.unwrapScoped(Effect.suspend(() => {
      const built = builder.build(method, path, o)
      if (built instanceof RequestEncodeError) return Effect.fail(built)
      const req = HttpClientRequest.setHeader(built, "accept", "*/*")
      const url = shownUrl(req.url)
      // For a stream the timeout bounds the wait for the response headers; the body may run long,
      // so the deadline is never left to the transport (it would cut the body off).
      return obtain(
        req,
        (response) =>
          response.status >= 200 && response.status < 300
            ? Effect.succeed(Stream.mapError(response.stream, (error) => fromHttpClientError(error, method, url)))
            : failStatus(response, method, url),
        false,
        builder.isForeign(path, url),
        o.cost
      ).pipe(registerRedacted)
    }))
  }

  /**
   * One request, end to end, each step below in the order a request takes
   * them: retry (outermost), the 401 rule, the circuit breaker, the rate
   * limiter's permit, the credential (taken right before sending, so a long
   * wait for a permit never sends an expired token), then the transport
   * under the attempt's deadline, and `handle` on the response.
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
    type Attempt = Effect.Effect<X, ApiClient.ApiClient.Error>
    type Handle = (response: HttpClientResponse.HttpClientResponse) => Attempt
    type OnCredential = (credential: AuthProvider.Credential) => void
    // A request to another origin (allowAbsoluteUrls) never carries the provider's credential.
    const provider = foreign ? undefined : auth
    const method = req.method
    const url = shownUrl(req.url)
    const limited = limiter !== undefined && limiter.appliesTo(req)
    return withRetries()

    /**
     * Retry, outermost. The first attempt runs in the request's span; each
     * resend is a span of its own under it (`http.request.resend_count`, as
     * OpenTelemetry's HTTP conventions name it). A span for every attempt
     * cost a request that succeeds at once as much CPU as the rest of `Retry`
     * (BENCHMARKS.md 1b), and told nothing the request's span does not.
     */
    function withRetries(): Attempt {
      if (retry === undefined) return withReplay()
      const attempt = withReplay()
      let sent = 0
      return retry.retry(
        Effect.suspend(() => {
          const resendCount = sent++
          return resendCount === 0 ? attempt : Effect.withSpan(attempt, "sluice.attempt", {
            captureStackTrace: false,
            attributes: { "http.request.resend_count": resendCount }
          })
        }),
        { method, headers: req.headers }
      )
    }

    /** The 401 rule (`unauthorized.ts`): a refused credential dropped, the attempt replayed once. */
    function withReplay(): Attempt {
      if (provider === undefined) return throughBreaker(noop)
      return replayOnce(provider, throughBreaker, {
        is: isUnauthorized,
        // A 401 that was not replayed (the provider cannot refresh) or came again after the replay.
        last: () => Effect.fail(AuthProviderModule.unauthorizedAfterRefresh(method, url))
      })
    }

    /** The circuit breaker, before the limiter: an open circuit takes no permit and sends nothing. */
    function throughBreaker(onCredential: OnCredential): Attempt {
      if (breaker === undefined) return withPermit(handle, onCredential)
      return Effect.suspend(() => {
        let status = 0
        const observed: Handle = (response) => {
          status = response.status
          return handle(response)
        }
        return breaker.run(withPermit(observed, onCredential), (exit) => observeAttempt(exit, status))
      })
    }

    /** The limiter's permit, one per attempt; what the answer teaches it (`outcome.ts`) reported back. */
    function withPermit(handle: Handle, onCredential: OnCredential): Attempt {
      if (!limited) return withCredential(handle, onCredential)
      return Effect.suspend(() => {
        // The answer's status and headers, for the limiter to learn from (429, RateLimit-*).
        let status = 0
        let headers: Readonly<Record<string, string>> = {}
        const observed: Handle = (response) => {
          status = response.status
          headers = response.headers
          return handle(response)
        }
        return limiter!.run(withCredential(observed, onCredential), (exit): RateLimiter.Outcome => {
          // No answer (a transport failure, a timeout, an interruption) teaches nothing.
          if (status === 0) return { _tag: "Neutral" }
          // The 429's Retry-After as its error parsed it (on the Effect Clock).
          const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
          return outcomeOfStatus(status, headers, () =>
            Option.isSome(error) && error.value._tag === "ServerSideRateLimitError" ? error.value.retryAfter : Option.none())
        }, cost)
      })
    }

    /** The credential, taken right before sending. */
    function withCredential(handle: Handle, onCredential: OnCredential): Attempt {
      if (provider === undefined) return exchange(req, handle)
      return Effect.flatMap(provider.credential, (credential) => {
        noteCredential(credential)
        onCredential(credential)
        return exchange(setEach(req, credential.headers), handle)
      })
    }

    /** The transport, under the attempt's deadline; `handle` makes the answer a value or a typed error. */
    function exchange(request: HttpClientRequest.HttpClientRequest, handle: Handle): Attempt {
      return bounded((deadline) => Effect.flatMap(send(request, deadline), handle), atTransport, method, url)
    }
  }

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

  /** `deadline`: the attempt's, for a transport that enforces it (`TransportDeadline`). */
  const send = (request: HttpClientRequest.HttpClientRequest, deadline: number | undefined) =>
    Effect.mapError(
      deadline === undefined
        ? traced.execute(request)
        : deadlineClient!.executeBefore(request, deadline),
      (error) => fromHttpClientError(error, request.method, shownUrl(request.url), timeout)
    )

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
