/**
 * `NodeTransport`'s `HttpClient`, written on undici's `Dispatcher.dispatch`.
 *
 * Why not `@effect/platform-node`'s undici adapter: it goes through
 * `Dispatcher.request`, which wraps every body in a `Readable` stream and
 * every request in an `AsyncResource`, and its `HttpClient.make` adds an
 * `AbortController`, a `FinalizationRegistry` entry and a wrapper object per
 * request. Together that made it about 0.2× raw `undici.request` at
 * concurrency 64 (BENCHMARKS.md, scenario 1). Here one object per request
 * (the {@link Exchange}) is undici's handler, the deadline's entry and the
 * source of the response's body; the body is collected as the chunks
 * undici hands over, and becomes a `Readable` for nobody.
 */
import * as Cookies from "@effect/platform/Cookies"
import * as Headers from "@effect/platform/Headers"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as IncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as TraceContext from "@effect/platform/HttpTraceContext"
import * as UrlParams from "@effect/platform/UrlParams"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { BoundedBody, TransportDeadline } from "@sluice/core"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Exit from "effect/Exit"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Inspectable from "effect/Inspectable"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import { Readable } from "node:stream"
import type { Dispatcher } from "undici"
import type { Deadlines, Expirable } from "./deadlines.js"

/**
 * Bytes of body buffered ahead of a reader that has not asked for the whole
 * body (a stream, or nobody yet) before the socket is paused; as Node's
 * streams do by default.
 */
const HIGH_WATER_MARK = 64 * 1024

type Abort = (err?: Error) => void
type OnResponse = (effect: Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError>) => void

/** A `Stream` reader's reason to stop the body early. */
class BodyClosed extends Error {
  constructor() {
    super("the response body was closed before its end")
    this.name = "BodyClosed"
  }
}

/** An interrupted caller's reason to abort the request. */
class Interrupted extends Error {
  constructor() {
    super("the request was interrupted")
    this.name = "Interrupted"
  }
}

/**
 * One request and its response, as undici's handler (its legacy protocol,
 * the one its dispatchers speak natively: a handler with `onRequestStart`
 * would be wrapped in an adapter per request).
 *
 * It holds no reference to the response object it made, so a response the
 * caller drops can be collected (see {@link unread}).
 */
class Exchange implements Dispatcher.DispatchHandler, Expirable {
  /** Resumes the caller waiting for the response's head. */
  onResponse: OnResponse | undefined
  /** undici's abort, once the request has a socket. */
  private abort: Abort | undefined = undefined
  /** Why the exchange ended early: ours (deadline, interruption) or undici's. */
  error: Error | undefined = undefined
  /** undici has had the whole body. */
  ended = false
  /** undici called its last callback (`onComplete` or `onError`). */
  private finished = false
  readonly chunks: Array<Uint8Array> = []
  buffered = 0
  /** A reader wants the whole body: nothing is held back. */
  collecting = false
  /** undici's resume, while it is paused (its `onData` returned false). */
  private paused: (() => void) | undefined = undefined
  /** Readers waiting for more body. */
  private waiters: Array<() => void> | undefined = undefined
  /** The deadline's bucket, while it is armed. */
  private deadlineKey = -1
  private deadlines: Deadlines | undefined = undefined
  private deadline = 0

  constructor(readonly request: HttpClientRequest.HttpClientRequest, onResponse: OnResponse) {
    this.onResponse = onResponse
  }

  arm(deadlines: Deadlines, deadline: number): void {
    this.deadlines = deadlines
    this.deadline = deadline
    this.deadlineKey = deadlines.add(deadline, this)
  }

  private disarm(): void {
    if (this.deadlineKey !== -1) {
      this.deadlines!.remove(this.deadlineKey, this)
      this.deadlineKey = -1
    }
  }

  /** The deadline passed. */
  expire(): void {
    this.deadlineKey = -1
    this.fail(new TransportDeadline.DeadlineExceeded(this.deadline))
  }

