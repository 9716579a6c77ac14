/**
 * Shared memory maps of index files through `@riaskov/mmap-io`, with the same rules as the
 * store's CommitLog (docs/design/mmap.md): a mapping goes away only when V8 collects its Buffer,
 * so releasing one drops its pages (MADV_DONTNEED; the page cache keeps dirty ones), closes the
 * descriptor and drops every reference; `reclaimMappings()` then runs a full GC when some mapping
 * was released, so deleted files stop pinning disk space.
 *
 * Files are sparse. Bytes are only ever written through the map into ranges reserved first with
 * MADV_POPULATE_WRITE (Linux 5.14+) or, without it, with a pwrite of zeros, so a full disk is an
 * ENOSPC error from that call and never a SIGBUS.
 */
import * as fs from 'node:fs'
import { MADV_POPULATE_WRITE, MAX_MAP_BYTES, PAGE_BYTES, canPopulateWrite, forceGc, mmapErrno, mmapIo } from '@mqts/common'

export { MAX_MAP_BYTES, PAGE_BYTES, canPopulateWrite, forceGc, setPopulateWriteForTests } from '@mqts/common'

const ZERO_CHUNK_BYTES = 1024 * 1024
let zeroChunk: Buffer | undefined

/**
 * Released mappings not unmapped yet. The unmap happens in a finalizer that runs on the event
 * loop after the GC collected the Buffer, so a synchronous burst of queries over more files than
 * stay mapped would let released mappings pile up (the kernel's map count limit, 65,530 by
 * default, then fails mmap with ENOMEM). Every GC_EVERY releases a GC runs; past MAX_BACKLOG the
 * service reads unmapped files with pread instead of mapping them, until the event loop turns.
 */
let backlog = 0
export const GC_EVERY_RELEASES = 256
export const MAX_BACKLOG = 4096
const unmapped = new FinalizationRegistry<{ released: boolean }>((state) => {
  if (state.released) backlog--
})
/** A full GC when some released mapping is still waiting for one. */
export function reclaimMappings(): void {
  if (backlog > 0) forceGc()
}

let reclaimScheduled = false

/**
 * `reclaimMappings()` on the next turn of the event loop. A GC run right where a mapping was
 * dropped may still find it reachable from the frame that made it (measured: a file whose
 * creation failed kept its blocks until a later GC).
 */
export function reclaimMappingsSoon(): void {
  if (reclaimScheduled) return
  reclaimScheduled = true
  setImmediate(() => {
    reclaimScheduled = false
    reclaimMappings()
  }).unref()
}

/** Released mappings whose unmap has not run yet. */
export function mappingBacklog(): number {
  return backlog
}

/** One index file opened read-write and mapped whole, shared. */
export class Mapping {
  readonly buffer: Buffer
  readonly view: DataView
  private readonly state = { released: false }

  private constructor(
    readonly file: string,
    readonly fd: number,
    readonly size: number,
  ) {
    const m = mmapIo()
    this.buffer = m.map(size, m.PROT_READ | m.PROT_WRITE, m.MAP_SHARED, fd, 0)
    this.view = new DataView(this.buffer.buffer, this.buffer.byteOffset, this.buffer.byteLength)
    unmapped.register(this.buffer, this.state)
  }

  /** Opens and maps an existing file; throws the OS error. */
  static open(file: string, size: number): Mapping {
    if (size > MAX_MAP_BYTES) throw new RangeError(`cannot map ${size} bytes (limit ${MAX_MAP_BYTES})`)
    const fd = fs.openSync(file, 'r+')
    try {
      return new Mapping(file, fd, size)
    } catch (err) {
      fs.closeSync(fd)
      throw err
    }
  }

  /**
   * Reserves [offset, offset + length) for writes through the map: faults the pages in writable
   * (which allocates the file's blocks), or writes zeros there when the kernel cannot, unless the
   * range `holdsData`. Throws the OS error, ENOSPC on a full disk.
   */
  reserve(offset: number, length: number, holdsData = false): void {
    const end = Math.min(this.size, offset + length)
    if (end <= offset) return
    if (canPopulateWrite()) {
      const start = offset - (offset % PAGE_BYTES)
      try {
        mmapIo().advise(this.buffer, start, end - start, MADV_POPULATE_WRITE)
      } catch (err) {
        // mmap-io reports "madvise() failed, <errno>"; EFAULT/ENOSPC here mean no space.
        const errno = mmapErrno(err)
        throw Object.assign(new Error(`cannot reserve ${this.file} [${offset}, ${end}): ${(err as Error).message}`), {
          code: errno === 12 ? 'ENOMEM' : errno === 22 ? 'EINVAL' : 'ENOSPC',
          errno,
        })
      }
      return
    }
    // Without MADV_POPULATE_WRITE: allocate the blocks with zeros where nothing was written yet.
    // A range that holds data (`holdsData`) got its blocks when it was first reserved.
    if (holdsData) return
    zeroChunk ??= Buffer.alloc(ZERO_CHUNK_BYTES)
    for (let at = offset; at < end; ) {
      const n = Math.min(ZERO_CHUNK_BYTES, end - at)
      const written = fs.writeSync(this.fd, zeroChunk, 0, n, at)
      if (written <= 0) throw Object.assign(new Error(`short write to ${this.file}`), { code: 'EIO' })
      at += written
    }
  }

  /** fdatasync on the thread pool: makes every page dirtied through the map durable. */
  datasync(): Promise<void> {
    return new Promise((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())))
  }

  /** Drops the pages from this process, closes the descriptor and leaves the Buffer to the GC. */
  release(): void {
    if (this.state.released) return
    this.state.released = true
    backlog++
    try {
      mmapIo().advise(this.buffer, 0, this.size, mmapIo().MADV_DONTNEED)
    } catch {
      // advisory only
    }
    try {
      fs.closeSync(this.fd)
    } catch {
      // already closed
    }
    if (backlog % GC_EVERY_RELEASES === 0) forceGc()
  }
}

/**
 * Creates `file` of `size` bytes, sparse: under a temp name, then renamed, so a file with its
 * final name always has its full size. The directory is synced later (by the next flush).
 */
export function createSparseFile(file: string, size: number): void {
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

/** fsync of a directory, so created, renamed and removed entries survive a power loss. */
export function syncDirSync(dir: string): void {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY)
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/** fdatasync of a file that is not mapped now (the page cache still holds its dirty pages). */
export function datasyncPath(file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.open(file, 'r+', (err, fd) => {
      if (err) return reject(err)
      fs.fdatasync(fd, (syncErr) => fs.close(fd, () => (syncErr ? reject(syncErr) : resolve())))
    })
  })
}
