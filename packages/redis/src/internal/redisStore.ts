import { RateLimiterStore } from "@sluice/core"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { connect } from "./connection.js"
import type * as RS from "../RedisStore.js"

type Store = RateLimiterStore.Store
const Adaptive = RateLimiterStore.adaptiveConstants

/**
 * The Lua below runs the same steps as core's memory store (`RateLimiterStore.reserveSlot` and
 * the adaptive steps in `internal/adaptive.ts`); keep them in step. Every field is written as an
 * integer (`%.0f`: Lua's `tostring` would print large numbers in exponent form): times in ms,
 * `tat` in microseconds, rates and the success count in thousandths.
 */
const NOW = `
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

/** Reads one key's state; absent fields take their initial values. ARGV[1..5]: the adaptive params. */
const READ = `
local function num(x, d) local v = tonumber(x) if v == nil then return d end return v end
local function int(x) return string.format("%.0f", x) end
local maxRate = num(ARGV[1], 1)
local floorRate = num(ARGV[2], 1)
local margin = num(ARGV[3], 0)
local penalty = num(ARGV[4], 0)
local maxPause = num(ARGV[5], 0)
local h = redis.call("HMGET", KEYS[1], "tat", "paused", "shift", "epoch", "wmax", "r0", "grown", "last", "k", "ok", "oks", "qr", "qu", "qrem", "ceil", "qs", "qw", "qf", "qn", "okp", "wc", "qh")
local tat = num(h[1], 0) / 1000
local paused = num(h[2], 0)
local shift = num(h[3], 0)
local epoch = num(h[4], 0)
local wmax = num(h[5], maxRate * 1000) / 1000
local r0 = num(h[6], maxRate * 1000) / 1000
local grown = num(h[7], 0)
local last = num(h[8], now)
local k = num(h[9], ${Adaptive.PROBE_MIN_MILLIS})
local ok = num(h[10], 0) / 1000
local oks = num(h[11], now)
local qr = num(h[12], 0) / 1000
local qu = num(h[13], 0)
local qrem = num(h[14], 0)
local ceil = num(h[15], 0) / 1000
local qs = num(h[16], 0)
local qw = num(h[17], 0)
local qf = num(h[18], 0)
local qn = num(h[19], 0) / 1000
local function pausedBy() return shift - math.max(0, paused - now) end
-- absent (a key written before it existed): nothing of the span counts as paused
local okp = num(h[20], pausedBy())
local wc = num(h[21], 0) / 1000
local qh = num(h[22], 0)

local function rateAt()
  local r
  if now < qu and (qrem > 0 or qr > 0) then
    r = qr
    if qn > 0 and qw > 0 and qs > 0 and math.max(now, tat, paused) >= qs + qw * (1 + ${Adaptive.WINDOW_SLACK}) then r = qn end
  else
    local hold = wmax * ${Adaptive.HOLD_PERMILLE} / 1000
    if grown <= k then
      local u = 1 - grown / k
      r = hold - (hold - r0) * u * u * u
    else
      local x = math.min(100, (grown - k) / ${Adaptive.PROBE_CUBIC_MILLIS})
      r = hold * (1 + x * x * x)
    end
    r = math.max(floorRate, r)
  end
  if ceil > 0 then r = math.min(r, ceil) end
  return math.max(0.001, math.min(maxRate, r))
end

local function pauseUntil(untilT)
  if untilT > paused then
    local extra = untilT - math.max(now, paused)
    shift = shift + extra
    tat = math.max(tat, now) + extra
    paused = untilT
  end
end

local function pause(ms)
  pauseUntil(now + math.ceil(math.min(math.max(0, ms), maxPause)))
end

local function holdFrom()
  if qh > now then pauseUntil(qh) end
  qh = 0
end

