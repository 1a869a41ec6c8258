/**
 * A token printed by a CLI command, as an `AuthProvider` (the successor of
 * stkai's `StkCLIHttpClient`, for any command: `gcloud auth
 * print-access-token`, `az account get-access-token --query accessToken -o tsv`,
 * `vault read -field=token …`).
 *
 * The command runs through `@effect/platform`'s `Command` (provide a
 * `CommandExecutor`, e.g. `NodeContext.layer`), its trimmed stdout is the
 * token, cached for `lifetime` and refreshed early; one run at a time,
 * shared by every caller. A non-zero exit, a missing binary or a timeout is
 * an `AuthenticationError` with reason `CommandFailed` carrying the exit code
 * and an excerpt of stderr (never stdout, which would be the token).
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
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { excerpt } from "./ApiError.js"
import { AuthenticationError, AuthProvider } from "./AuthProvider.js"
import type * as AP from "./AuthProvider.js"
import * as TokenCache from "./internal/tokenCache.js"

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

export const argv = (command: Options["command"]): ReadonlyArray<string> =>
  typeof command === "string" ? command.trim().split(/\s+/).filter((s) => s !== "") : command

const collect = <E>(stream: Stream.Stream<Uint8Array, E>) =>
  stream.pipe(
    Stream.decodeText(),
    Stream.runCollect,
    Effect.map((chunks) => Chunk.join(chunks, ""))
  )

/** Runs the command once: its trimmed stdout, or a `CommandFailed` error. */
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
      const process = yield* Command.start(Command.make(args[0]!, ...args.slice(1)))
      const [stdout, stderr, code] = yield* Effect.all(
        [collect(process.stdout), collect(process.stderr), process.exitCode],
        { concurrency: "unbounded" }
      )
      if (code !== 0) return yield* fail(`exited with code ${code}: ${excerpt(stderr.trim()) || "(no stderr)"}`, true)
      const token = stdout.trim()
      if (token === "") return yield* fail(`printed no token (stderr: ${excerpt(stderr.trim()) || "empty"})`, true)
      return token
    })
  ).pipe(
    Effect.catchTag("SystemError", (e) =>
      Effect.fail(fail(e.reason === "NotFound" ? "was not found: is it installed and on PATH?" : `could not run: ${e.message}`, false))),
    Effect.catchTag("BadArgument", (e) => Effect.fail(fail(`could not run: ${e.message}`, false))),
    Effect.timeoutFail({ duration: timeout, onTimeout: () => fail(`did not finish within ${Duration.format(timeout)}`, true) })
  )
}

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

export const layer = (options: Options): Layer.Layer<AuthProvider, never, CommandExecutor.CommandExecutor> =>
  Layer.scoped(AuthProvider, make(options))
