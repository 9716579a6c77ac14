/**
 * ConsumeQueues: per (topic, queueId), the 20-byte units (physical offset, size, tags code) of the
 * queue's messages, in queue-offset order, in files of `unitsPerFile` units under
 * `consumequeue/<topic>/<queueId>/`, each named by the 20-digit logical byte offset of its first
 * unit (RocketMQ's layout). They are derived data: the dispatcher builds them from the CommitLog,
 * and recovery makes them agree with it (docs/design/consume-queue.md).
 *
 * Files are mapped shared and written through the map. On a platform that can prefault
 * (MADV_POPULATE_WRITE) they are sparse and every range is reserved before it is written, so a
 * full disk is an error, never a SIGBUS; elsewhere they are zero-filled at creation. The mapped
 * files held open at once are bounded by an LRU over all queues, so 10,000 idle queues cost no
 * mapping and no descriptor.
 */
import * as path from 'node:path'
import { LRUCache } from 'lru-cache'
import { osErrorCode } from '@mqts/common'
import { StoreError, ioError } from './errors.js'
import { BackgroundPrefault, type DataFile, type FileIO } from './file-io.js'
import {
  CQ_FILLER_SIZE,
  CQ_SUMMARY_FILE,
  CQ_SUMMARY_VERSION,
  CQ_UNIT,
  DATA_FILE_NAME_PATTERN,
  TOPIC_PATTERN,
  cqUnitPhysicalOffset,
  cqUnitSize,
  cqUnitTagsCode,
  dataViewOf,
  encodeCqUnit,
  offsetToFileName,
} from './codec/index.js'

/**
 * Zeroes (with pwrite, never a map fault) the 4 KiB pages of [from, to) that hold non-zero
 * bytes: such pages exist on disk, so this needs no new space. Where the file system reports
 * the file's holes (DataFile.dataRegions) only the parts of [from, to) that hold data are read:
 * past the units a killed process wrote, a queue file holds little more than what its writer
 * reserved ahead.
 */
async function zeroStale(file: DataFile, from: number, to: number): Promise<void> {
  let wrote = false
  for (const [start, end] of file.dataRegions?.() ?? [[from, to]]) {
    if (start >= to) break
    if (end > from && (await zeroStaleRange(file, Math.max(from, start), Math.min(to, end)))) wrote = true
  }
  if (wrote) await file.datasync()
}

/** zeroStale of one range: whether it wrote zeros. */
async function zeroStaleRange(file: DataFile, from: number, to: number): Promise<boolean> {
  const page = 4096
  // One pread for the whole range (a pread per page was a thread-pool round trip each: 256
  // per queue at every crash recovery), then a pwrite of zeros per page that is not zero.
  const buf = Buffer.allocUnsafe(to - from)
  const got = await file.read(buf, 0, to - from, from)
  let wrote = false
  for (let at = from; at < from + got; ) {
    const end = Math.min(from + got, at - (at % page) + page)
    if (!isZero(buf, at - from, end - from)) {
      await file.write(ZERO_PAGE, 0, end - at, at)
      wrote = true
    }
    at = end
  }
  return wrote
}

/**
 * fdatasyncs the flush at the end of a recovery runs at once (the thread pool has 4 threads by
 * default): after a crash every queue has a dirty window, and one fsync after another (a few ms
 * each on a busy disk) made that flush the longest step of the recovery of a small log.
 */
export const CQ_RECOVERY_FLUSH_PARALLEL = 3

/** Runs `fn` over `items`, at most `limit` at once; settles when all are done (`fn` must not throw). */
async function inParallel<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

function flushFailed(what: string, err: unknown): StoreError {
  return new StoreError('FLUSH_FAILED', what, { cause: err, details: { osCode: (err as NodeJS.ErrnoException | undefined)?.code } })
}

const ZERO_PAGE = Buffer.alloc(4096)

/** Whether buf[from, to) is all zeros (at most a page): one memcmp. */
function isZero(buf: Buffer, from: number, to: number): boolean {
  return buf.compare(ZERO_PAGE, 0, to - from, from, to) === 0
}

/** A crash recovery reads a queue's last file in preads of this size (a whole number of units). */
const CQ_SCAN_CHUNK_BYTES = 1024 * 1024 - ((1024 * 1024) % CQ_UNIT.bytes)

/**
 * How many of the `count` units at the start of `dv` continue a queue after a crash: size > 0
 * and physical offsets not decreasing (fillers aside) from `state.lastPhysical`, which follows
 * them. Stops at the first that does not.
 */
function soundUnits(dv: DataView, count: number, state: { lastPhysical: number }): number {
  let lastPhysical = state.lastPhysical
  let i = 0
  for (; i < count; i++) {
    const at = i * CQ_UNIT.bytes
    const size = cqUnitSize(dv, at)
    if (size <= 0) break
    if (size !== CQ_FILLER_SIZE) {
      const physical = cqUnitPhysicalOffset(dv, at)
      if (physical < 0 || physical < lastPhysical) break
      lastPhysical = physical
    }
  }
  state.lastPhysical = lastPhysical
  return i
}

/**
 * Bytes of a ConsumeQueue window reserved (prefaulted) ahead of the writer: the first reservation
 * of a window, doubled at each next one up to CQ_PREFAULT_MAX_BYTES. Faulting in holes costs
 * mostly per call (block allocation, journal), about 90 µs for 8 KiB and 40 µs for 64 KiB here,
 * so a busy queue soon reserves in large steps while an idle one holds a single page or two.
 */
export const CQ_PREFAULT_BYTES = 8 * 1024
export const CQ_PREFAULT_MAX_BYTES = 256 * 1024
/** After an unclean shutdown, bytes past a queue's end checked for stale units (see recover). */
export const CQ_STALE_WINDOW_BYTES = 1024 * 1024
export const DEFAULT_MAX_OPEN_CQ_FILES = 1024
let zeroPage: Buffer | undefined

/**
 * ConsumeQueue files are mapped in windows of this many bytes (a multiple of 20 and of the page
 * size), not whole: V8 counts every mapped byte as external memory and collects garbage more
 * often the more there is, so thousands of whole 6 MB maps cost a full GC every few opens.
 */
export const CQ_MAP_WINDOW_BYTES = 20 * 4096 * 4
/**
 * With background reservation, the next range of a window is asked for once the writer is within
 * half the next step of the reserved end (at most this much): an idle queue reserves no more
 * than without it, a busy one never waits for a fault.
 */
export const CQ_RESERVE_AHEAD_BYTES = 32 * 1024

