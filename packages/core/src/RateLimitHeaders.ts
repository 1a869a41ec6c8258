/**
 * `RateLimitHeaders`: what a server announces about its quota, in every form
 * in use, read into one `Quota` the adaptive limiter paces from before any
 * 429.
 *
 * - IETF `draft-ietf-httpapi-ratelimit-headers` structured fields (draft-8 …
 *   draft-11): `RateLimit-Policy: "burst";q=100;w=60, "daily";q=1000;w=86400`
 *   and `RateLimit: "burst";r=50;t=30`. Several policies: the tightest wins.
 * - draft-7's `RateLimit: limit=100, remaining=99, reset=60` with
 *   `RateLimit-Policy: 100;w=60`; draft-6's `RateLimit-Limit`,
 *   `RateLimit-Remaining`, `RateLimit-Reset`.
 * - `X-RateLimit-Limit` / `-Remaining` / `-Reset`, the reset as delta seconds,
 *   epoch seconds or epoch milliseconds (GitHub, express legacy, fastify).
 * - OpenAI's `x-ratelimit-{limit,remaining,reset}-requests` (the reset a
 *   duration: `1s`, `6m0s`, `12ms`, `1h2m3.5s`) and Anthropic's
 *   `anthropic-ratelimit-requests-{limit,remaining,reset}` (an RFC 3339 time).
 *
 * A malformed field is ignored, as the draft says: a negative remaining, a
 * reset that is not a number, a policy without `q`. Every parser is pure.
 *
 * @example
 * ```ts
 * import { RateLimitHeaders } from "@sluice/core"
 *
 * RateLimitHeaders.parse({ "ratelimit": "limit=100, remaining=99, reset=60", "ratelimit-policy": "100;w=60" }, Date.now())
 * // { remaining: 99, resetMillis: 60000, limit: 100, windowMillis: 60000, ceilingPerSecond: 1.666… }
 * ```
 *
 * @since 0.2.0
 */

/**
 * A server's quota as announced by one response. Every field is optional: a
 * server may announce only a policy, or only what is left.
 *
 * @since 0.2.0
 * @category models
 */
export interface Quota {
  /** Requests left before the reset. */
  readonly remaining?: number | undefined
  /** Milliseconds from now until the quota resets. */
  readonly resetMillis?: number | undefined
  /** The quota's size: requests per window. */
  readonly limit?: number | undefined
  /** The window the limit applies to, when announced (a policy's `w`). */
  readonly windowMillis?: number | undefined
  /** The tightest announced policy as a rate: `limit / window`, per second. */
  readonly ceilingPerSecond?: number | undefined
  /**
   * The reset is when the quota is full again, refilling continuously
   * (OpenAI, Anthropic), rather than when a window ends: then `limit` per
   * `resetMillis` can be spent, not only `remaining`.
   */
  readonly continuous?: boolean | undefined
}

type Headers = Readonly<Record<string, string | undefined>>

const NON_NEGATIVE_INTEGER = /^\d+$/
const NUMBER = /^\d+(\.\d+)?$/

/**
 * A non-negative integer (the drafts' remaining and quota), or undefined.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseCount = (text: string | undefined): number | undefined => {
  if (text === undefined) return undefined
  const t = text.trim()
  if (!NON_NEGATIVE_INTEGER.test(t)) return undefined
  const n = Number(t)
  return Number.isSafeInteger(n) ? n : undefined
}

/** A non-negative number of seconds, or undefined. */
const parseSeconds = (text: string | undefined): number | undefined => {
  if (text === undefined) return undefined
  const t = text.trim()
  if (!NUMBER.test(t)) return undefined
  const n = Number(t)
  return Number.isFinite(n) ? n : undefined
}

/**
 * A reset as `X-RateLimit-Reset` forms send it, in ms from now: delta
 * seconds, epoch seconds (past 1e9, GitHub and express legacy) or epoch
 * milliseconds (past 1e12). A time already past is 0.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseReset = (text: string | undefined, nowMillis: number): number | undefined => {
  const n = parseSeconds(text)
  if (n === undefined) return undefined
  if (n >= 1e12) return Math.max(0, n - nowMillis)
  if (n >= 1e9) return Math.max(0, n * 1000 - nowMillis)
  return n * 1000
}

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|h|m|s)/y
const DURATION_MILLIS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/**
 * A Go-style duration as OpenAI sends it (`1s`, `6m0s`, `12ms`, `1h2m3.5s`), in ms.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseGoDuration = (text: string | undefined): number | undefined => {
  if (text === undefined) return undefined
  const t = text.trim()
  if (t === "") return undefined
  let total = 0
  let at = 0
  while (at < t.length) {
    DURATION_PART.lastIndex = at
    const m = DURATION_PART.exec(t)
    if (m === null) return undefined
    total += Number(m[1]) * DURATION_MILLIS[m[2]!]!
    at = DURATION_PART.lastIndex
  }
  return Number.isFinite(total) ? total : undefined
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/

/**
 * An RFC 3339 instant as Anthropic sends it, in ms from now (0 when past).
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseRfc3339 = (text: string | undefined, nowMillis: number): number | undefined => {
  if (text === undefined || !RFC3339.test(text.trim())) return undefined
  const at = Date.parse(text.trim())
  return Number.isFinite(at) ? Math.max(0, at - nowMillis) : undefined
}

/** One member of a structured-field list: its name (a string or token item) and parameters. */
interface Member {
  readonly name: string
  readonly params: ReadonlyMap<string, string>
}

