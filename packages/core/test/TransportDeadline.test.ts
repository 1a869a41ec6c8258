import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { Redirects, TransportDeadline } from "@sluice/core"
import * as Effect from "effect/Effect"

/** A transport that answers every request with `status`, recording the deadline it was handed. */
const recording = (status = 200) => {
  const seen: Array<{ readonly url: string; readonly deadline: number | undefined }> = []
  const client = TransportDeadline.make((request, deadline) =>
    Effect.sync(() => {
      seen.push({ url: request.url, deadline })
      const headers: Record<string, string> = status >= 300 && status < 400 ? { location: "/next" } : {}
      return HttpClientResponse.fromWeb(request, new Response(null, { status, headers }))
    })
  )
  return { client, seen }
}

describe("TransportDeadline", () => {
  it.effect("make: execute hands no deadline, executeBefore its own", () =>
    Effect.gen(function*() {
      const { client, seen } = recording()
      expect(TransportDeadline.isDeadlineClient(client)).toBe(true)
      yield* client.execute(HttpClientRequest.get("http://a.test/x"))
      yield* client.executeBefore(HttpClientRequest.get("http://a.test/y"), 1_000)
      expect(seen).toEqual([{ url: "http://a.test/x", deadline: undefined }, { url: "http://a.test/y", deadline: 1_000 }])
    }))

  it.effect("a platform combinator makes a plain client; transform keeps the deadline", () =>
    Effect.gen(function*() {
      const { client, seen } = recording()
      expect(TransportDeadline.isDeadlineClient(HttpClient.mapRequest(client, (r) => r))).toBe(false)
      const tagged = TransportDeadline.transform(client, (send) => (request) =>
        send(HttpClientRequest.setHeader(request, "x-tag", "1")))
      expect(TransportDeadline.isDeadlineClient(tagged)).toBe(true)
      yield* (tagged as TransportDeadline.DeadlineClient).executeBefore(HttpClientRequest.get("http://a.test/z"), 5)
      yield* tagged.execute(HttpClientRequest.get("http://a.test/w"))
      expect(seen.map((s) => s.deadline)).toEqual([5, undefined])
      // over a plain client, transform is a plain transform
      const plain = TransportDeadline.transform(HttpClient.mapRequest(client, (r) => r), (send) => send)
      expect(TransportDeadline.isDeadlineClient(plain)).toBe(false)
    }))

  it.effect("Redirects.follow over a DeadlineClient gives every hop the attempt's deadline (data-first and data-last)", () =>
    Effect.gen(function*() {
      const { client, seen } = recording(302)
      for (const followed of [Redirects.follow(client, { maxRedirects: 2 }), Redirects.follow({ maxRedirects: 2 })(client)]) {
        seen.length = 0
        expect(TransportDeadline.isDeadlineClient(followed)).toBe(true)
        const response = yield* (followed as TransportDeadline.DeadlineClient).executeBefore(
          HttpClientRequest.get("http://a.test/start"),
          42
        )
        expect(response.status).toBe(302)
        expect(seen).toEqual([
          { url: "http://a.test/start", deadline: 42 },
          { url: "http://a.test/next", deadline: 42 },
          { url: "http://a.test/next", deadline: 42 }
        ])
      }
    }))

  it("isDeadlineExceeded goes by the tag", () => {
    expect(TransportDeadline.isDeadlineExceeded(new TransportDeadline.DeadlineExceeded(1))).toBe(true)
    const foreign = Object.assign(new Error("x"), { _tag: "DeadlineExceeded" })
    expect(TransportDeadline.isDeadlineExceeded(foreign)).toBe(true)
    expect(TransportDeadline.isDeadlineExceeded(new Error("x"))).toBe(false)
  })
})
