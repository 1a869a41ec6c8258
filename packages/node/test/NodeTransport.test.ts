import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import { ApiClient } from "@sluice/core"
import { TestServer } from "@sluice/testing"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { NodeTransport } from "../src/index.js"

const eventually = <A>(check: Effect.Effect<A, unknown>) =>
  check.pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.intersect(Schedule.recurs(150)))))

describe("NodeTransport", () => {
  it.scoped("keeps connections alive: sequential requests reuse sockets", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/x", then: { json: 1 } }] })
      const send = (client: HttpClient.HttpClient) =>
        Effect.flatMap(client.execute(HttpClientRequest.get(`${server.url}/x`)), (r) => r.text).pipe(Effect.repeatN(49))
      // undici may open a second socket when a request starts the moment the last one's socket is released
      yield* send(yield* NodeTransport.make())
      expect((yield* server.stats).connectionsOpened).toBeLessThanOrEqual(2)
      yield* server.resetStats
      const before = (yield* server.stats).connectionsOpened
      yield* send(yield* NodeTransport.make({ connections: 1 }))
      expect((yield* server.stats).connectionsOpened - before).toBe(1)
    }))

  it.live("closing the layer's scope closes the pool and interrupts in-flight requests", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [{ path: "/x", then: { json: 1 } }, { path: "/hang", then: TestServer.fault("hang") }]
      })
      const scope = yield* Scope.make()
      const context = yield* Layer.build(
        ApiClient.layer({ baseUrl: server.url }).pipe(Layer.provide(NodeTransport.layer()))
      ).pipe(Scope.extend(scope))
      const api = Context.get(context, ApiClient.ApiClient)
      yield* api.get("/x")
      expect((yield* server.stats).connectionsOpen).toBe(1)
      const inFlight = yield* Effect.fork(api.get("/hang"))
      yield* server.awaitRequests(2)
      yield* Scope.close(scope, Exit.void)
      // the pool is gone: the server sees every socket closed, and the in-flight request ended
      yield* eventually(server.stats.pipe(Effect.filterOrFail((s) => s.connectionsOpen === 0)))
      const exit = yield* Fiber.await(inFlight)
      expect(Exit.isFailure(exit)).toBe(true)
    })))

  it.scoped("layerConfig reads options from Config", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/x", then: { json: 2 } }] })
      const context = yield* Layer.build(NodeTransport.layerConfig({
          connections: Config.integer("CONNECTIONS"),
          connectTimeout: Config.duration("CONNECT_TIMEOUT")
        })).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["CONNECTIONS", "4"], ["CONNECT_TIMEOUT", "2 seconds"]])))
      )
      const client = Context.get(context, HttpClient.HttpClient)
      const response = yield* client.execute(HttpClientRequest.get(`${server.url}/x`))
      expect(yield* response.json).toBe(2)
    }))
})
