/**
 * The replica side of the HA stream (RocketMQ's HAClient): it connects to its master's HA port,
 * reports where its log ends (the master starts there), then appends the frames' bytes with
 * the store's appendReplicated, in frame order. The bodies that arrive in one turn of the event
 * loop (up to 1 MiB) go to the store in one call, handed on without waiting for the previous
 * one to be durable, so a burst becomes one group of durable writes. Once a call is applied
 * (durable by the flush mode, dispatched) its end is reported when no later call is in flight,
 * else at least every MiB; and every 5 s regardless. A frame whose offset is not where the log
 * ends, garbage, a chunk the store refuses, or a master silent for 20 s drops the link; it
 * connects again after a second and resumes from its own end, once the groups of the old link
 * still in flight are applied (or refused). A link starts at the end of the whole records written
 * (a record boundary, which the master checks); the bytes the store holds of a cut record past it
 * come again and are skipped. An empty store reports 0 and starts wherever the master's log does
 * (its first files may be gone); a master that does not hold this log's end closes the link
 * before sending anything, which is logged. A master that cannot be reached is logged once per
 * outage.
 */
import * as net from 'node:net'
import type { MessageStore } from '@mqts/store'
import { HAError } from './errors.js'
import type { HALogger } from './master.js'
import { HEADER_BYTES, HOUSEKEEPING_MS, MAX_FRAME_BODY_BYTES, RECONNECT_DELAY_MS, REPORT_INTERVAL_MS, encodeReport, readOffset } from './protocol.js'

export interface HAReplicaOptions {
  /** A store opened with role 'replica'. */
  store: MessageStore
  /** The master's HA address, "host:port" (or a function: it may change while running). */
  masterAddress: string | (() => string | undefined)
  reportIntervalMs?: number
  housekeepingMs?: number
  reconnectDelayMs?: number
  /** Bytes received but not yet applied beyond which reading pauses (16 MiB). */
  maxInFlightBytes?: number
  logger?: HALogger
}

const silent: HALogger = { warn: () => {} }
const MAX_IN_FLIGHT_BYTES = 16 * 1024 * 1024
/**
 * Bytes of consecutive frames handed to the store in one appendReplicated (copied into a slab
 * as they arrive): a 32 KiB frame per call cost more in calls, promises and reports than that
 * copy; 1 MiB groups took the replica process about 8 % less CPU per GB than 256 KiB ones.
 */
const MAX_GROUP_BYTES = 1024 * 1024
/** The socket's reads: at most this much per read call. */
const READ_BUFFER_BYTES = 256 * 1024
/** While groups are in flight, the replica reports at least this often (and when none is left). */
const REPORT_EVERY_BYTES = 1024 * 1024

function splitAddress(addr: string): { host: string; port: number } | undefined {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(addr)
  if (!m) return undefined
  const port = Number(m[2])
  return port >= 1 && port <= 65535 ? { host: m[1]!, port } : undefined
}

export class HAReplica {
  readonly store: MessageStore
  readonly #options: Required<Omit<HAReplicaOptions, 'store' | 'masterAddress' | 'logger'>>
  readonly #address: () => string | undefined
  readonly #logger: HALogger
  #socket: net.Socket | undefined
  /** Where the socket reads into (see #onData). */
  readonly #readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES)
  /** A frame header as far as it arrived. */
  readonly #header = Buffer.alloc(HEADER_BYTES)
  #headerGot = 0
  /** Bytes of the current frame's body still to come. */
  #bodyLeft = 0
  /** Where the next body byte sits in the master's log. */
  #bodyAt = 0
  /** Bytes the store already holds (of a cut record) still to come at the link's start: skipped. */
  #skip = 0
  /** Where the next frame must start. */
  #expected = 0
  /** Body bytes received and not yet handed to the store, copied into a slab, from #groupOffset. */
  #slab: Buffer | undefined
  #groupBytes = 0
  /**
   * Slabs the store is done with, for the next groups: as many as can be in flight at once, so a
   * replica catching up allocates none after its first groups. A fresh slab costs page faults on
   * new memory, and dropped ones made V8 collect for their external memory: when fewer were kept
   * than were in flight, that took about a fifth of the replica process's CPU.
   */
  readonly #slabs: Buffer[] = []
  readonly #maxSpareSlabs: number
  /** Groups handed to the store and not applied yet. */
  #groupsInFlight = 0
  /** Told once no group is in flight any more (#start waits for that). */
  readonly #idleWaiters: Array<() => void> = []
  #groupOffset = 0
  /** Frames begun in the group. */
  #groupFrames = 0
  #flushScheduled = false
  /** The store was empty at connect: the first frame sets where the log starts. */
  #seeding = false
  #inFlightBytes = 0
  #lastRead = 0
  #lastReport = 0
  #reported = -1
  /** The end of the last group applied (or where the link started). */
  #applied = 0
  /** The link reported its start (#start): reports go from then on. */
  #started = false
  #generation = 0
  #timer: NodeJS.Timeout | undefined
  #reconnect: NodeJS.Timeout | undefined
  #stopped = false
  /** The master could not be reached and that was logged: not again until a link connects. */
  #unreachableLogged = false
  /** Links closed before any frame and that was logged: not again until a link gets a frame. */
  #refusedLogged = false
  /** Frames applied since start, for tests and status. */
  framesApplied = 0
  /** Links dropped since start, and why the last one was. */
  linksDropped = 0
  lastDropReason = ''