-- remaining and reset are -1 when not announced, ceiling 0, sentAt -1
local function applyQuota(remaining, reset, ceiling, limit, continuous, sentAt)
  if ceiling > 0 then ceil = math.min(ceiling, maxRate) end
  if remaining < 0 or reset < 0 then return end
  reset = math.min(reset, maxPause)
  if continuous == 1 and limit > 0 then
    qu = now + reset
    qrem = math.min(remaining, ${Adaptive.MAX_REMAINING})
    if remaining == 0 then pause(reset / limit) end
    qr = math.min(maxRate, limit * 1000 / math.max(${Adaptive.MIN_PACE_SPAN_MILLIS}, reset))
    if remaining == 0 then qrem = 1 end
    return
  end
  local from = now
  if sentAt >= 0 then from = sentAt end
  local first = limit > 0 and remaining == limit - 1
  local fresh = from >= qu or remaining > qrem or first
  if fresh then
    qu = now + reset
    qh = 0
  else
    qu = math.min(qu, now + reset)
  end
  if sentAt >= 0 then
    if fresh then
      if first or limit <= 0 then qs = sentAt else qs = 0 end
    end
    local span = qu - qs
    if qs > 0 and span > 0 and (qw == 0 or span < qw) then qw = span end
    if limit > 0 and remaining == limit - 1 then
      local between = sentAt - qf
      if qf > 0 and between > 0 and (qw == 0 or between < qw) then qw = between end
      qf = sentAt
    end
  end
  local endT = qu
  local pw = qw * (1 + ${Adaptive.WINDOW_SLACK})
  if qw > 0 and qu - qs - qw <= ${Adaptive.RESET_ROUNDING_MILLIS} then endT = math.min(qu, math.max(now, qs + pw)) end
  qrem = math.min(remaining, ${Adaptive.MAX_REMAINING})
  if limit > 0 and qw > 0 then
    qn = math.min(maxRate, limit * 1000 / math.max(${Adaptive.MIN_PACE_SPAN_MILLIS}, pw))
  else
    qn = 0
  end
  if remaining == 0 then
    qh = math.max(now, math.ceil(endT))
    if limit > 0 then
      local w = reset
      if qw > 0 then w = pw end
      qr = math.min(maxRate, limit * 1000 / math.max(${Adaptive.MIN_PACE_SPAN_MILLIS}, w))
    else
      qr = 0
    end
  else
    qr = math.min(maxRate, (remaining + 1) * 1000 / math.max(${Adaptive.MIN_PACE_SPAN_MILLIS}, endT - from))
  end
end
`

/** Writes the state back with a TTL that outlives every reservation and pause by the idle TTL (ARGV[6]). */
const WRITE = `
redis.call("HSET", KEYS[1], "tat", int(tat * 1000), "paused", int(paused), "shift", int(shift), "epoch", int(epoch),
  "wmax", int(wmax * 1000), "r0", int(r0 * 1000), "grown", int(grown), "last", int(last), "k", int(k),
  "ok", int(ok * 1000), "oks", int(oks), "qr", int(qr * 1000), "qu", int(qu), "qrem", int(qrem), "ceil", int(ceil * 1000), "qs", int(qs), "qw", int(qw),
  "qf", int(qf), "qn", int(qn * 1000), "okp", int(okp), "wc", int(wc * 1000), "qh", int(qh))
redis.call("PEXPIRE", KEYS[1], int(math.ceil(math.max(tat, paused, now) - now) + tonumber(ARGV[6])))
`

/** ARGV[7..10]: interval ("" = the adaptive rate), burst, maxWait (-1 = none), weight. */
const RESERVE = `${NOW}${READ}
local adaptive = ARGV[7] == ""
if adaptive and tat <= now and paused <= now then holdFrom() end
local interval = tonumber(ARGV[7]) or (1000 / rateAt())
local burst = math.max(1, tonumber(ARGV[8]))
local maxWait = tonumber(ARGV[9])
local weight = tonumber(ARGV[10]) or 1
local slot = math.max(now, tat - (burst - weight) * interval, paused)
local wait = slot - now
if maxWait >= 0 and wait > maxWait then
  return {0, tostring(wait)}
end
tat = math.max(tat, now, paused) + weight * interval
if adaptive then
  if wait > 0 and now >= paused then grown = grown + math.max(0, math.min(1000, now - last)) end
  if now - last >= ${Adaptive.MIN_MEASURE_MILLIS} and now >= paused then
    ok = 0
    oks = now
    okp = pausedBy()
  end
  last = now
