import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as Duration from "effect/Duration"
import { RequestEncodeError, RequestTimeoutError, TransportError } from "../ApiError.js"
import { isDeadlineExceeded } from "../TransportDeadline.js"

/** Error codes that prove the request never reached the server. */
const CONNECT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "CERT_HAS_EXPIRED",
  "SELF_SIGNED_CERT_IN_CHAIN"
])

/** Error codes of a request the transport would not even send: malformed headers. */
const INVALID_REQUEST_CODES = new Set([
  "UND_ERR_INVALID_ARG",
  "ERR_INVALID_CHAR",
  "ERR_HTTP_INVALID_HEADER_VALUE",
  "ERR_INVALID_HTTP_TOKEN"
])

interface CauseInfo {
  readonly code: string | undefined
  readonly message: string
}

/**
 * Walks a transport's error and its `cause` chain for the first Node-style
 * `code`: undici, fetch and node:http all put it somewhere on that chain.
 */
export const causeInfo = (cause: unknown): CauseInfo => {
  let current: unknown = cause
  let message: string | undefined
  for (let depth = 0; depth < 5 && typeof current === "object" && current !== null; depth++) {
    const c = current as { code?: unknown; message?: unknown; cause?: unknown }
    if (message === undefined && typeof c.message === "string" && c.message !== "") message = c.message
    if (typeof c.code === "string") {
      return { code: c.code, message: typeof c.message === "string" && c.message !== "" ? c.message : message ?? c.code }
    }
    current = c.cause
  }
  return { code: undefined, message: message ?? String(cause) }
}

/**
 * Maps a platform `HttpClientError` to Sluice's transport-level errors. A
 * transport that aborted at the attempt's deadline (`TransportDeadline`)
 * gives the attempt's timeout, `timeout`.
 */
export const fromHttpClientError = (
  error: HttpClientError.HttpClientError,
  method: string,
  url: string,
  timeout?: Duration.Duration
): TransportError | RequestTimeoutError | RequestEncodeError => {
  if (isDeadlineExceeded(error.cause)) {
    return new RequestTimeoutError({ method, url, phase: "total", ...(timeout !== undefined ? { timeout } : {}) })
  }
  if (error._tag === "RequestError") {
    if (error.reason === "Encode" || error.reason === "InvalidUrl") {
      return new RequestEncodeError({ method, url, description: error.description ?? causeInfo(error.cause).message })
    }
    const info = causeInfo(error.cause)
    if (info.code !== undefined && INVALID_REQUEST_CODES.has(info.code)) {
      // Not worth a retry: the same request fails the same way. The transport's message may quote
      // the offending header's value (a credential), so it is not carried.
      return new RequestEncodeError({
        method,
        url,
        description: `the transport refused the request as malformed (${info.code}): ` +
          "a header name or value holds characters HTTP does not allow (CR, LF, NUL)"
      })
    }
    if (info.code === "UND_ERR_CONNECT_TIMEOUT") {
      return new RequestTimeoutError({ method, url, phase: "connect" })
    }
    return new TransportError({
      method,
      url,
      phase: info.code !== undefined && CONNECT_CODES.has(info.code) ? "connect" : "request",
      ...(info.code !== undefined ? { code: info.code } : {}),
      description: info.message
    })
  }
  // A ResponseError out of the transport means the body broke off after the headers.
  const info = causeInfo(error.cause)
  return new TransportError({
    method,
    url,
    phase: "response",
    ...(info.code !== undefined ? { code: info.code } : {}),
    description: info.message
  })
}

export const totalTimeout = (method: string, url: string, timeout: Duration.Duration) =>
  new RequestTimeoutError({ method, url, phase: "total", timeout })

/** A URL as an error shows it: without its query, fragment or user info, any of which may hold a secret. */
export const shownUrl = (url: string): string => {
  // The common case, checked without parsing: this runs for every request.
  if (url.indexOf("?") === -1 && url.indexOf("#") === -1 && url.indexOf("@") === -1) return url
  try {
    const parsed = new URL(url)
    return parsed.origin + parsed.pathname
  } catch {
    const cut = url.search(/[?#]/)
    return cut === -1 ? url : url.slice(0, cut)
  }
}
