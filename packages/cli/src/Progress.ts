/**
 * The progress line: done/total, current rate, 429s, retries, ETA. A live
 * line on a TTY, a plain line every few seconds otherwise.
 *
 * @since 0.1.0
 */
export interface Counters {
  done: number
  ok: number
  failed: number
  tooMany: number
  retries: number
}

const fmtDuration = (seconds: number) => {
  if (!Number.isFinite(seconds)) return "?"
  const s = Math.max(0, Math.round(seconds))
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`
}

export const make = (total: number, options: { readonly tty: boolean; readonly write: (s: string) => void }) => {
  const started = performance.now()
  const recent: Array<[number, number]> = []
  let lastPlain = 0
  const rate = (now: number, done: number) => {
    recent.push([now, done])
    while (recent.length > 2 && now - recent[0]![0] > 5_000) recent.shift()
    const [t0, d0] = recent[0]!
    return now - t0 > 0 ? ((done - d0) * 1000) / (now - t0) : 0
  }
  const line = (c: Counters, now: number) => {
    const r = rate(now, c.done)
    const eta = r > 0 ? (total - c.done) / r : Infinity
    return `${c.done}/${total} done (${c.ok} ok, ${c.failed} failed) · ${r.toFixed(1)} req/s · ${c.tooMany} × 429 · ${c.retries} retries · ETA ${
      c.done >= total ? "0s" : fmtDuration(eta)
    } · ${fmtDuration((now - started) / 1000)} elapsed`
  }
  return {
    update: (c: Counters) => {
      const now = performance.now()
      if (options.tty) options.write(`\r\x1b[2K${line(c, now)}`)
      else if (now - lastPlain >= 5_000) {
        lastPlain = now
        options.write(`${line(c, now)}\n`)
      }
    },
    finish: (c: Counters) => {
      const text = line(c, performance.now())
      options.write(options.tty ? `\r\x1b[2K${text}\n` : `${text}\n`)
    }
  }
}