  private constructor(options: HAReplicaOptions) {
    this.store = options.store
    const a = options.masterAddress
    this.#address = typeof a === 'function' ? a : () => a
    this.#logger = options.logger ?? silent
    this.#options = {
      reportIntervalMs: options.reportIntervalMs ?? REPORT_INTERVAL_MS,
      housekeepingMs: options.housekeepingMs ?? HOUSEKEEPING_MS,
      reconnectDelayMs: options.reconnectDelayMs ?? RECONNECT_DELAY_MS,
      maxInFlightBytes: options.maxInFlightBytes ?? MAX_IN_FLIGHT_BYTES,
    }
    // Reading pauses once more than maxInFlightBytes are in flight: one more group, and the slab filling.
    this.#maxSpareSlabs = Math.ceil(this.#options.maxInFlightBytes / MAX_GROUP_BYTES) + 2
  }

  /** Starts following the master (connecting in the background, again after every drop). */
  static start(options: HAReplicaOptions): HAReplica {
    if (options.store?.role !== 'replica') throw new HAError('INVALID_ARGUMENT', `an HA replica follows with a store in the replica role, got ${JSON.stringify(options.store?.role)}`)
    if (typeof options.masterAddress === 'string' && !splitAddress(options.masterAddress)) {
      throw new HAError('INVALID_ARGUMENT', `masterAddress must be "host:port" (port 1-65535), got ${JSON.stringify(options.masterAddress)}`)
    }
    if (typeof options.masterAddress !== 'string' && typeof options.masterAddress !== 'function') throw new HAError('INVALID_ARGUMENT', `masterAddress must be "host:port" or a function giving one, got ${typeof options.masterAddress}`)
    const r = new HAReplica(options)
    r.#connect()
    r.#timer = setInterval(() => r.#tick(), Math.min(1000, r.#options.reportIntervalMs))
    r.#timer.unref()
    return r
  }

  get connected(): boolean {
    return this.#socket !== undefined && !this.#socket.destroyed && this.#socket.readyState === 'open'
  }

  #connect(): void {
    if (this.#stopped) return
    const addr = this.#address()
    const target = addr ? splitAddress(addr) : undefined
    if (!target) {
      if (addr) this.lastDropReason = `the master's address ${JSON.stringify(addr)} is not host:port`
      this.#scheduleReconnect()
      return
    }
    const generation = ++this.#generation
    // Whether the master sent anything on this link (one that closes it at once refused this log).
    let framed = false
    // Whether the connection was made at all, and why not (a master down, a wrong address).
    let connected = false
    let failure: NodeJS.ErrnoException | undefined
    // Reads land in one reused buffer (no allocation per read); #onData copies what it keeps.
    const socket = net.connect({
      host: target.host,
      port: target.port,
      noDelay: true,
      onread: {
        buffer: this.#readBuffer,
        callback: (n: number, buf: Uint8Array) => {
          if (!framed) this.#refusedLogged = false
          framed = true
          this.#onData(buf as Buffer, n, generation)
          return true
        },
      },
    })
    this.#socket = socket
    this.#headerGot = this.#bodyLeft = this.#groupBytes = this.#groupFrames = this.#skip = 0
    this.#slab = undefined
    socket.on('connect', () => {
      connected = true
      if (this.#unreachableLogged) this.#logger.warn('the master is reachable again', { master: addr })
      this.#unreachableLogged = false
      this.#lastRead = Date.now()
      this.#started = false
      void this.#start(socket, generation)
    })
    socket.on('error', (err) => {
      failure = err
    })
    socket.on('close', () => {
      if (this.#socket === socket) this.#socket = undefined
      if (!connected) {
        if (generation === this.#generation && !this.#stopped) this.#unreachable(addr!, failure)
      } else if (!framed && generation === this.#generation && !this.#stopped) {
        this.#refused(addr!)
      }
      this.#scheduleReconnect()
    })
  }

  /**
   * The master's HA port did not take the connection (down, restarting, or a wrong address):
   * nothing is wrong with this replica's log. Logged once until a link connects again.
   */
  #unreachable(addr: string, err: NodeJS.ErrnoException | undefined): void {
    const code = err?.code ?? 'no error code'
    this.lastDropReason = `cannot reach the master at ${addr} (${code})`
    if (this.#unreachableLogged) return
    this.#unreachableLogged = true
    this.#logger.warn('cannot reach the master; retrying every reconnect interval', { master: addr, code, error: err?.message, retryMs: this.#options.reconnectDelayMs })
  }

  /**
   * The peer took the connection and closed it before any frame: a master that does not hold this
   * log's end (its log says why), or not a master's HA port at all. Only the peer's log tells
   * which, so nothing here advises touching the store (it may be the only copy). Logged once until
   * a link gets a frame.
   */
  #refused(addr: string): void {
    this.linksDropped++
    this.lastDropReason = this.#seeding
      ? `${addr} closed the link before sending anything, though a master takes an empty replica: it is not a master's HA port`
      : `${addr} closed the link before sending anything: it is not a master's HA port, or that master does not hold this replica's end ${this.#expected} (its log says why)`
    if (this.#refusedLogged) return
    this.#refusedLogged = true
    this.#logger.warn('link to the master refused', { master: addr, reason: this.lastDropReason, retryMs: this.#options.reconnectDelayMs })
  }

  /**
   * Reports where this log ends, which is where the master starts: once the groups of an earlier
   * link are applied (or refused), since until then the store's end is short of them and the
   * master would send their bytes again, which the store would refuse.
   */
  async #start(socket: net.Socket, generation: number): Promise<void> {
    if (this.#groupsInFlight > 0) await new Promise<void>((r) => this.#idleWaiters.push(r))
    if (generation !== this.#generation || this.#socket !== socket) return
    // The end of the whole records written: a record boundary in the master's log, where its
    // stream starts. The bytes held of a cut record past it come first and are skipped (the
    // store wants the rest from its replicaEndOffset). An empty store reports 0 and takes the
    // first frame wherever the master's log starts (see #frameHeader).
    const store = this.store
    this.#seeding = store.commitLogMaxOffset === store.commitLogMinOffset && store.replicaEndOffset === store.commitLogMinOffset
    const start = Math.min(store.commitLogMaxOffset, store.replicaEndOffset)
    this.#skip = store.replicaEndOffset - start
    this.#expected = start
    this.#reported = -1
    this.#applied = start
    this.#started = true
    this.#report(this.#seeding ? 0 : start, true)
  }

  #scheduleReconnect(): void {
    if (this.#stopped || this.#reconnect) return
    this.#reconnect = setTimeout(() => {
      this.#reconnect = undefined
      if (!this.connected) this.#connect()
    }, this.#options.reconnectDelayMs)
    this.#reconnect.unref()
  }

  #drop(reason: string): void {
    this.linksDropped++
    this.lastDropReason = reason
    this.#logger.warn('link to the master dropped; resuming from this replica\'s end', { reason })
    this.#generation++
    this.#socket?.destroy()
  }

  /**
   * Parses frames as they arrive (`length` bytes of `d`, the reused read buffer), without joining
   * reads: a header cut by a read's end is gathered in #header, a body's bytes are copied into
   * the group's slab. Consecutive bodies make one group, handed to the store at the end of this
   * turn of the event loop (all the reads of one poll) or once it holds MAX_GROUP_BYTES.
   */
  #onData(d: Buffer, length: number, generation: number): void {
    if (generation !== this.#generation) return
    this.#lastRead = Date.now()
    let at = 0
    while (at < length) {
      if (this.#bodyLeft > 0) {
        let n = Math.min(this.#bodyLeft, length - at)
        this.#bodyLeft -= n
        if (this.#skip > 0) {
          const k = Math.min(this.#skip, n)
          this.#skip -= k
          this.#bodyAt += k
          at += k
          n -= k
          if (n === 0) continue
        }
        if (this.#groupBytes === 0) this.#groupOffset = this.#bodyAt
        this.#addToGroup(d.subarray(at, at + n), generation)
        this.#bodyAt += n
        at += n
        continue
      }
      const n = Math.min(HEADER_BYTES - this.#headerGot, length - at)
      d.copy(this.#header, this.#headerGot, at, at + n)
      this.#headerGot += n
      at += n
      if (this.#headerGot < HEADER_BYTES) break
      this.#headerGot = 0
      if (!this.#frameHeader()) return
    }
    this.#scheduleFlush(generation)
  }

  /** Checks the header in #header and starts its body; false when it drops the link. */
  #frameHeader(): boolean {
    const h = this.#header
    const offset = readOffset(h, 0)
    const size = h.readInt32BE(8)
    if (offset === undefined || size < 0 || size > MAX_FRAME_BODY_BYTES) {
      this.#drop(`a frame header that is not one (offset ${h.readBigInt64BE(0)}, size ${size})`)
      return false
    }
    if (this.#seeding) {
      // An empty store: the master's log starts here; the store checks that a file starts here.
      this.#seeding = size === 0
      this.#expected = offset
      if (this.#groupBytes === 0) this.#applied = offset
    }
    if (offset !== this.#expected) {
      this.#drop(`a frame at offset ${offset} where this log ends at ${this.#expected}`)
      return false
    }
    if (size === 0) return true
    this.#bodyAt = offset
    this.#groupFrames++
    this.#expected = offset + size
    this.#bodyLeft = size
    return true
  }

  #addToGroup(view: Buffer, generation: number): void {
    let at = 0
    while (at < view.length) {
      const slab = (this.#slab ??= this.#slabs.pop() ?? Buffer.allocUnsafeSlow(MAX_GROUP_BYTES))
      const n = Math.min(view.length - at, slab.length - this.#groupBytes)
      view.copy(slab, this.#groupBytes, at, at + n)
      this.#groupBytes += n
      at += n
      if (this.#groupBytes === slab.length) this.#flushGroup(generation)
    }
  }

  #scheduleFlush(generation: number): void {
    if (this.#flushScheduled || this.#groupBytes === 0) return
    this.#flushScheduled = true
    setImmediate(() => {
      this.#flushScheduled = false
      if (generation === this.#generation) this.#flushGroup(generation)
    })
  }

  /** Hands the bytes gathered so far (whole frames or not: the store holds a cut record) to the store. */
  #flushGroup(generation: number): void {
    const slab = this.#slab
    if (slab === undefined || this.#groupBytes === 0) return
    const frames = this.#bodyLeft > 0 ? this.#groupFrames - 1 : this.#groupFrames
    this.#apply(this.#groupOffset, slab, this.#groupBytes, frames, generation)
    this.#groupOffset += this.#groupBytes
    this.#slab = undefined
    this.#groupBytes = 0
    this.#groupFrames = this.#bodyLeft > 0 ? 1 : 0
    if (this.#inFlightBytes > this.#options.maxInFlightBytes) this.#socket?.pause()
  }

  /**
   * Hands a group to the store (in order: the store serializes them). Once it is applied its end
   * is reported when no later group is in flight, or REPORT_EVERY_BYTES after the last report:
   * a report per group would cost the replica and the master a write and a wake-up each.
   */
  #apply(offset: number, slab: Buffer, length: number, frames: number, generation: number): void {
    const end = offset + length
    this.#inFlightBytes += length
    this.#groupsInFlight++
    const settled = (): void => {
      this.#inFlightBytes -= length
      this.#groupsInFlight--
      if (this.#groupsInFlight === 0) for (const wake of this.#idleWaiters.splice(0)) wake()
      // The store copied what it keeps (into the log, or the bytes held of a cut record).
      if (this.#slabs.length < this.#maxSpareSlabs) this.#slabs.push(slab)
    }
    this.store.appendReplicated(offset, slab.subarray(0, length)).then(
      () => {
        settled()
        this.framesApplied += frames
        if (generation !== this.#generation) return
        this.#applied = end
        if (this.#groupsInFlight === 0 || end - this.#reported >= REPORT_EVERY_BYTES) this.#report(end, false)
        if (this.#inFlightBytes <= this.#options.maxInFlightBytes / 2) this.#socket?.resume()
      },
      (err: unknown) => {
        settled()
        if (generation === this.#generation) this.#drop(`the store refused a chunk: ${(err as Error).message}`)
      },
    )
  }

  #report(offset: number, force: boolean): void {
    const s = this.#socket
    if (!s || s.destroyed) return
    if (!force && offset <= this.#reported) return
    this.#reported = Math.max(this.#reported, offset)
    this.#lastReport = Date.now()
    s.write(encodeReport(force ? offset : this.#reported))
  }

  #tick(): void {
    if (!this.connected) return
    const now = Date.now()
    if (now - this.#lastRead > this.#options.housekeepingMs) {
      this.#drop('the master was silent past the housekeeping interval')
      return
    }
    if (this.#started && now - this.#lastReport >= this.#options.reportIntervalMs) this.#report(this.#applied, true)
  }

  /** Stops following: the link is closed; chunks handed to the store still complete. */
  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer) clearInterval(this.#timer)
    if (this.#reconnect) clearTimeout(this.#reconnect)
    this.#generation++
    this.#socket?.destroy()
    while (this.#inFlightBytes > 0) await new Promise((r) => setTimeout(r, 5))
  }
}
