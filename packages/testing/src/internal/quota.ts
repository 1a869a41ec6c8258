/**
 * The hidden capacity of a route: a token bucket, a fixed window or a sliding
 * window on the server's clock, and the quota headers a middleware of each
 * kind would announce.
 */
import type * as TS from "../TestServer.js"
import { millis } from "./config.js"

/** A quota kept on the server's clock. Its shape (window, limit) is derived once per capacity, not per request. */
export class Quota {
  capacity!: TS.Capacity
  algorithm: "token-bucket" | "fixed-window" | "sliding-window" = "token-bucket"
  windowMs = 1000
  /** The bucket size, or the requests a window admits. */
  limit = 1
  tokens: number
  windowStart: number
  used = 0
  /** Admission times, for a sliding window. */
  admitted: Array<number> = []
  constructor(capacity: TS.Capacity, now: number) {
    this.configure(capacity)
    this.tokens = this.limit
    this.windowStart = capacity.windowStart === "first-request" ? Number.NEGATIVE_INFINITY : now
  }
  private configure(capacity: TS.Capacity) {
    this.capacity = capacity
    this.algorithm = capacity.algorithm ?? "token-bucket"
    const windowed = this.algorithm !== "token-bucket"
    this.windowMs = windowed ? millis(capacity.window ?? 1000, "window") : 1000
    this.limit = capacity.burst ?? (windowed ? capacity.rate * (this.windowMs / 1000) : Math.max(1, capacity.rate))
  }
  set(capacity: TS.Capacity, now: number) {
    this.refill(now)
    this.configure(capacity)
    this.tokens = Math.min(this.tokens, this.limit)
  }
  refill(now: number) {
    if (this.algorithm === "fixed-window") {
      if (now - this.windowStart >= this.windowMs) {
        this.windowStart = this.capacity.windowStart === "first-request" || !Number.isFinite(this.windowStart)
          ? now
          : this.windowStart + Math.floor((now - this.windowStart) / this.windowMs) * this.windowMs
        this.used = 0
      }
      return
    }
    if (this.algorithm === "sliding-window") {
      let drop = 0
      while (drop < this.admitted.length && this.admitted[drop]! <= now - this.windowMs) drop++
      if (drop > 0) this.admitted.splice(0, drop)
      return
    }
    const elapsed = Math.max(0, now - this.windowStart)
    this.windowStart = now
    this.tokens = Math.min(this.limit, this.tokens + (elapsed / 1000) * this.capacity.rate)
  }
  /** Takes one request; returns undefined when admitted, else the ms until one would be. */
  take(now: number): number | undefined {
    this.refill(now)
    if (this.algorithm === "fixed-window") {
      if (this.used < this.limit) {
        this.used++
        return undefined
      }
      return this.windowStart + this.windowMs - now
    }
    if (this.algorithm === "sliding-window") {
      if (this.admitted.length < this.limit) {
        this.admitted.push(now)
        return undefined
      }
      return this.admitted[0]! + this.windowMs - now
    }
    if (this.tokens >= 1) {
      this.tokens -= 1
      return undefined
    }
    return ((1 - this.tokens) / this.capacity.rate) * 1000
  }
  /** What is left and the ms until the quota resets, as a middleware would announce them. */
  private announce(now: number): { readonly remaining: number; readonly resetMs: number } {
    switch (this.algorithm) {
      case "fixed-window":
        return { remaining: Math.max(0, this.limit - this.used), resetMs: Math.max(0, this.windowStart + this.windowMs - now) }
      case "sliding-window":
        return {
          remaining: Math.max(0, this.limit - this.admitted.length),
          resetMs: this.admitted.length === 0 ? 0 : Math.max(0, this.admitted[0]! + this.windowMs - now)
        }
      default:
        return { remaining: Math.max(0, Math.floor(this.tokens)), resetMs: ((this.limit - this.tokens) / this.capacity.rate) * 1000 }
    }
  }
  headers(now: number, form: NonNullable<TS.Capacity["headers"]>, wallNow: number): Record<string, string> {
    const { remaining, resetMs } = this.announce(now)
    const limit = String(Math.floor(this.limit))
    const reset = Math.ceil(resetMs / 1000)
    const w = Math.ceil(this.windowMs / 1000)
    switch (form) {
      case "ietf":
        return { "ratelimit-limit": limit, "ratelimit-remaining": String(remaining), "ratelimit-reset": String(reset), "ratelimit-policy": `${limit};w=${w}` }
      case "x":
        return { "x-ratelimit-limit": limit, "x-ratelimit-remaining": String(remaining), "x-ratelimit-reset": String(reset) }
      case "x-epoch":
        return { "x-ratelimit-limit": limit, "x-ratelimit-remaining": String(remaining), "x-ratelimit-reset": String(Math.ceil((wallNow + resetMs) / 1000)) }
      case "draft-7":
        return { ratelimit: `limit=${limit}, remaining=${remaining}, reset=${reset}`, "ratelimit-policy": `${limit};w=${w}` }
      case "draft-8":
        return { ratelimit: `"default";r=${remaining};t=${reset}`, "ratelimit-policy": `"default";q=${limit};w=${w}` }
      case "openai":
        return {
          "x-ratelimit-limit-requests": limit,
          "x-ratelimit-remaining-requests": String(remaining),
          "x-ratelimit-reset-requests": `${(Math.ceil(resetMs) / 1000).toFixed(3)}s`
        }
      case "anthropic":
        return {
          "anthropic-ratelimit-requests-limit": limit,
          "anthropic-ratelimit-requests-remaining": String(remaining),
          "anthropic-ratelimit-requests-reset": new Date(Math.ceil((wallNow + resetMs) / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z")
        }
    }
  }
}