  /** Ends the exchange from our side: the deadline, an interrupted caller, a stream closed early. */
  fail(error: Error): void {
    if (this.finished || this.error !== undefined) return
    this.error = error
    // undici calls onError at once (its abort errors the request, and closes the socket).
    if (this.abort !== undefined) return this.abort(error)
    // Queued for a socket, or not yet dispatched: undici would hold the failure until a socket
    // came free. Fail now; onConnect drops the request unsent when its turn comes.
    this.settle()
  }

  /** Tells whoever waits (the caller for the head, or the body's readers) how things stand. */
  private settle(): void {
    this.disarm()
    const onResponse = this.onResponse
    if (onResponse !== undefined) {
      this.onResponse = undefined
      onResponse(Effect.fail(
        new HttpClientError.RequestError({ request: this.request, reason: "Transport", cause: this.error })
      ))
    } else {
      this.notify()
    }
  }

  private notify(): void {
    const waiters = this.waiters
    if (waiters === undefined || waiters.length === 0) return
    this.waiters = undefined
    for (const waiter of waiters) waiter()
  }

  /** Calls `waiter` once more body (or its end) has arrived; lets undici go on if it was paused. */
  wait(waiter: () => void): void {
    ;(this.waiters ??= []).push(waiter)
    this.resume()
  }

  unwait(waiter: () => void): void {
    const i = this.waiters?.indexOf(waiter) ?? -1
    if (i !== -1) this.waiters!.splice(i, 1)
  }

  /** Lets a paused undici send more body. */
  resume(): void {
    const paused = this.paused
    if (paused !== undefined && (this.collecting || this.buffered < HIGH_WATER_MARK)) {
      this.paused = undefined
      paused()
    }
  }

  /** Takes the body buffered so far. */
  take(): Array<Uint8Array> {
    const chunks = this.chunks.splice(0)
    this.buffered = 0
    return chunks
  }

  /** Whether the body is still coming. */
  get open(): boolean {
    return !this.ended && this.error === undefined
  }

  // undici's handler protocol

  onConnect(abort: Abort): void {
    // Failed while queued. Thrown, not aborted: undici then drops the request unsent and
    // keeps the socket, where abort would destroy it.
    if (this.error !== undefined) throw this.error
    this.abort = abort
  }

  onHeaders(statusCode: number, rawHeaders: Array<Buffer>, resume: () => void): boolean {
    if (statusCode < 200) return true // 1xx: informational, the real head follows
    const onResponse = this.onResponse
    this.onResponse = undefined
    // Kept for when onData pauses undici.
    this.resumeUndici = resume
    onResponse?.(Effect.succeed(new UndiciResponse(this.request, this, statusCode, rawHeaders)))
    return true
  }

  onData(chunk: Buffer): boolean {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    this.notify()
    if (this.collecting || this.buffered < HIGH_WATER_MARK) return true
    this.paused = this.resumeUndici
    return false
  }

  /** undici's resume for a paused body (given to `onHeaders`). */
  private resumeUndici: () => void = noop

  onComplete(): void {
    this.finished = true
    this.ended = true
    this.disarm()
    this.notify()
  }

  onError(err: Error): void {
    if (this.finished) return
    this.finished = true
    this.error ??= err
    this.settle()
  }
}

const noop = () => {}

/**
 * A response dropped unread while undici is paused on it would hold its
 * socket for good: when it is collected, its exchange is failed (which
 * closes the socket). Registered only when undici pauses with nobody
 * reading (a body larger than {@link HIGH_WATER_MARK}), not per request.
 */
const unread = new FinalizationRegistry<Exchange>((exchange) => exchange.fail(new BodyClosed()))

/** The bytes of `chunks`, as one array. */
const concat = (chunks: ReadonlyArray<Uint8Array>, size: number): Uint8Array => {
  if (chunks.length === 1) return chunks[0]!
  const out = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    out.set(chunk, offset)
    offset += chunk.length
  }
  return out
}

