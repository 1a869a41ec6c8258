import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"

/** Runs one of `fixtures/` as a child process; its stdout, or a defect with its stderr. Killed if interrupted. */
export const runWorker = (fixture: string, args: ReadonlyArray<string>) =>
  Effect.async<string>((resume) => {
    const script = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "fixtures", fixture)
    const child = ChildProcess.spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    child.stdout!.on("data", (d) => (out += d))
    child.stderr!.on("data", (d) => (err += d))
    child.on("close", (code) => resume(code === 0 ? Effect.succeed(out) : Effect.dieMessage(`worker failed (${code}): ${err}`)))
    return Effect.sync(() => child.kill("SIGKILL"))
  })
