import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"

/** The clock every fiber has unless a test (TestClock) or a program replaced it. */
const liveClock = Effect.runSync(Effect.clock)

/** `setTimeout` fires at once for anything longer (about 24.8 days). */
const MAX_TIMER_MILLIS = 2_147_483_647

/**
 * `Effect.timeoutFail` for an attempt whose transport may enforce the
 * deadline itself (`TransportDeadline`), cheaper on the live clock.
 *
 * `Effect.timeoutFail` races the effect against a sleep: two forked fibers
 * and their bookkeeping per call, which measured as a third of `ApiClient`'s
 * throughput at concurrency 64 (see BENCHMARKS.md). On the live clock:
 *
 * - `atTransport`: `attempt` gets the deadline (epoch ms) to attach to its
 *   request, and nothing else is armed here: no fiber, no timer;
 * - otherwise `attempt` gets `undefined`, is forked once and a plain timer
 *   armed.
 *
 * Under any other clock (a `TestClock`) it is `Effect.timeoutFail` itself,
 * so tests drive it with `TestClock.adjust` as usual. An infinite duration
 * is no timeout.
 */
export const timeoutOrDeadline = <A, E, R, E2>(
  attempt: (deadline: number | undefined) => Effect.Effect<A, E, R>,
  duration: Duration.Duration,
  onTimeout: () => E2,
  atTransport: boolean
): Effect.Effect<A, E | E2, R> => {
  if (!Duration.isFinite(duration)) return attempt(undefined)
  const millis = Duration.toMillis(duration)
  return Effect.clockWith((clock) => {
    if (clock !== liveClock || millis > MAX_TIMER_MILLIS) {
      return Effect.timeoutFail(attempt(undefined), { duration, onTimeout })
    }
    return atTransport
      ? attempt(clock.unsafeCurrentTimeMillis() + millis)
      : raceTimer(attempt(undefined), millis, onTimeout)
  })
}

/** {@link timeoutOrDeadline} for an effect that is always raced. */
export const timeoutFail = <A, E, R, E2>(
  self: Effect.Effect<A, E, R>,
  duration: Duration.Duration,
  onTimeout: () => E2
): Effect.Effect<A, E | E2, R> => timeoutOrDeadline(() => self, duration, onTimeout, false)

/** The effect forked once, failed with `onTimeout` by a plain timer. */
const raceTimer = <A, E, R, E2>(self: Effect.Effect<A, E, R>, millis: number, onTimeout: () => E2) =>
  Effect.flatMap(Effect.fork(self), (fiber) =>
    Effect.async<A, E | E2>((resume) => {
      const timer = setTimeout(() => {
        fiber.unsafeInterruptAsFork(FiberId.none)
        resume(Effect.fail(onTimeout()))
      }, millis)
      fiber.addObserver((exit) => {
        clearTimeout(timer)
        resume(exit)
      })
      return Effect.sync(() => {
        clearTimeout(timer)
        fiber.unsafeInterruptAsFork(FiberId.none)
      })
    }))
