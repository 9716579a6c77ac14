/**
 * The transport-independent half of a connection: request/response correlation by opaque,
 * per-request timeouts, dispatch of incoming requests to processors with in-flight limits,
 * system responses, and idle detection. A transport subclass supplies only frame I/O, and calls
 * touch() whenever bytes move so idle detection knows the connection is in use.
 */
import { ResponseCode } from './codes.js'
import { DEFAULT_MAX_FRAME_BYTES, FrameEncoder } from './codec.js'
import { COMMAND_FLAG, RemotingCommand, SerializeType } from './command.js'
import { TransportError, type TransportErrorCode } from './errors.js'
import { DEFAULT_CONNECTION_LIMITS, consoleLogger, type Channel, type ConnectionOptions, type Logger, type RequestProcessor } from './remoting.js'

export interface ResolvedConnectionOptions {
  maxFrameBytes: number
  maxInFlightPerConnection: number
  maxOnewayInFlightPerConnection: number
  maxPendingPerConnection: number
  maxUnsentBytesPerConnection: number
  unsentStallCloseMs: number
  idleMs: number
  serializeType: SerializeType
  logger: Logger
}

export function resolveConnectionOptions(options: ConnectionOptions = {}): ResolvedConnectionOptions {
  const r: ResolvedConnectionOptions = {
    maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
    maxInFlightPerConnection: options.maxInFlightPerConnection ?? DEFAULT_CONNECTION_LIMITS.maxInFlightPerConnection,
    maxOnewayInFlightPerConnection: options.maxOnewayInFlightPerConnection ?? DEFAULT_CONNECTION_LIMITS.maxOnewayInFlightPerConnection,
    maxPendingPerConnection: options.maxPendingPerConnection ?? DEFAULT_CONNECTION_LIMITS.maxPendingPerConnection,
    maxUnsentBytesPerConnection: options.maxUnsentBytesPerConnection ?? DEFAULT_CONNECTION_LIMITS.maxUnsentBytesPerConnection,
    unsentStallCloseMs: options.unsentStallCloseMs ?? DEFAULT_CONNECTION_LIMITS.unsentStallCloseMs,
    idleMs: options.idleMs ?? DEFAULT_CONNECTION_LIMITS.idleMs,
    serializeType: options.serializeType ?? SerializeType.JSON,
    logger: options.logger ?? consoleLogger,
  }
  if (!(r.maxFrameBytes >= 64)) throw new RangeError(`maxFrameBytes must be >= 64, got ${r.maxFrameBytes}`)
  if (!(r.maxInFlightPerConnection >= 1)) throw new RangeError('maxInFlightPerConnection must be >= 1')
  if (!(r.maxOnewayInFlightPerConnection >= 1)) throw new RangeError('maxOnewayInFlightPerConnection must be >= 1')
  if (!(r.maxPendingPerConnection >= 1)) throw new RangeError('maxPendingPerConnection must be >= 1')
  if (!(r.maxUnsentBytesPerConnection >= 1)) throw new RangeError(`maxUnsentBytesPerConnection must be >= 1, got ${r.maxUnsentBytesPerConnection}`)
  if (!(r.unsentStallCloseMs >= 0)) throw new RangeError(`unsentStallCloseMs must be >= 0, got ${r.unsentStallCloseMs}`)
  if (!(r.idleMs >= 0)) throw new RangeError('idleMs must be >= 0')
  return r
}

/** Processors by request code, shared by every connection of a server or client. */
export class ProcessorTable {
  private readonly table = new Map<number, RequestProcessor>()
  defaultProcessor: RequestProcessor | undefined

  register(code: number, processor: RequestProcessor): void {
    if (!Number.isInteger(code)) throw new TypeError(`request code must be an integer, got ${code}`)
    this.table.set(code, processor)
  }

  get(code: number): RequestProcessor | undefined {
    return this.table.get(code) ?? this.defaultProcessor
  }
}

