/**
 * The file seam: every byte the store and the key index read or write goes through `FileIO`, so
 * tests can swap in a simulated disk (sim-file-io.ts) that tears writes, forgets unflushed bytes
 * and runs out of space.
 *
 * Design (docs/design/mmap.md): data files are created at full size and mapped shared. Writes
 * reach the file either through the map (sparse file, every range faulted in or reserved before
 * it is written) or through pwrite (O_DSYNC for the store's sync flush). Async calls run on the
 * thread pool; the synchronous ones serve callers that cannot await (the index's put and query).
 */
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as path from 'node:path'
import { MADV_POPULATE_WRITE, MAX_MAP_BYTES, PAGE_BYTES, canPopulateWrite, forceGc, mmapErrno, mmapIo } from './mmap.js'

export interface DataFile {
  readonly path: string
  readonly size: number
  /**
   * Maps the file shared (or `length` bytes from `offset`, page-aligned); writable only if asked.
   * The view is valid until `close()`. One mapping per DataFile.
   */
  map(writable: boolean, offset?: number, length?: number): Buffer
  /**
   * Another mapping of [offset, offset + length) through the same descriptor, made at once (no
   * thread-pool round trip). Valid until `close()`, like the first.
   */
  mapMore(writable: boolean, offset: number, length: number): Buffer
  /** As prefault, for [from, from + length) of a mapping made by mapMore (view-relative). */
  prefaultView(view: Buffer, from: number, length: number): boolean
  /**
   * As prefaultView (`view` is this file's map or one made by mapMore), on the thread pool: the
   * page allocation and block reservation cost the caller's thread nothing. Faulting in changes
   * no byte, so the caller may keep writing the view meanwhile. Resolves false when it cannot be
   * done in the background here (see FileIO.canPrefaultInBackground); rejects with the OS error.
   * `progress` (Int32Array over a SharedArrayBuffer) gets from + length in [0] the moment the
   * range is faulted in, or the errno in [1]: a caller that keeps the event loop busy (a loop of
   * awaits on resolved promises) polls it, since the promise settles only when the loop turns.
   */
  prefaultViewAsync(view: Buffer, from: number, length: number, progress?: Int32Array): Promise<boolean>
  /**
   * pread into `target` (fewer bytes only at the end of the file). Unlike a read through the map
   * it never allocates: on tmpfs a read fault on a hole takes a page, and SIGBUS when none is left.
   */
  read(target: Buffer, targetOffset: number, length: number, position: number): Promise<number>
  /** pwrite of `length` bytes of `source` from `sourceOffset` at `position`; loops on short writes. */
  write(source: Buffer, sourceOffset: number, length: number, position: number): Promise<void>
  /** As write, blocking (small writes, where a thread-pool round trip costs more than the copy). */
  writeSync(source: Buffer, sourceOffset: number, length: number, position: number): void
  /** fdatasync. */
  datasync(): Promise<void>
  /**
   * pwrite through a second descriptor opened O_DSYNC: the bytes are on disk when it resolves,
   * in one thread-pool round trip instead of two (write, then fdatasync).
   */
  writeDurable(source: Buffer, sourceOffset: number, length: number, position: number): Promise<void>
  /**
   * Faults [offset, offset + length) of the writable map in, writable (MADV_POPULATE_WRITE), so
   * appends take no page faults and the blocks of a sparse file are reserved before any byte is
   * written through the map. Returns false when the platform cannot; throws the OS error (ENOSPC
   * for a full disk) when it can but failed.
   */
  prefault(offset: number, length: number): boolean
  /**
   * Reads [offset, offset + length) through the descriptor on the thread pool and throws the bytes
   * away: the pages land in the page cache (holes of a sparse file as clean zero pages), so a
   * later prefault of the map is cheap and costs the main thread no page allocation.
   */
  warm(offset: number, length: number, signal?: AbortSignal): Promise<void>
  /** Drops the mapping's pages from this process (the file keeps them) and closes the descriptor. */
  close(): Promise<void>
  // Synchronous calls, for callers that cannot await: the key index maps, reserves, reads and
  // lets go of its files inside its synchronous put, query and rollback.
  /** As read, blocking. */
  readSync(target: Buffer, targetOffset: number, length: number, position: number): number
  /**
   * Reserves [offset, offset + length) of the map for writes through it: faults it in writable
   * (prefault) or, where that cannot be done, pwrites zeros there unless the range `holdsData`
   * (it got its blocks when it was first reserved). Throws the OS error, ENOSPC on a full disk.
   */
  reserve(offset: number, length: number, holdsData?: boolean): void
  /** As close, blocking. */
  closeSync(): void
  /**
   * Optional: the regions of the file that hold data, [start, end) in ascending order, as the
   * file system reports them (SEEK_DATA/SEEK_HOLE); every byte outside them reads as zero.
   * Undefined when not known here: then any byte may hold data.
   */
  dataRegions?(): Array<[number, number]> | undefined
}

