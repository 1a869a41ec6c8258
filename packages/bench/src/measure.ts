/** Runs `concurrency` loops of `once` until `durationMs` passes; returns throughput and latency percentiles. */
export interface Sample {
  readonly requests: number
  readonly seconds: number
  readonly rps: number
  readonly p50: number
  readonly p99: number
}

export const percentile = (sorted: Float64Array, p: number): number =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

export const summarise = (latencies: Array<number>, seconds: number): Sample => {
  const sorted = Float64Array.from(latencies).sort()
  return {
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99)
  }
}

export const runPromiseLoops = async (
  once: () => Promise<void>,
  concurrency: number,
  durationMs: number
): Promise<Sample> => {
  const latencies: Array<number> = []
  const start = performance.now()
  const deadline = start + durationMs
  const loop = async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now()
      await once()
      latencies.push(performance.now() - t0)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop))
  return summarise(latencies, (performance.now() - start) / 1000)
}

export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
