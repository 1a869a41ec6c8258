import { RateLimiterStore } from "@sluice/core"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { Redis } from "ioredis"
import type * as RS from "../RedisStore.js"

type Store = RateLimiterStore.Store

/** Redis time in integer milliseconds: every script starts here. */
const NOW = `
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

/** Reads the state hash; absent fields take their initial values. */
const READ = `
local s = redis.call("HMGET", KEYS[1], "tat", "rate", "epoch", "paused", "shift")
local tat = tonumber(s[1]) or 0
local rate = tonumber(s[2])
local epoch = tonumber(s[3]) or 0
local paused = tonumber(s[4]) or 0
local shift = tonumber(s[5]) or 0
`

/** Writes it back with a TTL that outlives every reservation and pause by the idle TTL. */
const WRITE = (ttlArg: string) => `
redis.call("HSET", KEYS[1], "tat", tostring(tat), "rate", tostring(rate), "epoch", tostring(epoch), "paused", tostring(paused), "shift", tostring(shift))
redis.call("PEXPIRE", KEYS[1], math.ceil(math.max(tat, paused, now) - now) + tonumber(${ttlArg}))
`

/** The same arithmetic as `RateLimiterStore.reserveSlot`. ARGV: interval ("" = stored rate), burst, maxWait (-1 = none), initialRate, ttl. */
const RESERVE = `${NOW}${READ}
rate = rate or tonumber(ARGV[4])
local interval = tonumber(ARGV[1]) or (1000 / rate)
local burst = math.max(1, tonumber(ARGV[2]))
local maxWait = tonumber(ARGV[3])
local slot = math.max(now, tat - (burst - 1) * interval, paused)
local wait = slot - now
if maxWait >= 0 and wait > maxWait then
  return {0, tostring(wait)}
end
tat = math.max(tat, now, paused) + interval
${WRITE("ARGV[5]")}
return {1, tostring(slot), tostring(wait), tostring(interval), tostring(epoch), tostring(shift)}
`

/** ARGV: slot, shift at reservation, interval, ttl. */
const RELEASE = `${NOW}${READ}
if rate == nil then return 0 end
if tonumber(ARGV[1]) + (shift - tonumber(ARGV[2])) >= now then
  tat = math.max(now, tat - tonumber(ARGV[3]))
  ${WRITE("ARGV[4]")}
  return 1
end
return 0
`

const OWED = `
local shift = tonumber(redis.call("HGET", KEYS[1], "shift")) or 0
return tostring(math.max(0, shift - tonumber(ARGV[1])))
`

/** ARGV: initialRate, ttl. */
const STATE = `${NOW}${READ}
if rate == nil then
  rate = tonumber(ARGV[1])
  ${WRITE("ARGV[2]")}
end
return {tostring(rate), tostring(epoch), tostring(paused), tostring(now)}
`

/** ARGV: kind, epoch, rate, pauseMillis, ttl. */
const ADJUST = `${NOW}${READ}
rate = rate or tonumber(ARGV[3])
local kind = ARGV[1]
local function pause(ms)
  local untilT = now + math.ceil(ms)
  if untilT > paused then
    local extra = untilT - math.max(now, paused)
    shift = shift + extra
    tat = math.max(tat, now) + extra
    paused = untilT
  end
end
if kind == "Decrease" then
  if tonumber(ARGV[2]) ~= epoch then return 0 end
  epoch = epoch + 1
  rate = tonumber(ARGV[3])
  if tonumber(ARGV[4]) > 0 then pause(tonumber(ARGV[4])) end
elseif kind == "SetRate" then
  rate = tonumber(ARGV[3])
else
  pause(tonumber(ARGV[4]))
