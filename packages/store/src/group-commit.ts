/**
 * Group commit for flush 'sync', and the waiters of both flush modes.
 *
 * Records are encoded into staging chunks and reach the (zero-filled) file by group commit, up to
 * `syncFlushConcurrency` groups in flight (default 1: the next group is handed over once the
 * previous one is durable, with everything appended meanwhile, so a fixed set of producers stays
 * one group instead of splitting into smaller alternating ones). When the FileIO provides a
 * DurableWriter (Node: a dedicated writer thread, durable-writer.ts) the chunks are shared memory
 * it writes from in place; otherwise they are on the heap and go through pwrite and fdatasync on
 * the libuv thread pool. Either way a run's first 4 bytes are written after the rest
 * (run-write.ts). Readers see staged bytes at once (from the chunk) and committed ones through
 * the map.
 *
 * `GroupCommit` owns the chunks and the writes in flight; once writes complete (retire) it moves
 * the CommitLog's committed and flushed offsets, dispatches what the appends wrote, and resolves
 * the `FlushWaiters`: puts waiting to be durable, each with its deadline (FLUSH_DISK_TIMEOUT).
 */
import { StoreError, ioError } from './errors.js'
import type { BodyCrcBatch } from './crc.js'
import type { DurableWriter } from './durable-writer.js'
import type { FileIO } from './file-io.js'
import { dataViewOf, encodeBlank, END_FILE_MIN_BLANK_LENGTH, type BodyCopier, type PreparedMessage } from './codec/index.js'
import type { MappedFile } from './mapped-file.js'
import { writeRun } from './run-write.js'
import type { AppendResult, CommitLogOptions, TopicState } from './commit-log.js'

/** Size of a staging chunk (sync flush); a larger record gets a chunk of its own size. */
export const STAGE_CHUNK_BYTES = 1024 * 1024
const STAGE_POOL_MAX = 8
/** Sync flush with the writer thread: microtask levels a group waits for before it is handed over (see schedulePump). */
const PUMP_MICROTASK_HOPS = 3
/**
 * Sync flush with the writer thread: groups handed over and not yet durable, at most. With two,
 * puts that missed a group (resumed through more awaits than PUMP_MICROTASK_HOPS, or arriving
 * from elsewhere) are handed over at once and written right after it, instead of waiting for it.
 */
const WRITER_GROUPS_IN_FLIGHT = 2
/**
 * Sync flush with the writer thread: while a group is appended, every this many bytes staged are
 * handed to the thread to write into the page cache ahead of the group's end, so only the tail is
 * left to write before its fdatasync.
 */
const WRITE_AHEAD_BYTES = 16 * 1024
/** Sync flush: a group is split across free write slots, but not into writes smaller than this. */
const SYNC_WRITE_MIN_BYTES = 16 * 1024

export interface StageChunk {
  buf: Buffer
  file: MappedFile
  dv: DataView
  /** File position of buf[0]. */
  fileStart: number
  length: number
  /** Bytes handed to a durable write, and bytes whose write completed. */
  issued: number
  committed: number
  /** An end-of-file blank: once committed, the whole file counts as written. */
  fillsFile: boolean
}

interface InflightWrite {
  chunk: StageChunk
  from: number
  to: number
  done: boolean
  /** The last submission of a group handed to the writer thread at once (see writerGroups). */
  endsGroup?: boolean
}

/** Sync flush: an append's records as it wrote them, kept until they are durable. */
interface AppendedFacts {
  ms: PreparedMessage[]
  states: TopicState[]
  results: AppendResult[]
  /** CommitLog offset just past the append's last record. */
  end: number
}

interface FlushWaiter {
  end: number
  deadline: number
  /** Resolved with `value`; on timeout `value`'s results are marked FLUSH_DISK_TIMEOUT first. */
  value: unknown
  resolve: (value: any) => void
  reject: (err: unknown) => void
}

