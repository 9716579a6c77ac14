/**
 * The store's side of the file seam (`FileIO` and `DataFile` in @mqts/common, shared with the key
 * index): the real disk gets the native helper's background prefault and the sync flush's writer
 * thread; the simulated disk (SimFileIO) has neither and runs every path on the main thread.
 *
 * Design (docs/design/mmap.md): data files are created at full size and mapped shared. Writes
 * reach the file either through the map (async flush: sparse file, every range prefaulted before
 * it is written) or through O_DSYNC pwrite (sync flush: zero-filled file, where one durable pwrite
 * measured far cheaper than dirtying the map and syncing it). Sync calls run on the thread pool.
 */
import { NodeFileIO as PlainNodeFileIO, type DataFile, type FileIO as CommonFileIO } from '@mqts/common'
import type { BodyCopier } from './codec/index.js'
import { native } from './native.js'
import { ThreadDurableWriter, type DurableWriter, type DurableWriterEvents, type ThreadDurableWriterOptions, type WriterFaults } from './durable-writer.js'

export { MAX_MAP_BYTES, forceGc, reclaimMappings, type DataFile, type DiskUsage } from '@mqts/common'

export interface FileIO extends CommonFileIO {
  /**
   * Optional: a writer that makes sync-flush writes durable off the main thread. Without one the
   * CommitLog uses DataFile.writeDurable (the thread pool).
   */
  durableWriter?(events: DurableWriterEvents): DurableWriter
}

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

export class NodeFileIO extends PlainNodeFileIO implements FileIO {
  readonly durableWriter: ((events: DurableWriterEvents) => DurableWriter) | undefined

  constructor(options: NodeFileIOOptions = {}) {
    super({ populator: native, seeker: native })
    const writerOptions: ThreadDurableWriterOptions = { copier: sharedMemoryCopier() }
    if (options.writerFaults) writerOptions.faults = options.writerFaults
    if (options.writerSpinMicros !== undefined) writerOptions.spinMicros = options.writerSpinMicros
    if (options.completionPollMicros !== undefined) writerOptions.pollMicros = options.completionPollMicros
    this.durableWriter = (options.writerThread ?? true) ? (events) => new ThreadDurableWriter(events, writerOptions) : undefined
  }
}