export interface DiskUsage {
  totalBytes: number
  usedBytes: number
  freeBytes: number
}

export interface FileIO {
  /**
   * Creates `dir` and any missing parents. Durably unless `durable: false`: the parent of each new
   * directory is synced, so the new entries survive a power loss (the caller that skips it syncs
   * those parents itself before it relies on them).
   */
  mkdirp(dir: string, options?: { durable?: boolean }): Promise<void>
  /** Entry names, or [] when the directory does not exist. */
  list(dir: string): Promise<string[]>
  /** Size in bytes, or undefined when the file does not exist. */
  size(file: string): Promise<number | undefined>
  exists(file: string): Promise<boolean>
  /** Removes a file; a missing file is not an error. */
  remove(file: string): Promise<void>
  /** Removes an empty directory; a missing one is not an error. Durable once its parent is synced. */
  removeDir(dir: string): Promise<void>
  rename(from: string, to: string): Promise<void>
  /** fsync of a directory, so created, renamed and removed entries survive a power loss. */
  syncDir(dir: string): Promise<void>
  readFile(file: string): Promise<Buffer | undefined>
  /**
   * Writes `data` to a temp file (`file`.tmp unless `temp` names another), syncs it, renames it
   * over `file`, syncs the directory. `mayReplace` is asked just before the rename, in the same
   * synchronous step: when it answers false the temp file goes and nothing is replaced. Resolves
   * whether `file` was replaced.
   */
  writeFileAtomic(file: string, data: Buffer, options?: { temp?: string; mayReplace?: () => boolean }): Promise<boolean>
  /**
   * Creates `file` of `size` zero bytes, durably (temp name, sync, rename, directory sync).
   * `zeroFill`: the zeros are written, so later pwrites cannot hit ENOSPC and fdatasync has no
   * block allocation to journal. Otherwise the file is sparse: only a writer that prefaults
   * every range before writing it through the map may use it. `signal` stops a zero fill early.
   * `durable: false` skips the syncs (the caller syncs the directory later, before it relies on
   * the file): for derived files created on the hot path.
   */
  allocate(file: string, size: number, options?: { zeroFill?: boolean; signal?: AbortSignal; durable?: boolean }): Promise<void>
  /** Whether DataFile.prefault works here (Linux 5.14+), so sparse files are safe to map-write. */
  canPrefault(): boolean
  /** Whether DataFile.prefaultViewAsync works here (the native helper was built). */
  canPrefaultInBackground(): boolean
  /** Opens an existing file for reading and writing. */
  open(file: string): Promise<DataFile>
  /** Lets go of address space held by mappings that were closed (see docs/design/mmap.md). */
  reclaim(): void
  /** Last modification time in ms, or undefined when the file does not exist. */
  modifiedMs(file: string): Promise<number | undefined>
  /**
   * The file system holding `dir`, as `df` sees it: `usedBytes` in use (blocks less free blocks),
   * `freeBytes` available to this process (reserved blocks excluded), `totalBytes` its size.
   */
  diskUsage(dir: string): Promise<DiskUsage>
  // Synchronous calls, for callers that cannot await (the key index, see DataFile).
  /** As open, blocking. */
  openSync(file: string): DataFile
  /** A sparse file of `size` bytes, made under a temp name and renamed; not durable (the caller syncs the directory). */
  allocateSparseSync(file: string, size: number): void
  removeSync(file: string): void
  renameSync(from: string, to: string): void
  syncDirSync(dir: string): void
  /** As writeFileAtomic, blocking. */
  writeFileAtomicSync(file: string, data: Buffer, options?: { temp?: string }): void
}

// ---------------------------------------------------------------------------------------------

