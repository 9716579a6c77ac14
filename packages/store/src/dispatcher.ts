/**
 * The dispatcher follows the CommitLog (RocketMQ's ReputMessageService): from `reputOffset` up to
 * the CommitLog's committed offset it reads each record's dispatch view and hands it to every
 * listener in order (the ConsumeQueue builder first, then the index). Listeners run
 * synchronously and may return a promise when they must open a file; the dispatcher then waits
 * for it before the next record, so every listener sees records in CommitLog order exactly once
 * per pass. A listener must be idempotent: recovery replays records it may have seen.
 *
 * It is kicked after every commit, so in the common case a record is dispatched before the put
 * that wrote it returns; a kick while a pass runs just extends the pass.
 */
import { StoreError } from './errors.js'
import type { AppendResult, CommitLog, TopicState } from './commit-log.js'
import {
  BLANK_MAGIC_CODE,
  DEFAULT_DELAY_LEVELS_MS,
  MESSAGE_MAGIC_CODE_V1,
  MESSAGE_MAGIC_CODE_V2,
  SCHEDULE_TOPIC,
  deliverTagsCodeOfProperties,
  readDispatchRequest,
  verifyRecord,
  type DispatchRequest,
  type PreparedMessage,
} from './codec/index.js'

/** After a failed pass, appends do not retry dispatch more often than this (the timer does). */
export const RETRY_AFTER_ERROR_MS = 1000

/**
 * The error a failed dispatch reports: a StoreError as it is; a full disk met by another
 * package's listener (the index's IndexError with code DISK_FULL) as DISK_FULL; else IO_ERROR.
 */
export function dispatchError(err: unknown, physicalOffset: number): StoreError {
  if (err instanceof StoreError) return err
  const code = (err as { code?: unknown } | undefined)?.code
  const message = (err as Error | undefined)?.message ?? String(err)
  if (code === 'DISK_FULL' || code === 'ENOSPC' || code === 'EDQUOT') {
    return new StoreError('DISK_FULL', `disk full while dispatching the record at CommitLog offset ${physicalOffset} (${message})`, { cause: err, details: { physicalOffset } })
  }
  return new StoreError('IO_ERROR', `dispatch failed at CommitLog offset ${physicalOffset}: ${message}`, { cause: err, details: { physicalOffset } })
}

export interface DispatchListener {
  readonly name: string
  /** Whether the listener reads `keys` and `uniqKey` (costs a string decode per record). */
  readonly wantsKeys: boolean
  dispatch(request: DispatchRequest): void | Promise<void>
}

export class Dispatcher {
  /** CommitLog offset of the next record to dispatch. */
  reputOffset = 0
  /** Set when a pass stopped on an error; the next kick retries. */
  lastError: StoreError | undefined
  private lastErrorAt = 0
  private running: Promise<void> | undefined
  private again = false
  private readonly request: DispatchRequest = {
    topic: '',
    queueId: 0,
    physicalOffset: 0,
    size: 0,
    tagsCode: 0,
    storeTimestamp: 0,
    queueOffset: 0,
    sysFlag: 0,
    keys: undefined,
    uniqKey: undefined,
  }
  private wantsKeys = false
  /**
   * Dispatch stops here even when more is committed: the confirm offset (what every in-sync
   * replica holds), +Infinity when the store does not use one.
   */
  confirmLimit = Number.POSITIVE_INFINITY
  /**
   * A record cut by the limit is waited for instead of reported as damage: a replica's log ends
   * inside a record between two chunks from its master, and a confirm offset may fall inside one.
   * On a master without a confirm offset the committed end is always a record boundary.
   */
  partialTail = false
  /**
   * The store's delay levels (messageDelayLevel) in ms: a SCHEDULE_TOPIC_XXXX record's tags code is
   * its delivery time, the same on the append's fast path and when following the log.
   */
  delayLevelsMs: readonly number[] = DEFAULT_DELAY_LEVELS_MS
  /**
   * Records below `upTo` are checked before they are dispatched (structure, topic alphabet and,
   * with `crc`, the body CRC): recovery sets it to the durable offset while it re-dispatches
   * records its scan did not read (it trusts them), so damage there is CORRUPT_RECORD instead of
   * a topic made of garbage bytes becoming a ConsumeQueue folder.
   */
  verify: { upTo: number; maxRecordBytes: number; crc: boolean } = { upTo: 0, maxRecordBytes: 0, crc: false }

  constructor(
    private readonly commitLog: CommitLog,
    private readonly listeners: DispatchListener[],
    /** Called after each pass that dispatched something. */
    private readonly onPassDone: () => void,
  ) {
    this.wantsKeys = listeners.some((l) => l.wantsKeys)
  }

  addListener(listener: DispatchListener): void {
    this.listeners.push(listener)
    this.wantsKeys ||= listener.wantsKeys
  }