/**
 * The first record boundary of `chunk` at or after `want` (or its end): a write split there
 * leaves the flushed offset, which the checkpoint records and recovery starts from, between
 * records. Records are contiguous from the chunk's start; an end-of-file blank ends the chunk.
 */
function recordBoundaryAtOrAfter(chunk: StageChunk, want: number): number {
  let at = chunk.issued
  while (at < want && at + 4 <= chunk.length) {
    const size = chunk.buf.readInt32BE(at)
    if (size <= 0) return chunk.length
    at += size
  }
  return Math.min(at, chunk.length)
}

const settled = (): void => undefined
/** The waiter whose promise is being created (see FlushWaiters.add). */
let pendingWaiter: FlushWaiter | undefined
function captureSettlers(resolve: (value: any) => void, reject: (err: unknown) => void): void {
  pendingWaiter!.resolve = resolve
  pendingWaiter!.reject = reject
  pendingWaiter = undefined
}

function markTimedOut(value: unknown): void {
  if (Array.isArray(value)) for (const r of value as AppendResult[]) r.status = 'FLUSH_DISK_TIMEOUT'
  else if (value !== null && typeof value === 'object') (value as AppendResult).status = 'FLUSH_DISK_TIMEOUT'
}

/** Waits for the CommitLog to be durable up to an offset, in offset order, each with a deadline. */
export class FlushWaiters {
  private waiters: FlushWaiter[] = []
  private waitersHead = 0

  /** Whether any wait is pending. */
  get pending(): boolean {
    return this.waitersHead < this.waiters.length
  }

  /** A promise of `value`, resolved by resolveUpTo(end) or later, or by expire after `deadline`. */
  add<T>(end: number, deadline: number, value: T): Promise<T> {
    const waiter: FlushWaiter = { end, deadline, value, resolve: settled, reject: settled }
    pendingWaiter = waiter
    // One shared executor: no closure per put.
    const promise = new Promise<T>(captureSettlers)
    this.waiters.push(waiter)
    return promise
  }

  /** Resolves every wait that `flushed` covers. */
  resolveUpTo(flushed: number): void {
    let head = this.waitersHead
    const ws = this.waiters
    while (head < ws.length && ws[head]!.end <= flushed) {
      const w = ws[head++]!
      w.resolve(w.value)
    }
    this.compactWaiters(head)
  }

  private compactWaiters(head: number): void {
    if (head >= this.waiters.length) {
      this.waiters = []
      this.waitersHead = 0
    } else if (head > 1024 && head * 2 > this.waiters.length) {
      this.waiters = this.waiters.slice(head)
      this.waitersHead = 0
    } else {
      this.waitersHead = head
    }
  }

  /** Expires waits (expire) when the oldest one's deadline is at or before `horizon`. */
  expireDue(now: number, horizon: number): void {
    if (this.waitersHead < this.waiters.length && this.waiters[this.waitersHead]!.deadline <= horizon) this.expire(now)
  }

  /** Puts past their deadline resolve false (FLUSH_DISK_TIMEOUT); internal waits never expire. */
  private expire(now: number): void {
    const ws = this.waiters
    let expired = false
    for (let i = this.waitersHead; i < ws.length; i++) {
      const w = ws[i]!
      if (w.deadline <= now) {
        markTimedOut(w.value)
        w.resolve(w.value)
        expired = true
      }
    }
    if (expired) {
      const live = ws.slice(this.waitersHead).filter((w) => w.deadline > now)
      this.waiters = live
      this.waitersHead = 0
    }
  }

  /** Rejects every pending wait with `err` (the log failed). */
  rejectAll(err: StoreError): void {
    const ws = this.waiters
    for (let i = this.waitersHead; i < ws.length; i++) ws[i]!.reject(err)
    this.waiters = []
    this.waitersHead = 0
  }

  /** Resolves every pending wait (the log closes); those `flushed` does not cover as timed out. */
  resolveAll(flushed: number): void {
    const ws = this.waiters
    for (let i = this.waitersHead; i < ws.length; i++) {
      const w = ws[i]!
      if (flushed < w.end) markTimedOut(w.value)
      w.resolve(w.value)
    }
    this.waiters = []
    this.waitersHead = 0
  }
}