/** Faults ranges of a map in writable on another thread (the store's native helper). */
export interface BackgroundPopulator {
  populate(view: Buffer, offset: number, length: number, progress?: Int32Array): Promise<void>
}

/** lseek with SEEK_DATA or SEEK_HOLE (the store's native helper): the offset, -1 when no data follows. */
export interface DataSeeker {
  seekData?(fd: number, offset: number, hole: boolean): number
}

const ZERO_CHUNK_BYTES = 4 * 1024 * 1024
const WARM_CHUNK_BYTES = 4 * 1024 * 1024
let warmChunk: Buffer | undefined
let zeroChunk: Buffer | undefined

function zeros(): Buffer {
  zeroChunk ??= Buffer.alloc(ZERO_CHUNK_BYTES)
  return zeroChunk
}

function pread(fd: number, target: Buffer, targetOffset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, target, targetOffset, length, position, (err, n) => (err ? reject(err) : resolve(n))))
}

function pwrite(fd: number, source: Buffer, sourceOffset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, source, sourceOffset, length, position, (err, n) => (err ? reject(err) : resolve(n))))
}

function shortWrite(file: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`short write to ${file}`), { code: 'EIO' })
}

/** pwrite of all `length` bytes, looping on short writes. */
async function writeAll(fd: number, file: string, source: Buffer, sourceOffset: number, length: number, position: number): Promise<void> {
  for (let done = 0; done < length; ) {
    const n = await pwrite(fd, source, sourceOffset + done, length - done, position + done)
    if (n <= 0) throw shortWrite(file)
    done += n
  }
}

function writeAllSync(fd: number, file: string, source: Buffer, sourceOffset: number, length: number, position: number): void {
  for (let done = 0; done < length; ) {
    const n = fs.writeSync(fd, source, sourceOffset + done, length - done, position + done)
    if (n <= 0) throw shortWrite(file)
    done += n
  }
}

/** A failed madvise(MADV_POPULATE_WRITE) as an OS error: on a sparse file almost always no space. */
function faultInError(file: string, from: number, end: number, err: unknown): NodeJS.ErrnoException {
  // mmap-io reports "madvise() failed, <errno>". EFAULT/ENOMEM/ENOSPC here mean the fault could
  // not be served, on a sparse file almost always for want of space.
  const errno = mmapErrno(err)
  return Object.assign(new Error(`cannot fault in ${file} [${from}, ${end}): ${(err as Error).message}`), {
    code: errno === 12 ? 'ENOMEM' : errno === 22 ? 'EINVAL' : 'ENOSPC',
    errno,
  })
}

let pendingUnmaps = 0

/** Drops a closed mapping's pages now; the mapping itself goes when V8 collects the Buffer. */
function dropPages(view: Buffer): void {
  try {
    mmapIo().advise(view, 0, view.length, mmapIo().MADV_DONTNEED)
  } catch {
    // advisory only
  }
  pendingUnmaps++
}

class NodeDataFile implements DataFile {
  private view: Buffer | undefined
  /** File offset of view[0]. */
  private mapOffset = 0
  /** Mappings made by mapMore. */
  private moreViews: Buffer[] | undefined
  private closed = false
  private dsync: Promise<fsp.FileHandle> | undefined

  constructor(
    readonly path: string,
    readonly size: number,
    private readonly fd: number,
    private readonly populator: () => BackgroundPopulator | null,
    private readonly seeker: () => DataSeeker | null = () => null,
  ) {}

  dataRegions(): Array<[number, number]> | undefined {
    const seek = this.seeker()?.seekData
    if (!seek || this.closed) return undefined
    const regions: Array<[number, number]> = []
    try {
      for (let at = 0; at < this.size; ) {
        const start = seek(this.fd, at, false)
        if (start < 0 || start >= this.size) break
        const end = Math.min(this.size, seek(this.fd, start, true))
        // A file system without holes reports the whole file as one region; one that answers
        // nonsense is not trusted.
        if (!(end > start)) return undefined
        regions.push([start, end])
        at = end
      }
    } catch {
      // Not supported here (EINVAL): every byte may hold data.
      return undefined
    }
    return regions
  }