/** What a connection needs from the server or client that owns it. */
export interface ConnectionOwner {
  readonly processors: ProcessorTable
  readonly options: ResolvedConnectionOptions
  /** False while stopping: new requests are answered SYSTEM_BUSY. */
  acceptingRequests(): boolean
  connectionClosed(connection: RemotingConnection, reason: string): void
  connectionIdle(connection: RemotingConnection): void
  connectionError(connection: RemotingConnection, error: Error): void
}

interface PendingRequest {
  resolve(response: RemotingCommand): void
  reject(error: TransportError): void
  /** performance.now() at which the request times out. */
  deadline: number
  timeoutMs: number
  code: number
  /** While the request's frame waits for room in the transport: the wait, to drop it on timeout. */
  write: Promise<void> | undefined
}

let connectionCounter = 0

// A promise's resolve and reject, taken by an executor that is not a new closure per request.
let capturedResolve: (response: RemotingCommand) => void = () => {}
let capturedReject: (error: TransportError) => void = () => {}
function captureSettlers(resolve: (response: RemotingCommand) => void, reject: (error: TransportError) => void): void {
  capturedResolve = resolve
  capturedReject = reject
}
/** Idle checks per idleMs; see armIdleTimer. */
const IDLE_CHECKS = 8
/** After the first warning about answers nobody waits for, the rest are counted and logged at most this often. */
export const UNMATCHED_RESPONSE_LOG_INTERVAL_MS = 10_000
const RESOLVED: Promise<void> = Promise.resolve()

export abstract class RemotingConnection implements Channel {
  readonly id: string
  private readonly pending = new Map<number, PendingRequest>()
  private inFlightRequests = 0
  private inFlightOneway = 0
  private closeReason: string | undefined
  private idleTimer: NodeJS.Timeout | undefined
  /** When the idle timer last saw traffic (or the connection opened). */
  private lastActivityMs = Date.now()
  /** Traffic since the idle timer last looked; set per read or write without reading the clock. */
  private active = false
  private drainedWaiters: (() => void)[] = []
  /** Answers whose frame waits for room in the transport. */
  private waitingAnswers = 0
  /** Reading stopped: the peer does not take our answers (see answerMustWait). */
  private readingPaused = false
  private stallTimer: NodeJS.Timeout | undefined
  /** Closed by closeStalled, which logged why. */
  private stalled = false
  /** Answers to no pending request: when the last warning was logged, and how many came since. */
  private unmatchedLoggedAt = -Infinity
  private unmatchedSinceLog = 0
  /**
   * One timer per connection for every request's timeout, armed for the earliest deadline it
   * knows of. A timer per request costs a setTimeout/clearTimeout pair per round trip; this one
   * is only re-armed when a request is due sooner, and is unref'd while nothing is pending so it
   * never keeps the process alive on its own.
   */
  private timeoutTimer: NodeJS.Timeout | undefined
  private timeoutAt = Infinity
  /**
   * Whether the timeout timer holds the process open while requests are pending. A transport
   * whose own handle already does (a connected socket) sets this false, which saves a ref/unref
   * pair per round trip.
   */
  protected readonly timeoutTimerHoldsProcess: boolean = true
  private readonly sweepBound = () => this.sweepTimeouts()
  /** Encodes every outgoing frame of this connection; see prepareFrame and writePrepared. */
  private readonly encoder = new FrameEncoder()

  constructor(
    protected readonly owner: ConnectionOwner,
    readonly localAddress: string,
    readonly remoteAddress: string,
  ) {
    this.id = `${remoteAddress}#${++connectionCounter}`
    this.armIdleTimer()
  }

