/**
 * MessageStore: the embedded entry point. Appends what put-prepare.ts checked and measured to the
 * CommitLog, waits for durability in sync-flush mode and for dispatch, serves reads (the queue
 * scan is read-path.ts), and owns the store directory's lifecycle: lock, abort marker,
 * checkpoint, and the order of recovery (its steps are store-recovery.ts).
 */
import * as path from 'node:path'
import { IndexError, IndexService } from '@mqts/index'
import { StoreCheckpoint } from './checkpoint.js'
import { DEFAULT_MAX_PENDING_APPENDS, DEFAULT_MAX_PENDING_APPEND_BYTES, checkStoreOptions } from './options.js'
import { CommitLog, type AppendResult, type FlushMode, type RecoveryReport, type TopicState } from './commit-log.js'
import { ConsumeQueueSet, DEFAULT_MAX_OPEN_CQ_FILES, type ConsumeQueue } from './consume-queue.js'
import { CONSUMER_OFFSET_FILE, ConsumerOffsetManager, DEFAULT_PERSIST_CONSUMER_OFFSET_INTERVAL_MS } from './consumer-offsets.js'
import { Dispatcher, type DispatchListener } from './dispatcher.js'
import { StoreError, ioError } from './errors.js'
import { NodeFileIO, type FileIO } from './file-io.js'
import { acquireStoreLock } from './lock.js'
import { RetentionService, type RetentionOptions, type RetentionResult } from './retention.js'
import {
  CQ_FILLER_SIZE,
  DEFAULT_CQ_UNITS_PER_FILE,
  DEFAULT_DELAY_LEVELS_MS,
  DEFAULT_MAX_MESSAGE_SIZE_BYTES,
  END_FILE_MIN_BLANK_LENGTH,
  PROPERTY,
  RECORD_OVERHEAD_ALLOWANCE_BYTES,
  SYSFLAG,
  checkRecord,
  decodeMessageId,
  decodeRecord,
  parseDelayLevels,
  parseHost,
  readStoreTimestamp,
  takesQueueOffset,
  type PreparedMessage,
  type StoredMessage,
} from './codec/index.js'
import { DEFAULT_MAX_QUEUES_PER_TOPIC, checkOffset, checkPutQueueId, checkTopicText, describe } from './put-input.js'
import { PutPreparer, checkTopicName, type EncodedBatch, type PutMessage } from './put-prepare.js'
import { checkIndexFits, markOpen, recordClaims, recoverConsumeQueues, syncQueueOffsets } from './store-recovery.js'
import { checkQueueArgs, readQueue, type GetMessageRequest, type GetMessageResult } from './read-path.js'
import { readCommitLogBytes } from './raw-read.js'
import { ConfirmOffset, raiseQueueOffsetsPast, recoverPastConfirm, unconfirmedOption } from './confirm-offset.js'
import type { CommittedListener } from './commit-log.js'
import { Replication, type StoreRole } from './replica.js'
import { truncateStore } from './truncate.js'
import { DELETED_TOPICS_FILE, DeletedTopics, deleteTopicData, finishDeletionsAfterLoad, finishDeletionsBeforeLoad, knowsTopic, listTopics, type TopicQueues, type TopicStore } from './topics.js'
import { followQueueRestart, followTopicDeletion, notAReplica, restartsQueue } from './replica-deletions.js'

export type { EncodedBatch, PutMessage } from './put-prepare.js'
export type { GetMessageRequest, GetMessageResult, GetMessageStatus, RawRecord } from './read-path.js'
export type { CommittedListener } from './commit-log.js'
export type { StoreRole } from './replica.js'
export type { TopicQueues } from './topics.js'

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
  /** Address stored in every record and in message ids, "a.b.c.d:port" or "[ipv6]:port"; default 127.0.0.1:10911. */
  storeHost?: string
  /** A put's queueId must be below this (default 1024): a stray id must not create a queue directory. */
  maxQueuesPerTopic?: number
  /** Async flush: interval, least dirty pages, and the interval after which any dirt is flushed. */
  flushIntervalMs?: number
  flushLeastPages?: number
  flushThoroughIntervalMs?: number
  /** Sync flush: a put not durable by then resolves with status FLUSH_DISK_TIMEOUT. */
  syncFlushTimeoutMs?: number
  /**
   * Sync flush: bound on bytes staged and not yet durable. An append (or appendReplicated chunk)
   * waits while they reach it, so the one made below it may pass it by its own bytes; a file's
   * end-of-file BLANK stages its first 8 bytes, not its padding (the file reads zeros there).
   */
  stagingLimitBytes?: number
  /** Sync flush: durable writes in flight at once (default 1; more helps on devices that overlap writes). */
  syncFlushConcurrency?: number
  /**
   * Back-pressure: appends (a put or a putBatch each) waiting on the disk at most, and their
   * bytes (defaults 10,000 and 128 MiB): queued behind a new file or a full staging area, and with
   * sync flush written but not yet durable. Past either a put fails at once with BUSY, nothing
   * written (RocketMQ's "broker busy").
   */
  maxPendingAppends?: number
  maxPendingAppendBytes?: number
  /** Verify body CRCs while recovering (RocketMQ's checkCRCOnRecover, default true). */
  checkCrcOnRecover?: boolean
  /**
   * Open checks every record from the start of the CommitLog file holding the checkpoint's
   * durable offset, also after a clean shutdown (default false: a clean open reads no record, a
   * crash recovery checks from the durable offset on). Finds damage below the durable offset in
   * that file, at the cost of reading up to one file at every open.
   */
  verifyOnOpen?: boolean
  /** Damage below the checkpoint's durable offset: 'fail' to open (default) or 'truncate'. */
  onCorruption?: 'fail' | 'truncate'
  /** Disk access; tests pass a simulated one. */
  fileIO?: FileIO
  /** Clock, for tests: store timestamps and retention ages. */
  now?: () => number
  /** Units per ConsumeQueue file; default 300,000 (6,000,000-byte files, as RocketMQ). */
  consumeQueueUnitsPerFile?: number
  /** Bound on ConsumeQueue files mapped at once, over all queues; default 1024. */
  maxOpenConsumeQueueFiles?: number
  /** How often ConsumeQueues are synced to disk (RocketMQ: 1000 ms). */
  flushConsumeQueueIntervalMs?: number
  /** How often consumer offsets are persisted (RocketMQ: 5000 ms). */
  persistConsumerOffsetIntervalMs?: number
  /** Bytes `get` returns at most (the first message always goes): RocketMQ's 256 KiB. */
  maxTransferBytes?: number
  /** Retention: fileReservedTimeHours (72), deleteWhen ("04"), disk ratios, check interval. */
  retention?: Partial<RetentionOptions>
  /** The key index (`index/`, RocketMQ's IndexFile): on by default (messageIndexEnable). */
  messageIndexEnable?: boolean
  /** Index file geometry: slots (5,000,000) and entries (20,000,000) per file. */
  maxHashSlotNum?: number
  maxIndexNum?: number
  /**
   * Delay levels, RocketMQ's messageDelayLevel ("1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m
   * 30m 1h 2h" by default; units s m h d): a SCHEDULE_TOPIC_XXXX message's ConsumeQueue tags code is
   * its store time + its level's delay (codec/schedule.ts).
   */
  messageDelayLevel?: string
  /**
   * Dispatch (and so `get`, arrival events, key queries) stops at an offset set from outside with
   * setConfirmOffset (default false): confirm-offset.ts.
   */
  confirmOffset?: boolean
  /**
   * 'master' (default) takes puts; 'replica' takes only appendReplicated (the bytes of its
   * master's CommitLog) and refuses puts with WRONG_ROLE. setRole changes it while open.
   */
  role?: StoreRole
}

export interface QueryByKeyOptions {
  /** Most messages returned (default 32). */
  maxNum?: number
  /** Store-time window in ms, inclusive (index times have 1 s granularity). */
  begin?: number
  end?: number
}

