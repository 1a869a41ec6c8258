import * as Headers from "@effect/platform/Headers"
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
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Tracer from "effect/Tracer"
import * as HttpBody from "@effect/platform/HttpBody"
import * as Option from "effect/Option"
import { TransportDeadline } from "@sluice/core"
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

  it.scoped("sends every body kind the platform has: empty, text, bytes, stream, form data", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/echo", then: { echo: true } }] })
      const client = yield* NodeTransport.make()
      const echo = (request: HttpClientRequest.HttpClientRequest) =>
        Effect.flatMap(client.execute(request), (r) => r.json) as Effect.Effect<{ method: string; body: string; headers: Record<string, string> }, unknown>
      const url = `${server.url}/echo`
      expect((yield* echo(HttpClientRequest.get(url))).body).toBe("")
      const text = yield* echo(HttpClientRequest.post(url).pipe(HttpClientRequest.bodyText("héllo", "text/plain")))
      expect(text.body).toBe("héllo")
      expect(text.headers["content-type"]).toBe("text/plain")
      const bytes = yield* echo(HttpClientRequest.put(url).pipe(HttpClientRequest.bodyUint8Array(new TextEncoder().encode("abc"))))
      expect([bytes.method, bytes.body]).toEqual(["PUT", "abc"])
      const streamed = yield* echo(HttpClientRequest.post(url).pipe(HttpClientRequest.setBody(
        HttpBody.stream(Stream.make("a", "b", "c").pipe(Stream.encodeText), "text/plain")
      )))
      expect(streamed.body).toBe("abc")
      const form = new FormData()
      form.append("field", "value")
      const formed = yield* echo(HttpClientRequest.post(url).pipe(HttpClientRequest.bodyFormData(form)))
      expect(formed.headers["content-type"]).toMatch(/^multipart\/form-data; boundary=/)
      expect(formed.body).toContain("value")
    }))

  it.scoped("a response: status, headers, cookies, a body read twice, urlParams, an empty body as null JSON", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [
          { path: "/x", then: { status: 201, headers: { "set-cookie": "a=1; Path=/", "x-one": "1" }, body: "k=v&n=2" } },
          { path: "/empty", then: { status: 204 } }
        ]
      })
      const client = yield* NodeTransport.make()
      const response = yield* client.execute(HttpClientRequest.get(`${server.url}/x`))
      expect(response.status).toBe(201)
      expect(response.headers["x-one"]).toBe("1")
      expect(response.cookies.cookies["a"]?.value).toBe("1")
      expect(yield* response.text).toBe("k=v&n=2")
      expect(yield* response.text).toBe("k=v&n=2")
      expect(new TextDecoder().decode(yield* response.arrayBuffer)).toBe("k=v&n=2")
      expect(yield* response.urlParamsBody).toEqual([["k", "v"], ["n", "2"]])
      const empty = yield* client.execute(HttpClientRequest.get(`${server.url}/empty`))
      expect(yield* empty.json).toBeNull()
    }))

  it.scoped.each([
    { spanHeaders: false, headers: "no header" },
    { spanHeaders: true, headers: "headers as the platform records them, secrets as <redacted>" }
  ])("its span: method and URL, $headers (spanHeaders: $spanHeaders), trace headers sent", ({ spanHeaders }) =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [{ path: "/x", then: { json: 1, headers: { "set-cookie": "sid=s3cret", "x-request-id": "r-1" } } }]
      })
      const http = yield* NodeTransport.make({ spanHeaders })
      const native = yield* Effect.tracer
      const spans: Array<Tracer.Span> = []
      const tracer = Tracer.make({
        span: (...args) => {
          const span = native.span(...args)
          spans.push(span)
          return span
        },
        context: native.context
      })
      const request = HttpClientRequest.get(`${server.url}/x?q=1`).pipe(
        HttpClientRequest.setHeaders({ authorization: "Bearer t0ken", "x-secret": "hush", "x-plain": "seen" })
      )
      const sent = http.execute(request).pipe(
        Effect.flatMap((r) => r.json),
        Effect.withTracer(tracer),
        Effect.locally(Headers.currentRedactedNames, ["authorization", "set-cookie", /^x-secret$/])
      )
      expect(yield* sent).toBe(1)
      expect(spans.length).toBe(1)
      const attributes = Object.fromEntries(spans[0]!.attributes)
      expect(attributes["http.request.method"]).toBe("GET")
      expect(attributes["url.full"]).toBe(`${server.url}/x?q=1`)
      expect(attributes["url.query"]).toBe("q=1")
      expect(attributes["http.response.status_code"]).toBe(200)
      if (spanHeaders) {
        expect(attributes["http.request.header.authorization"]).toBe("<redacted>")
        expect(attributes["http.request.header.x-secret"]).toBe("<redacted>")
        expect(attributes["http.request.header.x-plain"]).toBe("seen")
        expect(attributes["http.response.header.set-cookie"]).toBe("<redacted>")
        expect(attributes["http.response.header.x-request-id"]).toBe("r-1")
      } else {
        expect(Object.keys(attributes).filter((name) => name.includes(".header."))).toEqual([])
      }
      expect(JSON.stringify(attributes)).not.toMatch(/t0ken|hush|s3cret/)
      expect((yield* server.log)[0]!.headers["traceparent"]).toBeDefined()
    }))

  it.live("a large body streams in order with undici paused between reads; a stream ended early closes its socket", () =>
    Effect.scoped(Effect.gen(function*() {
      const big = Array.from({ length: 20 }, (_, i) => String.fromCharCode(97 + i).repeat(20_000))
      const server = yield* TestServer.make({
        routes: [
          { path: "/big", then: { body: big.join("") } },
          { path: "/drip", then: { chunks: ["a", "b", "c"], chunkDelay: "10 seconds" } },
          { path: "/x", then: { json: 1 } }
        ]
      })
      const client = yield* NodeTransport.make({ connections: 1 })
      const response = yield* client.execute(HttpClientRequest.get(`${server.url}/big`))
      // read slowly: the transport holds at most its high-water mark ahead of the reader
      const text = yield* response.stream.pipe(
        Stream.tap(() => Effect.sleep("1 millis")),
        Stream.decodeText(),
        Stream.mkString
      )
      expect(text).toBe(big.join(""))
      const drip = yield* client.execute(HttpClientRequest.get(`${server.url}/drip`))
      expect(yield* drip.stream.pipe(Stream.take(1), Stream.decodeText(), Stream.mkString)).toBe("a")
      yield* eventually(server.stats.pipe(Effect.filterOrFail((s) => s.abandoned === 1)))
      // the socket was closed with the rest of the body in it (abandoned), not reused; the pool goes on
      const response2 = yield* client.execute(HttpClientRequest.get(`${server.url}/x`))
      expect(yield* response2.json).toBe(1)
    })))

  it.scoped("deadlines run on the Effect Clock: TestClock drives them, to the millisecond", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/hang", then: TestServer.fault("hang") }] })
      const client = yield* NodeTransport.make()
      const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      const fiber = yield* Effect.fork(client.executeBefore(HttpClientRequest.get(`${server.url}/hang`), now + 1_000))
      yield* server.awaitRequests(1)
      yield* TestClock.adjust("999 millis")
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 50)))
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* TestClock.adjust("1 millis")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag).toBe("RequestError")
      expect(TransportDeadline.isDeadlineExceeded(error.cause)).toBe(true)
      // a deadline already past: never sent
      const late = yield* Effect.flip(client.executeBefore(HttpClientRequest.get(`${server.url}/hang`), now))
      expect(TransportDeadline.isDeadlineExceeded(late.cause)).toBe(true)
      expect((yield* server.stats).total).toBe(1)
    }))
})
