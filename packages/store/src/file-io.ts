/**
 * Every byte the store reads or writes goes through this interface, so tests can swap in a
 * simulated disk (sim-file-io.ts) that tears writes, forgets unflushed bytes and runs out of space.
 *
 * Design (docs/design/mmap.md): data files are created at full size and mapped shared. Writes
 * reach the file either through the map (async flush: sparse file, every range prefaulted before
 * it is written) or through O_DSYNC pwrite (sync flush: zero-filled file, where one durable pwrite
 * measured far cheaper than dirtying the map and syncing it). Sync calls run on the thread pool.
 */
import { createRequire } from 'node:module'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import * as os from 'node:os'
import * as path from 'node:path'
import * as v8 from 'node:v8'
import * as vm from 'node:vm'
import type { BodyCopier } from './codec/index.js'
import { native, type NativeHelper } from './native.js'
import { ThreadDurableWriter, type DurableWriter, type DurableWriterEvents, type ThreadDurableWriterOptions, type WriterFaults } from './durable-writer.js'

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
  rename(from: string, to: string): Promise<void>
  /** fsync of a directory, so created, renamed and removed entries survive a power loss. */
  syncDir(dir: string): Promise<void>
  readFile(file: string): Promise<Buffer | undefined>
  /** Writes `data` to a temp file, syncs it, renames it over `file`, syncs the directory. */
  writeFileAtomic(file: string, data: Buffer): Promise<void>
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
  /**
   * Optional: a writer that makes sync-flush writes durable off the main thread. Without one the
   * CommitLog uses DataFile.writeDurable (the thread pool).
   */
  durableWriter?(events: DurableWriterEvents): DurableWriter
}

// ---------------------------------------------------------------------------------------------

interface MmapIo {
  map(size: number, protection: number, flags: number, fd: number, offset?: number, advise?: number): Buffer
  advise(buffer: Buffer, offset: number, length: number, advise: number): void
  PROT_READ: number
  PROT_WRITE: number
  MAP_SHARED: number
  MADV_DONTNEED: number
}

const require = createRequire(import.meta.url)
let mmapModule: MmapIo | undefined
function mmapIo(): MmapIo {
  mmapModule ??= require('@riaskov/mmap-io') as MmapIo
  return mmapModule
}

/** @riaskov/mmap-io takes sizes as a C int. */
export const MAX_MAP_BYTES = 2 ** 31 - 1
const ZERO_CHUNK_BYTES = 4 * 1024 * 1024
const WARM_CHUNK_BYTES = 4 * 1024 * 1024
let warmChunk: Buffer | undefined
/** Linux madvise advice (5.14+): fault pages in writable, as a write would. */
const MADV_POPULATE_WRITE = 23
const PAGE_BYTES = 4096
let populateWriteWorks: boolean | undefined

/** Probes MADV_POPULATE_WRITE once on a scratch mapping. */
function canPopulateWrite(): boolean {
  if (populateWriteWorks !== undefined) return populateWriteWorks
  populateWriteWorks = false
  if (process.platform !== 'linux') return false
  const probe = path.join(os.tmpdir(), `mqts-probe-${process.pid}-${Date.now()}`)
  let fd: number | undefined
  try {
    fd = fs.openSync(probe, 'w+')
    fs.ftruncateSync(fd, 4096)
    const m = mmapIo()
    const view = m.map(4096, m.PROT_READ | m.PROT_WRITE, m.MAP_SHARED, fd, 0)
    m.advise(view, 0, 4096, MADV_POPULATE_WRITE)
    populateWriteWorks = true
  } catch {
    populateWriteWorks = false
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
    fs.rmSync(probe, { force: true })
  }
  return populateWriteWorks
}
let zeroChunk: Buffer | undefined

/**
 * errno a background prefault reports in its progress cells when it could not run at all (no
 * helper after all): EOPNOTSUPP. The writer then faults the range in itself.
 */
const PREFAULT_UNSUPPORTED_ERRNO = 95

