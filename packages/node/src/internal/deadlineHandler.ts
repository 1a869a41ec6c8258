import { TransportDeadline } from "@sluice/core"
import type { Dispatcher } from "undici"

/** `setTimeout` fires at once for anything longer (about 24.8 days). */
const MAX_TIMER_MILLIS = 2_147_483_647

type Handler = Dispatcher.DispatchHandler
type Abort = (err?: Error) => void

/**
 * Wraps the handler undici's `request` dispatches (its `RequestHandler`) so
 * that the request fails with a `TransportDeadline.DeadlineExceeded` at its
 * deadline: queued for a socket, sending, waiting for headers or receiving
 * the body. The timer is cleared when undici completes or fails the request.
 *
 * Why a handler and not a signal: the handler is the one place that sees
 * every stage. An `AbortSignal` (ours joined to the platform's) cost a
 * listener on the platform's `EventTarget` per request, and undici only acts
 * on a signal once the request has a socket, so a request queued behind a
 * full pool outlived its deadline until a socket came free.
 *
 * It speaks undici's handler protocol as `RequestHandler` does (`onConnect`
 * … `onComplete`/`onError`), forwarding each call unchanged.
 */
export class DeadlineHandler implements Handler {
  private timer: ReturnType<typeof setTimeout> | undefined = undefined
  private abort: Abort | undefined = undefined
  private expired: TransportDeadline.DeadlineExceeded | undefined = undefined
  /** The wrapped handler has had its last call (`onError` sent by us, before a socket). */
  private settled = false

  constructor(private readonly handler: Handler, private readonly deadline: number) {
    const wait = deadline - Date.now()
    if (wait <= 0) this.expire()
    else if (wait <= MAX_TIMER_MILLIS) {
      // setTimeout's extra argument: no closure per request.
      this.timer = setTimeout(onDeadline, wait, this)
      // The request's socket keeps the process alive while it matters; a body nobody reads must not.
      this.timer.unref()
    }
  }

  /** Whether it still holds its timer (the request is in flight). */
  get pending(): boolean {
    return this.timer !== undefined
  }

  /** @internal */
  expire(): void {
    this.timer = undefined
    const error = this.expired = new TransportDeadline.DeadlineExceeded(this.deadline)
    if (this.abort !== undefined) return this.abort(error) // undici calls onError
    // Still queued (or not yet dispatched): undici would hold the failure until a
    // socket came free. Fail now; `onConnect` drops the request when its turn comes.
    this.settled = true
    this.handler.onError!(error)
  }

  private release(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }

  onConnect(abort: Abort, context?: unknown): void {
    // Failed while queued. Thrown, not `abort`ed: undici then drops the request
    // unsent and keeps the socket, where `abort` would destroy it (client-h1/h2).
    if (this.expired !== undefined) throw this.expired
    this.abort = abort
    return (this.handler.onConnect as (abort: Abort, context?: unknown) => void)(abort, context)
  }

  onResponseStarted(): void {
    return this.handler.onResponseStarted?.()
  }

  onHeaders(statusCode: number, headers: Array<Buffer>, resume: () => void, statusText: string): boolean {
    return this.handler.onHeaders!(statusCode, headers, resume, statusText)
  }

  onData(chunk: Buffer): boolean {
    return this.handler.onData!(chunk)
  }

  onComplete(trailers: Array<string> | null): void {
    this.release()
    return this.handler.onComplete!(trailers)
  }

  onError(err: Error): void {
    this.release()
    if (this.settled) return
    this.settled = true
    return this.handler.onError!(err)
  }

  onUpgrade(statusCode: number, headers: Array<Buffer> | Array<string> | null, socket: import("node:stream").Duplex): void {
    this.release()
    return this.handler.onUpgrade!(statusCode, headers, socket)
  }

  onBodySent(chunkSize: number, totalBytesSent: number): void {
    return this.handler.onBodySent?.(chunkSize, totalBytesSent)
  }

  onRequestSent(): void {
    return (this.handler as { onRequestSent?: () => void }).onRequestSent?.()
  }
}

const onDeadline = (handler: DeadlineHandler): void => handler.expire()