/** What group commit reads of the CommitLog, and the offsets it moves there. */
export interface GroupCommitLog {
  readonly options: Pick<CommitLogOptions, 'syncFlushConcurrency'>
  /** Set by retire as writes complete: committed and flushed are one offset in sync flush. */
  committedOffset: number
  flushedOffset: number
  readonly failed: StoreError | undefined
  readonly onCommitted: (() => Promise<void> | undefined) | undefined
  readonly onAppended: ((ms: PreparedMessage[], states: TopicState[], results: AppendResult[]) => void) | undefined
  /** Listeners of the committed offset, told after each retire that moved it. */
  readonly committedListeners: ReadonlySet<unknown>
  announceCommitted(): void
}

/** What group commit calls back into the CommitLog for. */
export interface GroupCommitHooks {
  /** Body CRCs left pending by appends, computed before bytes go to the disk or are read. */
  readonly bodyCrcs: BodyCrcBatch | undefined
  /** Stops the log with `err` (first failure wins). */
  fail(err: StoreError): StoreError
  /** After every retire: the checkpoint follows the flushed offset. */
  retired(): void
}

export class GroupCommit {
  /** Bytes staged and not yet durable (appends wait while they reach `stagingLimitBytes`). */
  stagedBytes = 0
  /** Appends staged and not yet durable (their facts wait for it): what back-pressure counts. */
  get pendingAppends(): number {
    return this.appendedFacts.length - this.appendedFactsHead
  }

  /** The FileIO's writer (created by startWriter()), else writes go through the thread pool. */
  writer: DurableWriter | undefined
  /** With the writer: copies bodies into its shared-memory chunks (DurableWriter.copier). */
  stageCopier: BodyCopier | undefined

  // Staged chunks and the durable writes in flight, in issue order.
  private readonly chunks: StageChunk[] = []
  private readonly chunkPool: Buffer[] = []
  private readonly inflight: InflightWrite[] = []
  /** With the writer thread: groups handed over and not yet durable. */
  private writerGroups = 0
  /** With the writer thread: the last submission of the group being appended. */
  private groupTail: InflightWrite | undefined
  /** With the writer thread: bytes staged and not yet submitted (see WRITE_AHEAD_BYTES). */
  private unsubmittedBytes = 0
  private pumpScheduled = false
  private readonly runPump = (): void => this.pump()
  /**
   * What each append knew about its records, in log order, until they are durable; they are
   * then dispatched from it (onAppended) instead of being read back.
   */
  private appendedFacts: AppendedFacts[] = []
  private appendedFactsHead = 0

  constructor(
    private readonly log: GroupCommitLog,
    private readonly waiters: FlushWaiters,
    private readonly hooks: GroupCommitHooks,
  ) {}

  /** Takes the FileIO's DurableWriter, when it has one (else writes go through the thread pool). */
  startWriter(io: FileIO): void {
    if (!io.durableWriter || this.writer) return
    this.writer = io.durableWriter({ onDone: (n) => this.writerDone(n), onError: (err) => this.writerFailed(err) })
    this.stageCopier = this.writer.copier
  }

  // -------------------------------------------------------------------------------------------
  // Staging

  /** The chunk an append of `bytes` to `file` encodes into, at its `length`; then call staged(). */
  chunkFor(file: MappedFile, bytes: number): StageChunk {
    const last = this.chunks[this.chunks.length - 1]
    if (last && !last.fillsFile && last.file === file) {
      if (last.length + bytes <= last.buf.length && last.fileStart + last.length === file.wrotePosition) return last
      // A chunk with nothing in flight or pending can restart in place.
      if (last.committed === last.length && last.issued === last.length && bytes <= last.buf.length) {
        last.fileStart = file.wrotePosition
        last.length = last.issued = last.committed = 0
        return last
      }
    }
    const size = Math.max(STAGE_CHUNK_BYTES, bytes)
    const buf = size === STAGE_CHUNK_BYTES && this.chunkPool.length > 0 ? this.chunkPool.pop()! : this.allocateStage(size)
    const chunk: StageChunk = { buf, dv: dataViewOf(buf), file, fileStart: file.wrotePosition, length: 0, issued: 0, committed: 0, fillsFile: false }
    this.chunks.push(chunk)
    return chunk
  }

