/**
 * Scenario 1b: client CPU per request, `ApiClient` against the transport it
 * runs on, sharing one connection pool, in alternating rounds. CPU time of
 * the client process is steadier than throughput on a machine whose cores
 * are shared with the server and everything else.
 */
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { ApiClient } from "@sluice/core"
import { NodeTransport } from "@sluice/node"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { median } from "./measure.js"

const here = Path.dirname(fileURLToPath(import.meta.url))

export const run = async (options: { readonly rounds: number; readonly requestsPerRound: number }) => {
  const child = ChildProcess.spawn(process.execPath, [Path.join(here, "server.js")], { stdio: ["ignore", "pipe", "inherit"] })
  const url = await new Promise<string>((resolve) =>
    child.stdout!.once("data", (d: Buffer) => resolve(/listening on (\S+)/.exec(d.toString())![1]!))
  )
  const scope = Effect.runSync(Scope.make())
  const ctx = await Effect.runPromise(
    Layer.buildWithScope(
      ApiClient.layer({ baseUrl: url }).pipe(Layer.provideMerge(NodeTransport.layer({ keepAliveTimeout: "60 seconds" }))),
      scope
    )
  )
  const api = Context.get(ctx, ApiClient.ApiClient)
  const http = Context.get(ctx, HttpClient.HttpClient)
  const variants: Record<string, Effect.Effect<unknown, unknown>> = {
    transport: Effect.flatMap(http.execute(HttpClientRequest.get(`${url}/items`)), (r) => r.json),
    api: api.get("/items")
  }
  const rows = []
  for (const c of [1, 64]) {
    const cpu: Record<string, Array<number>> = { transport: [], api: [] }
    const perFiber = Math.ceil(options.requestsPerRound / c)
    for (let round = 0; round <= options.rounds; round++) {
      for (const [name, once] of Object.entries(variants)) {
        const before = process.cpuUsage()
        await Effect.runPromise(
          Effect.forEach(Array.from({ length: c }), () => Effect.repeatN(Effect.orDie(once), perFiber - 1), {
            concurrency: "unbounded",
            discard: true
          })
        )
        const used = process.cpuUsage(before)
        // round 0 warms up
        if (round > 0) cpu[name]!.push((used.user + used.system) / (perFiber * c))
      }
    }
    rows.push({ c, transport: median(cpu["transport"]!), api: median(cpu["api"]!) })
  }
  await Effect.runPromise(Scope.close(scope, Exit.void))
  child.kill("SIGTERM")
  return rows
}