end
${WRITE}
return {1, tostring(slot), tostring(wait), tostring(interval), tostring(epoch), tostring(shift)}
`

/** ARGV[7..9]: slot, shift at reservation, interval. */
const RELEASE = `${NOW}${READ}
if h[1] == false then return 0 end
if tonumber(ARGV[7]) + (shift - tonumber(ARGV[8])) >= now then
  tat = math.max(now, tat - tonumber(ARGV[9]))
  ${WRITE}
  return 1
end
return 0
`

/**
 * ARGV[1]: shift at reservation; ARGV[2]: the idle TTL. A waiter woken at its slot: the first to
 * meet a spent window's hold starts its pause (`holdFrom`; only then is anything written). It
 * repeats `pauseUntil`'s three lines rather than loading the whole state with `READ`: `owed` runs
 * once per woken waiter, and with no hold pending it reads three fields and writes nothing.
 */
const OWED = `
local h = redis.call("HMGET", KEYS[1], "shift", "epoch", "qh", "paused", "tat")
local shift = tonumber(h[1]) or 0
local qh = tonumber(h[3]) or 0
if qh > 0 then
  ${NOW}
  local paused = tonumber(h[4]) or 0
  local tat = (tonumber(h[5]) or 0) / 1000
  if qh > now and qh > paused then
    local extra = qh - math.max(now, paused)
    shift = shift + extra
    tat = math.max(tat, now) + extra
    paused = qh
  end
  redis.call("HSET", KEYS[1], "shift", string.format("%.0f", shift), "tat", string.format("%.0f", tat * 1000), "paused", string.format("%.0f", paused), "qh", "0")
  redis.call("PEXPIRE", KEYS[1], string.format("%.0f", math.ceil(math.max(tat, paused) - now) + tonumber(ARGV[2])))
end
return {tostring(math.max(0, shift - tonumber(ARGV[1]))), tostring(tonumber(h[2]) or 0)}
`

const STATE = `${NOW}${READ}
return {tostring(rateAt()), tostring(epoch), tostring(paused), tostring(now)}
`

/**
 * One adaptive decision. ARGV[7..14]: kind ("Success" | "RateLimited"), epoch, retryAfter ms
 * (-1 = none), remaining (-1), reset ms (-1), ceiling per second (0), limit (0), continuous (0|1),
 * sent at, store ms (-1 = unknown).
 */
const FEEDBACK = `${NOW}${READ}
local kind = ARGV[7]
local remaining = tonumber(ARGV[10])
local reset = tonumber(ARGV[11])
local ceiling = tonumber(ARGV[12])
local limit = tonumber(ARGV[13])
local continuous = tonumber(ARGV[14])
local sentAt = tonumber(ARGV[15]) or -1
local weight = tonumber(ARGV[16]) or 1
local decreased = 0
if kind == "Success" then
  ok = ok + weight
  if now - oks > ${Adaptive.MEMORY_MILLIS} then
    local p = pausedBy()
    ok = ok / 2
    oks = now - (now - oks) / 2
    okp = p - (p - okp) / 2
  end
  applyQuota(remaining, reset, ceiling, limit, continuous, sentAt)
