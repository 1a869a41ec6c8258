/**
 * A token printed by a CLI command, as an `AuthProvider` (the successor of
 * stkai's `StkCLIHttpClient`, for any command: `gcloud auth
 * print-access-token`, `az account get-access-token --query accessToken -o tsv`,
 * `vault read -field=token …`).
 *
 * The command runs through `@effect/platform`'s `Command` (provide a
 * `CommandExecutor`, e.g. `NodeContext.layer`), the first line of its stdout
 * is the token (taken once the process has exited), cached for `lifetime` and
 * refreshed early; one run at a time, shared by every caller. A non-zero
 * exit, a missing binary, a timeout (SIGTERM, then SIGKILL to the process
 * group) or more than 64 KiB of stdout is an `AuthenticationError` with
 * reason `CommandFailed` carrying the exit code and an excerpt of stderr
 * (never stdout, which would be the token; stdout's text is masked in it).
 *
 * @example
 * ```ts
 * import { NodeContext } from "@effect/platform-node"
 * import { Layer } from "effect"
 * import { ApiClient, CommandAuth } from "@sluice/core"
 *
 * const Api = ApiClient.layer({ baseUrl: "https://api.example.com" }).pipe(
 *   Layer.provide(CommandAuth.layer({ command: ["gcloud", "auth", "print-access-token"], lifetime: "30 minutes" })),
 *   Layer.provide(NodeContext.layer)
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as Command from "@effect/platform/Command"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { excerpt } from "./ApiError.js"
import { AuthenticationError, AuthProvider } from "./AuthProvider.js"
import type * as AP from "./AuthProvider.js"
import { Scrubber } from "./internal/scrub.js"
import * as TokenCache from "./internal/tokenCache.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The command and its arguments; a string is split on white space. */
  readonly command: string | ReadonlyArray<string>
  /** How long a printed token is used. Default 5 minutes. */
  readonly lifetime?: Duration.DurationInput | undefined
  /** Refresh this long before the lifetime ends (at most half of it). Default 30 seconds. */
  readonly refreshMargin?: Duration.DurationInput | undefined
  /** Bound on one run. Default 30 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
  /** The header to send. Default `authorization`, as `Bearer <token>`. */
  readonly header?: string | undefined
  /** Prefix of the header value. Default `Bearer ` for `authorization`, none otherwise. */
  readonly prefix?: string | undefined
}

/**
 * @since 0.1.0
 * @category utils
 */
export const argv = (command: Options["command"]): ReadonlyArray<string> =>
  typeof command === "string" ? command.trim().split(/\s+/).filter((s) => s !== "") : command

/**
 * Bytes of stdout or stderr kept: a token is far shorter, and a runaway command cannot fill the heap.
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_OUTPUT = 64 * 1024

/** How long a command gets to exit after SIGTERM before its process group is sent SIGKILL. */
const KILL_GRACE = Duration.seconds(2)

/** A pipe's bytes, bounded: past `limit` the rest is drained and dropped, and `overflowed` is set. */
class Bounded {
  private readonly chunks: Array<Uint8Array> = []
  private size = 0
  overflowed = false
  constructor(private readonly limit: number, private readonly onLine?: () => void) {}
  push(chunk: Uint8Array): void {
    if (this.overflowed) return
    if (this.size + chunk.length > this.limit) {
      this.overflowed = true
      chunk = chunk.subarray(0, this.limit - this.size)
    }
    this.chunks.push(chunk)
    this.size += chunk.length
    if (this.onLine !== undefined && chunk.includes(10)) this.onLine()
  }
  get text(): string {
    const all = new Uint8Array(this.size)
    let at = 0
    for (const c of this.chunks) {
      all.set(c, at)
      at += c.length
    }
    return new TextDecoder().decode(all)
  }
}

/** A token is one header value: visible ASCII, no spaces, no CR/LF. */
const TOKEN = /^[\x21-\x7e]+$/

/**
 * Runs the command once: the first line of its stdout is the token, taken
 * once the process has exited and stdout has given a line (or closed), so a
 * background child that keeps stdout open (`sleep 1000 & echo tok`) does not
 * hold it up. Whatever the outcome, the command's process group is then sent
 * SIGKILL, so no child outlives the run. At `timeout` the group gets SIGTERM
 * and, after a 2 s grace, SIGKILL. stdout and stderr are bounded at 64 KiB
 * each (more stdout is a `CommandFailed` at once). Errors carry the exit code
 * and an excerpt of stderr with anything stdout printed masked in it.
 *
 * @since 0.1.0
 * @category utils
 */
