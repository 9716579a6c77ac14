/**
 * IndexService: the index directory, a list of IndexFiles oldest → newest, the last one written.
 *
 * - `put` is synchronous and allocation-free on the usual path (one entry per key written into
 *   the shared map); space is reserved before anything is written, so a failed put leaves no trace.
 * - `query` walks files newest → oldest with RocketMQ's rules; older files are mapped on demand,
 *   at most `maxOpenFiles` of them at once (LRU), the file being written always.
 * - `flush` syncs dirty files, then writes the checkpoint D (checkpoint.ts).
 * - Recovery (docs/design/index.md): `open` undoes a torn put and the newest record when the
 *   checkpoint does not cover it; `recover(commitLogEnd, clean)` rolls entries back exactly,
 *   validating as it goes, and deletes files it cannot trust so the store rebuilds them.
 */
import * as path from 'node:path'
import type { FileIO } from '@mqts/common'
import { LRUCache } from 'lru-cache'
import { readCheckpoint, writeCheckpoint, writeCheckpointSync } from './checkpoint.js'
import { IndexError, ioError } from './errors.js'
import { INDEX_DEFAULTS, fileNameOf, indexFileSize, isIndexFileName, javaHashContinue, positiveHash, indexKeyHash, timeOfFileName, topicHashPrefix } from './format.js'
import { IndexFile, type IndexFileInfo } from './index-file.js'
import { MAX_BACKLOG, MAX_MAP_BYTES, Mapping, datasyncPath, mappingBacklog, realFileIO, reclaimMappings, reclaimMappingsSoon } from './mapping.js'

export interface IndexServiceOptions {
  /** The index directory (the store's `index/`); created if missing. */
  dir: string
  /** Where its files live: default the real disk; the store passes its own (a simulated disk in tests). */
  fileIO?: FileIO
  /** Hash slots per file, default 5,000,000. */
  maxHashSlotNum?: number
  /** Entries per file (one is never used), default 20,000,000. */
  maxIndexNum?: number
  /** Clock for file names, ms since the epoch; default Date.now. */
  now?: () => number
  /** Older files kept mapped for queries, default 8 (the file being written is not counted). */
  maxOpenFiles?: number
}

/** One CommitLog record as the dispatcher sees it. */
export interface IndexRecord {
  topic: string
  /** KEYS tokens, already split on ' '; empty ones are ignored. */
  keys: readonly string[]
  /** UNIQ_KEY property, when present. */
  uniqKey?: string | undefined
  /** First byte of the record in the CommitLog. */
  phyOffset: number
  /** Record size in bytes: the record ends at phyOffset + size. */
  size: number
  storeTimestamp: number
}

export interface QueryOptions {
  /** Most offsets returned, default 32; not capped here (RocketMQ caps it at maxMsgsNumBatch, 64). */
  maxNum?: number
  /** Store-time window in ms, inclusive; default everything. Index times have 1 s granularity. */
  begin?: number
  end?: number
}

export type IndexStatus = 'open' | 'closing' | 'closed'

/** What open and recover changed, for logs and tests. */
export interface IndexRecoveryReport {
  /** Entries rolled back. */
  removedEntries: number
  /** Files deleted, with the reason (empty after rollback, or what did not check out). */
  deletedFiles: { name: string; reason: string }[]
  /** A put cut short by a process kill was undone. */
  repairedTornPut: boolean
}

const TEMP_SUFFIX = '.tmp'
let spareCount = 0
/** A temp name for a spare file, unique in this process (open removes leftovers of any). */
function spareName(): string {
  return `spare-${process.pid}-${++spareCount}${TEMP_SUFFIX}`
}

/** A value as an error message shows it. */
function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v)
  if (v === null || typeof v !== 'object') return String(v)
  return Array.isArray(v) ? 'an array' : 'an object'
}

function invalid(what: string, rule: string, got: unknown): IndexError {
  return new IndexError('INVALID_ARGUMENT', `${what} must be ${rule}, got ${shown(got)}`)
}

/**
 * Checks a record as `put` needs it and returns how many entries it takes (the UNIQ_KEY and each
 * non-empty key). A NaN or negative store time would make entries invisible to time windows (and
 * a negative one fails the header check at the next open), a fractional offset is no record.
 */
