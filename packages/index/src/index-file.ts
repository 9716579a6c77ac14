/**
 * One IndexFile (format.ts): a hash table of entry chains, appended to by the service.
 *
 * The header lives in fields here and is written into the map on every put, so the file in the
 * page cache is always complete: a killed process leaves a file that needs at most one torn put
 * undone (see `repairTornPut`). A put writes, in order: the entry, the slot, indexCount,
 * hashSlotCount, then the end (and, first time, begin) fields.
 *
 * The mapping is attached and detached by the service, which bounds how many files are mapped;
 * everything but puts, queries and rollbacks works from the header fields alone.
 */
import * as path from 'node:path'
import type { DataFile, FileIO } from '@mqts/common'
import {
  FIRST_ENTRY,
  INDEX_ENTRY,
  INDEX_HEADER,
  INDEX_SLOT_BYTES,
  decodeHeader,
  encodeHeader,
  entryPosition,
  indexFileSize,
  readI64,
  slotPosition,
  timeDiffSeconds,
  writeU64,
  type IndexHeader,
} from './format.js'
import { Mapping } from './mapping.js'

/** Entries read at once when a query scans an unmapped file (64 KiB). */
const SCAN_CHUNK_ENTRIES = 3276

/** Where a query reads a file's slots and entries: the map, or pread through a descriptor. */
interface EntrySource {
  /** The bytes `entry` made readable. */
  readonly view: DataView
  /** The value of the slot at byte position `position` of the file. */
  slot(position: number): number
  /** Makes entry `n` readable in `view` and returns where it starts; `scanning`: lower entries come next. */
  entry(n: number, scanning: boolean): number
}

class MappedEntries implements EntrySource {
  constructor(
    readonly view: DataView,
    private readonly entriesStart: number,
  ) {}

  slot(position: number): number {
    return this.view.getInt32(position)
  }

  entry(n: number): number {
    return this.entriesStart + n * INDEX_ENTRY.bytes
  }
}

/** Reads one entry per step of a walk, and a chunk of entries at a time when scanning. */
class ReadEntries implements EntrySource {
  private static readonly buffer = Buffer.alloc(SCAN_CHUNK_ENTRIES * INDEX_ENTRY.bytes)
  readonly view = new DataView(ReadEntries.buffer.buffer, ReadEntries.buffer.byteOffset, ReadEntries.buffer.byteLength)
  /** Entries [first, first + held) are in the buffer. */
  private first = 0
  private held = 0

  constructor(
    private readonly file: DataFile,
    private readonly entriesStart: number,
  ) {}

  slot(position: number): number {
    this.held = 0
    this.file.readSync(ReadEntries.buffer, 0, INDEX_SLOT_BYTES, position)
    return ReadEntries.buffer.readInt32BE(0)
  }

  entry(n: number, scanning: boolean): number {
    if (n < this.first || n >= this.first + this.held) {
      const first = scanning ? Math.max(FIRST_ENTRY, n - SCAN_CHUNK_ENTRIES + 1) : n
      const bytes = (n - first + 1) * INDEX_ENTRY.bytes
      this.file.readSync(ReadEntries.buffer, 0, bytes, this.entriesStart + first * INDEX_ENTRY.bytes)
      this.first = first
      this.held = n - first + 1
    }
    return (n - this.first) * INDEX_ENTRY.bytes
  }
}

/** Entries reserved ahead of the writer at a time (1 MiB of entries). */
const RESERVE_AHEAD_BYTES = 1024 * 1024

export interface IndexFileInfo {
  name: string
  beginTimestamp: number
  endTimestamp: number
  beginPhyOffset: number
  endPhyOffset: number
  indexCount: number
  hashSlotCount: number
}

/** Outcome of a rollback: how many entries went, or why the file cannot be trusted. */
export type RollbackResult = { ok: true; removed: number } | { ok: false; reason: string }

export class IndexFile implements IndexHeader {
  beginTimestamp = 0
  endTimestamp = 0
  beginPhyOffset = 0
  endPhyOffset = 0
  hashSlotCount = 0
  indexCount = FIRST_ENTRY
  /** Pages were dirtied since the last sync. */
  dirty = false
  /** The first inconsistency a query met in this file (the query worked around it). */
  damage: string | undefined

