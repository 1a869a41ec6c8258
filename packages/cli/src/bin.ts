#!/usr/bin/env node
/**
 * The `sluice` command line.
 *
 *   sluice demo [--requests 2000] [--capacity 100] [--concurrency 16] [--chart FILE]
 *   sluice run --base-url URL --input requests.jsonl --output results.jsonl [options]
 *
 * @since 0.1.0
 */
import * as CliCommand from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Otel } from "@sluice/otel"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Batch from "./Batch.js"
import * as Demo from "./Demo.js"
import * as Spec from "./Spec.js"
import * as Stack from "./Stack.js"

const log = (line: string) => process.stderr.write(`${line}\n`)
const tty = process.stderr.isTTY === true

const invalid = (message: string) => ValidationError.invalidValue(HelpDoc.p(message))

const duration = (name: string, fallback: string) =>
  Options.text(name).pipe(
    Options.withDefault(fallback),
    Options.mapEffect((s) => Either.mapLeft(Spec.parseDuration(s), invalid))
  )

const demo = CliCommand.make(
  "demo",
  {
    requests: Options.integer("requests").pipe(Options.withDefault(2000), Options.withDescription("requests to send")),
    capacity: Options.integer("capacity").pipe(Options.withDefault(100), Options.withDescription("the server's hidden capacity, req/s")),
    concurrency: Options.integer("concurrency").pipe(Options.withDefault(16)),
    chart: Options.text("chart").pipe(Options.optional, Options.withDescription("where to write the SVG chart"))
  },
  (o) =>
    Effect.scoped(Demo.run({
      requests: o.requests,
      capacity: o.capacity,
      concurrency: o.concurrency,
      chart: Option.getOrUndefined(o.chart),
      tty,
      log
    })).pipe(
      Effect.flatMap((r) => r.failed > 0 ? Effect.sync(() => void (process.exitCode = 1)) : Effect.void)
    )
).pipe(CliCommand.withDescription("Run the whole stack against an embedded fault-injecting server"))

const secretOption = (name: string) => Options.redacted(name).pipe(Options.optional)
const textOption = (name: string) => Options.text(name).pipe(Options.optional)