/** An open, mapped window of a ConsumeQueue file. */
interface Segment {
  /** LRU key: file path and window start. */
  readonly key: string
  readonly path: string
  /** The descriptor, shared by the windows of one file mapped through it; closed with the last. */
  readonly shared: { refs: number }
  /** Logical byte offsets of the file's first unit and of the window's first unit. */
  readonly fileStart: number
  readonly start: number
  file: DataFile
  view: Buffer
  dv: DataView
  prefaultedTo: number
  /** Size of the next reservation (grows, see CQ_PREFAULT_BYTES). */
  reserveStep: number
  /** Background reservation (FileIO.canPrefaultInBackground), made on first use. */
  bg: BackgroundPrefault | undefined
  dirty: boolean
  /** Set when the LRU let go of it: the queue must look it up again. */
  evicted: boolean
  /** The window after this one was asked for ahead of time. */
  nextOpened: boolean
}

/** A newly mapped window: nothing reserved past `prefaultedTo`, nothing written yet. */
function newSegment(key: string, path: string, shared: { refs: number }, fileStart: number, start: number, file: DataFile, view: Buffer, prefaultedTo: number): Segment {
  return {
    key,
    path,
    shared,
    fileStart,
    start,
    file,
    view,
    dv: dataViewOf(view),
    prefaultedTo,
    reserveStep: CQ_PREFAULT_BYTES,
    bg: undefined,
    dirty: false,
    evicted: false,
    nextOpened: false,
  }
}

/** A queue's write segment is re-touched in the LRU every this many units. */
const LRU_TOUCH_UNITS = 1024

export interface ConsumeQueueSetOptions {
  io: FileIO
  dir: string
  unitsPerFile: number
  maxOpenFiles: number
}

/** A segment now, or once it has been opened. */
type Maybe<T> = T | Promise<T>

/** Whether `err` is a put's refusal of a record that does not fit its queue (see ConsumeQueue.put). */
export function isQueueMismatch(err: unknown): err is StoreError {
  return err instanceof StoreError && err.code === 'CORRUPT_RECORD' && err.details?.queueMismatch === true
}

export class ConsumeQueue {
  /** Logical byte offsets of the files, ascending. */
  fileStarts: number[] = []
  /** First readable unit, and the unit after the last one. */
  minOffset = 0
  maxOffset = 0
  /** CommitLog end (offset + size) of the last unit. */
  maxPhysicalEnd = 0
  /** Units at or above this were not put since it was last set (recovery's check of stale units). */
  putFloor = 0
  /** For arrival notifications: already in the set's touched list. */
  touched = false
  /** The segment last written, while the LRU holds it (the append fast path). */
  writeSeg: Segment | undefined
  /** The window of the last unit put again below maxOffset (re-dispatch); dropped at close. */
  replaceSeg: Segment | undefined
  private writesSinceTouch = 0
  /** Start of the next file already opened ahead (see openNext). */
  private openedAheadFile = 0

  constructor(
    readonly set: ConsumeQueueSet,
    readonly topic: string,
    readonly queueId: number,
    readonly dir: string,
  ) {}

  private fileStartOf(unit: number): number {
    const fileSize = this.set.fileSize
    return Math.floor((unit * CQ_UNIT.bytes) / fileSize) * fileSize
  }

  private pathOf(start: number): string {
    return path.join(this.dir, offsetToFileName(start))
  }

  /** The open window holding `unit`, or undefined when no file holds it. */
  segmentFor(unit: number, create: boolean): Maybe<Segment | undefined> {
    const fileStart = this.fileStartOf(unit)
    const window = this.set.windowBytes
    const start = fileStart + Math.floor((unit * CQ_UNIT.bytes - fileStart) / window) * window
    const p = this.pathOf(fileStart)
    const key = `${p}@${start - fileStart}`
    const cached = this.set.segments.get(key)
    if (cached) return cached
    const known = this.fileStarts.length > 0 && fileStart >= this.fileStarts[0]! && fileStart <= this.fileStarts[this.fileStarts.length - 1]!
    if (!known && !create) return undefined
    // Another window of the file being written: map it through the same descriptor, at once.
    const ws = this.writeSeg
    if (known && ws !== undefined && !ws.evicted && ws.fileStart === fileStart) return this.set.mapSibling(ws, key, start)
    return this.set.openSegment(this, key, p, fileStart, start, !known)
  }

  /** Records a created file; files are created in order, so it goes last. */
  noteFile(start: number): void {
    const starts = this.fileStarts
    if (starts.length === 0 || starts[starts.length - 1]! < start) starts.push(start)
    else if (!starts.includes(start)) {
      starts.push(start)
      starts.sort((a, b) => a - b)
    }
  }

  // -------------------------------------------------------------------------------------------
  // Write

  /**
   * Puts the unit of queue offset `unit`. Idempotent: a unit already there with the same content
   * is left alone. A record the set trusts (below `trustedBelow`, the durable offset at open) with
   * different content below the end truncates the queue there first (stale units); a gap is
   * filled with filler units, as RocketMQ does for a queue whose first unit is not at the start
   * of a file. Any other record must take the queue's next unit, or find its own unit already
   * there (or a damaged unit: see replace): otherwise it does not belong (a header torn by a
   * power loss) and the put throws CORRUPT_RECORD (`details.queueMismatch`) changing nothing.
   */
  put(unit: number, physicalOffset: number, size: number, tagsCode: number): Maybe<void> {
    if (unit >= this.putFloor) this.putFloor = unit + 1
    if (unit < this.maxOffset) {
      // Below the queue's minimum: its unit went with its file (or the queue lost its first
      // files); nothing to check it against.
      if (unit < this.minOffset) return
      // Re-dispatch after a crash puts every unit again: the window of the last one is kept.
      const rs = this.replaceSeg
      if (rs !== undefined && !rs.evicted) {
        const at = unit * CQ_UNIT.bytes - rs.start
        if (at >= 0 && at < rs.view.length) return this.replace(rs, unit, physicalOffset, size, tagsCode)
      }
      const seg = this.segmentFor(unit, false)
      if (seg instanceof Promise) {
        return seg.then((s) => {
          this.replaceSeg = s
          return this.replace(s, unit, physicalOffset, size, tagsCode)
        })
      }
      this.replaceSeg = seg
      return this.replace(seg, unit, physicalOffset, size, tagsCode)
    }
    if (unit > this.maxOffset) {
      if (physicalOffset >= this.set.trustedBelow) this.refuseGap(unit, physicalOffset)
      const empty = this.minOffset === this.maxOffset
      if (this.fileStarts.length === 0) this.minOffset = this.maxOffset = this.fileStartOf(unit) / CQ_UNIT.bytes
      // A queue whose earlier messages are gone from the CommitLog starts with fillers.
      return this.fillTo(unit).then(() => {
        if (empty) this.minOffset = unit
        return this.put(unit, physicalOffset, size, tagsCode)
      })
    }
    const ws = this.writeSeg
    if (ws !== undefined && !ws.evicted) {
      const at = unit * CQ_UNIT.bytes - ws.start
      if (at >= 0 && at < ws.view.length) {
        if (++this.writesSinceTouch >= LRU_TOUCH_UNITS) {
          this.writesSinceTouch = 0
          this.set.segments.get(ws.key)
        }
        this.write(ws, unit, physicalOffset, size, tagsCode)
        return
      }
    }
    const seg = this.segmentFor(unit, true)
    if (seg instanceof Promise) return seg.then((s) => this.write((this.writeSeg = s!), unit, physicalOffset, size, tagsCode))
    this.writeSeg = seg!
    this.write(seg!, unit, physicalOffset, size, tagsCode)
  }

