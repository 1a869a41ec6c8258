/**
 * The benchmark's peer: a minimal keep-alive JSON server, in its own process
 * so its CPU does not count against the clients being measured.
 */
import * as Http from "node:http"
import type * as Net from "node:net"

const body = JSON.stringify({ ok: true, items: [1, 2, 3] })
const server = Http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  req.resume()
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) })
    res.end(body)
  })
})
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening on http://127.0.0.1:${(server.address() as Net.AddressInfo).port}\n`)
})
process.on("SIGTERM", () => server.close(() => process.exit(0)))