const decoder = new TextDecoder()

/** A response whose body is read from its exchange. */
class UndiciResponse extends Inspectable.Class implements HttpClientResponse.HttpClientResponse {
  readonly [IncomingMessage.TypeId]: IncomingMessage.TypeId = IncomingMessage.TypeId
  readonly [HttpClientResponse.TypeId]: HttpClientResponse.TypeId = HttpClientResponse.TypeId
  private parsedHeaders: Headers.Headers | undefined = undefined
  private setCookies: Array<string> | undefined = undefined
  private parsedCookies: Cookies.Cookies | undefined = undefined
  /** The whole body, once read (a second read gets the same bytes). */
  private body: Effect.Effect<Uint8Array, HttpClientError.ResponseError> | undefined = undefined
  private bytes: Uint8Array | undefined = undefined

  constructor(
    readonly request: HttpClientRequest.HttpClientRequest,
    private readonly exchange: Exchange,
    readonly status: number,
    private readonly rawHeaders: Array<Buffer>
  ) {
    super()
    if (exchange.open && exchange.buffered >= HIGH_WATER_MARK) unread.register(this, exchange, this)
  }

  get statusText(): string | undefined {
    return undefined
  }

  get headers(): Headers.Headers {
    if (this.parsedHeaders !== undefined) return this.parsedHeaders
    const raw = this.rawHeaders
    const record: Record<string, string> = {}
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toString("latin1").toLowerCase()
      const value = raw[i + 1]!.toString("utf8")
      if (name === "set-cookie") (this.setCookies ??= []).push(value)
      const previous = record[name]
      record[name] = previous === undefined ? value : `${previous}, ${value}`
    }
    return this.parsedHeaders = Headers.unsafeFromRecord(record)
  }

  get cookies(): Cookies.Cookies {
    if (this.parsedCookies !== undefined) return this.parsedCookies
    void this.headers
    return this.parsedCookies = this.setCookies === undefined ? Cookies.empty : Cookies.fromSetCookie(this.setCookies)
  }

  get remoteAddress(): Option.Option<string> {
    return Option.none()
  }

  private decodeError(cause: unknown): HttpClientError.ResponseError {
    return new HttpClientError.ResponseError({ request: this.request, response: this, reason: "Decode", cause })
  }

  /** The whole body, if it is all here (or its error): most small answers arrive with their head. */
  private settled(): Effect.Effect<Uint8Array, HttpClientError.ResponseError> | undefined {
    if (this.body !== undefined) return this.body
    const exchange = this.exchange
    if (exchange.error !== undefined) return Effect.fail(this.decodeError(exchange.error))
    if (!exchange.ended) return undefined
    const size = exchange.buffered
    this.bytes = concat(exchange.take(), size)
    return this.body = Effect.succeed(this.bytes)
  }

  /** The whole body: waits for its end, never pausing undici. Interrupted, it aborts the request. */
  get arrayBufferBytes(): Effect.Effect<Uint8Array, HttpClientError.ResponseError> {
    const settled = this.settled()
    if (settled !== undefined) return settled
    unread.unregister(this)
    const exchange = this.exchange
    return Effect.async<Uint8Array, HttpClientError.ResponseError>((resume) => {
      exchange.collecting = true
      const check = (): void => {
        const settled = this.settled()
        if (settled !== undefined) return resume(settled)
        exchange.wait(check)
      }
      check()
      return Effect.sync(() => {
        exchange.unwait(check)
        exchange.fail(new Interrupted())
      })
    })
  }

  /**
   * The body until it ends or until more than `max` bytes have arrived
   * (`BoundedBody`): then the request is aborted and its socket closed,
   * the rest never read.
   */
  [BoundedBody.TypeId](max: number): Effect.Effect<BoundedBody.Read, HttpClientError.ResponseError> {
    const settled = this.settled()
    if (settled !== undefined) return Effect.map(settled, (bytes) => ({ bytes }))
    unread.unregister(this)
    const exchange = this.exchange
    return Effect.async<BoundedBody.Read, HttpClientError.ResponseError>((resume) => {
      exchange.collecting = true
      const check = (): void => {
        const settled = this.settled()
        if (settled !== undefined) return resume(Effect.map(settled, (bytes) => ({ bytes })))
        if (exchange.buffered > max) {
          const size = exchange.buffered
          const bytes = concat(exchange.take(), size)
          exchange.fail(new BodyClosed())
          return resume(Effect.succeed({ bytes }))
        }
        exchange.wait(check)
      }
      check()
      return Effect.sync(() => {
        exchange.unwait(check)
        exchange.fail(new Interrupted())
      })
    })
  }

  get arrayBuffer(): Effect.Effect<ArrayBuffer, HttpClientError.ResponseError> {
    return Effect.map(this.arrayBufferBytes, (bytes) =>
      bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
        ? bytes.buffer as ArrayBuffer
        // A copy: a chunk is often a view of the whole socket read (Buffer#slice would not copy).
        : Uint8Array.prototype.slice.call(bytes).buffer as ArrayBuffer)
  }

  get text(): Effect.Effect<string, HttpClientError.ResponseError> {
    return Effect.map(this.arrayBufferBytes, (bytes) => decoder.decode(bytes))
  }

  private parseJson(bytes: Uint8Array): Effect.Effect<unknown, HttpClientError.ResponseError> {
    try {
      return Effect.succeed(bytes.length === 0 ? null : JSON.parse(decoder.decode(bytes)) as unknown)
    } catch (cause) {
      return Effect.fail(this.decodeError(cause))
    }
  }

  get json(): Effect.Effect<unknown, HttpClientError.ResponseError> {
    // No effects composed when the body is already here (the common case for a small answer).
    this.settled()
    if (this.bytes !== undefined) return this.parseJson(this.bytes)
    return Effect.flatMap(this.arrayBufferBytes, (bytes) => this.parseJson(bytes))
  }

  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, HttpClientError.ResponseError> {
    return Effect.flatMap(this.text, (text) => {
      try {
        return Effect.succeed(UrlParams.fromInput(new URLSearchParams(text)))
      } catch (cause) {
        return Effect.fail(this.decodeError(cause))
      }
    })
  }

  get formData(): Effect.Effect<FormData, HttpClientError.ResponseError> {
    return Effect.flatMap(this.arrayBufferBytes, (bytes) =>
      Effect.tryPromise({
        // The platform's own multipart parser (Node's Response), given the body and its type.
        try: () => new Response(bytes as Uint8Array<ArrayBuffer>, { headers: { "content-type": this.headers["content-type"] ?? "" } }).formData(),
        catch: (cause) => this.decodeError(cause)
      }))
  }

  /**
   * The body as it arrives. undici is paused while more than
   * {@link HIGH_WATER_MARK} bytes wait for the reader; a stream that ends
   * before the body does aborts the request (its socket is not reused).
   */
  get stream(): Stream.Stream<Uint8Array, HttpClientError.ResponseError> {
    unread.unregister(this)
    const exchange = this.exchange
    const pull = Effect.async<Chunk.Chunk<Uint8Array>, Option.Option<HttpClientError.ResponseError>>((resume) => {
      const check = (): void => {
        if (exchange.buffered > 0 || exchange.chunks.length > 0) {
          const chunks = exchange.take()
          exchange.resume()
          return resume(Effect.succeed(Chunk.unsafeFromArray(chunks)))
        }
        if (exchange.error !== undefined) return resume(Effect.fail(Option.some(this.decodeError(exchange.error))))
        if (exchange.ended) return resume(Effect.fail(Option.none()))
        exchange.wait(check)
      }
      check()
      return Effect.sync(() => exchange.unwait(check))
    })
    return Stream.repeatEffectChunkOption(pull).pipe(
      Stream.ensuring(Effect.sync(() => {
        if (exchange.open) exchange.fail(new BodyClosed())
      }))
    )
  }

  override toJSON(): unknown {
    return IncomingMessage.inspect(this, {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status
    })
  }
}