  private replace(seg: Segment | undefined, unit: number, physicalOffset: number, size: number, tagsCode: number): Maybe<void> {
    if (seg) {
      const at = unit * CQ_UNIT.bytes - seg.start
      if (cqUnitPhysicalOffset(seg.dv, at) === physicalOffset && cqUnitSize(seg.dv, at) === size && cqUnitTagsCode(seg.dv, at) === tagsCode) {
        if (this.set.unsyncedUnits && !seg.dirty) this.keepUnit(seg)
        return
      }
    }
    if (physicalOffset >= this.set.trustedBelow) this.refuseReplace(seg, unit, physicalOffset)
    return this.truncateTo(unit).then(() => this.put(unit, physicalOffset, size, tagsCode))
  }

  /**
   * After a crash, a unit the re-dispatch finds in place may have been written by the killed
   * process and never synced: its window is synced (and the queue's directories) before the
   * checkpoint says the queues hold it, or a power loss could lose it for good.
   */
  private keepUnit(seg: Segment): void {
    seg.dirty = true
    this.set.syncDirsOf(this)
  }

  /**
   * A record not vouched for may replace only a unit that is itself damaged (a power loss tears
   * ConsumeQueue sectors too): one pointing at it with another size or tags code, or at no
   * record that claims this unit, or missing with its file. A unit its own record confirms means this record's header
   * lies: throws. (Kept out of put and replace, which re-dispatch runs for every record.)
   */
  private refuseReplace(seg: Segment | undefined, unit: number, physicalOffset: number): void {
    if (!seg) return // no unit to confirm or contradict it
    const held = cqUnitPhysicalOffset(seg.dv, unit * CQ_UNIT.bytes - seg.start)
    if (held !== physicalOffset && this.set.unitOwned(held, this.topic, this.queueId, unit)) throw this.mismatch(unit, physicalOffset, `the record at ${held} holds`)
  }

  /**
   * A record not vouched for that would leave a gap throws: only a queue with no file yet may
   * start past 0, when its first records may have gone with the CommitLog's first files.
   */
  private refuseGap(unit: number, physicalOffset: number): void {
    if (this.fileStarts.length > 0) throw this.mismatch(unit, physicalOffset, `leaves a gap after the queue's last unit ${this.maxOffset - 1}`, true)
    if (!this.set.logLostItsStart()) throw this.mismatch(unit, physicalOffset, 'is not the first of a queue while the CommitLog still starts at 0', true)
  }

  /**
   * The error of a record that does not belong at `unit` (see put). `gap`: the queue may instead
   * have lost units (files whose directory entry a power loss dropped); only a re-dispatch from
   * the start of the CommitLog tells.
   */
  private mismatch(unit: number, physicalOffset: number, what: string, gap = false): StoreError {
    const where = `${this.topic}@${this.queueId}`
    return new StoreError('CORRUPT_RECORD', `the record at CommitLog offset ${physicalOffset} claims queue offset ${unit} of ${where}, which ${what} (the queue's next offset is ${this.maxOffset}): its header is damaged`, {
      details: { queueMismatch: true, gap, physicalOffset, topic: this.topic, queueId: this.queueId, queueOffset: unit, nextQueueOffset: this.maxOffset },
    })
  }

  private async fillTo(unit: number): Promise<void> {
    while (this.maxOffset < unit) {
      const seg = await this.segmentFor(this.maxOffset, true)
      const at = this.maxOffset * CQ_UNIT.bytes - seg!.start
      this.set.reserve(seg!, at + CQ_UNIT.bytes)
      encodeCqUnit(seg!.dv, at, 0, CQ_FILLER_SIZE, 0)
      seg!.dirty = true
      this.maxOffset++
    }
  }

  private write(seg: Segment, unit: number, physicalOffset: number, size: number, tagsCode: number): void {
    const at = unit * CQ_UNIT.bytes - seg.start
    if (at + Math.min(CQ_RESERVE_AHEAD_BYTES, seg.reserveStep >>> 1) > seg.prefaultedTo && this.set.background) this.set.reserveAhead(seg, at)
    if (at + CQ_UNIT.bytes > seg.prefaultedTo) this.set.reserve(seg, at + CQ_UNIT.bytes)
    if (!seg.nextOpened && at * 2 >= seg.view.length) this.openNext(seg)
    encodeCqUnit(seg.dv, at, physicalOffset, size, tagsCode)
    seg.dirty = true
    this.maxOffset = unit + 1
    this.maxPhysicalEnd = physicalOffset + size
    if (!this.touched && this.set.tracking) {
      this.touched = true
      this.set.touched.push(this)
    }
  }

  /**
   * Past half of `seg`: opens the window after it in the background and has the start of it
   * reserved (in steps as large as this queue takes now), so the write that crosses over waits
   * neither for the thread pool nor for the first faults of a new window (a new file's cost
   * milliseconds). Past the middle of a file the next file is created and opened as well:
   * creating one takes tens of ms (93 ms measured with 8 queues rolling at once while the pool
   * faults in the CommitLog), more than a busy queue spends in a window.
   */
  private openNext(seg: Segment): void {
    seg.nextOpened = true
    const fileEnd = seg.fileStart + this.set.fileSize
    this.openAhead(seg.start + seg.view.length, seg.reserveStep)
    if (this.openedAheadFile < fileEnd && (seg.start - seg.fileStart) * 2 >= this.set.fileSize) {
      this.openedAheadFile = fileEnd
      this.openAhead(fileEnd, seg.reserveStep)
    }
  }

  private openAhead(start: number, reserveStep: number): void {
    const reserve = (next: Segment | undefined): void => {
      if (!next || next.evicted || !this.set.background) return
      if (next.reserveStep < reserveStep) next.reserveStep = reserveStep
      this.set.reserveAhead(next, 0)
    }
    let next: Maybe<Segment | undefined>
    try {
      next = this.segmentFor(start / CQ_UNIT.bytes, true)
    } catch {
      return // the write that needs it reports the failure
    }
    if (next instanceof Promise) next.then(reserve, () => undefined)
    else reserve(next)
  }

