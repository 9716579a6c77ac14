/**
 * The master side of the HA stream (RocketMQ's DefaultHAService and HAConnection): it listens on
 * the HA port; each replica connection reads the replica's reported offsets (the first says
 * where to start: 0, an empty replica, starts at this log's first byte; one this log does not hold
 * is refused; each later one acknowledges what the replica holds) and writes the CommitLog
 * from there, in frames of a 12-byte header and up to 32 KiB of raw CommitLog bytes. The bytes
 * are views of the store's mapping, handed to the socket without a copy; up to eight frames go
 * out in one corked write. When there is nothing new the link waits for the store's committed-offset
 * event, and sends an empty frame as a heartbeat every 5 s.
 *
 * Sync replication (SYNC_MASTER): waitForReplicas(end) resolves once every in-sync replica has
 * acknowledged `end`. A link is in sync while it has caught up recently (catch-up.ts). A report
 * past what the link was sent is a protocol violation: the link is dropped, the report never counts.
 */
import * as net from 'node:net'
import type { MessageStore } from '@mqts/store'
import { CatchUp } from './catch-up.js'
import { HAError } from './errors.js'
import { linkStart } from './start-check.js'
import { HOUSEKEEPING_MS, MAX_FRAME_BODY_BYTES, MAX_GAP_NOT_IN_SYNC_BYTES, MAX_TIME_NOT_CAUGHT_UP_MS, REPORT_BYTES, REPORT_INTERVAL_MS, TRANSFER_BATCH_BYTES, encodeHeader, readOffset } from './protocol.js'

export interface HALogger {
  warn(message: string, fields?: Record<string, unknown>): void
  info?(message: string, fields?: Record<string, unknown>): void
}

export interface HAMasterOptions {
  store: MessageStore
  /** Listen address; default 127.0.0.1. */
  host?: string
  /** Listen port; 0 picks a free one (see address()). */
  port?: number
  /** A link silent this long is dropped (20 s). */
  housekeepingMs?: number
  /** An idle link gets an empty frame this often (5 s). */
  heartbeatMs?: number
  /** A replica this far behind or further is not in sync (256 MiB). */
  maxGapNotInSync?: number
  /** An in-sync replica lacking what this master had this long ago leaves the in-sync set (15 s, RocketMQ's haMaxTimeSlaveNotCatchup). */
  maxTimeNotCaughtUpMs?: number
  /** Bytes per frame (32 KiB). */
  transferBatchBytes?: number
  logger?: HALogger
}

export type SyncResult = 'OK' | 'FLUSH_SLAVE_TIMEOUT' | 'SLAVE_NOT_AVAILABLE'

export interface ReplicaInfo {
  remoteAddress: string
  /** What the replica last said it holds; -1 before its first report. */
  ackOffset: number
  /** Where the next frame starts. */
  nextOffset: number
  inSync: boolean
}

interface Waiter {
  end: number
  resolve: (r: SyncResult) => void
  timer: NodeJS.Timeout
}

const silent: HALogger = { warn: () => {} }
/** Accept errors on the HA port (EMFILE: out of descriptors) are logged at most this often. */
const ACCEPT_ERROR_LOG_MS = 10_000
/**
 * Frames corked into one socket write when a replica is behind (each body still at most
 * transferBatchBytes, RocketMQ's per-transfer size): one writev of 256 KiB instead of eight.
 */
const FRAMES_PER_WRITE = 8

class ReplicaLink {
  ackOffset = -1
  nextOffset = -1
  #lastRead = Date.now()
  #lastWrite = 0
  #buffered = Buffer.alloc(0)
  #sending = false
  /** The socket's buffer is full: nothing more is written until it drains (one listener waits). */
  #waitingDrain = false
  #closed = false
  readonly catchUp = new CatchUp()
  /** "host:port" of the peer, read at accept (a destroyed socket no longer has it). */
  readonly remoteAddress: string

