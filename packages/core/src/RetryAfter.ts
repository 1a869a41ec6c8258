/**
 * Parsing of the `Retry-After` response header (RFC 9110 §10.2.3).
 *
 * Accepts delta-seconds and the three HTTP-date forms (IMF-fixdate, RFC 850,
 * asctime). A date in the past means "now" (zero); anything else is absent.
 *
 * @example
 * ```ts
 * import { RetryAfter } from "@sluice/core"
 *
 * RetryAfter.parse("120", Date.now())                            // Some(2 minutes)
 * RetryAfter.parse("Sun, 06 Nov 1994 08:49:37 GMT", Date.now())  // Some(zero): in the past
 * RetryAfter.parse("soon", Date.now())                           // None
 * ```
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"

const MONTHS: Record<string, number> = {
  Jan: 0, Feb: 1, Mar: 2, Apr: 3, May: 4, Jun: 5, Jul: 6, Aug: 7, Sep: 8, Oct: 9, Nov: 10, Dec: 11
}
const DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
const LONG_DAY = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
const MONTH = "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
const TIME = "(\\d{2}):(\\d{2}):(\\d{2})"
// IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
const IMF_FIXDATE = new RegExp(`^${DAY}, (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`)
// RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
const RFC_850 = new RegExp(`^${LONG_DAY}, (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`)
// asctime: Sun Nov  6 08:49:37 1994
const ASCTIME = new RegExp(`^${DAY} ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`)
const DELTA_SECONDS = /^\d+$/

const utc = (
  year: number,
  month: number,
  day: number,
  hours: number,
  minutes: number,
  seconds: number
): number | undefined => {
  if (day < 1 || day > 31 || hours > 23 || minutes > 59 || seconds > 60) return undefined
  const millis = Date.UTC(year, month, day, hours, minutes, Math.min(seconds, 59))
  // Date.UTC rolls 31 Feb over into March: such a date is not a real date.
  return new Date(millis).getUTCDate() === day ? millis : undefined
}

/**
 * Parses an HTTP-date in any of its three forms into epoch milliseconds.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parseHttpDate = (value: string, nowMillis: number = Date.now()): Option.Option<number> => {
  let m = IMF_FIXDATE.exec(value)
  if (m) return Option.fromNullable(utc(+m[3]!, MONTHS[m[2]!]!, +m[1]!, +m[4]!, +m[5]!, +m[6]!))
  m = RFC_850.exec(value)
  if (m) {
    // RFC 9110: a two-digit year more than 50 years in the future is in the past century.
    const yy = +m[3]!
    const now = new Date(nowMillis).getUTCFullYear()
    let year = Math.floor(now / 100) * 100 + yy
    if (year > now + 50) year -= 100
    return Option.fromNullable(utc(year, MONTHS[m[2]!]!, +m[1]!, +m[4]!, +m[5]!, +m[6]!))
  }
  m = ASCTIME.exec(value)
  if (m) return Option.fromNullable(utc(+m[6]!, MONTHS[m[1]!]!, +m[2]!.trim(), +m[3]!, +m[4]!, +m[5]!))
  return Option.none()
}

/**
 * Parses a `Retry-After` value relative to `nowMillis` (wall clock, as HTTP
 * dates are). Returns `None` for a missing or malformed value.
 *
 * @since 0.1.0
 * @category parsers
 */
export const parse = (value: string | undefined | null, nowMillis: number): Option.Option<Duration.Duration> => {
  if (value === undefined || value === null) return Option.none()
  const trimmed = value.trim()
  if (DELTA_SECONDS.test(trimmed)) {
    const seconds = Number(trimmed)
    return Number.isSafeInteger(seconds) ? Option.some(Duration.seconds(seconds)) : Option.none()
  }
  return Option.map(parseHttpDate(trimmed, nowMillis), (at) => Duration.millis(Math.max(0, at - nowMillis)))
}

/**
 * Formats a time as an IMF-fixdate, the preferred HTTP-date form.
 *
 * @since 0.1.0
 * @category parsers
 */
export const formatHttpDate = (epochMillis: number): string => new Date(epochMillis).toUTCString()
