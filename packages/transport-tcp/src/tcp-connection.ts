/**
 * One TCP connection: incremental frame decoding on the read side; on the write side, frames are
 * encoded straight into a write slab shared by every connection, frames queued within one tick
 * (or, a server's answers, over reads that filled their buffer: see scheduleFlush) leave in a
 * single write (one contiguous run of the slab, or a writev when large bodies or other
 * connections' frames split it), and senders wait once
 * `maxBufferedWriteBytes` are buffered. Reading pauses while the peer leaves too many answers
 * unread (see RemotingConnection.answerMustWait).
 */
import type { Socket } from 'node:net'
import { READ_ARENA_MIN_FRAME_BYTES, readIntoArena } from './read-arena.js'
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

/**
 * How long a connection's answers may wait for its next reads: a connection whose reads come one
 * after another (a peer pipelining requests faster than they are served) writes its queued
 * answers at its next read once they have waited this long.
 */
export const MAX_FLUSH_DELAY_MS = 0.25

/** The buffer Node reads a socket into (libuv's suggested size): a read this long may have left more. */
export const NODE_READ_BYTES = 64 * 1024

/**
 * Server connections whose answers wait for more of their peer's reads (see scheduleFlush): each
 * is written when another connection's read comes, when its own next read does not fill its
 * buffer or finds them older than MAX_FLUSH_DELAY_MS, or at the end of the turn (setImmediate).
 */
let dirty: TcpConnection[] = []
/** The end-of-turn write is scheduled. */
let turnEndPending = false

function onTurnEnd(): void {
  turnEndPending = false
  const list = dirty
  dirty = []
  for (let i = 0; i < list.length; i++) list[i]!.flushQueued()
}

function waitForMoreReads(c: TcpConnection): void {
  dirty.push(c)
  if (turnEndPending) return
  turnEndPending = true
  setImmediate(onTurnEnd)
}

/**
 * Before `reader`'s read is processed: every other connection's waiting answers leave (nothing
 * ready waits for another connection's processors), and the reader's own once they are old enough.
 */
function writeBeforeRead(reader: TcpConnection): void {
  const list = dirty
  dirty = []
  const now = performance.now()
  for (let i = 0; i < list.length; i++) {
    const c = list[i]!
    if (c === reader && now - c.queuedSince < MAX_FLUSH_DELAY_MS) dirty.push(c)
    else c.flushQueued()
  }
}

let slab = Buffer.allocUnsafeSlow(0)
let slabUsed = 0

/** Room for `bytes` at slabUsed, starting a new slab when the current one is short. */
function reserveSlab(bytes: number): void {
  if (slab.length - slabUsed >= bytes) return
  slab = Buffer.allocUnsafeSlow(Math.max(WRITE_SLAB_BYTES, bytes))
  slabUsed = 0
}

/** A frame held back until the socket has room; `promise` is what its sender waits on. */
interface SpaceWaiter {
  parts: Buffer[]
  bytes: number
  promise: Promise<void>
  resolve: () => void
  reject: (err: Error) => void
  /** Its request timed out before it could be written; skipped when room comes. */
  dropped: boolean
}

/** "host:port", an IPv6 host in brackets (parseAddress reads it back); a host given bracketed stays so. */
export function formatAddress(host: string | undefined, port: number | undefined): string {
  const h = host ?? 'unknown'
  return h.includes(':') && !h.startsWith('[') ? `[${h}]:${port}` : `${h}:${port}`
}

