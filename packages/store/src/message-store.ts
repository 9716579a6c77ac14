/**
 * MessageStore: the embedded entry point. Validates and encodes messages, appends them to the
 * CommitLog, waits for durability in sync-flush mode, and owns the store directory's lifecycle
 * (lock, abort marker, checkpoint, recovery).
 */
import * as path from 'node:path'
import { StoreCheckpoint } from './checkpoint.js'
import { CommitLog, type AppendResult, type FlushMode, type RecoveryReport, type TopicState } from './commit-log.js'
import { StoreError, ioError } from './errors.js'
import { NodeFileIO, type FileIO } from './file-io.js'
import {
  DEFAULT_MAX_MESSAGE_SIZE_BYTES,
  END_FILE_MIN_BLANK_LENGTH,
  MAX_PROPERTIES_BYTES,
  PROPERTY,
  PROPERTY_NAME_VALUE_SEPARATOR,
  PROPERTY_SEPARATOR,
  RECORD_OVERHEAD_ALLOWANCE_BYTES,
  TOPIC_MAX_LENGTH,
  TOPIC_MAX_LENGTH_V2,
  TOPIC_PATTERN,
  checkRecord,
  decodeMessageId,
  decodeRecord,
  parseHost,
  prepareRecord,
  type Host,
  type PreparedMessage,
  type StoredMessage,
} from './format.js'

/** RocketMQ's store layout under the root directory. */
export const STORE_PATHS = {
  commitLog: 'commitlog',
  consumeQueue: 'consumequeue',
  index: 'index',
  checkpoint: 'checkpoint',
  abort: 'abort',
  lock: 'lock',
  config: 'config',
} as const

export const DEFAULT_COMMIT_LOG_FILE_SIZE_BYTES = 1024 * 1024 * 1024

export interface MessageStoreOptions {
  /** Root directory; created if missing. */
  dir: string
  /** 'async' (RocketMQ's default ASYNC_FLUSH) or 'sync' (a put resolves once durable). */
  flush?: FlushMode
  /** Size of each CommitLog file; default 1 GiB. */
  commitLogFileSize?: number
  /** Largest body accepted; default 4 MiB. */
  maxMessageSize?: number
  /** Address stored in every record and in message ids; default 127.0.0.1:10911. */
  storeHost?: string
  /** Async flush: interval, least dirty pages, and the interval after which any dirt is flushed. */
  flushIntervalMs?: number
  flushLeastPages?: number
  flushThoroughIntervalMs?: number
  /** Sync flush: a put not durable by then resolves with status FLUSH_DISK_TIMEOUT. */
  syncFlushTimeoutMs?: number
  /** Sync flush: bound on bytes appended but not yet handed to the OS; appends wait beyond it. */
  stagingLimitBytes?: number
  /** Sync flush: durable writes in flight at once (default 1; more helps on devices that overlap writes). */
  syncFlushConcurrency?: number
  /** Verify body CRCs while recovering (RocketMQ's checkCRCOnRecover, default true). */
  checkCrcOnRecover?: boolean
  /** Damage below the checkpoint's durable offset: 'fail' to open (default) or 'truncate'. */
  onCorruption?: 'fail' | 'truncate'
  /** Disk access; tests pass a simulated one. */
  fileIO?: FileIO
  /** Clock, for tests. */
  now?: () => number
}

export interface PutMessage {
  topic: string
  queueId: number
  body: Buffer | Uint8Array | string
  /** Stored as the TAGS property. */
  tags?: string
  /** Stored space-separated as the KEYS property. */
  keys?: string | string[]
  properties?: Record<string, string>
  flag?: number
  sysFlag?: number
  bornTimestamp?: number
  /** "ip:port", IPv4; default 127.0.0.1:0. */
  bornHost?: string
  reconsumeTimes?: number
  preparedTransactionOffset?: number
}

export type PutStatus = AppendResult['status']

/** status, msgId, physicalOffset, queueOffset, storeTimestamp, and size (bytes in the CommitLog). */
export type PutResult = AppendResult

