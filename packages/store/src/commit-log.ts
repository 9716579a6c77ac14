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
 *   group commit, up to `syncFlushConcurrency` groups in flight (default 1: the next group is
 *   handed over once the previous one is durable, with everything appended meanwhile, so a fixed
 *   set of producers stays one group instead of splitting into smaller alternating ones). When
 *   the FileIO provides a DurableWriter (Node: a dedicated writer thread, durable-writer.ts) the
 *   chunks are shared memory it writes from in place; otherwise they are on the heap and go
 *   through O_DSYNC pwrite on the libuv thread pool. Readers see staged bytes at once (from the
 *   chunk) and committed ones through the map.
 *
 * Appends are synchronous on the fast path; a roll to a new file (or a full staging area) makes
 * later appends queue behind it in order, so records stay in call order and a batch is contiguous.
 */
import type { StoreCheckpoint } from './checkpoint.js'
import { StoreError, ioError } from './errors.js'
import { bodyCrcBatch } from './crc.js'
import type { DurableWriter } from './durable-writer.js'
import type { FileIO } from './file-io.js'
import {
  END_FILE_MIN_BLANK_LENGTH,
  MESSAGE_MAGIC_CODE_V1,
  MESSAGE_MAGIC_CODE_V2,
  RECORD_BLANK,
  RECORD_END,
  checkRecord,
  dataViewOf,
  readStoreTimestamp,
  verifyRecord,
  encodeBlank,
  encodeRecord,
  MessageIdEncoder,
  takesQueueOffset,
  type BodyCopier,
  type Host,
  type PreparedMessage,
} from './codec/index.js'
import type { MappedFile } from './mapped-file.js'
import { MappedFileQueue } from './mapped-file-queue.js'

export const OS_PAGE_BYTES = 4096
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
  /** Sync flush without a DurableWriter: durable writes in flight at once (thread pool). */
  syncFlushConcurrency: number
  checkCrcOnRecover: boolean
  /** Recovery checks from the start of the file holding the durable offset, on every open. */
  verifyOnOpen: boolean
  onCorruption: 'fail' | 'truncate'
  checkpoint: StoreCheckpoint
  now: () => number
}

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

export interface RecoveryReport {
  cleanShutdown: boolean
  /** Offset the checkpoint vouched for as durable; damage below it is corruption. */
  durableOffset: number
  /** Where the scan started: the durable offset, unless the bytes there could not be trusted. */
  scanFromOffset: number
  /** End of the last valid record: the new write position. */
  endOffset: number
  /** Records and bytes the scan read: none after a clean shutdown whose checkpoint holds the end. */
  recordsScanned: number
  bytesScanned: number
  /** Set when a torn or garbage tail was cut. */
  truncated?: { atOffset: number; reason: string; validDataFollowed: boolean; belowDurableOffset: boolean }
  filesDeleted: number
  /**
   * Set when the checkpoint failed its CRC: nothing it said was trusted (the scan started at the
   * first file, durableOffset 0) and every queue was re-dispatched.
   */
  checkpointDamaged?: boolean
}