  /** Removes units [unit, maxOffset): zeroes them and deletes files wholly past the new end. */
  async truncateTo(unit: number): Promise<void> {
    if (unit >= this.maxOffset) return
    unit = Math.max(unit, this.minOffset)
    for (let u = unit; u < this.maxOffset; ) {
      const seg = await this.segmentFor(u, false)
      if (!seg) {
        u = this.rollNextFile(u)
        continue
      }
      const to = Math.min(this.maxOffset, (seg.start + seg.view.length) / CQ_UNIT.bytes)
      seg.view.fill(0, u * CQ_UNIT.bytes - seg.start, to * CQ_UNIT.bytes - seg.start)
      seg.dirty = true
      u = to
    }
    // Files that now hold nothing go (but a queue keeps its first file).
    const keepFrom = this.fileStartOf(unit)
    while (this.fileStarts.length > 1 && this.fileStarts[this.fileStarts.length - 1]! > keepFrom) {
      await this.set.removeFile(this.pathOf(this.fileStarts.pop()!))
    }
    this.maxOffset = unit
    this.maxPhysicalEnd = 0
    if (unit > this.minOffset) {
      const seg = await this.segmentFor(unit - 1, false)
      if (seg) {
        const at = (unit - 1) * CQ_UNIT.bytes - seg.start
        const size = cqUnitSize(seg.dv, at)
        if (size !== CQ_FILLER_SIZE) this.maxPhysicalEnd = cqUnitPhysicalOffset(seg.dv, at) + size
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Recovery

  /**
   * Finds the end of the queue from its files. After a clean shutdown the units are a dense
   * prefix of the last file (binary search). After a crash the last file is scanned unit by unit
   * (size > 0, offsets not decreasing); anything non-zero in the next CQ_STALE_WINDOW_BYTES is
   * zeroed, so a stale unit left by a torn page cannot later join the queue. Returns false when
   * the files cannot be trusted at all (a gap): the caller rebuilds the queue.
   *
   * Reads go through pread, not the map: on tmpfs a read fault on a hole allocates a page.
   */
  async recover(clean: boolean, fileStarts: number[], commitLogEnd: number, commitLogMin: number): Promise<boolean> {
    this.fileStarts = fileStarts
    const fileSize = this.set.fileSize
    for (let i = 1; i < fileStarts.length; i++) if (fileStarts[i] !== fileStarts[i - 1]! + fileSize) return false
    if (fileStarts.length === 0) return true
    const io = this.set.options.io
    const unitBuf = Buffer.alloc(CQ_UNIT.bytes)
    const unitDv = dataViewOf(unitBuf)
    const readUnit = async (file: DataFile, n: number): Promise<void> => {
      unitBuf.fill(0)
      await file.read(unitBuf, 0, CQ_UNIT.bytes, n * CQ_UNIT.bytes)
    }
    // Trailing files without a first unit were created but never written.
    let file: DataFile
    for (;;) {
      const last = fileStarts[fileStarts.length - 1]!
      file = await io.open(this.pathOf(last))
      await readUnit(file, 0)
      if (cqUnitSize(unitDv, 0) !== 0 || fileStarts.length === 1) break
      await file.close()
      fileStarts.pop()
      await this.set.removeFile(this.pathOf(last))
    }
    const lastStart = fileStarts[fileStarts.length - 1]!
    const units = fileSize / CQ_UNIT.bytes
    let n: number
    try {
      if (clean) {
        let lo = 0
        let hi = units
        while (lo < hi) {
          const mid = (lo + hi) >>> 1
          await readUnit(file, mid)
          if (cqUnitSize(unitDv, 0) !== 0) lo = mid + 1
          else hi = mid
        }
        n = lo
      } else {
        n = 0
        const state = { lastPhysical: -1 }
        const chunk = Buffer.allocUnsafe(CQ_SCAN_CHUNK_BYTES)
        const dv = dataViewOf(chunk)
        for (let base = 0; base < units; ) {
          const got = await file.read(chunk, 0, Math.min(chunk.length, (units - base) * CQ_UNIT.bytes), base * CQ_UNIT.bytes)
          const count = Math.floor(got / CQ_UNIT.bytes)
          const sound = soundUnits(dv, count, state)
          n += sound
          if (sound < count || count === 0) break
          base += count
        }
        await zeroStale(file, n * CQ_UNIT.bytes, Math.min(fileSize, n * CQ_UNIT.bytes + CQ_STALE_WINDOW_BYTES))
      }
      this.minOffset = fileStarts[0]! / CQ_UNIT.bytes
      this.maxOffset = lastStart / CQ_UNIT.bytes + n
      this.maxPhysicalEnd = 0
      if (n > 0) {
        await readUnit(file, n - 1)
        const size = cqUnitSize(unitDv, 0)
        if (size !== CQ_FILLER_SIZE) this.maxPhysicalEnd = cqUnitPhysicalOffset(unitDv, 0) + size
      }
    } finally {
      await file.close()
    }
    // Units past the CommitLog's end, or a minimum below its start, take the mapped path.
    if (this.maxPhysicalEnd > commitLogEnd || (this.maxPhysicalEnd === 0 && this.maxOffset > this.minOffset)) await this.truncatePhysical(commitLogEnd)
    if (this.maxOffset > this.minOffset) {
      const first = await io.open(this.pathOf(fileStarts[0]!))
      try {
        await readUnit(first, 0)
      } finally {
        await first.close()
      }
      if (cqUnitSize(unitDv, 0) === CQ_FILLER_SIZE || cqUnitPhysicalOffset(unitDv, 0) < commitLogMin) await this.correctMinOffset(commitLogMin)
    }
    return true
  }

  /**
   * Drops the units that point past the end of the CommitLog, and zero units before them: a
   * truncate zeroes units in place, and a power loss can keep those zeros while it loses the
   * removal of a later file (or the data of a file never synced reads as zeros).
   */
  async truncatePhysical(commitLogEnd: number): Promise<void> {
    let unit = this.maxOffset
    while (unit > this.minOffset) {
      const seg = await this.segmentFor(unit - 1, false)
      if (!seg) break
      const at = (unit - 1) * CQ_UNIT.bytes - seg.start
      const size = cqUnitSize(seg.dv, at)
      if (size !== CQ_FILLER_SIZE && size > 0 && cqUnitPhysicalOffset(seg.dv, at) + size <= commitLogEnd) break
      unit--
    }
    if (unit < this.maxOffset) await this.truncateTo(unit)
  }

  /**
   * Moves minOffset to the first unit that points at or past `commitLogMin` (RocketMQ's
   * correctMinOffset): units are in CommitLog order, fillers only lead, so a binary search does.
   */
  async correctMinOffset(commitLogMin: number): Promise<void> {
    let lo = this.minOffset
    let hi = this.maxOffset
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2)
      const seg = await this.segmentFor(mid, false)
      let below = true
      if (seg) {
        const at = mid * CQ_UNIT.bytes - seg.start
        const size = cqUnitSize(seg.dv, at)
        below = size === CQ_FILLER_SIZE || cqUnitPhysicalOffset(seg.dv, at) < commitLogMin
      }
      if (below) lo = mid + 1
      else hi = mid
    }
    this.minOffset = lo
  }

  /**
   * Deletes files whose every unit points below `commitLogMin`, never the last file. Returns
   * the number deleted.
   */
  async deleteBelow(commitLogMin: number): Promise<number> {
    let deleted = 0
    const units = this.set.fileSize / CQ_UNIT.bytes
    while (this.fileStarts.length > 1) {
      const start = this.fileStarts[0]!
      const lastUnit = start / CQ_UNIT.bytes + units - 1
      const seg = await this.segmentFor(lastUnit, false)
      if (seg) {
        const at = lastUnit * CQ_UNIT.bytes - seg.start
        if (cqUnitPhysicalOffset(seg.dv, at) + cqUnitSize(seg.dv, at) > commitLogMin) break
      }
      this.fileStarts.shift()
      await this.set.removeFile(this.pathOf(start))
      deleted++
    }
    if (this.fileStarts.length > 0) this.minOffset = Math.max(this.minOffset, this.fileStarts[0]! / CQ_UNIT.bytes)
    await this.correctMinOffset(commitLogMin)
    return deleted
  }

  // -------------------------------------------------------------------------------------------
  // Read

  /** Unit `unit` (undefined when outside the queue or its file is gone). */
  async unitAt(unit: number): Promise<{ physicalOffset: number; size: number; tagsCode: number } | undefined> {
    if (unit < this.minOffset || unit >= this.maxOffset) return undefined
    const seg = await this.segmentFor(unit, false)
    if (!seg) return undefined
    const at = unit * CQ_UNIT.bytes - seg.start
    return { physicalOffset: cqUnitPhysicalOffset(seg.dv, at), size: cqUnitSize(seg.dv, at), tagsCode: cqUnitTagsCode(seg.dv, at) }
  }

  /** First unit of the file after the one holding `unit` (RocketMQ's rollNextFile). */
  rollNextFile(unit: number): number {
    return (this.fileStartOf(unit) + this.set.fileSize) / CQ_UNIT.bytes
  }
}

/** Every ConsumeQueue of a store, and the bounded set of their open files. */
export class ConsumeQueueSet {
  readonly fileSize: number
  readonly windowBytes: number
  readonly queues = new Map<string, Map<number, ConsumeQueue>>()
  readonly segments: LRUCache<string, Segment>
  /**
   * CommitLog offset below which records are trusted as durable (the durable offset at open): a
   * unit they disagree with is stale and replaced. A record at or past it must fit its queue
   * (ConsumeQueue.put). Infinity until recovery sets it: everything is trusted.
   */
  trustedBelow = Number.POSITIVE_INFINITY
  /**
   * Whether a record that claims queue offset `unit` of (`topic`, `queueId`) starts at CommitLog
   * offset `physicalOffset`: then a unit pointing there is sound (see ConsumeQueue.put). Set by
   * the store; without it every unit counts as sound.
   */
  unitOwned: (physicalOffset: number, topic: string, queueId: number, unit: number) => boolean = () => true
  /** Whether files at the start of the CommitLog were deleted (set by the store). */
  logLostItsStart: () => boolean = () => true
  /**
   * Recovery after a crash: units found in place may not be durable (see ConsumeQueue.keepUnit).
   * Set by the store while it re-dispatches.
   */
  unsyncedUnits = false
  /** Queues written since the last `takeTouched()`, when arrivals are tracked. */
  touched: ConsumeQueue[] = []
  tracking = false
  private readonly sparse: boolean
  /** Sparse windows are reserved ahead of the writer on the thread pool (DataFile.prefaultViewAsync). */
  readonly background: boolean
  private reserveRetryAt = 0
  private readonly closing = new Set<Promise<void>>()
  private readonly opening = new Map<string, Promise<Segment>>()
  private lastTopic: string | undefined
  private lastById: Map<number, ConsumeQueue> | undefined
  /** Directories with entries created since the last flush (synced before the flush completes). */
  private readonly dirsToSync = new Set<string>()

