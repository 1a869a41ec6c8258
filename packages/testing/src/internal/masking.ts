/**
 * What the request log keeps of secrets: their scheme at most. The log is
 * for assertions and snapshots, which must never hold a credential.
 */
import type * as Http from "node:http"

export const SECRET_HEADERS = [
  "authorization",
  "proxy-authorization",
  "cookie",
  "x-api-key",
  "api-key",
  "api-token",
  "x-api-token",
  "x-auth-token",
  "private-token"
]

/** Query parameters masked in the log: OAuth2's bearer-in-query form and the usual key names. */
const SECRET_QUERY = /([?&](?:access_token|api_key|apikey|key|token|client_secret)=)[^&#]*/gi
export const maskQuery = (search: string) => search === "" ? search : search.replace(SECRET_QUERY, "$1***")

/** Masks the secret headers (`SECRET_HEADERS` and `extra`) and the OAuth2 client secret in a token request's body. */
export const makeMasker = (extra: ReadonlyArray<string>, oauthPath: string) => {
  const secretHeaders = new Set([...SECRET_HEADERS, ...extra.map((h) => h.toLowerCase())])
  const mask = (headers: Http.IncomingHttpHeaders): Record<string, string> => {
    const out: Record<string, string> = {}
    for (const [k, v] of Object.entries(headers)) {
      if (v === undefined) continue
      const value = Array.isArray(v) ? v.join(", ") : v
      if (!secretHeaders.has(k)) out[k] = value
      else if (k === "authorization") out[k] = `${value.split(" ")[0]} ***`
      else out[k] = "***"
    }
    return out
  }
  const maskBody = (path: string, body: string) =>
    path === oauthPath ? body.replace(/(client_secret=)[^&]*/g, "$1***") : body
  return { headers: mask, body: maskBody }
}