  constructor(
    readonly master: HAMaster,
    readonly socket: net.Socket,
  ) {
    this.remoteAddress = `${socket.remoteAddress}:${socket.remotePort}`
    socket.setNoDelay(true)
    socket.on('data', (d) => this.#onData(d))
    socket.on('error', () => this.close('socket error'))
    socket.on('close', () => this.close('closed by the replica'))
  }

  get closed(): boolean {
    return this.#closed
  }

  #onData(d: Buffer): void {
    this.#lastRead = Date.now()
    const all = this.#buffered.length === 0 ? d : Buffer.concat([this.#buffered, d])
    const whole = all.length - (all.length % REPORT_BYTES)
    this.#buffered = whole === all.length ? Buffer.alloc(0) : Buffer.from(all.subarray(whole))
    if (whole === 0) return
    // Only the newest report counts (RocketMQ reads the last whole 8 bytes).
    const offset = readOffset(all, whole - REPORT_BYTES)
    if (offset === undefined) {
      this.close('a report that is not an offset')
      return
    }
    if (this.nextOffset < 0) {
      if (!this.#begin(offset)) return
    } else if (offset > this.nextOffset) {
      // It says it holds bytes this link never sent: whatever it is, its reports cannot be trusted.
      this.master.logger.warn('replica link dropped: it acknowledged bytes it was not sent', { replica: this.remoteAddress, acknowledged: offset, sent: this.nextOffset })
      this.close(`acknowledged ${offset} past the ${this.nextOffset} sent`)
      return
    }
    this.ackOffset = offset
    this.catchUp.acknowledged(offset)
    this.master.updateInSync(this, Date.now())
    this.master.acknowledged()
    this.pump()
  }

  /** The first report: where the stream starts, or the link is refused (false). */
  #begin(offset: number): boolean {
    const store = this.master.store
    const r = linkStart(store, offset)
    if ('refused' in r) {
      this.master.logger.warn(`replica link refused: ${r.refused}`, { replica: this.remoteAddress, offset, min: store.commitLogMinOffset, max: store.commitLogMaxOffset })
      this.close('a start this log does not hold')
      return false
    }
    this.nextOffset = r.start
    // What the master holds now is what the replica must acknowledge to be caught up.
    this.catchUp.sent(store.commitLogMaxOffset, Date.now())
    return true
  }

  /**
   * Sends what is committed past nextOffset, as long as the socket takes it: up to
   * FRAMES_PER_WRITE frames (each one header and a view of at most transferBatchBytes) corked
   * into one writev, so a replica that is behind gets large writes.
   */
  pump(): void {
    if (this.#sending || this.#closed || this.nextOffset < 0 || this.#waitingDrain) return
    this.#sending = true
    try {
      let more = true
      while (more && !this.#closed) {
        const frames = this.#writeFrames()
        if (frames.sent === 0) break
        more = frames.more
        this.#lastWrite = Date.now()
      }
      if (!more) {
        // Commits and reports wake the link meanwhile; they wait for this drain too, so a
        // replica that stops reading holds one socket buffer of this master's memory, not more.
        this.#waitingDrain = true
        this.socket.once('drain', () => {
          this.#waitingDrain = false
          this.pump()
        })
      }
    } catch (err) {
      this.master.logger.warn('reading the CommitLog for a replica failed: link dropped', { replica: this.remoteAddress, error: (err as Error).message })
      this.close('read failed')
    } finally {
      this.#sending = false
    }
  }

  /** Writes up to FRAMES_PER_WRITE frames in one corked write: how many, and whether the socket takes more. */
  #writeFrames(): { sent: number; more: boolean } {
    const store = this.master.store
    let sent = 0
    let more = true
    this.socket.cork()
    try {
      while (sent < FRAMES_PER_WRITE && more) {
        if (this.nextOffset >= store.commitLogMaxOffset) break
        const view = store.readCommitLog(this.nextOffset, this.master.transferBatchBytes, { unconfirmed: true })
        if (view.length === 0) break
        this.socket.write(encodeHeader(this.nextOffset, view.length))
        more = this.socket.write(view)
        this.nextOffset += view.length
        sent++
      }
      if (sent > 0) this.catchUp.sent(store.commitLogMaxOffset, Date.now())
    } finally {
      this.socket.uncork()
    }
    return { sent, more }
  }

