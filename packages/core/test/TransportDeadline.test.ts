import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { describe, expect, it } from "@effect/vitest"
import { TransportDeadline } from "@sluice/core"

describe("TransportDeadline", () => {
  it("a deadline belongs to the attached request alone, found by it or by its headers object", () => {
    const request = HttpClientRequest.get("http://127.0.0.1:1/x").pipe(HttpClientRequest.setHeader("a", "1"))
    const attached = TransportDeadline.attach(request, 1_000)
    expect(TransportDeadline.of(attached)).toBe(1_000)
    expect(TransportDeadline.ofHeaders(attached.headers)).toBe(1_000)
    expect(attached.headers).toEqual(request.headers)
    // the original, a request derived from the attached one, and a second attachment are each their own
    expect(TransportDeadline.of(request)).toBeUndefined()
    expect(TransportDeadline.of(HttpClientRequest.setHeader(attached, "b", "2"))).toBeUndefined()
    const again = TransportDeadline.attach(attached, 2_000)
    expect(TransportDeadline.of(again)).toBe(2_000)
    expect(TransportDeadline.of(attached)).toBe(1_000)
  })

  it("a DeadlineExceeded is recognised by its tag, from any copy of the package", () => {
    expect(TransportDeadline.isDeadlineExceeded(new TransportDeadline.DeadlineExceeded(1))).toBe(true)
    const foreign = Object.assign(new Error("x"), { _tag: "DeadlineExceeded" })
    expect(TransportDeadline.isDeadlineExceeded(foreign)).toBe(true)
    expect(TransportDeadline.isDeadlineExceeded(new Error("x"))).toBe(false)
  })
})
