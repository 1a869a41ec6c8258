/**
 * The demo's SVG chart: requests sent per second, the server's capacity,
 * and 429s, over time. Plain SVG, no dependency.
 *
 * @since 0.1.0
 */
export interface Sample {
  /** Seconds since start. */
  readonly t: number
  readonly sent: number
  readonly ok: number
  readonly tooMany: number
  readonly capacity: number
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;")

export const render = (samples: ReadonlyArray<Sample>, title: string): string => {
  const W = 900
  const H = 360
  const L = 60
  const R = 20
  const T = 40
  const B = 50
  const tMax = Math.max(1, ...samples.map((s) => s.t))
  const yMax = Math.max(1, ...samples.map((s) => Math.max(s.sent, s.capacity))) * 1.15
  const x = (t: number) => L + (t / tMax) * (W - L - R)
  const y = (v: number) => H - B - (v / yMax) * (H - T - B)
  const line = (f: (s: Sample) => number) => samples.map((s) => `${x(s.t).toFixed(1)},${y(f(s)).toFixed(1)}`).join(" ")
  const capacitySteps = samples.map((s, i) => {
    const prev = i === 0 ? s : samples[i - 1]!
    return `${x(prev.t).toFixed(1)},${y(s.capacity).toFixed(1)} ${x(s.t).toFixed(1)},${y(s.capacity).toFixed(1)}`
  }).join(" ")
  const barWidth = Math.max(1, (W - L - R) / Math.max(1, samples.length) - 1)
  const bars = samples.filter((s) => s.tooMany > 0).map((s) =>
    `<rect x="${(x(s.t) - barWidth / 2).toFixed(1)}" y="${y(s.tooMany).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${(H - B - y(s.tooMany)).toFixed(1)}" fill="#d62728" opacity="0.6"/>`
  ).join("")
  const ticks = 5
  const yTicks = Array.from({ length: ticks + 1 }, (_, i) => (yMax / ticks) * i).map((v) =>
    `<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#eee"/><text x="${L - 8}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${Math.round(v)}</text>`
  ).join("")
  const xTicks = Array.from({ length: 6 }, (_, i) => (tMax / 5) * i).map((t) =>
    `<text x="${x(t).toFixed(1)}" y="${H - B + 18}" text-anchor="middle">${Math.round(t)}s</text>`
  ).join("")
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${L}" y="22" font-size="15">${esc(title)}</text>
${yTicks}${xTicks}
<text x="14" y="${T + (H - T - B) / 2}" transform="rotate(-90 14 ${T + (H - T - B) / 2})" text-anchor="middle">requests / second</text>
${bars}
<polyline points="${capacitySteps}" fill="none" stroke="#555" stroke-width="2" stroke-dasharray="6 4"/>
<polyline points="${line((s) => s.sent)}" fill="none" stroke="#1f77b4" stroke-width="2"/>
<polyline points="${line((s) => s.ok)}" fill="none" stroke="#2ca02c" stroke-width="1.5"/>
<g transform="translate(${W - R - 330}, 14)">
<line x1="0" x2="20" y1="0" y2="0" stroke="#1f77b4" stroke-width="2"/><text x="24" y="4">sent</text>
<line x1="70" x2="90" y1="0" y2="0" stroke="#2ca02c" stroke-width="2"/><text x="94" y="4">succeeded</text>
<line x1="170" x2="190" y1="0" y2="0" stroke="#555" stroke-width="2" stroke-dasharray="6 4"/><text x="194" y="4">capacity</text>
<rect x="255" y="-6" width="12" height="12" fill="#d62728" opacity="0.6"/><text x="271" y="4">429s</text>
</g>
</svg>
`
}