  /** Heartbeat when idle; drop when silent. */
  tick(now: number): void {
    if (this.#closed) return
    if (now - this.#lastRead > this.master.housekeepingMs) {
      this.close('no report within the housekeeping interval')
      return
    }
    if (this.nextOffset >= 0 && now - this.#lastWrite >= this.master.heartbeatMs && this.socket.writableLength === 0) {
      this.socket.write(encodeHeader(this.nextOffset, 0))
      this.#lastWrite = now
    }
  }

  close(reason: string): void {
    if (this.#closed) return
    this.#closed = true
    this.socket.destroy()
    this.master.linkClosed(this, reason)
  }
}

export class HAMaster {
  readonly store: MessageStore
  readonly housekeepingMs: number
  readonly heartbeatMs: number
  readonly maxGapNotInSync: number
  readonly maxTimeNotCaughtUpMs: number
  readonly transferBatchBytes: number
  readonly logger: HALogger
  readonly #server: net.Server
  readonly #links = new Set<ReplicaLink>()
  #waiters: Waiter[] = []
  #timer: NodeJS.Timeout | undefined
  #offCommitted: (() => void) | undefined
  #wakeScheduled = false
  #stopped = false
  #lastCommitted = 0
  #lastAcceptErrorLog = 0
  #acceptErrorsSinceLog = 0

  private constructor(options: HAMasterOptions) {
    this.store = options.store
    this.housekeepingMs = options.housekeepingMs ?? HOUSEKEEPING_MS
    this.heartbeatMs = options.heartbeatMs ?? REPORT_INTERVAL_MS
    this.maxGapNotInSync = options.maxGapNotInSync ?? MAX_GAP_NOT_IN_SYNC_BYTES
    this.maxTimeNotCaughtUpMs = options.maxTimeNotCaughtUpMs ?? MAX_TIME_NOT_CAUGHT_UP_MS
    this.transferBatchBytes = options.transferBatchBytes ?? TRANSFER_BATCH_BYTES
    this.logger = options.logger ?? silent
    this.#server = net.createServer((socket) => {
      if (this.#stopped) {
        socket.destroy()
        return
      }
      this.#links.add(new ReplicaLink(this, socket))
    })
  }

