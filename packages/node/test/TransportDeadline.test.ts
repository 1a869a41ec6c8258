import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { assert, describe, expect, it } from "@effect/vitest"
import { ApiClient, Retry, TransportDeadline } from "@sluice/core"
import { TestServer } from "@sluice/testing"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { NodeTransport } from "../src/index.js"

const eventually = <A>(check: Effect.Effect<A, unknown>) =>
  check.pipe(Effect.retry(Schedule.spaced("20 millis").pipe(Schedule.intersect(Schedule.recurs(150)))))

const setup = (
  routes: ReadonlyArray<TestServer.Route>,
  options?: Partial<ApiClient.Options>,
  transport?: NodeTransport.Options
) =>
  Effect.gen(function*() {
    const server = yield* TestServer.make({ routes })
    const http = yield* NodeTransport.make(transport)
    const api = yield* Effect.provideService(
      ApiClient.make({ baseUrl: server.url, timeout: "200 millis", ...options }),
      HttpClient.HttpClient,
      http
    )
    return { server, http, api }
  })

describe("NodeTransport enforces TransportDeadline", () => {
  it.live("ApiClient leaves its timeout to the agent: headers or body late is a total RequestTimeoutError", () =>
    Effect.scoped(Effect.gen(function*() {
      const { api, http, server } = yield* setup([
        { path: "/late", then: { delay: "10 seconds", json: 1 } },
        { path: "/stall", then: { chunks: ["[1,", "2]"], chunkDelay: "10 seconds" } },
        { path: "/slow-but-in-time", then: { chunks: ["[1,", "2]"], chunkDelay: "60 millis", delay: "60 millis" } }
      ], { timeout: "600 millis" }) // the in-time route takes ~120 ms: room to spare on a loaded CI machine
      expect(TransportDeadline.isDeadlineClient(http)).toBe(true)
      for (const path of ["/late", "/stall"]) {
        const started = Date.now()
        const error = yield* Effect.flip(api.get(path))
        assert(error._tag === "RequestTimeoutError", error._tag)
        expect(error.phase).toBe("total")
        expect(error.timeout && Duration.toMillis(error.timeout)).toBe(600)
        expect(Date.now() - started).toBeLessThan(2_000)
      }
      yield* eventually(server.stats.pipe(Effect.filterOrFail((s) => s.abandoned === 2)))
      // a deadline never outlives its request: later requests on the same pooled sockets are unaffected
      for (let i = 0; i < 3; i++) expect(yield* api.get("/slow-but-in-time")).toEqual([1, 2])
      // every deadline set so far has passed: a request with none must be unaffected
      yield* Effect.sleep("650 millis")
      const raw = yield* http.execute(HttpClientRequest.get(`${server.url}/slow-but-in-time`))
      expect(yield* raw.json).toEqual([1, 2])
    })))

  it.live("an infinite timeout is no timeout, enforced by the transport or raced", () =>
    Effect.scoped(Effect.gen(function*() {
      // Node fires a timer of Infinity ms at once: an infinite timeout must arm none.
      const routes: ReadonlyArray<TestServer.Route> = [{ path: "/late", then: { delay: "150 millis", json: 1 } }]
      const enforced = yield* setup(routes, { timeout: Duration.infinity })
      expect(yield* enforced.api.get("/late")).toBe(1)
      const raced = yield* setup(routes, { timeout: Duration.infinity, transformClient: (client) => client })
      expect(yield* raced.api.get("/late")).toBe(1)
    })))

  it.live("a request queued behind a full pool fails at its deadline, and is never sent", () =>
    Effect.scoped(Effect.gen(function*() {
      const { api, http, server } = yield* setup([
        { path: "/hold", then: { delay: "1 second", json: 1 } },
        { path: "/fast", then: { json: 2 } }
      ], { timeout: "200 millis" }, { connections: 1 })
      // the only socket is taken by a request with no deadline
      const hog = yield* Effect.fork(http.execute(HttpClientRequest.get(`${server.url}/hold`)).pipe(Effect.flatMap((r) => r.json)))
      yield* server.awaitRequests(1)
      const error = yield* Effect.flip(api.get("/hold"))
      assert(error._tag === "RequestTimeoutError", error._tag)
      expect(error.phase).toBe("total")
      // undici alone would fail it only once the socket came free
      expect(Option.isNone(yield* Fiber.poll(hog))).toBe(true)
      expect(yield* Fiber.join(hog)).toBe(1)
      // its turn came and went: it was dropped before it was written, and the socket kept
      yield* Effect.sleep("200 millis")
      expect((yield* server.stats).total).toBe(1)
      expect(yield* api.get("/fast")).toBe(2)
      expect((yield* server.stats).connectionsOpened).toBe(1)
    })))

  it.live("a followed redirect is the same attempt: its hop keeps the deadline", () =>
    Effect.scoped(Effect.gen(function*() {
      const { api } = yield* setup([
        { path: "/moved", then: { redirect: "/stall" } },
        { path: "/stall", then: { chunks: ["[1,", "2]"], chunkDelay: "10 seconds" } }
      ], { timeout: "300 millis", followRedirects: true })
      const started = Date.now()
      const error = yield* Effect.flip(api.get("/moved"))
      assert(error._tag === "RequestTimeoutError", error._tag)
      expect(error.phase).toBe("total")
      expect(Date.now() - started).toBeLessThan(3_000)
    })))

  it.live("executeBefore by hand: the deadline holds, and it opens no span of its own (execute does)", () =>
    Effect.scoped(Effect.gen(function*() {
      const { http, server } = yield* setup([
        { path: "/stall", then: { chunks: ["[1,", "2]"], chunkDelay: "10 seconds" } },
        { path: "/fast", then: { json: 2 } }
      ])
      const deadline = Date.now() + 300
      const request = HttpClientRequest.get(`${server.url}/stall`)
      const error = yield* Effect.flip(http.executeBefore(request, deadline).pipe(Effect.flatMap((r) => r.text)))
      assert(TransportDeadline.isDeadlineExceeded(error.cause), String(error.cause))
      expect(Date.now()).toBeGreaterThanOrEqual(deadline)
      expect(Date.now() - deadline).toBeLessThan(2_000)
      // the tracer is on: execute propagates its span, executeBefore leaves the trace to its caller
      expect((yield* server.log).at(-1)?.headers["traceparent"]).toBeUndefined()
      yield* http.execute(HttpClientRequest.get(`${server.url}/fast`)).pipe(Effect.flatMap((r) => r.json))
      expect((yield* server.log).at(-1)?.headers["traceparent"]).toBeDefined()
    })))

  it.live("each attempt of a retried request gets a deadline of its own", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/flaky", then: { delay: "250 millis", json: 1 } }] })
      yield* server.enqueue("/flaky", [{ status: 503, delay: "250 millis" }])
      const http = yield* NodeTransport.make()
      const api = yield* ApiClient.make({ baseUrl: server.url, timeout: "400 millis" }).pipe(
        Effect.provideService(HttpClient.HttpClient, http),
        Effect.provide(Retry.layer({ maxAttempts: 2, baseDelay: "10 millis" }))
      )
      // the second attempt ends ~500 ms after the first began: past a deadline the two would share
      expect(yield* api.get("/flaky")).toBe(1)
      expect((yield* server.stats).statuses).toEqual({ 200: 1, 503: 1 })
    })))

  it.live("a transformClient made with TransportDeadline.transform keeps the deadline at the transport", () =>
    Effect.scoped(Effect.gen(function*() {
      const seen: Array<number | undefined> = []
      // What the transport is handed: executeBefore's deadline, or none (execute).
      const spy = (client: TransportDeadline.DeadlineClient) =>
        TransportDeadline.make((request, deadline) => {
          seen.push(deadline)
          return deadline === undefined ? client.execute(request) : client.executeBefore(request, deadline)
        })
      const routes: ReadonlyArray<TestServer.Route> = [
        { path: "/x", then: { json: 1 } },
        { path: "/stall", then: { chunks: ["[1,", "2]"], chunkDelay: "10 seconds" } }
      ]
      const server = yield* TestServer.make({ routes })
      const http = spy(yield* NodeTransport.make())
      const make = (transformClient: (client: HttpClient.HttpClient) => HttpClient.HttpClient) =>
        Effect.provideService(
          ApiClient.make({ baseUrl: server.url, timeout: "200 millis", transformClient }),
          HttpClient.HttpClient,
          http
        )
      const tagged = yield* make(TransportDeadline.transform((send) => (request) =>
        send(HttpClientRequest.setHeader(request, "x-tag", "1"))))
      const before = Date.now()
      expect(yield* tagged.get("/x")).toBe(1)
      expect(seen[0]).toBeGreaterThanOrEqual(before + 200)
      expect((yield* server.log).at(-1)?.headers["x-tag"]).toBe("1")
      const error = yield* Effect.flip(tagged.get("/stall"))
      expect(error._tag).toBe("RequestTimeoutError")
      // a platform combinator makes a plain client: the attempt is raced, the transport gets no deadline
      const raced = yield* make(HttpClient.mapRequest(HttpClientRequest.setHeader("x-tag", "2")))
      expect(yield* raced.get("/x")).toBe(1)
      expect(seen).toHaveLength(3)
      expect(seen[2]).toBeUndefined()
    })))

  it.live("interrupting the caller still aborts the request", () =>
    Effect.scoped(Effect.gen(function*() {
      const { api, server } = yield* setup([{ path: "/late", then: { delay: "10 seconds", json: 1 } }], {
        timeout: "1 minute"
      })
      const fiber = yield* Effect.fork(api.get("/late"))
      yield* server.awaitRequests(1)
      yield* Fiber.interrupt(fiber)
      yield* eventually(server.stats.pipe(Effect.filterOrFail((s) => s.abandoned === 1 && s.connectionsOpen === 0)))
    })))

  it.live("a stream's body is not cut off: its timeout bounds only the wait for the headers", () =>
    Effect.scoped(Effect.gen(function*() {
      const { api } = yield* setup([
        { path: "/lines", then: { chunks: ["a\n", "b\n", "c\n", "d\n"], chunkDelay: "100 millis" } }
      ], { timeout: "150 millis" })
      const lines = yield* api.postStreamLines("/lines").pipe(Stream.runCollect)
      expect([...lines]).toEqual(["a", "b", "c", "d"])
    })))

  it.live("a transformClient is raced instead: what it adds around the transport is bounded too", () =>
    Effect.scoped(Effect.gen(function*() {
      const { api } = yield* setup([{ path: "/x", then: { json: 1 } }], {
        transformClient: HttpClient.mapRequestEffect((request) => Effect.as(Effect.sleep("10 seconds"), request))
      })
      const started = Date.now()
      const error = yield* Effect.flip(api.get("/x"))
      expect(error._tag).toBe("RequestTimeoutError")
      expect(Date.now() - started).toBeLessThan(2_000)
    })))
})
