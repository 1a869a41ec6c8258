import type * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"

/** What a deadline fires: a request's `expire`. */
export interface Expirable {
  expire(): void
}

/**
 * The deadlines of one transport's requests, fired by one fiber that sleeps
 * on the Effect `Clock` until the earliest of them.
 *
 * Why one fiber and not a timer per request: a `setTimeout` would run on the
 * wall clock, so under `TestClock` the transport's real path could not be
 * tested; a sleep per request on the `Clock` is a fiber per request (the
 * raced timeout this transport exists to avoid). Deadlines are kept in
 * buckets of one millisecond; a request that completes leaves its bucket,
 * and the fiber is woken early only when a deadline earlier than the one it
 * sleeps to arrives. Under a steady load with one timeout it wakes about
 * once per timeout period, whatever the request rate.
 *
 * The fiber lives in the transport's scope. While it sleeps to a deadline
 * whose request has completed it holds a timer (the process stays up until
 * then, at most one attempt timeout, unless the scope is closed).
 */
export class Deadlines {
  private readonly buckets = new Map<number, Set<Expirable>>()
  /** The instant the fiber sleeps to; `Infinity` while it waits for a first deadline. */
  private armedAt = Number.POSITIVE_INFINITY
  private wake: Deferred.Deferred<void> = Deferred.unsafeMake(FiberId.none)

  constructor(private readonly clock: Clock.Clock) {}

  /** The `Clock`'s time, in ms. */
  now(): number {
    return this.clock.unsafeCurrentTimeMillis()
  }

  /** Fires `entry` at `at` (ms of the `Clock`). Returns the bucket key to {@link remove} it with. */
  add(at: number, entry: Expirable): number {
    const key = Math.ceil(at)
    let bucket = this.buckets.get(key)
    if (bucket === undefined) this.buckets.set(key, bucket = new Set())
    bucket.add(entry)
    if (key < this.armedAt) {
      this.armedAt = key
      Deferred.unsafeDone(this.wake, Exit.void)
    }
    return key
  }

  remove(key: number, entry: Expirable): void {
    const bucket = this.buckets.get(key)
    if (bucket === undefined) return
    bucket.delete(entry)
    if (bucket.size === 0) this.buckets.delete(key)
  }

  /** Fires every deadline at or before `now`; returns the earliest left (or `Infinity`). */
  private fire(now: number): number {
    let next = Number.POSITIVE_INFINITY
    for (const [key, bucket] of this.buckets) {
      if (key <= now) {
        this.buckets.delete(key)
        for (const entry of bucket) entry.expire()
      } else if (key < next) {
        next = key
      }
    }
    return next
  }

  /** The fiber: fire what is due, sleep to the next deadline or until an earlier one arrives. */
  readonly run: Effect.Effect<never> = Effect.forever(Effect.suspend(() => {
      const now = this.clock.unsafeCurrentTimeMillis()
      const next = this.fire(now)
      this.armedAt = next
      this.wake = Deferred.unsafeMake(FiberId.none)
      const woken = Deferred.await(this.wake)
      return next === Number.POSITIVE_INFINITY ? woken : Effect.raceFirst(this.clock.sleep(Duration.millis(next - now)), woken)
    }))
}

/** A {@link Deadlines} whose fiber runs in the scope. */
export const make: Effect.Effect<Deadlines, never, Scope.Scope> = Effect.clockWith((clock) => {
  const deadlines = new Deadlines(clock)
  return Effect.as(Effect.forkScoped(Effect.interruptible(deadlines.run)), deadlines)
})
