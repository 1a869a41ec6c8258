/**
 * The test server's options, checked before it listens: a bad option is a
 * `TestServerConfigError` that names it, never a crash in the middle of a run.
 */
import * as Duration from "effect/Duration"
import type * as TS from "../TestServer.js"
import { Fault, TestServerConfigError } from "../TestServer.js"

/** The faults a reply may name: the literals of `TestServer.Fault` (read when called: the modules import each other). */
const faults = (): ReadonlyArray<string> => Fault.literals

export const ALGORITHMS = ["token-bucket", "fixed-window", "sliding-window"]
export const HEADER_FORMS = ["ietf", "x", "x-epoch", "draft-7", "draft-8", "openai", "anthropic"]

export const configError = (message: string) => new TestServerConfigError({ message })

export const millis = (d: Duration.DurationInput | undefined, what: string): number => {
  if (d === undefined) return 0
  const decoded = Duration.decodeUnknown(d)
  if (decoded._tag === "None" || !Duration.isFinite(decoded.value)) {
    throw configError(`${what}: ${String(d)} is not a finite duration`)
  }
  return Duration.toMillis(decoded.value)
}

export const validateReply = (reply: TS.Reply, where: string): void => {
  if (reply.status !== undefined && (!Number.isInteger(reply.status) || reply.status < 100 || reply.status > 599)) {
    throw configError(`${where}: status ${reply.status} is not an HTTP status (100-599)`)
  }
  if (reply.fault !== undefined && !faults().includes(reply.fault)) {
    throw configError(`${where}: unknown fault "${reply.fault}" (one of ${faults().join(", ")})`)
  }
  if (typeof reply.retryAfter === "number" && (!(reply.retryAfter >= 0) || !Number.isFinite(reply.retryAfter))) {
    throw configError(`${where}: retryAfter must be a non-negative number of seconds`)
  }
  millis(reply.delay, `${where}.delay`)
  millis(reply.chunkDelay, `${where}.chunkDelay`)
}

export const validateCapacity = (c: TS.Capacity, where: string): void => {
  if (!(c.rate > 0) || !Number.isFinite(c.rate)) throw configError(`${where}: capacity rate must be > 0 (got ${c.rate})`)
  if (c.burst !== undefined && !(c.burst >= 1)) throw configError(`${where}: capacity burst must be >= 1 (got ${c.burst})`)
  if (c.headers !== undefined && !HEADER_FORMS.includes(c.headers)) {
    throw configError(`${where}: unknown capacity headers "${c.headers as string}" (one of ${HEADER_FORMS.join(", ")})`)
  }
  if (c.retryAfter !== undefined && !["seconds", "http-date", "none"].includes(c.retryAfter)) {
    throw configError(`${where}: unknown capacity retryAfter "${c.retryAfter as string}"`)
  }
  if (c.algorithm !== undefined && !ALGORITHMS.includes(c.algorithm)) {
    throw configError(`${where}: unknown capacity algorithm "${c.algorithm as string}"`)
  }
  if (c.window !== undefined && !(millis(c.window, `${where}.window`) > 0)) throw configError(`${where}: window must be > 0`)
}

/** Throws a `TestServerConfigError` for the first option that is wrong. */
export const validateOptions = (opts: TS.Options): void => {
  if (opts.port !== undefined && !(Number.isInteger(opts.port) && opts.port >= 0 && opts.port < 65536)) {
    throw configError(`port ${opts.port} is not a TCP port`)
  }
  for (const [i, route] of (opts.routes ?? []).entries()) {
    const where = `routes[${i}] (${route.path})`
    if (typeof route.path !== "string" || !route.path.startsWith("/")) {
      throw configError(`${where}: path must start with "/"`)
    }
    route.script?.forEach((r, j) => validateReply(r, `${where}.script[${j}]`))
    if (route.randomFaults) {
      const p = route.randomFaults.probability
      if (!(p >= 0 && p <= 1)) throw configError(`${where}: randomFaults.probability must be between 0 and 1 (got ${p})`)
      validateReply(route.randomFaults.reply, `${where}.randomFaults.reply`)
    }
    if (route.then) validateReply(route.then, `${where}.then`)
    if (route.capacity) validateCapacity(route.capacity, where)
    millis(route.latency?.base, `${where}.latency.base`)
    millis(route.latency?.perInFlight, `${where}.latency.perInFlight`)
  }
  if (opts.oauth) {
    if (!opts.oauth.clientId || !opts.oauth.clientSecret) throw configError("oauth: clientId and clientSecret are required")
    opts.oauth.script?.forEach((r, j) => validateReply(r, `oauth.script[${j}]`))
    millis(opts.oauth.tokenLifetime, "oauth.tokenLifetime")
  }
}
