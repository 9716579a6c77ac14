import * as path from 'node:path'
import { BackgroundPrefault, type DataFile, type FileIO } from './file-io.js'
import { dataViewOf, offsetToFileName } from './codec/index.js'

const EMPTY = Buffer.alloc(0)
/** The OS page: the unit of dirty-page counts, prefault and hole checks. */
export const OS_PAGE_BYTES = 4096

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
  /** Background prefault of this file (async flush with the native helper). */
  readonly background = new BackgroundPrefault()
  /** DataView over the map, for encoding record headers in place. */
  dataView: DataView
  /** An fdatasync started by syncInBackground: close waits for it. */
  private syncing: Promise<unknown> | undefined

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

  isFull(): boolean {
    return this.wrotePosition >= this.fileSize
  }

  /**
   * An fdatasync of the file on the thread pool, started once `after` settles, and answered
   * (rejects with the OS error): recovery has what a killed process wrote reach the disk while
   * it reads the records, one file at a time, so the syncs hold one thread of the pool and the
   * re-dispatch's file opens do not queue behind them.
   */
  syncInBackground(after?: Promise<unknown>): Promise<void> {
    const sync = after ? after.catch(() => undefined).then(() => this.file.datasync()) : this.file.datasync()
    this.syncing = sync.catch(() => undefined)
    return sync
  }

  /**
   * Closes the file (once a sync started in the background is done: its descriptor must not
   * go, or be reused, under it) and drops every reference to the mapping, so the GC can unmap it.
   */
  close(): Promise<void> {
    this.view = EMPTY
    this.dataView = dataViewOf(EMPTY)
    const syncing = this.syncing
    this.syncing = undefined
    return syncing ? syncing.then(() => this.file.close()) : this.file.close()
  }
}
