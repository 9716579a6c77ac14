import * as path from 'node:path'
import { PREFAULT_UNSUPPORTED_ERRNO, type DataFile, type FileIO } from './file-io.js'
import { dataViewOf, offsetToFileName } from './format.js'

const EMPTY = Buffer.alloc(0)
const IDLE = Object.freeze({ idle: true, failed: false })
const BUSY = Object.freeze({ idle: false, failed: false })
const FAILED = Object.freeze({ idle: true, failed: true })

/**
 * One fixed-size data file, named by the offset of its first byte, mapped shared.
 * Positions are relative to the file: bytes [0, wrotePosition) are appended, [0,
 * committedPosition) have reached the OS (page cache), [0, flushedPosition) are on disk.
 */
export class MappedFile {
  wrotePosition = 0
  committedPosition = 0
  flushedPosition = 0
  /** Async flush, sparse file: [0, prefaultedTo) is faulted into the map, safe to write through it. */
  prefaultedTo = 0
  /**
   * Background prefault (DataFile.prefaultViewAsync) of this file: the range end asked for last,
   * its progress cells ([0] end faulted in, [1] errno), and the call's promise.
   */
  prefaultAskedTo = 0
  readonly prefaultProgress = new Int32Array(new SharedArrayBuffer(8))
  prefaulting: Promise<unknown> | undefined
  /** DataView over the map, for encoding record headers in place. */
  dataView: DataView

  private constructor(
    readonly fileFromOffset: number,
    readonly file: DataFile,
    /** The mapping. Valid until close(); never hand it out beyond a call that holds the file open. */
    public view: Buffer,
  ) {
    this.dataView = dataViewOf(view)
  }

  get fileSize(): number {
    return this.file.size
  }

  get fileName(): string {
    return path.basename(this.file.path)
  }

  get path(): string {
    return this.file.path
  }

  static async open(io: FileIO, dir: string, fileFromOffset: number, writableMap: boolean): Promise<MappedFile> {
    const file = await io.open(path.join(dir, offsetToFileName(fileFromOffset)))
    try {
      return new MappedFile(fileFromOffset, file, file.map(writableMap))
    } catch (err) {
      await file.close()
      throw err
    }
  }

  /**
   * Starts faulting [from, to) in on the thread pool (the previous range must be done). A failure
   * shows in prefaultProgress[1].
   */
  prefaultInBackground(from: number, to: number): void {
    const progress = this.prefaultProgress
    this.prefaultAskedTo = to
    this.prefaulting = this.file.prefaultViewAsync(this.view, from, to - from, progress).then(
      (done) => {
        // Not possible here after all: count it as a failure, so the writer prefaults itself.
        if (!done && Atomics.load(progress, 0) < to) Atomics.store(progress, 1, PREFAULT_UNSUPPORTED_ERRNO)
      },
      () => undefined,
    )
  }

  /**
   * Takes in what the background finished: true when it is idle (a failure is reported once,
   * as `failed`, and cleared).
   */
  collectPrefault(): { idle: boolean; failed: boolean } {
    const done = this.prefaultProgress[0]!
    if (done > this.prefaultedTo) this.prefaultedTo = done
    if (this.prefaultProgress[1] !== 0) {
      this.prefaultProgress[1] = 0
      this.prefaultAskedTo = 0
      return FAILED
    }
    return done >= this.prefaultAskedTo ? IDLE : BUSY
  }

  isFull(): boolean {
    return this.wrotePosition >= this.fileSize
  }

  /** Closes the file and drops every reference to the mapping, so the GC can unmap it. */
  close(): Promise<void> {
    this.view = EMPTY
    this.dataView = dataViewOf(EMPTY)
    return this.file.close()
  }
}