  private mapping: Mapping | undefined
  private view: DataView | undefined
  /** Query reads through the mapping. */
  private entries: MappedEntries | undefined
  /** Entries from here on are not reserved yet (byte position; writer only). */
  private reservedUpTo = 0
  private readonly entriesStart: number

  private constructor(
    private readonly io: FileIO,
    readonly dir: string,
    private _name: string,
    readonly maxHashSlotNum: number,
    readonly maxIndexNum: number,
  ) {
    this.entriesStart = entryPosition(maxHashSlotNum, 0)
  }

  get name(): string {
    return this._name
  }

  get path(): string {
    return path.join(this.dir, this._name)
  }

  get size(): number {
    return indexFileSize(this.maxHashSlotNum, this.maxIndexNum)
  }

  get isFull(): boolean {
    return this.indexCount >= this.maxIndexNum
  }

  /** Entries that still fit. */
  get room(): number {
    return this.maxIndexNum - this.indexCount
  }

  get isMapped(): boolean {
    return this.mapping !== undefined
  }

  info(): IndexFileInfo {
    return {
      name: this.name,
      beginTimestamp: this.beginTimestamp,
      endTimestamp: this.endTimestamp,
      beginPhyOffset: this.beginPhyOffset,
      endPhyOffset: this.endPhyOffset,
      indexCount: this.indexCount,
      hashSlotCount: this.hashSlotCount,
    }
  }

  /**
   * Creates a new sparse file, maps it, reserves its header and slot table, and seeds the header
   * with the previous file's end (as RocketMQ does), so time and offset filters work before the
   * first put. Throws the OS error (ENOSPC when the slot table cannot get space).
   */
  static create(io: FileIO, dir: string, name: string, maxHashSlotNum: number, maxIndexNum: number, seedPhyOffset: number, seedTimestamp: number): IndexFile {
    const f = new IndexFile(io, dir, name, maxHashSlotNum, maxIndexNum)
    io.allocateSparseSync(f.path, f.size)
    try {
      f.attach(Mapping.open(io, f.path, f.size))
      // Faulting the slot table in now keeps random slot writes free of page faults, and makes
      // sure a full disk shows up here rather than as a signal during a put.
      f.mapping!.reserve(0, f.entriesStart)
      f.reservedUpTo = f.entriesStart
      if (seedPhyOffset > 0) f.beginPhyOffset = f.endPhyOffset = seedPhyOffset
      if (seedTimestamp > 0) f.beginTimestamp = f.endTimestamp = seedTimestamp
      encodeHeader(f.view!, f)
      f.dirty = true
    } catch (err) {
      f.detach()
      io.removeSync(f.path)
      throw err
    }
    return f
  }

  /**
   * Prepares a spare file off the put path: created sparse under `tmpName` (a `.tmp` name, so a
   * crash leaves nothing that open keeps), its slot table read through the descriptor on the
   * thread pool (the holes come into the page cache as zero pages), then mapped and reserved,
   * which is cheap once the pages are cached. `activate` gives it its real name later.
   */
  static async prepare(io: FileIO, dir: string, tmpName: string, maxHashSlotNum: number, maxIndexNum: number): Promise<IndexFile> {
    const f = new IndexFile(io, dir, tmpName, maxHashSlotNum, maxIndexNum)
    // The slot table and the first entries the writer will reserve.
    const warmEnd = Math.min(f.size, f.entriesStart + RESERVE_AHEAD_BYTES)
    let file: DataFile
    try {
      await io.allocate(f.path, f.size, { zeroFill: false, durable: false })
      file = await io.open(f.path)
    } catch (err) {
      await io.remove(f.path)
      throw err
    }
    try {
      await file.warm(0, warmEnd)
    } catch (err) {
      await file.close().catch(() => {})
      await io.remove(f.path)
      throw err
    }
    try {
      f.attach(Mapping.of(file, f.size))
      f.mapping!.reserve(0, warmEnd)
      f.reservedUpTo = warmEnd
    } catch (err) {
      f.detach()
      io.removeSync(f.path)
      throw err
    }
    return f
  }

