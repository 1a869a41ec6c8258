/**
 * The circuit breaker's decisions, as pure steps on one key's shared state.
 * The memory store runs them as written; `@sluice/redis` runs the same steps
 * in Lua, one script per decision, on Redis time. Keep the two in step: the
 * Redis tests replay one sequence through both and compare every decision.
 *
 * - **Closed**: every call is admitted; its outcome counts. The circuit
 *   opens after `consecutiveFailures` failures in a row, or when the failure
 *   rate over the sliding window (`BUCKETS` buckets of `windowMillis /
 *   BUCKETS`) reaches the threshold with at least `minimumCalls` counted.
 * - **Open**: every call is refused until `openUntil`. The n-th trip in a
 *   row opens for `openMillis[n]` (the last one repeats): a breaker that
 *   keeps tripping backs off.
 * - **Half-open**: at most `halfOpenProbes` calls are in flight at once; a
 *   probe's success frees its place for the next, and `successesToClose`
 *   successes close the circuit (the trip count starts over); a probe's
 *   failure opens it again for the next, longer period. A probe whose answer
 *   never came (its process died) frees its place once a whole open period
 *   has passed.
 *
 * Answers to calls admitted before a trip are ignored once the circuit is
 * no longer closed: they describe the server as it was.
 */

export const CLOSED = 0
export const OPEN = 1
export const HALF_OPEN = 2

/** Buckets of the sliding window. */
export const BUCKETS = 10

export interface State {
  state: number
  openUntil: number
  /** Trips in a row since the circuit last closed. */
  trips: number
  /** Failures in a row while closed. */
  failures: number
  /** Probes admitted and not yet answered in this half-open round. */
  probes: number
  /** Probe successes in this half-open round. */
  probeOk: number
  /** When the current half-open round started. */
  roundAt: number
  /** The window bucket (time / bucket length) each slot holds, its calls and failures. */
  bucketAt: Array<number>
  calls: Array<number>
  fails: Array<number>
}

export interface Params {
  /** Open after this many failures in a row; 0 for no such rule. */
  readonly consecutiveFailures: number
  /** Open at this failure rate (0..1] over the window; 0 for no such rule. */
  readonly failureRate: number
  readonly windowMillis: number
  readonly minimumCalls: number
  /** How long the n-th trip in a row stays open; the last one repeats. */
  readonly openMillis: ReadonlyArray<number>
  readonly halfOpenProbes: number
  readonly successesToClose: number
}

export type Transition = "opened" | "half-opened" | "closed"

export type Outcome = "success" | "failure" | "ignored"

export const initial = (): State => ({
  state: CLOSED,
  openUntil: 0,
  trips: 0,
  failures: 0,
  probes: 0,
  probeOk: 0,
  roundAt: 0,
  bucketAt: new Array<number>(BUCKETS).fill(-1),
  calls: new Array<number>(BUCKETS).fill(0),
  fails: new Array<number>(BUCKETS).fill(0)
})

const openFor = (p: Params, trips: number): number =>
  p.openMillis[Math.min(Math.max(0, trips - 1), p.openMillis.length - 1)] ?? 0

const clearWindow = (s: State) => {
  s.bucketAt.fill(-1)
  s.calls.fill(0)
  s.fails.fill(0)
  s.failures = 0
}

const trip = (s: State, now: number, p: Params): Transition => {
  s.trips += 1
  s.state = OPEN
  s.openUntil = now + openFor(p, s.trips)
  s.probes = 0
  s.probeOk = 0
  clearWindow(s)
  return "opened"
}

export interface Admission {
  readonly admitted: boolean
  /** A half-open probe: its answer decides the circuit. */
  readonly probe: boolean
  /** When refused: how long until the circuit may admit again. */
  readonly retryAfterMillis: number
  readonly transition: Transition | undefined
}

export const admit = (s: State, now: number, p: Params): Admission => {
  let transition: Transition | undefined
  if (s.state === OPEN) {
    if (now < s.openUntil) return { admitted: false, probe: false, retryAfterMillis: s.openUntil - now, transition }
    s.state = HALF_OPEN
    s.probes = 0
    s.probeOk = 0
    s.roundAt = now
    transition = "half-opened"
  }
  if (s.state === HALF_OPEN) {
    const period = openFor(p, s.trips)
    if (s.probes >= p.halfOpenProbes && now - s.roundAt >= period) {
      s.probes = 0
      s.roundAt = now
    }
    if (s.probes < p.halfOpenProbes) {
      s.probes += 1
      return { admitted: true, probe: true, retryAfterMillis: 0, transition }
    }
    return { admitted: false, probe: false, retryAfterMillis: Math.max(1, s.roundAt + period - now), transition }
  }
  return { admitted: true, probe: false, retryAfterMillis: 0, transition }
}

export const record = (s: State, now: number, outcome: Outcome, probe: boolean, p: Params): Transition | undefined => {
  if (probe) {
    if (s.state !== HALF_OPEN) return undefined
    if (outcome === "failure") return trip(s, now, p)
    s.probes = Math.max(0, s.probes - 1)
    if (outcome === "ignored") return undefined
    s.probeOk += 1
    if (s.probeOk < p.successesToClose) return undefined
    s.state = CLOSED
    s.trips = 0
    s.probes = 0
    s.probeOk = 0
    clearWindow(s)
    return "closed"
  }
  if (s.state !== CLOSED || outcome === "ignored") return undefined
  const bucketMillis = Math.max(1, p.windowMillis / BUCKETS)
  const bucket = Math.floor(now / bucketMillis)
  const slot = bucket % BUCKETS
  if (s.bucketAt[slot] !== bucket) {
    s.bucketAt[slot] = bucket
    s.calls[slot] = 0
    s.fails[slot] = 0
  }
  s.calls[slot]! += 1
  if (outcome === "success") {
    s.failures = 0
    return undefined
  }
  s.fails[slot]! += 1
  s.failures += 1
  if (p.consecutiveFailures > 0 && s.failures >= p.consecutiveFailures) return trip(s, now, p)
  if (p.failureRate > 0) {
    let calls = 0
    let fails = 0
    for (let i = 0; i < BUCKETS; i++) {
      if (s.bucketAt[i]! > bucket - BUCKETS) {
        calls += s.calls[i]!
        fails += s.fails[i]!
      }
    }
    if (calls >= p.minimumCalls && fails >= p.failureRate * calls) return trip(s, now, p)
  }
  return undefined
}