interface StageChunk {
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

/** Recovery reads the tail after the cut in chunks of this size (through the descriptor). */
const ZERO_SCAN_CHUNK_BYTES = 1024 * 1024
const ZERO_PAGE_RUN = Buffer.alloc(64 * 1024)

function isZero(buf: Buffer, from: number, to: number): boolean {
  for (let at = from; at < to; at += ZERO_PAGE_RUN.length) {
    const end = Math.min(to, at + ZERO_PAGE_RUN.length)
    if (buf.compare(ZERO_PAGE_RUN, 0, end - at, at, end) !== 0) return false
  }
  return true
}

/**
 * The runs of OS pages in `buf[0, length)` (file position `filePos` at buf[0]) holding a non-zero
 * byte, as file positions [start, end), clipped to the buffer.
 */
function nonZeroPages(buf: Buffer, length: number, filePos: number): Array<[number, number]> {
  const runs: Array<[number, number]> = []
  let at = 0
  while (at < length) {
    const pageEnd = Math.min(length, (Math.floor((filePos + at) / OS_PAGE_BYTES) + 1) * OS_PAGE_BYTES - filePos)
    if (!isZero(buf, at, pageEnd)) {
      const last = runs[runs.length - 1]
      if (last && last[1] === filePos + at) last[1] = filePos + pageEnd
      else runs.push([filePos + at, filePos + pageEnd])
    }
    at = pageEnd
  }
  return runs
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
/** The waiter whose promise is being created (see waitDurable). */
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

export class CommitLog {
  readonly queue: MappedFileQueue
  readonly topics = new Map<string, TopicState>()
  /** Physical offsets: appended, handed to the OS, on disk. */
  wroteOffset = 0
  committedOffset = 0
  flushedOffset = 0
  /** Store time of the newest appended record. */
  lastStoreTimestamp = 0
  /** Called whenever the committed offset moves (the dispatcher follows it). */
  onCommitted: (() => Promise<void> | undefined) | undefined
  /**
   * What was written, so the dispatcher need not read it back. Async flush: called instead of
   * onCommitted right after records were written (committed) into the map. Sync flush: called
   * once they are durable, in log order, before onCommitted.
   */
  onAppended: ((ms: PreparedMessage[], states: TopicState[], results: AppendResult[]) => void) | undefined

  private readonly ids: MessageIdEncoder
  private readonly async: boolean
  private blocked: Promise<unknown> | undefined
  private failure: StoreError | undefined
  private closed = false

  // Sync flush: staged chunks and the durable writes in flight, in issue order.
  private readonly chunks: StageChunk[] = []
  private readonly chunkPool: Buffer[] = []
  private stagedBytes = 0
  private readonly inflight: InflightWrite[] = []
  /** Sync flush with the writer thread: groups handed over and not yet durable. */
  private writerGroups = 0
  /** Sync flush with the writer thread: the last submission of the group being appended. */
  private groupTail: InflightWrite | undefined
  /** Sync flush with the writer thread: bytes staged and not yet submitted (see WRITE_AHEAD_BYTES). */
  private unsubmittedBytes = 0
  private pumpScheduled = false
  /** Sync flush: the FileIO's writer (created by start()), else writes go through the thread pool. */
  private writer: DurableWriter | undefined
  /** Sync flush with the writer: copies bodies into its shared-memory chunks (DurableWriter.copier). */
  private stageCopier: BodyCopier | undefined
  private readonly runPump = (): void => this.pump()
  /** Body CRCs left pending at prepare time, computed per append (see defersBodyCrc). */
  private readonly bodyCrcs = bodyCrcBatch()
  /**
   * Sync flush: what each append knew about its records, in log order, until they are durable;
   * they are then dispatched from it (onAppended) instead of being read back.
   */
  private appendedFacts: AppendedFacts[] = []
  private appendedFactsHead = 0

  private waiters: FlushWaiter[] = []
  private waitersHead = 0
  private flushing: Promise<void> | undefined
  private timer: NodeJS.Timeout | undefined
  private lastThoroughFlush = 0
  private lastCheckpointSync = 0
  /** Async flush: ranges of the active file are faulted in on the thread pool, ahead of the writer. */
  private readonly backgroundPrefault: boolean
  private prefaultRetryAt = 0

  constructor(readonly options: CommitLogOptions) {
    this.async = options.flush === 'async'
    const sparse = this.async && options.io.canPrefault()
    this.backgroundPrefault = sparse && options.io.canPrefaultInBackground()
    this.queue = new MappedFileQueue(options.io, options.dir, options.fileSizeBytes, this.async, sparse, this.backgroundPrefault ? PREFAULT_AHEAD_BYTES : 0)
    this.ids = new MessageIdEncoder(options.storeHost)
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
    if (this.blocked === undefined && this.stagedBytes < this.options.stagingLimitBytes) {
      const r = this.tryWrite(ms, states, total)
      if (r) return r
    }
    return this.appendQueued(ms, states, total)
  }

  private appendQueued(ms: PreparedMessage[], states: TopicState[], total: number): Promise<AppendResult[]> {
    const run = async (): Promise<AppendResult[]> => {
      for (;;) {
        if (this.failure) throw this.failure
        if (this.closed) throw new StoreError('NOT_OPEN', 'store is closed')
        if (this.stagedBytes >= this.options.stagingLimitBytes) {
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

  private tryWrite(ms: PreparedMessage[], states: TopicState[], total: number): AppendResult[] | undefined {
    const file = this.queue.last
    if (!file || file.wrotePosition + total + END_FILE_MIN_BLANK_LENGTH > file.fileSize) return undefined
    let target: Buffer
    let dv: DataView
    let at: number
    let copyBody: BodyCopier | undefined
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
      const chunk = this.chunkFor(file, total)
      copyBody = this.stageCopier
      target = chunk.buf
      dv = chunk.dv
      at = chunk.length
      chunk.length += total
      this.stagedBytes += total
      this.unsubmittedBytes += total
    }
    const now = this.options.now()
    const host = this.options.storeHost
    const crcs = this.bodyCrcs
    const mark = crcs ? crcs.pending : 0
    const results: AppendResult[] = new Array(ms.length)
    let position = file.wrotePosition
    try {
      for (let i = 0; i < ms.length; i++) {
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
      crcs?.truncate(mark)
      throw err
    }
    // Async: readable through the map from now on. Sync: the group's CRCs are computed when it
    // is handed to the disk (pump) or read (recordAt).
    if (this.async) crcs?.flush()
    else {
      if (this.onAppended) this.appendedFacts.push({ ms, states, results, end: file.fileFromOffset + position })
      if (this.unsubmittedBytes >= WRITE_AHEAD_BYTES && this.writer) this.submitStaged(this.writer, false)
    }
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

  private chunkFor(file: MappedFile, bytes: number): StageChunk {
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

  private allocateStage(size: number): Buffer {
    return this.writer ? this.writer.allocate(size) : Buffer.allocUnsafe(size)
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
        const buf = this.allocateStage(END_FILE_MIN_BLANK_LENGTH)
        encodeBlank(buf, 0, remaining)
        this.chunks.push({ buf, dv: dataViewOf(buf), file: old, fileStart: old.wrotePosition, length: END_FILE_MIN_BLANK_LENGTH, issued: 0, committed: 0, fillsFile: true })
        this.stagedBytes += END_FILE_MIN_BLANK_LENGTH
      }
      old.wrotePosition = old.fileSize
    }
    this.wroteOffset = next.fileFromOffset
    if (this.async) {
      this.committedOffset = this.wroteOffset
      if (this.backgroundPrefault) this.prefaultAhead(next)
      else this.prefault(next, 0)
      this.onCommitted?.()
    }
  }

  // -------------------------------------------------------------------------------------------
  // Sync flush: durable writes of staged chunks

  /**
   * Issues durable writes for staged bytes, up to `syncFlushConcurrency` in flight. The bytes
   * staged now are split across the free slots, so producers fall into groups that alternate:
   * while one group's write is on its way to disk, the group resumed before it appends the next.
   */
  private pump(): void {
    this.pumpScheduled = false
    if (this.writer) return this.submitStaged(this.writer)
    this.bodyCrcs?.flush()
    const max = this.options.syncFlushConcurrency
    let unissued = 0
    for (const c of this.chunks) unissued += c.length - c.issued
    if (unissued === 0 || this.failure) return
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
      chunk.file.file.writeDurable(chunk.buf, write.from, write.to - write.from, chunk.fileStart + write.from).then(
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
    if (this.failure) return
    this.bodyCrcs?.flush()
    this.unsubmittedBytes = 0
    for (const c of this.chunks) {
      if (c.issued >= c.length) continue
      const from = c.issued
      try {
        if (!writer.submit(c.file.file, c.buf, from, c.length - from, c.fileStart + from)) break
      } catch (err) {
        this.fail(ioError(`writing ${c.file.fileName}`, err))
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
    this.fail(
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
  private schedulePump(): void {
    if (this.pumpScheduled) return
    if (this.writer) {
      if (this.writerGroups >= WRITER_GROUPS_IN_FLIGHT) return
      this.pumpScheduled = true
      this.pumpAfterMicrotasks(PUMP_MICROTASK_HOPS)
      return
    }
    if (this.inflight.length >= this.options.syncFlushConcurrency) return
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
    else this.fail(new StoreError('FLUSH_FAILED', `durable writer failed: ${err.message}`, { cause: err }))
  }

  /** Completed writes, in issue order, advance the committed and flushed offsets. */
  private retire(): void {
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
      this.committedOffset = this.flushedOffset = file.fileFromOffset + file.committedPosition
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
    if (head < facts.length && this.onAppended) {
      const committed = this.committedOffset
      while (head < facts.length && facts[head]!.end <= committed) {
        const f = facts[head++]!
        this.onAppended(f.ms, f.states, f.results)
      }
      if (head >= facts.length) {
        this.appendedFacts = []
        head = 0
      }
      this.appendedFactsHead = head
    }
    const dispatching = this.onCommitted?.()
    if (dispatching) {
      const resolve = (): void => this.resolveWaiters()
      dispatching.then(resolve, resolve)
    } else this.resolveWaiters()
    if (this.waitersHead < this.waiters.length) this.schedulePump()
    // The checkpoint follows every group (written, synced at most every second): after a kill
    // its durable offset is the last acknowledged group, so damage below it is refused as
    // corruption instead of cut as a torn tail (it is never above what an fdatasync covered).
    this.updateCheckpoint(this.lastStoreTimestamp)
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
      this.resolveWaiters()
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
    const waiter: FlushWaiter = { end, deadline, value, resolve: settled, reject: settled }
    pendingWaiter = waiter
    // One shared executor: no closure per put.
    const promise = new Promise<T>(captureSettlers)
    this.waiters.push(waiter)
    if (this.async) this.flush().catch(() => undefined)
    else this.schedulePump()
    return promise
  }

  private resolveWaiters(): void {
    const flushed = this.flushedOffset
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

  /** Puts past their deadline resolve false (FLUSH_DISK_TIMEOUT); internal waits never expire. */
  private expireWaiters(now: number): void {
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

  private fail(err: StoreError): StoreError {
    if (!this.failure) {
      this.failure = err
      this.appendedFacts = []
      this.appendedFactsHead = 0
      const ws = this.waiters
      for (let i = this.waitersHead; i < ws.length; i++) ws[i]!.reject(err)
      this.waiters = []
      this.waitersHead = 0
    }
    return this.failure
  }

  /** Starts the background services: async flusher, or sync-flush timeouts and checkpoint. */
  start(): void {
    const o = this.options
    if (!this.async && o.io.durableWriter && !this.writer) {
      this.writer = o.io.durableWriter({ onDone: (n) => this.writerDone(n), onError: (err) => this.writerFailed(err) })
      this.stageCopier = this.writer.copier
    }
    this.lastThoroughFlush = o.now()
    const last = this.queue.last
    if (this.backgroundPrefault && last) this.prefaultAhead(last)
    const tick = this.async ? o.flushIntervalMs : 100
    this.timer = setInterval(() => {
      const now = o.now()
      if (!this.async) {
        if (this.waitersHead < this.waiters.length && this.waiters[this.waitersHead]!.deadline <= now + tick) this.expireWaiters(now)
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
   * Closes and deletes the oldest data file. Refused for the file being written and for a file
   * holding bytes not yet dispatched (`dispatchedOffset`).
   */
  async deleteFirstFile(dispatchedOffset: number): Promise<boolean> {
    const files = this.queue.files
    const first = files[0]
    if (!first || files.length < 2) return false
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
    this.bodyCrcs?.flush()
    for (const c of this.chunks) {
      if (c.file === file && pos >= c.fileStart && pos < c.fileStart + c.length) return { buf: c.buf, dv: c.dv, at: pos - c.fileStart, limit: c.length }
    }
    return undefined
  }

  // -------------------------------------------------------------------------------------------
  // Recovery

  /**
   * Opens the files and finds the end of valid data. The checkpoint's durable offset D is where
   * the log is known good: after a clean shutdown it is the end of the log, and open reads no
   * record when nothing starts at D (a pread of its first bytes says so). After a crash every
   * record from D on is checked (size, magic, recomputed length, own offset, topic bytes, body
   * CRC); what lies below D is trusted as written, as RocketMQ trusts all but its last files
   * (`verifyOnOpen` checks from the start of the file holding D instead, on every open). The
   * first bad record ends the log (a torn tail: cut there, garbage after the cut zeroed, later
   * files deleted, the cut reported in `truncated`), except when valid records follow it below
   * the durable offset: that is corruption in the middle of acknowledged data and fails with
   * CORRUPT_RECORD, changing nothing, unless onCorruption is 'truncate'. docs/design/recovery.md
   * has the table.
   */
  async recover(cleanShutdown: boolean): Promise<RecoveryReport> {
    await this.queue.load()
    const o = this.options
    const files = this.queue.files
    const durableOffset = o.checkpoint.values.physicalFlushedOffset
    const report: RecoveryReport = { cleanShutdown, durableOffset, scanFromOffset: 0, endOffset: 0, recordsScanned: 0, bytesScanned: 0, filesDeleted: 0 }
    if (o.checkpoint.damaged) report.checkpointDamaged = true
    if (files.length === 0) {
      if (durableOffset > 0) {
        throw new StoreError('CORRUPT_FILE', `checkpoint says ${durableOffset} bytes of CommitLog are durable but ${o.dir} holds no data file`, { details: { durableOffset } })
      }
      return report
    }
    // Records below the start are not read: the store time of the newest comes from the checkpoint.
    this.lastStoreTimestamp = Math.max(this.lastStoreTimestamp, o.checkpoint.values.physicMsgTimestamp)
    const start = await this.scanStart(durableOffset, cleanShutdown)
    // Files below the start are trusted as written; the queue offsets of their records come
    // from the ConsumeQueues, which recovery then makes agree with the CommitLog.
    for (let i = 0; i < start.index; i++) {
      const f = files[i]!
      f.wrotePosition = f.committedPosition = f.flushedPosition = f.fileSize
    }
    let index = start.index
    let file = files[index]!
    let pos = start.pos
    report.scanFromOffset = file.fileFromOffset + pos
    // After a crash a file may end in a sparse tail; past its last non-zero byte (found through
    // the descriptor) the scan reads nothing through the map (see zeroTail).
    let dataEnd = cleanShutdown ? file.fileSize : await this.dataEnd(file)
    // The last valid record seen: its store time is the newest.
    let lastView: Buffer | undefined
    let lastAt = 0
    if (!start.atEnd) {
      for (;;) {
        const physical = file.fileFromOffset + pos
        // A record starting on a page boundary may start in a hole (the end of the data):
        // look with pread first, as a read through the map would allocate the page on tmpfs.
        if (pos >= dataEnd || (pos % OS_PAGE_BYTES === 0 && pos + 8 <= file.fileSize && (await this.zerosAt(file, pos)))) {
          if (physical >= durableOffset) break
        }
        // Per record: the checks only (no result object, no topic string): the queue offsets
        // of new appends come from the ConsumeQueues, which recovery re-dispatches.
        const v = pos >= dataEnd ? RECORD_END : verifyRecord(file.view, pos, file.fileSize, physical, o.maxRecordBytes, o.checkCrcOnRecover)
        if (typeof v === 'number' && v > 0) {
          report.recordsScanned++
          lastView = file.view
          lastAt = pos
          pos += v
          continue
        }
        if (v === RECORD_BLANK) {
          file.wrotePosition = file.committedPosition = file.flushedPosition = file.fileSize
          if (index + 1 >= files.length) {
            pos = file.fileSize
            break
          }
          file = files[++index]!
          pos = 0
          dataEnd = cleanShutdown ? file.fileSize : await this.dataEnd(file)
          continue
        }
        const reason = typeof v === 'string' ? v : 'data ends before the durable offset'
        if (v === RECORD_END && physical >= durableOffset) break
        // Damage with valid records after it is corruption in the middle of the log; below the
        // durable offset those records were acknowledged, so cutting would lose them: refuse.
        const validDataFollowed = await this.validDataAfter(index, pos)
        if (validDataFollowed && physical < durableOffset && o.onCorruption !== 'truncate') {
          throw new StoreError('CORRUPT_RECORD', `CommitLog corrupt at offset ${physical} (${reason}) with valid records after it, below the durable offset ${durableOffset}; open with onCorruption: 'truncate' to cut the log there`, {
            details: { physicalOffset: physical, file: file.fileName, reason, durableOffset },
          })
        }
        report.truncated = { atOffset: physical, reason, validDataFollowed, belowDurableOffset: physical < durableOffset }
        break
      }
    }
    report.bytesScanned = file.fileFromOffset + pos - report.scanFromOffset
    if (lastView) this.lastStoreTimestamp = Math.max(this.lastStoreTimestamp, readStoreTimestamp(lastView, lastAt))
    // A clean close leaves the next file allocated ahead, unwritten: it stays the next file.
    if (start.atEnd) await this.adoptEmptyNext(index)

    report.endOffset = file.fileFromOffset + pos
    // The scan read the page cache: after a kill it accepts bytes that were written but never
    // synced. They become durable here, before the checkpoint says they are (a clean close
    // synced everything it wrote).
    report.filesDeleted = await this.cut(index, pos, dataEnd, !cleanShutdown || report.truncated !== undefined, start.index, !cleanShutdown)
    const cp = o.checkpoint.values
    // A clean open that found the log ending where the checkpoint says changes nothing to sync.
    const unchanged = start.atEnd && report.filesDeleted === 0 && cp.physicalFlushedOffset === report.endOffset && cp.physicMsgTimestamp === this.lastStoreTimestamp
    cp.physicalFlushedOffset = report.endOffset
    if (this.lastStoreTimestamp > 0) cp.physicMsgTimestamp = this.lastStoreTimestamp
    if (!unchanged) await o.checkpoint.flush()
    return report
  }

  /**
   * Ends the log at `pos` of file `index`: the file's positions become `pos`, its non-zero bytes
   * in [pos, dataEnd) are zeroed when `zero`, the files from `syncFrom` to it are synced (when
   * `sync`, or zeros were written), and every later file is deleted, the last first. Returns the
   * number of files deleted. The caller then writes the checkpoint.
   */
  private async cut(index: number, pos: number, dataEnd: number, zero: boolean, syncFrom: number, sync: boolean): Promise<number> {
    const file = this.queue.files[index]!
    file.wrotePosition = file.committedPosition = file.flushedPosition = pos
    const zeroed = zero && (await this.zeroTail(file, pos, Math.max(pos, dataEnd)))
    if (sync || zeroed) await this.syncRecovered(syncFrom, index)
    const deleted = await this.queue.deleteAfter(file)
    this.wroteOffset = this.committedOffset = this.flushedOffset = file.fileFromOffset + pos
    return deleted
  }

  /**
   * After recover(), before anything is appended: cuts the log at `offset`, a record boundary at
   * or past the durable offset that the scan accepted but the re-dispatch found does not belong
   * (its header was torn: MessageStore.recoverConsumeQueues). The same cut as recover's, reported
   * in `report` the same way; the checkpoint is synced last.
   */
  async truncateRecovered(offset: number, reason: string, report: RecoveryReport): Promise<void> {
    const file = this.queue.findFile(offset)
    // Below the durable offset only when asked to (onCorruption: 'truncate'), as recovery's own cut.
    const belowDurableOffset = offset < report.durableOffset
    if (!file || (belowDurableOffset && this.options.onCorruption !== 'truncate') || offset >= this.committedOffset) {
      throw new StoreError('CORRUPT_RECORD', `cannot cut the recovered CommitLog at ${offset}: it ends at ${this.committedOffset} and is durable up to ${report.durableOffset}`, { details: { physicalOffset: offset } })
    }
    const index = this.queue.files.indexOf(file)
    const pos = offset - file.fileFromOffset
    // The bad record checked out as one: records follow it when the log goes on past it.
    const validDataFollowed = pos + 4 <= file.fileSize && offset + file.view.readInt32BE(pos) < this.committedOffset
    report.filesDeleted += await this.cut(index, pos, await this.dataEnd(file), true, index, false)
    report.endOffset = offset
    report.truncated = { atOffset: offset, reason, validDataFollowed, belowDurableOffset }
    this.options.checkpoint.values.physicalFlushedOffset = offset
    await this.options.checkpoint.flush()
  }

  /** fdatasyncs the files recovery accepted bytes from, `from` to `to` (indexes in the queue). */
  private async syncRecovered(from: number, to: number): Promise<void> {
    const files = this.queue.files
    for (let i = from; i <= to && i < files.length; i++) {
      const f = files[i]!
      try {
        await f.file.datasync()
      } catch (err) {
        throw new StoreError('FLUSH_FAILED', `fdatasync of ${f.fileName} failed while recovering; the recovered data is not known to be durable`, { cause: err })
      }
    }
  }

  /**
   * Clean open: when the only file after the one the log ends in starts with zeros (pread, not
   * the map), it is the next file a clean close left allocated ahead: kept as the next file
   * when files are zero-filled (a sparse one is made again at once, and deleting it returns
   * the space its prefaulted start holds: on a full disk the open needs it for its markers).
   */
  private async adoptEmptyNext(index: number): Promise<void> {
    const files = this.queue.files
    if (!this.queue.zeroFills || index !== files.length - 2) return
    const next = files[index + 1]!
    if (await this.zerosAt(next, 0)) this.queue.adoptNext(next)
  }

  /** Whether the 8 bytes at `pos` of `file` are zeros (no record starts there), read with pread. */
  private async zerosAt(file: MappedFile, pos: number): Promise<boolean> {
    const head = Buffer.alloc(8)
    const got = await file.file.read(head, 0, 8, pos)
    return got === 8 && head.readInt32BE(0) === 0 && head.readInt32BE(4) === 0
  }

  /**
   * Where the scan starts: the durable offset D (a record boundary: the checkpoint only ever
   * records offsets where an append or a file ended), or the start of the file holding it with
   * `verifyOnOpen`, or when the bytes at D do not start a valid record (a checkpoint written by
   * an older version at a split write; only a crash can leave that). `atEnd`: nothing to scan,
   * the log ends at D (a clean shutdown whose checkpoint holds the end, checked by reading the
   * first bytes at D without the map: a hole read through a map allocates a page on tmpfs).
   */
  private async scanStart(durableOffset: number, cleanShutdown: boolean): Promise<{ index: number; pos: number; atEnd: boolean }> {
    const files = this.queue.files
    const first = files[0]!
    const last = files[files.length - 1]!
    const fileSize = this.options.fileSizeBytes
    const logEnd = last.fileFromOffset + fileSize
    if (durableOffset <= first.fileFromOffset) return { index: 0, pos: 0, atEnd: false }
    // D past the files (they were cut or deleted): check all there is from the last file.
    if (durableOffset > logEnd) return { index: files.length - 1, pos: 0, atEnd: false }
    let index = Math.floor((durableOffset - first.fileFromOffset) / fileSize)
    let pos = durableOffset - files[Math.min(index, files.length - 1)]!.fileFromOffset
    if (index >= files.length) {
      index = files.length - 1
      pos = fileSize
    }
    if (this.options.verifyOnOpen) return { index, pos: 0, atEnd: false }
    const file = files[index]!
    if (pos > fileSize - 8) return { index, pos, atEnd: false }
    if (cleanShutdown) return { index, pos, atEnd: await this.zerosAt(file, pos) }
    // Zeros at D: the end of the data (checked with pread: D may start a hole).
    if (pos === 0 || (await this.zerosAt(file, pos))) return { index, pos, atEnd: false }
    const r = checkRecord(file.view, pos, fileSize, durableOffset, this.options.maxRecordBytes, this.options.checkCrcOnRecover)
    if (r.kind === 'bad') return { index, pos: 0, atEnd: false }
    return { index, pos, atEnd: false }
  }

  /**
   * Whether any valid record starts after a bad spot at `pos` of file `index`: the record right
   * after it if its size field is plausible, any position in the rest of the file where a message
   * magic code sits under a record that checks out at its own offset, or the next file's first.
   * Reads through the descriptor, not the map: the rest of the file may be a sparse tail (see
   * zeroTail).
   */
  private async validDataAfter(index: number, pos: number): Promise<boolean> {
    const files = this.queue.files
    const f = files[index]!
    const o = this.options
    const recordAt = async (file: MappedFile, at: number): Promise<boolean> => {
      if (at < 0 || file.fileSize - at < 8) return false
      const copy = Buffer.allocUnsafe(Math.min(o.maxRecordBytes, file.fileSize - at))
      const n = await file.file.read(copy, 0, copy.length, at)
      return checkRecord(copy, 0, n, file.fileFromOffset + at, o.maxRecordBytes, true).kind === 'record'
    }
    const head = Buffer.alloc(4)
    if (f.fileSize - pos >= 8 && (await f.file.read(head, 0, 4, pos)) === 4) {
      const size = head.readInt32BE(0)
      if (size > 0 && pos + size < f.fileSize && (await recordAt(f, pos + size))) return true
    }
    const magics = [MESSAGE_MAGIC_CODE_V1, MESSAGE_MAGIC_CODE_V2].map((code) => {
      const b = Buffer.alloc(4)
      b.writeInt32BE(code)
      return b
    })
    // Chunks overlap by 3 bytes, so a magic code across a chunk boundary is found once.
    const chunk = Buffer.allocUnsafe(Math.min(ZERO_SCAN_CHUNK_BYTES, Math.max(8, f.fileSize - pos)))
    for (let start = pos + 5; start < f.fileSize; start += chunk.length - 3) {
      const n = await f.file.read(chunk, 0, Math.min(chunk.length, f.fileSize - start), start)
      if (n < 4) break
      const view = chunk.subarray(0, n)
      for (const magic of magics) {
        for (let at = view.indexOf(magic); at >= 0; at = view.indexOf(magic, at + 1)) {
          if (await recordAt(f, start + at - 4)) return true
        }
      }
      if (n < chunk.length) break
    }
    const next = files[index + 1]
    return next !== undefined && (await recordAt(next, 0))
  }

  /**
   * Zeroes any non-zero bytes in [from, to) (`to`: the file's last non-zero byte, or its end), so
   * no stale record can reappear later, and
   * says whether it wrote any (the caller syncs the file). Everything goes through the descriptor,
   * never the map: on tmpfs a read of a hole through a shared map takes a page (SIGBUS when none
   * is left, and a whole sparse tail allocated when there is room), while pread of a hole takes
   * none. Zeros are written only over pages that hold data, so zeroing needs no new space.
   */
  private async zeroTail(file: MappedFile, from: number, to: number): Promise<boolean> {
    const size = to
    const chunk = Buffer.allocUnsafe(Math.min(ZERO_SCAN_CHUNK_BYTES, Math.max(OS_PAGE_BYTES, size - from)))
    let wrote = false
    for (let at = from; at < size; ) {
      const n = await file.file.read(chunk, 0, Math.min(chunk.length, size - at), at)
      if (n <= 0) break
      if (!isZero(chunk, 0, n)) {
        for (const [start, end] of nonZeroPages(chunk, n, at)) {
          for (let p = start; p < end; p += ZERO_PAGE_RUN.length) await file.file.write(ZERO_PAGE_RUN, 0, Math.min(ZERO_PAGE_RUN.length, end - p), p)
          wrote = true
        }
      }
      at += n
    }
    return wrote
  }

  /** The offset just past the last non-zero byte of `file` (0 if none), read backwards by pread. */
  private async dataEnd(file: MappedFile): Promise<number> {
    const chunk = Buffer.allocUnsafe(Math.min(ZERO_SCAN_CHUNK_BYTES, file.fileSize))
    for (let end = file.fileSize; end > 0; ) {
      const start = Math.max(0, end - chunk.length)
      const n = await file.file.read(chunk, 0, end - start, start)
      if (!isZero(chunk, 0, n)) {
        for (let i = n - 1; i >= 0; i--) if (chunk[i] !== 0) return start + i + 1
      }
      end = start
    }
    return 0
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
      const ws = this.waiters
      for (let i = this.waitersHead; i < ws.length; i++) {
        const w = ws[i]!
        if (this.flushedOffset < w.end) markTimedOut(w.value)
        w.resolve(w.value)
      }
      this.waiters = []
      this.waitersHead = 0
      // Durable writes still in flight (after a failure) must finish before their files close.
      while (this.inflight.some((w) => !w.done) && this.failure === undefined) await new Promise((r) => setImmediate(r))
      if (beforeRelease) await beforeRelease().catch(() => undefined)
      // Drop every reference to the files so their mappings can be collected (unmapped).
      this.chunks.length = 0
      this.chunkPool.length = 0
      const writer = this.writer
      this.writer = undefined
      try {
        await writer?.close()
      } finally {
        await this.queue.close()
      }
    }
  }
}
