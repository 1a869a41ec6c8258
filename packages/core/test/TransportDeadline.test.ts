import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import { TransportDeadline } from "@sluice/core"

describe("TransportDeadline", () => {
  it("a deadline travels with the attached request's headers, never back to the original", () => {
    const request = HttpClientRequest.get("http://127.0.0.1:1/x").pipe(HttpClientRequest.setHeader("a", "1"))
    const attached = TransportDeadline.attach(request, 1_000)
    expect(TransportDeadline.of(attached)).toBe(1_000)
    expect(TransportDeadline.ofHeaders(attached.headers)).toBe(1_000)
    expect(TransportDeadline.of(request)).toBeUndefined()
    // what the platform does to add trace headers: the copy keeps it
    expect(TransportDeadline.of(HttpClientRequest.setHeader(attached, "traceparent", "00-x"))).toBe(1_000)
    const again = TransportDeadline.attach(attached, 2_000)
    expect(TransportDeadline.of(again)).toBe(2_000)
    expect(TransportDeadline.of(attached)).toBe(1_000)
    // invisible to whatever lists or serialises the headers
    expect(Object.keys(attached.headers)).toEqual(["a"])
    expect(JSON.stringify(attached.headers)).toBe(JSON.stringify(request.headers))
    expect(TransportDeadline.ofHeaders(undefined)).toBeUndefined()
  })

  it("a DeadlineExceeded is recognised by its tag, from any copy of the package", () => {
    expect(TransportDeadline.isDeadlineExceeded(new TransportDeadline.DeadlineExceeded(1))).toBe(true)
    const foreign = Object.assign(new Error("x"), { _tag: "DeadlineExceeded" })
    expect(TransportDeadline.isDeadlineExceeded(foreign)).toBe(true)
    expect(TransportDeadline.isDeadlineExceeded(new Error("x"))).toBe(false)
  })
})