  map(writable: boolean, offset = 0, length = this.size - offset): Buffer {
    if (this.view) return this.view
    if (length > MAX_MAP_BYTES) throw new RangeError(`cannot map ${length} bytes (limit ${MAX_MAP_BYTES})`)
    if (offset % PAGE_BYTES !== 0) throw new RangeError(`map offset ${offset} is not page-aligned`)
    const m = mmapIo()
    const prot = writable ? m.PROT_READ | m.PROT_WRITE : m.PROT_READ
    this.view = m.map(length, prot, m.MAP_SHARED, this.fd, offset)
    this.mapOffset = offset
    return this.view
  }

  mapMore(writable: boolean, offset: number, length: number): Buffer {
    if (this.closed) throw new Error(`${this.path} is closed`)
    if (offset % PAGE_BYTES !== 0) throw new RangeError(`map offset ${offset} is not page-aligned`)
    const m = mmapIo()
    const view = m.map(length, writable ? m.PROT_READ | m.PROT_WRITE : m.PROT_READ, m.MAP_SHARED, this.fd, offset)
    ;(this.moreViews ??= []).push(view)
    return view
  }

  async read(target: Buffer, targetOffset: number, length: number, position: number): Promise<number> {
    let done = 0
    while (done < length) {
      const n = await pread(this.fd, target, targetOffset + done, length - done, position + done)
      if (n <= 0) break
      done += n
    }
    return done
  }

  readSync(target: Buffer, targetOffset: number, length: number, position: number): number {
    let done = 0
    while (done < length) {
      const n = fs.readSync(this.fd, target, targetOffset + done, length - done, position + done)
      if (n <= 0) break
      done += n
    }
    return done
  }

  write(source: Buffer, sourceOffset: number, length: number, position: number): Promise<void> {
    return writeAll(this.fd, this.path, source, sourceOffset, length, position)
  }

  writeSync(source: Buffer, sourceOffset: number, length: number, position: number): void {
    writeAllSync(this.fd, this.path, source, sourceOffset, length, position)
  }

  datasync(): Promise<void> {
    return new Promise((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())))
  }

  async writeDurable(source: Buffer, sourceOffset: number, length: number, position: number): Promise<void> {
    this.dsync ??= fsp.open(this.path, fs.constants.O_RDWR | fs.constants.O_DSYNC)
    const handle = await this.dsync
    let done = 0
    while (done < length) {
      const { bytesWritten } = await handle.write(source, sourceOffset + done, length - done, position + done)
      if (bytesWritten <= 0) throw shortWrite(this.path)
      done += bytesWritten
    }
  }

  async warm(offset: number, length: number, signal?: AbortSignal): Promise<void> {
    warmChunk ??= Buffer.allocUnsafe(WARM_CHUNK_BYTES)
    const end = Math.min(this.size, offset + length)
    for (let at = offset; at < end && !this.closed && !signal?.aborted; at += WARM_CHUNK_BYTES) {
      // Concurrent warms may share the scratch buffer, which is fine: its contents are never used.
      await pread(this.fd, warmChunk, 0, Math.min(WARM_CHUNK_BYTES, end - at), at)
    }
  }

  prefault(offset: number, length: number): boolean {
    if (!this.view) return false
    return this.prefaultView(this.view, offset - this.mapOffset, length)
  }

  prefaultView(view: Buffer, from: number, length: number): boolean {
    if (!canPopulateWrite()) return false
    const end = Math.min(view.length, from + length)
    if (end <= from) return true
    const start = from - (from % PAGE_BYTES) // madvise wants a page-aligned start
    try {
      mmapIo().advise(view, start, end - start, MADV_POPULATE_WRITE)
    } catch (err) {
      throw faultInError(this.path, from, end, err)
    }
    return true
  }

  reserve(offset: number, length: number, holdsData = false): void {
    if (this.prefault(offset, length)) return
    if (holdsData) return
    const end = Math.min(this.size, offset + length)
    for (let at = offset; at < end; at += ZERO_CHUNK_BYTES) writeAllSync(this.fd, this.path, zeros(), 0, Math.min(ZERO_CHUNK_BYTES, end - at), at)
  }

  async prefaultViewAsync(view: Buffer, from: number, length: number, progress?: Int32Array): Promise<boolean> {
    const helper = canPopulateWrite() ? this.populator() : null
    if (!helper) return false
    const end = Math.min(view.length, from + length)
    if (end <= from) {
      if (progress) Atomics.store(progress, 0, Math.max(Atomics.load(progress, 0), from))
      return true
    }
    try {
      await helper.populate(view, from, end - from, progress)
    } catch (err) {
      // The pool thread set progress[1] already; an error before it ran did not.
      if (progress && Atomics.load(progress, 1) === 0) Atomics.store(progress, 1, (err as NodeJS.ErrnoException).errno ?? 22)
      if (err instanceof RangeError) throw err
      const e = err as NodeJS.ErrnoException
      const code = e.code === 'ENOMEM' || e.code === 'EINVAL' ? e.code : 'ENOSPC'
      throw Object.assign(new Error(`cannot fault in ${this.path} [${from}, ${end}): ${e.message}`), { code, errno: e.errno })
    }
    return true
  }

  /** Lets go of the mappings; true when there was a descriptor left to close. */
  private release(): boolean {
    if (this.closed) return false
    this.closed = true
    // The mappings go when their Buffers are collected; their pages go now, so a closed file
    // costs no resident memory meanwhile.
    if (this.view) dropPages(this.view)
    this.view = undefined
    for (const view of this.moreViews ?? []) dropPages(view)
    this.moreViews = undefined
    return true
  }

  async close(): Promise<void> {
    if (!this.release()) return
    const dsync = this.dsync
    this.dsync = undefined
    if (dsync) await (await dsync.catch(() => undefined))?.close()
    await new Promise<void>((resolve, reject) => fs.close(this.fd, (err) => (err ? reject(err) : resolve())))
  }

  closeSync(): void {
    if (!this.release()) return
    const dsync = this.dsync
    this.dsync = undefined
    // Rare (the O_DSYNC descriptor of the store's sync flush): closed in the background.
    if (dsync) void dsync.then((h) => h.close()).catch(() => undefined)
    fs.closeSync(this.fd)
  }
}

