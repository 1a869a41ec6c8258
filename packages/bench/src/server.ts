/**
 * The benchmark's peer: a minimal keep-alive JSON server, in its own process
 * so its CPU does not count against the clients being measured.
 */
import * as Http from "node:http"
import type * as Net from "node:net"

const body = JSON.stringify({ ok: true, items: [1, 2, 3] })
/** `POST /oauth/token`: a client-credentials token good for an hour (the full-stack client caches it). */
const token = JSON.stringify({ access_token: "bench-token", token_type: "Bearer", expires_in: 3600 })
const reply = (res: Http.ServerResponse, text: string) => {
  res.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) })
  res.end(text)
}
const server = Http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  req.resume()
  req.on("end", () => {
    if (req.url === "/oauth/token") return reply(res, token)
    // `/slow`: answered after a second, to hold requests in flight (heap per in-flight request).
    if (req.url === "/slow") return setTimeout(() => reply(res, body), 1_000)
    // `/chunked`: the same body without a Content-Length, as many frameworks send JSON.
    if (req.url === "/chunked") {
      res.writeHead(200, { "content-type": "application/json" })
      return res.end(body)
    }
    reply(res, body)
  })
})
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening on http://127.0.0.1:${(server.address() as Net.AddressInfo).port}\n`)
})
process.on("SIGTERM", () => server.close(() => process.exit(0)))
