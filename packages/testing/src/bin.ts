#!/usr/bin/env node
/**
 * `sluice-test-server`: the fault-injecting server as a standalone process,
 * for benchmarks, demos and clients in other languages.
 *
 *   sluice-test-server [--port 0] [--host 127.0.0.1] [--config routes.json]
 *                      [--capacity RATE] [--burst N] [--client-id ID --client-secret SECRET]
 *
 * `--config` takes a JSON file of `TestServer.Options`. `--capacity` adds a
 * catch-all route (`/*`) with that hidden rate (requests per second). The
 * first line on stdout is `listening on <url>`; stats are at `/__sluice/stats`
 * and the capacity can be changed with `POST /__sluice/capacity`.
 */
import * as Fs from "node:fs"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as TestServer from "./TestServer.js"

const usage = "usage: sluice-test-server [--port N] [--host H] [--config file.json] [--capacity RATE] [--burst N] " +
  "[--client-id ID --client-secret SECRET]"

const parseArgs = (argv: ReadonlyArray<string>): TestServer.Options => {
  const flags = new Map<string, string>()
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i]!
    if (!key.startsWith("--")) throw new Error(`unexpected argument ${key}\n${usage}`)
    const value = argv[i + 1]
    if (value === undefined) throw new Error(`${key} needs a value\n${usage}`)
    flags.set(key.slice(2), value)
    i++
  }
  const known = new Set(["port", "host", "config", "capacity", "burst", "client-id", "client-secret"])
  for (const k of flags.keys()) if (!known.has(k)) throw new Error(`unknown option --${k}\n${usage}`)
  const base: TestServer.Options = flags.has("config")
    ? JSON.parse(Fs.readFileSync(flags.get("config")!, "utf8")) as TestServer.Options
    : {}
  const num = (k: string) => {
    const n = Number(flags.get(k))
    if (!Number.isFinite(n)) throw new Error(`--${k} must be a number, got ${flags.get(k)}`)
    return n
  }
  const routes = [...(base.routes ?? [])]
  if (flags.has("capacity")) {
    routes.push({
      path: "/*",
      capacity: { rate: num("capacity"), ...(flags.has("burst") ? { burst: num("burst") } : {}) },
      then: { json: { ok: true } }
    })
  }
  const oauth = flags.has("client-id")
    ? { clientId: flags.get("client-id")!, clientSecret: flags.get("client-secret") ?? "" }
    : base.oauth
  return {
    ...base,
    routes,
    ...(oauth ? { oauth } : {}),
    ...(flags.has("port") ? { port: num("port") } : {}),
    ...(flags.has("host") ? { host: flags.get("host")! } : {})
  }
}

const main = Effect.gen(function*() {
  const options = yield* Effect.try({ try: () => parseArgs(process.argv.slice(2)), catch: (e) => e as Error })
  const scope = yield* Scope.make()
  const server = yield* TestServer.make(options).pipe(Scope.extend(scope))
  process.stdout.write(`listening on ${server.url}\n`)
  yield* Effect.async<void>((resume) => {
    const stop = () => resume(Effect.void)
    process.once("SIGINT", stop)
    process.once("SIGTERM", stop)
  })
  yield* Scope.close(scope, Exit.void)
})

Effect.runPromiseExit(main).then((exit) => {
  if (Exit.isFailure(exit)) {
    const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
    process.stderr.write(`sluice-test-server: ${error instanceof Error ? error.message : String(exit.cause)}\n`)
    process.exit(2)
  }
})
