/**
 * The CommitLog: every message of every topic appended to one log of fixed-size files.
 *
 * Write path (docs/design/mmap.md):
 * - flush 'async': records are encoded straight into the shared map (the page cache), so a
 *   process crash loses nothing. Files are sparse; every range is prefaulted (blocks reserved)
 *   before a byte is written through the map, so a full disk is an error, never a SIGBUS. A
 *   background flusher fdatasyncs every `flushIntervalMs` when at least `flushLeastPages` pages
 *   are dirty, and unconditionally every `flushThoroughIntervalMs`.
 * - flush 'sync': records are encoded into staging chunks and reach the (zero-filled) file by
 *   group commit (group-commit.ts, which also holds the waiters of both modes).
 *
 * This module is the append path: topic state, append, roll to a new file, encoding into the
 * files (or the staging chunks), the async flusher, retention's file deletion and reads of a
 * record. Recovery at open is recovery.ts.
 *
 * Appends are synchronous on the fast path; a roll to a new file (or a full staging area) makes
 * later appends queue behind it in order, so records stay in call order and a batch is contiguous.
 */
import type { StoreCheckpoint } from './checkpoint.js'
import { StoreError, ioError } from './errors.js'
import { bodyCrcBatch } from './crc.js'
import type { FileIO } from './file-io.js'
import { END_FILE_MIN_BLANK_LENGTH, encodeBlank, encodeRecord, MessageIdEncoder, takesQueueOffset, type BodyCopier, type Host, type PreparedMessage } from './codec/index.js'
import { FlushWaiters, GroupCommit, type StageChunk } from './group-commit.js'
import { OS_PAGE_BYTES, type MappedFile } from './mapped-file.js'
import { MappedFileQueue } from './mapped-file-queue.js'
import { cutOpenLog, recover, truncateRecovered, type RecoveryReport } from './recovery.js'
import { writeRunSync } from './run-write.js'

export type { RecoveryReport } from './recovery.js'

/** Async flush without background prefault: how far ahead of the write position the writer keeps the map prefaulted. */
export const PREFAULT_AHEAD_BYTES = 4 * 1024 * 1024
/**
 * Async flush with background prefault (FileIO.canPrefaultInBackground): the thread pool faults
 * the map in PREFAULT_CHUNK_BYTES at a time, one range at a time, until it is
 * PREFAULT_BACKGROUND_AHEAD_BYTES past the write position. The writer faults in a range itself
 * (at least PREFAULT_MIN_BYTES) only when it catches up. A new file gets its first
 * PREFAULT_AHEAD_BYTES before it is handed out.
 */
export const PREFAULT_CHUNK_BYTES = 2 * 1024 * 1024
export const PREFAULT_BACKGROUND_AHEAD_BYTES = 16 * 1024 * 1024
const PREFAULT_MIN_BYTES = 16 * 1024
/** After a failed background prefault (a full disk), the next one waits this long. */
const PREFAULT_RETRY_MS = 1000

export type FlushMode = 'sync' | 'async'

export interface CommitLogOptions {
  io: FileIO
  dir: string
  fileSizeBytes: number
  flush: FlushMode
  storeHost: Host
  maxRecordBytes: number
  flushIntervalMs: number
  flushLeastPages: number
  flushThoroughIntervalMs: number
  syncFlushTimeoutMs: number
  stagingLimitBytes: number
  /** Back-pressure: appends (and their bytes) waiting on the disk at most; see checkPending. */
  maxPendingAppends: number
  maxPendingAppendBytes: number
  /** Sync flush without a DurableWriter: durable writes in flight at once (thread pool). */
  syncFlushConcurrency: number
  checkCrcOnRecover: boolean
  /** Recovery checks from the start of the file holding the durable offset, on every open. */
  verifyOnOpen: boolean
  onCorruption: 'fail' | 'truncate'
  checkpoint: StoreCheckpoint
  now: () => number
  /** Opened as a replica: see setReplicaWrites. */
  replica?: boolean
}