function checkedKeyCount(record: IndexRecord): number {
  if (record === null || typeof record !== 'object') throw invalid('an index record', 'an object', record)
  const { topic, keys, uniqKey, phyOffset, size, storeTimestamp } = record
  if (typeof topic !== 'string' || topic.length === 0) throw invalid('topic', 'a non-empty string', topic)
  if (!Number.isSafeInteger(phyOffset) || phyOffset < 0) throw invalid('phyOffset', 'a non-negative integer', phyOffset)
  if (!Number.isSafeInteger(size) || size <= 0 || !Number.isSafeInteger(phyOffset + size)) throw invalid(`size of the record at ${phyOffset}`, 'a positive integer', size)
  if (!Number.isSafeInteger(storeTimestamp) || storeTimestamp < 0) throw invalid('storeTimestamp', 'a non-negative integer (ms since the epoch)', storeTimestamp)
  if (!Array.isArray(keys)) throw invalid('keys', 'an array of strings', keys)
  if (uniqKey !== undefined && typeof uniqKey !== 'string') throw invalid('uniqKey', 'a string or undefined', uniqKey)
  let count = uniqKey ? 1 : 0
  for (let i = 0; i < keys.length; i++) {
    const key: unknown = keys[i]
    if (typeof key !== 'string') throw invalid(`keys[${i}]`, 'a string', key)
    if (key.length > 0) count++
  }
  return count
}

export class IndexService {
  private _status: IndexStatus = 'open'
  private readonly damageFound: { name: string; reason: string }[] = []
  /** Accumulated since open. */
  readonly recoveryReport: IndexRecoveryReport = { removedEntries: 0, deletedFiles: [], repairedTornPut: false }
  private _indexedUpTo = 0
  /** The checkpoint's value: what is known durable. */
  private durableUpTo: number
  /** Oldest → newest; files[writerIndex] is written, later ones (if any) were made for the current put. */
  private list: IndexFile[] = []
  private writerIndex = -1
  private readonly mapped: LRUCache<string, IndexFile>
  private readonly now: () => number
  private readonly slots: number
  private readonly entries: number
  private dirDirty = false
  /** The next file, made ahead in the background (under a temp name until it is used). */
  private spare: IndexFile | undefined
  private preparing: Promise<void> | undefined
  private flushing: Promise<void> = Promise.resolve()
  /** Bumped by every rollback, so a flush that began before one does not raise the checkpoint. */
  private rollbacks = 0
  /** Hash of the last topic seen + '#', so a run of puts to one topic hashes it once. */
  private lastTopic = ''
  private lastTopicPrefix = topicHashPrefix('')

  private constructor(
    private readonly io: FileIO,
    readonly dir: string,
    options: Required<Pick<IndexServiceOptions, 'maxHashSlotNum' | 'maxIndexNum' | 'maxOpenFiles' | 'now'>>,
    durableUpTo: number,
  ) {
    this.slots = options.maxHashSlotNum
    this.entries = options.maxIndexNum
    this.now = options.now
    this.durableUpTo = durableUpTo
    this.mapped = new LRUCache<string, IndexFile>({
      max: options.maxOpenFiles,
      dispose: (file) => {
        if (!this.isPinned(file)) file.detach()
      },
    })
  }

