import type * as Duration from "effect/Duration"
import type * as Option from "effect/Option"
import type * as RL from "../RateLimiter.js"

/**
 * The one rule for what an answer teaches a limiter, for `RateLimiter.limit`
 * and `ApiClient` alike: a 429 is `RateLimited` (with its `Retry-After`, as
 * the caller parsed it), a 5xx teaches nothing, and any other answer, 4xx
 * included, was admitted by the server's quota.
 */
export const outcomeOfStatus = (
  status: number,
  headers: Readonly<Record<string, string>>,
  retryAfter: () => Option.Option<Duration.Duration>
): RL.Outcome =>
  status === 429
    ? { _tag: "RateLimited", retryAfter: retryAfter(), headers }
    : status >= 500
    ? { _tag: "Neutral" }
    : { _tag: "Success", headers }