/** Told the new committed offset whenever it moves (MessageStore.onCommitted). */
export type CommittedListener = (committedOffset: number) => void

export interface TopicState {
  readonly topic: string
  readonly bytes: Buffer
  /** Next queue offset per queue id. */
  readonly queueOffsets: number[]
}

/** What an append returns; the same object becomes the caller's put result. */
export interface AppendResult {
  /** PUT_OK, or FLUSH_DISK_TIMEOUT when a sync flush did not confirm it in time (still stored). */
  status: 'PUT_OK' | 'FLUSH_DISK_TIMEOUT'
  msgId: string
  physicalOffset: number
  queueOffset: number
  storeTimestamp: number
  size: number
}

export class CommitLog {
  readonly queue: MappedFileQueue
  readonly topics = new Map<string, TopicState>()
  /** Physical offsets: appended, handed to the OS, on disk. */
  wroteOffset = 0
  committedOffset = 0
  flushedOffset = 0
  /** Store time of the newest appended record. */
  lastStoreTimestamp = 0
  /** Set while a truncate cuts the log (truncate.ts): retention deletes no file meanwhile. */
  truncating = false
  /** Called whenever the committed offset moves (the dispatcher follows it). */
  onCommitted: (() => Promise<void> | undefined) | undefined
  /**
   * What was written, so the dispatcher need not read it back. Async flush: called instead of
   * onCommitted right after records were written (committed) into the map. Sync flush: called
   * once they are durable, in log order, before onCommitted.
   */
  onAppended: ((ms: PreparedMessage[], states: TopicState[], results: AppendResult[]) => void) | undefined
  /** Outside listeners of the committed offset (replication): see announceCommitted. */
  readonly committedListeners = new Set<CommittedListener>()

  private readonly ids: MessageIdEncoder
  private readonly async: boolean
  private blocked: Promise<unknown> | undefined
  /** Appends queued on `blocked` and their bytes (back-pressure counts them). */
  private queuedAppends = 0
  private queuedBytes = 0
  private failure: StoreError | undefined
  private closed = false

  /** Body CRCs left pending at prepare time, computed per append (see defersBodyCrc). */
  private readonly bodyCrcs = bodyCrcBatch()
  /** Puts and flushes waiting for their bytes to be durable (both modes). */
  private readonly waiters = new FlushWaiters()
  /** Sync flush: staging chunks and their durable writes (idle with async flush). */
  private readonly groupCommit: GroupCommit
  private flushing: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined
  private lastThoroughFlush = 0
  private lastCheckpointSync = 0
  /** Async flush: ranges of the active file are faulted in on the thread pool, ahead of the writer. */
  private readonly backgroundPrefault: boolean
  private prefaultRetryAt = 0
  /** Async flush, a replica: bytes arrive by pwrite (appendReplicatedBytes); nothing is prefaulted ahead. */
  private replicaWrites = false

  constructor(readonly options: CommitLogOptions) {
    this.async = options.flush === 'async'
    const sparse = this.async && options.io.canPrefault()
    this.backgroundPrefault = sparse && options.io.canPrefaultInBackground()
    this.queue = new MappedFileQueue(options.io, options.dir, options.fileSizeBytes, this.async, sparse, this.backgroundPrefault ? PREFAULT_AHEAD_BYTES : 0)
    this.ids = new MessageIdEncoder(options.storeHost)
    this.groupCommit = new GroupCommit(this, this.waiters, {
      bodyCrcs: this.bodyCrcs,
      fail: (err) => this.fail(err),
      retired: () => this.updateCheckpoint(this.lastStoreTimestamp),
    })
    this.setReplicaWrites(options.replica ?? false)
  }

  /**
   * A replica's log (on) writes what it receives by pwrite (appendReplicatedBytes), so its new files
   * are neither warmed nor prefaulted ahead; a master's (off) writes through the map, and its
   * first put after a promotion prefaults from the write position on.
   */
  setReplicaWrites(on: boolean): void {
    this.replicaWrites = on && this.async
    this.queue.prepareForMapWrites = !this.replicaWrites
  }

