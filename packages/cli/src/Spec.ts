/**
 * Parsing of the CLI's small languages: durations (`250ms`, `1s`, `10s`,
 * `1m`, `1h`, or Effect's `"1 second"`), rates (`40/1s`, `100/1m`) and
 * sizes (`32MiB`, `500KB`, `1048576`, `none`).
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"

const SHORT = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/
const UNIT_MILLIS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const

/** `250ms`, `1.5s`, `10m`, `1h`, or anything `Duration.decode` takes (`"2 seconds"`). */
export const parseDuration = (input: string): Either.Either<Duration.Duration, string> => {
  const text = input.trim()
  const m = SHORT.exec(text)
  if (m) return Either.right(Duration.millis(Number(m[1]) * UNIT_MILLIS[m[2] as keyof typeof UNIT_MILLIS]))
  const decoded = Duration.decodeUnknown(text)
  if (Option.isSome(decoded) && Duration.isFinite(decoded.value)) return Either.right(decoded.value)
  return Either.left(`"${input}" is not a duration: write it like 250ms, 1s, 10s, 1m or 1h`)
}

export interface Rate {
  readonly limit: number
  readonly window: Duration.Duration
}

/** `40/1s` is 40 per second, `100/1m` 100 per minute; `40/s` works too. */
export const parseRate = (input: string): Either.Either<Rate, string> => {
  const [count, per, ...rest] = input.trim().split("/")
  const limit = Number(count)
  if (rest.length > 0 || per === undefined || !(limit > 0) || !Number.isFinite(limit)) {
    return Either.left(`"${input}" is not a rate: write it as N/DURATION, like 40/1s or 100/1m`)
  }
  const window = parseDuration(/^\d/.test(per.trim()) ? per : `1${per.trim()}`)
  if (Either.isLeft(window)) return Either.left(`"${input}" is not a rate: ${window.left}`)
  if (Duration.toMillis(window.right) <= 0) return Either.left(`"${input}" is not a rate: the window must be longer than zero`)
  return Either.right({ limit, window: window.right })
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?$/i
const SIZE_BYTES: Record<string, number> = {
  b: 1,
  kb: 1e3,
  kib: 1024,
  mb: 1e6,
  mib: 1024 ** 2,
  gb: 1e9,
  gib: 1024 ** 3
}

/** `32MiB`, `500KB`, `1048576` (bytes), or `none` / `Infinity` for no bound. */
export const parseSize = (input: string): Either.Either<number, string> => {
  const text = input.trim()
  if (/^(none|infinity|unlimited)$/i.test(text)) return Either.right(Number.POSITIVE_INFINITY)
  const m = SIZE.exec(text)
  const bytes = m ? Math.floor(Number(m[1]) * SIZE_BYTES[(m[2] ?? "b").toLowerCase()]!) : Number.NaN
  if (!(bytes >= 1) || !Number.isSafeInteger(bytes)) {
    return Either.left(`"${input}" is not a size: write it like 32MiB, 500KB or 1048576 (bytes), or none`)
  }
  return Either.right(bytes)
}