  /**
   * Queues one encoded frame. Returns a promise only when the connection's write buffer is over
   * its bound; the caller then waits, which is how back-pressure reaches senders.
   */
  protected abstract writeFrame(parts: Buffer[]): void | Promise<void>
  /**
   * Queues the frame `encoder` holds from prepare(), like writeFrame. A transport that can encode
   * straight into its own write buffer overrides this; the default hands writeFrame new buffers.
   */
  protected writePrepared(encoder: FrameEncoder): void | Promise<void> {
    return this.writeFrame(encoder.toParts())
  }
  /** Flushes what is queued and releases the underlying I/O. Called once. */
  protected abstract closeTransport(): void
  /** Stops taking bytes from the peer until resumeReading(); a transport that cannot leaves it a no-op. */
  protected pauseReading(): void {}
  protected resumeReading(): void {}
  /**
   * Drops a frame still waiting for room, identified by the promise writeFrame or writePrepared
   * returned for it (a request that timed out before it could be sent).
   */
  protected dropWaitingFrame(_write: Promise<void>): void {}

  /** Bytes queued for the peer that it has not taken yet, the frames waiting for room included. */
  unsentBytes(): number {
    return 0
  }

  get closed(): boolean {
    return this.closeReason !== undefined
  }

  get inFlight(): number {
    return this.inFlightRequests + this.inFlightOneway
  }

  /** Requests sent on this connection still waiting for a response. */
  get pendingCount(): number {
    return this.pending.size
  }

  invoke(request: RemotingCommand, timeoutMs: number): Promise<RemotingCommand> {
    if (this.closeReason !== undefined) return Promise.reject(this.closedError('SEND_FAILED'))
    if (this.pending.size >= this.owner.options.maxPendingPerConnection) {
      return Promise.reject(new TransportError('TOO_MANY_REQUESTS', `${this.pending.size} requests outstanding on ${this.remoteAddress}`, { details: { address: this.remoteAddress } }))
    }
    const overBound = this.unsentError()
    if (overBound !== undefined) return Promise.reject(overBound)
    const opaque = request.opaque
    if (this.pending.has(opaque)) {
      return Promise.reject(new TransportError('SEND_FAILED', `opaque ${opaque} is already outstanding on ${this.remoteAddress}; create a new request`))
    }
    request.flag &= ~(COMMAND_FLAG.RESPONSE | COMMAND_FLAG.ONEWAY)
    try {
      this.prepareFrame(request)
    } catch (err) {
      return Promise.reject(err)
    }
    const code = request.code
    // The delay setTimeout would use: out-of-range and non-numeric timeouts become 1 ms.
    const delayMs = timeoutMs >= 1 && timeoutMs <= 0x7fffffff ? timeoutMs : 1
    const deadline = performance.now() + delayMs
    const response = new Promise<RemotingCommand>(captureSettlers)
    const entry: PendingRequest = { resolve: capturedResolve, reject: capturedReject, deadline, timeoutMs, code, write: undefined }
    this.pending.set(opaque, entry)
    this.armTimeout(deadline)
    let written: void | Promise<void>
    try {
      written = this.writePrepared(this.encoder)
    } catch (err) {
      this.failPending(opaque, err)
      return response
    }
    if (written) {
      entry.write = written
      written.then(
        () => (entry.write = undefined),
        (err) => this.failPending(opaque, err),
      )
    }
    return response
  }

  invokeOneway(request: RemotingCommand): Promise<void> {
    if (this.closeReason !== undefined) return Promise.reject(this.closedError('SEND_FAILED'))
    const overBound = this.unsentError()
    if (overBound !== undefined) return Promise.reject(overBound)
    request.flag = (request.flag & ~COMMAND_FLAG.RESPONSE) | COMMAND_FLAG.ONEWAY
    try {
      this.prepareFrame(request)
      return this.writePrepared(this.encoder) ?? RESOLVED
    } catch (err) {
      return Promise.reject(err)
    }
  }

  respond(request: RemotingCommand, response: RemotingCommand): Promise<void> {
    try {
      return this.writeResponse(request, response) ?? RESOLVED
    } catch (err) {
      return Promise.reject(err)
    }
  }

  close(reason = 'closed locally'): void {
    this.shutdown(reason, 'CONNECTION_LOST')
  }