  /**
   * Whether messages may be prepared with BODY_CRC_PENDING: the append then computes all their
   * body CRCs in one native call after copying the bodies.
   */
  get defersBodyCrc(): boolean {
    return this.bodyCrcs !== undefined
  }

  get fileSizeBytes(): number {
    return this.options.fileSizeBytes
  }

  /** Offset of the first byte still held, or 0 when empty. */
  get minOffset(): number {
    return this.queue.first?.fileFromOffset ?? 0
  }

  get failed(): StoreError | undefined {
    return this.failure
  }

  topicState(topic: string, bytes: Buffer): TopicState {
    let st = this.topics.get(topic)
    if (!st) {
      st = { topic, bytes, queueOffsets: [] }
      this.topics.set(topic, st)
    }
    return st
  }

  // -------------------------------------------------------------------------------------------
  // Append

  /** Appends `ms` contiguously, in one file; `total` is the sum of their sizes. */
  append(ms: PreparedMessage[], states: TopicState[], total: number): AppendResult[] | Promise<AppendResult[]> {
    if (this.failure) throw this.failure
    if (this.closed) throw new StoreError('NOT_OPEN', 'store is closed')
    if (this.blocked === undefined && this.groupCommit.stagedBytes < this.options.stagingLimitBytes) {
      // Async flush: nothing waits on the disk while nothing is queued.
      if (!this.async) this.checkPending(total)
      const r = this.tryWrite(ms, states, total)
      if (r) return r
    }
    this.checkPending(total)
    return this.appendQueued(ms, states, total)
  }

  /**
   * Back-pressure (RocketMQ's "broker busy"): appends waiting on the disk are bounded, in count
   * and bytes: those queued behind a roll, a prefault or a full staging area, and with sync flush
   * those written but not yet durable. Past either bound an append throws BUSY before anything
   * is written, so a stalled disk holds a bounded amount of memory; an append that finds nothing
   * pending always goes (however large), so the bounds never stop progress.
   */
  private checkPending(total: number): void {
    const o = this.options
    const appends = this.queuedAppends + (this.async ? 0 : this.groupCommit.pendingAppends)
    if (appends === 0) return
    const bytes = this.queuedBytes + (this.async ? 0 : this.wroteOffset - this.flushedOffset)
    if (appends < o.maxPendingAppends && bytes + total <= o.maxPendingAppendBytes) return
    throw new StoreError(
      'BUSY',
      `store busy, nothing written: ${appends} appends of ${bytes} bytes are waiting on the disk (bounds: maxPendingAppends ${o.maxPendingAppends}, maxPendingAppendBytes ${o.maxPendingAppendBytes}); this one has ${total} bytes`,
      { details: { pendingAppends: appends, pendingBytes: bytes, bytes: total } },
    )
  }

  private appendQueued(ms: PreparedMessage[], states: TopicState[], total: number): Promise<AppendResult[]> {
    this.queuedAppends++
    this.queuedBytes += total
    const run = async (): Promise<AppendResult[]> => {
      for (;;) {
        if (this.failure) throw this.failure
        if (this.closed) throw new StoreError('NOT_OPEN', 'store is closed')
        if (this.groupCommit.stagedBytes >= this.options.stagingLimitBytes) {
          await this.waitDurable(this.wroteOffset, Number.POSITIVE_INFINITY, true)
          continue
        }
        const r = this.tryWrite(ms, states, total)
        if (r) return r
        await this.roll()
      }
    }
    const previous = this.blocked ?? Promise.resolve()
    const result = previous.then(run, run)
    const settled = (): void => {
      this.queuedAppends--
      this.queuedBytes -= total
    }
    const tail: Promise<unknown> = result.then(settled, settled)
    this.blocked = tail
    void tail.then(() => {
      if (this.blocked === tail) this.blocked = undefined
    })
    return result
  }

