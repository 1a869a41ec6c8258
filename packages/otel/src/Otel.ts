/**
 * `Otel`: export Sluice's spans, metrics and logs over OTLP (HTTP, JSON),
 * with `@effect/opentelemetry`'s own exporter on the Effect 3 line: no
 * OpenTelemetry SDK in the export path, and the process's `fetch` as its
 * HTTP client (its own requests are not traced).
 *
 * What Sluice records:
 * - spans: `sluice <METHOD> <path template>` per request (method, URL
 *   template, status; never headers or a query), `sluice.attempt` per
 *   resend when a `Retry` policy is on (the first attempt runs in the
 *   request's span), `sluice.ratelimiter.wait` when a
 *   permit had to be waited for, `sluice.auth.client_credentials` per token
 *   request, and span events `sluice.circuit_breaker.{opened,half-opened,closed}`
 *   on the call that changed the circuit;
 * - metrics: `sluice_ratelimiter_*` (permits, waits, timeouts, 429s, rate),
 *   `sluice_retries`, `sluice_retry_budget_exhausted`,
 *   `sluice_circuit_breaker_*`.
 *
 * Nothing secret reaches them: headers are never span attributes, and every
 * excerpt in an error is scrubbed of the client's secrets (tested against
 * an in-memory exporter: see the package's tests).
 *
 * An application already running the OpenTelemetry SDK (2.x) can use
 * `@effect/opentelemetry`'s `NodeSdk.layer` instead: Sluice's spans and
 * metrics go wherever its processors and readers send them.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { Otel } from "@sluice/otel"
 *
 * const program = Effect.void // ... calls through ApiClient ...
 * program.pipe(Effect.provide(Otel.layer({ url: "http://localhost:4318", serviceName: "my-batch" })))
 * ```
 *
 * @since 0.3.0
 */
import * as Otlp from "@effect/opentelemetry/Otlp"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"

/**
 * @since 0.3.0
 * @category models
 */
export interface Options {
  /** The collector's OTLP/HTTP base URL (`/v1/traces`, `/v1/metrics` and `/v1/logs` are appended). */
  readonly url: string
  /** `service.name` of the resource. Default `sluice`. */
  readonly serviceName?: string | undefined
  /** Sent with every export (a collector's API key): kept `Redacted`. */
  readonly headers?: Readonly<Record<string, Redacted.Redacted<string>>> | undefined
  /** How often spans and metrics are sent. Default 5 s; everything left is sent when the layer's scope closes. */
  readonly exportInterval?: Duration.DurationInput | undefined
}

/**
 * Exports over OTLP/HTTP (JSON) for the life of the layer; its scope's close
 * flushes what is left (a batch's last spans reach the collector).
 *
 * @since 0.3.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<never> => {
  const interval = options.exportInterval ?? Duration.seconds(5)
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(options.headers ?? {})) headers[name] = Redacted.value(value)
  return Otlp.layerJson({
    baseUrl: options.url,
    resource: { serviceName: options.serviceName ?? "sluice" },
    headers,
    tracerExportInterval: interval,
    metricsExportInterval: interval,
    loggerExportInterval: interval,
    shutdownTimeout: "5 seconds"
  }).pipe(Layer.provide(FetchHttpClient.layer))
}

/** `OTEL_EXPORTER_OTLP_HEADERS`: `name=value,name2=value2`, values URL-encoded (the OpenTelemetry spec's form). */
const parseHeaders = (text: string): Record<string, Redacted.Redacted<string>> => {
  const out: Record<string, Redacted.Redacted<string>> = {}
  for (const part of text.split(",")) {
    const eq = part.indexOf("=")
    if (eq <= 0) continue
    out[decodeURIComponent(part.slice(0, eq).trim())] = Redacted.make(decodeURIComponent(part.slice(eq + 1).trim()))
  }
  return out
}

/**
 * The standard environment: `OTEL_EXPORTER_OTLP_ENDPOINT` (no export when
 * unset), `OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`.
 *
 * @since 0.3.0
 * @category layers
 */
export const layerConfig: Layer.Layer<never, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(
    Config.all({
      url: Config.option(Config.string("OTEL_EXPORTER_OTLP_ENDPOINT")),
      serviceName: Config.option(Config.string("OTEL_SERVICE_NAME")),
      headers: Config.option(Config.redacted("OTEL_EXPORTER_OTLP_HEADERS"))
    }),
    ({ headers, serviceName, url }) =>
      Option.match(url, {
        onNone: () => Layer.empty,
        onSome: (url) =>
          layer({
            url,
            serviceName: Option.getOrUndefined(serviceName),
            headers: Option.match(headers, { onNone: () => undefined, onSome: (h) => parseHeaders(Redacted.value(h)) })
          })
      })
  )
)
