import { CircuitBreakerStore } from "@sluice/core"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as RS from "../RedisStore.js"
import { connect } from "./connection.js"

type Store = CircuitBreakerStore.Store
const C = CircuitBreakerStore.constants

/**
 * The Lua below runs the same steps as core's memory store
 * (`internal/circuitBreaker.ts`); keep them in step (the Redis tests replay
 * one sequence through both). Times are integer milliseconds of Redis
 * `TIME`. ARGV[1..8]: consecutiveFailures, failureRate, windowMillis,
 * minimumCalls, halfOpenProbes, successesToClose, idle TTL, n; ARGV[9 ..
 * 8+n]: the open periods; then the operation's own arguments.
 */
const FIELDS = [
  "st", "ou", "tr", "fa", "pr", "pok", "ra",
  ...Array.from({ length: C.BUCKETS }, (_, i) => `b${i}`),
  ...Array.from({ length: C.BUCKETS }, (_, i) => `c${i}`),
  ...Array.from({ length: C.BUCKETS }, (_, i) => `f${i}`)
]

const COMMON = `
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local consecutive = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local windowMillis = tonumber(ARGV[3])
local minimumCalls = tonumber(ARGV[4])
local probesMax = tonumber(ARGV[5])
local toClose = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
local periods = tonumber(ARGV[8])
local op = 9 + periods
local function openFor(trips)
  return tonumber(ARGV[9 + math.min(math.max(0, trips - 1), periods - 1)])
end
local h = redis.call("HMGET", KEYS[1], ${FIELDS.map((f) => `"${f}"`).join(", ")})
local function num(x, d) local v = tonumber(x) if v == nil then return d end return v end
local st = num(h[1], ${C.CLOSED})
local ou = num(h[2], 0)
local tr = num(h[3], 0)
local fa = num(h[4], 0)
local pr = num(h[5], 0)
local pok = num(h[6], 0)
local ra = num(h[7], 0)
local B = ${C.BUCKETS}
local bat, calls, fails = {}, {}, {}
for i = 0, B - 1 do
  bat[i] = num(h[8 + i], -1)
  calls[i] = num(h[8 + B + i], 0)
  fails[i] = num(h[8 + 2 * B + i], 0)
end
local function clearWindow()
  for i = 0, B - 1 do bat[i] = -1 calls[i] = 0 fails[i] = 0 end
  fa = 0
end
local function trip()
  tr = tr + 1
  st = ${C.OPEN}
  ou = now + openFor(tr)
  pr = 0
  pok = 0
  clearWindow()
  return "opened"
end
local function int(x) return string.format("%.0f", x) end
local function save()
  local args = {"st", int(st), "ou", int(ou), "tr", int(tr), "fa", int(fa), "pr", int(pr), "pok", int(pok), "ra", int(ra)}
  for i = 0, B - 1 do
    table.insert(args, "b" .. i) table.insert(args, int(bat[i]))
    table.insert(args, "c" .. i) table.insert(args, int(calls[i]))
    table.insert(args, "f" .. i) table.insert(args, int(fails[i]))
  end
  redis.call("HSET", KEYS[1], unpack(args))
  redis.call("PEXPIRE", KEYS[1], int(math.max(0, ou - now) + ttl))
end
`

/** Returns {admitted 0|1, probe 0|1, retryAfterMillis, transition or ""}. */
const ADMIT = `${COMMON}
local transition = ""
if st == ${C.OPEN} then
  if now < ou then return {0, 0, int(ou - now), ""} end
  st = ${C.HALF_OPEN}
  pr = 0
  pok = 0
  ra = now
  transition = "half-opened"
end
if st == ${C.HALF_OPEN} then
  local period = openFor(tr)
  if pr >= probesMax and now - ra >= period then
    pr = 0
    ra = now
  end
  if pr < probesMax then
    pr = pr + 1
    save()
    return {1, 1, "0", transition}
  end
  save()
  return {0, 0, int(math.max(1, ra + period - now)), transition}
end
return {1, 0, "0", transition}
`

