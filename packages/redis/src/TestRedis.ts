/**
 * `TestRedis`: a private `redis-server` for tests, on a unix socket in a temp
 * dir, started for the life of a scope (and killable, to test outages).
 * Needs `redis-server` on PATH; without it, it dies with how to install it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RedisStore, TestRedis } from "@sluice/redis"
 *
 * const program = Effect.gen(function* () {
 *   const redis = yield* TestRedis.start
 *   const store = yield* RedisStore.make({ path: redis.socket })
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/**
 * @since 0.1.0
 * @category models
 */
export interface RedisServer {
  readonly socket: string
  /** Stops the server (as a crash would: SIGKILL). */
  readonly kill: Effect.Effect<void>
  /** Starts it again on the same socket. */
  readonly restart: Effect.Effect<void>
}

const HOW_TO_INSTALL = "redis-server is not on PATH: the Redis tests start their own. Install it: apt-get install redis-server"

const ping = (socket: string) =>
  new Promise<boolean>((resolve) => {
    const c = Net.connect(socket)
    c.once("error", () => resolve(false))
    c.once("connect", () => c.write("PING\r\n"))
    c.once("data", (d) => {
      c.destroy()
      resolve(d.toString().startsWith("+PONG"))
    })
  })

/**
 * A private redis-server on a unix socket in a temp dir, for the life of the scope.
 *
 * @since 0.1.0
 * @category utils
 */
export const start: Effect.Effect<RedisServer, never, Scope.Scope> = Effect.gen(function*() {
  const found = ChildProcess.spawnSync("redis-server", ["--version"], { encoding: "utf8" })
  if (found.error) return yield* Effect.dieMessage(HOW_TO_INSTALL)
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "sluice-redis-"))
  const socket = Path.join(dir, "redis.sock")
  let child: ChildProcess.ChildProcess | undefined
  const launch = Effect.promise(async () => {
    child = ChildProcess.spawn(
      "redis-server",
      ["--port", "0", "--unixsocket", socket, "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", dir],
      { stdio: "ignore" }
    )
    for (let i = 0; i < 200; i++) {
      if (Fs.existsSync(socket) && (await ping(socket))) return
      await new Promise((r) => setTimeout(r, 25))
    }
    throw new Error("redis-server did not start within 5 s")
  })
  const kill = Effect.promise(() =>
    new Promise<void>((resolve) => {
      if (!child || child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once("exit", () => resolve())
      child.kill("SIGKILL")
    }).then(() => Fs.rmSync(socket, { force: true }))
  )
  yield* Effect.acquireRelease(launch, () => Effect.zipRight(kill, Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))))
  return { socket, kill, restart: launch }
})