export const run = (
  options: Pick<Options, "command" | "timeout">
): Effect.Effect<string, AuthenticationError, CommandExecutor.CommandExecutor> => {
  const args = argv(options.command)
  // Only the program's name: arguments may hold secrets (`--token=…`).
  const shown = args.length === 0 ? "" : `${args[0]!.split("/").pop()}${args.length > 1 ? " …" : ""}`
  const fail = (message: string, transient: boolean) =>
    new AuthenticationError({ reason: "CommandFailed", message: `auth command \`${shown}\` ${message}`, transient })
  if (args.length === 0) return Effect.fail(fail("is empty", false))
  const timeout = Duration.decode(options.timeout ?? "30 seconds")
  return Effect.scoped(
    Effect.gen(function*() {
      const child = yield* Command.start(Command.make(args[0]!, ...args.slice(1)))
      // Added after the platform's own finalizer, so it runs first: the platform's sends SIGTERM
      // and then waits for the exit, forever for a command that ignores SIGTERM.
      yield* Effect.addFinalizer(() => terminate(child))
      const lineSeen = yield* Deferred.make<void>()
      const overflow = yield* Deferred.make<void>()
      const stdout = new Bounded(MAX_OUTPUT, () => Deferred.unsafeDone(lineSeen, Effect.void))
      const stderr = new Bounded(MAX_OUTPUT)
      const read = (stream: Stream.Stream<Uint8Array, unknown>, into: Bounded, onOverflow?: () => void) =>
        Effect.forkScoped(Effect.ignore(Stream.runForEach(stream, (chunk) =>
          Effect.sync(() => {
            into.push(chunk)
            if (into.overflowed) onOverflow?.()
          }))))
      const stdoutDone = yield* read(child.stdout, stdout, () => Deferred.unsafeDone(overflow, Effect.void))
      yield* read(child.stderr, stderr)
      const scrubber = new Scrubber()
      const stderrSaid = () => {
        for (const line of stdout.text.split(/\r?\n/)) scrubber.add(line.trim())
        return excerpt(scrubber.scrub(stderr.text.trim()))
      }
      const finished = Effect.flatMap(
        Effect.either(child.exitCode),
        (code) => Effect.as(Effect.raceFirst(Fiber.await(stdoutDone), Deferred.await(lineSeen)), code)
      )
      const outcome = yield* Effect.raceFirst(
        Effect.map(finished, Option.some),
        Effect.as(Deferred.await(overflow), Option.none())
      ).pipe(Effect.timeoutOption(timeout))
      if (Option.isNone(outcome)) return yield* fail(`did not finish within ${Duration.format(timeout)}`, true)
      if (Option.isNone(outcome.value)) return yield* fail(`printed more than ${MAX_OUTPUT} bytes on stdout`, false)
      const code = outcome.value.value
      if (code._tag === "Left") return yield* fail(`was killed: ${code.left.message}`, true)
      if (code.right !== 0) {
        return yield* fail(`exited with code ${code.right}: ${stderrSaid() || "(no stderr)"}`, true)
      }
      const token = stdout.text.split(/\r?\n/).map((line) => line.trim()).find((line) => line !== "") ?? ""
      if (token === "") return yield* fail(`printed no token (stderr: ${stderrSaid() || "empty"})`, true)
      if (!TOKEN.test(token)) {
        return yield* fail(`printed a first line that is not a token (${token.length} characters, not all visible ASCII)`, false)
      }
      return token
    })
  ).pipe(
    Effect.catchTag("SystemError", (e) =>
      Effect.fail(fail(e.reason === "NotFound" ? "was not found: is it installed and on PATH?" : `could not run: ${e.message}`, false))),
    Effect.catchTag("BadArgument", (e) => Effect.fail(fail(`could not run: ${e.message}`, false)))
  )
}

/**
 * SIGTERM to a command still running, SIGKILL after the grace, then SIGKILL to
 * its whole process group (children it left behind). Never waits longer than
 * twice the grace: the platform's `kill` waits for an exit that may not come
 * (finalizers run uninterruptibly, so the wait is made interruptible for the timeout).
 */
const terminate = (child: CommandExecutor.Process): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (yield* Effect.orElseSucceed(child.isRunning, () => false)) {
      yield* Effect.ignore(Effect.timeout(Effect.interruptible(child.kill("SIGTERM")), KILL_GRACE))
    }
    yield* Effect.ignore(Effect.timeout(Effect.interruptible(child.kill("SIGKILL")), KILL_GRACE))
  })

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<AP.Service, never, CommandExecutor.CommandExecutor | Scope.Scope> =>
  Effect.gen(function*() {
    const executor = yield* Effect.context<CommandExecutor.CommandExecutor>()
    const header = (options.header ?? "authorization").toLowerCase()
    const prefix = options.prefix ?? (header === "authorization" ? "Bearer " : "")
    const lifetime = Duration.toMillis(Duration.decode(options.lifetime ?? "5 minutes"))
    const fetch = Effect.map(
      Effect.provide(run(options), executor),
      (token): TokenCache.Fetched => ({ headers: { [header]: `${prefix}${token}` }, lifetimeMillis: lifetime })
    )
    const cache = yield* TokenCache.make(fetch, {
      refreshMarginMillis: Duration.toMillis(Duration.decode(options.refreshMargin ?? "30 seconds")),
      backoffBaseMillis: 500,
      permanentTtlMillis: 60_000
    })
    return { ...cache, refreshable: true, secretHeaders: [header] }
  })

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<AuthProvider, never, CommandExecutor.CommandExecutor> =>
  Layer.scoped(AuthProvider, make(options))