  private tryWrite(ms: PreparedMessage[], states: TopicState[], total: number): AppendResult[] | undefined {
    const file = this.queue.last
    if (!file || file.wrotePosition + total + END_FILE_MIN_BLANK_LENGTH > file.fileSize) return undefined
    let target: Buffer
    let dv: DataView
    let at: number
    let copyBody: BodyCopier | undefined
    let chunk: StageChunk | undefined
    if (this.async) {
      // Never write a byte through the map that was not prefaulted: on a sparse file that is
      // where a full disk shows up, as an error here instead of a SIGBUS later.
      const end = file.wrotePosition + total
      if (end > file.prefaultedTo) {
        if (this.backgroundPrefault) file.background.collect(file)
        if (end > file.prefaultedTo) this.prefault(file, end)
      }
      target = file.view
      dv = file.dataView
      at = file.wrotePosition
    } else {
      chunk = this.groupCommit.chunkFor(file, total)
      copyBody = this.groupCommit.stageCopier
      target = chunk.buf
      dv = chunk.dv
      at = chunk.length
      this.groupCommit.staged(chunk, total)
    }
    const now = this.options.now()
    const host = this.options.storeHost
    const crcs = this.bodyCrcs
    const mark = crcs ? crcs.pending : 0
    const results: AppendResult[] = new Array(ms.length)
    let position = file.wrotePosition
    const firstAt = at
    let i = 0
    try {
      for (; i < ms.length; i++) {
        const m = ms[i]!
        const st = states[i]!
        const physicalOffset = file.fileFromOffset + position
        let queueOffset = 0
        if (takesQueueOffset(m.sysFlag)) {
          queueOffset = st.queueOffsets[m.queueId] ?? 0
          st.queueOffsets[m.queueId] = queueOffset + 1
        }
        encodeRecord(target, at, m, queueOffset, physicalOffset, now, host, dv, copyBody, crcs)
        results[i] = { status: 'PUT_OK', msgId: this.ids.encode(physicalOffset), physicalOffset, queueOffset, storeTimestamp: now, size: m.totalSize }
        at += m.totalSize
        position += m.totalSize
      }
    } catch (err) {
      // Nothing of the append counts: the queue offsets it took are given back (else the next
      // message would leave a gap in its queue) and, with sync flush, the bytes it staged.
      for (let j = i; j >= 0; j--) {
        const m = ms[j]!
        if (takesQueueOffset(m.sysFlag)) states[j]!.queueOffsets[m.queueId]!--
      }
      if (chunk) this.groupCommit.unstaged(chunk, total)
      // The records encoded before the failure are whole in the map: a size of 0 at the first
      // keeps recovery (after a crash before the next append overwrites them) from taking them.
      else dv.setInt32(firstAt, 0)
      crcs?.truncate(mark)
      throw err
    }
    // Async: readable through the map from now on. Sync: the group's CRCs are computed when it
    // is handed to the disk (pump) or read (recordAt).
    if (this.async) crcs?.flush()
    else this.groupCommit.appended(ms, states, results, file.fileFromOffset + position)
    file.wrotePosition = position
    this.wroteOffset = file.fileFromOffset + position
    // The newest store time, even if the clock stepped back since (key queries end there).
    if (now > this.lastStoreTimestamp) this.lastStoreTimestamp = now
    if (this.async) {
      file.committedPosition = position
      this.committedOffset = this.wroteOffset
      if (this.backgroundPrefault) {
        if (position + PREFAULT_BACKGROUND_AHEAD_BYTES > file.prefaultedTo) this.prefaultAhead(file)
      } else if (position + PREFAULT_AHEAD_BYTES / 2 > file.prefaultedTo) {
        try {
          this.prefault(file, position)
        } catch {
          // Reported by the guard above when a write actually needs the range.
        }
      }
      if (this.onAppended) this.onAppended(ms, states, results)
      else this.onCommitted?.()
      if (this.committedListeners.size > 0) this.announceCommitted()
    }
    return results
  }