  /** Renames a prepared file to `name` and seeds its header as `create` does. */
  activate(name: string, seedPhyOffset: number, seedTimestamp: number): void {
    this.io.renameSync(this.path, path.join(this.dir, name))
    this._name = name
    if (seedPhyOffset > 0) this.beginPhyOffset = this.endPhyOffset = seedPhyOffset
    if (seedTimestamp > 0) this.beginTimestamp = this.endTimestamp = seedTimestamp
    encodeHeader(this.view!, this)
    this.dirty = true
  }

  /** Whether every entry is reserved already: the file will be full soon. */
  get reservedToEnd(): boolean {
    return this.reservedUpTo >= this.size
  }

  /**
   * Reads and checks the header of an existing file (without mapping it). Returns the reason
   * instead when the file cannot be used: wrong size or a header that does not make sense.
   */
  static load(io: FileIO, dir: string, name: string, maxHashSlotNum: number, maxIndexNum: number): IndexFile | string {
    const f = new IndexFile(io, dir, name, maxHashSlotNum, maxIndexNum)
    const file = io.openSync(f.path)
    const bytes = Buffer.alloc(INDEX_HEADER.bytes)
    const size = file.size
    try {
      if (size === f.size) file.readSync(bytes, 0, bytes.length, 0)
    } finally {
      file.closeSync()
    }
    if (size !== f.size) return `size ${size}, expected ${f.size}`
    const h = decodeHeader(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    // A header never written (all zeros) is an empty file.
    if (h.indexCount === 0 && h.endPhyOffset === 0 && h.hashSlotCount === 0) h.indexCount = FIRST_ENTRY
    if (h.indexCount < FIRST_ENTRY || h.indexCount > maxIndexNum) return `indexCount ${h.indexCount} out of [1, ${maxIndexNum}]`
    if (h.hashSlotCount < 0) return `hashSlotCount ${h.hashSlotCount} negative`
    if (h.beginPhyOffset < 0 || h.endPhyOffset < h.beginPhyOffset) return `phyOffsets [${h.beginPhyOffset}, ${h.endPhyOffset}] out of order`
    if (h.beginTimestamp < 0 || h.endTimestamp < 0) return `negative timestamps`
    Object.assign(f, h)
    return f
  }

  /**
   * For a file that is not the last one (complete, written long before): its newest entry is the
   * header's end and heads its slot. Returns the reason when not. Two small reads, no mapping.
   */
  checkNewestEntry(): string | undefined {
    const n = this.indexCount - 1
    if (n < FIRST_ENTRY) return undefined
    const bytes = Buffer.alloc(INDEX_ENTRY.bytes + INDEX_SLOT_BYTES)
    const file = this.io.openSync(this.path)
    let keyHash: number
    try {
      file.readSync(bytes, 0, INDEX_ENTRY.bytes, this.entriesStart + n * INDEX_ENTRY.bytes)
      keyHash = bytes.readInt32BE(INDEX_ENTRY.keyHash)
      if (keyHash >= 0) file.readSync(bytes, INDEX_ENTRY.bytes, INDEX_SLOT_BYTES, INDEX_HEADER.bytes + (keyHash % this.maxHashSlotNum) * INDEX_SLOT_BYTES)
    } finally {
      file.closeSync()
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const phyOffset = readI64(view, INDEX_ENTRY.phyOffset)
    const prev = view.getInt32(INDEX_ENTRY.prevIndex)
    const head = view.getInt32(INDEX_ENTRY.bytes)
    if (keyHash < 0 || phyOffset !== this.endPhyOffset || prev < 0 || prev >= n || head !== n) {
      return `newest entry ${n} does not match the header (phyOffset ${phyOffset}, header end ${this.endPhyOffset}, slot head ${head})`
    }
    return undefined
  }

  attach(mapping: Mapping): void {
    this.mapping = mapping
    this.view = mapping.view
    this.entries = new MappedEntries(mapping.view, this.entriesStart)
  }

  /** Lets go of the mapping (the service decides when). */
  detach(): Mapping | undefined {
    const m = this.mapping
    this.mapping = undefined
    this.view = undefined
    this.entries = undefined
    this.reservedUpTo = 0
    m?.release()
    return m
  }

  /** Makes a loaded file the one written to: its header and slot table get their space first. */
  prepareForWriting(): void {
    this.mapping!.reserve(0, this.entriesStart, true)
    this.reservedUpTo = this.entriesStart
  }

  /** Whether the next `count` entries fit and are reserved already (the put's fast path). */
  canTake(count: number): boolean {
    const end = this.indexCount + count
    return end <= this.maxIndexNum && this.entriesStart + end * INDEX_ENTRY.bytes <= this.reservedUpTo
  }

  /** Reserves space for the next `count` entries (throws the OS error: ENOSPC). */
  reserveEntries(count: number): void {
    const end = this.entriesStart + (this.indexCount + count) * INDEX_ENTRY.bytes
    if (end <= this.reservedUpTo) return
    const from = Math.max(this.reservedUpTo, this.entriesStart + this.indexCount * INDEX_ENTRY.bytes)
    const to = Math.min(this.size, Math.max(end, from + RESERVE_AHEAD_BYTES))
    this.mapping!.reserve(from, to - from)
    this.reservedUpTo = to
  }

  /** Appends one entry. The caller checked there is room and reserved it. */
  putKey(keyHash: number, phyOffset: number, storeTimestamp: number): void {
    const v = this.view!
    const n = this.indexCount
    const slotAt = INDEX_HEADER.bytes + (keyHash % this.maxHashSlotNum) * INDEX_SLOT_BYTES
    let prev = v.getInt32(slotAt)
    if (prev <= 0 || prev >= n) prev = 0
    if (n <= FIRST_ENTRY) {
      // Set the beginning first, so the first entry's timeDiff is 0 rather than the time since
      // the seed (RocketMQ computes it against the seed and then moves the beginning).
      this.beginPhyOffset = phyOffset
      this.beginTimestamp = storeTimestamp
      writeU64(v, INDEX_HEADER.beginPhyOffset, phyOffset)
      writeU64(v, INDEX_HEADER.beginTimestamp, storeTimestamp)
    }
    const at = this.entriesStart + n * INDEX_ENTRY.bytes
    v.setInt32(at, keyHash)
    writeU64(v, at + INDEX_ENTRY.phyOffset, phyOffset)
    v.setInt32(at + INDEX_ENTRY.timeDiff, timeDiffSeconds(this.beginTimestamp, storeTimestamp))
    v.setInt32(at + INDEX_ENTRY.prevIndex, prev)
    v.setInt32(slotAt, n)
    this.indexCount = n + 1
    v.setInt32(INDEX_HEADER.indexCount, n + 1)
    if (prev === 0) v.setInt32(INDEX_HEADER.hashSlotCount, ++this.hashSlotCount)
    this.endPhyOffset = phyOffset
    this.endTimestamp = storeTimestamp
    writeU64(v, INDEX_HEADER.endPhyOffset, phyOffset)
    writeU64(v, INDEX_HEADER.endTimestamp, storeTimestamp)
    this.dirty = true
  }

  /** RocketMQ's isTimeMatched: [begin, end] overlaps the file's time range. */
  isTimeMatched(begin: number, end: number): boolean {
    return (
      (begin < this.beginTimestamp && end > this.endTimestamp) ||
      (begin >= this.beginTimestamp && begin <= this.endTimestamp) ||
      (end >= this.beginTimestamp && end <= this.endTimestamp)
    )
  }

  /**
   * Adds to `out` the phyOffsets of entries with `keyHash` stored within [begin, end], newest
   * first, until `out` holds maxNum. RocketMQ's walk: the chain from the key's slot, stopping at
   * prevIndex 0 or at an entry older than `begin`; entries of one record (a repeated key, keys
   * sharing a hash, a record straddling two files) are adjacent in it and come back once.
   * Damaged bytes cannot make it loop or invent offsets outside the file (see `collect`).
   */
  select(out: number[], keyHash: number, maxNum: number, begin: number, end: number): void {
    this.collect(this.entries!, out, keyHash, maxNum, begin, end)
  }

  /**
   * `select` for a file that is not mapped: the same walk with pread. Used while too many
   * released mappings wait for their unmap (mapping.ts).
   */
  selectUnmapped(out: number[], keyHash: number, maxNum: number, begin: number, end: number): void {
    if (this.indexCount <= FIRST_ENTRY) return
    const file = this.io.openSync(this.path)
    try {
      this.collect(new ReadEntries(file, this.entriesStart), out, keyHash, maxNum, begin, end)
    } finally {
      file.closeSync()
    }
  }

  /**
   * The walk behind `select`. A valid chain only ever links to an older entry of the same slot
   * (a put links to the slot's head, which is below it), so the walk checks exactly that: every
   * step goes strictly down, which bounds it by indexCount whatever the bytes say, and every entry
   * reached belongs to the slot. When a check fails (a flipped bit in a prevIndex, a keyHash or a
   * slot), the rest of the chain cannot be trusted: the entries below the last good one are
   * scanned one by one instead, so damage costs time, not answers. An offset outside the file's
   * [beginPhyOffset, endPhyOffset] is never returned. The first damage found is kept in `damage`.
   */
  private collect(r: EntrySource, out: number[], keyHash: number, maxNum: number, begin: number, end: number): void {
    const count = this.indexCount
    if (count <= FIRST_ENTRY || out.length >= maxNum) return
    const slot = keyHash % this.maxHashSlotNum
    let n = r.slot(slotPosition(slot))
    if (n === 0) return
    /** The newest entry not yet looked at by a scan: everything from here on was walked. */
    let below = count
    let problem: string | undefined
    if (n < FIRST_ENTRY || n >= count) problem = `slot ${slot} points at entry ${n}, indexCount is ${count}`
    while (problem === undefined && out.length < maxNum) {
      const v = r.view
      const at = r.entry(n, false)
      const hash = v.getInt32(at + INDEX_ENTRY.keyHash)
      const timeDiff = v.getInt32(at + INDEX_ENTRY.timeDiff)
      if (hash < 0 || hash % this.maxHashSlotNum !== slot || timeDiff < 0) {
        problem = `entry ${n} in the chain of slot ${slot}: keyHash ${hash}, timeDiff ${timeDiff}`
        break
      }
      below = n
      const time = this.beginTimestamp + timeDiff * 1000
      if (hash === keyHash && time >= begin && time <= end) this.offer(out, readI64(v, at + INDEX_ENTRY.phyOffset))
      const prev = v.getInt32(at + INDEX_ENTRY.prevIndex)
      if (prev === 0 || time < begin) return
      if (prev < FIRST_ENTRY || prev >= n) problem = `entry ${n}: prevIndex ${prev} out of [0, ${n})`
      n = prev
    }
    if (problem === undefined) return
    this.damage ??= problem
    for (let m = below - 1; m >= FIRST_ENTRY && out.length < maxNum; m--) {
      const v = r.view
      const at = r.entry(m, true)
      if (v.getInt32(at + INDEX_ENTRY.keyHash) !== keyHash) continue
      const timeDiff = v.getInt32(at + INDEX_ENTRY.timeDiff)
      const time = this.beginTimestamp + timeDiff * 1000
      if (timeDiff >= 0 && time >= begin && time <= end) this.offer(out, readI64(v, at + INDEX_ENTRY.phyOffset))
    }
  }

  /** Adds a found offset unless it lies outside this file's range or repeats the last one found. */
  private offer(out: number[], phyOffset: number): void {
    if (phyOffset < this.beginPhyOffset || phyOffset > this.endPhyOffset) {
      this.damage ??= `an entry points at ${phyOffset}, outside [${this.beginPhyOffset}, ${this.endPhyOffset}]`
      return
    }
    if (out.length === 0 || out[out.length - 1] !== phyOffset) out.push(phyOffset)
  }

  /** phyOffset of the newest entry, or -1 when the file has none. */
  newestPhyOffset(): number {
    if (this.indexCount <= FIRST_ENTRY) return -1
    return readI64(this.view!, this.entriesStart + (this.indexCount - 1) * INDEX_ENTRY.bytes + INDEX_ENTRY.phyOffset)
  }

  /**
   * Undoes a put cut short between its slot write and its indexCount write: the entry just past
   * the end is complete (it was written first) and its slot points at it. Returns whether it did.
   */
  repairTornPut(): boolean {
    const v = this.view!
    const n = this.indexCount
    if (n >= this.maxIndexNum) return false
    const at = this.entriesStart + n * INDEX_ENTRY.bytes
    const keyHash = v.getInt32(at)
    if (keyHash < 0) return false
    const slotAt = INDEX_HEADER.bytes + (keyHash % this.maxHashSlotNum) * INDEX_SLOT_BYTES
    if (v.getInt32(slotAt) !== n) return false
    const prev = v.getInt32(at + INDEX_ENTRY.prevIndex)
    v.setInt32(slotAt, prev > 0 && prev < n ? prev : 0)
    this.zeroEntry(n)
    this.dirty = true
    return true
  }

  /**
   * Removes, newest first, every entry with phyOffset >= cut: each one's slot goes back to its
   * prevIndex. With `validate`, what is read must be consistent (slot head is the entry being
   * removed, prevIndex below it, phyOffsets not increasing, and the entry left on top heads its
   * slot); otherwise nothing more is changed and the reason is returned.
   */
  rollback(cut: number, validate: boolean): RollbackResult {
    const v = this.view!
    let n = this.indexCount - 1
    let removed = 0
    let above = Number.POSITIVE_INFINITY
    /** Slots whose removed entry's prevIndex cannot be trusted (see restoreSlotHeads). */
    let unsure: Set<number> | undefined
    for (; n >= FIRST_ENTRY; n--) {
      const at = this.entriesStart + n * INDEX_ENTRY.bytes
      const keyHash = v.getInt32(at)
      const phyOffset = readI64(v, at + INDEX_ENTRY.phyOffset)
      if (phyOffset < cut) break
      const prev = v.getInt32(at + INDEX_ENTRY.prevIndex)
      const slotAt = INDEX_HEADER.bytes + ((keyHash < 0 ? 0 : keyHash) % this.maxHashSlotNum) * INDEX_SLOT_BYTES
      if (validate) {
        if (keyHash < 0) return { ok: false, reason: `entry ${n}: negative keyHash ${keyHash}` }
        if (prev < 0 || prev >= n) return { ok: false, reason: `entry ${n}: prevIndex ${prev} out of [0, ${n})` }
        if (phyOffset > above) return { ok: false, reason: `entry ${n}: phyOffset ${phyOffset} above the next entry's ${above}` }
        const head = v.getInt32(slotAt)
        if (head !== n) return { ok: false, reason: `entry ${n}: its slot points at ${head}` }
      }
      // indexCount first: a kill right after it leaves what a torn put leaves (an entry past the
      // end heading its slot), which the next open undoes; then the slot, then the bytes.
      if (prev === 0 && this.hashSlotCount > 0) this.hashSlotCount--
      if (!this.linksWithin(prev, n, slotAt)) (unsure ??= new Set()).add(slotAt)
      v.setInt32(INDEX_HEADER.indexCount, n)
      v.setInt32(INDEX_HEADER.hashSlotCount, this.hashSlotCount)
      v.setInt32(slotAt, prev > 0 && prev < n ? prev : 0)
      this.zeroEntry(n)
      above = phyOffset
      removed++
    }
    if (unsure) this.restoreSlotHeads(unsure, n)
    if (validate && n >= FIRST_ENTRY) {
      const at = this.entriesStart + n * INDEX_ENTRY.bytes
      const keyHash = v.getInt32(at)
      const phyOffset = readI64(v, at + INDEX_ENTRY.phyOffset)
      const prev = v.getInt32(at + INDEX_ENTRY.prevIndex)
      if (keyHash < 0 || phyOffset < this.beginPhyOffset || prev < 0 || prev >= n) {
        return { ok: false, reason: `entry ${n} (newest kept) is not a valid entry` }
      }
      const head = v.getInt32(INDEX_HEADER.bytes + (keyHash % this.maxHashSlotNum) * INDEX_SLOT_BYTES)
      if (head !== n) return { ok: false, reason: `entry ${n} (newest kept): its slot points at ${head}` }
    }
    this.indexCount = n + 1
    this.fixEnd(removed > 0)
    this.dirty = true
    return { ok: true, removed }
  }

  /** Whether `prev`, read from entry `n` of the slot at `slotAt`, is an older entry of that slot. */
  private linksWithin(prev: number, n: number, slotAt: number): boolean {
    if (prev < FIRST_ENTRY || prev >= n) return false
    const keyHash = this.view!.getInt32(this.entriesStart + prev * INDEX_ENTRY.bytes)
    return keyHash >= 0 && INDEX_HEADER.bytes + (keyHash % this.maxHashSlotNum) * INDEX_SLOT_BYTES === slotAt
  }

  /**
   * A removed entry's prevIndex of 0 (or one that leads out of its slot) may be bytes that never
   * reached the disk: after a power loss an unsynced entry can survive in part, its first bytes
   * new and the rest still zeros, and giving its slot that prevIndex would drop every older entry
   * of the slot. Each such slot gets the newest kept entry of its own instead (kept entries were
   * synced), found by one scan down from `newest`, or none; then the slots in use are counted.
   */
  private restoreSlotHeads(slotPositions: Set<number>, newest: number): void {
    const v = this.view!
    const open = new Set(slotPositions)
    for (const slotAt of open) v.setInt32(slotAt, 0)
    for (let m = newest; m >= FIRST_ENTRY && open.size > 0; m--) {
      const keyHash = v.getInt32(this.entriesStart + m * INDEX_ENTRY.bytes)
      if (keyHash < 0) continue
      const slotAt = INDEX_HEADER.bytes + (keyHash % this.maxHashSlotNum) * INDEX_SLOT_BYTES
      if (open.delete(slotAt)) v.setInt32(slotAt, m)
    }
    let used = 0
    for (let s = 0; s < this.maxHashSlotNum; s++) if (v.getInt32(INDEX_HEADER.bytes + s * INDEX_SLOT_BYTES) !== 0) used++
    this.hashSlotCount = used
    v.setInt32(INDEX_HEADER.hashSlotCount, used)
  }

  /**
   * Every slot must point below indexCount once rollback is done; a slot pointing further means a
   * put whose entry did not reach the disk (power loss). Returns the reason when one does.
   */
  checkSlots(): string | undefined {
    const v = this.view!
    const count = this.indexCount
    for (let s = 0; s < this.maxHashSlotNum; s++) {
      const head = v.getInt32(INDEX_HEADER.bytes + s * INDEX_SLOT_BYTES)
      if (head < 0 || head >= count) return `slot ${s} points at entry ${head}, indexCount is ${count}`
    }
    return undefined
  }

  /** Recomputes the end fields from the newest entry (a kill may have cut a put short before them). */
  refreshEnd(): void {
    this.fixEnd(false)
  }

  /** Recomputes the end fields from the newest entry and writes the header. */
  private fixEnd(removedSome: boolean): void {
    const v = this.view!
    if (this.indexCount > FIRST_ENTRY) {
      const at = this.entriesStart + (this.indexCount - 1) * INDEX_ENTRY.bytes
      this.endPhyOffset = readI64(v, at + INDEX_ENTRY.phyOffset)
      if (this.beginTimestamp > 0) {
        // The entry keeps whole seconds: its store time is in [low, low + 999].
        const low = this.beginTimestamp + v.getInt32(at + INDEX_ENTRY.timeDiff) * 1000
        if (removedSome || this.endTimestamp < low || this.endTimestamp > low + 999) {
          this.endTimestamp = Math.min(Math.max(this.endTimestamp, low), low + 999)
        }
      }
    } else {
      this.endPhyOffset = this.beginPhyOffset
      this.endTimestamp = this.beginTimestamp
    }
    encodeHeader(v, this)
  }

  private zeroEntry(n: number): void {
    const at = this.entriesStart + n * INDEX_ENTRY.bytes
    this.mapping!.buffer.fill(0, at, at + INDEX_ENTRY.bytes)
  }
}