  /** Resolves once no incoming request is being processed. */
  whenDrained(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve()
    return new Promise((resolve) => this.drainedWaiters.push(resolve))
  }

  /**
   * Closes the connection: outstanding requests fail with `code`, the transport is flushed and
   * released, the owner is told. Idempotent.
   */
  shutdown(reason: string, code: TransportErrorCode = 'CONNECTION_LOST'): void {
    if (this.closeReason !== undefined) return
    this.closeReason = reason
    if (this.idleTimer) clearTimeout(this.idleTimer)
    if (this.stallTimer) clearTimeout(this.stallTimer)
    this.logUnmatchedCount()
    // Answers parked for a peer that did not read them go with the connection: one line, not one each.
    if (this.waitingAnswers > 0 && !this.stalled) {
      this.owner.options.logger.warn(`closing connection to ${this.remoteAddress} (${reason}): ${this.waitingAnswers} answers the peer did not read are dropped`, { remote: this.remoteAddress })
    }
    if (this.timeoutTimer) clearTimeout(this.timeoutTimer)
    this.timeoutTimer = undefined
    this.timeoutAt = Infinity
    const pending = [...this.pending.values()]
    this.pending.clear()
    for (const p of pending) p.reject(this.closedError(code))
    try {
      this.closeTransport()
    } finally {
      this.owner.connectionClosed(this, reason)
    }
  }

  /** For subclasses: a decoded command arrived. */
  protected handleCommand(cmd: RemotingCommand): void {
    if (this.closeReason !== undefined) return
    if (cmd.isResponse) {
      const p = this.pending.get(cmd.opaque)
      if (!p) {
        this.unmatchedResponse(cmd)
        return
      }
      this.pending.delete(cmd.opaque)
      if (this.pending.size === 0) this.timeoutTimer?.unref()
      p.resolve(cmd)
      return
    }
    this.handleRequest(cmd)
  }

  /** For subclasses: bytes were sent or received. */
  protected touch(): void {
    this.active = true
  }

  /** For subclasses: queued bytes were written; reading resumes once half the bound is left. */
  protected writeProgress(): void {
    if (!this.readingPaused || this.unsentBytes() > this.owner.options.maxUnsentBytesPerConnection / 2) return
    this.readingPaused = false
    if (this.stallTimer) clearTimeout(this.stallTimer)
    this.stallTimer = undefined
    if (this.closeReason === undefined) this.resumeReading()
  }

  private unsentError(): TransportError | undefined {
    const limit = this.owner.options.maxUnsentBytesPerConnection
    const unsent = this.unsentBytes()
    if (unsent < limit) return undefined
    return new TransportError('TOO_MANY_REQUESTS', `${unsent} bytes queued for ${this.remoteAddress} are not sent yet, limit ${limit} (maxUnsentBytesPerConnection): the peer is not reading`, {
      details: { address: this.remoteAddress, unsentBytes: unsent, limit },
    })
  }

  /**
   * An answer must wait for room: the peer is slower to read than it sends. Past the bound stop
   * reading its requests, which would only park more answers here; if it stays there, close it.
   * Only answers do this: pausing for our own requests could stop both sides at once.
   */
  private answerMustWait(written: Promise<void>): Promise<void> {
    this.waitingAnswers++
    const opts = this.owner.options
    if (!this.readingPaused && this.unsentBytes() >= opts.maxUnsentBytesPerConnection) {
      this.readingPaused = true
      this.pauseReading()
      if (opts.unsentStallCloseMs > 0) {
        this.stallTimer = setTimeout(() => this.closeStalled(), opts.unsentStallCloseMs)
        this.stallTimer.unref()
      }
    }
    return written.finally(() => this.waitingAnswers--)
  }

