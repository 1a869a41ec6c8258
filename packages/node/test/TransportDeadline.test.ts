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
import { Agent, type Dispatcher } from "undici"
import { NodeTransport } from "../src/index.js"
import { DeadlineHandler } from "../src/internal/deadlineHandler.js"

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
      expect(TransportDeadline.isEnforcedBy(http)).toBe(true)
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

  it.live("a deadline attached by hand holds with the platform's tracer on (its trace headers are a new headers object)", () =>
    Effect.scoped(Effect.gen(function*() {
      const { http, server } = yield* setup([{ path: "/stall", then: { chunks: ["[1,", "2]"], chunkDelay: "10 seconds" } }])
      const deadline = Date.now() + 300
      const request = TransportDeadline.attach(HttpClientRequest.get(`${server.url}/stall`), deadline)
      const error = yield* Effect.flip(http.execute(request).pipe(Effect.flatMap((r) => r.text)))
      assert(TransportDeadline.isDeadlineExceeded(error.cause), String(error.cause))
      expect(Date.now()).toBeGreaterThanOrEqual(deadline)
      expect(Date.now() - deadline).toBeLessThan(2_000)
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

  it.live("a transformClient that declares its client keeps the deadline at the transport", () =>
    Effect.scoped(Effect.gen(function*() {
      const seen: Array<number | undefined> = []
      const record = (client: HttpClient.HttpClient) =>
        HttpClient.tapRequest(client, (request) => Effect.sync(() => seen.push(TransportDeadline.of(request))))
      const routes: ReadonlyArray<TestServer.Route> = [
        { path: "/x", then: { json: 1 } },
        { path: "/stall", then: { chunks: ["[1,", "2]"], chunkDelay: "10 seconds" } }
      ]
      const declared = yield* setup(routes, { transformClient: (client) => TransportDeadline.declare(record(client)) })
      const before = Date.now()
      expect(yield* declared.api.get("/x")).toBe(1)
      expect(seen[0]).toBeGreaterThanOrEqual(before + 200)
      const error = yield* Effect.flip(declared.api.get("/stall"))
      expect(error._tag).toBe("RequestTimeoutError")
      // undeclared, it is raced: the request carries no deadline
      const raced = yield* setup(routes, { transformClient: record })
      expect(yield* raced.api.get("/x")).toBe(1)
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

describe("DeadlineHandler", () => {
  /** An agent that wraps every request in a DeadlineHandler for `deadline()`, and keeps them. */
  const withAgent = (deadline: () => number) =>
    Effect.acquireRelease(
      Effect.sync(() => {
        const handlers: Array<DeadlineHandler> = []
        const agent = new (class extends Agent {
          override dispatch(options: Agent.DispatchOptions, handler: Dispatcher.DispatchHandler) {
            const wrapped = new DeadlineHandler(handler, deadline())
            handlers.push(wrapped)
            return super.dispatch(options, wrapped)
          }
        })()
        return { agent, handlers }
      }),
      ({ agent }) => Effect.promise(() => agent.destroy())
    )

  it.live("lets go of its timer once undici has the whole body", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/x", then: { json: { ok: true } } }] })
      const { agent, handlers } = yield* withAgent(() => Date.now() + 60_000)
      const response = yield* Effect.promise(() => agent.request({ origin: server.url, path: "/x", method: "GET" }))
      expect(yield* Effect.promise(() => response.body.json())).toEqual({ ok: true })
      expect(handlers.map((h) => h.pending)).toEqual([false])
    })))

  it.live("fails with DeadlineExceeded at the deadline; the caller's signal still aborts first", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [{ path: "/stall", then: { chunks: ["[1,", "2]"], chunkDelay: "10 seconds" } }]
      })
      let deadline = Date.now() + 150
      const { agent, handlers } = yield* withAgent(() => deadline)
      const read = (signal?: AbortSignal) =>
        Effect.promise(() =>
          agent.request({ origin: server.url, path: "/stall", method: "GET", ...(signal ? { signal } : {}) })
            .then((r) => r.body.text()).then(() => "read" as unknown, (e: unknown) => e)
        )
      const e1 = yield* read()
      assert(TransportDeadline.isDeadlineExceeded(e1), String(e1))
      expect(e1.deadline).toBe(deadline)
      expect(Date.now()).toBeGreaterThanOrEqual(deadline)

      deadline = Date.now() + 60_000
      const outer = new AbortController()
      setTimeout(() => outer.abort(new Error("interrupted")), 50)
      const e2 = yield* read(outer.signal)
      expect(e2).toBeInstanceOf(Error)
      expect((e2 as Error).message).toBe("interrupted")
      yield* eventually(Effect.suspend(() => handlers.some((h) => h.pending) ? Effect.fail("pending") : Effect.void))

      // already past: undici never sends it
      const before = (yield* server.stats).total
      deadline = Date.now() - 1
      const e3 = yield* read()
      expect(TransportDeadline.isDeadlineExceeded(e3)).toBe(true)
      expect((yield* server.stats).total).toBe(before)
    })))
})
