import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { describe, expect, it } from "@effect/vitest"
import { AggregationTemporality, InMemoryMetricExporter, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { ApiClient, CircuitBreaker, CircuitBreakerStore, ClientCredentials, RateLimiter, RateLimiterStore, Retry } from "@sluice/core"
import { NodeTransport } from "@sluice/node"
import { TestServer } from "@sluice/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Encoding from "effect/Encoding"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { Otel } from "../src/index.js"

const SECRET = "cl1ent-s3cret-for-otel"
const API_KEY = "k3y-that-must-never-leak"

/** Every secret the client holds, in the forms it sends them. */
const secrets = [SECRET, API_KEY, Encoding.encodeBase64(`app:${SECRET}`), "Bearer ", "Basic "]

/** An API that needs a token, limited to 5 requests a second, whose first answer is a 503. */
const stack = (server: TestServer.TestServer) =>
  Effect.map(
    Layer.build(
      ApiClient.layer({ baseUrl: server.url, apiKey: Redacted.make(API_KEY) }).pipe(
        Layer.provide(Layer.mergeAll(
          ClientCredentials.layer({ tokenUrl: `${server.url}/oauth/token`, clientId: "app", clientSecret: Redacted.make(SECRET) }),
          RateLimiter.layerTokenBucket({ limit: 5, window: "1 second", burst: 1 }).pipe(Layer.provide(RateLimiterStore.layerMemory)),
          CircuitBreaker.layer({ consecutiveFailures: 1, openFor: "20 millis" }).pipe(Layer.provide(CircuitBreakerStore.layerMemory)),
          Retry.layer({ baseDelay: "50 millis" })
        )),
        Layer.provideMerge(NodeTransport.layer())
      )
    ),
    (ctx) => Context.get(ctx, ApiClient.ApiClient)
  )

const server = TestServer.make({
  oauth: { clientId: "app", clientSecret: SECRET },
  routes: [{ method: "GET", path: "/api", requireAuth: true, script: [{ status: 503 }], then: { json: { ok: true } } }]
})

describe("OpenTelemetry", () => {
  it.live("the span tree of a request: attempts, the limiter's wait, the token fetch, the breaker's state changes; no secret anywhere", () =>
    Effect.gen(function*() {
      const spans = new InMemorySpanExporter()
      const metrics = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
      const reader = new PeriodicExportingMetricReader({ exporter: metrics, exportIntervalMillis: 60_000 })
      // read before the SDK shuts down (its shutdown empties the in-memory exporter)
      const finished = yield* Effect.scoped(Effect.gen(function*() {
        const srv = yield* server
        const api = yield* stack(srv)
        yield* api.get("/api")
        yield* api.get("/api")
        yield* Effect.promise(() => reader.forceFlush())
        return [...spans.getFinishedSpans()]
      })).pipe(
        Effect.provide(NodeSdk.layer(() => ({
          resource: { serviceName: "sluice-test" },
          spanProcessor: new SimpleSpanProcessor(spans),
          metricReader: reader
        })))
      )
      const named = (name: string) => finished.filter((s) => s.name === name)
      const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId
      const requests = named("sluice GET /api")
      expect(requests).toHaveLength(2)
      const [first, second] = [...requests].sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1])
      const attemptsOf = (request: ReadableSpan) => named("sluice.attempt").filter((s) => parentOf(s) === request.spanContext().spanId)
      // the first request: a 503 in its first attempt, which runs in the request's span (the circuit
      // opens), then a resend in a span of its own (half-open probe, closed)
      const firstResends = attemptsOf(first!)
      expect(firstResends).toHaveLength(1)
      expect(firstResends[0]!.attributes["http.request.resend_count"]).toBe(1)
      expect(first!.attributes["http.response.status_code"]).toBe(200)
      // (the breaker's log lines are span events too)
      const transitions = (span: ReadableSpan) => span.events.map((e) => e.name).filter((name) => name.startsWith("sluice.circuit_breaker."))
      expect(transitions(first!)).toEqual(["sluice.circuit_breaker.opened"])
      expect(transitions(firstResends[0]!)).toEqual([
        "sluice.circuit_breaker.half-opened",
        "sluice.circuit_breaker.closed"
      ])
      // the token was fetched once, inside the first attempt
      const tokenFetches = named("sluice.auth.client_credentials")
      expect(tokenFetches).toHaveLength(1)
      expect(parentOf(tokenFetches[0]!)).toBe(first!.spanContext().spanId)
      // the second request, sent once (no resend span), waited for its permit (5 a second, a burst of 1)
      expect(attemptsOf(second!)).toHaveLength(0)
      const waits = named("sluice.ratelimiter.wait").filter((w) => parentOf(w) === second!.spanContext().spanId)
      expect(waits.length).toBeGreaterThanOrEqual(1)
      expect(waits[0]!.attributes["sluice.ratelimiter.key"]).toBe("sluice")
      // no secret in any name, attribute or event
      const everything = JSON.stringify(finished.map((s) => ({ name: s.name, attributes: s.attributes, events: s.events })))
      for (const secret of secrets) expect(everything).not.toContain(secret)
      // the metrics Sluice records
      const names = metrics.getMetrics().flatMap((r) => r.scopeMetrics.flatMap((s) => s.metrics.map((m) => m.descriptor.name)))
      expect(names).toEqual(expect.arrayContaining([
        "sluice_ratelimiter_permits_granted",
        "sluice_ratelimiter_wait_ms",
        "sluice_retries",
        "sluice_circuit_breaker_transitions"
      ]))
    }))

  it.live("Otel.layer exports over OTLP/HTTP to a collector, and flushes what is left when its scope closes", () =>
    Effect.gen(function*() {
      const collector = yield* TestServer.make({
        routes: ["/v1/traces", "/v1/metrics", "/v1/logs"].map((path) => ({ method: "POST", path, then: { json: {} } })),
        logLimit: 1000
      })
      yield* Effect.scoped(Effect.gen(function*() {
        const srv = yield* server
        const api = yield* stack(srv)
        yield* api.get("/api")
      })).pipe(Effect.provide(Otel.layer({ url: collector.url, serviceName: "sluice-batch", exportInterval: "1 hour" })))
      const log = yield* collector.log
      const traces = log.filter((r) => r.path === "/v1/traces").map((r) => r.body).join("\n")
      expect(traces).toContain("sluice GET /api")
      expect(traces).toContain("sluice.attempt")
      expect(traces).toContain("sluice-batch")
      expect(log.some((r) => r.path === "/v1/metrics" && r.body.includes("sluice_ratelimiter_permits_granted"))).toBe(true)
      const everything = log.map((r) => r.body).join("\n")
      for (const secret of secrets) expect(everything).not.toContain(secret)
    }).pipe(Effect.scoped))

  it.live("Otel.layerConfig reads the standard OTEL_EXPORTER_OTLP_* variables, and exports nothing without an endpoint", () =>
    Effect.gen(function*() {
      const collector = yield* TestServer.make({
        routes: ["/v1/traces", "/v1/metrics", "/v1/logs"].map((path) => ({ method: "POST", path, then: { json: {} } })),
        logLimit: 1000
      })
      const traced = Effect.withSpan(Effect.void, "sluice GET /env")
      yield* Effect.scoped(Effect.provide(traced, Otel.layerConfig)).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))
      expect((yield* collector.stats).total).toBe(0)
      yield* Effect.scoped(Effect.provide(traced, Otel.layerConfig)).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([
          ["OTEL_EXPORTER_OTLP_ENDPOINT", collector.url],
          ["OTEL_SERVICE_NAME", "from-env"],
          ["OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=c0llector%20key"]
        ])))
      )
      const traces = (yield* collector.log).filter((r) => r.path === "/v1/traces")
      expect(traces.map((r) => r.body).join("\n")).toContain("from-env")
      expect(traces[0]!.headers["x-collector-key"]).toBe("c0llector key")
    }).pipe(Effect.scoped))
})