  /** Opens (creating if needed) the index in `options.dir`. Call `recover` next, then re-dispatch from `indexedUpTo`. */
  static async open(options: IndexServiceOptions): Promise<IndexService> {
    const maxHashSlotNum = options.maxHashSlotNum ?? INDEX_DEFAULTS.maxHashSlotNum
    const maxIndexNum = options.maxIndexNum ?? INDEX_DEFAULTS.maxIndexNum
    const maxOpenFiles = options.maxOpenFiles ?? INDEX_DEFAULTS.maxOpenFiles
    if (typeof options.dir !== 'string' || options.dir === '') throw new IndexError('INVALID_ARGUMENT', 'dir is required')
    if (!Number.isSafeInteger(maxHashSlotNum) || maxHashSlotNum < 1) throw new IndexError('INVALID_ARGUMENT', `maxHashSlotNum ${maxHashSlotNum} must be a positive integer`)
    if (!Number.isSafeInteger(maxIndexNum) || maxIndexNum < 2) throw new IndexError('INVALID_ARGUMENT', `maxIndexNum ${maxIndexNum} must be an integer >= 2`)
    if (!Number.isSafeInteger(maxOpenFiles) || maxOpenFiles < 1) throw new IndexError('INVALID_ARGUMENT', `maxOpenFiles ${maxOpenFiles} must be a positive integer`)
    if (indexFileSize(maxHashSlotNum, maxIndexNum) > MAX_MAP_BYTES) {
      throw new IndexError('INVALID_ARGUMENT', `an index file of ${indexFileSize(maxHashSlotNum, maxIndexNum)} bytes is over the ${MAX_MAP_BYTES}-byte map limit`)
    }
    const dir = options.dir
    const io = options.fileIO ?? realFileIO()
    let names: string[]
    let durable: number
    try {
      await io.mkdirp(dir)
      names = await io.list(dir)
      // Leftovers of an interrupted file creation or checkpoint write.
      for (const n of names.filter((n) => n.endsWith(TEMP_SUFFIX))) await io.remove(path.join(dir, n))
      durable = readCheckpoint(dir, io)
    } catch (err) {
      throw ioError(`opening index directory ${dir}`, err)
    }
    const service = new IndexService(io, dir, { maxHashSlotNum, maxIndexNum, maxOpenFiles, now: options.now ?? Date.now }, durable)
    try {
      service.load(names.filter(isIndexFileName).sort())
    } catch (err) {
      service.releaseAll()
      throw ioError(`loading index files in ${dir}`, err)
    }
    setImmediate(() => service.prepareSpare())
    return service
  }

  /** 'open' → 'closing' → 'closed'. */
  get status(): IndexStatus {
    return this._status
  }

  /** CommitLog offset just past the last indexed record (0 for an empty index). */
  get indexedUpTo(): number {
    return this._indexedUpTo
  }

  /** Read-only description of every file, oldest first. */
  get files(): IndexFileInfo[] {
    return this.list.map((f) => f.info())
  }

  // -------------------------------------------------------------------------------------------
  // Loading and recovery

  private load(names: string[]): void {
    let cut = Number.POSITIVE_INFINITY
    // A bad file and every later one go; the records from the previous file's last one on are
    // indexed again (rolling that record back makes the cut exact, its keys may straddle).
    const dropFrom = (i: number, problem: string, later: string[] = []): void => {
      const gone = [...this.list.slice(i).map((f) => f.name), ...later]
      for (const name of gone) this.recoveryReport.deletedFiles.push({ name, reason: name === gone[0] ? problem : 'after a bad file' })
      this.deleteFilesSync(gone)
      this.list.length = i
      cut = Math.min(cut, i > 0 ? this.list[i - 1]!.endPhyOffset : 0)
    }
    for (let i = 0; i < names.length; i++) {
      const loaded = IndexFile.load(this.io, this.dir, names[i]!, this.slots, this.entries)
      const prev = this.list.at(-1)
      const problem =
        typeof loaded === 'string'
          ? loaded
          : prev && loaded.indexCount > 1 && loaded.beginPhyOffset < prev.endPhyOffset
            ? `begins at ${loaded.beginPhyOffset}, before the previous file ends (${prev.endPhyOffset})`
            : undefined
      if (problem !== undefined) {
        dropFrom(i, problem, names.slice(i))
        break
      }
      this.list.push(loaded as IndexFile)
    }
    // An empty last file holds nothing, but a put that created it may have been cut short in the
    // file before it: drop it, so that file is the last one and gets the last file's checks.
    for (let last = this.list.at(-1); last && last.indexCount <= 1; last = this.list.at(-1)) {
      this.recoveryReport.deletedFiles.push({ name: last.name, reason: 'empty' })
      this.deleteFilesSync([last.name])
      this.list.pop()
    }
    // Files before the last were complete long ago: their newest entry must match the header.
    for (let i = 0; i < this.list.length - 1; i++) {
      const problem = this.list[i]!.checkNewestEntry()
      if (problem !== undefined) {
        dropFrom(i, problem)
        break
      }
    }
    this.writerIndex = this.list.length - 1
    const writer = this.writer
    this._indexedUpTo = this.durableUpTo
    if (writer) {
      this.attach(writer)
      if (writer.repairTornPut()) this.recoveryReport.repairedTornPut = true
      writer.refreshEnd()
      // Entries at or past D were written after the last flush: the newest record may have
      // lost some keys, and where it ends is not recorded; re-index it.
      const newest = writer.newestPhyOffset()
      if (newest >= this.durableUpTo) {
        this._indexedUpTo = newest
        cut = Math.min(cut, newest)
      }
    }
    if (cut !== Number.POSITIVE_INFINITY) this.rollbackTo(cut, false)
    this.prepareWriter()
  }

