import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"

/** The clock every fiber has unless a test (TestClock) or a program replaced it. */
const liveClock = Effect.runSync(Effect.clock)

/** `setTimeout` fires at once for anything longer (about 24.8 days). */
const MAX_TIMER_MILLIS = 2_147_483_647

/**
 * `Effect.timeoutFail`, cheaper on the live clock.
 *
 * `Effect.timeoutFail` races the effect against a sleep: two forked fibers
 * and their bookkeeping per call, which measured as a third of `ApiClient`'s
 * throughput at concurrency 64 (see BENCHMARKS.md). On the live clock the
 * effect is forked once and a plain timer armed. Under any other clock (a
 * `TestClock`) it is `Effect.timeoutFail` itself, so tests drive it with
 * `TestClock.adjust` as usual. An infinite duration is no timeout.
 */
export const timeoutFail = <A, E, R, E2>(
  self: Effect.Effect<A, E, R>,
  duration: Duration.Duration,
  onTimeout: () => E2
): Effect.Effect<A, E | E2, R> => {
  if (!Duration.isFinite(duration)) return self
  const millis = Duration.toMillis(duration)
  return Effect.clockWith((clock) =>
    clock !== liveClock || millis > MAX_TIMER_MILLIS
      ? Effect.timeoutFail(self, { duration, onTimeout })
      : raceTimer(self, millis, onTimeout)
  )
}

/**
 * {@link timeoutFail} for an attempt whose transport may enforce the
 * deadline itself (`TransportDeadline`): when `atTransport` and on the live
 * clock, `attempt` gets the deadline (epoch ms) to attach to its request, and
 * nothing else is armed here: no fiber, no timer. Otherwise `attempt` gets
 * `undefined` and is raced as {@link timeoutFail} races.
 */
export const timeoutOrDeadline = <A, E, R, E2>(
  attempt: (deadline: number | undefined) => Effect.Effect<A, E, R>,
  duration: Duration.Duration,
  onTimeout: () => E2,
  atTransport: boolean
): Effect.Effect<A, E | E2, R> => {
  if (!atTransport || !Duration.isFinite(duration)) return timeoutFail(attempt(undefined), duration, onTimeout)
  const millis = Duration.toMillis(duration)
  return Effect.clockWith((clock) =>
    clock !== liveClock || millis > MAX_TIMER_MILLIS
      ? Effect.timeoutFail(attempt(undefined), { duration, onTimeout })
      : attempt(clock.unsafeCurrentTimeMillis() + millis)
  )
}

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