  private closeStalled(): void {
    this.stallTimer = undefined
    if (!this.readingPaused || this.closeReason !== undefined) return
    const unsent = this.unsentBytes()
    const opts = this.owner.options
    opts.logger.warn(`closing connection from ${this.remoteAddress}: ${unsent} bytes of answers unsent for ${opts.unsentStallCloseMs} ms (maxUnsentBytesPerConnection ${opts.maxUnsentBytesPerConnection}); the peer does not read`, {
      remote: this.remoteAddress,
      unsentBytes: unsent,
      waitingAnswers: this.waitingAnswers,
    })
    this.stalled = true
    this.shutdown('peer does not read its answers', 'CONNECTION_LOST')
  }

  /** Logs the first answer nobody waits for, then at most one count per interval: a peer may send floods of them. */
  private unmatchedResponse(cmd: RemotingCommand): void {
    const now = Date.now()
    if (now - this.unmatchedLoggedAt < UNMATCHED_RESPONSE_LOG_INTERVAL_MS) {
      this.unmatchedSinceLog++
      return
    }
    this.logUnmatchedCount()
    this.unmatchedLoggedAt = now
    this.owner.options.logger.warn('response without a waiting request dropped (late or unknown opaque)', { remote: this.remoteAddress, opaque: cmd.opaque, code: cmd.code })
  }

  private logUnmatchedCount(): void {
    if (this.unmatchedSinceLog === 0) return
    this.owner.options.logger.warn(`${this.unmatchedSinceLog} more responses without a waiting request dropped (late or unknown opaque)`, { remote: this.remoteAddress })
    this.unmatchedSinceLog = 0
  }

  private prepareFrame(cmd: RemotingCommand): void {
    this.encoder.prepare(cmd, this.owner.options.serializeType, this.owner.options.maxFrameBytes)
  }

  /**
   * Queues the response to `request`; returns a promise while the transport makes it wait. Throws
   * when the transport cannot take it. A response that cannot be encoded is replaced by
   * SYSTEM_ERROR, so the requester learns why.
   */
  private writeResponse(request: RemotingCommand, response: RemotingCommand): void | Promise<void> {
    if (request.isOneway) return
    if (this.closeReason !== undefined) {
      this.owner.options.logger.debug?.('response dropped: connection closed', { remote: this.remoteAddress, opaque: request.opaque })
      return
    }
    try {
      const problem = malformedResponse(response)
      if (problem !== undefined) throw new TransportError('ENCODE_FAILED', `processor for code ${request.code} returned a malformed response: ${problem}`)
      response.opaque = request.opaque
      response.flag |= COMMAND_FLAG.RESPONSE
      response.flag &= ~COMMAND_FLAG.ONEWAY
      response.serializeType = request.serializeType ?? response.serializeType
      this.prepareFrame(response)
    } catch (err) {
      // The handler's answer cannot be sent (malformed, too large, code out of range); tell the requester why.
      const fallback = RemotingCommand.createResponse(ResponseCode.SYSTEM_ERROR, (err as Error).message)
      fallback.opaque = request.opaque
      fallback.serializeType = request.serializeType
      this.prepareFrame(fallback)
    }
    const written = this.writePrepared(this.encoder)
    return written ? this.answerMustWait(written) : undefined
  }

