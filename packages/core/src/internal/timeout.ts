import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"

/** The clock every fiber has unless a test (TestClock) or a program replaced it. */
const liveClock = Effect.runSync(Effect.clock)

/**
 * `Effect.timeoutFail`, cheaper on the live clock.
 *
 * `Effect.timeoutFail` races the effect against a sleep: two forked fibers
 * and their bookkeeping per call, which measured as a third of `ApiClient`'s
 * throughput at concurrency 64 (see BENCHMARKS.md). On the live clock this
 * forks the effect once and arms a plain timer; under any other clock (a
 * `TestClock`) it is `Effect.timeoutFail` itself, so tests drive it with
 * `TestClock.adjust` as usual.
 */
export const timeoutFail = <A, E, R, E2>(
  self: Effect.Effect<A, E, R>,
  duration: Duration.Duration,
  onTimeout: () => E2
): Effect.Effect<A, E | E2, R> =>
  Effect.clockWith((clock) => {
    if (clock !== liveClock) return Effect.timeoutFail(self, { duration, onTimeout })
    const millis = Duration.toMillis(duration)
    return Effect.flatMap(Effect.fork(self), (fiber) =>
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
  })