  constructor(readonly options: ConsumeQueueSetOptions) {
    this.fileSize = options.unitsPerFile * CQ_UNIT.bytes
    this.windowBytes = CQ_MAP_WINDOW_BYTES
    this.sparse = options.io.canPrefault()
    this.background = this.sparse && options.io.canPrefaultInBackground()
    this.segments = new LRUCache<string, Segment>({
      max: Math.max(2, options.maxOpenFiles),
      dispose: (seg) => this.release(seg),
    })
  }

  /** Has the next flush sync the directories holding `cq`'s files (their entries may be new). */
  syncDirsOf(cq: ConsumeQueue): void {
    this.dirsToSync.add(cq.dir)
    this.dirsToSync.add(path.dirname(cq.dir))
    this.dirsToSync.add(this.options.dir)
  }

  find(topic: string, queueId: number): ConsumeQueue | undefined {
    return this.queues.get(topic)?.get(queueId)
  }

  findOrCreate(topic: string, queueId: number): ConsumeQueue {
    // Dispatch mostly sees one topic after another: its queues without the topic lookup (topics
    // are never removed from the map, so the remembered one cannot go stale).
    let byId = topic === this.lastTopic ? this.lastById : this.queues.get(topic)
    if (!byId) {
      byId = new Map()
      this.queues.set(topic, byId)
    }
    this.lastTopic = topic
    this.lastById = byId
    let cq = byId.get(queueId)
    if (!cq) {
      cq = new ConsumeQueue(this, topic, queueId, path.join(this.options.dir, topic, String(queueId)))
      byId.set(queueId, cq)
    }
    return cq
  }

  *all(): IterableIterator<ConsumeQueue> {
    for (const byId of this.queues.values()) yield* byId.values()
  }

  takeTouched(): ConsumeQueue[] {
    const t = this.touched
    this.touched = []
    for (const cq of t) cq.touched = false
    return t
  }