  private handleRequest(request: RemotingCommand): void {
    const oneway = request.isOneway
    const opts = this.owner.options
    if (!this.owner.acceptingRequests()) {
      if (!oneway) void this.respond(request, RemotingCommand.createResponse(ResponseCode.SYSTEM_BUSY, '[STOPPING] remoting endpoint is shutting down')).catch(() => {})
      return
    }
    if (oneway) {
      if (this.inFlightOneway >= opts.maxOnewayInFlightPerConnection) {
        opts.logger.warn('oneway request dropped: too many in flight', { remote: this.remoteAddress, code: request.code, limit: opts.maxOnewayInFlightPerConnection })
        return
      }
      this.inFlightOneway++
    } else {
      if (this.inFlightRequests >= opts.maxInFlightPerConnection) {
        void this.respond(
          request,
          RemotingCommand.createResponse(ResponseCode.SYSTEM_BUSY, `[OVERLOAD] ${this.inFlightRequests} requests in flight on this connection, limit ${opts.maxInFlightPerConnection}`),
        ).catch(() => {})
        return
      }
      this.inFlightRequests++
    }
    const processor = this.owner.processors.get(request.code)
    if (!processor) {
      this.finishRequest(request, RemotingCommand.createResponse(ResponseCode.REQUEST_CODE_NOT_SUPPORTED, ` request type ${request.code} not supported`))
      return
    }
    let result: ReturnType<RequestProcessor>
    try {
      result = processor(request, this)
    } catch (err) {
      this.finishRequest(request, this.errorResponse(request, err))
      return
    }
    if (result instanceof Promise) {
      result.then(
        (response) => this.finishRequest(request, response ?? undefined),
        (err) => this.finishRequest(request, this.errorResponse(request, err)),
      )
    } else if (result !== undefined && result !== null && typeof (result as unknown as PromiseLike<unknown>).then === 'function') {
      // Another thenable: it may throw, or call back more than once; the request settles once.
      let settled = false
      const settle = (response: RemotingCommand | undefined) => {
        if (settled) return
        settled = true
        this.finishRequest(request, response)
      }
      try {
        ;(result as unknown as PromiseLike<RemotingCommand | void>).then(
          (response) => settle(response ?? undefined),
          (err) => settle(this.errorResponse(request, err)),
        )
      } catch (err) {
        settle(this.errorResponse(request, err))
      }
    } else {
      this.finishRequest(request, (result as RemotingCommand | void) ?? undefined)
    }
  }

  private errorResponse(request: RemotingCommand, err: unknown): RemotingCommand {
    const message = err instanceof Error ? err.message : String(err)
    this.owner.options.logger.debug?.('processor failed', { remote: this.remoteAddress, code: request.code, error: message })
    return RemotingCommand.createResponse(ResponseCode.SYSTEM_ERROR, message)
  }

  private finishRequest(request: RemotingCommand, response: RemotingCommand | undefined): void {
    let failed = false
    let failure: unknown
    if (response !== undefined && !request.isOneway) {
      if (!(response instanceof RemotingCommand)) {
        response = RemotingCommand.createResponse(ResponseCode.SYSTEM_ERROR, 'processor returned something other than a RemotingCommand')
      }
      // No promise unless the transport makes the response wait: this runs for every request.
      let written: void | Promise<void> = undefined
      try {
        written = this.writeResponse(request, response)
      } catch (err) {
        failed = true
        failure = err
      }
      if (written) {
        // An answer waiting for room still counts against the in-flight limit, so a peer that does
        // not read gets SYSTEM_BUSY instead of parking answers without bound.
        written.then(
          () => this.releaseRequest(false),
          (err) => {
            this.releaseRequest(false)
            // Closing drops parked answers on purpose; the transport logs that once.
            if (this.closeReason === undefined) this.owner.connectionError(this, err as Error)
          },
        )
        return
      }
    }
    this.releaseRequest(request.isOneway)
    if (failed) this.owner.connectionError(this, failure as Error)
  }

  private releaseRequest(oneway: boolean): void {
    if (oneway) this.inFlightOneway--
    else this.inFlightRequests--
    if (this.inFlight === 0 && this.drainedWaiters.length > 0) {
      const waiters = this.drainedWaiters
      this.drainedWaiters = []
      for (const w of waiters) w()
    }
  }

  private failPending(opaque: number, err: unknown): void {
    const p = this.pending.get(opaque)
    if (!p) return
    this.pending.delete(opaque)
    if (this.pending.size === 0) this.timeoutTimer?.unref()
    p.reject(err instanceof TransportError ? err : new TransportError('SEND_FAILED', `send to ${this.remoteAddress} failed: ${(err as Error)?.message}`, { cause: err }))
  }

  private closedError(code: TransportErrorCode): TransportError {
    return new TransportError(code, `connection to ${this.remoteAddress} closed: ${this.closeReason}`, { details: { address: this.remoteAddress } })
  }

