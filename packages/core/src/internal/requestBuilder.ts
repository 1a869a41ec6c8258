/**
 * From `api.post("/items/{id}", { path, params, headers, body })` to an
 * `HttpClientRequest`: the path template expanded and encoded, joined to the
 * base URL, default headers (with the API key only for the base URL's
 * origin), query parameters and a JSON body. Anything that cannot be sent
 * as asked is a `RequestEncodeError`, before anything is sent.
 */
import * as Headers from "@effect/platform/Headers"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type { HttpMethod } from "@effect/platform/HttpMethod"
import type * as UrlParams from "@effect/platform/UrlParams"
import * as Redacted from "effect/Redacted"
import type * as ApiClient from "../ApiClient.js"
import { RequestEncodeError } from "../ApiError.js"
import * as Redirects from "../Redirects.js"

/** `https://x/api/` and `https://x/api` are the same base. */
export const normaliseBaseUrl = (url: string): string => url.replace(/\/+$/, "")

const TEMPLATE = /\{([^}]+)\}/g

/**
 * `/users/{id}` with `{ id: "a b" }` is `/users/a%20b`. A missing parameter is an encode error,
 * and so is `.` or `..`: encoding does not help there, since the URL standard reads `%2E%2E` as
 * `..` too, so `/users/{id}/profile` with `id: ".."` would request `/profile`.
 */
export const expandPath = (path: string, params: ApiClient.RequestOptions["path"]): string => {
  if (params === undefined || path.indexOf("{") === -1) return path
  return path.replace(TEMPLATE, (_, name: string) => {
    const value = params[name]
    if (value === undefined) throw new Error(`path parameter "${name}" is missing`)
    const text = String(value)
    if (text === "." || text === "..") {
      throw new Error(`path parameter "${name}" is "${text}", which would climb out of the path template`)
    }
    return encodeURIComponent(text)
  })
}

const ABSOLUTE = /^[a-z][a-z0-9+.-]*:\/\//i

export const originOf = (url: string): string | undefined => {
  try {
    return new URL(url).origin
  } catch {
    return undefined
  }
}

/**
 * Why a base URL is refused, or `undefined` when it is fine: it must parse, be
 * http(s), and carry no `user:password@` (which would put the password into
 * every error message and span).
 */
export const invalidBaseUrl = (baseUrl: string): string | undefined => {
  let url: URL
  try {
    url = new URL(baseUrl)
  } catch {
    return `baseUrl is not a URL: ${JSON.stringify(baseUrl.slice(0, 200))}`
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `baseUrl must be http or https, not ${url.protocol}`
  }
  if (url.username !== "" || url.password !== "") {
    url.username = ""
    url.password = ""
    return `baseUrl must not carry credentials (user:password@): use ${url.href.replace(/\/$/, "")} ` +
      `with AuthProvider.layerBasic(username, Redacted.make(password)) instead`
  }
  return undefined
}

const paramsToUrlParams = (params: NonNullable<ApiClient.RequestOptions["params"]>): UrlParams.UrlParams => {
  const out: Array<[string, string]> = []
  for (const key in params) {
    const value = params[key]
    if (value === undefined) continue
    if (Array.isArray(value)) for (const v of value) out.push([key, String(v)])
    else out.push([key, String(value)])
  }
  return out
}