  /** Opens (creating if asked) the file at `p` and maps the window at `start`, keeping it in the LRU. */
  openSegment(cq: ConsumeQueue, key: string, p: string, fileStart: number, start: number, create: boolean): Promise<Segment> {
    let pending = this.opening.get(key)
    if (pending) return pending
    pending = (async () => {
      const io = this.options.io
      let fresh = false
      try {
        if (create) {
          // Not synced here either: flush() syncs these directories with the file's.
          await io.mkdirp(cq.dir, { durable: false })
          if ((await io.size(p)) === undefined) {
            // Not synced here (a new queue must not stall dispatch for two fsyncs): flush() syncs
            // the directories before the checkpoint may count on the file.
            await io.allocate(p, this.fileSize, { zeroFill: !this.sparse, durable: false })
            fresh = true
            this.dirsToSync.add(cq.dir)
            this.dirsToSync.add(path.dirname(cq.dir))
            this.dirsToSync.add(this.options.dir)
          }
          cq.noteFile(fileStart)
        }
        const file = await io.open(p)
        if (file.size !== this.fileSize) {
          await file.close()
          throw new StoreError('CORRUPT_FILE', `ConsumeQueue file ${p} has ${file.size} bytes, expected ${this.fileSize}`, { details: { file: p } })
        }
        const length = Math.min(this.windowBytes, this.fileSize - (start - fileStart))
        let prefaultedTo = this.sparse ? 0 : length
        let view: Buffer
        try {
          if (fresh && this.sparse && start === fileStart) {
            // The first write fault on a new file costs milliseconds on the main thread (ext4
            // allocates and journals); a pwrite of the first range does it on the thread pool.
            prefaultedTo = Math.min(length, CQ_PREFAULT_BYTES)
            zeroPage ??= Buffer.alloc(CQ_PREFAULT_BYTES)
            await file.write(zeroPage, 0, prefaultedTo, 0)
          }
          view = file.map(true, start - fileStart, length)
        } catch (err) {
          // A full disk fails the first write: the descriptor goes now, not at garbage collection.
          await file.close().catch(() => undefined)
          throw err
        }
        const seg = newSegment(key, p, { refs: 1 }, fileStart, start, file, view, prefaultedTo)
        this.segments.set(key, seg)
        return seg
      } catch (err) {
        throw ioError(`opening ConsumeQueue file ${p}`, err)
      } finally {
        this.opening.delete(key)
      }
    })()
    this.opening.set(key, pending)
    return pending
  }

  /** A window of the same file as `sibling`, mapped through its descriptor (synchronously). */
  mapSibling(sibling: Segment, key: string, start: number): Segment {
    const length = Math.min(this.windowBytes, this.fileSize - (start - sibling.fileStart))
    let view: Buffer
    try {
      view = sibling.file.mapMore(true, start - sibling.fileStart, length)
    } catch (err) {
      throw ioError(`mapping ConsumeQueue file ${sibling.path}`, err)
    }
    sibling.shared.refs++
    const seg = newSegment(key, sibling.path, sibling.shared, sibling.fileStart, start, sibling.file, view, this.sparse ? 0 : length)
    this.segments.set(key, seg)
    return seg
  }

  /**
   * Takes in what the background reserved of `seg`, and asks for the next range (reserveStep,
   * growing as in reserve) when none is under way and the writer, at `at`, is within reach of the
   * reserved end (see CQ_RESERVE_AHEAD_BYTES). Faulting in writes no byte, so the writer may keep
   * writing the window meanwhile.
   */
  reserveAhead(seg: Segment, at: number): void {
    if (this.collectReserved(seg) || seg.prefaultedTo >= seg.view.length || seg.evicted) return
    if (at + Math.min(CQ_RESERVE_AHEAD_BYTES, seg.reserveStep >>> 1) <= seg.prefaultedTo) return
    if (this.reserveRetryAt !== 0) {
      if (Date.now() < this.reserveRetryAt) return
      this.reserveRetryAt = 0
    }
    const from = seg.prefaultedTo
    const to = Math.min(seg.view.length, from + seg.reserveStep)
    if (seg.reserveStep < CQ_PREFAULT_MAX_BYTES) seg.reserveStep *= 2
    ;(seg.bg ??= new BackgroundPrefault()).start(seg.file, seg.view, from, to)
  }

  /**
   * Moves `seg.prefaultedTo` up to what the background finished; true while a range is still
   * under way. A failure (full disk) is left for the writer's own reserve to report when it needs
   * the range; the background waits a second before it asks again.
   */
  private collectReserved(seg: Segment): boolean {
    const state = seg.bg?.collect(seg)
    if (state === 'failed') this.reserveRetryAt = Date.now() + 1000
    return state === 'busy'
  }

  /** Reserves the blocks of [.., end) of a sparse window (CQ_PREFAULT_BYTES at a time); `end` is window-relative. */
  reserve(seg: Segment, end: number): void {
    if (end <= seg.prefaultedTo) return
    // The background may have just finished it; while it is still under way, take only the
    // pages needed now (its range is not reserved twice).
    const busy = this.background && this.collectReserved(seg)
    if (end <= seg.prefaultedTo) return
    const from = seg.prefaultedTo
    const to = busy ? Math.min(seg.view.length, end + 4095 - ((end + 4095) % 4096)) : Math.min(seg.view.length, Math.max(end, from + seg.reserveStep))
    if (!busy && seg.reserveStep < CQ_PREFAULT_MAX_BYTES) seg.reserveStep *= 2
    try {
      seg.file.prefaultView(seg.view, from, to - from)
    } catch (err) {
      throw ioError(`reserving space in ConsumeQueue file ${seg.path}`, err)
    }
    seg.prefaultedTo = to
  }

  /**
   * An evicted (or removed) segment: synced if dirty, then closed, in the background. Its view
   * stays usable by whoever still holds the segment (the mapping lives until the Buffer is
   * collected); the descriptor and the resident pages go now.
   */
  private release(seg: Segment): void {
    seg.evicted = true
    const p = (async () => {
      try {
        await seg.bg?.pending
        if (seg.dirty) {
          seg.dirty = false
          await seg.file.datasync()
        }
      } finally {
        if (--seg.shared.refs === 0) await seg.file.close()
      }
    })()
    const tracked = p.catch(() => undefined)
    this.closing.add(tracked)
    void tracked.then(() => this.closing.delete(tracked))
  }

  async removeFile(p: string): Promise<void> {
    for (const [key, seg] of [...this.segments.entries()]) {
      if (seg.path === p) {
        seg.dirty = false
        this.segments.delete(key)
      }
    }
    await Promise.all(this.closing)
    await this.options.io.remove(p)
  }