/** A request's body as undici takes it, with the headers to send it with. */
interface DispatchBody {
  readonly body: Dispatcher.DispatchOptions["body"]
  readonly headers: HttpClientRequest.HttpClientRequest["headers"]
}

const toDispatchBody = (
  request: HttpClientRequest.HttpClientRequest
): Effect.Effect<DispatchBody> | DispatchBody => {
  const body = request.body
  switch (body._tag) {
    case "Empty":
      return { body: null, headers: request.headers }
    case "Uint8Array":
    case "Raw":
      return { body: body.body as Uint8Array, headers: request.headers }
    case "FormData": {
      // Encoded by the runtime's own fetch (boundary and content type included), then streamed:
      // npm undici's encoder rejects a FormData of the runtime's (another copy of undici).
      const encoded = new Request("http://form.invalid/", { method: "POST", body: body.formData })
      return {
        body: Readable.fromWeb(encoded.body! as never),
        headers: Headers.set(request.headers, "content-type", encoded.headers.get("content-type")!)
      }
    }
    case "Stream":
      return Effect.map(NodeStream.toReadable(body.stream), (readable) => ({ body: readable, headers: request.headers }))
  }
}

/**
 * `request` with the trace context's headers set one by one: `setHeaders`
 * copies the whole header set three times and walks its input with
 * `Object.entries`, about 17 times the cost for these two or three headers
 * (core's request path does the same, in its `internal/headers.ts`).
 */
