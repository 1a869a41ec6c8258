import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { RateLimitHeaders } from "../src/index.js"

const NOW = Date.parse("2026-12-02T12:00:00Z")

describe("RateLimitHeaders.parse", () => {
  const table: ReadonlyArray<readonly [string, Record<string, string>, RateLimitHeaders.Quota | undefined]> = [
    ["IETF structured, several policies: the tightest", {
      "ratelimit-policy": "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400",
      ratelimit: "\"burst\";r=50;t=30, \"daily\";r=900;t=3600"
    }, { remaining: 900, resetMillis: 3_600_000, limit: 1000, windowMillis: 86_400_000, ceilingPerSecond: 1000 / 86400 }],
    ["express draft-8 (spaces, a partition key)", {
      "ratelimit-policy": "\"20-in-1sec\"; q=20; w=1; pk=:ZmI3MDk4ZjNiNzBj:",
      ratelimit: "\"20-in-1sec\"; r=19; t=1"
    }, { remaining: 19, resetMillis: 1000, limit: 20, windowMillis: 1000, ceilingPerSecond: 20 }],
    ["draft-7 combined", { ratelimit: "limit=100, remaining=99, reset=60", "ratelimit-policy": "100;w=60" },
      { remaining: 99, resetMillis: 60_000, limit: 100, windowMillis: 60_000, ceilingPerSecond: 100 / 60 }],
    ["draft-6 separate", { "ratelimit-limit": "20", "ratelimit-remaining": "3", "ratelimit-reset": "2" },
      { remaining: 3, resetMillis: 2000, limit: 20 }],
    ["X-RateLimit with delta seconds (fastify)", { "x-ratelimit-limit": "20", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1" },
      { remaining: 0, resetMillis: 1000, limit: 20 }],
    ["X-RateLimit with epoch seconds (GitHub, express legacy)", {
      "x-ratelimit-limit": "5000",
      "x-ratelimit-remaining": "4999",
      "x-ratelimit-reset": String(NOW / 1000 + 3600)
    }, { remaining: 4999, resetMillis: 3_600_000, limit: 5000 }],
    ["X-RateLimit with epoch milliseconds", { "x-ratelimit-remaining": "7", "x-ratelimit-reset": String(NOW + 1500) },
      { remaining: 7, resetMillis: 1500, limit: undefined }],
    ["OpenAI durations", {
      "x-ratelimit-limit-requests": "500",
      "x-ratelimit-remaining-requests": "499",
      "x-ratelimit-reset-requests": "1h2m3.5s"
    }, { remaining: 499, resetMillis: 3_723_500, limit: 500 }],
    ["Anthropic RFC 3339", {
      "anthropic-ratelimit-requests-limit": "50",
      "anthropic-ratelimit-requests-remaining": "49",
      "anthropic-ratelimit-requests-reset": "2026-12-02T12:00:06Z"
    }, { remaining: 49, resetMillis: 6000, limit: 50 }],
    ["a negative remaining is malformed", { "x-ratelimit-remaining": "-1", "x-ratelimit-reset": "30" }, undefined],
    ["garbage is ignored", { ratelimit: "banana", "ratelimit-policy": "q=;w=x", "x-ratelimit-remaining": "1e3" }, undefined],
    ["nothing announced", { "content-type": "application/json" }, undefined]
  ]
  for (const [name, headers, expected] of table) {
    it(name, () => {
      const got = RateLimitHeaders.parse(headers, NOW)
      if (expected === undefined) return expect(got).toBeUndefined()
      for (const [k, v] of Object.entries(expected)) {
        if (v === undefined) continue
        expect(got?.[k as keyof RateLimitHeaders.Quota], k).toBeCloseTo(v as number, 6)
      }
    })
  }

  it("Go durations: 1s, 6m0s, 12ms, 1h2m3.5s; anything else is undefined", () => {
    expect(RateLimitHeaders.parseGoDuration("1s")).toBe(1000)
    expect(RateLimitHeaders.parseGoDuration("6m0s")).toBe(360_000)
    expect(RateLimitHeaders.parseGoDuration("12ms")).toBe(12)
    expect(RateLimitHeaders.parseGoDuration("1h2m3.5s")).toBe(3_723_500)
    for (const bad of ["", "1", "s", "1x", "-1s", "1s2"]) expect(RateLimitHeaders.parseGoDuration(bad), bad).toBeUndefined()
  })

  it("property: any header values parse without throwing into finite, non-negative fields", () => {
    const names = [
      "ratelimit", "ratelimit-policy", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset",
      "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
      "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
      "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset"
    ]
    const value = fc.oneof(
      fc.string(),
      fc.integer({ min: -10, max: 2e12 }).map(String),
      fc.constantFrom("\"a\";r=5;t=1", "\"a\";q=10;w=1", "limit=1, remaining=0, reset=1", "1h", "9999-12-31T23:59:59Z", "1e309")
    )
    fc.assert(fc.property(fc.dictionary(fc.constantFrom(...names), value), (headers) => {
      const q = RateLimitHeaders.parse(headers, NOW)
      if (q === undefined) return
      for (const v of Object.values(q)) {
        if (typeof v !== "number") continue
        expect(Number.isFinite(v)).toBe(true)
        expect(v).toBeGreaterThanOrEqual(0)
      }
    }), { numRuns: 500 })
  })
})

describe("token quotas (unit: tokens)", () => {
  it("reads OpenAI's and Anthropic's token headers, and only those", () => {
    const now = Date.parse("2026-12-02T12:00:00Z")
    expect(RateLimitHeaders.parse({
      "x-ratelimit-limit-tokens": "90000",
      "x-ratelimit-remaining-tokens": "45000",
      "x-ratelimit-reset-tokens": "30s",
      "x-ratelimit-remaining-requests": "1"
    }, now, "tokens")).toMatchObject({ limit: 90000, remaining: 45000, resetMillis: 30_000, continuous: true })
    expect(RateLimitHeaders.parse({
      "anthropic-ratelimit-tokens-limit": "80000",
      "anthropic-ratelimit-tokens-remaining": "100",
      "anthropic-ratelimit-tokens-reset": "2026-12-02T12:00:05Z"
    }, now, "tokens")).toMatchObject({ limit: 80000, remaining: 100, resetMillis: 5_000 })
    // request quotas say nothing about tokens, and token quotas nothing about requests
    expect(RateLimitHeaders.parse({ ratelimit: "limit=20, remaining=3, reset=1" }, now, "tokens")).toBeUndefined()
    expect(RateLimitHeaders.parse({ "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1s" }, now)).toBeUndefined()
  })
})
