import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import fc from "fast-check"
import { RetryAfter } from "../src/index.js"

const NOW = Date.UTC(2026, 10, 22, 12, 0, 0)

describe("RetryAfter.parse", () => {
  it("delta-seconds", () => {
    expect(RetryAfter.parse("120", NOW)).toEqual(Option.some(Duration.seconds(120)))
    expect(RetryAfter.parse(" 0 ", NOW)).toEqual(Option.some(Duration.zero))
    expect(RetryAfter.parse("3600", NOW)).toEqual(Option.some(Duration.hours(1)))
  })

  it("the three HTTP-date forms", () => {
    const inTen = NOW + 10_000
    const d = new Date(inTen)
    expect(RetryAfter.parse(d.toUTCString(), NOW)).toEqual(Option.some(Duration.millis(10_000)))
    expect(RetryAfter.parse("Sunday, 22-Nov-26 12:00:10 GMT", NOW)).toEqual(Option.some(Duration.millis(10_000)))
    expect(RetryAfter.parse("Sun Nov 22 12:00:10 2026", NOW)).toEqual(Option.some(Duration.millis(10_000)))
    expect(RetryAfter.parse("Sun Nov  1 12:00:10 2026", NOW)).toEqual(Option.some(Duration.zero))
  })

  it("a date in the past means now", () => {
    expect(RetryAfter.parse("Sun, 06 Nov 1994 08:49:37 GMT", NOW)).toEqual(Option.some(Duration.zero))
  })

  it("garbage means absent", () => {
    for (const v of ["", "soon", "-5", "1.5", "1e3", "Sun, 31 Feb 2026 00:00:00 GMT", "Sun, 06 Nov 1994 25:49:37 GMT", undefined, null]) {
      expect(RetryAfter.parse(v, NOW)).toEqual(Option.none())
    }
  })

  it("fuzz: never throws; whatever it returns is a finite, non-negative duration", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.fullUnicodeString(), fc.nat().map(String)), fc.integer({ min: 0, max: 4e12 }), (value, now) => {
        const parsed = RetryAfter.parse(value, now)
        if (Option.isSome(parsed)) {
          expect(Duration.isFinite(parsed.value)).toBe(true)
          expect(Duration.toMillis(parsed.value)).toBeGreaterThanOrEqual(0)
        }
      }),
      { numRuns: 2_000 }
    )
  })

  it("fuzz: formatted dates round-trip to the time left", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 86_400 }), (seconds) => {
        const at = NOW + seconds * 1000
        expect(RetryAfter.parse(RetryAfter.formatHttpDate(at), NOW)).toEqual(Option.some(Duration.millis(seconds * 1000)))
        expect(RetryAfter.parse(String(seconds), NOW)).toEqual(Option.some(Duration.seconds(seconds)))
      })
    )
  })
})
