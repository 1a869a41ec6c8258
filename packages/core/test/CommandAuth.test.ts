import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as HttpClient from "@effect/platform/HttpClient"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, expect, it } from "@effect/vitest"
import { TestServer } from "@sluice/testing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import { AuthEnvironment, CommandAuth, TokenStore } from "../src/index.js"
import { setupWith } from "./helpers.js"

const node = (script: string) => [process.execPath, "-e", script]

/** Whether a process is gone: no such pid, or a zombie nobody has reaped yet (Linux). */
const gone = (pid: number) => {
  try {
    process.kill(pid, 0)
  } catch {
    return true
  }
  try {
    return Fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z") === true
  } catch {
    return true
  }
}

describe("CommandAuth", () => {
  it.scoped("runs the command, sends its stdout as a bearer token, caches it for the lifetime", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "sluice-cmd-")))
      const counter = `${dir}/runs`
      // the command counts its runs in a file, so the test sees how often it ran
      const script = `const fs=require("fs");const n=(fs.existsSync(${JSON.stringify(counter)})?+fs.readFileSync(${
        JSON.stringify(counter)
      }):0)+1;fs.writeFileSync(${JSON.stringify(counter)},String(n));process.stdout.write("tok-"+n+"\\n")`
      const { api, server } = yield* setupWith(
        { routes: [{ path: "/api", then: { echo: true } }], secretHeaders: ["x-nothing"] },
        {},
        () => CommandAuth.layer({ command: node(script), lifetime: "1 minute", refreshMargin: "0 millis" }).pipe(Layer.provide(NodeContext.layer))
      )
      yield* Effect.all(Array.from({ length: 20 }, () => api.get("/api")), { concurrency: "unbounded" })
      expect(Fs.readFileSync(counter, "utf8")).toBe("1")
      yield* TestClock.adjust("61 seconds")
      yield* api.get("/api")
      expect(Fs.readFileSync(counter, "utf8")).toBe("2")
      expect((yield* server.log).every((r) => r.headers["authorization"] === "Bearer ***")).toBe(true)
    }))

  it.effect("a failing command is a typed error with the exit code and a stderr excerpt, never stdout", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(CommandAuth.run({
        command: node(`process.stdout.write("secret-token");process.stderr.write("not logged in");process.exit(3)`)
      }))
      assert(e._tag === "AuthenticationError")
      expect(e.reason).toBe("CommandFailed")
      expect(e.message).toContain("exited with code 3")
      expect(e.message).toContain("not logged in")
      expect(e.message).not.toContain("secret-token")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.live("endless stdout fails at once with CommandFailed, in bounded memory", () =>
    Effect.gen(function*() {
      const before = process.memoryUsage().heapUsed
      const e = yield* Effect.flip(CommandAuth.run({
        command: node(`const b="x".repeat(65536);(function w(){while(process.stdout.write(b));process.stdout.once("drain",w)})()`),
        timeout: "20 seconds"
      }))
      expect(e.reason).toBe("CommandFailed")
      expect(e.message).toContain("more than 65536 bytes")
      expect(process.memoryUsage().heapUsed - before).toBeLessThan(64 * 1024 * 1024)
    }).pipe(Effect.provide(NodeContext.layer)), 15_000)

  it.live("a command that ignores SIGTERM is killed at its timeout plus the grace, not waited for", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "sluice-cmd-"))
      const pidFile = Path.join(dir, "pid")
      const started = Date.now()
      const e = yield* Effect.flip(CommandAuth.run({
        command: node(`require("fs").writeFileSync(${JSON.stringify(pidFile)},String(process.pid));process.on("SIGTERM",()=>{});setInterval(()=>{},1000)`),
        timeout: "500 millis"
      }))
      expect(e.message).toContain("did not finish within")
      expect(Date.now() - started).toBeLessThan(6_000)
      const pid = Number(Fs.readFileSync(pidFile, "utf8"))
      expect(gone(pid)).toBe(true)
    }).pipe(Effect.provide(NodeContext.layer)), 15_000)

  it.live("a token printed by a command that leaves a child holding stdout is taken at exit; the child is killed", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "sluice-cmd-"))
      const pidFile = Path.join(dir, "pid")
      const started = Date.now()
      const token = yield* CommandAuth.run({
        command: ["sh", "-c", `sleep 1000 & echo $! > ${pidFile}; echo tok-from-sh`],
        timeout: "10 seconds"
      })
      expect(token).toBe("tok-from-sh")
      expect(Date.now() - started).toBeLessThan(3_000)
      const pid = Number(Fs.readFileSync(pidFile, "utf8"))
      yield* Effect.sleep("100 millis")
      expect(gone(pid)).toBe(true)
    }).pipe(Effect.provide(NodeContext.layer)), 15_000)

  it.effect("a secret the command writes to stderr is masked in the error", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(CommandAuth.run({
        command: node(`process.stdout.write("tok-s3cr3t-value\\n");process.stderr.write("rejected tok-s3cr3t-value for user");process.exit(2)`)
      }))
      expect(e.message).toContain("rejected *** for user")
      expect(e.message).not.toContain("tok-s3cr3t-value")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.effect("a missing binary says so", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(CommandAuth.run({ command: "sluice-no-such-binary --token" }))
      expect(e.reason).toBe("CommandFailed")
      expect(e.message).toContain("was not found")
      expect(e.transient).toBe(false)
    }).pipe(Effect.provide(NodeContext.layer)))
})