  /** Stops feeding `listener` (a replica's queue-offset follower once it is promoted). */
  removeListener(listener: DispatchListener): void {
    const i = this.listeners.indexOf(listener)
    if (i >= 0) this.listeners.splice(i, 1)
  }

  /** Whether a pass is under way (it may yet get past a record that failed before). */
  get busy(): boolean {
    return this.running !== undefined
  }

  /** Where dispatch stops: the committed offset, or the confirm offset when lower. */
  get limit(): number {
    const committed = this.commitLog.committedOffset
    return committed < this.confirmLimit ? committed : this.confirmLimit
  }

  /**
   * End of what the listeners have seen: reputOffset, or past it while a pass waits in the middle
   * of a record (its ConsumeQueue unit may be written, its index entry not yet).
   */
  get dispatchedEnd(): number {
    if (!this.running) return this.reputOffset
    const inFlight = this.request.physicalOffset + this.request.size
    return inFlight > this.reputOffset ? inFlight : this.reputOffset
  }

  /** How far the dispatcher trails the CommitLog, in bytes. */
  get lagBytes(): number {
    return Math.max(0, this.commitLog.committedOffset - this.reputOffset)
  }

  /**
   * Dispatches everything committed; returns the pass (undefined when it finished synchronously
   * or there was nothing to do). After an error, a new attempt is made only once
   * RETRY_AFTER_ERROR_MS has passed, unless `force`.
   */
  kick(force = false): Promise<void> | undefined {
    if (this.running) {
      this.again = true
      return this.running
    }
    if (this.reputOffset >= this.limit) return undefined
    if (this.lastError && !force && Date.now() - this.lastErrorAt < RETRY_AFTER_ERROR_MS) return undefined
    const pass = this.pass()
    return pass ? this.track(pass) : undefined
  }

  /** Marks an asynchronous pass as running; when it ends, kicks again if appends came meanwhile. */
  private track(pass: Promise<void>): Promise<void> {
    this.running = pass.finally(() => {
      this.running = undefined
      if (this.again && !this.lastError) {
        this.again = false
        void this.kick()?.catch(() => undefined)
      }
      this.again = false
    })
    return this.running
  }

  /**
   * Records just written (and committed) by an append: when the dispatcher is idle and exactly at
   * the first of them, they are dispatched from what the append knew, without reading them back
   * (the same requests a pass would build). Otherwise a normal pass follows the log.
   */
  appended(ms: readonly PreparedMessage[], states: readonly TopicState[], results: readonly AppendResult[]): void {
    const last = results[results.length - 1]
    // Past the confirm offset the pass decides (it stops there, inside a record if need be).
    if (this.running || this.lastError || !last || results[0]!.physicalOffset !== this.reputOffset || last.physicalOffset + last.size > this.confirmLimit) {
      void this.kick()?.catch(() => undefined)
      return
    }
    const req = this.request
    const listeners = this.listeners
    for (let i = 0; i < ms.length; i++) {
      const m = ms[i]!
      const r = results[i]!
      req.topic = states[i]!.topic
      req.queueId = m.queueId
      req.physicalOffset = r.physicalOffset
      req.size = r.size
      req.tagsCode = m.tagsCode
      if (req.topic === SCHEDULE_TOPIC && m.propertiesBytes > 0) {
        // The delivery time, known only now that the store time is (codec/schedule.ts).
        const p = m.properties
        const text = typeof p === 'string' ? p : Buffer.from(p.buffer, p.byteOffset + m.propertiesAt, m.propertiesBytes).toString('utf8')
        const deliverAt = deliverTagsCodeOfProperties(text, r.storeTimestamp, this.delayLevelsMs)
        if (deliverAt !== undefined) req.tagsCode = deliverAt
      }
      req.storeTimestamp = r.storeTimestamp
      req.queueOffset = r.queueOffset
      req.sysFlag = m.sysFlag
      req.keys = m.keys
      req.uniqKey = m.uniqKey
      for (let k = 0; k < listeners.length; k++) {
        let p: void | Promise<void>
        try {
          p = listeners[k]!.dispatch(req)
        } catch (err) {
          // A queue that cannot grow (a full disk): the record stays in the log, undispatched;
          // the puts waiting on it learn it from lastError (MessageStore.readable).
          this.setError(err)
          if (i > 0) this.onPassDone()
          return
        }
        if (p) {
          // A listener must open a file: finish this record and the rest through the log.
          void this.track(this.continueAsync(p, k, i > 0))
          return
        }
      }
      this.reputOffset = r.physicalOffset + r.size
    }
    this.onPassDone()
  }

  /**
   * Resolves once the dispatcher has passed CommitLog offset `end` (or stopped on an error: the
   * record is stored all the same, and the next pass retries).
   */
  async waitFor(end: number): Promise<void> {
    while (this.reputOffset < end) {
      const p = this.kick()
      if (!p) return
      await p.catch(() => undefined)
      if (this.lastError) return
    }
  }

