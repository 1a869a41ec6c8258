/**
 * `pnpm bench`: runs every scenario side by side in one process run and
 * writes the results to BENCHMARKS.md (the command and the machine included).
 *
 *   pnpm bench                      # all scenarios, default length
 *   pnpm bench -- --quick           # short rounds, for trying things out
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import * as Adaptive from "./adaptive.js"
import * as Cpu from "./cpu.js"
import * as Redis from "./redis.js"
import * as Transport from "./transport.js"

const here = Path.dirname(fileURLToPath(import.meta.url))
const root = Path.resolve(here, "../../..")
const quick = process.argv.includes("--quick")

const startServer = () =>
  new Promise<{ url: string; stop: () => void }>((resolve, reject) => {
    const child = ChildProcess.spawn(process.execPath, [Path.join(here, "server.js")], { stdio: ["ignore", "pipe", "inherit"] })
    child.once("error", reject)
    child.stdout!.once("data", (d: Buffer) => {
      const m = /listening on (\S+)/.exec(d.toString())
      if (!m) return reject(new Error(`unexpected server output: ${d}`))
      resolve({ url: m[1]!, stop: () => child.kill("SIGTERM") })
    })
  })

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })

const only = process.argv.find((a) => a.startsWith("--only="))?.slice(7)

const adaptiveSection = async () => {
  const seconds = quick ? 15 : 30
  const onlyCell = process.argv.find((a) => a.startsWith("--cell="))?.slice(7)
  process.stderr.write(`adaptive scenario: a matrix of server shapes, ${seconds} s per cell (steps and idle longer)\n`)
  const results = await Effect.runPromise(Adaptive.run({ seconds, only: onlyCell }))
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`
  const lines: Array<string> = []
  const names = Adaptive.contenders.map((c) => c.name)
  lines.push("## Scenario 2: adapting to a hidden capacity, over the server shapes users meet")
  lines.push("")
  lines.push(
    `Each cell: four clients side by side, each with 10 workers and demand far above capacity, each against its own \`TestServer\` of the cell's shape over real HTTP (${seconds} s per cell, ${2 * seconds + 5} s for the 10 s window; a step or an idle spell adds its lead-in). ` +
      "The server answers in about a millisecond on loopback; in the cells marked \"answers in 60 ms\" it answers 60 ms after it counts a request, as real APIs answer in tens to hundreds. " +
      "In the fleet cell each client runs as 4 processes of 3 workers against one server: Sluice's four limiters share one `RedisStore`, the peers learn each on its own, the oracle is split by hand. " +
      "Goodput is requests admitted over the capacity offered, measured from 5 s (from 4 s after a step down, 8 s after a step up, 5 s after the idle spell). " +
      "Targets (issue 14): goodput ≥ 90 % with ≤ 5 % 429s; with quota headers ≥ 95 % and ≤ 1 %; step down ≥ 85 % and ≤ 10 %; step up ≥ 80 % of the new capacity. " +
      "Each cell shows goodput / 429 share; ✓ marks Sluice's cells that meet the target. The oracle is set by hand to the initial capacity and cannot follow a change."
  )
  lines.push("")
  lines.push(`| cell | ${names.join(" | ")} | target met |`)
  lines.push(`|---|${names.map(() => "---:").join("|")}|:---:|`)
  for (const r of results) {
    const sluice = r.clients[0]!
    const met = sluice.goodput >= r.cell.targets.goodput && sluice.share429 <= r.cell.targets.share429
    lines.push(`| ${r.cell.name} | ${r.clients.map((c) => `${pct(c.goodput)} / ${pct(c.share429)}`).join(" | ")} | ${met ? "✓" : "✗"} |`)
  }
  lines.push("")
  const steps = results.filter((r) => r.cell.steps !== undefined)
  for (const r of steps) {
    lines.push(`Rate admitted per second, ${r.cell.name} (capacity, then each client):`)
    lines.push("")
    lines.push("```")
    const cap = r.clients[0]!.samples.map((s) => s.capacity)
    lines.push(`${"capacity".padEnd(34)} ${cap.map((x) => String(Math.round(x)).padStart(4)).join("")}`)
    for (const c of r.clients) lines.push(`${c.name.padEnd(34)} ${c.samples.map((s) => String(s.ok).padStart(4)).join("")}`)
    lines.push("```")
    lines.push("")
  }
  return lines
}

const redisSection = async () => {
  const seconds = quick ? 2 : 5
  process.stderr.write(`redis scenario: ${seconds} s per fleet\n`)
  const r = await Effect.runPromise(Redis.run({ seconds }))
  const lines: Array<string> = []
  lines.push("## Scenario 3: one quota in Redis, shared by processes")
  lines.push("")
  lines.push(`Each process takes permits in a loop from \`RateLimiter.layerTokenBucket\` over \`RedisStore\` (a private \`redis-server\` on a unix socket), ${seconds} s per fleet. Throughput: a quota far above demand, so each acquisition is one script round trip. Accuracy: a shared 200/s quota, burst 1, measured over the seconds all processes ran.`)
  lines.push("")
  lines.push("| processes | acquisitions/s (all) | p50 ms | p99 ms | admitted at 200/s | error |")
  lines.push("|---:|---:|---:|---:|---:|---:|")
  r.throughput.forEach((t, i) => {
    const a = r.accuracy[i]!
    lines.push(`| ${t.processes} | ${fmt(t.perSecond)} | ${fmt(t.p50, 3)} | ${fmt(t.p99, 3)} | ${fmt(a.admittedRate, 1)}/s | ${fmt((100 * (a.admittedRate - 200)) / 200, 1)} % |`)
  })
  return lines
}

const cpuSection = async () => {
  const options = quick
    ? { passes: 2, blocksPerPass: 6, requestsPerBlock: 500 }
    : { passes: 5, blocksPerPass: 20, requestsPerBlock: 1000 }
  process.stderr.write(`cpu scenario: ${options.passes} passes of ${options.blocksPerPass} interleaved blocks of ${options.requestsPerBlock} requests per variant\n`)
  const rows = await Cpu.runInChild(options)
  const pct = (ratio: number) => `${ratio >= 1 ? "+" : ""}${fmt(100 * (ratio - 1), 1)} %`
  const lines: Array<string> = []
  lines.push("### 1b: client CPU per request, ApiClient and the full stack over their transport")
  lines.push("")
  lines.push(`All variants on one connection pool, interleaved in blocks of ${options.requestsPerBlock} requests (ABBA order; each block starts after a full collection and pays for its own garbage; young generation pinned at 16 MiB, Node 20's size under load), ${options.passes} passes of ${options.blocksPerPass} blocks each per variant after a warm-up; CPU time of the client process summed per variant. "Over transport" is the median of the passes' ratios of sums; the passes column shows each pass, their spread is the noise left. Target (issue 4): ApiClient at most 10 % over the transport at c=64, 5 % at c=1.`)
  lines.push("")
  lines.push("| variant | c | µs/req | over transport | passes |")
  lines.push("|---|---:|---:|---:|---|")
  for (const r of rows) {
    for (const v of Cpu.variants) {
      const passes = r.passRatios[v.key].map(pct).join(", ")
      lines.push(`| ${v.label} | ${r.c} | ${fmt(r.micros[v.key])} | ${v.key === "transport" ? "1.00" : pct(Cpu.medianRatio(r, v.key))} | ${v.key === "transport" ? "" : passes} |`)
    }
  }
  lines.push("")
  for (const r of rows) {
    const api = Cpu.medianRatio(r, "api")
    const target = r.c === 1 ? 1.05 : 1.10
    lines.push(`- c=${r.c}: ApiClient ${pct(api)} over its transport (target ≤ ${pct(target)}: ${api <= target ? "met" : "not met"}); its attempt timeout costs ${pct(api / Cpu.medianRatio(r, "apiNoTimeout"))} when the transport enforces it, ${pct(Cpu.medianRatio(r, "apiRaced") / Cpu.medianRatio(r, "apiNoTimeout"))} when raced with Effect.timeoutFail; \`Retry\` adds ${pct(Cpu.medianRatio(r, "apiRetry") / api)} to ApiClient, the full stack (OAuth2, limiter, retry) ${pct(Cpu.medianRatio(r, "full") / api)}, ${pct(Cpu.medianRatio(r, "full"))} over the transport.`)
  }
  return lines
}

const transportSection = async () => {
  const server = await startServer()
  const options = { url: server.url, rounds: quick ? 1 : 4, durationMs: quick ? 1_000 : 3_000, concurrencies: [1, 64] }
  process.stderr.write(`transport scenario: ${options.rounds} rounds × ${options.durationMs} ms per client and concurrency\n`)
  const rows = await Transport.run(options)
  server.stop()

  const base = rows[0]!
  const lines: Array<string> = []
  lines.push("## Scenario 1: the HTTP stack, layer by layer")
  lines.push("")
  lines.push(`GET of a small JSON body from a keep-alive loopback server in its own process; ${options.rounds} interleaved rounds of ${options.durationMs / 1000} s per client and concurrency, the order reversed every other round, medians. Ratios are to raw undici in the same run.`)
  lines.push("")
  lines.push("| client | c | req/s | × raw undici | client CPU µs/req | p50 ms | p99 ms |")
  lines.push("|---|---:|---:|---:|---:|---:|---:|")
  for (const c of options.concurrencies) {
    for (const row of rows) {
      const r = row.byConcurrency[c]!
      const ratio = r.rps / base.byConcurrency[c]!.rps
      lines.push(`| ${row.name} | ${c} | ${fmt(r.rps)} | ${fmt(ratio, 2)} | ${fmt(r.cpu)} | ${fmt(r.p50, 3)} | ${fmt(r.p99, 3)} |`)
    }
  }
  const at = (name: string, c: number) => rows.find((r) => r.name === name)!.byConcurrency[c]!
  lines.push("")
  const signed = (x: number) => `${x >= 0 ? "+" : ""}${fmt(x * 100, 1)} %`
  const check = (ratio: number, target: number) => `${fmt(ratio, 2)}× (target ≥ ${fmt(target, 2)}×: ${ratio >= target ? "met" : "not met"})`
  for (const c of options.concurrencies) {
    const raw = at("raw undici.request", c).rps
    const transport = at("sluice NodeTransport", c).rps
    lines.push(
      `- c=${c}: NodeTransport ${check(transport / raw, 0.75)} raw undici with the tracer on, ` +
        `${check(at("sluice NodeTransport, tracer off", c).rps / raw, 0.9)} with it off, ` +
        `${check(transport / at("platform-node layerUndici", c).rps, 3)} platform-node layerUndici; ` +
        `the full stack ${check(at("sluice full stack (OAuth2, limiter, retry)", c).rps / transport, 0.9)} NodeTransport; ` +
        `ApiClient over NodeTransport: requests per second ${signed(at("sluice ApiClient (GET JSON)", c).rps / transport - 1)}, client CPU per request ${signed(at("sluice ApiClient (GET JSON)", c).cpu / at("sluice NodeTransport", c).cpu - 1)}.`
    )
  }
  lines.push("")
  lines.push("Heap held per 1,000 requests in flight (1,000 requests to a route that answers after 1 s, heap measured after a full collection half-way, against before):")
  lines.push("")
  lines.push("| client | MiB per 1,000 in flight |")
  lines.push("|---|---:|")
  for (const row of rows) {
    if (row.heapPer1000 !== undefined) lines.push(`| ${row.name} | ${fmt(row.heapPer1000 / 1024 / 1024, 2)} |`)
  }
  lines.push("")
  lines.push("Throughput rounds of a few seconds on this 2-core machine, shared with the server, swing by tens of percent from run to run; the issue 4 target (ApiClient over its transport) is judged by client CPU in 1b below, which interleaves the variants finely.")
  return lines
}

const main = async () => {
  if (only === "transport") {
    process.stdout.write((await transportSection()).join("\n") + "\n")
    return
  }
  if (only === "cpu") {
    process.stdout.write((await cpuSection()).join("\n") + "\n")
    return
  }
  if (only === "redis") {
    process.stdout.write((await redisSection()).join("\n") + "\n")
    return
  }
  if (only === "adaptive") {
    const lines = await adaptiveSection()
    process.stdout.write(lines.join("\n") + "\n")
    return
  }
  const lines = await transportSection()
  const cpuLines = await cpuSection()
  const adaptiveLines = await adaptiveSection()
  const redisLines = await redisSection()
  const report = [
    "# Benchmarks",
    "",
    "Made by `pnpm bench` (the numbers below are from one run; re-run it to reproduce). `pnpm bench --quick` runs shorter rounds and writes nothing; `--only=transport`, `--only=cpu`, `--only=adaptive` or `--only=redis` runs one scenario alone (and prints it instead).",
    "",
    `Machine: ${Os.cpus().length} × ${Os.cpus()[0]?.model ?? "cpu"}, ${fmt(Os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.`,
    "",
    ...lines,
    "",
    ...cpuLines,
    "",
    ...adaptiveLines,
    "",
    ...redisLines,
    ""
  ].join("\n")
  process.stdout.write(report + "\n")
  if (!quick) Fs.writeFileSync(Path.join(root, "BENCHMARKS.md"), report)
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`)
  process.exit(1)
})