  /**
   * Makes the index consistent with a CommitLog that ends at `commitLogEnd` (a record boundary):
   * entries at or past it disappear exactly. `clean` false (after a crash): entries past the
   * checkpoint go too, everything read is validated, and a file found inconsistent is deleted
   * with every later one. Afterwards re-dispatch from `indexedUpTo`. Meant for start-up, before
   * dispatch resumes: a flush still running then does not raise the checkpoint again.
   */
  recover(commitLogEnd: number, clean: boolean): void {
    this.assertOpen()
    if (!Number.isSafeInteger(commitLogEnd) || commitLogEnd < 0) throw new IndexError('INVALID_ARGUMENT', `commitLogEnd ${commitLogEnd} must be a non-negative integer`)
    const cut = clean ? commitLogEnd : Math.min(commitLogEnd, this.durableUpTo)
    if (!clean || cut < this._indexedUpTo) this.rollbackTo(cut, !clean)
    this.prepareWriter()
  }

  /**
   * Rolls back every entry with phyOffset >= cut, newest first. A file whose entries or slots do
   * not check out is deleted with every later file, and the cut moves to the previous file's last
   * record. Lowers indexedUpTo (and the checkpoint, durably) to the cut.
   */
  private rollbackTo(cut: number, checkSlots: boolean): void {
    this.rollbacks++
    try {
      for (let i = this.list.length - 1; i >= 0; i--) {
        const f = this.list[i]!
        const isLast = i === this.list.length - 1
        if (!isLast && f.endPhyOffset < cut) break
        this.attach(f)
        const result = f.rollback(cut, true)
        const removed = result.ok ? result.removed : 0
        const problem = !result.ok ? result.reason : checkSlots && (isLast || removed > 0) ? f.checkSlots() : undefined
        this.recoveryReport.removedEntries += removed
        if (problem !== undefined) {
          for (const g of this.list.slice(i)) this.recoveryReport.deletedFiles.push({ name: g.name, reason: g === f ? problem : 'after a bad file' })
          this.deleteFilesSync(this.list.slice(i).map((g) => g.name))
          this.list.length = i
          cut = Math.min(cut, i > 0 ? this.list[i - 1]!.endPhyOffset : 0)
          continue
        }
        if (removed > 0 && f.indexCount <= 1 && isLast) {
          this.recoveryReport.deletedFiles.push({ name: f.name, reason: 'empty after rollback' })
          this.deleteFilesSync([f.name])
          this.list.length = i
          continue
        }
        if (f.indexCount > 1) break
      }
      this.writerIndex = this.list.length - 1
      this._indexedUpTo = Math.min(this._indexedUpTo, cut)
      if (this._indexedUpTo < this.durableUpTo) {
        writeCheckpointSync(this.io, this.dir, this._indexedUpTo)
        this.durableUpTo = this._indexedUpTo
      }
    } catch (err) {
      throw ioError(`rolling the index back to ${cut}`, err)
    }
  }

  /** Removes files by name (unmapping them first), synchronously. */
  private deleteFilesSync(names: string[]): void {
    for (const name of names) {
      const f = this.list.find((g) => g.name === name)
      if (f) {
        this.mapped.delete(name)
        f.detach()
      }
      this.io.removeSync(path.join(this.dir, name))
    }
    if (names.length > 0) {
      this.io.syncDirSync(this.dir)
      reclaimMappings()
    }
  }