  /**
   * Prefaults `file` from where it was prefaulted to at least `needEnd`, here: PREFAULT_AHEAD_BYTES
   * past the write position (pages the writer is about to dirty anyway, so it costs no extra I/O
   * and appends take no page faults), or only what is needed when the thread pool works ahead.
   * Throws DISK_FULL if the OS cannot.
   */
  private prefault(file: MappedFile, needEnd: number): void {
    const from = Math.max(file.prefaultedTo, file.wrotePosition)
    const ahead = this.backgroundPrefault ? Math.max(needEnd, from + PREFAULT_MIN_BYTES) : file.wrotePosition + PREFAULT_AHEAD_BYTES
    const to = Math.min(file.fileSize, Math.max(needEnd, ahead))
    if (to <= from) return
    try {
      file.file.prefault(from, to - from)
    } catch (err) {
      throw ioError(`reserving space in ${file.fileName}`, err)
    }
    file.prefaultedTo = to
  }

  /**
   * Faults the next PREFAULT_CHUNK_BYTES of `file` in on the thread pool, unless a range is still
   * under way. Faulting in writes no byte, so the writer may use the map meanwhile (and fault a
   * range in itself if it catches up). A failure (full disk) is left for the writer's own
   * prefault to report when it needs the range; the background retries after PREFAULT_RETRY_MS.
   */
  private prefaultAhead(file: MappedFile): void {
    const state = file.background.collect(file)
    if (state === 'failed') this.prefaultRetryAt = Date.now() + PREFAULT_RETRY_MS
    if (state === 'busy' || this.closed || this.failure) return
    if (this.prefaultRetryAt !== 0) {
      if (Date.now() < this.prefaultRetryAt) return
      this.prefaultRetryAt = 0
    }
    const from = Math.max(file.prefaultedTo, file.wrotePosition)
    const to = Math.min(file.fileSize, from + PREFAULT_CHUNK_BYTES)
    if (to > from) file.background.start(file.file, file.view, from, to)
  }

  /** Ends the current file with a BLANK record and makes the next file current. */
  private async roll(): Promise<void> {
    const old = this.queue.last
    const next = await this.queue.createNext()
    if (old && old.wrotePosition < old.fileSize) {
      const remaining = old.fileSize - old.wrotePosition
      if (this.async) {
        this.prefault(old, old.wrotePosition + END_FILE_MIN_BLANK_LENGTH)
        encodeBlank(old.view, old.wrotePosition, remaining)
        old.committedPosition = old.fileSize
      } else {
        this.groupCommit.stageBlank(old, remaining)
      }
      old.wrotePosition = old.fileSize
    }
    this.wroteOffset = next.fileFromOffset
    if (this.async) {
      this.committedOffset = this.wroteOffset
      if (this.backgroundPrefault) this.prefaultAhead(next)
      else this.prefault(next, 0)
      this.onCommitted?.()
      if (this.committedListeners.size > 0) this.announceCommitted()
    }
  }

