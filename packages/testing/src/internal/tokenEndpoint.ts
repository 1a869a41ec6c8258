/**
 * The OAuth2 token endpoint (client credentials, secret in the body or as
 * HTTP Basic) and the bearer tokens it issued, with their lifetimes on the
 * server's clock.
 */
import type * as Http from "node:http"
import type * as TS from "../TestServer.js"
import { millis } from "./config.js"
import type { Send } from "./reply.js"

export const makeTokenEndpoint = (oauth: NonNullable<TS.Options["oauth"]>, now: () => number, send: Send) => {
  /** Scripted answers, taken before any token is issued (`enqueue` on the endpoint's path). */
  const script: Array<TS.Reply> = [...(oauth.script ?? [])]
  const tokens = new Map<string, number>()
  let tokenCounter = 0
  const stats = { requests: 0, issued: 0 }
  const handle = (
    req: Http.IncomingMessage,
    res: Http.ServerResponse,
    entry: { status: number | undefined },
    body: string,
    echoOf: (unmasked: boolean) => unknown
  ) => {
    stats.requests++
    const scripted = script.shift()
    if (scripted !== undefined) return send(req, res, entry, scripted, {}, echoOf)
    const form = new URLSearchParams(body)
    let id = form.get("client_id")
    let secret = form.get("client_secret")
    const auth = req.headers.authorization
    if (auth?.startsWith("Basic ")) {
      const decoded = Buffer.from(auth.slice(6), "base64").toString("utf8")
      const i = decoded.indexOf(":")
      id = decodeURIComponent(decoded.slice(0, i))
      secret = decodeURIComponent(decoded.slice(i + 1))
    }
    if (req.method !== "POST") return send(req, res, entry, { status: 405, json: { error: "invalid_request" } }, {}, echoOf)
    if (form.get("grant_type") !== "client_credentials") {
      return send(req, res, entry, { status: 400, json: { error: "unsupported_grant_type" } }, {}, echoOf)
    }
    if (id !== oauth.clientId || secret !== oauth.clientSecret) {
      return send(req, res, entry, { status: 401, json: { error: "invalid_client" } }, {}, echoOf)
    }
    const lifetime = oauth.tokenLifetime !== undefined ? millis(oauth.tokenLifetime, "tokenLifetime") : 3_600_000
    const token = `tok-${++tokenCounter}-${Math.random().toString(36).slice(2, 10)}`
    tokens.set(token, now() + lifetime)
    stats.issued++
    const json: Record<string, unknown> = { access_token: token, token_type: "Bearer" }
    if (!oauth.omitExpiresIn) json["expires_in"] = Math.round(lifetime / 1000)
    const scope = form.get("scope")
    if (scope) json["scope"] = scope
    send(req, res, entry, { json, headers: { "cache-control": "no-store" } }, {}, echoOf)
  }
  /** Whether `authorization` carries a bearer token this endpoint issued and that has not expired. */
  const accepts = (authorization: string | undefined): boolean => {
    const token = authorization?.startsWith("Bearer ") ? authorization.slice(7) : undefined
    const expires = token === undefined ? undefined : tokens.get(token)
    return expires !== undefined && expires > now()
  }
  return { path: oauth.path ?? "/oauth/token", script, stats, handle, accepts, revoke: () => tokens.clear() }
}