else
  local ra = tonumber(ARGV[9])
  if ra >= 0 then pause(ra) end
  applyQuota(remaining, reset, ceiling, limit, continuous, -1)
  if tonumber(ARGV[8]) == epoch then
    local current = rateAt()
    local span = now - oks - math.max(0, pausedBy() - okp)
    local estimate
    local windowCount = 0
    local sure = false
    if span >= ${Adaptive.MIN_MEASURE_MILLIS} then
      local measured = ok * 1000 / span
      estimate = math.min(current, math.max(current / 2, math.sqrt(math.min(measured, current) * current)))
    elseif ra >= 0 and ok >= ${Adaptive.WINDOW_COUNT_MIN} then
      local perWait = ok * 1000 / math.max(span, math.min(ra, maxPause))
      local again = wc > 0 and math.abs(ok - wc) * 1000 <= ${Adaptive.SAME_CAPACITY_PERMILLE} * wc
      local deepest = current * (1 - penalty)
      if again then deepest = current / 4 elseif perWait * 3 < current then deepest = current / 2 end
      windowCount = ok
      estimate = math.min(current * (1 - margin), math.max(deepest, perWait))
      sure = again and perWait >= deepest
    else
      estimate = current * (1 - penalty)
    end
    local probing = grown > k
    local accepted = estimate
    if probing and math.abs(estimate - wmax) <= 0.5 * wmax then accepted = (estimate + 3 * wmax) / 4 end
    local nextRate = math.max(floorRate, accepted)
    if math.abs(nextRate - wmax) * 1000 > ${Adaptive.SAME_CAPACITY_PERMILLE} * wmax then
      k = ${Adaptive.PROBE_MIN_MILLIS}
    elseif probing then
      k = math.min(${Adaptive.PROBE_MAX_MILLIS}, k * ${Adaptive.PROBE_BACKOFF})
    end
    if sure then k = math.max(k, ${Adaptive.PROBE_MIN_MILLIS * Adaptive.PROBE_BACKOFF}) end
    wc = windowCount
    wmax = nextRate
    r0 = math.max(floorRate, nextRate * (1 - margin))
    grown = 0
    epoch = epoch + 1
    if paused > now then tat = math.min(tat, paused) end
    ok = 0
    oks = now
    okp = pausedBy()
    decreased = 1
  end