  /** `total` bytes were reserved at the end of `chunk` (before they are encoded). */
  staged(chunk: StageChunk, total: number): void {
    chunk.length += total
    this.stagedBytes += total
    this.unsubmittedBytes += total
  }

  /** An append that failed while encoding gives back what staged() reserved (none of it reached the disk). */
  unstaged(chunk: StageChunk, total: number): void {
    chunk.length -= total
    this.stagedBytes -= total
    this.unsubmittedBytes -= total
  }

  /**
   * An append's records are encoded, up to `end`: kept for their dispatch once durable, and with
   * the writer thread handed over ahead of the group's end every WRITE_AHEAD_BYTES.
   */
  appended(ms: PreparedMessage[], states: TopicState[], results: AppendResult[], end: number): void {
    if (this.log.onAppended) this.appendedFacts.push({ ms, states, results, end })
    if (this.unsubmittedBytes >= WRITE_AHEAD_BYTES && this.writer) this.submitStaged(this.writer, false)
  }

  /** Stages the BLANK record that ends `file` from its write position (`remaining` bytes of it). */
  stageBlank(file: MappedFile, remaining: number): void {
    const buf = this.allocateStage(END_FILE_MIN_BLANK_LENGTH)
    encodeBlank(buf, 0, remaining)
    this.chunks.push({ buf, dv: dataViewOf(buf), file, fileStart: file.wrotePosition, length: END_FILE_MIN_BLANK_LENGTH, issued: 0, committed: 0, fillsFile: true })
    this.stagedBytes += END_FILE_MIN_BLANK_LENGTH
  }

  /**
   * Stages bytes a replica received as they are, from `file`'s write position (replica.ts):
   * whole records, or the master's end-of-file BLANK (`fillsFile`).
   */
  stageReplicated(file: MappedFile, bytes: Buffer, fillsFile: boolean): void {
    const chunk = this.chunkFor(file, bytes.length)
    bytes.copy(chunk.buf, chunk.length)
    this.staged(chunk, bytes.length)
    if (fillsFile) chunk.fillsFile = true
  }

  private allocateStage(size: number): Buffer {
    return this.writer ? this.writer.allocate(size) : Buffer.allocUnsafe(size)
  }

  /** The staged bytes holding position `pos` of `file`, if they are not committed yet. */
  stagedRecordAt(file: MappedFile, pos: number): { buf: Buffer; dv: DataView; at: number; limit: number } | undefined {
    this.hooks.bodyCrcs?.flush()
    for (const c of this.chunks) {
      if (c.file === file && pos >= c.fileStart && pos < c.fileStart + c.length) return { buf: c.buf, dv: c.dv, at: pos - c.fileStart, limit: c.length }
    }
    return undefined
  }

  // -------------------------------------------------------------------------------------------
  // Durable writes of staged chunks