/**
 * A memmove of bytes into a Buffer over a SharedArrayBuffer (the sync-flush staging chunks):
 * V8 copies into shared memory with relaxed atomic moves, about 2.5x slower for a 1 KiB body
 * here. Undefined without the native helper (TypedArray#set is used then).
 */
export function sharedMemoryCopier(): BodyCopier | undefined {
  return native()?.copy
}
/** The native helper when MADV_POPULATE_WRITE works here (it runs it on the thread pool), else null. */
function backgroundPopulate(): NativeHelper | null {
  return canPopulateWrite() ? native() : null
}

/**
 * One range at a time of a map faulted in on the thread pool (DataFile.prefaultViewAsync), its
 * progress read from shared memory: the CommitLog's files and the ConsumeQueue windows keep one
 * each to stay ahead of their writer.
 */
export class BackgroundPrefault {
  private readonly cells = new Int32Array(new SharedArrayBuffer(8))
  private askedTo = 0
  /** Settles when the range under way is done (a closing file waits for it). */
  pending: Promise<unknown> | undefined

  /** Starts faulting [from, to) of `view` in; the previous range must be done (not busy). */
  start(file: DataFile, view: Buffer, from: number, to: number): void {
    const cells = this.cells
    this.askedTo = to
    this.pending = file.prefaultViewAsync(view, from, to - from, cells).then(
      (done) => {
        // Not possible here after all: count it as a failure, so the writer prefaults itself.
        if (!done && Atomics.load(cells, 0) < to) Atomics.store(cells, 1, PREFAULT_UNSUPPORTED_ERRNO)
      },
      () => undefined,
    )
  }

  /** End of the last range faulted in (view-relative; 0 before the first). */
  private get doneTo(): number {
    return this.cells[0]!
  }

  /** Whether the range asked for last is still under way. */
  private get busy(): boolean {
    return this.cells[0]! < this.askedTo && this.cells[1] === 0
  }

  /**
   * Moves `owner.prefaultedTo` up to what was faulted in, and says whether a range is still under
   * way ('busy'), the last one failed ('failed', reported once: a full disk; the next range may
   * start) or none is under way ('idle').
   */
  collect(owner: { prefaultedTo: number }): 'idle' | 'busy' | 'failed' {
    if (this.doneTo > owner.prefaultedTo) owner.prefaultedTo = this.doneTo
    if (this.takeFailure()) return 'failed'
    return this.busy ? 'busy' : 'idle'
  }