/**
 * Runs a full GC so that mappings of closed files are unmapped (and deleted files stop pinning
 * disk space). Only when some mapping was closed since the last call.
 */
export function reclaimMappings(): void {
  if (pendingUnmaps === 0) return
  pendingUnmaps = 0
  forceGc()
}

export interface PlainNodeFileIOOptions {
  /** Faults ranges in on another thread (DataFile.prefaultViewAsync); without it that is not possible here. */
  populator?: () => BackgroundPopulator | null
  /** Finds the holes of sparse files (DataFile.dataRegions); without it they are not known. */
  seeker?: () => DataSeeker | null
}

/** stat, or undefined when the file does not exist. */
async function statOrUndefined(file: string): Promise<fs.Stats | undefined> {
  try {
    return await fsp.stat(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** The real disk through node:fs. The store adds its writer thread and native helper (its NodeFileIO). */
export class NodeFileIO implements FileIO {
  private readonly populator: () => BackgroundPopulator | null
  private readonly seeker: () => DataSeeker | null

  constructor(options: PlainNodeFileIOOptions = {}) {
    this.populator = options.populator ?? (() => null)
    this.seeker = options.seeker ?? (() => null)
  }

  async mkdirp(dir: string, options: { durable?: boolean } = {}): Promise<void> {
    const target = path.resolve(dir)
    const firstCreated = await fsp.mkdir(target, { recursive: true })
    if (firstCreated === undefined || options.durable === false) return
    // A new directory's entry lives in its parent: sync each parent, deepest first.
    for (let d = target; ; d = path.dirname(d)) {
      await this.syncDir(path.dirname(d))
      if (d === firstCreated || path.dirname(d) === d) break
    }
  }

  async list(dir: string): Promise<string[]> {
    try {
      return await fsp.readdir(dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw err
    }
  }

  async size(file: string): Promise<number | undefined> {
    return (await statOrUndefined(file))?.size
  }

  async exists(file: string): Promise<boolean> {
    return (await this.size(file)) !== undefined
  }

  async remove(file: string): Promise<void> {
    await fsp.rm(file, { force: true })
  }

  removeSync(file: string): void {
    fs.rmSync(file, { force: true })
  }

  async removeDir(dir: string): Promise<void> {
    try {
      await fsp.rmdir(dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }

  async rename(from: string, to: string): Promise<void> {
    await fsp.rename(from, to)
  }

  renameSync(from: string, to: string): void {
    fs.renameSync(from, to)
  }

  async syncDir(dir: string): Promise<void> {
    const handle = await fsp.open(dir, fs.constants.O_RDONLY)
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  }

  syncDirSync(dir: string): void {
    const fd = fs.openSync(dir, fs.constants.O_RDONLY)
    try {
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
  }

  async readFile(file: string): Promise<Buffer | undefined> {
    try {
      return await fsp.readFile(file)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  async writeFileAtomic(file: string, data: Buffer, options: { temp?: string; mayReplace?: () => boolean } = {}): Promise<boolean> {
    const tmp = options.temp ?? `${file}.tmp`
    const handle = await fsp.open(tmp, 'w')
    try {
      await handle.writeFile(data)
      await handle.datasync()
    } finally {
      await handle.close()
    }
    if (options.mayReplace && !options.mayReplace()) {
      await fsp.rm(tmp, { force: true })
      return false
    }
    // In the step that asked mayReplace: nothing runs between the answer and the rename.
    fs.renameSync(tmp, file)
    await this.syncDir(path.dirname(file))
    return true
  }

  writeFileAtomicSync(file: string, data: Buffer, options: { temp?: string } = {}): void {
    const tmp = options.temp ?? `${file}.tmp`
    const fd = fs.openSync(tmp, 'w')
    try {
      writeAllSync(fd, tmp, data, 0, data.length, 0)
      fs.fdatasyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    fs.renameSync(tmp, file)
    this.syncDirSync(path.dirname(file))
  }

  async allocate(file: string, size: number, options: { zeroFill?: boolean; signal?: AbortSignal; durable?: boolean } = {}): Promise<void> {
    const durable = options.durable ?? true
    const zeroFill = options.zeroFill ?? true
    const tmp = `${file}.tmp`
    const handle = await fsp.open(tmp, 'w')
    try {
      if (zeroFill) {
        for (let at = 0; at < size; at += ZERO_CHUNK_BYTES) {
          options.signal?.throwIfAborted()
          const n = Math.min(ZERO_CHUNK_BYTES, size - at)
          let done = 0
          while (done < n) done += (await handle.write(zeros(), done, n - done, at + done)).bytesWritten
        }
      } else {
        await handle.truncate(size)
      }
      // A sparse file: fsync, so its size is on disk whatever the filesystem counts as data;
      // fdatasync of later writes into its holes then syncs their block allocation with them.
      if (durable) await (zeroFill ? handle.datasync() : handle.sync())
    } catch (err) {
      await handle.close().catch(() => {})
      await fsp.rm(tmp, { force: true })
      throw err
    }
    await handle.close()
    await fsp.rename(tmp, file)
    if (durable) await this.syncDir(path.dirname(file))
  }

  allocateSparseSync(file: string, size: number): void {
    const tmp = `${file}.tmp`
    const fd = fs.openSync(tmp, 'w+')
    try {
      fs.ftruncateSync(fd, size)
    } catch (err) {
      fs.closeSync(fd)
      fs.rmSync(tmp, { force: true })
      throw err
    }
    fs.closeSync(fd)
    fs.renameSync(tmp, file)
  }

  canPrefault(): boolean {
    return canPopulateWrite()
  }

  canPrefaultInBackground(): boolean {
    return canPopulateWrite() && this.populator() !== null
  }

  open(file: string): Promise<DataFile> {
    return new Promise((resolve, reject) =>
      fs.open(file, 'r+', (err, fd) => {
        if (err) return reject(err)
        fs.fstat(fd, (statErr, st) => {
          if (statErr) return fs.close(fd, () => reject(statErr))
          resolve(new NodeDataFile(file, st.size, fd, this.populator, this.seeker))
        })
      }),
    )
  }

  openSync(file: string): DataFile {
    const fd = fs.openSync(file, 'r+')
    try {
      return new NodeDataFile(file, fs.fstatSync(fd).size, fd, this.populator, this.seeker)
    } catch (err) {
      fs.closeSync(fd)
      throw err
    }
  }

  reclaim(): void {
    reclaimMappings()
  }

  async modifiedMs(file: string): Promise<number | undefined> {
    return (await statOrUndefined(file))?.mtimeMs
  }

  async diskUsage(dir: string): Promise<DiskUsage> {
    const s = await fsp.statfs(dir)
    return { totalBytes: s.blocks * s.bsize, usedBytes: (s.blocks - s.bfree) * s.bsize, freeBytes: s.bavail * s.bsize }
  }
}