/** Builds the requests of one client: its base URL, default headers and API key. */
export const makeRequestBuilder = (options: ApiClient.Options, baseUrl: string) => {
  const baseOrigin = originOf(baseUrl)
  const allowAbsoluteUrls = options.allowAbsoluteUrls === true
  const apiKeyHeader = (options.apiKeyHeader ?? "X-API-Key").toLowerCase()

  // Headers for the base URL's origin (with the API key), and for any other origin (without).
  let foreignDefaults = Headers.fromInput({ accept: "application/json" })
  if (options.headers) foreignDefaults = Headers.merge(foreignDefaults, Headers.fromInput(options.headers))
  const defaults = options.apiKey !== undefined
    ? Headers.set(foreignDefaults, apiKeyHeader, Redacted.value(options.apiKey))
    : foreignDefaults
  // Default headers that carry credentials stay at home too.
  foreignDefaults = Headers.remove(foreignDefaults, [...Redirects.CREDENTIAL_HEADERS, "x-api-key", apiKeyHeader])

  // Every request starts from one of two templates (the base URL's origin, another origin) whose
  // headers are set once: HttpClientRequest.make sets them with setHeaders, which copies the whole
  // set three times, for every request.
  const template = (headers: Headers.Headers) => HttpClientRequest.setBody(HttpClientRequest.make("GET")("", { headers }), HttpBody.empty)
  const home = template(defaults)
  const foreign = template(foreignDefaults)

  const buildRequest = (
    method: HttpMethod,
    path: string,
    opts: ApiClient.RequestOptions<any, any>
  ): HttpClientRequest.HttpClientRequest | RequestEncodeError => {
    const expanded = opts.path === undefined ? path : expandPath(path, opts.path)
    let url: string
    let headers = defaults
    if (ABSOLUTE.test(expanded)) {
      // An absolute URL as a path (axios' CVE-2025-27152): refused when it names another origin,
      // unless allowed; even then the API key and the auth provider's credential stay at home.
      url = expanded
      const origin = originOf(expanded)
      if (origin === undefined || origin !== baseOrigin) {
        if (!allowAbsoluteUrls || origin === undefined) {
          return new RequestEncodeError({
            method,
            url: origin ?? expanded.slice(0, 200),
            description: origin === undefined
              ? "the path is not a valid absolute URL"
              : `the path is an absolute URL of another origin (${origin}) than the base URL (${baseOrigin}); ` +
                "pass a path, or set allowAbsoluteUrls: true (credentials are never sent to another origin)"
          })
        }
        headers = foreignDefaults
      }
    } else {
      url = expanded.charCodeAt(0) === 47 ? baseUrl + expanded : `${baseUrl}/${expanded}`
    }
    let body: HttpBody.HttpBody = HttpBody.empty
    if (opts.body !== undefined) {
      let text: string | undefined
      try {
        text = JSON.stringify(opts.body)
      } catch (cause) {
        return new RequestEncodeError({ method, url, description: `body is not JSON-serialisable: ${String(cause)}` })
      }
      body = HttpBody.text(text ?? "null", "application/json")
    }
    // The same steps as HttpClientRequest.make(method)(url, { headers, urlParams, body }), from a
    // template whose headers were set once.
    let request = HttpClientRequest.setUrl(HttpClientRequest.setMethod(headers === defaults ? home : foreign, method), url)
    if (opts.headers !== undefined) request = HttpClientRequest.setHeaders(request, opts.headers)
    if (opts.params !== undefined) request = HttpClientRequest.setUrlParams(request, paramsToUrlParams(opts.params))
    // An empty body drops a Content-Type given with the request's headers, as make would.
    if (body !== HttpBody.empty || opts.headers !== undefined) request = HttpClientRequest.setBody(request, body)
    return request
  }

  const tryBuild = (method: HttpMethod, path: string, opts: ApiClient.RequestOptions<any, any>) => {
    try {
      return buildRequest(method, path, opts)
    } catch (cause) {
      return new RequestEncodeError({ method, url: path, description: (cause as Error).message })
    }
  }

  // Only a template that is itself an absolute URL can name another origin: parameters are encoded.
  const isForeign = (template: string, url: string) => ABSOLUTE.test(template) && originOf(url) !== baseOrigin

  return {
    /** The headers every request to the base URL's origin carries (the API key among them). */
    defaults,
    apiKeyHeader,
    /** The request, or why it cannot be sent. */
    build: tryBuild,
    isForeign
  }
}