  /** True once after a range failed (a full disk): the failure is cleared, the next range may start. */
  private takeFailure(): boolean {
    if (this.cells[1] === 0) return false
    this.cells[1] = 0
    this.askedTo = 0
    return true
  }
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
    private readonly handle: fsp.FileHandle,
  ) {}

  map(writable: boolean, offset = 0, length = this.size - offset): Buffer {
    if (this.view) return this.view
    if (length > MAX_MAP_BYTES) throw new RangeError(`cannot map ${length} bytes (limit ${MAX_MAP_BYTES})`)
    if (offset % PAGE_BYTES !== 0) throw new RangeError(`map offset ${offset} is not page-aligned`)
    const m = mmapIo()
    const prot = writable ? m.PROT_READ | m.PROT_WRITE : m.PROT_READ
    this.view = m.map(length, prot, m.MAP_SHARED, this.handle.fd, offset)
    this.mapOffset = offset
    return this.view
  }

  mapMore(writable: boolean, offset: number, length: number): Buffer {
    if (this.closed) throw new Error(`${this.path} is closed`)
    if (offset % PAGE_BYTES !== 0) throw new RangeError(`map offset ${offset} is not page-aligned`)
    const m = mmapIo()
    const view = m.map(length, writable ? m.PROT_READ | m.PROT_WRITE : m.PROT_READ, m.MAP_SHARED, this.handle.fd, offset)
    ;(this.moreViews ??= []).push(view)
    return view
  }

  async read(target: Buffer, targetOffset: number, length: number, position: number): Promise<number> {
    let done = 0
    while (done < length) {
      const { bytesRead } = await this.handle.read(target, targetOffset + done, length - done, position + done)
      if (bytesRead <= 0) break
      done += bytesRead
    }
    return done
  }

  async write(source: Buffer, sourceOffset: number, length: number, position: number): Promise<void> {
    let done = 0
    while (done < length) {
      const { bytesWritten } = await this.handle.write(source, sourceOffset + done, length - done, position + done)
      if (bytesWritten <= 0) throw Object.assign(new Error(`short write to ${this.path}`), { code: 'EIO' })
      done += bytesWritten
    }
  }

  datasync(): Promise<void> {
    return this.handle.datasync()
  }

  async writeDurable(source: Buffer, sourceOffset: number, length: number, position: number): Promise<void> {
    this.dsync ??= fsp.open(this.path, fs.constants.O_RDWR | fs.constants.O_DSYNC)
    const handle = await this.dsync
    let done = 0
    while (done < length) {
      const { bytesWritten } = await handle.write(source, sourceOffset + done, length - done, position + done)
      if (bytesWritten <= 0) throw Object.assign(new Error(`short write to ${this.path}`), { code: 'EIO' })
      done += bytesWritten
    }
  }

  async warm(offset: number, length: number, signal?: AbortSignal): Promise<void> {
    warmChunk ??= Buffer.allocUnsafe(WARM_CHUNK_BYTES)
    const end = Math.min(this.size, offset + length)
    for (let at = offset; at < end && !this.closed && !signal?.aborted; at += WARM_CHUNK_BYTES) {
      // Only one warm runs at a time per queue; concurrent queues may share the scratch
      // buffer, which is fine: its contents are never used.
      await this.handle.read(warmChunk, 0, Math.min(WARM_CHUNK_BYTES, end - at), at)
    }
  }

  prefault(offset: number, length: number): boolean {
    if (!this.view) return false
    return this.prefaultView(this.view, offset - this.mapOffset, length)
  }

  prefaultView(view: Buffer, from: number, length: number): boolean {
    if (!canPopulateWrite()) return false
    const offset = from
    const end = Math.min(view.length, offset + length)
    if (end <= offset) return true
    const start = offset - (offset % PAGE_BYTES) // madvise wants a page-aligned start
    try {
      mmapIo().advise(view, start, end - start, MADV_POPULATE_WRITE)
    } catch (err) {
      // mmap-io reports "madvise() failed, <errno>". EFAULT/ENOMEM/ENOSPC here mean the fault
      // could not be served, on a sparse file almost always for want of space.
      const errno = Number(/(\d+)\s*$/.exec(String((err as Error).message))?.[1])
      throw Object.assign(new Error(`cannot fault in ${this.path} [${offset}, ${end}): ${(err as Error).message}`), {
        code: errno === 12 ? 'ENOMEM' : errno === 22 ? 'EINVAL' : 'ENOSPC',
        errno,
      })
    }
    return true
  }

  async prefaultViewAsync(view: Buffer, from: number, length: number, progress?: Int32Array): Promise<boolean> {
    const addon = backgroundPopulate()
    if (!addon) return false
    const end = Math.min(view.length, from + length)
    if (end <= from) {
      if (progress) Atomics.store(progress, 0, Math.max(Atomics.load(progress, 0), from))
      return true
    }
    try {
      await addon.populate(view, from, end - from, progress)
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

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.view) {
      // The mapping itself goes when the Buffer is collected; drop its pages now so a closed
      // file costs no resident memory meanwhile.
      try {
        mmapIo().advise(this.view, 0, this.view.length, mmapIo().MADV_DONTNEED)
      } catch {
        // advisory only
      }
      this.view = undefined
      pendingUnmaps++
    }
    for (const view of this.moreViews ?? []) {
      try {
        mmapIo().advise(view, 0, view.length, mmapIo().MADV_DONTNEED)
      } catch {
        // advisory only
      }
      pendingUnmaps++
    }
    this.moreViews = undefined
    const dsync = this.dsync
    this.dsync = undefined
    if (dsync) await (await dsync.catch(() => undefined))?.close()
    await this.handle.close()
  }
}