const setEach = (
  request: HttpClientRequest.HttpClientRequest,
  headers: Readonly<Record<string, string>>
): HttpClientRequest.HttpClientRequest => {
  let out = request
  for (const name in headers) out = HttpClientRequest.setHeader(out, name, headers[name]!)
  return out
}

/**
 * The span attribute names of headers, `http.request.header.<name>` and
 * `http.response.header.<name>`, built once per name (a few hundred at most:
 * a server that makes up header names gets them built each time instead).
 */
const attributeNames = (prefix: string) => {
  const names = new Map<string, string>()
  return (header: string): string => {
    let name = names.get(header)
    if (name === undefined) {
      name = prefix + header
      if (names.size < 256) names.set(header, name)
    }
    return name
  }
}
const requestHeaderAttribute = attributeNames("http.request.header.")
const responseHeaderAttribute = attributeNames("http.response.header.")

/**
 * What `Headers.redact` then `String` give a span for each header (a
 * redacted value shows as `<redacted>`), without copying the headers and
 * making a `Redacted` per secret per request.
 */
const headerAttributes = (
  span: Tracer.Span,
  attribute: (header: string) => string,
  headers: Headers.Headers,
  redactedNames: ReadonlyArray<string | RegExp>
): void => {
  for (const name in headers) {
    span.attribute(attribute(name), isRedacted(name, redactedNames) ? "<redacted>" : headers[name])
  }
}

const isRedacted = (name: string, redactedNames: ReadonlyArray<string | RegExp>): boolean => {
  for (let i = 0; i < redactedNames.length; i++) {
    const redacted = redactedNames[i]!
    if (typeof redacted === "string" ? redacted.toLowerCase() === name : redacted.test(name)) return true
  }
  return false
}

/**
 * The client: `execute` sends with no deadline, `executeBefore` under one
 * and untraced (its caller traces the attempt: `TransportDeadline`).
 * `execute`'s spans, their attributes and trace propagation are the
 * platform's (`HttpClient.make`), except headers: they become attributes
 * only with `spanHeaders` (then a switch from its adapter changes no trace).
 */