  /**
   * fdatasyncs every dirty open file, and waits for evicted ones to be synced and closed. Each
   * file taken is pinned (a reference on its descriptor) until its sync is done: windows opened
   * meanwhile (ahead of a writer, or by a re-dispatch) may evict it from the LRU, and its release
   * must not close the descriptor under the sync; the last of the two to let go closes it.
   * `parallel` syncs run at once: recovery, with every queue dirty and nothing else running, asks
   * for CQ_RECOVERY_FLUSH_PARALLEL; the periodic flush runs one at a time, leaving the thread
   * pool to the CommitLog's flush and the prefaults ahead of the writers.
   */
  async flush(parallel = 1): Promise<void> {
    const dirty: Segment[] = []
    for (const seg of this.segments.values()) {
      if (seg.dirty) {
        seg.dirty = false
        seg.shared.refs++
        dirty.push(seg)
      }
    }
    let failure: unknown
    await inParallel(dirty, parallel, async (seg) => {
      try {
        if (failure === undefined) await seg.file.datasync()
      } catch (err) {
        failure ??= err
      }
      if (failure !== undefined) seg.dirty = true
      await this.unpin(seg)
    })
    if (failure !== undefined) throw flushFailed('fdatasync of a ConsumeQueue file failed', failure)
    await Promise.all(this.closing)
    const dirs = [...this.dirsToSync]
    this.dirsToSync.clear()
    let dirFailure: unknown
    await inParallel(dirs, parallel, async (d) => {
      try {
        // A folder gone since (a deleted topic's) has nothing left to sync.
        if (dirFailure === undefined) await this.options.io.syncDir(d)
      } catch (err) {
        if (osErrorCode(err) !== 'ENOENT') dirFailure ??= err
      }
    })
    if (dirFailure !== undefined) {
      for (const d of dirs) this.dirsToSync.add(d)
      throw flushFailed('syncing a ConsumeQueue directory failed', dirFailure)
    }
  }

  /**
   * Lets go of a flush's pin on `seg`'s descriptor. If the LRU released the segment meanwhile,
   * its own release skipped the sync (the flush had cleared `dirty`) or it is still dirty from a
   * failed sync: a dirty evicted segment is synced here, and the descriptor closed when no
   * window holds it any more.
   */
  private async unpin(seg: Segment): Promise<void> {
    if (--seg.shared.refs > 0) return
    try {
      if (seg.dirty) {
        seg.dirty = false
        await seg.file.datasync()
      }
    } catch {
      // Reported by the flush that found it dirty.
    } finally {
      await seg.file.close().catch(() => undefined)
    }
  }

  // -------------------------------------------------------------------------------------------
  // Load

