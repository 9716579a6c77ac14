import { readI64, writeI64 } from '@mqts/common'
import { crc32 } from '../crc.js'

/**
 * The `checkpoint` file, 4096 bytes, RocketMQ's StoreCheckpoint layout (big-endian longs):
 *
 * | 0 physicMsgTimestamp | 8 logicsMsgTimestamp | 16 indexMsgTimestamp | 24 masterFlushedOffset
 * | 32 confirmPhyOffset | 40 physicalFlushedOffset (mqts) | 48 logicsFlushedOffset (mqts) |
 * | 56 crcMagic (mqts, CHECKPOINT_CRC_MAGIC) | 60 crc (mqts, CRC-32 of bytes 0-59) |
 *
 * physicalFlushedOffset is our addition (RocketMQ ignores bytes past 40): a CommitLog offset known
 * to be on disk. It is written only after the fdatasync that made it true, so it is a lower bound
 * of the durable data; recovery treats damage below it as corruption and above it as a torn tail.
 *
 * A checkpoint written before the CRC existed has zeros at 56: it is read as it is, unchecked.
 * One whose CRC does not match (a torn or damaged write) is not trusted at all: every value reads
 * as 0 and `damaged` is set, so recovery scans the CommitLog from its first file and re-dispatches
 * every queue, and reports it.
 */
export const CHECKPOINT = {
  physicMsgTimestamp: 0,
  logicsMsgTimestamp: 8,
  indexMsgTimestamp: 16,
  masterFlushedOffset: 24,
  confirmPhyOffset: 32,
  physicalFlushedOffset: 40,
  logicsFlushedOffset: 48,
  crcMagic: 56,
  crc: 60,
  usedBytes: 64,
  fileBytes: 4096,
} as const

/** Marks a checkpoint that carries a CRC ("MQCK"); older ones have zeros there. */
export const CHECKPOINT_CRC_MAGIC = 0x4d51434b

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
  target.writeUInt32BE(CHECKPOINT_CRC_MAGIC, CHECKPOINT.crcMagic)
  target.writeUInt32BE(crc32(target.subarray(0, CHECKPOINT.crc)), CHECKPOINT.crc)
}

/** How a checkpoint read: 'ok' (CRC matches), 'legacy' (written before the CRC), 'damaged'. */
export type CheckpointState = 'ok' | 'legacy' | 'damaged'

export function checkpointState(source: Buffer): CheckpointState {
  if (source.length < CHECKPOINT.usedBytes) return 'damaged'
  const magic = source.readUInt32BE(CHECKPOINT.crcMagic)
  if (magic === 0 && source.readUInt32BE(CHECKPOINT.crc) === 0) return 'legacy'
  if (magic !== CHECKPOINT_CRC_MAGIC) return 'damaged'
  return source.readUInt32BE(CHECKPOINT.crc) === crc32(source.subarray(0, CHECKPOINT.crc)) ? 'ok' : 'damaged'
}

export const ZERO_VALUES: CheckpointValues = {
  physicMsgTimestamp: 0,
  logicsMsgTimestamp: 0,
  indexMsgTimestamp: 0,
  masterFlushedOffset: 0,
  confirmPhyOffset: 0,
  physicalFlushedOffset: 0,
  logicsFlushedOffset: 0,
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
