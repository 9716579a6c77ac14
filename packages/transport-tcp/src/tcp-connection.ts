/**
 * One TCP connection: incremental frame decoding on the read side; on the write side, frames
 * queued within one tick leave in a single write (copied together when small, corked into one
 * writev when large), and senders wait once `maxBufferedWriteBytes` are buffered.
 */
import type { Socket } from 'node:net'
import { FrameDecoder, RemotingConnection, TransportError, type ConnectionOwner } from '@mqts/transport/internal'

/** Default bound on bytes queued for one socket (ours plus Node's) before senders wait. */
export const DEFAULT_MAX_BUFFERED_WRITE_BYTES = 1024 * 1024
/** Below this many queued bytes one copy into a single buffer is cheaper than writev. */
export const COALESCE_COPY_BYTES = 64 * 1024
/** How long a closing connection may take to flush before it is destroyed. */
export const CLOSE_FLUSH_MS = 2_000

export function formatAddress(host: string | undefined, port: number | undefined): string {
  const h = host ?? 'unknown'
  return h.includes(':') ? `[${h}]:${port}` : `${h}:${port}`
}

export class TcpConnection extends RemotingConnection {
  private readonly decoder: FrameDecoder
  private queue: Buffer[] = []
  private queuedBytes = 0
  private flushScheduled = false
  private spaceWaiters: { parts: Buffer[]; resolve: () => void; reject: (err: Error) => void }[] = []
  private readonly flushBound = () => this.flush()

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
    if (this.spaceWaiters.length > 0 || this.bufferedBytes() >= this.maxBufferedWriteBytes) {
      return new Promise<void>((resolve, reject) => this.spaceWaiters.push({ parts, resolve, reject }))
    }
    this.enqueue(parts)
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

  private enqueue(parts: Buffer[]): void {
    for (const part of parts) {
      this.queue.push(part)
      this.queuedBytes += part.length
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true
      process.nextTick(this.flushBound)
    }
  }

  private onData(chunk: Buffer): void {
    try {
      this.decoder.push(chunk, (cmd) => this.handleCommand(cmd))
    } catch (err) {
      const message = (err as Error).message
      this.owner.options.logger.warn(`closing connection from ${this.remoteAddress}: ${message}`, { code: (err as TransportError).code })
      this.shutdown(`bad frame: ${message}`, 'CONNECTION_LOST')
      this.socket.destroy()
    }
  }

  private flush(): void {
    this.flushScheduled = false
    const queue = this.queue
    if (queue.length === 0) return
    const bytes = this.queuedBytes
    this.queue = []
    this.queuedBytes = 0
    if (this.socket.destroyed) return
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