  /**
   * Finds every queue under the root and recovers it (see ConsumeQueue.recover). Returns false
   * when some queue had to be dropped: the caller must then re-dispatch the whole CommitLog.
   */
  async load(clean: boolean, commitLogEnd: number, commitLogMin: number): Promise<boolean> {
    const io = this.options.io
    await io.mkdirp(this.options.dir)
    let intact = true
    const found: Array<{ topic: string; queueId: number; dir: string }> = []
    for (const topic of await io.list(this.options.dir)) {
      if (!TOPIC_PATTERN.test(topic)) continue
      const topicDir = path.join(this.options.dir, topic)
      for (const id of await io.list(topicDir)) {
        if (/^\d+$/.test(id)) found.push({ topic, queueId: Number(id), dir: path.join(topicDir, id) })
      }
    }
    // After a clean close the summary holds every queue's offsets: a queue whose folder lists
    // the files it names is taken from it without reading a file.
    const summary = clean ? await this.readSummary(commitLogEnd, commitLogMin) : undefined
    const recoverOne = async ({ topic, queueId, dir }: { topic: string; queueId: number; dir: string }): Promise<void> => {
      const starts: number[] = []
      let sound = true
      const names = await io.list(dir)
      const known = summary?.get(summaryKey(topic, queueId))
      // Its folder is here: whether taken from the summary or read, the queue is not lost.
      summary?.delete(summaryKey(topic, queueId))
      if (known && sameStarts(names, known.fileStarts)) {
        const cq = this.findOrCreate(topic, queueId)
        cq.fileStarts = known.fileStarts
        cq.minOffset = known.minOffset
        cq.maxOffset = known.maxOffset
        cq.maxPhysicalEnd = known.maxPhysicalEnd
        return
      }
      for (const name of names) {
        const file = path.join(dir, name)
        if (name.endsWith('.tmp')) {
          await io.remove(file)
          continue
        }
        if (!DATA_FILE_NAME_PATTERN.test(name)) continue
        const start = Number(name)
        if (start % this.fileSize !== 0 || (await io.size(file)) !== this.fileSize) {
          sound = false
          break
        }
        starts.push(start)
      }
      starts.sort((a, b) => a - b)
      // A queue folder without files lost them: rebuild (its offsets cannot be known otherwise).
      if (starts.length === 0) sound = false
      const cq = this.findOrCreate(topic, queueId)
      if (sound) sound = await cq.recover(clean, starts, commitLogEnd, commitLogMin).catch(() => false)
      if (!sound) {
        intact = false
        await this.dropQueue(cq)
      }
    }
    // Queues recover concurrently: each is a handful of small preads.
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < found.length) await recoverOne(found[next++]!)
    }
    await Promise.all(Array.from({ length: Math.min(16, found.length) }, worker))
    // A queue the summary names whose folder is gone lost its files: rebuild.
    if (summary && summary.size > 0) intact = false
    return intact
  }

  /**
   * Writes the summary (CQ_SUMMARY_FILE) of every queue, after a clean close flushed them:
   * `commitLogEnd` and `commitLogMin` are the CommitLog's as the next open will find them.
   */
  async saveSummary(commitLogEnd: number, commitLogMin: number): Promise<void> {
    const queues: unknown[] = []
    for (const cq of this.all()) {
      // Files created ahead and not yet written are left out: a folder that still lists one
      // takes the reading path, which removes it.
      const starts = cq.fileStarts.filter((start, i) => i === 0 || start < cq.maxOffset * CQ_UNIT.bytes)
      if (starts.length > 0) queues.push([cq.topic, cq.queueId, cq.minOffset, cq.maxOffset, cq.maxPhysicalEnd, starts])
    }
    const body = { version: CQ_SUMMARY_VERSION, commitLogEnd, commitLogMin, fileSize: this.fileSize, queues }
    const file = path.join(this.options.dir, CQ_SUMMARY_FILE)
    try {
      await this.options.io.writeFileAtomic(file, Buffer.from(JSON.stringify(body)))
    } catch (err) {
      await this.options.io.remove(`${file}.tmp`).catch(() => undefined)
      throw err
    }
  }

  /**
   * The summary a clean close left, if it describes this CommitLog (same end, start and file
   * size: a later run that appended, or closed without writing one, makes it stale), by queue.
   * Removed once read, so it is used by one open only.
   */
  private async readSummary(commitLogEnd: number, commitLogMin: number): Promise<Map<string, QueueSummary> | undefined> {
    const file = path.join(this.options.dir, CQ_SUMMARY_FILE)
    const raw = await this.options.io.readFile(file).catch(() => undefined)
    if (!raw) return undefined
    await this.options.io.remove(file)
    let body: { version?: unknown; commitLogEnd?: unknown; commitLogMin?: unknown; fileSize?: unknown; queues?: unknown }
    try {
      body = JSON.parse(raw.toString('utf8'))
    } catch {
      return undefined
    }
    if (body.version !== CQ_SUMMARY_VERSION || body.commitLogEnd !== commitLogEnd || body.commitLogMin !== commitLogMin || body.fileSize !== this.fileSize || !Array.isArray(body.queues)) return undefined
    const out = new Map<string, QueueSummary>()
    for (const q of body.queues as unknown[]) {
      if (!Array.isArray(q) || q.length !== 6) return undefined
      const [topic, queueId, minOffset, maxOffset, maxPhysicalEnd, fileStarts] = q as [unknown, unknown, unknown, unknown, unknown, unknown]
      const ints = [queueId, minOffset, maxOffset, maxPhysicalEnd]
      if (typeof topic !== 'string' || !ints.every((v) => Number.isSafeInteger(v) && (v as number) >= 0)) return undefined
      if (!Array.isArray(fileStarts) || !fileStarts.every((v) => Number.isSafeInteger(v) && v % this.fileSize === 0)) return undefined
      if ((maxPhysicalEnd as number) > commitLogEnd) return undefined
      out.set(summaryKey(topic, queueId as number), { minOffset: minOffset as number, maxOffset: maxOffset as number, maxPhysicalEnd: maxPhysicalEnd as number, fileStarts: fileStarts as number[] })
    }
    return out
  }

  /** Deletes a queue's files and forgets its contents (it is rebuilt by re-dispatch). */
  async dropQueue(cq: ConsumeQueue): Promise<void> {
    const io = this.options.io
    for (const name of await io.list(cq.dir)) await this.removeFile(path.join(cq.dir, name))
    cq.fileStarts = []
    cq.minOffset = cq.maxOffset = cq.maxPhysicalEnd = 0
  }

  /**
   * Empties a queue whose units its master deleted (a replica: replica-deletions.ts): its windows
   * dropped, a file opening ahead waited for, every file removed and the folder synced; the next
   * put starts it again at its unit.
   */
  async resetQueue(cq: ConsumeQueue): Promise<void> {
    cq.writeSeg = cq.replaceSeg = undefined
    const opening = [...this.opening].filter(([key]) => key.startsWith(cq.dir + path.sep))
    await Promise.all(opening.map(([, p]) => p.catch(() => undefined)))
    await this.dropQueue(cq)
    if (this.touched.length > 0) this.touched = this.touched.filter((q) => q !== cq)
    cq.touched = false
    await this.options.io.syncDir(cq.dir)
  }

  /**
   * Forgets `topic`'s queues that hold nothing (emptied by resetQueue), with their folders, and
   * the topic's folder once no queue is left.
   */
  async forgetEmpty(topic: string): Promise<void> {
    const byId = this.queues.get(topic)
    if (!byId) return
    const io = this.options.io
    for (const [id, cq] of [...byId]) {
      if (cq.maxOffset > 0 || cq.fileStarts.length > 0) continue
      byId.delete(id)
      if ((await io.list(cq.dir)).length === 0) await io.removeDir(cq.dir)
      this.dirsToSync.delete(cq.dir)
    }
    const topicDir = path.join(this.options.dir, topic)
    if (byId.size === 0) {
      this.queues.delete(topic)
      if (this.lastTopic === topic) this.lastTopic = this.lastById = undefined
      if ((await io.list(topicDir)).length === 0) await io.removeDir(topicDir)
      this.dirsToSync.delete(topicDir)
      await io.syncDir(this.options.dir)
    } else await io.syncDir(topicDir)
  }

  /**
   * Forgets `topic`'s queues (deleteTopic): a later dispatch of the topic makes new ones. Their
   * files stay until removeTopicFiles.
   */
  forgetTopic(topic: string): ConsumeQueue[] {
    const byId = this.queues.get(topic)
    if (!byId) return []
    this.queues.delete(topic)
    if (this.lastTopic === topic) this.lastTopic = this.lastById = undefined
    if (this.touched.length > 0) this.touched = this.touched.filter((cq) => cq.topic !== topic)
    return [...byId.values()]
  }

  /**
   * Deletes the files and folders of `topic` (its queues forgotten before): every window closed
   * first, files opened ahead waited for, then the topic's folder synced out of the root.
   */
  async removeTopicFiles(topic: string, forgotten: ConsumeQueue[]): Promise<void> {
    const io = this.options.io
    const topicDir = path.join(this.options.dir, topic)
    for (const cq of forgotten) {
      cq.writeSeg = cq.replaceSeg = undefined
      cq.fileStarts = []
      cq.minOffset = cq.maxOffset = cq.maxPhysicalEnd = 0
    }
    // A window opened ahead may still be creating its file.
    const opening = [...this.opening].filter(([key]) => key.startsWith(topicDir + path.sep))
    await Promise.all(opening.map(([, p]) => p.catch(() => undefined)))
    for (const id of await io.list(topicDir)) {
      const queueDir = path.join(topicDir, id)
      for (const name of await io.list(queueDir)) await this.removeFile(path.join(queueDir, name))
      await io.removeDir(queueDir)
      this.dirsToSync.delete(queueDir)
    }
    await io.removeDir(topicDir)
    this.dirsToSync.delete(topicDir)
    await io.syncDir(this.options.dir)
  }

  async close(): Promise<void> {
    await this.flush().catch(() => undefined)
    // Drop every reference to a mapping, so the GC can unmap them (docs/design/mmap.md).
    for (const cq of this.all()) cq.writeSeg = cq.replaceSeg = undefined
    this.segments.clear()
    await Promise.all(this.closing)
  }
}

interface QueueSummary {
  minOffset: number
  maxOffset: number
  maxPhysicalEnd: number
  fileStarts: number[]
}

function summaryKey(topic: string, queueId: number): string {
  return `${topic}/${queueId}`
}

/** Whether a queue folder's listing holds exactly the data files `starts` names (no temp file). */
function sameStarts(names: string[], starts: number[]): boolean {
  if (names.length !== starts.length || starts.length === 0) return false
  const want = new Set(starts.map(offsetToFileName))
  return names.every((n) => want.has(n))
}