/**
 * Splits an RFC 8941 list of items with parameters, the subset the drafts
 * use: `"name";q=100;w=60, other;r=5`. Commas inside strings or byte
 * sequences are kept. An item that does not parse is dropped.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseMembers = (text: string | undefined): ReadonlyArray<Member> => {
  if (text === undefined) return []
  const members: Array<Member> = []
  for (const raw of splitOutside(text, ",")) {
    const parts = splitOutside(raw, ";").map((p) => p.trim())
    const head = parts[0]
    if (head === undefined || head === "") continue
    const name = head.startsWith("\"") ? head.slice(1, head.endsWith("\"") && head.length > 1 ? -1 : undefined) : head
    const params = new Map<string, string>()
    for (const p of parts.slice(1)) {
      const eq = p.indexOf("=")
      if (eq === -1) params.set(p.trim().toLowerCase(), "?1")
      else params.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim())
    }
    members.push({ name, params })
  }
  return members
}

/** Splits on `sep` outside double quotes and `:` byte sequences. */
const splitOutside = (text: string, sep: string): Array<string> => {
  const out: Array<string> = []
  let start = 0
  let quoted = false
  let bytes = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === "\\" && quoted) {
      i++
    } else if (c === "\"" && !bytes) {
      quoted = !quoted
    } else if (c === ":" && !quoted) {
      bytes = !bytes
    } else if (c === sep && !quoted && !bytes) {
      out.push(text.slice(start, i))
      start = i + 1
    }
  }
  out.push(text.slice(start))
  return out
}

interface Policy {
  readonly name: string
  readonly limit: number
  readonly windowMillis: number | undefined
}

/**
 * `RateLimit-Policy` in any draft's form: structured (`"n";q=..;w=..`) or draft-6/7 (`100;w=60`).
 *
 * @since 0.1.0
 * @category parsers
 */
export const parsePolicies = (text: string | undefined): ReadonlyArray<Policy> => {
  const policies: Array<Policy> = []
  for (const m of parseMembers(text)) {
    const q = parseCount(m.params.get("q"))
    const w = parseSeconds(m.params.get("w"))
    if (q !== undefined) {
      policies.push({ name: m.name, limit: q, windowMillis: w === undefined ? undefined : w * 1000 })
      continue
    }
    // draft-6/7: the item itself is the quota
    const limit = parseCount(m.name)
    if (limit !== undefined) policies.push({ name: "", limit, windowMillis: w === undefined ? undefined : w * 1000 })
  }
  return policies
}

/** The pace a quota allows: what is left over the time left (per ms); smaller is tighter. */
const pace = (q: Quota): number =>
  q.remaining === undefined
    ? Number.POSITIVE_INFINITY
    : q.resetMillis === undefined || q.resetMillis <= 0
    ? q.remaining === 0 ? 0 : Number.POSITIVE_INFINITY
    : q.remaining / q.resetMillis

const tightest = (quotas: ReadonlyArray<Quota>): Quota | undefined => {
  let best: Quota | undefined
  for (const q of quotas) if (best === undefined || pace(q) < pace(best)) best = q
  return best
}

const withCeiling = (quota: Quota | undefined, policies: ReadonlyArray<Policy>): Quota | undefined => {
  let ceiling: number | undefined
  for (const p of policies) {
    if (p.windowMillis === undefined || p.windowMillis <= 0) continue
    const perSecond = p.limit / (p.windowMillis / 1000)
    if (ceiling === undefined || perSecond < ceiling) ceiling = perSecond
  }
  if (quota === undefined && ceiling === undefined) return undefined
  return { ...quota, ...(ceiling !== undefined ? { ceilingPerSecond: ceiling } : {}) }
}

/** IETF structured `RateLimit` (draft-8 and later): `"name";r=50;t=30`, matched to policies by name. */
const structured = (headers: Headers, policies: ReadonlyArray<Policy>): ReadonlyArray<Quota> => {
  const out: Array<Quota> = []
  for (const m of parseMembers(headers["ratelimit"])) {
    const r = parseCount(m.params.get("r"))
    const t = parseSeconds(m.params.get("t"))
    if (r === undefined) continue
    const policy = policies.find((p) => p.name === m.name)
    out.push({
      remaining: r,
      resetMillis: t === undefined ? undefined : t * 1000,
      limit: policy?.limit,
      windowMillis: policy?.windowMillis
    })
  }
  return out
}

