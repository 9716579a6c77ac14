/**
 * The replica side of the HA stream (RocketMQ's HAClient): it connects to its master's HA port,
 * reports where its log ends (the master starts there), then appends each frame's bytes with
 * the store's appendReplicated, in frame order. Frames are handed on as they arrive, without
 * waiting for the previous one to be durable, so a burst becomes one group of durable writes;
 * each frame's end is reported once its bytes are applied (durable by the flush mode, dispatched),
 * and every 5 s regardless. A frame whose offset is not where the log ends, garbage, a chunk the
 * store refuses, or a master silent for 20 s drops the link; it connects again after a second
 * and resumes from its own end. An empty store reports 0 and starts wherever the master's log
 * does (its first files may be gone); a master that does not hold this log's end closes the link
 * before sending anything, which is logged.
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
  /** Bytes received but not yet applied beyond which reading pauses (64 MiB). */
  maxInFlightBytes?: number
  logger?: HALogger
}

const silent: HALogger = { warn: () => {} }
const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024

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
  #buffer = Buffer.alloc(0)
  /** Where the next frame must start. */
  #expected = 0
  /** The store was empty at connect: the first frame sets where the log starts. */
  #seeding = false
  #inFlightBytes = 0
  #lastRead = 0
  #lastReport = 0
  #reported = -1
  #generation = 0
  #timer: NodeJS.Timeout | undefined
  #reconnect: NodeJS.Timeout | undefined
  #stopped = false
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
    const socket = net.connect({ host: target.host, port: target.port, noDelay: true })
    this.#socket = socket
    this.#buffer = Buffer.alloc(0)
    let framed = false
    socket.on('connect', () => {
      // The master starts where this log ends (bytes of a cut record included). An empty store
      // reports 0 and takes the first frame wherever the master's log starts (see #onData).
      const store = this.store
      this.#seeding = store.commitLogMaxOffset === store.commitLogMinOffset && store.replicaEndOffset === store.commitLogMinOffset
      this.#expected = store.replicaEndOffset
      this.#lastRead = Date.now()
      this.#reported = -1
      this.#report(this.#seeding ? 0 : this.#expected, true)
    })
    socket.once('data', () => (framed = true))
    socket.on('data', (d) => this.#onData(d, generation))
    socket.on('error', () => undefined)
    socket.on('close', () => {
      if (this.#socket === socket) this.#socket = undefined
      // A master that does not hold this replica's end closes at once (its log says why).
      if (!framed && generation === this.#generation && !this.#stopped) {
        this.linksDropped++
        this.lastDropReason = `the master closed the link before sending anything: it may not hold this replica's end ${this.#expected} (a replica behind its master's first CommitLog file must be emptied to be seeded again)`
        this.#logger.warn('link to the master refused', { reason: this.lastDropReason })
      }
      this.#scheduleReconnect()
    })
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

  #onData(d: Buffer, generation: number): void {
    if (generation !== this.#generation) return
    this.#lastRead = Date.now()
    let buf = this.#buffer.length === 0 ? d : Buffer.concat([this.#buffer, d])
    while (buf.length >= HEADER_BYTES) {
      const offset = readOffset(buf, 0)
      const size = buf.readInt32BE(8)
      if (offset === undefined || size < 0 || size > MAX_FRAME_BODY_BYTES) {
        this.#drop(`a frame header that is not one (offset ${buf.readBigInt64BE(0)}, size ${size})`)
        return
      }
      if (this.#seeding) {
        // An empty store: the master's log starts here; the store checks that a file starts here.
        this.#seeding = size === 0
        this.#expected = offset
      }
      if (offset !== this.#expected) {
        this.#drop(`a frame at offset ${offset} where this log ends at ${this.#expected}`)
        return
      }
      if (buf.length < HEADER_BYTES + size) break
      const body = buf.subarray(HEADER_BYTES, HEADER_BYTES + size)
      buf = buf.subarray(HEADER_BYTES + size)
      if (size > 0) this.#apply(offset, body, generation)
    }
    this.#buffer = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf)
    if (this.#inFlightBytes > this.#options.maxInFlightBytes) this.#socket?.pause()
  }

  /** Hands a frame to the store (in order: the store serializes them) and reports its end once applied. */
  #apply(offset: number, body: Buffer, generation: number): void {
    const end = offset + body.length
    this.#expected = end
    this.#inFlightBytes += body.length
    this.store.appendReplicated(offset, body).then(
      () => {
        this.#inFlightBytes -= body.length
        this.framesApplied++
        if (generation === this.#generation) {
          this.#report(end, false)
          if (this.#inFlightBytes <= this.#options.maxInFlightBytes / 2) this.#socket?.resume()
        }
      },
      (err: unknown) => {
        this.#inFlightBytes -= body.length
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
    if (now - this.#lastReport >= this.#options.reportIntervalMs) this.#report(this.#reported >= 0 ? this.#reported : this.store.replicaEndOffset, true)
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
