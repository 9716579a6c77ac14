import * as path from 'node:path'
import { StoreError, ioError } from './errors.js'
import type { FileIO } from './file-io.js'
import { DATA_FILE_NAME_PATTERN, offsetToFileName } from './codec/index.js'
import { MappedFile } from './mapped-file.js'

/**
 * The ordered data files of one log, all `fileSize` bytes, each named by its start offset.
 * The file after the last one is allocated ahead in the background, so a roll normally finds it
 * ready and does not stall appends.
 */
export class MappedFileQueue {
  files: MappedFile[] = []
  private ahead: { offset: number; promise: Promise<MappedFile>; failed: unknown } | undefined
  private closed = false
  private readonly abort = new AbortController()
  /** Background page-cache warm-ups of sparse files, one at a time, in order. */
  private warming: Promise<void> = Promise.resolve()
  /** Where the first file goes when there is none (see restartAt). */
  private startOffset = 0
  /**
   * Whether new sparse files are warmed and their first range faulted in ahead: off for a
   * replica's log, whose bytes arrive by pwrite, not through the map (CommitLog.appendReplicatedBytes).
   */
  prepareForMapWrites = true

  constructor(
    readonly io: FileIO,
    readonly dir: string,
    readonly fileSize: number,
    private readonly writableMap: boolean,
    /** Sparse files for a writer that prefaults (async flush); zero-filled otherwise. */
    private readonly sparse: boolean,
    /**
     * Sparse files faulted in on the thread pool (DataFile.prefaultViewAsync): a new file gets its
     * first `prefaultFirstBytes` so before it is handed out (after that, the writer's background
     * prefault keeps ahead of it).
     */
    private readonly prefaultFirstBytes = 0,
  ) {}

  /** Opens every data file; removes leftovers of interrupted allocations. */
  async load(): Promise<void> {
    await this.io.mkdirp(this.dir)
    const names = await this.io.list(this.dir)
    const offsets: number[] = []
    for (const name of names) {
      if (name.endsWith('.tmp')) {
        await this.io.remove(path.join(this.dir, name))
        continue
      }
      if (!DATA_FILE_NAME_PATTERN.test(name)) continue
      const offset = Number(name)
      if (!Number.isSafeInteger(offset) || offset % this.fileSize !== 0) {
        throw new StoreError('CORRUPT_FILE', `data file ${name} in ${this.dir} does not start at a multiple of the file size ${this.fileSize}`, { details: { file: name } })
      }
      const size = await this.io.size(path.join(this.dir, name))
      if (size !== this.fileSize) {
        throw new StoreError('CORRUPT_FILE', `data file ${name} in ${this.dir} has ${size} bytes, expected ${this.fileSize} (was the file size option changed?)`, {
          details: { file: name, size, expected: this.fileSize },
        })
      }
      offsets.push(offset)
    }
    offsets.sort((a, b) => a - b)
    for (let i = 1; i < offsets.length; i++) {
      if (offsets[i] !== offsets[i - 1]! + this.fileSize) {
        throw new StoreError('CORRUPT_FILE', `data files in ${this.dir} are not contiguous: ${offsetToFileName(offsets[i - 1]!)} then ${offsetToFileName(offsets[i]!)}`)
      }
    }
    for (const offset of offsets) this.files.push(await MappedFile.open(this.io, this.dir, offset, this.writableMap))
  }

  get first(): MappedFile | undefined {
    return this.files[0]
  }

  get last(): MappedFile | undefined {
    return this.files[this.files.length - 1]
  }

  /** The file holding `offset`, if any. */
  findFile(offset: number): MappedFile | undefined {
    const first = this.files[0]
    if (!first || offset < first.fileFromOffset) return undefined
    return this.files[Math.floor((offset - first.fileFromOffset) / this.fileSize)]
  }

  private nextOffset(): number {
    const last = this.last
    return last ? last.fileFromOffset + this.fileSize : this.startOffset
  }

  /**
   * Starts allocating the file after the last one, if not already under way. `sparse` makes a
   * file that would be zero-filled sparse instead (see createNext).
   */
  prepareNext(sparse = this.sparse): void {
    if (this.closed) return
    const offset = this.nextOffset()
    if (this.ahead && this.ahead.offset === offset && this.ahead.failed === undefined) return
    const file = path.join(this.dir, offsetToFileName(offset))
    const entry: { offset: number; promise: Promise<MappedFile>; failed: unknown } = {
      offset,
      failed: undefined,
      promise: (async () => {
        await this.io.allocate(file, this.fileSize, { zeroFill: !sparse, signal: this.abort.signal })
        const mapped = await MappedFile.open(this.io, this.dir, offset, this.writableMap)
        // Its first range is faulted in before the writer gets there (a failure, a full disk, is
        // left for the writer's prefault to report).
        this.warm(mapped, 0)
        if (this.prefaultFirstBytes > 0 && this.prepareForMapWrites) mapped.background.start(mapped.file, mapped.view, 0, Math.min(this.fileSize, this.prefaultFirstBytes))
        return mapped
      })(),
    }
    entry.promise.catch((err: unknown) => {
      entry.failed = err ?? new Error('allocation failed')
    })
    this.ahead = entry
  }

  /**
   * Queues a background read of `file` from `from` to its end (sparse files only): its pages are
   * then in the page cache before the writer prefaults them. Not awaited by anyone; a roll never
   * waits for it.
   */
  warm(file: MappedFile, from: number): void {
    if (!this.sparse || this.closed || !this.prepareForMapWrites) return
    this.warming = this.warming.then(() => (this.closed ? undefined : file.file.warm(from, file.fileSize - from, this.abort.signal))).catch(() => undefined)
  }