/** draft-7's combined `RateLimit: limit=100, remaining=99, reset=60`. */
const draft7 = (headers: Headers): Quota | undefined => {
  const text = headers["ratelimit"]
  if (text === undefined || !/remaining\s*=/i.test(text)) return undefined
  const fields = new Map<string, string>()
  for (const part of text.split(",")) {
    const eq = part.indexOf("=")
    if (eq !== -1) fields.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim())
  }
  const remaining = parseCount(fields.get("remaining"))
  if (remaining === undefined) return undefined
  const reset = parseSeconds(fields.get("reset"))
  return { remaining, resetMillis: reset === undefined ? undefined : reset * 1000, limit: parseCount(fields.get("limit")) }
}

/** Separate `<prefix>-Limit` / `-Remaining` / `-Reset` fields. */
const separate = (
  headers: Headers,
  names: { readonly limit: string; readonly remaining: string; readonly reset: string },
  reset: (text: string | undefined) => number | undefined
): Quota | undefined => {
  const remaining = parseCount(headers[names.remaining])
  if (remaining === undefined) return undefined
  return { remaining, resetMillis: reset(headers[names.reset]), limit: parseCount(headers[names.limit]) }
}

/**
 * The quotas AI APIs announce per unit, both refilling continuously:
 * OpenAI's `x-ratelimit-{limit,remaining,reset}-<unit>` (the reset a Go
 * duration) and Anthropic's `anthropic-ratelimit-<unit>-{limit,remaining,reset}`
 * (an RFC 3339 time; its `tokens` counts input and output together).
 */
const AI_NAMES = {
  requests: {
    openAi: { limit: "x-ratelimit-limit-requests", remaining: "x-ratelimit-remaining-requests", reset: "x-ratelimit-reset-requests" },
    anthropic: {
      limit: "anthropic-ratelimit-requests-limit",
      remaining: "anthropic-ratelimit-requests-remaining",
      reset: "anthropic-ratelimit-requests-reset"
    }
  },
  tokens: {
    openAi: { limit: "x-ratelimit-limit-tokens", remaining: "x-ratelimit-remaining-tokens", reset: "x-ratelimit-reset-tokens" },
    anthropic: {
      limit: "anthropic-ratelimit-tokens-limit",
      remaining: "anthropic-ratelimit-tokens-remaining",
      reset: "anthropic-ratelimit-tokens-reset"
    }
  }
} as const

const aiQuotas = (headers: Headers, nowMillis: number, unit: "requests" | "tokens"): ReadonlyArray<Quota> => {
  const found: Array<Quota> = []
  const openAi = separate(headers, AI_NAMES[unit].openAi, parseGoDuration)
  if (openAi !== undefined) found.push({ ...openAi, continuous: true })
  const anthropic = separate(headers, AI_NAMES[unit].anthropic, (t) => parseRfc3339(t, nowMillis))
  if (anthropic !== undefined) found.push({ ...anthropic, continuous: true })
  return found
}

/**
 * Every quota the response announces, combined: the tightest remaining pace
 * (remaining over time to reset), with the tightest policy as
 * `ceilingPerSecond`. `undefined` when the response announces nothing usable.
 * Header names must be lower case, as `@effect/platform` gives them.
 *
 * `unit: "tokens"` reads the token quotas instead (OpenAI's
 * `x-ratelimit-*-tokens`, Anthropic's `anthropic-ratelimit-tokens-*`), for a
 * limiter whose permits are tokens.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parse = (headers: Headers, nowMillis: number, unit: "requests" | "tokens" = "requests"): Quota | undefined => {
  if (unit === "tokens") return tightest(aiQuotas(headers, nowMillis, "tokens"))
  const policies = parsePolicies(headers["ratelimit-policy"])
  const found: Array<Quota> = [...structured(headers, policies)]
  const seven = draft7(headers)
  if (seven !== undefined) {
    const policy = policies[0]
    found.push({ ...seven, windowMillis: policy?.windowMillis })
  }
  const six = separate(
    headers,
    { limit: "ratelimit-limit", remaining: "ratelimit-remaining", reset: "ratelimit-reset" },
    (t) => parseReset(t, nowMillis)
  )
  if (six !== undefined) found.push(six)
  const legacy = separate(
    headers,
    { limit: "x-ratelimit-limit", remaining: "x-ratelimit-remaining", reset: "x-ratelimit-reset" },
    (t) => parseReset(t, nowMillis)
  )
  if (legacy !== undefined) found.push(legacy)
  found.push(...aiQuotas(headers, nowMillis, "requests"))
  return withCeiling(tightest(found), policies)
}