  /**
   * Tells every committed listener the committed offset, synchronously, after the bytes below it
   * became readable (readCommitLog). A listener that throws is skipped: its failure is its own.
   */
  announceCommitted(): void {
    const offset = this.committedOffset
    for (const l of this.committedListeners) {
      try {
        l(offset)
      } catch {
        // Ignored: one listener must not stop the others or the append path.
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Replica appends (replica.ts)

  /**
   * Appends `bytes` as they are at the write position of the last file: whole records a replica
   * received from its master, or the master's end-of-file BLANK (`fillsFile`: the file is full
   * after it, whatever part of its padding `bytes` holds). Sync flush: staged for group commit
   * (whenDurable writes it). Async flush: written by pwrite and committed at once; call
   * replicatedCommitted() after a chunk's last write.
   *
   * Async flush writes by pwrite, not through the map: a page a pwrite fills is allocated and
   * takes the bytes at once, where a write through the map into a hole of the sparse file first
   * has the kernel read the page in as zeros (and the new file warmed and prefaulted ahead for
   * that), which cost a replica several times the copy itself. A full disk is the write's ENOSPC
   * (DISK_FULL), never a SIGBUS. The write blocks: on the thread pool, the round trip cost each
   * SYNC_MASTER send more than the copy, and the pool's fdatasyncs delayed it further.
   */
  appendReplicatedBytes(bytes: Buffer, fillsFile: boolean, storeTimestamp: number): void {
    if (this.failure) throw this.failure
    if (this.closed) throw new StoreError('NOT_OPEN', 'store is closed')
    const file = this.queue.last!
    const end = fillsFile ? file.fileSize : file.wrotePosition + bytes.length
    if (this.async) {
      try {
        writeRunSync(file.file, bytes, 0, bytes.length, file.wrotePosition)
      } catch (err) {
        throw ioError(`writing replicated bytes to ${file.fileName}`, err)
      }
      file.committedPosition = end
    } else {
      this.groupCommit.stageReplicated(file, bytes, fillsFile)
    }
    file.wrotePosition = end
    this.wroteOffset = file.fileFromOffset + end
    if (this.async) this.committedOffset = this.wroteOffset
    if (storeTimestamp > this.lastStoreTimestamp) this.lastStoreTimestamp = storeTimestamp
  }

  /**
   * An empty log (nothing written) starts over at `offset`, a file boundary: a replica seeded by
   * a master whose first files retention deleted. Every position is `offset` from then on, as in
   * a log whose files below it were deleted.
   */
  async restartAt(offset: number): Promise<void> {
    const old = [...this.queue.files]
    const first = await this.queue.restartAt(offset)
    this.groupCommit.truncated(old)
    this.wroteOffset = this.committedOffset = this.flushedOffset = offset
    if (this.backgroundPrefault && this.queue.prepareForMapWrites) this.prefaultAhead(first)
  }

  /** Async flush, after a replica's writes: tells the dispatcher and the listeners. */
  replicatedCommitted(): void {
    if (!this.async) return
    this.onCommitted?.()
    if (this.committedListeners.size > 0) this.announceCommitted()
  }

  /** Sync flush: whether the bytes staged and not yet durable reached stagingLimitBytes. */
  get stagingFull(): boolean {
    return !this.async && this.groupCommit.stagedBytes >= this.options.stagingLimitBytes
  }

  /** Resolves once the log is durable up to `end` (sync flush: hands staged bytes to the disk). */
  whenDurable(end: number): Promise<void> {
    return this.waitDurable(end, Number.POSITIVE_INFINITY, undefined)
  }

  /** Resolves once appends queued behind a roll or a full staging area are written (or refused), including those queued meanwhile. */
  async appendsSettled(): Promise<void> {
    while (this.blocked) await this.blocked
  }

  // -------------------------------------------------------------------------------------------
  // Flush

  /** Makes everything appended so far durable. */
  flush(): Promise<void> {
    if (!this.async) {
      return this.waitDurable(this.wroteOffset, Number.POSITIVE_INFINITY, true).then(() => {
        if (this.failure) throw this.failure
      })
    }
    const run = async (): Promise<void> => {
      const target = this.committedOffset
      const storeTimestamp = this.lastStoreTimestamp
      if (target > this.flushedOffset) {
        let file = this.queue.findFile(this.flushedOffset) ?? this.queue.first
        while (file && file.fileFromOffset < target) {
          const upTo = Math.min(file.committedPosition, target - file.fileFromOffset)
          if (upTo > file.flushedPosition) {
            try {
              await file.file.datasync()
            } catch (err) {
              throw this.fail(new StoreError('FLUSH_FAILED', `fdatasync of ${file.fileName} failed; unflushed data may be lost`, { cause: err }))
            }
            file.flushedPosition = upTo
          }
          file = this.queue.findFile(file.fileFromOffset + file.fileSize)
        }
        this.flushedOffset = Math.max(this.flushedOffset, target)
      }
      this.waiters.resolveUpTo(this.flushedOffset)
      this.updateCheckpoint(storeTimestamp)
    }
    const p = (this.flushing ?? Promise.resolve()).then(run)
    const settled = p.catch(() => undefined)
    this.flushing = settled
    void settled.then(() => {
      if (this.flushing === settled) this.flushing = undefined
    })
    return p
  }

  /** Records the flushed offset in the checkpoint: written at once, synced at most every second. */
  private updateCheckpoint(storeTimestamp: number): void {
    const cp = this.options.checkpoint.values
    if (this.flushedOffset <= cp.physicalFlushedOffset) return
    cp.physicalFlushedOffset = this.flushedOffset
    if (storeTimestamp > 0) cp.physicMsgTimestamp = storeTimestamp
    const now = this.options.now()
    if (now - this.lastCheckpointSync >= 1000) {
      this.lastCheckpointSync = now
      this.options.checkpoint.flush().catch(() => undefined)
    } else {
      this.options.checkpoint.write().catch(() => undefined)
    }
  }

  /**
   * Resolves with `results` once the last of them is durable; after `syncFlushTimeoutMs` with
   * their status set to FLUSH_DISK_TIMEOUT.
   */
  waitFlushed<T extends AppendResult | AppendResult[]>(results: T): Promise<T> {
    const last = Array.isArray(results) ? results[results.length - 1]! : (results as AppendResult)
    // Appended just now: its store time is the clock's reading (one read less per put).
    return this.waitDurable(last.physicalOffset + last.size, last.storeTimestamp + this.options.syncFlushTimeoutMs, results)
  }

  private waitDurable<T>(end: number, deadline: number, value: T): Promise<T> {
    if (end <= this.flushedOffset) return Promise.resolve(value)
    if (this.failure) return Promise.reject(this.failure)
    const promise = this.waiters.add(end, deadline, value)
    if (this.async) this.flush().catch(() => undefined)
    else this.groupCommit.schedulePump()
    return promise
  }

  private fail(err: StoreError): StoreError {
    if (!this.failure) {
      this.failure = err
      this.groupCommit.dropAppended()
      this.waiters.rejectAll(err)
    }
    return this.failure
  }

  /** Starts the background services: async flusher, or sync-flush timeouts and checkpoint. */
  start(): void {
    const o = this.options
    if (!this.async) this.groupCommit.startWriter(o.io)
    this.lastThoroughFlush = o.now()
    const last = this.queue.last
    if (this.backgroundPrefault && last && !this.replicaWrites) this.prefaultAhead(last)
    const tick = this.async ? o.flushIntervalMs : 100
    this.timer = setInterval(() => {
      const now = o.now()
      if (!this.async) {
        this.waiters.expireDue(now, now + tick)
        this.updateCheckpoint(this.lastStoreTimestamp)
        return
      }
      if (this.flushing || this.failure) return
      const dirty = this.committedOffset - this.flushedOffset
      const thorough = now - this.lastThoroughFlush >= o.flushThoroughIntervalMs
      if (dirty >= o.flushLeastPages * OS_PAGE_BYTES || (thorough && dirty > 0)) {
        if (thorough) this.lastThoroughFlush = now
        this.flush().catch(() => undefined)
      }
    }, tick)
    this.timer.unref()
  }

  // -------------------------------------------------------------------------------------------
  // Retention

  /**
   * Closes and deletes the oldest data file. Refused for the file being written, for a file
   * holding bytes not yet dispatched (`dispatchedOffset`), and while a truncate runs.
   */
  async deleteFirstFile(dispatchedOffset: number): Promise<boolean> {
    const files = this.queue.files
    const first = files[0]
    if (!first || files.length < 2 || this.truncating) return false
    if (first.fileFromOffset + first.fileSize > dispatchedOffset) return false
    files.shift()
    await first.close()
    await this.options.io.remove(first.path)
    await this.options.io.syncDir(this.options.dir)
    this.options.io.reclaim()
    return true
  }

  // -------------------------------------------------------------------------------------------
  // Read

  /** The buffer and position holding the record that starts at `physicalOffset`, if any. */
  recordAt(physicalOffset: number): { buf: Buffer; dv: DataView; at: number; limit: number } | undefined {
    if (physicalOffset < 0 || physicalOffset >= this.wroteOffset) return undefined
    const file = this.queue.findFile(physicalOffset)
    if (!file) return undefined
    const pos = physicalOffset - file.fileFromOffset
    if (pos < file.committedPosition) return { buf: file.view, dv: file.dataView, at: pos, limit: file.committedPosition }
    return this.groupCommit.stagedRecordAt(file, pos)
  }

  // -------------------------------------------------------------------------------------------
  // Recovery (recovery.ts)

  /**
   * Opens the files and finds the end of valid data, from the checkpoint's durable offset on;
   * sets the write position there. See recover() in recovery.ts.
   */
  recover(cleanShutdown: boolean): Promise<RecoveryReport> {
    return recover(this, cleanShutdown)
  }

  /**
   * After recover(), before anything is appended: cuts the log at `offset`, a record boundary
   * the re-dispatch found does not belong. See truncateRecovered() in recovery.ts.
   */
  truncateRecovered(offset: number, reason: string, report: RecoveryReport): Promise<void> {
    return truncateRecovered(this, offset, reason, report)
  }

  // -------------------------------------------------------------------------------------------
  // Truncate (truncate.ts)

  /**
   * Runs `fn` once the appends queued before it are written; appends made meanwhile queue behind
   * it, so they go where `fn` leaves the log and never interleave with it.
   */
  holdAppends<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.blocked ?? Promise.resolve()
    const result = previous.then(fn, fn)
    const tail: Promise<unknown> = result.then(
      () => undefined,
      () => undefined,
    )
    this.blocked = tail
    void tail.then(() => {
      if (this.blocked === tail) this.blocked = undefined
    })
    return result
  }

  /**
   * With appends held and everything flushed: the log ends at `offset` (a checked record
   * boundary) in memory at once, so no flush raises the checkpoint past it any more. The files
   * follow with cutBack.
   */
  lowerTo(offset: number): void {
    const file = this.queue.findFile(offset)!
    file.wrotePosition = file.committedPosition = file.flushedPosition = offset - file.fileFromOffset
    this.wroteOffset = this.committedOffset = this.flushedOffset = offset
  }

  /** After lowerTo and a durable checkpoint at or below `offset`: cuts the files (cutOpenLog). */
  async cutBack(offset: number): Promise<void> {
    const deleted = await cutOpenLog(this, offset)
    this.groupCommit.truncated(deleted)
    // The file allocated ahead went if it was not the next one now: allocate that one.
    this.queue.prepareNext()
  }

  /** A step that leaves memory and disk apart failed (truncate): writes are refused until reopened. */
  failWith(err: StoreError): StoreError {
    return this.fail(err)
  }

  /** Drains appends, flushes, then (after `beforeRelease`, which may still read) closes the files. */
  async close(beforeRelease?: () => Promise<void>): Promise<void> {
    if (this.closed) return
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    try {
      await this.blocked
      if (!this.failure) {
        await this.flush()
        this.updateCheckpoint(this.lastStoreTimestamp)
      }
    } finally {
      this.closed = true
      this.waiters.resolveAll(this.flushedOffset)
      // Durable writes still in flight (after a failure) must finish before their files close.
      while (this.groupCommit.writing && this.failure === undefined) await new Promise((r) => setImmediate(r))
      if (beforeRelease) await beforeRelease().catch(() => undefined)
      // Drop every reference to the files so their mappings can be collected (unmapped).
      try {
        await this.groupCommit.close()
      } finally {
        await this.queue.close()
      }
    }
  }
}