  /**
   * Issues durable writes for staged bytes, up to `syncFlushConcurrency` in flight. The bytes
   * staged now are split across the free slots, so producers fall into groups that alternate:
   * while one group's write is on its way to disk, the group resumed before it appends the next.
   */
  private pump(): void {
    this.pumpScheduled = false
    if (this.writer) return this.submitStaged(this.writer)
    this.hooks.bodyCrcs?.flush()
    const max = this.log.options.syncFlushConcurrency
    let unissued = 0
    for (const c of this.chunks) unissued += c.length - c.issued
    if (unissued === 0 || this.log.failed) return
    const slots = max - this.inflight.length
    const share = Math.max(SYNC_WRITE_MIN_BYTES, Math.ceil(unissued / Math.max(1, slots)))
    while (this.inflight.length < max) {
      let chunk: StageChunk | undefined
      for (const c of this.chunks) {
        if (c.issued < c.length) {
          chunk = c
          break
        }
      }
      if (!chunk) return
      const to = this.inflight.length + 1 < max ? recordBoundaryAtOrAfter(chunk, chunk.issued + share) : chunk.length
      const write: InflightWrite = { chunk, from: chunk.issued, to, done: false }
      chunk.issued = to
      this.inflight.push(write)
      // The run's first record's TOTALSIZE last, then fdatasync (run-write.ts): one O_DSYNC
      // pwrite would leave, cut short by a kill, a prefix of the run that could pass as records.
      const file = chunk.file.file
      writeRun(file, chunk.buf, write.from, write.to - write.from, chunk.fileStart + write.from).then(() => file.datasync()).then(
        () => {
          write.done = true
          this.retire()
        },
        (err: unknown) => this.writeFailed(chunk, err),
      )
    }
  }

  /**
   * Hands every staged byte not yet handed over to the writer, one submission per chunk; the
   * writer takes all that is pending whenever it starts a write.
   */
  private submitStaged(writer: DurableWriter, endGroup = true): void {
    if (this.log.failed) return
    this.hooks.bodyCrcs?.flush()
    this.unsubmittedBytes = 0
    for (const c of this.chunks) {
      if (c.issued >= c.length) continue
      const from = c.issued
      try {
        if (!writer.submit(c.file.file, c.buf, from, c.length - from, c.fileStart + from)) break
      } catch (err) {
        this.hooks.fail(ioError(`writing ${c.file.fileName}`, err))
        return
      }
      c.issued = c.length
      this.groupTail = { chunk: c, from, to: c.length, done: false }
      this.inflight.push(this.groupTail)
    }
    if (!endGroup) return writer.writeAhead()
    if (this.groupTail) {
      this.groupTail.endsGroup = true
      this.groupTail = undefined
      this.writerGroups++
    }
    writer.start()
  }

  private writeFailed(chunk: StageChunk, err: unknown): void {
    const code = (err as NodeJS.ErrnoException)?.code
    this.hooks.fail(
      code === 'ENOSPC' || code === 'EDQUOT'
        ? ioError(`writing ${chunk.file.fileName}`, err)
        : new StoreError('FLUSH_FAILED', `durable write to ${chunk.file.fileName} failed; unflushed data may be lost`, { cause: err }),
    )
  }

  /**
   * Groups the puts of this tick: the write starts once every resumed producer has appended.
   * With the writer thread, after the microtasks queued now and PUMP_MICROTASK_HOPS more levels
   * of them (producers resumed by one completion, through a few awaits of their own); a put made
   * while a write is under way joins the next group in the thread's ring anyway. Through the
   * thread pool, on the next loop turn (setImmediate), so producers fall into alternating groups.
   */
  schedulePump(): void {
    if (this.pumpScheduled) return
    if (this.writer) {
      if (this.writerGroups >= WRITER_GROUPS_IN_FLIGHT) return
      this.pumpScheduled = true
      this.pumpAfterMicrotasks(PUMP_MICROTASK_HOPS)
      return
    }
    if (this.inflight.length >= this.log.options.syncFlushConcurrency) return
    this.pumpScheduled = true
    setImmediate(this.runPump)
  }

  private pumpAfterMicrotasks(hops: number): void {
    queueMicrotask(hops > 0 ? () => this.pumpAfterMicrotasks(hops - 1) : this.runPump)
  }

  /** The writer finished the oldest `count` submissions. */
  private writerDone(count: number): void {
    const q = this.inflight
    for (let i = 0; i < count && i < q.length; i++) q[i]!.done = true
    this.retire()
  }

  /** The writer failed the oldest submission not yet done; nothing after it was written. */
  private writerFailed(err: NodeJS.ErrnoException): void {
    const w = this.inflight.find((x) => !x.done)
    if (w) this.writeFailed(w.chunk, err)
    else this.hooks.fail(new StoreError('FLUSH_FAILED', `durable writer failed: ${err.message}`, { cause: err }))
  }