end
${WRITE("ARGV[5]")}
return 1
`

/** KEYS[1] is the success log (a sorted set of Redis times); ARGV: a unique member. */
const RECORD_SUCCESS = `${NOW}
redis.call("ZADD", KEYS[1], now, ARGV[1])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now - 10000)
redis.call("PEXPIRE", KEYS[1], 10000)
return 1
`

const SUCCESSES_SINCE = `return redis.call("ZCOUNT", KEYS[1], ARGV[1], "+inf")`

const TIME = `${NOW}
return tostring(now)`

const storeError = (message: string, cause?: unknown) =>
  new RateLimiterStore.RateLimiterStoreError({ message, ...(cause !== undefined ? { cause } : {}) })

export const make = (options: RS.Options): Effect.Effect<Store, RateLimiterStore.RateLimiterStoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const prefix = options.prefix ?? "sluice:"
    const ttl = String(options.idleTtlMillis ?? 3_600_000)
    const commandTimeout = options.commandTimeoutMillis ?? 1_000
    if (options.url === undefined && options.path === undefined) {
      return yield* storeError("RedisStore needs a url (redis://host:port) or a unix socket path")
    }
    const common = {
      // Fail fast while Redis is away instead of queueing commands forever: a limiter must never hang.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout,
      connectTimeout: 2_000,
      lazyConnect: true,
      retryStrategy: (times: number) => Math.min(1_000, 50 * times)
    }
    const redis = yield* Effect.acquireRelease(
      Effect.sync(() =>
        options.path !== undefined
          ? new Redis({ path: options.path, ...common })
          : new Redis(typeof options.url === "string" ? options.url : Redacted.value(options.url!), common)
      ),
      // quit waits for Redis; if it is away, just drop the connection.
      (r): Effect.Effect<void> =>
        r.status === "ready"
          ? Effect.promise(() => r.quit().catch(() => r.disconnect())).pipe(
            Effect.timeout("1 second"),
            Effect.ignore,
            Effect.ensuring(Effect.sync(() => r.disconnect()))
          )
          : Effect.sync(() => r.disconnect())
    )
    redis.on("error", () => {}) // reported per operation instead
    yield* Effect.tryPromise({
      try: () => redis.connect(),
      catch: (cause) => storeError(`cannot connect to Redis: ${(cause as Error).message}`, cause)
    })

    // defineCommand sends each script once and then calls it by its SHA (EVALSHA), reloading it if Redis forgot it.
    const scripts = { RESERVE, RELEASE, OWED, STATE, ADJUST, RECORD_SUCCESS, SUCCESSES_SINCE, TIME }
    const names = new Map<string, string>()
    for (const [name, lua] of Object.entries(scripts)) {
      const command = `sluice_${name.toLowerCase()}`
      redis.defineCommand(command, { numberOfKeys: name === "TIME" ? 0 : 1, lua })
      names.set(lua, command)
    }
    const script = <A>(source: string, keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) =>
      Effect.tryPromise({
        try: () => (redis as unknown as Record<string, (...a: Array<string | number>) => Promise<A>>)[names.get(source)!]!(...keys, ...args),
        catch: (cause) => storeError(`Redis: ${(cause as Error).message}`, cause)
      }).pipe(
        Effect.timeoutFail({ duration: commandTimeout + 100, onTimeout: () => storeError("Redis did not answer in time") })
      )
    const stateKey = (key: string) => `${prefix}${key}:state`
    const successKey = (key: string) => `${prefix}${key}:ok`
    let member = 0
    const tag = Math.random().toString(36).slice(2, 8)

    const remote: Store = {
      now: Effect.map(script<string>(TIME, [], []), Number),
      reserve: (key, o) =>
        Effect.map(
          script<Array<string | number>>(RESERVE, [stateKey(key)], [
            o.intervalMillis === undefined ? "" : String(o.intervalMillis),
            o.burst,
            Number.isFinite(o.maxWaitMillis) ? o.maxWaitMillis : -1,
            o.initialRate ?? 1,
            ttl
          ]),
          (r): RateLimiterStore.Reservation | RateLimiterStore.Rejection =>
            Number(r[0]) === 0
              ? { _tag: "Rejected", waitMillis: Number(r[1]) }
              : {
                _tag: "Reserved",
                slot: Number(r[1]),
                waitMillis: Number(r[2]),
                intervalMillis: Number(r[3]),
                epoch: Number(r[4]),
                shift: Number(r[5])
              }
        ),
      release: (key, r) => Effect.asVoid(script(RELEASE, [stateKey(key)], [r.slot, r.shift, r.intervalMillis, ttl])),
      owed: (key, r) => Effect.map(script<string>(OWED, [stateKey(key)], [r.shift]), Number),
      adaptiveState: (key, initialRate) =>
        Effect.map(script<Array<string>>(STATE, [stateKey(key)], [initialRate, ttl]), (r) => ({
          rate: Number(r[0]),
          epoch: Number(r[1]),
          pausedUntil: Number(r[2]),
          now: Number(r[3])
        })),
      adjust: (key, a) =>
        Effect.map(
          script<number>(ADJUST, [stateKey(key)], [
            a._tag,
            a._tag === "Decrease" ? a.epoch : -1,
            a._tag === "Pause" ? 1 : a.rate,
            a._tag === "SetRate" ? 0 : a.pauseMillis,
            ttl
          ]),
          (r) => Number(r) === 1
        ),
      recordSuccess: (key) => Effect.asVoid(script(RECORD_SUCCESS, [successKey(key)], [`${tag}:${member++}`])),
      successesSince: (key, since) => Effect.map(script<number>(SUCCESSES_SINCE, [successKey(key)], [since]), Number)
    }

    const policy = options.onUnavailable ?? "fail"
    if (policy === "fail") return remote
    // Fallback: a local store at 1/N of the rate while Redis is away; every call tries Redis first.
    const n = Math.max(1, policy.processes)
    const local = yield* RateLimiterStore.makeMemory
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
            initialRate: (o.initialRate ?? 1) / n
          })
        ),
      release: (key, r) => fallback(remote.release(key, r), local.release(key, r)),
      owed: (key, r) => fallback(remote.owed(key, r), local.owed(key, r)),
      adaptiveState: (key, initialRate) => fallback(remote.adaptiveState(key, initialRate), local.adaptiveState(key, initialRate / n)),
      adjust: (key, a) => fallback(remote.adjust(key, a), local.adjust(key, a)),
      recordSuccess: (key) => fallback(remote.recordSuccess(key), local.recordSuccess(key)),
      successesSince: (key, since) => fallback(remote.successesSince(key, since), local.successesSince(key, since))
    } satisfies Store
  })
