/**
 * One TCP connection: incremental frame decoding on the read side; on the write side, frames are
 * encoded straight into a write slab shared by every connection, frames queued within one tick
 * (or while one read is processed) leave in a single write (one contiguous run of the slab, or a
 * writev when large bodies or other connections' frames split it), and senders wait once
 * `maxBufferedWriteBytes` are buffered.
 */
import type { Socket } from 'node:net'
import { FrameDecoder, RemotingConnection, TransportError, type ConnectionOwner, type FrameEncoder, type RemotingCommand } from '@mqts/transport/internal'

/** Default bound on bytes queued for one socket (ours plus Node's) before senders wait. */
export const DEFAULT_MAX_BUFFERED_WRITE_BYTES = 1024 * 1024
/** Below this many queued bytes one copy into a single buffer is cheaper than writev. */
export const COALESCE_COPY_BYTES = 64 * 1024
/** How long a closing connection may take to flush before it is destroyed. */
export const CLOSE_FLUSH_MS = 2_000
/**
 * Size of the write slab. Frames are encoded into it back to back and written as views of it, so
 * a small frame costs neither an allocation nor a copy into a joined buffer. A slab is only
 * appended to, never rewritten: bytes handed to the socket stay as they are until written, and
 * a used-up slab is freed once the writes viewing it are done. One slab serves every connection
 * of the process, so idle connections hold no write memory.
 */
export const WRITE_SLAB_BYTES = 64 * 1024

let slab = Buffer.allocUnsafeSlow(0)
let slabUsed = 0

/** Room for `bytes` at slabUsed, starting a new slab when the current one is short. */
function reserveSlab(bytes: number): void {
  if (slab.length - slabUsed >= bytes) return
  slab = Buffer.allocUnsafeSlow(Math.max(WRITE_SLAB_BYTES, bytes))
  slabUsed = 0
}

export function formatAddress(host: string | undefined, port: number | undefined): string {
  const h = host ?? 'unknown'
  return h.includes(':') ? `[${h}]:${port}` : `${h}:${port}`
}

export class TcpConnection extends RemotingConnection {
  private readonly decoder: FrameDecoder
  private queue: Buffer[] = []
  private queuedBytes = 0
  private flushScheduled = false
  /** Inside onData: frames queued now (responses of synchronous processors) leave when it ends. */
  private reading = false
  private spaceWaiters: { parts: Buffer[]; resolve: () => void; reject: (err: Error) => void }[] = []
  private readonly flushBound = () => this.flush()
  private readonly commandBound = (cmd: RemotingCommand) => this.handleCommand(cmd)
  /** The socket holds the process open while connected, and pending requests end with it. */
  protected override readonly timeoutTimerHoldsProcess = false
  /**
   * This connection's frames queued since the last flush that sit back to back in `runSlab`,
   * from runStart to runEnd; they join `queue` as one view when something else must follow them.
   */
  private runSlab: Buffer | undefined = undefined
  private runStart = 0
  private runEnd = 0

  constructor(
    owner: ConnectionOwner,
    private readonly socket: Socket,
    private readonly maxBufferedWriteBytes: number,
  ) {
    super(owner, formatAddress(socket.localAddress, socket.localPort), formatAddress(socket.remoteAddress, socket.remotePort))
    this.decoder = new FrameDecoder(owner.options.maxFrameBytes)
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('drain', () => this.releaseWaiters())
    socket.on('error', (err) => {
      this.owner.options.logger.debug?.('socket error', { remote: this.remoteAddress, error: err.message })
      this.shutdown(`socket error: ${err.message}`, 'CONNECTION_LOST')
    })
    socket.on('close', () => this.shutdown('peer closed', 'CONNECTION_LOST'))
  }

  protected writeFrame(parts: Buffer[]): void | Promise<void> {
    if (this.closed || this.socket.destroyed) throw new TransportError('SEND_FAILED', `connection to ${this.remoteAddress} is closed`)
    // Over the bound the frame stays with its sender until there is room; the socket's own buffer
    // never grows past one frame beyond the bound, and frames keep their order.
    if (this.mustWait()) return this.waitForSpace(parts)
    this.enqueue(parts)
  }

