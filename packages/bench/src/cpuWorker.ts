/**
 * Scenario 1b in a process of its own, started by `cpu.ts`'s `runInChild`
 * with the V8 flags its method needs. Arg: the options as JSON. Writes the
 * rows as JSON to stdout.
 */
import { run } from "./cpu.js"

const rows = await run(JSON.parse(process.argv[2]!))
process.stdout.write(JSON.stringify(rows) + "\n")
