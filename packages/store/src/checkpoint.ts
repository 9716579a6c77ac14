import type { DataFile, FileIO } from './file-io.js'
import { readI64, writeI64 } from './format.js'

/**
 * The `checkpoint` file, 4096 bytes, RocketMQ's StoreCheckpoint layout (big-endian longs):
 *
 * | 0 physicMsgTimestamp | 8 logicsMsgTimestamp | 16 indexMsgTimestamp | 24 masterFlushedOffset
 * | 32 confirmPhyOffset | 40 physicalFlushedOffset (mqts) | 48 logicsFlushedOffset (mqts) |
 *
 * physicalFlushedOffset is our addition (RocketMQ ignores bytes past 40): a CommitLog offset known
 * to be on disk. It is written only after the fdatasync that made it true, so it is a lower bound
 * of the durable data; recovery treats damage below it as corruption and above it as a torn tail.
 */
export const CHECKPOINT = {
  physicMsgTimestamp: 0,
  logicsMsgTimestamp: 8,
  indexMsgTimestamp: 16,
  masterFlushedOffset: 24,
  confirmPhyOffset: 32,
  physicalFlushedOffset: 40,
  logicsFlushedOffset: 48,
  usedBytes: 56,
  fileBytes: 4096,
} as const

export interface CheckpointValues {
  physicMsgTimestamp: number
  logicsMsgTimestamp: number
  indexMsgTimestamp: number
  masterFlushedOffset: number
  confirmPhyOffset: number
  physicalFlushedOffset: number
  logicsFlushedOffset: number
}

export function encodeCheckpoint(target: Buffer, v: CheckpointValues): void {
  writeI64(target, CHECKPOINT.physicMsgTimestamp, v.physicMsgTimestamp)
  writeI64(target, CHECKPOINT.logicsMsgTimestamp, v.logicsMsgTimestamp)
  writeI64(target, CHECKPOINT.indexMsgTimestamp, v.indexMsgTimestamp)
  writeI64(target, CHECKPOINT.masterFlushedOffset, v.masterFlushedOffset)
  writeI64(target, CHECKPOINT.confirmPhyOffset, v.confirmPhyOffset)
  writeI64(target, CHECKPOINT.physicalFlushedOffset, v.physicalFlushedOffset)
  writeI64(target, CHECKPOINT.logicsFlushedOffset, v.logicsFlushedOffset)
}

export function decodeCheckpoint(source: Buffer): CheckpointValues {
  return {
    physicMsgTimestamp: readI64(source, CHECKPOINT.physicMsgTimestamp),
    logicsMsgTimestamp: readI64(source, CHECKPOINT.logicsMsgTimestamp),
    indexMsgTimestamp: readI64(source, CHECKPOINT.indexMsgTimestamp),
    masterFlushedOffset: readI64(source, CHECKPOINT.masterFlushedOffset),
    confirmPhyOffset: readI64(source, CHECKPOINT.confirmPhyOffset),
    physicalFlushedOffset: readI64(source, CHECKPOINT.physicalFlushedOffset),
    logicsFlushedOffset: readI64(source, CHECKPOINT.logicsFlushedOffset),
  }
}

export class StoreCheckpoint {
  readonly values: CheckpointValues
  private readonly buffer = Buffer.alloc(CHECKPOINT.usedBytes)
  private writing: Promise<void> | undefined
  private dirty = false

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
    const view = file.map(false)
    view.copy(head, 0, 0, Math.min(CHECKPOINT.usedBytes, view.length))
    return new StoreCheckpoint(file, decodeCheckpoint(head))
  }

  /** Writes the current values to the OS (not synced); coalesces concurrent calls. */
  write(): Promise<void> {
    this.dirty = true
    if (!this.writing) {
      this.writing = (async () => {
        try {
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
