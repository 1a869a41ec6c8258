import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { TestServer } from "@sluice/testing"
import * as Effect from "effect/Effect"
import { TestRedis as RedisServer } from "@sluice/redis"

const bin = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../dist/bin.js")

interface Result {
  readonly code: number | null
  readonly signal: string | null
  readonly stderr: string
  readonly stdout: string
}

/** Runs the built `sluice` binary; `onSpawn` may signal it. */
const sluice = (args: ReadonlyArray<string>, onSpawn?: (child: ChildProcess.ChildProcess) => void) =>
  Effect.async<Result>((resume) => {
    if (!Fs.existsSync(bin)) throw new Error(`${bin} is missing: run pnpm build (pnpm test builds first)`)
    const child = ChildProcess.spawn(process.execPath, [bin, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout!.on("data", (d) => (stdout += d))
    child.stderr!.on("data", (d) => (stderr += d))
    child.on("close", (code, signal) => resume(Effect.succeed({ code, signal, stdout, stderr })))
    onSpawn?.(child)
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** Sends `signal` to the child once its output file records more than `lines` results. */
const signalWhenRecorded = (output: string, lines: number, signal: NodeJS.Signals) => (child: ChildProcess.ChildProcess) => {
  const timer = setInterval(() => {
    if (Fs.existsSync(output) && Fs.readFileSync(output, "utf8").split("\n").length > lines) {
      clearInterval(timer)
      child.kill(signal)
    }
  }, 5)
  child.once("exit", () => clearInterval(timer))
}

const tmp = () => Fs.mkdtempSync(Path.join(Os.tmpdir(), "sluice-run-"))
const jsonl = (rows: ReadonlyArray<unknown>) => rows.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + "\n"
const readOutput = (file: string) =>
  Fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, any>)
const requests = (n: number, extra: Record<string, unknown> = {}) =>
  Array.from({ length: n }, (_, i) => ({ id: `r${i}`, method: "POST", path: "/items", body: { i }, idempotencyKey: `k${i}`, ...extra }))

describe("sluice run (built binary, real server)", () => {
  it.live("a batch through 429s with Retry-After completes with every id exactly once", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/items", capacity: { rate: 40, burst: 5 }, then: { json: { ok: true } } }] })
      const dir = tmp()
      Fs.writeFileSync(`${dir}/in.jsonl`, jsonl(requests(60)))
      const r = yield* sluice([
        "run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`,
        "--rate", "200/1s", "--concurrency", "8", "--retries", "6"
      ])
      expect(r.code).toBe(0)
      const out = readOutput(`${dir}/out.jsonl`)
      expect(out).toHaveLength(60)
      expect(new Set(out.map((o) => o.id)).size).toBe(60)
      expect(out.every((o) => o.ok && o.status === 200)).toBe(true)
      expect((yield* server.stats).tooManyRequests).toBeGreaterThan(0)
      expect(out.some((o) => o.attempts > 1)).toBe(true)
      expect(r.stderr).toContain("60 succeeded")
    })))

  it.live("killed mid-way with SIGKILL and re-run: no recorded request is sent twice", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/items", latency: { base: "20 millis" }, then: { json: { ok: true } } }] })
      const dir = tmp()
      const args = ["run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`, "--concurrency", "4"]
      Fs.writeFileSync(`${dir}/in.jsonl`, jsonl(requests(150)))
      const first = yield* sluice(args, signalWhenRecorded(`${dir}/out.jsonl`, 40, "SIGKILL"))
      expect(first.signal).toBe("SIGKILL")
      const before = readOutput(`${dir}/out.jsonl`).map((o) => o.id as string)
      expect(before.length).toBeGreaterThan(0)
      expect(before.length).toBeLessThan(150)
      const second = yield* sluice(args)
      expect(second.code).toBe(0)
      const after = readOutput(`${dir}/out.jsonl`)
      expect(after).toHaveLength(150)
      expect(new Set(after.map((o) => o.id)).size).toBe(150)
      // count what the server received per idempotency key: recorded ones exactly once
      const sent = new Map<string, number>()
      for (const r of yield* server.log) {
        const key = r.headers["idempotency-key"]!
        sent.set(key, (sent.get(key) ?? 0) + 1)
      }
      for (const id of before) expect(sent.get(`k${id.slice(1)}`)).toBe(1)
      expect(second.stderr).toContain(`${before.length} already recorded`)
    })), 60_000)

  it.live("bad lines are reported with their line numbers and recorded as failures; the batch goes on", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/items", then: { json: 1 } }] })
      const dir = tmp()
      Fs.writeFileSync(
        `${dir}/in.jsonl`,
        jsonl([
          { id: "a", method: "POST", path: "/items" },
          "{not json",
          { id: "b", method: "TELEPORT", path: "/items" },
          "",
          { id: "c" },
          { id: "a", path: "/items" },
          { id: "d", path: "/items" }
        ])
      )
      const r = yield* sluice(["run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`])
      expect(r.code).toBe(1)
      expect(r.stderr).toContain("line 2: not JSON")
      expect(r.stderr).toContain("line 3: not a request")
      expect(r.stderr).toContain("line 5: not a request")
      expect(r.stderr).toContain("line 6: duplicate id \"a\"")
      const out = readOutput(`${dir}/out.jsonl`)
      expect(out.filter((o) => o.ok).map((o) => o.id).sort()).toEqual(["a", "d"])
      expect(out.filter((o) => !o.ok).map((o) => o.line).sort()).toEqual([2, 3, 5, 6])
      expect((yield* server.stats).total).toBe(2)
    })))

  it.live("--timeout bounds each attempt, its body included: a stalled response is recorded as a timeout", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({
        routes: [
          { path: "/fast", then: { json: 1 } },
          { path: "/stall", then: { chunks: ["[1,", "2]"], chunkDelay: "30 seconds" } }
        ]
      })
      const dir = tmp()
      Fs.writeFileSync(`${dir}/in.jsonl`, jsonl([{ id: "a", path: "/fast" }, { id: "b", path: "/stall" }]))
      const started = Date.now()
      const r = yield* sluice([
        "run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`,
        "--timeout", "300ms", "--retries", "0"
      ])
      expect(Date.now() - started).toBeLessThan(15_000)
      expect(r.code).toBe(1)
      const out = readOutput(`${dir}/out.jsonl`)
      expect(out.find((o) => o.id === "a")?.ok).toBe(true)
      const b = out.find((o) => o.id === "b")
      expect(b?.ok).toBe(false)
      expect(b?.error.tag).toBe("RequestTimeoutError")
      expect(b?.error.message).toContain("timed out")
    })))

  it.live("auth failures are reported per request and secrets never reach the output", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({
        oauth: { clientId: "app", clientSecret: "right" },
        routes: [{ path: "/items", requireAuth: true, then: { json: 1 } }]
      })
      const dir = tmp()
      Fs.writeFileSync(`${dir}/in.jsonl`, jsonl(requests(3)))
      const r = yield* sluice([
        "run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`,
        "--auth", "client-credentials", "--client-id", "app", "--client-secret", "wrong-secret-value",
        "--token-url", `${server.url}/oauth/token`
      ])
      expect(r.code).toBe(1)
      const out = readOutput(`${dir}/out.jsonl`)
      expect(out).toHaveLength(3)
      for (const o of out) {
        expect(o.ok).toBe(false)
        expect(o.error.tag).toBe("AuthenticationError")
        expect(o.error.message).toContain("invalid_client")
      }
      const everything = Fs.readFileSync(`${dir}/out.jsonl`, "utf8") + r.stderr + r.stdout
      expect(everything).not.toContain("wrong-secret-value")
      // a permanent refusal is not asked again for every request
      expect((yield* server.stats).tokenRequests).toBe(1)
    })))

  it.live("SIGINT stops admitting, lets in-flight requests finish and be recorded, and says how to resume", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/items", latency: { base: "300 millis" }, then: { json: 1 } }] })
      const dir = tmp()
      Fs.writeFileSync(`${dir}/in.jsonl`, jsonl(requests(50)))
      const args = ["run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`, "--concurrency", "5"]
      const r = yield* sluice(args, signalWhenRecorded(`${dir}/out.jsonl`, 5, "SIGINT"))
      expect(r.code).toBe(130)
      expect(r.stderr).toContain("re-run the same command")
      const out = readOutput(`${dir}/out.jsonl`)
      // everything the server answered was recorded: nothing in flight was abandoned
      expect(out.length).toBe((yield* server.stats).total)
      expect(out.length).toBeLessThan(50)
      expect(out.every((o) => o.ok)).toBe(true)
    })))

  it.live("--redis: two concurrent runs share one quota and one OAuth2 token", () =>
    Effect.scoped(Effect.gen(function*() {
      const redis = yield* RedisServer.start
      const server = yield* TestServer.make({
        oauth: { clientId: "app", clientSecret: "s3cret-value" },
        routes: [{ path: "/items", requireAuth: true, capacity: { rate: 20 }, then: { json: 1 } }],
        logLimit: 1000
      })
      const dir = tmp()
      Fs.writeFileSync(`${dir}/a.jsonl`, jsonl(requests(40)))
      Fs.writeFileSync(`${dir}/b.jsonl`, jsonl(requests(40).map((r) => ({ ...r, id: `b${r.id}` }))))
      const args = (x: string) => [
        "run", "--base-url", server.url, "--input", `${dir}/${x}.jsonl`, "--output", `${dir}/${x}.out.jsonl`,
        "--rate", "20/1s", "--burst", "1", "--redis", redis.socket, "--concurrency", "4",
        "--auth", "client-credentials", "--client-id", "app", "--client-secret", "s3cret-value", "--token-url", `${server.url}/oauth/token`
      ]
      const [a, b] = yield* Effect.all([sluice(args("a")), sluice(args("b"))], { concurrency: "unbounded" })
      expect([a.code, b.code]).toEqual([0, 0])
      // 80 requests at a shared 20/s: no 429 from the server, and it took about 4 s, not 2
      expect((yield* server.stats).tooManyRequests).toBe(0)
      const at = (yield* server.log).map((r) => r.at).sort((x, y) => x - y)
      expect(at.length).toBe(81) // 80 requests and one token request
      expect(at[at.length - 1]! - at[0]!).toBeGreaterThanOrEqual(3500)
      // one token for both runs, and no request without one
      expect((yield* server.stats).tokenRequests).toBe(1)
      expect((yield* server.stats).statuses[401] ?? 0).toBe(0)
    })), 60_000)

  it.live("a second run on the same output fails at once, names the holder and sends nothing", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/items", latency: { base: "100 millis" }, then: { json: 1 } }] })
      const dir = tmp()
      Fs.writeFileSync(`${dir}/in.jsonl`, jsonl(requests(20)))
      const args = ["run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`, "--concurrency", "2"]
      let second: Result | undefined
      const first = yield* sluice(args, (child) => {
        const timer = setInterval(() => {
          if (!Fs.existsSync(`${dir}/out.jsonl`) || Fs.readFileSync(`${dir}/out.jsonl`, "utf8") === "") return
          clearInterval(timer)
          const other = ChildProcess.spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", timeout: 20_000 })
          second = { code: other.status, signal: other.signal, stdout: other.stdout, stderr: other.stderr }
        }, 5)
        child.once("exit", () => clearInterval(timer))
      })
      expect(first.code).toBe(0)
      expect(second).toBeDefined()
      expect(second!.code).not.toBe(0)
      expect(second!.stderr).toMatch(/being written by another sluice run \(pid \d+/)
      expect(second!.stderr.trim().split("\n")).toHaveLength(1)
      const out = readOutput(`${dir}/out.jsonl`)
      expect(out).toHaveLength(20)
      expect((yield* server.stats).total).toBe(20)
      expect(Fs.existsSync(`${dir}/out.jsonl.lock`)).toBe(false)
    })), 30_000)

  it.live("a path naming another origin is refused with the API key unsent; a huge body is a typed failure and the batch finishes", () =>
    Effect.scoped(Effect.gen(function*() {
      const other = yield* TestServer.make({ routes: [{ path: "/*", then: { echo: true } }] })
      const server = yield* TestServer.make({
        routes: [
          { path: "/huge", then: TestServer.fault("huge-body", { chunkDelay: "0 millis" }) },
          { path: "/items", then: { json: { ok: true } } }
        ]
      })
      const dir = tmp()
      Fs.writeFileSync(`${dir}/in.jsonl`, jsonl([
        { id: "steal", path: `${other.url}/steal` },
        { id: "huge", path: "/huge" },
        { id: "fine", path: "/items" }
      ]))
      const args = [
        "run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`,
        "--auth", "api-key", "--api-key", "key-never-elsewhere", "--max-response-size", "1MiB"
      ]
      const r = yield* sluice(args)
      expect(r.code).toBe(1)
      const out = Object.fromEntries(readOutput(`${dir}/out.jsonl`).map((o) => [o.id, o]))
      expect(out["steal"]!.error.tag).toBe("RequestEncodeError")
      expect(out["huge"]!.error.tag).toBe("ResponseTooLargeError")
      expect(out["fine"]!.ok).toBe(true)
      expect((yield* other.stats).total).toBe(0)
      // a resume has nothing left to send and does not trip over the recorded failure
      const again = yield* sluice(args)
      expect(again.stderr).toContain("3 already recorded")
      const bad = yield* sluice([...args.slice(0, -2), "--max-response-size", "lots"])
      expect(bad.code).not.toBe(0)
      expect(bad.stdout + bad.stderr).toContain("is not a size")
    })), 30_000)

  it.live("ids: 1 and \"1\" are one id (the second is a reported duplicate); an explicit line-N id is refused; file errors are one line", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/items", then: { json: 1 } }] })
      const dir = tmp()
      Fs.writeFileSync(`${dir}/in.jsonl`, jsonl([
        { id: 1, path: "/items" },
        { id: "1", path: "/items" },
        { path: "/items" },
        { id: "line-3", path: "/items" }
      ]))
      const r = yield* sluice(["run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`])
      expect(r.code).toBe(1)
      const out = readOutput(`${dir}/out.jsonl`)
      expect(out.filter((o) => o.ok).map((o) => o.id).sort()).toEqual(["1", "line-3"])
      expect(r.stderr).toContain("line 2: duplicate id \"1\"")
      expect(r.stderr).toContain("line 4: id \"line-3\" is reserved")
      expect((yield* server.stats).total).toBe(2)
      const noDir = yield* sluice(["run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/no/such/dir/out.jsonl`])
      expect(noDir.code).not.toBe(0)
      expect(noDir.stderr.trim().split("\n")).toHaveLength(1)
      expect(noDir.stderr).toMatch(/^sluice: cannot (lock|write)/)
      const inputDir = yield* sluice(["run", "--base-url", server.url, "--input", dir, "--output", `${dir}/o2.jsonl`])
      expect(inputDir.code).not.toBe(0)
      expect(inputDir.stderr.trim().split("\n")).toHaveLength(1)
      const userinfo = yield* sluice(["run", "--base-url", "http://u:hunter2@127.0.0.1:1", "--input", `${dir}/in.jsonl`, "--output", `${dir}/o3.jsonl`])
      expect(userinfo.code).not.toBe(0)
      expect(userinfo.stderr).toContain("AuthProvider.layerBasic")
      expect(userinfo.stderr).not.toContain("hunter2")
    })), 30_000)

  it.live("usage errors are clear: bad durations and rates, --adaptive without --rate", () =>
    Effect.gen(function*() {
      const dir = tmp()
      Fs.writeFileSync(`${dir}/in.jsonl`, "")
      const base = ["run", "--base-url", "http://127.0.0.1:1", "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`]
      const badRate = yield* sluice([...base, "--rate", "fast"])
      expect(badRate.code).not.toBe(0)
      expect(badRate.stdout + badRate.stderr).toContain("N/DURATION")
      const adaptive = yield* sluice([...base, "--adaptive"])
      expect(adaptive.code).not.toBe(0)
      expect(adaptive.stderr).toContain("--adaptive needs --rate")
    }))

  it.live("--breaker: a 503 storm sees a few requests, not the batch; the batch completes once the server heals", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/items", then: { json: { ok: true } } }] })
      yield* server.setReply("/items", { status: 503, json: { error: "down" } })
      const dir = tmp()
      Fs.writeFileSync(`${dir}/in.jsonl`, jsonl(requests(40)))
      const args = ["run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`, "--concurrency", "4", "--retries", "8"]
      // healed 1.5 s after the first request arrives: before the circuit's first probe (5 s after it opens)
      const heal = yield* Effect.fork(
        server.awaitRequests(1).pipe(Effect.zipRight(Effect.sleep("1500 millis")), Effect.zipRight(server.setReply("/items", undefined)))
      )
      const r = yield* sluice([...args, "--breaker"])
      yield* heal.await
      expect(r.code).toBe(0)
      const out = readOutput(`${dir}/out.jsonl`)
      expect(out).toHaveLength(40)
      expect(out.every((o) => o.ok)).toBe(true)
      // five failures open the circuit (a few more were already in flight); nothing more reaches the storm
      const storm = (yield* server.stats).statuses[503] ?? 0
      expect(storm).toBeGreaterThanOrEqual(5)
      expect(storm).toBeLessThanOrEqual(12)
    })), 30_000)

  it.live("--token-rate holds a tokens quota counted in each line's cost, beside --rate", () =>
    Effect.scoped(Effect.gen(function*() {
      const server = yield* TestServer.make({ routes: [{ path: "/items", then: { json: { ok: true } } }], logLimit: 1000 })
      const dir = tmp()
      // ten requests of 500 tokens at 2,000 tokens a second (a bucket of 2,000): four at once, then one every 250 ms
      Fs.writeFileSync(`${dir}/in.jsonl`, jsonl([...requests(10, { cost: 500 }), { id: "bad", path: "/items", cost: -3 }]))
      const r = yield* sluice([
        "run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`,
        "--rate", "100/1s", "--token-rate", "2000/1s", "--concurrency", "10"
      ])
      expect(r.code).toBe(1) // the bad line
      const out = readOutput(`${dir}/out.jsonl`)
      expect(out.filter((o) => o.ok)).toHaveLength(10)
      expect(out.find((o) => o.id === "bad")?.ok).toBe(false)
      const at = (yield* server.log).map((x) => x.at).sort((a, b) => a - b)
      expect(at).toHaveLength(10)
      expect(at[9]! - at[0]!).toBeGreaterThanOrEqual(1_300)
      expect(at[3]! - at[0]!).toBeLessThan(250)
    })), 30_000)

  it.live("--otlp exports the batch's spans and metrics to a collector, without a secret", () =>
    Effect.scoped(Effect.gen(function*() {
      const collector = yield* TestServer.make({
        routes: ["/v1/traces", "/v1/metrics", "/v1/logs"].map((path) => ({ method: "POST", path, then: { json: {} } })),
        logLimit: 1000
      })
      const server = yield* TestServer.make({ routes: [{ path: "/items", then: { json: { ok: true } } }] })
      const dir = tmp()
      Fs.writeFileSync(`${dir}/in.jsonl`, jsonl(requests(5)))
      const r = yield* sluice([
        "run", "--base-url", server.url, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`,
        "--auth", "api-key", "--api-key", "s3cret-api-key", "--rate", "50/1s", "--otlp", collector.url
      ])
      expect(r.code).toBe(0)
      const log = yield* collector.log
      const traces = log.filter((x) => x.path === "/v1/traces").map((x) => x.body).join("\n")
      expect(traces.split("sluice POST /items").length - 1).toBe(5)
      expect(log.some((x) => x.path === "/v1/metrics" && x.body.includes("sluice_ratelimiter_permits_granted"))).toBe(true)
      expect(log.map((x) => x.body).join("\n")).not.toContain("s3cret-api-key")
    })), 30_000)
})