/** ARGV[op]: outcome ("success" | "failure" | "ignored"), ARGV[op+1]: probe (0|1). Returns the transition or "". */
const RECORD = `${COMMON}
local outcome = ARGV[op]
local probe = ARGV[op + 1] == "1"
if probe then
  if st ~= ${C.HALF_OPEN} then return "" end
  if outcome == "failure" then
    local tn = trip()
    save()
    return tn
  end
  pr = math.max(0, pr - 1)
  if outcome == "ignored" then save() return "" end
  pok = pok + 1
  if pok < toClose then save() return "" end
  st = ${C.CLOSED}
  tr = 0
  pr = 0
  pok = 0
  clearWindow()
  save()
  return "closed"
end
if st ~= ${C.CLOSED} or outcome == "ignored" then return "" end
local bucketMillis = math.max(1, windowMillis / B)
local bucket = math.floor(now / bucketMillis)
local slot = bucket % B
if bat[slot] ~= bucket then
  bat[slot] = bucket
  calls[slot] = 0
  fails[slot] = 0
end
calls[slot] = calls[slot] + 1
if outcome == "success" then
  fa = 0
  save()
  return ""
end
fails[slot] = fails[slot] + 1
fa = fa + 1
local tn = ""
if consecutive > 0 and fa >= consecutive then
  tn = trip()
elseif rate > 0 then
  local n, f = 0, 0
  for i = 0, B - 1 do
    if bat[i] > bucket - B then
      n = n + calls[i]
      f = f + fails[i]
    end
  end
  if n >= minimumCalls and f >= rate * n then tn = trip() end
end
save()
return tn
`

const SNAPSHOT = `${COMMON}
return {int(st), int(ou), int(tr), int(now)}
`

const storeError = (message: string, cause?: unknown) =>
  new CircuitBreakerStore.CircuitBreakerStoreError({ message, ...(cause !== undefined ? { cause } : {}) })

/** Snapshot's parameters: none is read, but the script reads the common head. */
const NO_PARAMS: CircuitBreakerStore.Params = {
  consecutiveFailures: 1,
  failureRate: 0,
  windowMillis: 1,
  minimumCalls: 1,
  openMillis: [0],
  halfOpenProbes: 1,
  successesToClose: 1
}

export const make = (options: RS.Options): Effect.Effect<Store, CircuitBreakerStore.CircuitBreakerStoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const prefix = options.prefix ?? "sluice:"
    const ttl = options.idleTtlMillis ?? 3_600_000
    const run = yield* connect(options, {
      CB_ADMIT: { lua: ADMIT, keys: 1 },
      CB_RECORD: { lua: RECORD, keys: 1 },
      CB_SNAPSHOT: { lua: SNAPSHOT, keys: 1 }
    }, storeError)
    const stateKey = (key: string) => `${prefix}${key}:circuit`
    const head = (p: CircuitBreakerStore.Params): Array<string | number> => [
      p.consecutiveFailures,
      p.failureRate,
      p.windowMillis,
      p.minimumCalls,
      p.halfOpenProbes,
      p.successesToClose,
      ttl,
      p.openMillis.length,
      ...p.openMillis.map((ms) => Math.max(0, Math.round(ms)))
    ]
    const transition = (t: string): CircuitBreakerStore.Transition | undefined =>
      t === "opened" || t === "half-opened" || t === "closed" ? t : undefined
    return {
      admit: (key, params) =>
        Effect.map(run<[number, number, string, string]>("CB_ADMIT", [stateKey(key)], head(params)), (r) => ({
          admitted: Number(r[0]) === 1,
          probe: Number(r[1]) === 1,
          retryAfterMillis: Number(r[2]),
          transition: transition(r[3])
        })),
      record: (key, outcome, probe, params) =>
        Effect.map(run<string>("CB_RECORD", [stateKey(key)], [...head(params), outcome, probe ? 1 : 0]), transition),
      snapshot: (key) =>
        Effect.map(run<Array<string>>("CB_SNAPSHOT", [stateKey(key)], head(NO_PARAMS)), (r) => ({
          state: CircuitBreakerStore.stateName(Number(r[0])),
          openUntil: Number(r[1]),
          trips: Number(r[2]),
          now: Number(r[3])
        }))
    } satisfies Store
  })