  /** Resolves when background allocation and warm-up have nothing left to do (benchmarks, tests). */
  async whenIdle(): Promise<void> {
    await this.ahead?.promise.catch(() => undefined)
    await this.warming
  }

  /**
   * The first file of a new log. Where nothing is written through the map (sync flush) it is
   * sparse, so open does not wait for a whole file of zeros; a writable map on a kernel that
   * cannot prefault needs the zeros (a write into a hole that finds no space is a SIGBUS).
   */
  createFirst(): Promise<MappedFile> {
    return this.createNext(this.sparse || !this.writableMap)
  }

  /**
   * The file after the last one, appended to the queue; waits for its allocation if needed.
   * `sparse`: when no allocation is under way, create it sparse even where files are zero-filled
   * (the first file of a new sync-flush store: open need not wait for a whole file of zeros;
   * its durable writes then allocate blocks, which fdatasync makes durable with the data, at a
   * higher cost per flush until the next file, zero-filled ahead, takes over).
   */
  async createNext(sparse = this.sparse): Promise<MappedFile> {
    if (this.closed) throw new StoreError('NOT_OPEN', 'store is closed')
    const offset = this.nextOffset()
    if (!this.ahead || this.ahead.offset !== offset || this.ahead.failed !== undefined) {
      this.ahead = undefined
      this.prepareNext(sparse)
    }
    const entry = this.ahead!
    let mapped: MappedFile
    try {
      mapped = await entry.promise
    } catch (err) {
      if (this.ahead === entry) this.ahead = undefined
      throw ioError(`creating data file ${offsetToFileName(offset)}`, err)
    }
    if (this.closed) {
      await mapped.close()
      throw new StoreError('NOT_OPEN', 'store is closed')
    }
    this.ahead = undefined
    this.files.push(mapped)
    this.prepareNext()
    return mapped
  }

  /** Whether new files are zero-filled (sync flush, or a kernel that cannot prefault): costly to make again. */
  get zeroFills(): boolean {
    return !this.sparse
  }

  /**
   * Starts an empty log over at `offset` (a multiple of the file size; the caller checked that
   * nothing was written): the file allocated ahead and every file go, the last first (a kill part
   * way leaves fewer empty files, still contiguous), then the first file is made at `offset`. The
   * log then looks as one whose earlier files retention deleted.
   */
  async restartAt(offset: number): Promise<MappedFile> {
    await this.#dropAhead()
    await this.deleteAfter(undefined)
    this.startOffset = offset
    const first = await this.createFirst()
    await this.io.syncDir(this.dir)
    return first
  }

  /**
   * Takes the file after `last` back as the next file (the one a clean close left allocated
   * ahead and unwritten) instead of deleting it: a reopen then neither unlinks it nor allocates
   * it again. The caller has checked that nothing was written into it.
   */
  adoptNext(file: MappedFile): void {
    const i = this.files.indexOf(file)
    if (i !== this.files.length - 1 || i === 0) throw new Error('adoptNext takes the last of several files')
    this.files.pop()
    this.ahead = { offset: file.fileFromOffset, promise: Promise.resolve(file), failed: undefined }
    this.warm(file, 0)
    if (this.prefaultFirstBytes > 0 && this.prepareForMapWrites) file.background.start(file.file, file.view, 0, Math.min(this.fileSize, this.prefaultFirstBytes))
  }

  /**
   * Closes and deletes every file after `keep` (all files when `keep` is undefined), the last one
   * first, syncing the directory after each: a power loss part way leaves the files contiguous
   * (load refuses a gap), only shorter.
   */
  async deleteAfter(keep: MappedFile | undefined): Promise<number> {
    const index = keep ? this.files.indexOf(keep) : -1
    const doomed = this.files.splice(index + 1)
    for (const f of doomed.reverse()) {
      // A file of an open store may still be faulting in (async flush): not under its map.
      await f.background.pending
      await f.close()
      await this.io.remove(f.path)
      await this.io.syncDir(this.dir)
    }
    if (doomed.length > 0) this.io.reclaim()
    return doomed.length
  }

  /**
   * Deletes the file allocated ahead unless it is the one after `keep` (truncate: the log is cut
   * back to `keep`, and the next file will be another one). It goes before any file it follows,
   * with a directory sync, so a power loss part way leaves the files contiguous.
   */
  async dropAheadAfter(keep: MappedFile): Promise<void> {
    const ahead = this.ahead
    if (!ahead || ahead.offset === keep.fileFromOffset + this.fileSize) return
    await this.#dropAhead()
  }

  /** Closes and deletes the file allocated ahead, if any, then syncs the directory. */
  async #dropAhead(): Promise<void> {
    const ahead = this.ahead
    if (!ahead) return
    this.ahead = undefined
    const f = await ahead.promise.catch(() => undefined)
    await f?.background.pending
    await f?.close()
    const file = path.join(this.dir, offsetToFileName(ahead.offset))
    if (await this.io.exists(file)) await this.io.remove(file)
    await this.io.syncDir(this.dir)
  }

  async close(): Promise<void> {
    this.closed = true
    const ahead = this.ahead
    this.ahead = undefined
    // Stop a zero fill or warm-up under way (a temp file is removed); a finished file is kept.
    this.abort.abort()
    if (ahead) {
      const f = await ahead.promise.catch(() => undefined)
      // Its first range may still be faulting in; the map must not be dropped under it.
      await f?.background.pending
      await f?.close()
    }
    await this.warming
    for (const f of this.files) {
      await f.background.pending
      await f.close()
    }
    this.files = []
    this.io.reclaim()
  }
}