const run = CliCommand.make(
  "run",
  {
    baseUrl: Options.text("base-url"),
    input: Options.text("input"),
    output: Options.text("output"),
    auth: Options.choice("auth", ["none", "bearer", "api-key", "client-credentials", "command", "env"]).pipe(
      Options.withDefault("none" as const)
    ),
    token: secretOption("token"),
    apiKey: secretOption("api-key"),
    apiKeyHeader: textOption("api-key-header"),
    clientId: textOption("client-id"),
    clientSecret: secretOption("client-secret"),
    tokenUrl: textOption("token-url"),
    scope: textOption("scope"),
    audience: textOption("audience"),
    authCommand: textOption("auth-command"),
    rate: Options.text("rate").pipe(
      Options.mapEffect((s) => Either.mapLeft(Spec.parseRate(s), invalid)),
      Options.optional
    ),
    burst: Options.integer("burst").pipe(Options.optional),
    tokenRate: Options.text("token-rate").pipe(
      Options.mapEffect((s) => Either.mapLeft(Spec.parseRate(s), invalid)),
      Options.optional,
      Options.withDescription("a second quota counted in each line's cost (e.g. LLM tokens): 90000/1m; adaptive with --adaptive")
    ),
    adaptive: Options.boolean("adaptive"),
    breaker: Options.boolean("breaker").pipe(
      Options.withDescription("stop sending while the server keeps failing (5 failures in a row open the circuit; shared through --redis)")
    ),
    maxWait: duration("max-wait", "45s"),
    concurrency: Options.integer("concurrency").pipe(Options.withDefault(8)),
    retries: Options.integer("retries").pipe(Options.withDefault(3)),
    maxRetryAfter: duration("max-retry-after", "1m"),
    redis: textOption("redis"),
    otlp: textOption("otlp").pipe(
      Options.withDescription("export the batch's spans and metrics to this OTLP/HTTP collector (default: OTEL_EXPORTER_OTLP_ENDPOINT)")
    ),
    timeout: duration("timeout", "10s"),
    maxResponseSize: Options.text("max-response-size").pipe(
      Options.withDefault("32MiB"),
      Options.mapEffect((s) => Either.mapLeft(Spec.parseSize(s), invalid)),
      Options.withDescription("the largest response body to buffer (32MiB by default; none for no bound)")
    )
  },
  (o) =>
    Effect.gen(function*() {
      const stack = yield* Stack.layer({
        baseUrl: o.baseUrl,
        auth: {
          kind: o.auth,
          token: Option.getOrUndefined(o.token),
          apiKey: Option.getOrUndefined(o.apiKey),
          apiKeyHeader: Option.getOrUndefined(o.apiKeyHeader),
          clientId: Option.getOrUndefined(o.clientId),
          clientSecret: Option.getOrUndefined(o.clientSecret),
          tokenUrl: Option.getOrUndefined(o.tokenUrl),
          scope: Option.getOrUndefined(o.scope),
          audience: Option.getOrUndefined(o.audience),
          command: Option.getOrUndefined(o.authCommand)
        },
        rate: Option.getOrUndefined(o.rate),
        burst: Option.getOrUndefined(o.burst),
        tokenRate: Option.getOrUndefined(o.tokenRate),
        adaptive: o.adaptive,
        breaker: o.breaker,
        maxWait: o.maxWait,
        concurrency: o.concurrency,
        retries: o.retries,
        maxRetryAfter: o.maxRetryAfter,
        timeout: o.timeout,
        maxResponseSize: o.maxResponseSize,
        redis: Option.getOrUndefined(o.redis)
      })
      // Telemetry wraps the whole batch: its last spans are flushed when the batch ends.
      const telemetry = Option.match(o.otlp, {
        onNone: () => Otel.layerConfig,
        onSome: (url) => Otel.layer({ url, serviceName: "sluice" })
      })
      const summary = yield* Effect.scoped(
        Batch.run({ input: o.input, output: o.output, concurrency: o.concurrency, grace: Duration.seconds(30), tty, log }).pipe(
          Effect.provide(stack)
        )
      ).pipe(Effect.provide(telemetry))
      log(
        `${summary.ok} succeeded, ${summary.failed} failed, ${summary.invalid} invalid lines, ${summary.skipped} already recorded ` +
          `(of ${summary.total}) in ${summary.seconds.toFixed(1)} s; results in ${o.output}`
      )
      if (summary.interrupted) {
        log(`interrupted: re-run the same command to send the requests not yet recorded in ${o.output}`)
        process.exitCode = 130
      } else if (summary.failed > 0 || summary.invalid > 0) {
        process.exitCode = 1
      }
    })
).pipe(CliCommand.withDescription("Send a JSONL batch of requests through the stack, resumably"))

const sluice = CliCommand.make("sluice").pipe(CliCommand.withSubcommands([demo, run]))

const cli = CliCommand.run(sluice, { name: "sluice", version: "0.1.0" })

Effect.runPromiseExit(cli(process.argv).pipe(Effect.provide(NodeContext.layer))).then((exit) => {
  if (Exit.isSuccess(exit)) return
  const failure = Cause.failureOption(exit.cause)
  // @effect/cli has already printed what was wrong with the command line.
  if (Option.isSome(failure) && ValidationError.isValidationError(failure.value)) {
    process.exitCode = 2
    return
  }
  const message = Option.match(failure, {
    onNone: () => Cause.pretty(exit.cause),
    onSome: (e) => (e instanceof Error ? e.message : String(e))
  })
  log(`sluice: ${message}`)
  process.exitCode = process.exitCode && process.exitCode !== 0 ? process.exitCode : 2
})