  /** Completed writes, in issue order, advance the committed and flushed offsets. */
  private retire(): void {
    const log = this.log
    const q = this.inflight
    while (q.length > 0 && q[0]!.done) {
      const w = q.shift()!
      if (w.endsGroup) this.writerGroups--
      const c = w.chunk
      c.committed = w.to
      this.stagedBytes -= w.to - w.from
      const file = c.file
      file.committedPosition = c.fillsFile && c.committed === c.length ? file.fileSize : c.fileStart + c.committed
      file.flushedPosition = file.committedPosition
      log.committedOffset = log.flushedOffset = file.fileFromOffset + file.committedPosition
      if (c.committed === c.length && c.issued === c.length && (c.fillsFile || c !== this.chunks[this.chunks.length - 1])) {
        const i = this.chunks.indexOf(c)
        if (i >= 0) this.chunks.splice(i, 1)
        if (c.buf.length === STAGE_CHUNK_BYTES && this.chunkPool.length < STAGE_POOL_MAX) this.chunkPool.push(c.buf)
        else this.writer?.free(c.buf)
        // The blank that ends a file is its last write.
        if (c.fillsFile) this.writer?.release(file.file)
      }
    }
    // Sync flush: puts resolve once their records are dispatched too (readable with get); that
    // is at once unless the dispatcher had to open a file. Records are dispatched from what their
    // append knew; onCommitted then finds nothing left, or follows the log where that could not
    // be used (the first records of a new file, a dispatch that must open a file).
    const facts = this.appendedFacts
    let head = this.appendedFactsHead
    if (head < facts.length && log.onAppended) {
      const committed = log.committedOffset
      while (head < facts.length && facts[head]!.end <= committed) {
        const f = facts[head++]!
        log.onAppended(f.ms, f.states, f.results)
      }
      if (head >= facts.length) {
        this.appendedFacts = []
        head = 0
      }
      this.appendedFactsHead = head
    }
    const dispatching = log.onCommitted?.()
    if (log.committedListeners.size > 0) log.announceCommitted()
    if (dispatching) {
      const resolve = (): void => this.waiters.resolveUpTo(log.flushedOffset)
      dispatching.then(resolve, resolve)
    } else this.waiters.resolveUpTo(log.flushedOffset)
    if (this.waiters.pending) this.schedulePump()
    // The checkpoint follows every group (written, synced at most every second): after a kill
    // its durable offset is the last acknowledged group, so damage below it is refused as
    // corruption instead of cut as a torn tail (it is never above what an fdatasync covered).
    this.hooks.retired()
  }

  // -------------------------------------------------------------------------------------------
  // Failure and close

  /** The log failed: what appends wrote is never dispatched from here. */
  dropAppended(): void {
    this.appendedFacts = []
    this.appendedFactsHead = 0
  }

  /**
   * The log was cut back (truncate) once every staged byte was durable: no chunk holds anything
   * left to write, so all go (the next append starts a chunk at the new write position), and the
   * writer lets go of the deleted files.
   */
  truncated(deleted: readonly MappedFile[]): void {
    for (const c of this.chunks) {
      if (c.buf.length === STAGE_CHUNK_BYTES && this.chunkPool.length < STAGE_POOL_MAX) this.chunkPool.push(c.buf)
      else this.writer?.free(c.buf)
    }
    this.chunks.length = 0
    for (const f of deleted) this.writer?.release(f.file)
  }

  /** Whether durable writes are still in flight (they must finish before their files close). */
  get writing(): boolean {
    return this.inflight.some((w) => !w.done)
  }

  /** Drops every staged buffer (so the files' mappings can be collected) and stops the writer. */
  async close(): Promise<void> {
    this.chunks.length = 0
    this.chunkPool.length = 0
    const writer = this.writer
    this.writer = undefined
    await writer?.close()
  }
}