  /** Starts listening for replicas. */
  static async start(options: HAMasterOptions): Promise<HAMaster> {
    const port = options.port ?? 0
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new HAError('INVALID_ARGUMENT', `port must be 0-65535, got ${JSON.stringify(options.port)}`)
    const positive = (name: keyof HAMasterOptions, max = Number.MAX_SAFE_INTEGER): void => {
      const v = options[name]
      if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > max)) throw new HAError('INVALID_ARGUMENT', `${name} must be an integer from 1 to ${max}, got ${JSON.stringify(v)}`)
    }
    positive('housekeepingMs')
    positive('heartbeatMs')
    positive('maxGapNotInSync')
    positive('maxTimeNotCaughtUpMs')
    positive('transferBatchBytes', MAX_FRAME_BODY_BYTES)
    if (options.store?.role !== 'master') throw new HAError('INVALID_ARGUMENT', `the HA master serves a store in the master role, got ${JSON.stringify(options.store?.role)}`)
    const m = new HAMaster(options)
    await new Promise<void>((resolve, reject) => {
      m.#server.once('error', (err) => reject(new HAError('INVALID_ARGUMENT', `cannot listen on ${options.host ?? '127.0.0.1'}:${port}: ${err.message}`, { cause: err })))
      m.#server.listen(port, options.host ?? '127.0.0.1', () => {
        // From now on an 'error' is an accept that failed (the listen handler above would take
        // the first silently, and a second with no handler would end the process).
        m.#server.removeAllListeners('error')
        m.#server.on('error', (err) => m.#acceptFailed(err))
        resolve()
      })
    })
    // New bytes wake every link; coalesced, so a burst of puts costs one wake.
    m.#lastCommitted = m.store.commitLogMaxOffset
    m.#offCommitted = m.store.onCommitted((offset) => {
      // The log went back (a truncate): what replicas acknowledged past the cut is not this log.
      if (offset < m.#lastCommitted) m.#logCut(offset)
      m.#lastCommitted = offset
      if (m.#wakeScheduled) return
      m.#wakeScheduled = true
      setImmediate(() => {
        m.#wakeScheduled = false
        for (const l of m.#links) l.pump()
      })
    })
    m.#timer = setInterval(() => {
      const now = Date.now()
      for (const l of m.#links) l.tick(now)
      // A lagging replica leaves the in-sync set, which may answer waiters the others have acknowledged.
      let changed = false
      for (const l of m.#links) changed = m.updateInSync(l, now) || changed
      if (changed) m.acknowledged()
    }, Math.min(1000, m.heartbeatMs, m.maxTimeNotCaughtUpMs))
    m.#timer.unref()
    return m
  }

  /** "host:port" replicas connect to. */
  address(): string {
    const a = this.#server.address() as net.AddressInfo
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port
  }

  #inSync(l: ReplicaLink): boolean {
    return !l.closed && l.catchUp.inSync
  }

  /** A link joins or leaves the in-sync set (logged); true when it did. */
  updateInSync(l: ReplicaLink, now: number): boolean {
    if (l.ackOffset < 0) return false
    const change = l.catchUp.update(now, this.store.commitLogMaxOffset - l.ackOffset, this.maxTimeNotCaughtUpMs, this.maxGapNotInSync)
    if (change === undefined) return false
    const fields = { replica: l.remoteAddress, acknowledged: l.ackOffset, max: this.store.commitLogMaxOffset }
    if (change.joined) this.logger.info?.('replica joined the in-sync set', fields)
    else this.logger.warn('replica left the in-sync set', { ...fields, reason: change.why })
    return true
  }

  /** The HA port could not take a connection (EMFILE, ENFILE): logged, at most every ACCEPT_ERROR_LOG_MS. */
  #acceptFailed(err: Error): void {
    this.#acceptErrorsSinceLog++
    const now = Date.now()
    if (now - this.#lastAcceptErrorLog < ACCEPT_ERROR_LOG_MS) return
    this.logger.warn('the HA port failed to accept a connection', { error: err.message, code: (err as NodeJS.ErrnoException).code, failures: this.#acceptErrorsSinceLog, links: this.#links.size })
    this.#lastAcceptErrorLog = now
    this.#acceptErrorsSinceLog = 0
  }

  replicas(): ReplicaInfo[] {
    const now = Date.now()
    for (const l of this.#links) this.updateInSync(l, now)
    return [...this.#links].map((l) => ({ remoteAddress: l.remoteAddress, ackOffset: l.ackOffset, nextOffset: l.nextOffset, inSync: this.#inSync(l) }))
  }

  /**
   * Resolves 'OK' once every in-sync replica has acknowledged CommitLog offset `end` (RocketMQ's
   * allAckInSyncStateSet), 'SLAVE_NOT_AVAILABLE' at once when no replica is in sync, or
   * 'FLUSH_SLAVE_TIMEOUT' after `timeoutMs`. Never 'OK' for bytes no in-sync replica holds.
   */
  waitForReplicas(end: number, timeoutMs: number): Promise<SyncResult> {
    if (typeof end !== 'number' || !Number.isSafeInteger(end) || end < 0) return Promise.reject(new HAError('INVALID_ARGUMENT', `end must be a CommitLog offset (a non-negative integer), got ${JSON.stringify(end)}`))
    if (typeof timeoutMs !== 'number' || !Number.isSafeInteger(timeoutMs) || timeoutMs < 1) return Promise.reject(new HAError('INVALID_ARGUMENT', `timeoutMs must be a positive integer, got ${JSON.stringify(timeoutMs)}`))
    if (this.#stopped) return Promise.reject(new HAError('NOT_STARTED', 'the HA master is stopped'))
    const now = this.#check(end)
    if (now !== undefined) return Promise.resolve(now)
    return new Promise((resolve) => {
      const w: Waiter = {
        end,
        resolve,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((x) => x !== w)
          resolve('FLUSH_SLAVE_TIMEOUT')
        }, timeoutMs),
      }
      this.#waiters.push(w)
    })
  }

  #check(end: number): SyncResult | undefined {
    const now = Date.now()
    for (const l of this.#links) this.updateInSync(l, now)
    const inSync = [...this.#links].filter((l) => this.#inSync(l))
    if (inSync.length === 0) return 'SLAVE_NOT_AVAILABLE'
    return inSync.every((l) => l.ackOffset >= end) ? 'OK' : undefined
  }

  /** A replica reported: waiters whose end every in-sync replica holds are answered. */
  acknowledged(): void {
    if (this.#waiters.length === 0) return
    const left: Waiter[] = []
    for (const w of this.#waiters) {
      const r = this.#check(w.end)
      if (r === 'OK') {
        clearTimeout(w.timer)
        w.resolve('OK')
      } else left.push(w)
    }
    this.#waiters = left
  }

  /**
   * The store's log was cut back to `end`: every link is dropped, so each replica reports its end
   * again; one past the cut holds bytes this log no longer has and is refused (never in sync)
   * until it is cut back too.
   */
  #logCut(end: number): void {
    this.logger.warn('the CommitLog was cut back: replica links dropped', { end })
    for (const l of [...this.#links]) l.close(`the master's log was cut back to ${end}`)
  }

  linkClosed(l: ReplicaLink, reason: string): void {
    this.#links.delete(l)
    if (!this.#stopped) this.logger.warn('replica link closed', { replica: l.remoteAddress, reason })
    // A replica that left may have been the last one holding back a waiter.
    this.acknowledged()
  }

  async stop(): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    if (this.#timer) clearInterval(this.#timer)
    this.#offCommitted?.()
    for (const l of [...this.#links]) l.close('master stopping')
    for (const w of this.#waiters) {
      clearTimeout(w.timer)
      w.resolve('FLUSH_SLAVE_TIMEOUT')
    }
    this.#waiters = []
    await new Promise<void>((r) => this.#server.close(() => r()))
  }
}