let pendingUnmaps = 0
let gcFunction: (() => void) | undefined | null

/**
 * Runs a full GC (exposing it at run time once), so Buffers of closed mappings are collected and
 * unmapped. False when the runtime refuses.
 */
export function forceGc(): boolean {
  if (gcFunction === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc')
      gcFunction = vm.runInNewContext('gc') as () => void
    } catch {
      gcFunction = null
    }
  }
  gcFunction?.()
  return gcFunction !== null
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

export interface NodeFileIOOptions {
  /** Sync flush through a dedicated writer thread (default true); false: the thread pool. */
  writerThread?: boolean
  /** Tests: make the writer thread fail a write or fdatasync. */
  writerFaults?: WriterFaults
  /** How long the writer thread polls for the next group after a write (DEFAULT_WRITER_SPIN_MICROS). */
  writerSpinMicros?: number
  /** How long the main thread polls for a completion, on every loop turn (DEFAULT_COMPLETION_POLL_MICROS); 0: not at all. */
  completionPollMicros?: number
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

export class NodeFileIO implements FileIO {
  readonly durableWriter: ((events: DurableWriterEvents) => DurableWriter) | undefined

  constructor(options: NodeFileIOOptions = {}) {
    const writerOptions: ThreadDurableWriterOptions = { copier: sharedMemoryCopier() }
    if (options.writerFaults) writerOptions.faults = options.writerFaults
    if (options.writerSpinMicros !== undefined) writerOptions.spinMicros = options.writerSpinMicros
    if (options.completionPollMicros !== undefined) writerOptions.pollMicros = options.completionPollMicros
    this.durableWriter = (options.writerThread ?? true) ? (events) => new ThreadDurableWriter(events, writerOptions) : undefined
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

  async rename(from: string, to: string): Promise<void> {
    await fsp.rename(from, to)
  }

  async syncDir(dir: string): Promise<void> {
    const handle = await fsp.open(dir, fs.constants.O_RDONLY)
    try {
      await handle.sync()
    } finally {
      await handle.close()
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

  async writeFileAtomic(file: string, data: Buffer): Promise<void> {
    const tmp = `${file}.tmp`
    const handle = await fsp.open(tmp, 'w')
    try {
      await handle.writeFile(data)
      await handle.datasync()
    } finally {
      await handle.close()
    }
    await fsp.rename(tmp, file)
    await this.syncDir(path.dirname(file))
  }

  async allocate(file: string, size: number, options: { zeroFill?: boolean; signal?: AbortSignal; durable?: boolean } = {}): Promise<void> {
    const durable = options.durable ?? true
    const tmp = `${file}.tmp`
    const handle = await fsp.open(tmp, 'w')
    try {
      if (options.zeroFill ?? true) {
        zeroChunk ??= Buffer.alloc(ZERO_CHUNK_BYTES)
        for (let at = 0; at < size; at += ZERO_CHUNK_BYTES) {
          options.signal?.throwIfAborted()
          const n = Math.min(ZERO_CHUNK_BYTES, size - at)
          let done = 0
          while (done < n) done += (await handle.write(zeroChunk, done, n - done, at + done)).bytesWritten
        }
      } else {
        await handle.truncate(size)
      }
      // A sparse file: fsync, so its size is on disk whatever the filesystem counts as data;
      // fdatasync of later writes into its holes then syncs their block allocation with them.
      if (durable) await ((options.zeroFill ?? true) ? handle.datasync() : handle.sync())
    } catch (err) {
      await handle.close().catch(() => {})
      await fsp.rm(tmp, { force: true })
      throw err
    }
    await handle.close()
    await fsp.rename(tmp, file)
    if (durable) await this.syncDir(path.dirname(file))
  }

  canPrefault(): boolean {
    return canPopulateWrite()
  }

  canPrefaultInBackground(): boolean {
    return backgroundPopulate() !== null
  }

  async open(file: string): Promise<DataFile> {
    const handle = await fsp.open(file, 'r+')
    const { size } = await handle.stat()
    return new NodeDataFile(file, size, handle)
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