describe("AuthEnvironment", () => {
  const select = (env: Record<string, string>, server?: TestServer.TestServer) =>
    Effect.scoped(Effect.gen(function*() {
      const auth = yield* AuthEnvironment.make()
      return (yield* auth.credential).headers
    })).pipe(
      Effect.provide(Layer.merge(NodeContext.layer, Layer.succeed(HttpClient.HttpClient, server ? (null as never) : (null as never)))),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))
    )

  it.scoped("the order: runnable command, then client credentials, then bearer token, then API key", () =>
    Effect.gen(function*() {
      const all = {
        SLUICE_AUTH_COMMAND: `${process.execPath} -e process.stdout.write("from-command")`,
        SLUICE_AUTH_BEARER_TOKEN: "from-env",
        SLUICE_API_KEY: "key"
      }
      expect(yield* select(all)).toEqual({ authorization: "Bearer from-command" })
      // a command that is not installed is skipped
      expect(yield* select({ ...all, SLUICE_AUTH_COMMAND: "sluice-no-such-binary" })).toEqual({ authorization: "Bearer from-env" })
      expect(yield* select({ SLUICE_API_KEY: "key", SLUICE_API_KEY_HEADER: "X-Token" })).toEqual({ "x-token": "key" })
      expect(yield* select({ SLUICE_API_KEY: "key" })).toEqual({ "x-api-key": "key" })
    }))

  it.scoped("client credentials from the environment, against the token endpoint", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ oauth: { clientId: "app", clientSecret: "s" } })
      const { NodeTransport } = yield* Effect.promise(() => import("@sluice/node"))
      const headers = yield* Effect.scoped(Effect.flatMap(AuthEnvironment.make(), (a) => Effect.map(a.credential, (c) => c.headers))).pipe(
        Effect.provide(Layer.merge(NodeContext.layer, NodeTransport.layer())),
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([
          ["SLUICE_AUTH_CLIENT_ID", "app"],
          ["SLUICE_AUTH_CLIENT_SECRET", "s"],
          ["SLUICE_AUTH_TOKEN_URL", `${server.url}/oauth/token`],
          ["SLUICE_AUTH_BEARER_TOKEN", "ignored"]
        ])))
      )
      expect(headers["authorization"]).toMatch(/^Bearer tok-/)
      expect((yield* server.stats).tokenRequests).toBe(1)
    }))

  it.scoped("client credentials from the environment share their token through a TokenStore when given one", () =>
    Effect.gen(function*() {
      const server = yield* TestServer.make({ oauth: { clientId: "app", clientSecret: "s" } })
      const { NodeTransport } = yield* Effect.promise(() => import("@sluice/node"))
      const tokenStore = yield* TokenStore.makeMemory
      const tokenOf = Effect.scoped(Effect.flatMap(AuthEnvironment.make({ tokenStore }), (a) => Effect.map(a.credential, (c) => c.headers)))
      const [a, b] = yield* Effect.all([tokenOf, tokenOf]).pipe(
        Effect.provide(Layer.merge(NodeContext.layer, NodeTransport.layer())),
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([
          ["SLUICE_AUTH_CLIENT_ID", "app"],
          ["SLUICE_AUTH_CLIENT_SECRET", "s"],
          ["SLUICE_AUTH_TOKEN_URL", `${server.url}/oauth/token`]
        ])))
      )
      expect(a).toEqual(b)
      expect((yield* server.stats).tokenRequests).toBe(1)
    }))

  it.scoped("nothing configured: the message names the exact variables to set", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(select({}))
      assert(e._tag === "AuthenticationError")
      expect(e.reason).toBe("NotConfigured")
      for (
        const name of [
          "SLUICE_AUTH_COMMAND",
          "SLUICE_AUTH_CLIENT_ID",
          "SLUICE_AUTH_CLIENT_SECRET",
          "SLUICE_AUTH_TOKEN_URL",
          "SLUICE_AUTH_SCOPE",
          "SLUICE_AUTH_AUDIENCE",
          "SLUICE_AUTH_BEARER_TOKEN",
          "SLUICE_API_KEY",
          "SLUICE_API_KEY_HEADER"
        ]
      ) expect(e.message).toContain(name)
      const half = yield* Effect.flip(select({ SLUICE_AUTH_CLIENT_ID: "app" }))
      expect(half.message).toContain("SLUICE_AUTH_CLIENT_SECRET")
      const noUrl = yield* Effect.flip(select({ SLUICE_AUTH_CLIENT_ID: "app", SLUICE_AUTH_CLIENT_SECRET: "x" }))
      expect(noUrl.message).toContain("SLUICE_AUTH_TOKEN_URL")
    }))

  it.scoped("the prefix is configurable", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(Effect.scoped(AuthEnvironment.make({ prefix: "ACME" })).pipe(
        Effect.provide(Layer.merge(NodeContext.layer, Layer.succeed(HttpClient.HttpClient, null as never))),
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))
      ))
      expect(e.message).toContain("ACME_AUTH_CLIENT_ID")
    }))
})