export class TcpConnection extends RemotingConnection {
  private readonly decoder: FrameDecoder
  private queue: Buffer[] = []
  private queuedBytes = 0
  private flushScheduled = false
  /** The last read filled its buffer: the peer has more waiting, read next in this turn. */
  private lastReadFull = false
  /** Queued frames wait in `dirty` for more reads (see scheduleFlush). */
  private waitsForReads = false
  /** When the queued frames waiting in `dirty` were queued (performance.now()). */
  queuedSince = 0
  private readonly flushBound = () => this.flushQueued()
  private spaceWaiters: SpaceWaiter[] = []
  /** Bytes of the frames in spaceWaiters, dropped ones left out. */
  private waitingBytes = 0
  private droppedWaiters = 0
  /** The waiter of each promise waitForSpace returned, for dropWaitingFrame. */
  private readonly waiterOf = new WeakMap<Promise<void>, SpaceWaiter>()
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
    /** A server's arenas (see read-arena.ts) this connection may take one of; none for a client's. */
    private arenas?: { left: number },
    /**
     * A server's connection: its frames queued while the loop reads wait as scheduleFlush says. A
     * client's leave after the tick: a client waiting for each answer before its next request
     * (a consumer's pulls) would wait for the rest of the turn every time (pull-all throughput
     * fell by a quarter).
     */
    private readonly answersWait = false,
  ) {
    super(owner, formatAddress(socket.localAddress, socket.localPort), formatAddress(socket.remoteAddress, socket.remotePort))
    this.decoder = new FrameDecoder(owner.options.maxFrameBytes)
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.onData(chunk, chunk.length >= NODE_READ_BYTES))
    socket.on('drain', () => {
      this.releaseWaiters()
      this.writeProgress()
    })
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
    const parts = encoder.separateParts
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
    if (parts !== undefined) {
      // Written as they are (writev), not joined: a pull answer's records are views of the store.
      this.closeRun()
      for (let i = 0; i < parts.length; i++) {
        this.queue.push(parts[i]!)
        this.queuedBytes += parts[i]!.length
      }
    }
    this.scheduleFlush()
  }

  protected closeTransport(): void {
    this.flush()
    const waiters = this.spaceWaiters
    this.spaceWaiters = []
    this.waitingBytes = 0
    this.droppedWaiters = 0
    const unsent = waiters.filter((w) => !w.dropped)
    if (unsent.length > 0) this.owner.options.logger.debug?.('frames never written: connection closed', { remote: this.remoteAddress, frames: unsent.length })
    for (const w of unsent) w.reject(new TransportError('SEND_FAILED', `connection to ${this.remoteAddress} closed before the frame was written`))
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

  override unsentBytes(): number {
    return this.queuedBytes + this.socket.writableLength + this.waitingBytes
  }

  protected override pauseReading(): void {
    this.socket.pause()
  }

  protected override resumeReading(): void {
    this.socket.resume()
  }

  protected override dropWaitingFrame(write: Promise<void>): void {
    // Marked rather than spliced out: thousands of requests may time out at once.
    const w = this.waiterOf.get(write)
    if (w === undefined || w.dropped || this.closed) return
    w.dropped = true
    this.waitingBytes -= w.bytes
    if (++this.droppedWaiters === this.spaceWaiters.length) {
      this.spaceWaiters = []
      this.droppedWaiters = 0
    }
    w.reject(new TransportError('SEND_FAILED', `frame to ${this.remoteAddress} dropped before it was written`))
  }

  /** Frames whose senders wait for room. */
  get waitingFrames(): number {
    return this.spaceWaiters.length - this.droppedWaiters
  }

  private mustWait(): boolean {
    return this.spaceWaiters.length > 0 || this.bufferedBytes() >= this.maxBufferedWriteBytes
  }

  private waitForSpace(parts: Buffer[]): Promise<void> {
    let bytes = 0
    for (const part of parts) bytes += part.length
    const waiter = { parts, bytes, dropped: false } as SpaceWaiter
    waiter.promise = new Promise<void>((resolve, reject) => {
      waiter.resolve = resolve
      waiter.reject = reject
    })
    this.spaceWaiters.push(waiter)
    this.waitingBytes += bytes
    this.waiterOf.set(waiter.promise, waiter)
    return waiter.promise
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

  /**
   * Frames leave after the current tick (process.nextTick), as one write per connection, except a
   * server's answers to a read that filled its buffer (the peer has more waiting, which the loop
   * reads next in this turn), whether their processors settle at once or some ticks and
   * microtasks later: they wait for the connection's next read that does not fill its buffer,
   * another connection's read, or the end of the turn (writeBeforeRead, onTurnEnd), so a
   * pipelining producer whose requests arrive in several reads of one turn gets their answers in
   * one write. A write is a system call whose cost on loopback is mostly per call (the peer's
   * receive path runs in it and wakes the peer); writing per read wrote most of those answers
   * alone. A lone request's answer leaves after its tick, and nothing ready waits for another
   * connection's work.
   */
  private scheduleFlush(): void {
    if (this.flushScheduled) {
      // Waiting answers, and now the answer to a read that did not fill its buffer: all leave.
      if (this.waitsForReads && !this.lastReadFull) {
        this.waitsForReads = false
        process.nextTick(this.flushBound)
      }
      return
    }
    this.flushScheduled = true
    if (!this.answersWait || !this.lastReadFull) {
      process.nextTick(this.flushBound)
      return
    }
    this.waitsForReads = true
    this.queuedSince = performance.now()
    waitForMoreReads(this)
  }

  /** A large request was cut by a read: the following reads go into an arena, if one is left. */
  private readIntoArena(arenas: { left: number }): void {
    this.arenas = undefined
    if (arenas.left <= 0 || this.closed || this.socket.destroyed) return
    if (!readIntoArena(this.socket, (chunk, full) => this.onData(chunk, full))) return
    arenas.left--
    this.socket.once('close', () => arenas.left++)
  }

  /** For the writes of queued frames: writes what is queued unless a flush came first. */
  flushQueued(): void {
    if (this.flushScheduled) this.flush()
  }

  private onData(chunk: Buffer, full: boolean): void {
    this.touch()
    this.lastReadFull = full
    if (dirty.length > 0) writeBeforeRead(this)
    try {
      this.decoder.push(chunk, this.commandBound)
      if (this.arenas !== undefined && this.decoder.pendingFrameBytes >= READ_ARENA_MIN_FRAME_BYTES) this.readIntoArena(this.arenas)
    } catch (err) {
      const message = (err as Error).message
      this.owner.options.logger.warn(`closing connection from ${this.remoteAddress}: ${message}`, { code: (err as TransportError).code })
      this.shutdown(`bad frame: ${message}`, 'CONNECTION_LOST')
      this.socket.destroy()
    }
  }

  private flush(): void {
    this.flushScheduled = false
    this.waitsForReads = false
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
      this.writeProgress()
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
    this.writeProgress()
  }

  private releaseWaiters(): void {
    while (this.spaceWaiters.length > 0 && this.bufferedBytes() < this.maxBufferedWriteBytes && !this.closed) {
      const w = this.spaceWaiters.shift()!
      if (w.dropped) {
        this.droppedWaiters--
        continue
      }
      this.waitingBytes -= w.bytes
      this.enqueue(w.parts)
      w.resolve()
    }
  }
}