export type StoreStatus = 'opening' | 'open' | 'closing' | 'closed'

const DEFAULT_BORN_HOST: Host = { ip: 0x7f000001, port: 0 }
const openDirs = new Set<string>()

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export class MessageStore {
  status: StoreStatus = 'opening'
  readonly dir: string
  readonly flushMode: FlushMode
  readonly maxMessageSize: number
  readonly maxRecordBytes: number
  /** What recovery found when the store was opened. */
  recovery!: RecoveryReport
  readonly commitLog: CommitLog

  private readonly io: FileIO
  private readonly bornHostCache = new Map<string, Host>()
  private checkpoint!: StoreCheckpoint
  private closing: Promise<void> | undefined

  private constructor(options: MessageStoreOptions, io: FileIO, checkpoint: StoreCheckpoint) {
    this.dir = path.resolve(options.dir)
    this.io = io
    this.checkpoint = checkpoint
    this.flushMode = options.flush ?? 'async'
    const fileSize = options.commitLogFileSize ?? DEFAULT_COMMIT_LOG_FILE_SIZE_BYTES
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE_BYTES
    this.maxRecordBytes = Math.min(this.maxMessageSize + RECORD_OVERHEAD_ALLOWANCE_BYTES, fileSize - END_FILE_MIN_BLANK_LENGTH)
    const storeHost = parseHost(options.storeHost ?? '127.0.0.1:10911')
    if (!storeHost) throw new StoreError('INVALID_ARGUMENT', `storeHost must be "a.b.c.d:port", got ${options.storeHost}`)
    this.commitLog = new CommitLog({
      io,
      dir: path.join(this.dir, STORE_PATHS.commitLog),
      fileSizeBytes: fileSize,
      flush: this.flushMode,
      storeHost,
      maxRecordBytes: this.maxRecordBytes,
      flushIntervalMs: options.flushIntervalMs ?? 500,
      flushLeastPages: options.flushLeastPages ?? 4,
      flushThoroughIntervalMs: options.flushThoroughIntervalMs ?? 10_000,
      syncFlushTimeoutMs: options.syncFlushTimeoutMs ?? 5000,
      stagingLimitBytes: options.stagingLimitBytes ?? 64 * 1024 * 1024,
      syncFlushConcurrency: options.syncFlushConcurrency ?? 1,
      checkCrcOnRecover: options.checkCrcOnRecover ?? true,
      onCorruption: options.onCorruption ?? 'fail',
      checkpoint,
      now: options.now ?? Date.now,
    })
  }

  /** Opens (creating if needed) the store in `options.dir`, recovering after a crash. */
  static async open(options: MessageStoreOptions): Promise<MessageStore> {
    if (!options || typeof options.dir !== 'string' || options.dir.length === 0) throw new StoreError('INVALID_ARGUMENT', 'options.dir is required')
    const fileSize = options.commitLogFileSize ?? DEFAULT_COMMIT_LOG_FILE_SIZE_BYTES
    if (!Number.isInteger(fileSize) || fileSize < 4096 || fileSize > 2 ** 31 - 1) {
      throw new StoreError('INVALID_ARGUMENT', `commitLogFileSize must be an integer from 4096 to ${2 ** 31 - 1}, got ${fileSize}`)
    }
    if (options.flush !== undefined && options.flush !== 'sync' && options.flush !== 'async') {
      throw new StoreError('INVALID_ARGUMENT', `flush must be 'sync' or 'async', got ${String(options.flush)}`)
    }
    const io = options.fileIO ?? new NodeFileIO()
    const dir = path.resolve(options.dir)
    if (openDirs.has(dir)) throw new StoreError('LOCKED', `store ${dir} is already open in this process`)
    openDirs.add(dir)
    let checkpoint: StoreCheckpoint | undefined
    let store: MessageStore | undefined
    try {
      for (const sub of [STORE_PATHS.commitLog, STORE_PATHS.consumeQueue, STORE_PATHS.index, STORE_PATHS.config]) await io.mkdirp(path.join(dir, sub))
      await MessageStore.lock(io, dir)
      checkpoint = await StoreCheckpoint.open(io, path.join(dir, STORE_PATHS.checkpoint))
      store = new MessageStore(options, io, checkpoint)
      const abortFile = path.join(dir, STORE_PATHS.abort)
      const cleanShutdown = !(await io.exists(abortFile))
      store.recovery = await store.commitLog.recover(cleanShutdown)
      await io.writeFileAtomic(abortFile, Buffer.from(String(process.pid)))
      const queue = store.commitLog.queue
      if (!queue.last) await queue.createNext()
      else queue.warm(queue.last, queue.last.wrotePosition)
      queue.prepareNext()
      store.commitLog.start()
      store.status = 'open'
      return store
    } catch (err) {
      if (store) await store.commitLog.queue.close().catch(() => undefined)
      await checkpoint?.close().catch(() => undefined)
      await io.remove(path.join(dir, STORE_PATHS.lock)).catch(() => undefined)
      openDirs.delete(dir)
      throw ioError(`opening store ${dir}`, err)
    }
  }

  private static async lock(io: FileIO, dir: string): Promise<void> {
    const lockFile = path.join(dir, STORE_PATHS.lock)
    const held = await io.readFile(lockFile)
    if (held) {
      const pid = Number(held.toString('utf8').trim())
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isProcessAlive(pid)) {
        throw new StoreError('LOCKED', `store ${dir} is in use by process ${pid}`, { details: { pid } })
      }
    }
    await io.writeFileAtomic(lockFile, Buffer.from(String(process.pid)))
  }

  // -------------------------------------------------------------------------------------------

  private notOpen(): StoreError {
    return this.commitLog.failed ?? new StoreError('NOT_OPEN', `store is ${this.status}`)
  }

  private topicFor(topic: unknown): TopicState {
    if (typeof topic === 'string') {
      const known = this.commitLog.topics.get(topic)
      if (known) return known
    }
    if (typeof topic !== 'string' || topic.length === 0) throw new StoreError('TOPIC_INVALID', 'topic must be a non-empty string')
    if (!TOPIC_PATTERN.test(topic)) throw new StoreError('TOPIC_INVALID', `topic "${topic}" has characters outside [%|a-zA-Z0-9_-]`)
    const limit = topic.startsWith('%RETRY%') || topic.startsWith('%DLQ%') ? TOPIC_MAX_LENGTH_V2 : TOPIC_MAX_LENGTH
    if (topic.length > limit) throw new StoreError('TOPIC_INVALID', `topic is ${topic.length} characters, the limit is ${limit}`)
    return this.commitLog.topicState(topic, Buffer.from(topic, 'latin1'))
  }

  private bornHost(text: string | undefined): Host {
    if (text === undefined) return DEFAULT_BORN_HOST
    let host = this.bornHostCache.get(text)
    if (!host) {
      host = parseHost(text)
      if (!host) throw new StoreError('INVALID_ARGUMENT', `bornHost must be "a.b.c.d:port", got ${text}`)
      if (this.bornHostCache.size > 4096) this.bornHostCache.clear()
      this.bornHostCache.set(text, host)
    }
    return host
  }

  private prepare(m: PutMessage, states: TopicState[], now: number): PreparedMessage {
    if (m === null || typeof m !== 'object') throw new StoreError('INVALID_ARGUMENT', 'message must be an object')
    const st = this.topicFor(m.topic)
    const queueId = m.queueId
    if (!Number.isInteger(queueId) || queueId < 0 || queueId > 0x7fffffff) throw new StoreError('INVALID_ARGUMENT', `queueId must be a non-negative int, got ${String(queueId)}`)
    let body: Uint8Array
    if (m.body instanceof Uint8Array) body = m.body
    else if (typeof m.body === 'string') body = Buffer.from(m.body, 'utf8')
    else throw new StoreError('INVALID_ARGUMENT', 'body must be a Buffer, Uint8Array or string')
    if (body.length > this.maxMessageSize) {
      throw new StoreError('MESSAGE_TOO_LARGE', `body of ${body.length} bytes exceeds maxMessageSize ${this.maxMessageSize}`, { details: { bytes: body.length, limit: this.maxMessageSize } })
    }
    let properties = ''
    if (m.keys !== undefined || m.tags !== undefined || m.properties !== undefined) properties = this.encodeProperties(m)
    const prepared = prepareRecord({
      topic: st.topic,
      topicBytes: st.bytes,
      queueId,
      flag: m.flag ?? 0,
      sysFlag: m.sysFlag ?? 0,
      bornTimestamp: m.bornTimestamp ?? now,
      bornHost: this.bornHost(m.bornHost),
      reconsumeTimes: m.reconsumeTimes ?? 0,
      preparedTransactionOffset: m.preparedTransactionOffset ?? 0,
      body,
      properties,
    })
    if (prepared.propertiesBytes > MAX_PROPERTIES_BYTES) {
      throw new StoreError('PROPERTIES_TOO_LONG', `properties take ${prepared.propertiesBytes} bytes, the limit is ${MAX_PROPERTIES_BYTES}`)
    }
    if (prepared.totalSize > this.maxRecordBytes) {
      throw new StoreError('MESSAGE_TOO_LARGE', `record of ${prepared.totalSize} bytes exceeds the limit of ${this.maxRecordBytes}`, { details: { bytes: prepared.totalSize, limit: this.maxRecordBytes } })
    }
    states.push(st)
    return prepared
  }

  private encodeProperties(m: PutMessage): string {
    let out = ''
    const add = (name: string, value: unknown): void => {
      if (typeof value !== 'string' || value.length === 0) throw new StoreError('INVALID_PROPERTY', `property ${name} must be a non-empty string`)
      if (name.length === 0) throw new StoreError('INVALID_PROPERTY', 'property names must not be empty')
      if (name.includes(PROPERTY_NAME_VALUE_SEPARATOR) || name.includes(PROPERTY_SEPARATOR) || value.includes(PROPERTY_NAME_VALUE_SEPARATOR) || value.includes(PROPERTY_SEPARATOR)) {
        throw new StoreError('INVALID_PROPERTY', `property ${JSON.stringify(name)} contains a 0x01 or 0x02 separator`)
      }
      out += name + PROPERTY_NAME_VALUE_SEPARATOR + value + PROPERTY_SEPARATOR
    }
    if (m.keys !== undefined) {
      const keys = Array.isArray(m.keys) ? m.keys : [m.keys]
      for (const k of keys) {
        if (typeof k !== 'string' || k.length === 0 || k.includes(' ')) throw new StoreError('INVALID_PROPERTY', `each key must be a non-empty string without spaces, got ${JSON.stringify(k)}`)
      }
      if (keys.length > 0) add(PROPERTY.KEYS, keys.join(' '))
    }
    if (m.tags !== undefined) add(PROPERTY.TAGS, m.tags)
    if (m.properties !== undefined) {
      for (const name of Object.keys(m.properties)) {
        if (name === PROPERTY.KEYS && m.keys !== undefined) continue
        if (name === PROPERTY.TAGS && m.tags !== undefined) continue
        add(name, m.properties[name])
      }
    }
    return out
  }

  private finish(results: AppendResult[]): PutResult[] | Promise<PutResult[]> {
    return this.flushMode === 'async' ? results : this.commitLog.waitFlushed(results)
  }

  /** Appends one message. With flush 'sync' it resolves once the message is on disk. */
  put(message: PutMessage): Promise<PutResult> {
    if (this.status !== 'open') return Promise.reject(this.notOpen())
    try {
      const states: TopicState[] = []
      const prepared = this.prepare(message, states, Date.now())
      const appended = this.commitLog.append([prepared], states, prepared.totalSize)
      if (Array.isArray(appended)) {
        const r = appended[0]!
        return this.flushMode === 'async' ? Promise.resolve(r) : this.commitLog.waitFlushed(r)
      }
      return appended.then((rs) => (this.flushMode === 'async' ? rs[0]! : this.commitLog.waitFlushed(rs[0]!)))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Appends messages contiguously in one file, with one flush wait. All or nothing. */
  async putBatch(messages: PutMessage[]): Promise<PutResult[]> {
    if (this.status !== 'open') throw this.notOpen()
    if (!Array.isArray(messages)) throw new StoreError('INVALID_ARGUMENT', 'putBatch takes an array of messages')
    if (messages.length === 0) return []
    const states: TopicState[] = []
    const prepared: PreparedMessage[] = new Array(messages.length)
    let total = 0
    const now = Date.now()
    for (let i = 0; i < messages.length; i++) {
      const p = this.prepare(messages[i]!, states, now)
      prepared[i] = p
      total += p.totalSize
    }
    if (total + END_FILE_MIN_BLANK_LENGTH > this.commitLog.fileSizeBytes) {
      throw new StoreError('MESSAGE_TOO_LARGE', `batch of ${total} bytes does not fit in one CommitLog file of ${this.commitLog.fileSizeBytes} bytes`, { details: { bytes: total } })
    }
    const appended = await this.commitLog.append(prepared, states, total)
    return this.finish(appended)
  }

  /** The message stored at `physicalOffset`, decoded (body copied). */
  async lookup(physicalOffset: number): Promise<StoredMessage> {
    if (this.status !== 'open') throw this.notOpen()
    if (!Number.isSafeInteger(physicalOffset) || physicalOffset < 0) throw new StoreError('INVALID_ARGUMENT', `bad physical offset ${physicalOffset}`)
    const where = this.commitLog.recordAt(physicalOffset)
    if (!where) {
      throw new StoreError('INVALID_ARGUMENT', `no message at physical offset ${physicalOffset} (store holds ${this.commitLog.minOffset} to ${this.commitLog.wroteOffset})`, { details: { physicalOffset } })
    }
    // Staged chunk positions differ from file positions; check the record against its own offset.
    const check = checkRecord(where.buf, where.at, where.limit, physicalOffset, this.maxRecordBytes, false)
    if (check.kind !== 'record') throw new StoreError('INVALID_ARGUMENT', `no message starts at physical offset ${physicalOffset}`, { details: { physicalOffset } })
    return decodeRecord(where.buf, where.at, true)
  }

  /** Decodes an offset message id and returns its message. */
  async viewMessage(msgId: string): Promise<StoredMessage> {
    const id = decodeMessageId(msgId)
    if (!id) throw new StoreError('INVALID_ARGUMENT', `not an offset message id: ${msgId}`)
    return this.lookup(id.physicalOffset)
  }

  /** Next queue offset of (topic, queueId): the number of entries ever written to it. */
  maxQueueOffset(topic: string, queueId: number): number {
    return this.commitLog.topics.get(topic)?.queueOffsets[queueId] ?? 0
  }

  /** CommitLog offsets: first byte held, end of appended data, end of durable data. */
  get minPhysicalOffset(): number {
    return this.commitLog.minOffset
  }
  get maxPhysicalOffset(): number {
    return this.commitLog.wroteOffset
  }
  get flushedPhysicalOffset(): number {
    return this.commitLog.flushedOffset
  }

  /** Makes everything appended so far durable. */
  async flush(): Promise<void> {
    if (this.status !== 'open') throw this.notOpen()
    await this.commitLog.flush()
  }

  /** Drains pending appends, flushes, writes the checkpoint and marks a clean shutdown. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing
    this.status = 'closing'
    this.closing = (async () => {
      let failed: unknown
      try {
        await this.commitLog.close()
      } catch (err) {
        failed = err
      }
      try {
        await this.checkpoint.flush()
        await this.checkpoint.close()
        // A failed flush means the next open must recover as after a crash.
        if (failed === undefined && !this.commitLog.failed) await this.io.remove(path.join(this.dir, STORE_PATHS.abort))
        await this.io.remove(path.join(this.dir, STORE_PATHS.lock))
      } finally {
        openDirs.delete(this.dir)
        this.status = 'closed'
        this.io.reclaim()
      }
      if (failed !== undefined) throw failed
    })()
    return this.closing
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}
