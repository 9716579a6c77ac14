/**
 * Shared memory maps of index files, made through the file seam (`FileIO` of @mqts/common: the
 * real disk or the simulated one), with the same rules as the store's CommitLog
 * (docs/design/mmap.md): a mapping goes away only when V8 collects its Buffer, so releasing one
 * drops its pages (the page cache keeps dirty ones), closes the descriptor and drops every
 * reference; `reclaimMappings()` then runs a full GC when some mapping was released, so deleted
 * files stop pinning disk space.
 *
 * Files are sparse. Bytes are only ever written through the map into ranges reserved first
 * (DataFile.reserve: MADV_POPULATE_WRITE, or a pwrite of zeros without it), so a full disk is an
 * ENOSPC error from that call and never a SIGBUS.
 */
import { MAX_MAP_BYTES, NodeFileIO, forceGc, type DataFile, type FileIO } from '@mqts/common'

export { MAX_MAP_BYTES, PAGE_BYTES, canPopulateWrite, forceGc, setPopulateWriteForTests } from '@mqts/common'

let realDisk: FileIO | undefined
/** The real disk, for an index opened without a `fileIO`. */
export function realFileIO(): FileIO {
  realDisk ??= new NodeFileIO()
  return realDisk
}

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

  private constructor(readonly file: DataFile) {
    this.buffer = file.map(true)
    this.view = new DataView(this.buffer.buffer, this.buffer.byteOffset, this.buffer.byteLength)
    unmapped.register(this.buffer, this.state)
  }

  get size(): number {
    return this.file.size
  }

  /** Opens and maps an existing file of `size` bytes; throws the OS error. */
  static open(io: FileIO, file: string, size: number): Mapping {
    if (size > MAX_MAP_BYTES) throw new RangeError(`cannot map ${size} bytes (limit ${MAX_MAP_BYTES})`)
    return Mapping.of(io.openSync(file), size)
  }

  /** Maps `file`, which must be `size` bytes (a shorter one would fault past its end); closes it on failure. */
  static of(file: DataFile, size: number): Mapping {
    try {
      if (file.size !== size) throw Object.assign(new Error(`${file.path} has ${file.size} bytes, expected ${size}`), { code: 'EINVAL' })
      return new Mapping(file)
    } catch (err) {
      file.closeSync()
      throw err
    }
  }

  /**
   * Reserves [offset, offset + length) for writes through the map (DataFile.reserve), unless
   * the kernel cannot fault pages in and the range `holdsData` already. Throws the OS error,
   * ENOSPC on a full disk.
   */
  reserve(offset: number, length: number, holdsData = false): void {
    this.file.reserve(offset, length, holdsData)
  }

  /** fdatasync on the thread pool: makes every page dirtied through the map durable. */
  datasync(): Promise<void> {
    return this.file.datasync()
  }

  /** Drops the pages from this process, closes the descriptor and leaves the Buffer to the GC. */
  release(): void {
    if (this.state.released) return
    this.state.released = true
    backlog++
    try {
      this.file.closeSync()
    } catch {
      // already closed
    }
    if (backlog % GC_EVERY_RELEASES === 0) forceGc()
  }
}

/** fdatasync of a file that is not mapped now (the page cache still holds its dirty pages). */
export async function datasyncPath(io: FileIO, file: string): Promise<void> {
  const f = await io.open(file)
  try {
    await f.datasync()
  } finally {
    await f.close()
  }
}
