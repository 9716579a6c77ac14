/**
 * ConsumeQueue unit, 20 bytes, big-endian:
 *   | physicalOffset (8) | size (4) | tagsCode (8) |
 * Unit n of a queue sits at byte n * 20 of the queue's logical space; files are named by the
 * 20-digit logical byte offset of their first unit.
 */
import { TWO_POW_32 } from '@mqts/common'

export const CQ_UNIT = { physicalOffset: 0, size: 8, tagsCode: 12, bytes: 20 } as const
/** RocketMQ's mapedFileSizeConsumeQueue: 300,000 units (6,000,000 bytes) per file. */
export const DEFAULT_CQ_UNITS_PER_FILE = 300_000
/** Filler unit of a queue that starts in the middle of a file: [0, Integer.MAX_VALUE, 0]. */
export const CQ_FILLER_SIZE = 0x7fffffff
/**
 * Written into the ConsumeQueue root at a clean close: each queue's files and offsets, so the
 * next open need not read its files. JSON: { version, commitLogEnd, commitLogMin, fileSize,
 * queues: [[topic, queueId, minOffset, maxOffset, maxPhysicalEnd, fileStarts]] }. The dot keeps
 * it out of the topic folders' name pattern.
 */
export const CQ_SUMMARY_FILE = '.clean-summary.json'
export const CQ_SUMMARY_VERSION = 1

export interface CqUnit {
  physicalOffset: number
  size: number
  tagsCode: number
}

export function encodeCqUnit(target: DataView, at: number, physicalOffset: number, size: number, tagsCode: number): void {
  target.setUint32(at + CQ_UNIT.physicalOffset, Math.floor(physicalOffset / TWO_POW_32))
  target.setUint32(at + CQ_UNIT.physicalOffset + 4, physicalOffset >>> 0)
  target.setInt32(at + CQ_UNIT.size, size)
  // tagsCode is an int hash sign-extended to a long.
  target.setInt32(at + CQ_UNIT.tagsCode, tagsCode < 0 ? -1 : Math.floor(tagsCode / TWO_POW_32))
  target.setUint32(at + CQ_UNIT.tagsCode + 4, tagsCode >>> 0)
}

export function cqUnitPhysicalOffset(source: DataView, at: number): number {
  return source.getInt32(at + CQ_UNIT.physicalOffset) * TWO_POW_32 + source.getUint32(at + CQ_UNIT.physicalOffset + 4)
}

export function cqUnitSize(source: DataView, at: number): number {
  return source.getInt32(at + CQ_UNIT.size)
}

export function cqUnitTagsCode(source: DataView, at: number): number {
  return source.getInt32(at + CQ_UNIT.tagsCode) * TWO_POW_32 + source.getUint32(at + CQ_UNIT.tagsCode + 4)
}

export function decodeCqUnit(source: DataView, at: number): CqUnit {
  return { physicalOffset: cqUnitPhysicalOffset(source, at), size: cqUnitSize(source, at), tagsCode: cqUnitTagsCode(source, at) }
}
