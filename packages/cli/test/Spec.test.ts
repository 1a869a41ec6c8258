import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import { Spec } from "../src/index.js"

describe("Spec", () => {
  it("durations", () => {
    expect(Spec.parseDuration("250ms")).toEqual(Either.right(Duration.millis(250)))
    expect(Spec.parseDuration("1s")).toEqual(Either.right(Duration.seconds(1)))
    expect(Spec.parseDuration("10s")).toEqual(Either.right(Duration.seconds(10)))
    expect(Spec.parseDuration("1m")).toEqual(Either.right(Duration.minutes(1)))
    expect(Spec.parseDuration("1h")).toEqual(Either.right(Duration.hours(1)))
    expect(Spec.parseDuration("2 seconds")).toEqual(Either.right(Duration.seconds(2)))
    expect(Either.isLeft(Spec.parseDuration("soon"))).toBe(true)
    expect(Either.isLeft(Spec.parseDuration("-1s"))).toBe(true)
  })
  it("rates", () => {
    expect(Spec.parseRate("40/1s")).toEqual(Either.right({ limit: 40, window: Duration.seconds(1) }))
    expect(Spec.parseRate("100/1m")).toEqual(Either.right({ limit: 100, window: Duration.minutes(1) }))
    expect(Spec.parseRate("40/s")).toEqual(Either.right({ limit: 40, window: Duration.seconds(1) }))
    for (const bad of ["40", "x/1s", "0/1s", "40/0s", "40/1s/2", "40/soon"]) expect(Either.isLeft(Spec.parseRate(bad))).toBe(true)
  })
})