export type PutStatus = AppendResult['status']

/** status, msgId, physicalOffset, queueOffset, storeTimestamp, and size (bytes in the CommitLog). */
export type PutResult = AppendResult

export type StoreStatus = 'opening' | 'open' | 'closing' | 'closed'

export type MessageArrivedListener = (topic: string, queueId: number, maxOffset: number) => void

const DEFAULT_MAX_TRANSFER_BYTES = 256 * 1024
const openDirs = new Set<string>()

export class MessageStore {
  status: StoreStatus = 'opening'
  readonly dir: string
  readonly flushMode: FlushMode
  readonly maxMessageSize: number
  readonly maxRecordBytes: number
  /** What recovery found when the store was opened. */
  recovery!: RecoveryReport
  /** The delay of each level in ms, level 1 first (messageDelayLevel). */
  readonly delayLevelsMs: readonly number[]
  readonly commitLog: CommitLog

  readonly consumeQueues: ConsumeQueueSet
  readonly dispatcher: Dispatcher
  readonly consumerOffsets: ConsumerOffsetManager
  readonly retention: RetentionService
  /** The key index, unless disabled with messageIndexEnable: false. */
  index: IndexService | undefined

  readonly #io: FileIO
  /** Checks and measures what put and putBatch are given. */
  readonly #preparer: PutPreparer
  readonly #maxQueuesPerTopic: number
  readonly #checkpoint: StoreCheckpoint
  readonly #confirm: ConfirmOffset
  #closing: Promise<void> | undefined
  readonly #now: () => number
  readonly #maxTransferBytes: number
  readonly #arrivalListeners = new Set<MessageArrivedListener>()
  readonly #timers: NodeJS.Timeout[] = []
  #cqFlushing: Promise<void> | undefined
  /** Open could not finish re-dispatching (a full disk): queue offsets wait for it (dispatchCaughtUp). */
  #queueOffsetsBehind = false
  /** The role, and a replica's appends (replica.ts); set at the end of open. */
  #replication!: Replication
  /** Deletions whose records are still in the CommitLog (kept out of the queues), and those under way. */
  readonly #deletedTopics: DeletedTopics
  readonly #deleting = new Map<string, Promise<boolean>>()
  #waitingOnDeletion = 0

