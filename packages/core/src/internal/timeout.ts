import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as TransportDeadline from "../TransportDeadline.js"

/** The clock every fiber has unless a test (TestClock) or a program replaced it. */
const liveClock = Effect.runSync(Effect.clock)

/** `setTimeout` fires at once for anything longer (about 24.8 days). */
const MAX_TIMER_MILLIS = 2_147_483_647

/**
 * `Effect.timeoutFail`, cheaper on the live clock.
 *
 * `Effect.timeoutFail` races the effect against a sleep: two forked fibers
 * and their bookkeeping per call, which measured as a third of `ApiClient`'s
 * throughput at concurrency 64 (see BENCHMARKS.md). On the live clock:
 *
 * - `atTransport` (the transport enforces `TransportDeadline`): no fiber and
 *   no timer here at all; the deadline is set for the transport, which
 *   aborts the request at that instant;
 * - otherwise the effect is forked once and a plain timer armed.
 *
 * Under any other clock (a `TestClock`) it is `Effect.timeoutFail` itself,
 * so tests drive it with `TestClock.adjust` as usual. An infinite duration
 * is no timeout.
 */
export const timeoutFail = <A, E, R, E2>(
  self: Effect.Effect<A, E, R>,
  duration: Duration.Duration,
  onTimeout: () => E2,
  atTransport = false
): Effect.Effect<A, E | E2, R> => {
  if (!Duration.isFinite(duration)) return self
  const millis = Duration.toMillis(duration)
  return Effect.clockWith((clock) => {
    if (clock !== liveClock || millis > MAX_TIMER_MILLIS) return Effect.timeoutFail(self, { duration, onTimeout })
    if (atTransport) return Effect.locally(self, TransportDeadline.current, clock.unsafeCurrentTimeMillis() + millis)
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
}
