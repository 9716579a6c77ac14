import { CHECKPOINT, ZERO_VALUES, checkpointState, decodeCheckpoint, encodeCheckpoint, type CheckpointValues } from './codec/checkpoint.js'
import type { DataFile, FileIO } from './file-io.js'


export class StoreCheckpoint {
  readonly values: CheckpointValues
  /** Set when the file's CRC did not match: the values read as 0 (see above). */
  damaged = false
  private readonly buffer = Buffer.alloc(CHECKPOINT.usedBytes)
  private writing: Promise<void> | undefined
  private dirty = false
  /** See holdWritesUntil. */
  private heldBy: Promise<void> | undefined

  private constructor(
    private readonly file: DataFile,
    values: CheckpointValues,
  ) {
    this.values = values
  }

  static async open(io: FileIO, filePath: string): Promise<StoreCheckpoint> {
    if (!(await io.exists(filePath))) await io.allocate(filePath, CHECKPOINT.fileBytes)
    const file = await io.open(filePath)
    const head = Buffer.alloc(CHECKPOINT.usedBytes)
    await file.read(head, 0, CHECKPOINT.usedBytes, 0)
    const state = checkpointState(head)
    const cp = new StoreCheckpoint(file, state === 'damaged' ? { ...ZERO_VALUES } : decodeCheckpoint(head))
    cp.damaged = state === 'damaged'
    return cp
  }

  /**
   * No write reaches the file before `sync` is done: recovery raises physicalFlushedOffset over
   * CommitLog bytes whose fdatasync is still under way, and the file must not say so before
   * they are on disk. When `sync` fails, every later write fails with its error.
   */
  holdWritesUntil(sync: Promise<void>): void {
    // Handled here: it may fail before anything writes (the writes get the error then).
    sync.catch(() => undefined)
    this.heldBy = sync
  }

  /** Settles when a sync given to holdWritesUntil is done (rejects when it failed). */
  async writable(): Promise<void> {
    if (this.heldBy) await this.heldBy
    this.heldBy = undefined
  }

  /** Writes the current values to the OS (not synced); coalesces concurrent calls. */
  write(): Promise<void> {
    this.dirty = true
    if (!this.writing) {
      this.writing = (async () => {
        try {
          await this.writable()
          while (this.dirty) {
            this.dirty = false
            encodeCheckpoint(this.buffer, this.values)
            await this.file.write(this.buffer, 0, CHECKPOINT.usedBytes, 0)
          }
        } finally {
          this.writing = undefined
        }
      })()
    }
    return this.writing
  }

  /** Writes and fdatasyncs the current values. */
  async flush(): Promise<void> {
    await this.write()
    await this.file.datasync()
  }

  close(): Promise<void> {
    return this.file.close()
  }
}