export const make = (
  dispatcher: Dispatcher,
  deadlines: Deadlines,
  options: { readonly spanHeaders: boolean }
): TransportDeadline.DeadlineClient => {
  const { spanHeaders } = options
  /** Dispatches and resumes with the response's head. */
  const dispatch = (
    request: HttpClientRequest.HttpClientRequest,
    url: URL,
    { body, headers }: DispatchBody,
    deadline: number | undefined
  ) =>
    Effect.async<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError>((resume) => {
      const exchange = new Exchange(request, resume)
      if (deadline !== undefined) {
        // Already past: never sent.
        if (deadline <= deadlines.now()) {
          exchange.expire()
          return
        }
        exchange.arm(deadlines, deadline)
      }
      if (exchange.open) {
        dispatcher.dispatch({
          origin: url.origin,
          path: url.pathname + url.search,
          method: request.method as Dispatcher.HttpMethod,
          headers,
          body
        }, exchange)
      }
      return Effect.sync(() => exchange.fail(new Interrupted()))
    })

  const send = (
    request: HttpClientRequest.HttpClientRequest,
    url: URL,
    deadline: number | undefined
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, HttpClientError.RequestError> => {
    const body = toDispatchBody(request)
    return Effect.isEffect(body)
      ? Effect.flatMap(body, (b) => dispatch(request, url, b, deadline))
      : dispatch(request, url, body, deadline)
  }

  const execute: TransportDeadline.Send = (request, deadline) =>
    Effect.withFiberRuntime((fiber) => {
      const urlResult = UrlParams.makeUrl(request.url, request.urlParams, request.hash)
      if (urlResult._tag === "Left") {
        return Effect.fail(new HttpClientError.RequestError({ request, reason: "InvalidUrl", cause: urlResult.left }))
      }
      const url = urlResult.right
      if (
        deadline !== undefined ||
        !fiber.getFiberRef(FiberRef.currentTracerEnabled) ||
        fiber.getFiberRef(HttpClient.currentTracerDisabledWhen)(request)
      ) {
        return send(request, url, deadline)
      }
      const nameGenerator = Context.get(fiber.currentContext, HttpClient.SpanNameGenerator)
      // The span is made and ended by hand, not with Effect.useSpan: nothing inside sends spans or
      // logs of its own, so it needs no parent-span context (a FiberRefs update per request), and
      // one onExit ends it instead of acquireUseRelease.
      return Effect.flatMap(Effect.makeSpan(nameGenerator(request), { kind: "client", captureStackTrace: false }), (span) => {
        span.attribute("http.request.method", request.method)
        span.attribute("server.address", url.origin)
        if (url.port !== "") span.attribute("server.port", +url.port)
        span.attribute("url.full", url.toString())
        span.attribute("url.path", url.pathname)
        span.attribute("url.scheme", url.protocol.slice(0, -1))
        const query = url.search.slice(1)
        if (query !== "") span.attribute("url.query", query)
        // Read only when headers are recorded (`spanHeaders`).
        const redactedNames = spanHeaders ? fiber.getFiberRef(Headers.currentRedactedNames) : undefined
        if (redactedNames) headerAttributes(span, requestHeaderAttribute, request.headers, redactedNames)
        const traced = fiber.getFiberRef(HttpClient.currentTracerPropagation)
          ? setEach(request, TraceContext.toHeaders(span))
          : request
        const timing = fiber.getFiberRef(FiberRef.currentTracerTimingEnabled)
        const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
        return Effect.onExit(send(traced, url, deadline), (exit) => {
          if (Exit.isSuccess(exit)) {
            const response = exit.value
            span.attribute("http.response.status_code", response.status)
            if (redactedNames) headerAttributes(span, responseHeaderAttribute, response.headers, redactedNames)
          }
          span.end(timing ? clock.unsafeCurrentTimeNanos() : BigInt(0), exit)
          return Effect.void
        })
      })
    })

  return TransportDeadline.make(execute)
}