  private armTimeout(deadline: number): void {
    const timer = this.timeoutTimer
    if (timer !== undefined && deadline >= this.timeoutAt) {
      if (this.pending.size === 1 && this.timeoutTimerHoldsProcess) timer.ref()
      return
    }
    if (timer !== undefined) clearTimeout(timer)
    this.timeoutAt = deadline
    this.timeoutTimer = setTimeout(this.sweepBound, Math.max(0, Math.ceil(deadline - performance.now())))
    if (!this.timeoutTimerHoldsProcess) this.timeoutTimer.unref()
  }

  /** Rejects every request past its deadline, then re-arms for the earliest one left. */
  private sweepTimeouts(): void {
    this.timeoutTimer = undefined
    this.timeoutAt = Infinity
    if (this.closeReason !== undefined) return
    const now = performance.now()
    let next = Infinity
    let expired: [number, PendingRequest][] | undefined
    for (const entry of this.pending) {
      const deadline = entry[1].deadline
      if (deadline <= now) (expired ??= []).push(entry)
      else if (deadline < next) next = deadline
    }
    if (expired !== undefined) {
      for (const [opaque, p] of expired) {
        this.pending.delete(opaque)
        // Never sent: the frame goes too, so a peer that does not read does not collect them.
        if (p.write !== undefined) this.dropWaitingFrame(p.write)
      }
      for (const [opaque, p] of expired) {
        const timeoutMs = p.timeoutMs
        p.reject(new TransportError('TIMEOUT', `no response from ${this.remoteAddress} within ${timeoutMs} ms (code ${p.code}, opaque ${opaque})`, { details: { address: this.remoteAddress, opaque, timeoutMs } }))
      }
    }
    // A rejection handler may have sent new requests and armed the timer already.
    if (next !== Infinity && this.closeReason === undefined) this.armTimeout(next)
  }

  /**
   * Looks for idleness IDLE_CHECKS times per idleMs. Traffic seen at a look is taken to have
   * happened then, which is at most one period late: quiet time is never overestimated, and an
   * idle connection is reported between idleMs and idleMs + idleMs / IDLE_CHECKS after its last
   * traffic. This keeps the clock off the per-frame path.
   */
  private armIdleTimer(): void {
    const idleMs = this.owner.options.idleMs
    if (idleMs <= 0) return
    this.idleTimer = setTimeout(() => this.checkIdle(), Math.max(1, Math.ceil(idleMs / IDLE_CHECKS)))
    this.idleTimer.unref()
  }

  private checkIdle(): void {
    if (this.closeReason !== undefined) return
    const now = Date.now()
    if (this.active) {
      this.active = false
      this.lastActivityMs = now
    }
    // Outstanding work in either direction means the connection is busy, not idle.
    if (now - this.lastActivityMs >= this.owner.options.idleMs && this.pending.size === 0 && this.inFlight === 0) {
      this.owner.connectionIdle(this)
      return
    }
    this.idleTimer!.refresh()
  }
}

/**
 * Why a processor's response cannot be sent as it is, or undefined. A non-string remark or a
 * nested extFields value would encode as a header the peer cannot decode, so it would close the
 * whole connection; the request is answered SYSTEM_ERROR instead.
 */
function malformedResponse(response: RemotingCommand): string | undefined {
  if (!Number.isInteger(response.code)) return `code is ${String(response.code)}`
  const remark = response.remark
  if (remark !== null && typeof remark !== 'string') return `remark is a ${typeof remark}, not a string`
  // A body in parts was checked when the command was made; reading `body` would join it.
  if (response.bodyParts === undefined && !Buffer.isBuffer(response.body)) return `body is a ${typeof response.body}, not a Buffer`
  const ext = response.extFields
  if (ext === null || typeof ext !== 'object') return `extFields is ${ext === null ? 'null' : `a ${typeof ext}`}`
  for (const key in ext) {
    if (typeof ext[key] !== 'string') return `extFields.${key} is a ${typeof ext[key]}, not a string`
  }
  return undefined
}
