/**
 * CommitLog recovery at open: where the scan starts (the checkpoint's durable offset), the scan
 * that finds the end of valid data, what a bad record means (torn tail: cut; damage below the
 * durable offset with valid records after it: CORRUPT_RECORD), and the cut itself (zero the tail
 * through the descriptor, sync what was accepted, delete later files, the last first).
 * docs/design/recovery.md has the decision table. CommitLog.recover and
 * CommitLog.truncateRecovered call these with the log they recover.
 */
import { bodyCrcCheck, type BodyCrcCheck } from './crc.js'
import { StoreError } from './errors.js'
import {
  MESSAGE_MAGIC_CODE_V1,
  MESSAGE_MAGIC_CODE_V2,
  RECORD,
  RECORD_BLANK,
  RECORD_END,
  checkRecord,
  readStoreTimestamp,
  verifyRecord,
} from './codec/index.js'
import type { CommitLogOptions } from './commit-log.js'
import { OS_PAGE_BYTES, type MappedFile } from './mapped-file.js'
import type { MappedFileQueue } from './mapped-file-queue.js'

/** What recovery reads of the CommitLog, and the offsets it sets there. */
export interface RecoveryTarget {
  readonly queue: MappedFileQueue
  readonly options: Pick<CommitLogOptions, 'dir' | 'fileSizeBytes' | 'maxRecordBytes' | 'checkCrcOnRecover' | 'verifyOnOpen' | 'onCorruption' | 'checkpoint'>
  /** Store time of the newest record: recovery raises it to the newest it finds. */
  lastStoreTimestamp: number
  /** Recovery sets all three to the end of the log it leaves. */
  wroteOffset: number
  committedOffset: number
  flushedOffset: number
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

/** Records whose body CRCs the recovery scan checks in one native call. */
export const CRC_RUN_RECORDS = 128

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

/**
 * Opens the files and finds the end of valid data. The checkpoint's durable offset D is where
 * the log is known good: after a clean shutdown it is the end of the log, and open reads no
 * record when nothing starts at D (a pread of its first bytes says so). After a crash every
 * record from D on is checked (size, magic, recomputed length, own offset, topic bytes, body
 * CRC, properties ending with 0x02: only from D on, see verifyRecord); what lies below D is trusted as written, as RocketMQ trusts all but its last files
 * (`verifyOnOpen` checks from the start of the file holding D instead, on every open). The
 * first bad record ends the log (a torn tail: cut there, garbage after the cut zeroed, later
 * files deleted, the cut reported in `truncated`), except when valid records follow it below
 * the durable offset: that is corruption in the middle of acknowledged data and fails with
 * CORRUPT_RECORD, changing nothing, unless onCorruption is 'truncate'. docs/design/recovery.md
 * has the table.
 */
export async function recover(log: RecoveryTarget, cleanShutdown: boolean): Promise<RecoveryReport> {
  await log.queue.load()
  const o = log.options
  const files = log.queue.files
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
  log.lastStoreTimestamp = Math.max(log.lastStoreTimestamp, o.checkpoint.values.physicMsgTimestamp)
  const start = await scanStart(log, durableOffset, cleanShutdown)
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
  // After a crash the scan reads the page cache: what the killed process wrote but never synced
  // must reach the disk before the checkpoint vouches for it. Each file the scan enters is
  // fdatasynced on the thread pool meanwhile, one after the other (with 1 GiB written that sync
  // takes as long as the scan and the re-dispatch together); the checkpoint holds its writes
  // until they are done.
  const syncs: Array<Promise<void>> = []
  if (!cleanShutdown) syncs.push(file.syncInBackground())
  // After a crash a file may end in a sparse tail; past its last non-zero byte (found through
  // the descriptor) the scan reads nothing through the map (see zeroTail).
  let dataEnd = cleanShutdown ? file.fileSize : await dataEndOf(file)
  // The last valid record seen: its store time is the newest.
  let lastView: Buffer | undefined
  let lastAt = 0
  // Body CRCs are checked a run of records of one file at a time, in one native call (see
  // BodyCrcCheck); the run is settled before the scan decides anything at a spot that holds no
  // record. A record whose CRC differs rewinds the scan to it, and it is checked again with its
  // CRC in line, which says why it is bad: the scan then goes on exactly as it would have.
  const run = o.checkCrcOnRecover ? CrcRun.make() : undefined
  let crcInLineAt = -1
  /** Checks the run's CRCs: true when all match; else the scan stands at the first that does not. */
  const settle = (): boolean => {
    const back = run?.settle(file.view)
    if (!back) return true
    pos = crcInLineAt = back.at
    report.recordsScanned = back.scanned
    lastAt = back.lastAt
    lastView = back.lastView
    return false
  }
  if (!start.atEnd) {
    for (;;) {
      const physical = file.fileFromOffset + pos
      // Past the data's end nothing is read through the map (a read of a hole there allocates a
      // page on tmpfs). After a crash dataEnd is the last non-zero byte, found with pread; after a
      // clean shutdown it is not known, so a record starting on a page boundary, which may start
      // in a hole, is looked at with pread first.
      if (pos >= dataEnd || (cleanShutdown && pos % OS_PAGE_BYTES === 0 && pos + 8 <= file.fileSize && (await zerosAt(file, pos)))) {
        if (physical >= durableOffset) {
          if (settle()) break
          continue
        }
      }
      // Per record: the checks only (no result object, no topic string): the queue offsets
      // of new appends come from the ConsumeQueues, which recovery re-dispatches.
      const later = run !== undefined && pos !== crcInLineAt ? run.crcs : undefined
      const inRun = later ? later.count : 0
      const v = pos >= dataEnd ? RECORD_END : verifyRecord(file.view, pos, file.fileSize, physical, o.maxRecordBytes, o.checkCrcOnRecover, later, physical >= durableOffset)
      if (typeof v === 'number' && v > 0) {
        // Its CRC joined the run (a large body's was checked at once).
        if (later && later.count > inRun) run!.note(inRun, pos, report.recordsScanned, lastAt, lastView)
        report.recordsScanned++
        lastView = file.view
        lastAt = pos
        pos += v
        if (later?.full) settle()
        continue
      }
      if (!settle()) continue
      if (v === RECORD_BLANK) {
        file.wrotePosition = file.committedPosition = file.flushedPosition = file.fileSize
        if (index + 1 >= files.length) {
          pos = file.fileSize
          break
        }
        file = files[++index]!
        pos = 0
        if (!cleanShutdown) syncs.push(file.syncInBackground(syncs[syncs.length - 1]))
        dataEnd = cleanShutdown ? file.fileSize : await dataEndOf(file)
        continue
      }
      const reason = typeof v === 'string' ? v : 'data ends before the durable offset'
      if (v === RECORD_END && physical >= durableOffset) break
      // Damage with valid records after it is corruption in the middle of the log; below the
      // durable offset those records were acknowledged, so cutting would lose them: refuse.
      const validDataFollowed = await validDataAfter(log, index, pos)
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
  if (lastView) log.lastStoreTimestamp = Math.max(log.lastStoreTimestamp, readStoreTimestamp(lastView, lastAt))
  // A clean close leaves the next file allocated ahead, unwritten: it stays the next file.
  if (start.atEnd) await adoptEmptyNext(log, index)

  report.endOffset = file.fileFromOffset + pos
  // The scan read the page cache: after a kill it accepts bytes that were written but never
  // synced. They become durable through the syncs started above (a clean close synced
  // everything it wrote); zeros the cut writes are synced by the cut.
  report.filesDeleted = await cut(log, index, pos, dataEnd, !cleanShutdown || report.truncated !== undefined, start.index)
  const cp = o.checkpoint.values
  // A clean open that found the log ending where the checkpoint says changes nothing to sync.
  const unchanged = start.atEnd && report.filesDeleted === 0 && cp.physicalFlushedOffset === report.endOffset && cp.physicMsgTimestamp === log.lastStoreTimestamp
  cp.physicalFlushedOffset = report.endOffset
  if (log.lastStoreTimestamp > 0) cp.physicMsgTimestamp = log.lastStoreTimestamp
  if (cleanShutdown) {
    if (!unchanged) await o.checkpoint.flush()
    return report
  }
  // After a crash the checkpoint is written once the syncs are done: by the store's open after
  // the re-dispatch (recoverConsumeQueues), or by whatever writes it first.
  o.checkpoint.holdWritesUntil(
    Promise.all(syncs).then(
      () => undefined,
      (err: unknown) => {
        throw new StoreError('FLUSH_FAILED', `fdatasync of a CommitLog file failed while recovering; the recovered data is not known to be durable`, { cause: err })
      },
    ),
  )
  return report
}

/**
 * The recovery scan's run of records whose body CRCs are checked together (BodyCrcCheck: one
 * native call for the run), with the scan's state before each of them (records counted, the
 * last valid record), so that the scan can be rewound to one whose CRC differs.
 */
class CrcRun {
  private readonly at: Float64Array
  private readonly scanned: Float64Array
  private readonly lastAt: Float64Array
  private readonly lastView: Array<Buffer | undefined> = []

  private constructor(readonly crcs: BodyCrcCheck) {
    this.at = new Float64Array(crcs.capacity)
    this.scanned = new Float64Array(crcs.capacity)
    this.lastAt = new Float64Array(crcs.capacity)
  }

  /** A run, or undefined without the native helper (verifyRecord then checks each CRC at once). */
  static make(): CrcRun | undefined {
    const crcs = bodyCrcCheck(CRC_RUN_RECORDS)
    return crcs ? new CrcRun(crcs) : undefined
  }

  /** Record `i` of the run starts at `at`; the scan's state before it. */
  note(i: number, at: number, scanned: number, lastAt: number, lastView: Buffer | undefined): void {
    this.at[i] = at
    this.scanned[i] = scanned
    this.lastAt[i] = lastAt
    this.lastView[i] = lastView
  }

  /**
   * Checks the run's CRCs against `view` (the file its records are in) and empties it: undefined
   * when all match, else the first record whose CRC differs and the scan's state before it.
   */
  settle(view: Buffer): { at: number; scanned: number; lastAt: number; lastView: Buffer | undefined } | undefined {
    if (this.crcs.count === 0) return undefined
    const bad = this.crcs.check(view)
    const lastView = bad < 0 ? undefined : this.lastView[bad]
    // Holds no view once settled: a file's mapping is released when collected.
    this.lastView.length = 0
    if (bad < 0) return undefined
    return { at: this.at[bad]!, scanned: this.scanned[bad]!, lastAt: this.lastAt[bad]!, lastView }
  }
}

/**
 * Ends the log at `pos` of file `index`: the file's positions become `pos`, its non-zero bytes
 * in [pos, dataEnd) are zeroed when `zero`, the files from `syncFrom` to it are synced when
 * zeros were written (what the scan accepted after a crash is synced by recover), and every
 * later file is deleted, the last first. Returns the number of files deleted. The caller then
 * writes the checkpoint.
 */
async function cut(log: RecoveryTarget, index: number, pos: number, dataEnd: number, zero: boolean, syncFrom: number, sync = false): Promise<number> {
  const file = log.queue.files[index]!
  file.wrotePosition = file.committedPosition = file.flushedPosition = pos
  const zeroed = zero && (await zeroTail(file, pos, Math.max(pos, dataEnd)))
  // A truncate's cut (sync) is made durable even when the tail was already zeros.
  if (sync || zeroed) await syncRecovered(log, syncFrom, index)
  const deleted = await log.queue.deleteAfter(file)
  log.wroteOffset = log.committedOffset = log.flushedOffset = file.fileFromOffset + pos
  return deleted
}

/**
 * After recover(), before anything is appended: cuts the log at `offset`, a record boundary at
 * or past the durable offset that the scan accepted but the re-dispatch found does not belong
 * (its header was torn: MessageStore.recoverConsumeQueues). The same cut as recover's, reported
 * in `report` the same way; the checkpoint is synced last.
 */
export async function truncateRecovered(log: RecoveryTarget, offset: number, reason: string, report: RecoveryReport): Promise<void> {
  const file = log.queue.findFile(offset)
  // Below the durable offset only when asked to (onCorruption: 'truncate'), as recovery's own cut.
  const belowDurableOffset = offset < report.durableOffset
  if (!file || (belowDurableOffset && log.options.onCorruption !== 'truncate') || offset >= log.committedOffset) {
    throw new StoreError('CORRUPT_RECORD', `cannot cut the recovered CommitLog at ${offset}: it ends at ${log.committedOffset} and is durable up to ${report.durableOffset}`, { details: { physicalOffset: offset } })
  }
  // The syncs recover started go first: the cut may delete files they sync.
  await log.options.checkpoint.writable()
  const index = log.queue.files.indexOf(file)
  const pos = offset - file.fileFromOffset
  // The bad record checked out as one: records follow it when the log goes on past it.
  const validDataFollowed = pos + 4 <= file.fileSize && offset + file.view.readInt32BE(pos) < log.committedOffset
  report.filesDeleted += await cut(log, index, pos, await dataEndOf(file), true, index)
  report.endOffset = offset
  report.truncated = { atOffset: offset, reason, validDataFollowed, belowDurableOffset }
  log.options.checkpoint.values.physicalFlushedOffset = offset
  await log.options.checkpoint.flush()
}

/** Bytes zeroed at the cut first, alone (TOTALSIZE and MAGICCODE): truncate's commit point. */
export const CUT_HEADER_BYTES = RECORD.bodyCrc

/**
 * While the store is open (truncate.ts): ends the log at `offset`, a record boundary below its
 * end that the caller checked, after it lowered the checkpoint's durable offset to `offset` or
 * below (so the scan of the next open starts there). The commit point comes first: the record
 * header at `offset` is zeroed and synced on its own (8 bytes, so a power loss leaves the header
 * as it was, and the old log, or changed, and the log ends there: a changed header is never a
 * valid record, and the scan cuts at a bad record at or past the durable offset). Then the rest
 * is recovery's own cut: the tail of that file zeroed and synced, later files deleted, the last
 * first. Returns the files deleted (closed already).
 */
export async function cutOpenLog(log: RecoveryTarget, offset: number): Promise<MappedFile[]> {
  const file = log.queue.findFile(offset)
  if (!file) throw new StoreError('INVALID_ARGUMENT', `cannot cut the CommitLog at ${offset}: no file holds it`, { details: { physicalOffset: offset } })
  const pos = offset - file.fileFromOffset
  await file.file.write(Buffer.alloc(CUT_HEADER_BYTES), 0, Math.min(CUT_HEADER_BYTES, file.fileSize - pos), pos)
  const at = (): number => log.queue.files.indexOf(file)
  await syncRecovered(log, at(), at())
  const doomed = log.queue.files.slice(at() + 1)
  await log.queue.dropAheadAfter(file)
  const dataEnd = await dataEndOf(file)
  await cut(log, at(), pos, dataEnd, true, at(), true)
  return doomed
}

/** fdatasyncs the files recovery accepted bytes from, `from` to `to` (indexes in the queue). */
async function syncRecovered(log: RecoveryTarget, from: number, to: number): Promise<void> {
  const files = log.queue.files
  for (let i = from; i <= to && i < files.length; i++) {
    const f = files[i]!
    try {
      await f.file.datasync()
    } catch (err) {
      throw new StoreError('FLUSH_FAILED', `fdatasync of ${f.fileName} failed while cutting or recovering the log; what it keeps is not known to be durable`, { cause: err })
    }
  }
}

/**
 * Clean open: when the only file after the one the log ends in starts with zeros (pread, not
 * the map), it is the next file a clean close left allocated ahead: kept as the next file
 * when files are zero-filled (a sparse one is made again at once, and deleting it returns
 * the space its prefaulted start holds: on a full disk the open needs it for its markers).
 */
async function adoptEmptyNext(log: RecoveryTarget, index: number): Promise<void> {
  const files = log.queue.files
  if (!log.queue.zeroFills || index !== files.length - 2) return
  const next = files[index + 1]!
  if (await zerosAt(next, 0)) log.queue.adoptNext(next)
}

/** Whether the 8 bytes at `pos` of `file` are zeros (no record starts there), read with pread. */
async function zerosAt(file: MappedFile, pos: number): Promise<boolean> {
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
async function scanStart(log: RecoveryTarget, durableOffset: number, cleanShutdown: boolean): Promise<{ index: number; pos: number; atEnd: boolean }> {
  const files = log.queue.files
  const first = files[0]!
  const last = files[files.length - 1]!
  const fileSize = log.options.fileSizeBytes
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
  if (log.options.verifyOnOpen) return { index, pos: 0, atEnd: false }
  const file = files[index]!
  if (pos > fileSize - 8) return { index, pos, atEnd: false }
  if (cleanShutdown) return { index, pos, atEnd: await zerosAt(file, pos) }
  // Zeros at D: the end of the data (checked with pread: D may start a hole).
  if (pos === 0 || (await zerosAt(file, pos))) return { index, pos, atEnd: false }
  const r = checkRecord(file.view, pos, fileSize, durableOffset, log.options.maxRecordBytes, log.options.checkCrcOnRecover)
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
async function validDataAfter(log: RecoveryTarget, index: number, pos: number): Promise<boolean> {
  const files = log.queue.files
  const f = files[index]!
  const o = log.options
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
async function zeroTail(file: MappedFile, from: number, to: number): Promise<boolean> {
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

/**
 * The offset just past the last non-zero byte of `file` (0 if none), read backwards by pread.
 * Where the file system reports the file's holes (DataFile.dataRegions), only its regions that
 * hold data are read: after a crash the tail of a sparse file is mostly hole, and a 1 GiB file
 * holding a few MiB of records is then read a few MiB deep instead of whole.
 */
async function dataEndOf(file: MappedFile): Promise<number> {
  const regions = file.file.dataRegions?.() ?? [[0, file.fileSize]]
  const chunk = Buffer.allocUnsafe(Math.min(ZERO_SCAN_CHUNK_BYTES, file.fileSize))
  for (let r = regions.length - 1; r >= 0; r--) {
    const [from, to] = regions[r]!
    for (let end = Math.min(to, file.fileSize); end > from; ) {
      const start = Math.max(from, end - chunk.length)
      const n = await file.file.read(chunk, 0, end - start, start)
      if (!isZero(chunk, 0, n)) {
        for (let i = n - 1; i >= 0; i--) if (chunk[i] !== 0) return start + i + 1
      }
      end = start
    }
  }
  return 0
}