  protected override writePrepared(encoder: FrameEncoder): void | Promise<void> {
    if (this.closed || this.socket.destroyed) throw new TransportError('SEND_FAILED', `connection to ${this.remoteAddress} is closed`)
    if (this.mustWait()) return this.waitForSpace(encoder.toParts())
    const headBytes = encoder.headBytes
    const body = encoder.separateBody
    if (headBytes > WRITE_SLAB_BYTES) {
      // A huge header: its own buffer rather than a slab mostly wasted.
      this.enqueue(encoder.toParts())
      return
    }
    if (this.runSlab !== slab || this.runEnd !== slabUsed || slab.length - slabUsed < headBytes) {
      this.closeRun()
      reserveSlab(headBytes)
      this.runSlab = slab
      this.runStart = slabUsed
    }
    encoder.writeHead(slab, slabUsed)
    slabUsed += headBytes
    this.runEnd = slabUsed
    this.queuedBytes += headBytes
    if (body !== undefined) {
      this.closeRun()
      this.queue.push(body)
      this.queuedBytes += body.length
    }
    this.scheduleFlush()
  }

  protected closeTransport(): void {
    this.flush()
    const waiters = this.spaceWaiters
    this.spaceWaiters = []
    for (const w of waiters) w.reject(new TransportError('SEND_FAILED', `connection to ${this.remoteAddress} closed before the frame was written`))
    if (this.socket.destroyed) return
    this.socket.end()
    const timer = setTimeout(() => this.socket.destroy(), CLOSE_FLUSH_MS)
    timer.unref()
    this.socket.once('close', () => clearTimeout(timer))
  }

  /** Bytes written but not yet taken by the kernel, ours and Node's. */
  bufferedBytes(): number {
    return this.queuedBytes + this.socket.writableLength
  }

  /** Frames whose senders wait for room. */
  get waitingFrames(): number {
    return this.spaceWaiters.length
  }

  private mustWait(): boolean {
    return this.spaceWaiters.length > 0 || this.bufferedBytes() >= this.maxBufferedWriteBytes
  }

  private waitForSpace(parts: Buffer[]): Promise<void> {
    return new Promise<void>((resolve, reject) => this.spaceWaiters.push({ parts, resolve, reject }))
  }

  private enqueue(parts: Buffer[]): void {
    this.closeRun()
    for (const part of parts) {
      this.queue.push(part)
      this.queuedBytes += part.length
    }
    this.scheduleFlush()
  }

  /** Moves the open run of slab bytes into the queue, so what is queued next goes after it. */
  private closeRun(): void {
    if (this.runSlab === undefined) return
    if (this.runEnd > this.runStart) this.queue.push(this.runSlab.subarray(this.runStart, this.runEnd))
    this.runSlab = undefined
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    if (!this.reading) process.nextTick(this.flushBound)
  }

  private onData(chunk: Buffer): void {
    this.touch()
    this.reading = true
    try {
      this.decoder.push(chunk, this.commandBound)
    } catch (err) {
      const message = (err as Error).message
      this.owner.options.logger.warn(`closing connection from ${this.remoteAddress}: ${message}`, { code: (err as TransportError).code })
      this.shutdown(`bad frame: ${message}`, 'CONNECTION_LOST')
      this.socket.destroy()
    } finally {
      this.reading = false
    }
    // Everything the chunk's frames produced leaves in one write, without waiting for a tick.
    if (this.flushScheduled) this.flush()
  }

  private flush(): void {
    this.flushScheduled = false
    if (this.queue.length === 0) {
      // The usual case: nothing but one run of slab bytes, written as one view of them.
      const run = this.runSlab
      if (run === undefined) return
      this.runSlab = undefined
      this.queuedBytes = 0
      if (this.socket.destroyed) return
      this.touch()
      this.socket.write(run.subarray(this.runStart, this.runEnd))
      if (this.spaceWaiters.length > 0) this.releaseWaiters()
      return
    }
    this.closeRun()
    const queue = this.queue
    if (queue.length === 0) return
    const bytes = this.queuedBytes
    this.queue = []
    this.queuedBytes = 0
    if (this.socket.destroyed) return
    this.touch()
    if (queue.length === 1) {
      this.socket.write(queue[0]!)
    } else if (bytes <= COALESCE_COPY_BYTES) {
      this.socket.write(Buffer.concat(queue, bytes))
    } else {
      this.socket.cork()
      for (const b of queue) this.socket.write(b)
      this.socket.uncork()
    }
    if (this.spaceWaiters.length > 0) this.releaseWaiters()
  }

  private releaseWaiters(): void {
    while (this.spaceWaiters.length > 0 && this.bufferedBytes() < this.maxBufferedWriteBytes && !this.closed) {
      const w = this.spaceWaiters.shift()!
      this.enqueue(w.parts)
      w.resolve()
    }
  }
}
