/**
 * The Sluice stack the CLI runs requests through, built from its options:
 * `NodeTransport` → auth → limiter → circuit breaker → retry → `ApiClient`.
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import {
  ApiClient,
  AuthEnvironment,
  AuthProvider,
  CircuitBreaker,
  CircuitBreakerStore,
  ClientCredentials,
  CommandAuth,
  RateLimiter,
  RateLimiterStore,
  Retry,
  TransportDeadline
} from "@sluice/core"
import { NodeTransport } from "@sluice/node"
import { RedisStore } from "@sluice/redis"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type { Rate } from "./Spec.js"

export const AuthKind = Schema.Literal("none", "bearer", "api-key", "client-credentials", "command", "env")
export type AuthKind = typeof AuthKind.Type

export interface AuthOptions {
  readonly kind: AuthKind
  readonly token?: Redacted.Redacted<string> | undefined
  readonly apiKey?: Redacted.Redacted<string> | undefined
  readonly apiKeyHeader?: string | undefined
  readonly clientId?: string | undefined
  readonly clientSecret?: Redacted.Redacted<string> | undefined
  readonly tokenUrl?: string | undefined
  readonly scope?: string | undefined
  readonly audience?: string | undefined
  readonly command?: string | undefined
}

export interface StackOptions {
  readonly baseUrl: string
  readonly auth: AuthOptions
  readonly rate?: Rate | undefined
  readonly burst?: number | undefined
  /** A quota counted in each request's cost (LLM tokens), held alongside `rate`. */
  readonly tokenRate?: Rate | undefined
  readonly adaptive: boolean
  /** A circuit breaker with its defaults (shared through `redis` when given). */
  readonly breaker?: boolean | undefined
  readonly maxWait: Duration.Duration
  readonly concurrency: number
  readonly retries: number
  readonly maxRetryAfter: Duration.Duration
  readonly timeout: Duration.Duration
  /** Bytes a response body may have (default 32 MiB). */
  readonly maxResponseSize?: number | undefined
  /** Share the limiter's (and the breaker's) state through this Redis (`redis://…` or a unix socket path). */
  readonly redis?: string | undefined
}

/** A bad combination of options: the message says what to change. */
export class UsageError extends Schema.TaggedError<UsageError>("@sluice/cli/UsageError")("UsageError", {
  message: Schema.String
}) {}

/** Counts HTTP exchanges (attempts) and remembers the last status, per batch item. */
export interface AttemptLog {
  attempts: number
  status: number | undefined
}
export const currentAttemptLog = FiberRef.unsafeMake<AttemptLog | undefined>(undefined)

/**
 * Counts attempts and keeps the last status for the batch's records. It adds
 * no wait, so it keeps the transport's deadline (`TransportDeadline.transform`):
 * the attempt timeout stays with the transport instead of a fiber raced per attempt.
 */
const countAttempts = TransportDeadline.transform((send) => (request) =>
  Effect.flatMap(FiberRef.get(currentAttemptLog), (log) => {
    if (log === undefined) return send(request)
    log.attempts++
    return Effect.tap(send(request), (response) => {
      log.status = response.status
    })
  })
)

const need = <A>(value: A | undefined, message: string): Effect.Effect<A, UsageError> =>
  value === undefined ? Effect.fail(new UsageError({ message })) : Effect.succeed(value)

/** Where `--redis` points: a unix socket path or a `redis://` URL (a secret: it may hold a password). */
type RedisAddress = { readonly path: string } | { readonly url: Redacted.Redacted<string> }