  // -------------------------------------------------------------------------------------------
  // Mappings

  private get writer(): IndexFile | undefined {
    return this.writerIndex >= 0 ? this.list[this.writerIndex] : undefined
  }

  private isPinned(f: IndexFile): boolean {
    const i = this.list.indexOf(f)
    return i >= 0 && this.writerIndex >= 0 && i >= this.writerIndex
  }

  /** Maps `f` if it is not (older files count against maxOpenFiles). */
  private attach(f: IndexFile): void {
    if (f.isMapped) {
      if (!this.isPinned(f)) this.mapped.get(f.name)
      return
    }
    f.attach(Mapping.open(this.io, f.path, f.size))
    if (!this.isPinned(f)) this.mapped.set(f.name, f)
  }

  private prepareWriter(): void {
    const w = this.writer
    if (!w) return
    try {
      this.attach(w)
      this.mapped.delete(w.name) // pinned now: the dispose hook leaves it mapped
      w.prepareForWriting()
    } catch (err) {
      throw ioError(`preparing index file ${w.path}`, err)
    }
  }

  private releaseAll(): void {
    this.mapped.clear()
    for (const f of this.list) f.detach()
    reclaimMappings()
  }

  // -------------------------------------------------------------------------------------------
  // Writing

  /**
   * Indexes `<topic>#<uniqKey>` and `<topic>#<key>` for each non-empty key. Records below
   * indexedUpTo are skipped (re-dispatch is idempotent); a record without keys only moves
   * indexedUpTo. Throws DISK_FULL / IO_ERROR with nothing written when space cannot be had.
   */
  put(record: IndexRecord): void {
    if (this.status !== 'open') throw this.notOpen()
    // Everything is checked before a file is created or an entry written.
    const count = checkedKeyCount(record)
    const phyOffset = record.phyOffset
    if (phyOffset < this._indexedUpTo) return
    const size = record.size
    const keys = record.keys
    const uniqKey = record.uniqKey
    if (count > 0) {
      const w = this.writer
      if (w === undefined || !w.canTake(count)) this.reserve(count)
      const topic = record.topic
      if (topic !== this.lastTopic) {
        this.lastTopicPrefix = topicHashPrefix(topic)
        this.lastTopic = topic
      }
      const prefix = this.lastTopicPrefix
      const ts = record.storeTimestamp
      if (uniqKey) this.putKey(positiveHash(javaHashContinue(prefix, uniqKey)), phyOffset, ts)
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i]!
        if (key.length > 0) this.putKey(positiveHash(javaHashContinue(prefix, key)), phyOffset, ts)
      }
    }
    this._indexedUpTo = phyOffset + size
  }

  private putKey(keyHash: number, phyOffset: number, storeTimestamp: number): void {
    let f = this.list[this.writerIndex]!
    if (f.indexCount >= f.maxIndexNum) f = this.advanceWriter()
    f.putKey(keyHash, phyOffset, storeTimestamp)
  }

  /** The next (already created) file becomes the writer; the full one joins the LRU. */
  private advanceWriter(): IndexFile {
    const full = this.list[this.writerIndex]!
    this.writerIndex++
    this.mapped.set(full.name, full)
    return this.list[this.writerIndex]!
  }

  /**
   * Makes room for `count` entries before any is written: reserves entries in the current file
   * and creates as many new files as the rest needs. On failure the new files are removed again.
   */
  private reserve(count: number): void {
    let need = count
    const w = this.writer
    try {
      if (w && !w.isFull) {
        const here = Math.min(need, w.room)
        w.reserveEntries(here)
        need -= here
        if (w.reservedToEnd) setImmediate(() => this.prepareSpare())
      }
    } catch (err) {
      throw ioError(`reserving space in index file ${w!.path}`, err)
    }
    if (need === 0) return
    const created: IndexFile[] = []
    try {
      while (need > 0) {
        const last = created.at(-1) ?? this.list.at(-1)
        const name = this.nextFileName(last?.name)
        const seedPhyOffset = last?.endPhyOffset ?? 0
        const seedTimestamp = last?.endTimestamp ?? 0
        const f = this.takeSpare(name, seedPhyOffset, seedTimestamp) ?? IndexFile.create(this.io, this.dir, name, this.slots, this.entries, seedPhyOffset, seedTimestamp)
        created.push(f)
        const here = Math.min(need, f.room)
        f.reserveEntries(here)
        need -= here
      }
    } catch (err) {
      for (const f of created) {
        f.detach()
        this.io.removeSync(f.path)
      }
      reclaimMappingsSoon()
      throw ioError(`creating an index file in ${this.dir}`, err)
    }
    this.list.push(...created)
    this.dirDirty = true
    if (!w) this.writerIndex = this.list.length - created.length
    else if (w.isFull) this.advanceWriter()
    // As RocketMQ's AllocateMappedFileService does, the next file is made as soon as this one is
    // (starting it costs a few hundred µs, so not inside this put).
    setImmediate(() => this.prepareSpare())
  }

  /** The spare file under `name`, seeded, or undefined when there is none (or it failed). */
  private takeSpare(name: string, seedPhyOffset: number, seedTimestamp: number): IndexFile | undefined {
    const f = this.spare
    if (!f) return undefined
    this.spare = undefined
    try {
      f.activate(name, seedPhyOffset, seedTimestamp)
      return f
    } catch {
      this.discard(f)
      return undefined
    }
  }

  /**
   * Starts making the next file in the background (after open, after a file was created, or when
   * the current one is about to fill up), so the put that rolls over finds it ready. A failure is
   * not reported here: the put that needs a file then creates one itself and reports the error.
   */
  private prepareSpare(): void {
    if (this.spare || this.preparing || this.status !== 'open') return
    this.preparing = IndexFile.prepare(this.io, this.dir, spareName(), this.slots, this.entries)
      .then(
        (f) => {
          if (this.status === 'open' && !this.spare) this.spare = f
          else this.discard(f)
        },
        () => {},
      )
      .finally(() => {
        this.preparing = undefined
      })
  }

  private discard(f: IndexFile): void {
    f.detach()
    this.io.removeSync(f.path)
    reclaimMappingsSoon()
  }

  /** `yyyyMMddHHmmssSSS` of now, moved 1 ms past the newest file's name when not after it. */
  private nextFileName(lastName: string | undefined): string {
    let t = this.now()
    const lastTime = lastName === undefined ? undefined : timeOfFileName(lastName)
    if (lastTime !== undefined && t <= lastTime) t = lastTime + 1
    return fileNameOf(t)
  }

  // -------------------------------------------------------------------------------------------
  // Reading

  /**
   * CommitLog offsets of messages whose `<topic>#<key>` has the same hash, stored within
   * [begin, end], newest first, at most maxNum. Only the hash is compared: check the real key.
   */
  query(topic: string, key: string, options: QueryOptions = {}): number[] {
    if (this.status !== 'open') throw this.notOpen()
    if (typeof topic !== 'string') throw invalid('topic', 'a string', topic)
    if (typeof key !== 'string') throw invalid('key', 'a string', key)
    if (options === null || typeof options !== 'object') throw invalid('query options', 'an object', options)
    const maxNum = options.maxNum ?? INDEX_DEFAULTS.maxNum
    const begin = options.begin ?? 0
    const end = options.end ?? Number.MAX_SAFE_INTEGER
    if (!Number.isSafeInteger(maxNum) || maxNum < 1) throw invalid('maxNum', 'a positive integer', maxNum)
    if (typeof begin !== 'number' || Number.isNaN(begin)) throw invalid('begin', 'a number (ms since the epoch)', begin)
    if (typeof end !== 'number' || Number.isNaN(end)) throw invalid('end', 'a number (ms since the epoch)', end)
    if (!(begin <= end)) throw new IndexError('INVALID_ARGUMENT', `time window [${begin}, ${end}] is empty`)
    const keyHash = indexKeyHash(topic, key)
    const out: number[] = []
    let damaged = false
    for (let i = this.list.length - 1; i >= 0; i--) {
      const f = this.list[i]!
      if (f.isTimeMatched(begin, end)) {
        const known = f.damage
        try {
          if (f.isMapped) {
            if (i < this.writerIndex) this.mapped.get(f.name)
            f.select(out, keyHash, maxNum, begin, end)
          } else if (mappingBacklog() >= MAX_BACKLOG) {
            f.selectUnmapped(out, keyHash, maxNum, begin, end)
          } else {
            this.attach(f)
            f.select(out, keyHash, maxNum, begin, end)
          }
        } catch (err) {
          throw ioError(`reading index file ${f.path}`, err)
        }
        if (f.damage !== undefined) {
          damaged = true
          if (known === undefined) this.damageFound.push({ name: f.name, reason: f.damage })
        }
      }
      if (f.beginTimestamp < begin || out.length >= maxNum) break
    }
    // Intact files return a record once (its entries are adjacent in a chain); past damage, order
    // is not guaranteed, so repeats are dropped here.
    return damaged ? [...new Set(out)] : out
  }

  /** Files in which queries met damaged bytes (and worked around them), with the first problem. */
  get damage(): readonly { name: string; reason: string }[] {
    return this.damageFound
  }

  // -------------------------------------------------------------------------------------------
  // Durability and retention

  /** Syncs every dirty file, then durably records indexedUpTo as of the call in the checkpoint. */
  flush(): Promise<void> {
    if (this.status === 'closed') return Promise.reject(this.notOpen())
    const run = this.flushing.then(() => this.flushNow())
    this.flushing = run.catch(() => {})
    return run
  }

  private async flushNow(): Promise<void> {
    const upTo = this._indexedUpTo
    const rollbacks = this.rollbacks
    const dirty = this.list.filter((f) => f.dirty)
    for (const f of dirty) f.dirty = false
    try {
      await Promise.all(
        dirty.map((f) =>
          datasyncPath(this.io, f.path).catch((err: unknown) => {
            // Deleted by retention meanwhile: nothing left to make durable.
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
          }),
        ),
      )
      if (this.dirDirty) {
        this.dirDirty = false
        await this.io.syncDir(this.dir)
      }
      if (upTo !== this.durableUpTo && rollbacks === this.rollbacks) {
        // A rollback may run while the checkpoint is written: checked again just before the
        // rename, and durableUpTo follows the file at once, so a rollback after it sees the
        // higher value and writes its lower one.
        await writeCheckpoint(this.io, this.dir, upTo, () => {
          if (rollbacks !== this.rollbacks) return false
          this.durableUpTo = upTo
          return true
        })
      }
    } catch (err) {
      for (const f of dirty) if (this.list.includes(f)) f.dirty = true
      throw ioError(`flushing the index in ${this.dir}`, err)
    }
  }

  /**
   * Retention: deletes, oldest first, every file whose entries all point below `minPhyOffset`
   * (endPhyOffset < minPhyOffset), never the file being written. Returns how many went.
   */
  async deleteBelow(minPhyOffset: number): Promise<number> {
    if (this.status !== 'open') throw this.notOpen()
    let n = 0
    while (n < this.writerIndex && this.list[n]!.endPhyOffset < minPhyOffset) n++
    if (n === 0) return 0
    const victims = this.list.splice(0, n)
    this.writerIndex -= n
    for (const f of victims) {
      this.mapped.delete(f.name)
      f.detach()
    }
    try {
      for (const f of victims) await this.io.remove(f.path)
      await this.io.syncDir(this.dir)
    } catch (err) {
      throw ioError(`deleting index files in ${this.dir}`, err)
    } finally {
      reclaimMappings()
    }
    return n
  }

  /** Flushes, then lets go of every mapping. Idempotent. */
  async close(): Promise<void> {
    if (this.status !== 'open') return
    this._status = 'closing'
    try {
      // In the same chain as every flush: checkpoint writes never overlap.
      await this.flush()
    } finally {
      this._status = 'closed'
      await this.preparing
      if (this.spare) this.discard(this.spare)
      this.spare = undefined
      this.releaseAll()
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  private assertOpen(): void {
    if (this.status !== 'open') throw this.notOpen()
  }

  private notOpen(): IndexError {
    return new IndexError('NOT_OPEN', `index ${this.dir} is ${this.status}`)
  }
}