  private constructor(options: MessageStoreOptions, io: FileIO, checkpoint: StoreCheckpoint) {
    this.dir = path.resolve(options.dir)
    this.#io = io
    this.#checkpoint = checkpoint
    this.flushMode = options.flush ?? 'async'
    const fileSize = options.commitLogFileSize ?? DEFAULT_COMMIT_LOG_FILE_SIZE_BYTES
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE_BYTES
    this.maxRecordBytes = Math.min(this.maxMessageSize + RECORD_OVERHEAD_ALLOWANCE_BYTES, fileSize - END_FILE_MIN_BLANK_LENGTH)
    const storeHost = parseHost(options.storeHost ?? '127.0.0.1:10911')
    if (!storeHost) throw new StoreError('INVALID_ARGUMENT', `storeHost must be "a.b.c.d:port" or "[ipv6]:port", got ${describe(options.storeHost)}`)
    this.#maxQueuesPerTopic = options.maxQueuesPerTopic ?? DEFAULT_MAX_QUEUES_PER_TOPIC
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
      maxPendingAppends: options.maxPendingAppends ?? DEFAULT_MAX_PENDING_APPENDS,
      maxPendingAppendBytes: options.maxPendingAppendBytes ?? DEFAULT_MAX_PENDING_APPEND_BYTES,
      syncFlushConcurrency: options.syncFlushConcurrency ?? 1,
      checkCrcOnRecover: options.checkCrcOnRecover ?? true,
      verifyOnOpen: options.verifyOnOpen ?? false,
      onCorruption: options.onCorruption ?? 'fail',
      checkpoint,
      now: options.now ?? Date.now,
      replica: options.role === 'replica',
    })
    this.#preparer = new PutPreparer({
      commitLog: this.commitLog,
      storeHost,
      maxQueuesPerTopic: this.#maxQueuesPerTopic,
      maxMessageSize: this.maxMessageSize,
      maxRecordBytes: this.maxRecordBytes,
    })
    this.#now = options.now ?? Date.now
    this.#maxTransferBytes = options.maxTransferBytes ?? DEFAULT_MAX_TRANSFER_BYTES
    const units = options.consumeQueueUnitsPerFile ?? DEFAULT_CQ_UNITS_PER_FILE
    this.consumeQueues = new ConsumeQueueSet({
      io,
      dir: path.join(this.dir, STORE_PATHS.consumeQueue),
      unitsPerFile: units,
      maxOpenFiles: options.maxOpenConsumeQueueFiles ?? DEFAULT_MAX_OPEN_CQ_FILES,
    })
    const cqs = this.consumeQueues
    const deleted = (this.#deletedTopics = new DeletedTopics(io, path.join(this.dir, STORE_PATHS.config, DELETED_TOPICS_FILE)))
    const buildConsumeQueue: DispatchListener = {
      name: 'ConsumeQueue',
      wantsKeys: false,
      dispatch: (req) => {
        if (!takesQueueOffset(req.sysFlag)) return
        // A record of a deleted queue, met again by a re-dispatch at open.
        if (!deleted.empty && deleted.drops(req.topic, req.queueId, req.physicalOffset)) return
        // A replica meets its master's deletion of a topic as a queue restarting at 0 (replica-deletions.ts).
        if (req.queueOffset === 0 && this.#followsMaster(options) && restartsQueue(this, req.topic, req.queueId, req.physicalOffset)) {
          const { topic, queueId, physicalOffset, size, tagsCode } = req
          return followQueueRestart(this.#topicStore(), topic, queueId, physicalOffset).then(() => cqs.findOrCreate(topic, queueId).put(0, physicalOffset, size, tagsCode))
        }
        return cqs.findOrCreate(req.topic, req.queueId).put(req.queueOffset, req.physicalOffset, req.size, req.tagsCode)
      },
    }
    cqs.unitOwned = (physicalOffset, topic, queueId, unit) => recordClaims(this.commitLog, this.maxRecordBytes, physicalOffset, topic, queueId, unit)
    cqs.logLostItsStart = () => this.commitLog.minOffset > 0
    this.dispatcher = new Dispatcher(this.commitLog, [buildConsumeQueue], () => this.#notifyArrivals())
    // Checked by checkStoreOptions.
    this.delayLevelsMs = options.messageDelayLevel === undefined ? DEFAULT_DELAY_LEVELS_MS : (parseDelayLevels(options.messageDelayLevel) as number[])
    this.dispatcher.delayLevelsMs = this.delayLevelsMs
    this.#confirm = new ConfirmOffset(options.confirmOffset ?? false, this.commitLog, this.dispatcher, checkpoint)
    this.consumerOffsets = new ConsumerOffsetManager(io, path.join(this.dir, STORE_PATHS.config, CONSUMER_OFFSET_FILE), this.#now)
    this.retention = new RetentionService(
      { commitLog: this.commitLog, consumeQueues: cqs, dispatcher: this.dispatcher, io, dir: this.dir, now: this.#now, afterDelete: [] },
      options.retention ?? {},
    )
    this.retention.addAfterDelete(async (min) => {
      if (deleted.prune(min)) await deleted.save()
    })
  }

  /** Opens (creating if needed) the store in `options.dir`, recovering after a crash. */
  static async open(options: MessageStoreOptions): Promise<MessageStore> {
    if (!options || typeof options.dir !== 'string' || options.dir.length === 0) throw new StoreError('INVALID_ARGUMENT', 'options.dir is required')
    checkStoreOptions(options as unknown as Record<string, unknown>)
    const io = options.fileIO ?? new NodeFileIO()
    const dir = path.resolve(options.dir)
    if (openDirs.has(dir)) throw new StoreError('LOCKED', `store ${dir} is already open in this process`)
    openDirs.add(dir)
    let checkpoint: StoreCheckpoint | undefined
    let store: MessageStore | undefined
    try {
      for (const sub of [STORE_PATHS.commitLog, STORE_PATHS.consumeQueue, STORE_PATHS.index, STORE_PATHS.config]) await io.mkdirp(path.join(dir, sub))
      await MessageStore.#lock(io, dir)
      checkpoint = await StoreCheckpoint.open(io, path.join(dir, STORE_PATHS.checkpoint))
      store = new MessageStore(options, io, checkpoint)
      const abortFile = path.join(dir, STORE_PATHS.abort)
      // A checkpoint that fails its CRC vouches for nothing: recover as after a crash.
      const cleanShutdown = !(await io.exists(abortFile)) && !checkpoint.damaged
      store.recovery = await store.commitLog.recover(cleanShutdown)
      await store.#confirm.recovered()
      if (options.messageIndexEnable ?? true) {
        // Before the index starts (it makes its spare file in the background at once).
        if (!store.commitLog.queue.last) await checkIndexFits(io, path.join(dir, STORE_PATHS.index), options)
        store.index = await IndexService.open({
          dir: path.join(dir, STORE_PATHS.index),
          fileIO: io,
          maxHashSlotNum: options.maxHashSlotNum,
          maxIndexNum: options.maxIndexNum,
          now: options.now,
        })
        store.index.recover(store.commitLog.committedOffset, cleanShutdown)
        store.dispatcher.addListener(store.#indexListener(store.index))
        store.retention.addAfterDelete((min) => store!.index!.deleteBelow(min))
      }
      // Topic deletions a crash interrupted are finished before the queues load (topics.ts).
      await store.#deletedTopics.load()
      const redispatchFrom = await finishDeletionsBeforeLoad(io, path.join(dir, STORE_PATHS.consumeQueue), store.#deletedTopics)
      // A full disk may stop the re-dispatch: appends then wait until it is done.
      store.#queueOffsetsBehind = await recoverConsumeQueues(
        {
          commitLog: store.commitLog,
          consumeQueues: store.consumeQueues,
          dispatcher: store.dispatcher,
          index: store.index,
          checkpoint: store.#checkpoint,
          recovery: store.recovery,
          maxRecordBytes: store.maxRecordBytes,
          redispatchFrom,
        },
        cleanShutdown,
      )
      // The ConsumeQueues stop at the confirm offset; appends continue past what lies beyond.
      if (store.#confirm.enabled) await recoverPastConfirm(store, store.#confirm, store.#deletedTopics)
      await store.consumerOffsets.load()
      await finishDeletionsAfterLoad(store.#deletedTopics, store.consumerOffsets, store.commitLog)
      await markOpen(io, abortFile, cleanShutdown)
      const queue = store.commitLog.queue
      if (!queue.last) await queue.createFirst()
      else queue.warm(queue.last, queue.last.wrotePosition)
      queue.prepareNext()
      store.commitLog.start()
      store.commitLog.onCommitted = () => {
        const d = store!.dispatcher
        const end = store!.commitLog.committedOffset
        const pass = d.kick()
        if (d.reputOffset >= end) return undefined
        void pass?.catch(() => undefined)
        return d.waitFor(end)
      }
      store.commitLog.onAppended = (ms, states, results) => store!.dispatcher.appended(ms, states, results)
      store.#replication = new Replication(
        {
          commitLog: store.commitLog,
          dispatcher: store.dispatcher,
          maxRecordBytes: store.maxRecordBytes,
          cutBack: async (offset, topic) => {
            await store!.truncate(offset)
            // The refused record may have made its queue (of a damaged topic or queue id) in memory.
            if (topic !== undefined) await store!.dispatcher.exclusive(() => store!.consumeQueues.forgetEmpty(topic))
          },
          beforePromotion: () => store!.#queueOffsetsPastDispatch(),
        },
        options.role ?? 'master',
      )
      store.#startServices(options)
      store.status = 'open'
      return store
    } catch (err) {
      if (store) {
        for (const t of store.#timers) clearInterval(t)
        await store.commitLog.queue.close().catch(() => undefined)
        await store.consumeQueues.close().catch(() => undefined)
        await store.index?.close().catch(() => undefined)
      }
      await checkpoint?.close().catch(() => undefined)
      await io.remove(path.join(dir, STORE_PATHS.lock)).catch(() => undefined)
      openDirs.delete(dir)
      throw ioError(`opening store ${dir}`, err)
    }
  }

  /** Feeds the index: every KEYS token and the UNIQ_KEY, as `topic#key`; not rollback records. */
  #indexListener(index: IndexService): DispatchListener {
    const record = { topic: '', keys: [] as string[], uniqKey: undefined as string | undefined, phyOffset: 0, size: 0, storeTimestamp: 0 }
    const none: string[] = []
    const one: string[] = ['']
    return {
      name: 'Index',
      wantsKeys: true,
      dispatch: (req) => {
        if ((req.sysFlag & SYSFLAG.TRANSACTION_MASK) === SYSFLAG.TRANSACTION_ROLLBACK_TYPE) return
        record.topic = req.topic
        const keys = req.keys
        if (keys === undefined) record.keys = none
        else if (keys.indexOf(' ') < 0) {
          one[0] = keys
          record.keys = one
        } else record.keys = keys.split(' ')
        record.uniqKey = req.uniqKey
        record.phyOffset = req.physicalOffset
        record.size = req.size
        record.storeTimestamp = req.storeTimestamp
        index.put(record)
      },
    }
  }

  #startServices(options: MessageStoreOptions): void {
    const every = (ms: number, fn: () => Promise<unknown>): void => {
      let busy = false
      const t = setInterval(() => {
        if (busy || this.status !== 'open') return
        busy = true
        fn()
          .catch(() => undefined)
          .finally(() => {
            busy = false
          })
      }, ms)
      t.unref()
      this.#timers.push(t)
    }
    every(options.flushConsumeQueueIntervalMs ?? 1000, async () => {
      // A dispatch that stopped on an error (a full disk, say) is retried here.
      if (this.dispatcher.lastError) void this.dispatcher.kick(true)?.catch(() => undefined)
      await this.#flushConsumeQueues()
    })
    every(options.persistConsumerOffsetIntervalMs ?? DEFAULT_PERSIST_CONSUMER_OFFSET_INTERVAL_MS, () => this.consumerOffsets.persist())
    every(this.retention.options.cleanResourceIntervalMs, () => this.retention.run())
  }

  /** Syncs the ConsumeQueues, then records in the checkpoint how far they are durable. */
  #flushConsumeQueues(): Promise<void> {
    if (this.#cqFlushing) return this.#cqFlushing
    this.#cqFlushing = (async () => {
      try {
        const upTo = this.dispatcher.reputOffset
        await this.consumeQueues.flush()
        if (this.index) {
          await this.index.flush()
          this.#checkpoint.values.indexMsgTimestamp = this.commitLog.lastStoreTimestamp
        }
        const cp = this.#checkpoint.values
        const confirmMoved = this.#confirm.beforeCheckpoint(upTo)
        if (upTo > cp.logicsFlushedOffset || confirmMoved) {
          if (upTo > cp.logicsFlushedOffset) {
            cp.logicsFlushedOffset = upTo
            cp.logicsMsgTimestamp = this.commitLog.lastStoreTimestamp
          }
          const confirm = cp.confirmPhyOffset
          await this.#checkpoint.flush()
          this.#confirm.synced(confirm)
        }
      } finally {
        this.#cqFlushing = undefined
      }
    })()
    return this.#cqFlushing
  }

  #notifyArrivals(): void {
    if (this.#arrivalListeners.size === 0) return
    for (const cq of this.consumeQueues.takeTouched()) {
      for (const l of this.#arrivalListeners) {
        try {
          l(cq.topic, cq.queueId, cq.maxOffset)
        } catch {
          // A listener's failure is its own.
        }
      }
    }
  }

  static #lock(io: FileIO, dir: string): Promise<void> {
    return acquireStoreLock(io, dir, path.join(dir, STORE_PATHS.lock))
  }

  // -------------------------------------------------------------------------------------------

  #notOpen(): StoreError {
    return this.commitLog.failed ?? new StoreError('NOT_OPEN', `store is ${this.status}`)
  }

  /**
   * A put resolves once its message is readable through `get`: dispatch normally happens inside
   * the append, and waits only when a ConsumeQueue file had to be created or opened.
   */
  #readable<T extends AppendResult | AppendResult[]>(results: T): T | Promise<T> {
    // With a confirm offset the message becomes readable once it is confirmed: no wait here.
    if (this.#confirm.enabled) return results
    const last = Array.isArray(results) ? results[results.length - 1]! : (results as AppendResult)
    const end = last.physicalOffset + last.size
    const d = this.dispatcher
    if (d.reputOffset >= end) return results
    if (d.lastError && !d.busy) return this.#notReadable(results, last, d.lastError)
    return d.waitFor(end).then(() => (d.reputOffset < end && d.lastError ? this.#notReadable(results, last, d.lastError) : results))
  }

  /**
   * A put whose records were stored but could not be dispatched (a ConsumeQueue or the index
   * could not grow on a full disk) is not acknowledged: PUT_OK promises a message readable with
   * `get`. It fails with the dispatch's error (DISK_FULL). Its records stay in the CommitLog, which
   * must stay contiguous: the dispatcher retries them (every flushConsumeQueueIntervalMs, and on
   * the next open), so such a message becomes readable once space returns, at the queue offset it
   * took, and a producer that retries it stores it twice (at-least-once, as a send timeout does).
   * A put already answered FLUSH_DISK_TIMEOUT keeps that answer.
   */
  #notReadable<T>(results: T, last: AppendResult, cause: StoreError): T {
    if (last.status !== 'PUT_OK') return results
    throw new StoreError(cause.code, `message stored at CommitLog offset ${last.physicalOffset} but not readable: ${cause.message}`, { cause, details: { ...cause.details, physicalOffset: last.physicalOffset } })
  }

  /**
   * While dispatch is stopped (a ConsumeQueue or the index could not grow), appends are refused
   * before anything is written: their records could not be acknowledged anyway (see readable),
   * and after a reopen that could not finish re-dispatching, queue offsets are only known once it
   * has. A retry (at most every RETRY_AFTER_ERROR_MS) that gets through lets appends go again.
   */
  #dispatchCaughtUp(): boolean {
    const d = this.dispatcher
    if (d.lastError !== undefined) void d.kick()?.catch(() => undefined)
    // With a confirm offset dispatch normally trails the log (queue offsets past it were read at open).
    if (d.lastError !== undefined || (d.reputOffset < this.commitLog.committedOffset && !this.#confirm.enabled)) return false
    if (this.#queueOffsetsBehind) {
      this.#queueOffsetsBehind = false
      syncQueueOffsets(this.commitLog, this.consumeQueues)
    }
    return true
  }

  #dispatchStopped(): StoreError {
    const cause = this.dispatcher.lastError
    const why = cause ? cause.message : 'records recovered at open are still being dispatched'
    return new StoreError(cause?.code ?? 'DISK_FULL', `put refused, nothing stored: dispatch to the ConsumeQueues and the index is stopped (${why}); it resumes once space returns`, { cause })
  }

  readonly #readableOne = (r: AppendResult): AppendResult | Promise<AppendResult> => this.#readable(r)

  async #finishOne(r: AppendResult): Promise<PutResult> {
    return this.#readable(this.flushMode === 'async' ? r : await this.commitLog.waitFlushed(r))
  }

  async #finish(results: AppendResult[]): Promise<PutResult[]> {
    return this.#readable(this.flushMode === 'async' ? results : await this.commitLog.waitFlushed(results))
  }

  /**
   * Appends one message. With flush 'sync' it resolves once the message is on disk. With
   * confirmOffset: true it resolves by its flush mode alone: `get` finds the message once the
   * confirm offset passes its end.
   */
  put(message: PutMessage): Promise<PutResult> {
    if (this.status !== 'open') return Promise.reject(this.#notOpen())
    if (!this.#replication.takesPuts) return Promise.reject(this.#replication.wrongRole('put'))
    if (this.#deleting.size > 0 && this.#deleting.has(message?.topic)) {
      // Put once the deletion is done, from a copy: the caller may reuse its bytes once this returns.
      const own = ownPutMessage(message)
      return this.#afterDeletion(message.topic, () => this.put(own))
    }
    if ((this.dispatcher.lastError !== undefined || this.#queueOffsetsBehind) && !this.#dispatchCaughtUp()) return Promise.reject(this.#dispatchStopped())
    try {
      const prepared = this.#preparer.prepare(message, Date.now())
      const appended = this.commitLog.append([prepared], [this.#preparer.preparedState!], prepared.totalSize)
      if (Array.isArray(appended)) {
        const r = appended[0]!
        if (this.flushMode === 'async') return Promise.resolve(this.#readable(r))
        // Sync: waiters are resolved only after the records they wait for were dispatched (or
        // their dispatch failed: readable rejects the put then).
        return this.commitLog.waitFlushed(r).then(this.#readableOne)
      }
      ownMessageBytes(prepared)
      return appended.then((rs) => this.#finishOne(rs[0]!))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Appends messages contiguously in one file, with one flush wait. All or nothing. */
  async putBatch(messages: PutMessage[]): Promise<PutResult[]> {
    if (this.status !== 'open') throw this.#notOpen()
    if (!this.#replication.takesPuts) throw this.#replication.wrongRole('putBatch')
    if (!Array.isArray(messages)) throw new StoreError('INVALID_ARGUMENT', `putBatch takes an array of messages, got ${describe(messages)}`)
    if (messages.length === 0) return []
    if (this.#deleting.size > 0) {
      const deleting = messages.find((m) => this.#deleting.has(m?.topic))
      if (deleting) {
        const own = messages.map(ownPutMessage)
        return this.#afterDeletion(deleting.topic, () => this.putBatch(own))
      }
    }
    if ((this.dispatcher.lastError !== undefined || this.#queueOffsetsBehind) && !this.#dispatchCaughtUp()) throw this.#dispatchStopped()
    const states: TopicState[] = new Array(messages.length)
    const prepared: PreparedMessage[] = new Array(messages.length)
    let total = 0
    const now = Date.now()
    for (let i = 0; i < messages.length; i++) {
      const p = this.#preparer.prepare(messages[i]!, now)
      states[i] = this.#preparer.preparedState!
      prepared[i] = p
      total += p.totalSize
    }
    return this.#appendBatch(prepared, states, total)
  }

  /**
   * Appends the messages of a batch RocketMQ's clients encode (SEND_BATCH_MESSAGE's body), as
   * RocketMQ's putMessages of a MessageExtBatch: each message's flag, body and encoded properties
   * copied from the bytes as they are, the fields they share given once. As putBatch otherwise:
   * contiguous in one file, one flush wait, all or nothing. A malformed body, or one without a
   * message, is INVALID_ARGUMENT; `batch.body` is read before this returns, not after.
   */
  putEncodedBatch(batch: EncodedBatch): Promise<PutResult[]> {
    if (this.status !== 'open') return Promise.reject(this.#notOpen())
    if (!this.#replication.takesPuts) return Promise.reject(this.#replication.wrongRole('putEncodedBatch'))
    if (this.#deleting.size > 0 && this.#deleting.has(batch?.topic)) {
      // Put once the deletion is done, from a copy: the caller may reuse its bytes once this returns.
      const own = batch.body instanceof Uint8Array ? { ...batch, body: new Uint8Array(batch.body) } : batch
      return this.#afterDeletion(batch.topic, () => this.putEncodedBatch(own))
    }
    if ((this.dispatcher.lastError !== undefined || this.#queueOffsetsBehind) && !this.#dispatchCaughtUp()) return Promise.reject(this.#dispatchStopped())
    try {
      const b = this.#preparer.prepareEncodedBatch(batch, Date.now())
      return this.#appendBatch(b.messages, new Array<TopicState>(b.messages.length).fill(b.state), b.total, batch.body)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * putBatch's and putEncodedBatch's append: without a promise of its own when nothing waits. An
   * append that has to wait (a roll, a full staging area, earlier appends queued) copies the
   * caller's bytes first: an encoded batch's (`borrowed`: its messages are views of it), or each
   * message's body and properties.
   */
  #appendBatch(prepared: PreparedMessage[], states: TopicState[], total: number, borrowed?: Uint8Array): Promise<PutResult[]> {
    if (total + END_FILE_MIN_BLANK_LENGTH > this.commitLog.fileSizeBytes) {
      throw new StoreError('MESSAGE_TOO_LARGE', `batch of ${total} bytes does not fit in one CommitLog file of ${this.commitLog.fileSizeBytes} bytes`, { details: { bytes: total } })
    }
    const appended = this.commitLog.append(prepared, states, total)
    if (!Array.isArray(appended)) {
      if (borrowed !== undefined) ownBatchBytes(prepared, borrowed)
      else for (const m of prepared) ownMessageBytes(m)
      return appended.then((rs) => this.#finish(rs))
    }
    if (this.flushMode !== 'async') return this.#finish(appended)
    const readable = this.#readable(appended)
    return Array.isArray(readable) ? Promise.resolve(readable) : readable
  }

  /** The message stored at `physicalOffset`, decoded (body copied). */
  async lookup(physicalOffset: number): Promise<StoredMessage> {
    if (this.status !== 'open') throw this.#notOpen()
    checkOffset('physicalOffset', physicalOffset)
    const where = this.commitLog.recordAt(physicalOffset)
    if (!where) {
      throw new StoreError('INVALID_ARGUMENT', `no message at physical offset ${physicalOffset} (store holds ${this.commitLog.minOffset} to ${this.commitLog.wroteOffset})`, { details: { physicalOffset } })
    }
    // Staged chunk positions differ from file positions; check the record against its own offset.
    const check = checkRecord(where.buf, where.at, where.limit, physicalOffset, this.maxRecordBytes, false)
    if (check.kind !== 'record') {
      const reason = check.kind === 'bad' ? check.reason : check.kind === 'blank' ? 'the end-of-file blank starts there' : 'nothing was written there'
      throw new StoreError('INVALID_ARGUMENT', `no message starts at physical offset ${physicalOffset} (${reason})`, { details: { physicalOffset } })
    }
    return decodeRecord(where.buf, where.at, true, where.dv)
  }

  /**
   * Messages of `topic` whose KEYS (any space-separated key) or UNIQ_KEY equal `key`, newest
   * first, each once, at most `maxNum`, stored within [begin, end]. Hash collisions are filtered by
   * the real key. Bodies are copies. Needs the index (messageIndexEnable, the default).
   */
  async queryByKey(topic: string, key: string, options: QueryByKeyOptions = {}): Promise<StoredMessage[]> {
    if (this.status !== 'open') throw this.#notOpen()
    if (!this.index) throw new StoreError('INVALID_ARGUMENT', 'the key index is disabled (messageIndexEnable: false)')
    checkTopicText(topic)
    if (typeof key !== 'string' || key.length === 0) throw new StoreError('INVALID_ARGUMENT', `key must be a non-empty string, got ${describe(key)}`)
    const { maxNum, begin, end } = this.#keyQueryWindow(options)
    const found: StoredMessage[] = []
    const seen = new Set<number>()
    // Ask for more than maxNum, then for more again, while collisions are filtered out.
    for (let ask = maxNum; ; ask = Math.min(ask * 4, Number.MAX_SAFE_INTEGER)) {
      const offsets = this.#queryIndex(this.index, topic, key, ask, begin, end)
      found.length = 0
      seen.clear()
      for (const offset of offsets) {
        if (seen.has(offset)) continue
        seen.add(offset)
        const m = this.#keyMatchAt(offset, topic, key, begin, end)
        if (!m) continue
        found.push(m)
        if (found.length >= maxNum) return found
      }
      if (offsets.length < ask || ask === Number.MAX_SAFE_INTEGER) return found
    }
  }

  /** queryByKey's options checked, with their defaults. */
  #keyQueryWindow(options: QueryByKeyOptions): { maxNum: number; begin: number; end: number } {
    if (options === null || typeof options !== 'object') throw new StoreError('INVALID_ARGUMENT', `queryByKey options must be an object, got ${describe(options)}`)
    const maxNum = options.maxNum ?? 32
    const begin = options.begin ?? 0
    // By default up to now, or to the newest message if the clock has since stepped back.
    const end = options.end ?? Math.max(this.#now(), this.commitLog.lastStoreTimestamp)
    if (!Number.isSafeInteger(maxNum) || maxNum < 1) throw new StoreError('INVALID_ARGUMENT', `maxNum must be a positive integer, got ${describe(maxNum)}`)
    if (!Number.isSafeInteger(begin)) throw new StoreError('INVALID_ARGUMENT', `begin must be a store time in ms since the epoch (an integer), got ${describe(begin)}`)
    if (!Number.isSafeInteger(end)) throw new StoreError('INVALID_ARGUMENT', `end must be a store time in ms since the epoch (an integer), got ${describe(end)}`)
    if (begin > end) throw new StoreError('INVALID_ARGUMENT', `the time window is empty: begin ${begin} is after end ${end}`)
    return { maxNum, begin, end }
  }

  /** The index's offsets for a key; its errors become StoreErrors with the same code. */
  #queryIndex(index: IndexService, topic: string, key: string, maxNum: number, begin: number, end: number): number[] {
    try {
      return index.query(topic, key, { maxNum, begin, end })
    } catch (err) {
      if (err instanceof IndexError) throw new StoreError(err.code, `key index: ${err.message}`, { cause: err, details: err.details })
      throw ioError('querying the key index', err)
    }
  }

  /**
   * The message at `offset` when it is one of `topic` with `key` stored within [begin, end]. The
   * offset comes from the index, which is derived data: damaged bytes there can name an offset
   * outside the log or inside a record, so it is checked as a record at that very offset first.
   */
  #keyMatchAt(offset: number, topic: string, key: string, begin: number, end: number): StoredMessage | undefined {
    if (offset < this.commitLog.minOffset) return undefined
    // Not dispatched yet (past the confirm offset), whatever the index kept from before a crash.
    if (this.#confirm.enabled && offset >= this.dispatcher.reputOffset) return undefined
    const where = this.commitLog.recordAt(offset)
    if (!where) return undefined
    if (checkRecord(where.buf, where.at, where.limit, offset, this.maxRecordBytes, false).kind !== 'record') return undefined
    const m = decodeRecord(where.buf, where.at, true, where.dv)
    if (m.topic !== topic) return undefined
    if (!m.keys.includes(key) && m.properties[PROPERTY.UNIQ_KEY] !== key) return undefined
    if (m.storeTimestamp < begin || m.storeTimestamp > end) return undefined
    return m
  }

  /** Decodes an offset message id and returns its message. */
  async viewMessage(msgId: string): Promise<StoredMessage> {
    const id = typeof msgId === 'string' ? decodeMessageId(msgId) : undefined
    if (!id) throw new StoreError('INVALID_ARGUMENT', `msgId must be an offset message id (32 hex digits, 56 for an IPv6 store host), got ${describe(msgId)}`)
    return this.lookup(id.physicalOffset)
  }

  /** Next queue offset of (topic, queueId): the number of entries ever written to it. */
  maxQueueOffset(topic: string, queueId: number): number {
    checkQueueArgs(topic, queueId)
    return this.commitLog.topics.get(topic)?.queueOffsets[queueId] ?? 0
  }

  // -------------------------------------------------------------------------------------------
  // Topics (topics.ts)

  /**
   * The topics that have ConsumeQueues, each with its queue ids (what a broker registers and
   * reports): `{ topic, queueIds }[]`, sorted by topic, queue ids ascending.
   */
  topics(): TopicQueues[] {
    if (this.status !== 'open') throw this.#notOpen()
    return listTopics(this.consumeQueues)
  }

  /**
   * Deletes `topic`'s ConsumeQueues (files and folders) and every group's consumer offsets of
   * it, as RocketMQ's deleteTopics; its records stay in the CommitLog until retention. Its next
   * put takes queue offset 0 again; until then its queues read as unknown ones. Survives a crash
   * and a reopen (config/deletedTopics.json keeps its old records out of any rebuild). Puts of the
   * topic made meanwhile wait for it. Resolves false for a topic the store does not know.
   */
  deleteTopic(topic: string): Promise<boolean> {
    if (this.status !== 'open') return Promise.reject(this.#notOpen())
    try {
      checkTopicName(topic)
    } catch (err) {
      return Promise.reject(err)
    }
    const running = this.#deleting.get(topic)
    if (running) return running
    const store = this.#topicStore()
    if (!knowsTopic(store, topic)) return Promise.resolve(false)
    const deleting = deleteTopicData(store, topic)
      .then(() => true)
      .finally(() => this.#deleting.delete(topic))
    this.#deleting.set(topic, deleting)
    return deleting
  }

  /**
   * The topics deleted with deleteTopic whose records are still in the CommitLog, each with the
   * CommitLog offset the deletion was made at: the topic's records below it are the deleted ones,
   * those at or past it are new (a master tells its replicas, see followTopicDeletion).
   */
  deletedTopics(): Array<{ topic: string; offset: number }> {
    if (this.status !== 'open') throw this.#notOpen()
    return this.#deletedTopics.list()
  }

  /**
   * A replica follows its master's deletion of `topic`, made at the master's CommitLog offset
   * `offset` (the master's deletedTopics()): the topic's queues holding only records below it go,
   * with the topic's consumer offsets, and no record of it below `offset` reaches a queue again;
   * a queue with records past it (the topic made again since) stays. Resolves false, changing
   * nothing, when the replica's log does not reach `offset` yet (ask again later) or the deletion
   * was followed already. (A replica also follows deletions from the data: a record restarting a
   * queue at 0 empties that queue first; replica-deletions.ts.) WRONG_ROLE on a master.
   */
  followTopicDeletion(topic: string, offset: number): Promise<boolean> {
    if (this.status !== 'open') return Promise.reject(this.#notOpen())
    try {
      checkTopicName(topic)
      checkOffset('offset', offset)
    } catch (err) {
      return Promise.reject(err)
    }
    if (this.#replication.role !== 'replica') return Promise.reject(notAReplica(this.#replication.role))
    if (offset > this.commitLogMaxOffset) return Promise.resolve(false)
    return this.dispatcher.exclusive(() => followTopicDeletion(this.#topicStore(), topic, offset))
  }

  /**
   * Runs `then` once the deletion of `topic` under way has settled (whatever its outcome). The
   * puts waiting so count against maxPendingAppends, as appends waiting on the disk do.
   */
  #afterDeletion<T>(topic: string, then: () => Promise<T>): Promise<T> {
    const limit = this.commitLog.options.maxPendingAppends
    if (this.#waitingOnDeletion >= limit) {
      return Promise.reject(new StoreError('BUSY', `store busy, nothing written: ${this.#waitingOnDeletion} puts wait for the deletion of topic ${topic} (maxPendingAppends ${limit})`, { details: { pendingAppends: this.#waitingOnDeletion } }))
    }
    this.#waitingOnDeletion++
    const settled = (): Promise<T> => {
      this.#waitingOnDeletion--
      return then()
    }
    return this.#deleting.get(topic)!.then(settled, settled)
  }

  /** Whether this store follows a master's log (a replica, also while it opens). */
  #followsMaster(options: MessageStoreOptions): boolean {
    return (this.#replication?.role ?? options.role ?? 'master') === 'replica'
  }

  #topicStore(): TopicStore {
    return {
      commitLog: this.commitLog,
      consumeQueues: this.consumeQueues,
      dispatcher: this.dispatcher,
      consumerOffsets: this.consumerOffsets,
      checkpoint: this.#checkpoint,
      deletedTopics: this.#deletedTopics,
      flushMode: this.flushMode,
      flushConsumeQueues: () => this.#flushConsumeQueues(),
    }
  }

  /**
   * Reads up to `maxMessages` messages of one queue from `offset`, as RocketMQ's getMessage:
   * filtered by tag (hash first, then the real tag), stopping at `maxTransferBytes` (the first
   * message always goes), never past the end of the ConsumeQueue file holding `offset`.
   */
  get(request: GetMessageRequest): Promise<GetMessageResult> {
    if (this.status !== 'open') return Promise.reject(this.#notOpen())
    return readQueue(this, request, this.#maxTransferBytes)
  }

  /** First queue offset still readable in (topic, queueId); 0 for an unknown queue. */
  minOffset(topic: string, queueId: number): number {
    checkQueueArgs(topic, queueId)
    return this.consumeQueues.find(topic, queueId)?.minOffset ?? 0
  }

  /** Queue offset after the last dispatched message of (topic, queueId); 0 for an unknown queue. */
  maxOffset(topic: string, queueId: number): number {
    checkQueueArgs(topic, queueId)
    return this.consumeQueues.find(topic, queueId)?.maxOffset ?? 0
  }

  async #storeTimeAt(cq: ConsumeQueue, unit: number): Promise<number | undefined> {
    const u = await cq.unitAt(unit)
    if (!u || u.size === CQ_FILLER_SIZE) return undefined
    const where = this.commitLog.recordAt(u.physicalOffset)
    return where ? readStoreTimestamp(where.buf, where.at) : undefined
  }

  /**
   * The first queue offset whose message was stored at or after `timestampMs` (binary search on
   * store time); maxOffset when every message is older, minOffset when every one is newer.
   */
  async offsetByTime(topic: string, queueId: number, timestampMs: number): Promise<number> {
    if (this.status !== 'open') throw this.#notOpen()
    checkQueueArgs(topic, queueId)
    if (typeof timestampMs !== 'number' || Number.isNaN(timestampMs)) throw new StoreError('INVALID_ARGUMENT', `timestampMs must be a number, got ${describe(timestampMs)}`)
    const cq = this.consumeQueues.find(topic, queueId)
    if (!cq) return 0
    let lo = cq.minOffset
    let hi = cq.maxOffset
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2)
      const t = await this.#storeTimeAt(cq, mid)
      if (t === undefined || t < timestampMs) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** Store time of the oldest readable message of (topic, queueId), or -1 when there is none. */
  async earliestMessageTime(topic: string, queueId: number): Promise<number> {
    if (this.status !== 'open') throw this.#notOpen()
    checkQueueArgs(topic, queueId)
    const cq = this.consumeQueues.find(topic, queueId)
    if (!cq) return -1
    for (let unit = cq.minOffset; unit < cq.maxOffset; unit++) {
      const t = await this.#storeTimeAt(cq, unit)
      if (t !== undefined) return t
    }
    return -1
  }

  /**
   * Calls `listener(topic, queueId, maxOffset)` after new messages of a queue are dispatched
   * (for long polling). Returns a function that removes it.
   */
  onMessageArrived(listener: MessageArrivedListener): () => void {
    if (typeof listener !== 'function') throw new StoreError('INVALID_ARGUMENT', 'listener must be a function')
    this.#arrivalListeners.add(listener)
    this.consumeQueues.tracking = true
    return () => {
      this.#arrivalListeners.delete(listener)
      this.consumeQueues.tracking = this.#arrivalListeners.size > 0
    }
  }

  /** Bytes of CommitLog not yet dispatched to the ConsumeQueues. */
  get dispatchLagBytes(): number {
    return this.dispatcher.lagBytes
  }

  /** Resolves once everything appended so far (up to the confirm offset, with one) is readable through `get`. */
  async whenDispatched(): Promise<void> {
    if (this.status !== 'open') throw this.#notOpen()
    if (this.flushMode === 'sync') await this.commitLog.flush()
    await this.dispatcher.drain()
  }

  // -------------------------------------------------------------------------------------------
  // Consumer offsets

  /** Records that `group` will next read `offset` of (topic, queueId); persisted periodically. */
  commitOffset(group: string, topic: string, queueId: number, offset: number): void {
    if (this.status !== 'open') throw this.#notOpen()
    if (typeof group !== 'string' || group.length === 0 || group.includes('@')) throw new StoreError('INVALID_ARGUMENT', `group must be a non-empty string without '@', got ${describe(group)}`)
    // As a put's: offsets of a queue no put could make would be persisted for nothing.
    checkTopicName(topic)
    checkPutQueueId(queueId, this.#maxQueuesPerTopic)
    checkOffset('offset', offset)
    this.consumerOffsets.commit(group, topic, queueId, offset)
  }

  /** The offset `group` committed for (topic, queueId), or -1 when it never did. */
  committedOffset(group: string, topic: string, queueId: number): number {
    if (this.status !== 'open') throw this.#notOpen()
    return this.consumerOffsets.get(group, topic, queueId)
  }

  /** Writes consumer offsets now (they are also written periodically and on close). */
  async persistConsumerOffsets(): Promise<void> {
    if (this.status !== 'open') throw this.#notOpen()
    await this.consumerOffsets.persist()
  }

  // -------------------------------------------------------------------------------------------
  // Retention

  /**
   * Runs one retention pass now (it also runs every `cleanResourceIntervalMs`): deletes expired
   * CommitLog files if it is a deleteWhen hour or the disk is over diskMaxUsedSpaceRatio (any
   * file, expired or not, over diskSpaceCleanForciblyRatio), then the ConsumeQueue files that
   * point only below the CommitLog's new minimum. `manual` deletes expired files at any hour.
   */
  async deleteExpiredFiles(options: { manual?: boolean } = {}): Promise<RetentionResult> {
    if (this.status !== 'open') throw this.#notOpen()
    return this.retention.run(options.manual ?? false)
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

  // -------------------------------------------------------------------------------------------
  // Raw CommitLog (replication)

  /** Offset of the first CommitLog byte still held (0 until retention deletes a file). */
  get commitLogMinOffset(): number {
    return this.commitLog.minOffset
  }

  /**
   * End of the committed CommitLog: bytes below it are readable with readCommitLog (in the page
   * cache with flush 'async', on disk with 'sync'); appends not yet handed to the OS are past it.
   */
  get commitLogMaxOffset(): number {
    return this.commitLog.committedOffset
  }

  /**
   * Up to `maxBytes` committed CommitLog bytes from `offset` (any offset, not only a record
   * start), as a view of the file's mapping (read-only): empty when nothing is committed there
   * yet; it stops at the end of the file holding `offset`. OFFSET_OUT_OF_RANGE below
   * commitLogMinOffset or past commitLogMaxOffset. On a store opened with confirmOffset: true it
   * also stops at the confirm offset (past it: OFFSET_OUT_OF_RANGE), unless `{ unconfirmed: true }`
   * (replication reads what its replicas have not acknowledged yet).
   */
  readCommitLog(offset: number, maxBytes: number, options?: { unconfirmed?: boolean }): Buffer {
    if (this.status !== 'open') throw this.#notOpen()
    return readCommitLogBytes(this.commitLog, offset, maxBytes, this.#confirm.readLimit(unconfirmedOption(options)))
  }

  /**
   * The confirm offset (confirmOffset: true): dispatch, `get` and key queries see the records
   * ending at or below it. Without confirmOffset it is commitLogMaxOffset (everything committed
   * is visible).
   */
  get confirmOffset(): number {
    return this.#confirm.value
  }

  /**
   * Sets the confirm offset (what every in-sync replica holds; it may fall inside a record) and
   * dispatches the records that now end at or below it: `get` finds them and onMessageArrived
   * fires (once dispatched: whenDispatched() waits for it). OFFSET_OUT_OF_RANGE past
   * commitLogMaxOffset or below what was already dispatched (consumers may have seen it);
   * INVALID_ARGUMENT without confirmOffset: true. Durable with the checkpoint, synced within
   * flushConsumeQueueIntervalMs (a crash before that reopens at the value synced last, a lowered
   * one included): confirm-offset.ts has the rules.
   */
  setConfirmOffset(offset: number): void {
    if (this.status !== 'open') throw this.#notOpen()
    this.#confirm.set(offset)
  }

  /**
   * Calls `listener(commitLogMaxOffset)` synchronously each time committed bytes are added (after
   * a put's bytes reach the map, or a sync-flush group its file), for any number of listeners
   * (replication wakes on it). Keep it cheap: coalesce work with setImmediate. Returns a function
   * that removes it.
   */
  onCommitted(listener: CommittedListener): () => void {
    if (this.status !== 'open') throw this.#notOpen()
    if (typeof listener !== 'function') throw new StoreError('INVALID_ARGUMENT', `listener must be a function, got ${describe(listener)}`)
    const set = this.commitLog.committedListeners
    set.add(listener)
    return () => {
      set.delete(listener)
    }
  }

  // -------------------------------------------------------------------------------------------
  // Roles and replica appends (replica.ts)

  /** 'master' takes puts, 'replica' takes appendReplicated (see setRole). */
  get role(): StoreRole {
    return this.#replication.role
  }

  /**
   * Where the next appendReplicated must start: the end of the written log plus the bytes held
   * of a record the last chunk cut (never written to the files until it is whole). What a
   * replica acknowledges to its master is commitLogMaxOffset instead (RocketMQ's slave reports
   * its max physical offset): the end of its whole records, committed, and with flush 'sync' on
   * disk once the appendReplicated that carried them resolved. After a reopen both are equal.
   */
  get replicaEndOffset(): number {
    return this.#replication.endOffset
  }

  /**
   * A replica appends `bytes` of its master's CommitLog (from readCommitLog) at `offset`, which
   * must be replicaEndOffset (else OFFSET_MISMATCH, nothing written). A chunk may cut a record
   * anywhere; whole records are written as they are and dispatched as on the master. Checked
   * before anything is written: CORRUPT_RECORD for bytes that are not records, FILE_SIZE_MISMATCH
   * when the master's commitLogFileSize differs. Resolves once the whole records it carried are
   * dispatched (readable with get), with flush 'sync' on disk. WRONG_ROLE on a master. A full
   * disk (DISK_FULL) may stop it part way: what it wrote is committed, replicaEndOffset says
   * where to go on; records stored but not dispatched are dispatched once space returns, as a
   * put's. A record its ConsumeQueue refuses at dispatch (CORRUPT_RECORD) is not kept: the log is
   * cut back to it with what follows, and this call and the chunks behind it fail.
   */
  appendReplicated(offset: number, bytes: Buffer): Promise<void> {
    if (this.status !== 'open') return Promise.reject(this.#notOpen())
    return this.#replication.append(offset, bytes)
  }

  /**
   * Changes the role while open; the same role is a no-op. Replica to master: the chunks under
   * way are written and dispatched, the bytes held of a cut record dropped, then puts continue
   * after the last replicated record, each queue's offsets densely. Master to replica: puts are
   * refused at once, those under way finish (durable and dispatched), then appendReplicated
   * continues at the store's end.
   */
  async setRole(role: StoreRole): Promise<void> {
    if (this.status !== 'open') throw this.#notOpen()
    await this.#replication.setRole(role)
  }

  /**
   * Raises each queue's next offset past the records the dispatcher has not reached (those past
   * a confirm offset), so puts continue after them instead of reusing their queue offsets.
   */
  #queueOffsetsPastDispatch(): void {
    if (this.#confirm.enabled) raiseQueueOffsetsPast(this.commitLog, this.dispatcher.reputOffset, Number.POSITIVE_INFINITY, this.#deletedTopics)
  }

  /**
   * Cuts the CommitLog back to `offset` (the start of a record, a file, or the end of the log:
   * a no-op but for a replica's held part of a cut record, which goes), and the ConsumeQueues and the key index with it; later appends continue at
   * `offset`, each queue densely from its new end. Appends made before go first; appends made
   * meanwhile wait for it. Crash-safe: a kill or power loss part way leaves, after the next open,
   * the old log or the cut one (truncate.ts, docs/design/recovery.md). A failure part way makes
   * the store refuse writes until reopened. While dispatch is stopped only a cut at or below
   * where it stopped is taken (it removes the record dispatch failed on, and clears the error).
   */
  async truncate(offset: number): Promise<void> {
    if (this.status !== 'open') throw this.#notOpen()
    const belowStop = this.dispatcher.lastError !== undefined && offset <= this.dispatcher.reputOffset
    if ((this.dispatcher.lastError !== undefined || this.#queueOffsetsBehind) && !belowStop && !this.#dispatchCaughtUp()) {
      const cause = this.dispatcher.lastError
      const why = cause ? cause.message : 'records recovered at open are still being dispatched'
      throw new StoreError(cause?.code ?? 'DISK_FULL', `truncate refused, nothing changed: dispatch to the ConsumeQueues and the index is stopped (${why})`, { cause })
    }
    await truncateStore(
      {
        commitLog: this.commitLog,
        consumeQueues: this.consumeQueues,
        dispatcher: this.dispatcher,
        index: this.index,
        checkpoint: this.#checkpoint,
        consumeQueueFlushSettled: async () => {
          await this.#cqFlushing?.catch(() => undefined)
        },
        afterCut: async (end) => {
          // The confirm offset was lowered with the log (truncate.ts): its bookkeeping follows.
          await this.#confirm.recovered()
          // Records kept below the cut but past the confirm offset still hold their queue offsets.
          this.#queueOffsetsPastDispatch()
          // A replica's bytes of a record past the cut are gone with it.
          this.#replication.dropHeld()
          // A deletion recorded past the new end would hide the topic's records appended next.
          if (this.#deletedTopics.clamp(end)) await this.#deletedTopics.save()
        },
        // A cut at a replica's written end still drops the part of a record it holds past it.
        atEnd: () => this.#replication.dropHeld(),
      },
      offset,
    )
  }

  /** Makes everything appended so far durable. */
  async flush(): Promise<void> {
    if (this.status !== 'open') throw this.#notOpen()
    await this.commitLog.flush()
  }

  /**
   * Drains pending appends, flushes, writes the checkpoint and marks a clean shutdown. Idempotent.
   *
   * The abort marker goes exactly when the data files agree with the checkpoint: the CommitLog,
   * the ConsumeQueues and the index synced (a dispatch stopped by a full disk does not count: the
   * checkpoint says how far the queues go, and the next open re-dispatches the rest). A close
   * that resolves has removed it; one that could not sync rejects with the first error (typed:
   * DISK_FULL for ENOSPC) and leaves it, so the next open recovers as after a crash. Consumer
   * offsets that cannot be written reject the close too, but keep no marker: they are not data
   * the recovery could rebuild.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing
    this.status = 'closing'
    this.#closing = (async () => {
      for (const t of this.#timers) clearInterval(t)
      // A topic deletion under way finishes first (it flushes and removes files).
      await Promise.allSettled(this.#deleting.values())
      // Where the CommitLog starts, as the next open will find it (the files are closed below).
      const commitLogMin = this.commitLog.minOffset
      let failed: StoreError | undefined
      let durable = true
      const fail = (what: string, err: unknown, dataLeft: boolean): void => {
        failed ??= ioError(what, err)
        if (dataLeft) durable = false
      }
      try {
        await this.commitLog.close(async () => {
          // A dispatch stopped by a full disk leaves records for the next open to dispatch.
          await this.dispatcher.drain().catch(() => undefined)
          await this.#cqFlushing?.catch(() => undefined)
          try {
            await this.#flushConsumeQueues()
          } catch (err) {
            fail('syncing the ConsumeQueues', err, true)
          }
        })
      } catch (err) {
        fail('closing the CommitLog', err, true)
      }
      try {
        await this.consumerOffsets.persist()
      } catch (err) {
        fail('persisting consumer offsets', err, false)
      }
      await this.consumeQueues.close().catch((err) => fail('closing the ConsumeQueues', err, true))
      if (this.index) await this.index.close().catch((err) => fail('closing the index', err, true))
      // The next open takes the queues' offsets from this summary instead of reading their files;
      // without one (a full disk) it reads them, so a failed write costs no crash recovery.
      if (failed === undefined && durable && !this.commitLog.failed) {
        await this.consumeQueues.saveSummary(this.commitLog.flushedOffset, commitLogMin).catch(() => undefined)
      }
      try {
        try {
          await this.#checkpoint.flush()
          await this.#checkpoint.close()
        } catch (err) {
          fail('writing the checkpoint', err, true)
        }
        // A CommitLog that failed an fdatasync earlier: what it holds past the checkpoint is unsure.
        if (this.commitLog.failed) fail('closing the CommitLog', this.commitLog.failed, true)
        if (durable) await this.#io.remove(path.join(this.dir, STORE_PATHS.abort)).catch((err) => fail('removing the abort marker', err, true))
        await this.#io.remove(path.join(this.dir, STORE_PATHS.lock)).catch(() => undefined)
      } finally {
        openDirs.delete(this.dir)
        this.status = 'closed'
        this.#io.reclaim()
      }
      if (failed !== undefined) throw failed
    })()
    return this.#closing
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}

/** A put's message with copies of what the caller may change (bytes, keys, properties), for a put made later. */
function ownPutMessage(m: PutMessage): PutMessage {
  if (m === null || typeof m !== 'object' || Array.isArray(m)) return m
  const own = { ...m }
  if (m.body instanceof Uint8Array) own.body = new Uint8Array(m.body)
  if (m.propertiesBytes instanceof Uint8Array) own.propertiesBytes = new Uint8Array(m.propertiesBytes)
  if (Array.isArray(m.keys)) own.keys = [...m.keys]
  if (m.properties !== null && typeof m.properties === 'object' && !Array.isArray(m.properties)) own.properties = { ...m.properties }
  return own
}

/**
 * Points a prepared message at copies of the caller's bytes it refers to (its body, properties
 * given as bytes), for an append that writes it later: a put reads its message before it returns.
 */
function ownMessageBytes(m: PreparedMessage): void {
  m.body = new Uint8Array(m.body)
  const p = m.properties
  if (typeof p !== 'string') {
    m.properties = new Uint8Array(p.subarray(m.propertiesAt, m.propertiesAt + m.propertiesBytes))
    m.propertiesAt = 0
  }
}

/**
 * Points an encoded batch's prepared messages at a copy of `bytes` (their bodies are views of
 * it, their properties a range of it), for an append that writes them later.
 */
function ownBatchBytes(prepared: PreparedMessage[], bytes: Uint8Array): void {
  const copy = new Uint8Array(bytes) // a copy (Buffer#slice would be a view)
  for (const m of prepared) {
    m.body = new Uint8Array(copy.buffer, copy.byteOffset + (m.body.byteOffset - bytes.byteOffset), m.body.length)
    if (m.properties === bytes) m.properties = copy
  }
}