end
${WRITE}
return {decreased, tostring(rateAt())}
`

const TIME = `${NOW}
return tostring(now)`

/** Parameters for keys reserved at a fixed interval: the adaptive fields stay unused. */
const FIXED: RateLimiterStore.AdaptiveParams = { maxRate: 1, floorRate: 1, margin: 0, penalty: 0, maxPauseMillis: 0 }

/** Every duration written to Redis is at most a day: far inside its integer range. */
const MAX_PAUSE = 86_400_000

const storeError = (message: string, cause?: unknown) =>
  new RateLimiterStore.RateLimiterStoreError({ message, ...(cause !== undefined ? { cause } : {}) })

export const make = (options: RS.Options): Effect.Effect<Store, RateLimiterStore.RateLimiterStoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const prefix = options.prefix ?? "sluice:"
    const ttl = String(options.idleTtlMillis ?? 3_600_000)
    const run = yield* connect(options, {
      RESERVE: { lua: RESERVE, keys: 1 },
      RELEASE: { lua: RELEASE, keys: 1 },
      OWED: { lua: OWED, keys: 1 },
      STATE: { lua: STATE, keys: 1 },
      FEEDBACK: { lua: FEEDBACK, keys: 1 },
      TIME: { lua: TIME, keys: 0 }
    }, storeError)
    const stateKey = (key: string) => `${prefix}${key}:state`
    /** The adaptive params every script reads first (ARGV[1..5]), and the idle TTL (ARGV[6]). */
    const head = (params: RateLimiterStore.AdaptiveParams | undefined): Array<string | number> => {
      const p = params ?? FIXED
      return [p.maxRate, p.floorRate, p.margin, p.penalty, Math.min(Math.max(0, Math.ceil(p.maxPauseMillis)), MAX_PAUSE), ttl]
    }
    const finite = (n: number | undefined, none: number) =>
      n === undefined || !Number.isFinite(n) || n < 0 ? none : Math.min(Math.ceil(n), MAX_PAUSE)

    const remote: Store = {
      now: Effect.map(run<string>("TIME", [], []), Number),
      reserve: (key, o) =>
        Effect.map(
          run<Array<string | number>>("RESERVE", [stateKey(key)], [
            ...head(o.adaptive),
            o.intervalMillis === undefined ? "" : String(o.intervalMillis),
            o.burst,
            Number.isFinite(o.maxWaitMillis) ? Math.ceil(o.maxWaitMillis) : -1,
            o.weight ?? 1
          ]),
          (r): RateLimiterStore.Reservation | RateLimiterStore.Rejection =>
            Number(r[0]) === 0
              ? { _tag: "Rejected", waitMillis: Number(r[1]) }
              : {
                _tag: "Reserved",
                slot: Number(r[1]),
                waitMillis: Number(r[2]),
                intervalMillis: Number(r[3]),
                weight: o.weight ?? 1,
                epoch: Number(r[4]),
                shift: Number(r[5])
              }
        ),
      release: (key, r) =>
        Effect.asVoid(run("RELEASE", [stateKey(key)], [...head(undefined), r.slot, r.shift, r.intervalMillis * (r.weight ?? 1)])),
      owed: (key, r) =>
        Effect.map(run<Array<string>>("OWED", [stateKey(key)], [r.shift, ttl]), (o) => ({ millis: Number(o[0]), epoch: Number(o[1]) })),
      adaptiveState: (key, params) =>
        Effect.map(run<Array<string>>("STATE", [stateKey(key)], head(params)), (r) => ({
          rate: Number(r[0]),
          epoch: Number(r[1]),
          pausedUntil: Number(r[2]),
          now: Number(r[3])
        })),
      feedback: (key, f, params) =>
        Effect.map(
          run<Array<string | number>>("FEEDBACK", [stateKey(key)], [
            ...head(params),
            f._tag,
            f._tag === "RateLimited" ? f.epoch : -1,
            f._tag === "RateLimited" ? finite(f.retryAfterMillis, -1) : -1,
            f.quota?.remaining !== undefined && f.quota.remaining >= 0
              ? Math.floor(Math.min(f.quota.remaining, Adaptive.MAX_REMAINING))
              : -1,
            finite(f.quota?.resetMillis, -1),
            f.quota?.ceilingPerSecond !== undefined && f.quota.ceilingPerSecond > 0
              ? Math.min(f.quota.ceilingPerSecond, params.maxRate)
              : 0,
            f.quota?.limit !== undefined && f.quota.limit > 0 ? Math.floor(Math.min(f.quota.limit, Adaptive.MAX_REMAINING)) : 0,
            f.quota?.continuous === true ? 1 : 0,
            f._tag === "Success" && f.sentAt !== undefined && Number.isFinite(f.sentAt) && f.sentAt >= 0 ? Math.floor(f.sentAt) : -1,
            f._tag === "Success" && f.weight !== undefined && f.weight > 0 ? f.weight : 1
          ]),
          (r) => ({ decreased: Number(r[0]) === 1, rate: Number(r[1]) })
        )
    }

    const policy = options.onUnavailable ?? "fail"
    if (policy === "fail") return remote
    // Fallback: a local store at 1/N of the rate while Redis is away; every call tries Redis first.
    const n = Math.max(1, policy.processes)
    const local = yield* RateLimiterStore.makeMemory
    // This process's share of an adaptive limiter while it limits alone.
    const share = (p: RateLimiterStore.AdaptiveParams): RateLimiterStore.AdaptiveParams => ({
      ...p,
      maxRate: p.maxRate / n,
      floorRate: p.floorRate / n
    })
    let warned = false
    const fallback = <A>(remoteOp: Effect.Effect<A, RateLimiterStore.RateLimiterStoreError>, localOp: Effect.Effect<A, RateLimiterStore.RateLimiterStoreError>) =>
      Effect.catchAll(remoteOp, (e) =>
        Effect.zipRight(
          warned ? Effect.void : Effect.zipRight(Effect.sync(() => (warned = true)), Effect.logWarning(`sluice: Redis unavailable (${e.message}); limiting locally at 1/${n} of the rate`)),
          localOp
        ))
    return {
      now: fallback(remote.now, local.now),
      reserve: (key, o) =>
        fallback(
          Effect.tap(remote.reserve(key, o), () => Effect.sync(() => (warned = false))),
          local.reserve(key, {
            ...o,
            intervalMillis: o.intervalMillis === undefined ? undefined : o.intervalMillis * n,
            burst: Math.max(1, Math.floor(o.burst / n)),
            adaptive: o.adaptive === undefined ? undefined : share(o.adaptive)
          })
        ),
      release: (key, r) => fallback(remote.release(key, r), local.release(key, r)),
      owed: (key, r) => fallback(remote.owed(key, r), local.owed(key, r)),
      adaptiveState: (key, params) => fallback(remote.adaptiveState(key, params), local.adaptiveState(key, share(params))),
      feedback: (key, f, params) => fallback(remote.feedback(key, f, params), local.feedback(key, f, share(params)))
    } satisfies Store
  })
