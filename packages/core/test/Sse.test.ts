import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import fc from "fast-check"
import { Sse } from "../src/index.js"

const encode = (s: string) => new TextEncoder().encode(s)
const decodeAll = (pieces: ReadonlyArray<string>, options?: Sse.DecodeOptions) =>
  Stream.fromIterable(pieces.map(encode)).pipe((s) => Sse.decode(s, options), Stream.runCollect, Effect.map(Chunk.toArray))

describe("Sse.decode", () => {
  it.effect("fields, defaults, comments, BOM and retry", () =>
    Effect.gen(function*() {
      const events = yield* decodeAll(["\uFEFFretry: 1500\n:hi\nevent: a\ndata\ndata:x\n\nid: 1\ndata: y\n\n"])
      expect(events).toEqual([
        { event: "a", data: "\nx", id: undefined, retry: 1500 },
        { event: "message", data: "y", id: "1", retry: 1500 }
      ])
    }))

  it.effect("an event without a terminating blank line is dropped; empty data events are not dispatched", () =>
    Effect.gen(function*() {
      expect(yield* decodeAll(["event: x\n\n", "data: never-ended"])).toEqual([])
    }))

  it.effect("an event larger than maxEventSize fails the stream with a typed error", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decodeAll(["data: 0123456789\n", "data: 0123456789\n\n"], { maxEventSize: 15 }))
      expect(error._tag).toBe("SseEventTooLargeError")
    }))

  it.effect("property: any split of the bytes gives the same events", () =>
    Effect.gen(function*() {
      const text = "event: e\r\ndata: a\r\ndata: b\r\n\r\n: c\ndata: é✓\n\nid: 9\rdata: z\r\r"
      const whole = yield* decodeAll([text])
      expect(whole).toHaveLength(3)
      const bytes = encode(text)
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.uniqueArray(fc.integer({ min: 1, max: bytes.length - 1 })), async (cuts) => {
            const sorted = [0, ...cuts.sort((a, b) => a - b), bytes.length]
            const pieces = sorted.slice(1).map((end, i) => bytes.slice(sorted[i], end))
            const events = await Effect.runPromise(
              Stream.fromIterable(pieces).pipe(Sse.decode, Stream.runCollect, Effect.map(Chunk.toArray))
            )
            expect(events).toEqual(whole)
          }),
          { numRuns: 300 }
        )
      )
    }))
})