const authLayer = (auth: AuthOptions, redis: RedisAddress | undefined) =>
  Effect.gen(function*() {
    switch (auth.kind) {
      case "none":
        return Layer.empty as Layer.Layer<never, never, never>
      case "bearer":
        return AuthProvider.layerBearer(yield* need(auth.token, "--auth bearer needs --token (or use --auth env with SLUICE_AUTH_BEARER_TOKEN)"))
      case "api-key":
        return AuthProvider.layerApiKey(
          yield* need(auth.apiKey, "--auth api-key needs --api-key (or use --auth env with SLUICE_API_KEY)"),
          auth.apiKeyHeader ?? "X-API-Key"
        )
      case "client-credentials": {
        const options: ClientCredentials.Options = {
          tokenUrl: yield* need(auth.tokenUrl, "--auth client-credentials needs --token-url"),
          clientId: yield* need(auth.clientId, "--auth client-credentials needs --client-id"),
          clientSecret: yield* need(auth.clientSecret, "--auth client-credentials needs --client-secret (or SLUICE_AUTH_CLIENT_SECRET with --auth env)"),
          scope: auth.scope,
          audience: auth.audience
        }
        // With --redis every run with these credentials shares one token.
        return redis === undefined
          ? ClientCredentials.layer(options)
          : ClientCredentials.layerShared(options).pipe(Layer.provide(RedisStore.layerTokenStore(redis)))
      }
      case "command":
        return CommandAuth.layer({ command: yield* need(auth.command, "--auth command needs --auth-command") }).pipe(
          Layer.provide(NodeContext.layer)
        )
      case "env":
        // With --redis, client credentials from the environment share their token too.
        return redis === undefined
          ? AuthEnvironment.layer().pipe(Layer.provide(NodeContext.layer))
          : Layer.unwrapScoped(
            Effect.map(RedisStore.makeTokenStore(redis), (tokenStore) => AuthEnvironment.layer({ tokenStore }))
          ).pipe(Layer.provide(NodeContext.layer))
    }
  })

/** The full stack as one layer providing `ApiClient`. */
export const layer = (options: StackOptions) =>
  Effect.gen(function*() {
    if (!(options.concurrency >= 1)) return yield* new UsageError({ message: "--concurrency must be at least 1" })
    if (!(options.retries >= 0)) return yield* new UsageError({ message: "--retries must be 0 or more" })
    const redis: RedisAddress | undefined = options.redis === undefined
      ? undefined
      : options.redis.startsWith("/") ? { path: options.redis } : { url: Redacted.make(options.redis) }
    const auth = yield* authLayer(options.auth, redis)
    if (options.rate === undefined && options.tokenRate === undefined && options.adaptive) {
      return yield* new UsageError({ message: "--adaptive needs --rate: the most the server may get, e.g. --rate 50/1s" })
    }
    const make = (rate: Rate, unit: "requests" | "tokens") =>
      options.adaptive
        ? RateLimiter.makeAdaptive({ limit: rate.limit, window: rate.window, maxWait: options.maxWait, unit, key: unit === "tokens" ? "sluice-tokens" : "sluice" })
        : RateLimiter.makeTokenBucket({
          limit: rate.limit,
          window: rate.window,
          // a tokens bucket holds one window's worth: a request may cost far more than one second's refill
          burst: unit === "tokens" ? rate.limit : options.burst,
          maxWait: options.maxWait,
          unit,
          key: unit === "tokens" ? "sluice-tokens" : "sluice"
        })
    const limiters = [
      ...(options.rate !== undefined ? [make(options.rate, "requests")] : []),
      ...(options.tokenRate !== undefined ? [make(options.tokenRate, "tokens")] : [])
    ]
    const limiter: Layer.Layer<RateLimiter.RateLimiter, never, RateLimiterStore.RateLimiterStore> | undefined =
      limiters.length === 0 ? undefined : RateLimiter.layerAll(limiters)
    const retry = Retry.layer({
      maxAttempts: options.retries + 1,
      maxRetryAfter: options.maxRetryAfter,
      retryTokenTimeouts: true
    })
    if (options.redis !== undefined && limiter === undefined && options.breaker !== true && options.auth.kind !== "client-credentials") {
      return yield* new UsageError({
        message: "--redis shares a rate limit, a circuit breaker or an OAuth2 token: give --rate, --breaker or --auth client-credentials"
      })
    }
    const store = redis === undefined ? RateLimiterStore.layerMemory : RedisStore.layer(redis)
    const breaker = options.breaker === true
      ? CircuitBreaker.layer().pipe(
        Layer.provide(redis === undefined ? CircuitBreakerStore.layerMemory : RedisStore.layerCircuitBreaker(redis))
      )
      : Layer.empty
    const services = Layer.mergeAll(
      retry,
      limiter ? limiter.pipe(Layer.provide(store)) : Layer.empty,
      breaker,
      auth
    )
    return ApiClient.layer({
      baseUrl: options.baseUrl,
      timeout: options.timeout,
      maxResponseSize: options.maxResponseSize,
      transformClient: countAttempts
    }).pipe(
      Layer.provide(services),
      Layer.provide(NodeTransport.layer({ connections: Math.max(8, options.concurrency) }))
    )
  })

