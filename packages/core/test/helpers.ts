import * as HttpClient from "@effect/platform/HttpClient"
import { NodeTransport } from "@sluice/node"
import { TestServer } from "@sluice/testing"
import type * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as Tracer from "effect/Tracer"
import { ApiClient } from "../src/index.js"

/** A TestServer plus an ApiClient pointed at it over the Node transport, for one scope. */
export const setup = (
  server: TestServer.Options,
  client?: Partial<ApiClient.Options>,
  transport?: NodeTransport.Options
): Effect.Effect<
  { readonly server: TestServer.TestServer; readonly api: ApiClient.ApiClient.Service },
  TestServer.TestServerConfigError | Cause.IllegalArgumentException,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const srv = yield* TestServer.make(server)
    const http = yield* NodeTransport.make(transport)
    const api = yield* Effect.provideService(ApiClient.make({ baseUrl: srv.url, ...client }), HttpClient.HttpClient, http)
    return { server: srv, api }
  })

/** A tracer that keeps every span it starts, to assert on names and attributes. */
export const recordingTracer = Effect.map(Effect.tracer, (native) => {
  const spans: Array<Tracer.Span> = []
  const tracer = Tracer.make({
    span: (...args) => {
      const span = native.span(...args)
      spans.push(span)
      return span
    },
    context: native.context
  })
  return { tracer, spans }
})

/**
 * A TestServer plus an ApiClient over the Node transport with extra layers
 * (auth, limiter, retry) in its context, for one scope.
 */
export const setupWith = <E>(
  server: TestServer.Options,
  client: Partial<ApiClient.Options>,
  layers: (server: TestServer.TestServer) => Layer.Layer<any, E, HttpClient.HttpClient>
) =>
  Effect.gen(function*() {
    const srv = yield* TestServer.make(server)
    const transport = NodeTransport.layer()
    const context = yield* Layer.build(
      ApiClient.layer({ baseUrl: srv.url, ...client }).pipe(
        Layer.provide(layers(srv)),
        Layer.provideMerge(transport)
      )
    )
    return { server: srv, api: Context.get(context, ApiClient.ApiClient) }
  })

/** Waits for the server to have seen `n` requests, letting test time pass in steps meanwhile (real I/O runs between steps). */
export const until = (server: TestServer.TestServer, n: number, step: Duration.DurationInput = "100 millis") =>
  Effect.raceFirst(
    server.awaitRequests(n),
    Effect.forever(Effect.zipRight(TestClock.adjust(step), Effect.promise(() => new Promise((r) => setTimeout(r, 2)))))
  )