  /**
   * Runs `fn` between passes: a pass under way finishes first, and dispatch waits for `fn` (kicks
   * meanwhile are taken up once it settles). For changes a record dispatched meanwhile would race.
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.running) await this.running.catch(() => undefined)
    const result = fn()
    this.again = true
    const settled = result.then(
      () => undefined,
      () => undefined,
    )
    void this.track(settled)
    return result
  }

  /** Resolves once everything committed is dispatched; throws the error that stopped it. */
  async drain(): Promise<void> {
    let attempts = 0
    for (;;) {
      if (this.running) await this.running
      if (this.reputOffset >= this.limit) return
      if (this.lastError && attempts++ > 0) throw this.lastError
      const before = this.reputOffset
      const p = this.kick(true)
      if (p) await p
      if (this.lastError) throw this.lastError
      if (this.reputOffset === before && !p) return
    }
  }

  /**
   * One pass: synchronous until a listener returns a promise; then continues asynchronously.
   * Returns undefined when it finished synchronously.
   */
  private pass(): Promise<void> | undefined {
    const log = this.commitLog
    const listeners = this.listeners
    const req = this.request
    let dispatched = false
    try {
      for (;;) {
        const limit = this.limit
        if (this.reputOffset >= limit) break
        const file = log.queue.findFile(this.reputOffset)
        if (!file) {
          // Below the first file (deleted by retention): start at the first one.
          const first = log.queue.first
          if (first && this.reputOffset < first.fileFromOffset) {
            this.reputOffset = first.fileFromOffset
            continue
          }
          break
        }
        const pos = this.reputOffset - file.fileFromOffset
        const view = file.view
        const dv = file.dataView
        const end = Math.min(file.committedPosition, limit - file.fileFromOffset)
        if (pos >= end) {
          if (file.committedPosition >= file.fileSize) {
            this.reputOffset = file.fileFromOffset + file.fileSize
            continue
          }
          break
        }
        // Fewer bytes than a record's size and magic: the rest comes later (see partialTail).
        if (this.partialTail && end - pos < 8) break
        const magic = dv.getInt32(pos + 4)
        if (magic === BLANK_MAGIC_CODE) {
          this.reputOffset = file.fileFromOffset + file.fileSize
          continue
        }
        const size = dv.getInt32(pos)
        const message = magic === MESSAGE_MAGIC_CODE_V1 || magic === MESSAGE_MAGIC_CODE_V2
        // The rest of a record cut by the limit comes later (see partialTail).
        if (message && this.partialTail && size > 0 && pos + size > end && pos + size <= file.fileSize) break
        if (!message || size <= 0 || pos + size > end) {
          throw new StoreError('CORRUPT_RECORD', `dispatch found no valid record at CommitLog offset ${this.reputOffset}`, { details: { physicalOffset: this.reputOffset } })
        }
        if (this.reputOffset < this.verify.upTo) {
          const checked = verifyRecord(view, pos, end, this.reputOffset, this.verify.maxRecordBytes, this.verify.crc)
          if (checked !== size) {
            const reason = typeof checked === 'string' ? checked : `record of ${checked} bytes where its header says ${size}`
            throw new StoreError('CORRUPT_RECORD', `CommitLog corrupt at offset ${this.reputOffset} (${reason}), below the durable offset ${this.verify.upTo}, found while rebuilding the ConsumeQueues; open with onCorruption: 'truncate' to cut the log there`, {
              details: { physicalOffset: this.reputOffset, reason, durableOffset: this.verify.upTo },
            })
          }
        }
        readDispatchRequest(view, dv, pos, this.wantsKeys, req, this.delayLevelsMs)
        for (let i = 0; i < listeners.length; i++) {
          const r = listeners[i]!.dispatch(req)
          if (r) {
            // Finish this record's remaining listeners asynchronously, then go on.
            return this.continueAsync(r, i, dispatched)
          }
        }
        dispatched = true
        this.lastError = undefined
        this.reputOffset += size
      }
    } catch (err) {
      this.setError(err)
    }
    if (dispatched) this.onPassDone()
    return undefined
  }

  /** Forgets the error that stopped the last pass (recovery cut the log where it stopped). */
  clearError(): void {
    this.lastError = undefined
  }

  private setError(err: unknown): void {
    this.lastError = dispatchError(err, this.reputOffset)
    this.lastErrorAt = Date.now()
  }

  private async continueAsync(pending: Promise<void>, index: number, dispatchedBefore: boolean): Promise<void> {
    try {
      await pending
      // The request object is reused; re-read it, since another pass may not run meanwhile.
      const req = this.request
      for (let i = index + 1; i < this.listeners.length; i++) {
        const r = this.listeners[i]!.dispatch(req)
        if (r) await r
      }
      this.lastError = undefined
      this.reputOffset += req.size
    } catch (err) {
      this.setError(err)
      if (dispatchedBefore) this.onPassDone()
      return
    }
    this.onPassDone()
    const next = this.pass()
    if (next) await next
  }
}
