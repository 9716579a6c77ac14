/**
 * IndexFile layout, byte-compatible with RocketMQ's (store/…/index/IndexFile.java, IndexHeader.java).
 * Every integer is big-endian, as Java writes it.
 *
 * ```
 * 0          40                          40 + slots×4                                  size
 * | header   | slot table                 | entries                                      |
 * | 40 bytes | maxHashSlotNum × 4 bytes   | maxIndexNum × 20 bytes (entry 0 never used)  |
 *
 * header, 40 bytes:
 * | beginTimestamp (8) | endTimestamp (8) | beginPhyOffset (8) | endPhyOffset (8) | hashSlotCount (4) | indexCount (4) |
 *   0                    8                  16                   24                 32                  36
 *
 * slot, 4 bytes: number of the newest entry whose keyHash % maxHashSlotNum is this slot, 0 = empty
 *
 * entry n (1-based), 20 bytes at 40 + maxHashSlotNum×4 + n×20:
 * | keyHash (4) | phyOffset (8) | timeDiff (4) | prevIndex (4) |
 *   0             4               12             16
 * keyHash   |String.hashCode("<topic>#<key>")|, 0 when the absolute value overflows
 * timeDiff  seconds from the header's beginTimestamp to the message's store time, in [0, 2^31-1]
 * prevIndex the entry the slot pointed at before this one (0 = end of chain)
 * ```
 *
 * indexCount is the next entry number to write; it starts at 1, so a file holds maxIndexNum - 1
 * entries and is full when indexCount >= maxIndexNum. Files are named by creation time
 * `yyyyMMddHHmmssSSS` (UTC here; RocketMQ uses local time, which can go backwards at a DST change).
 */

import { javaHashContinue, javaStringHashCode, readI64View as readI64, writeU64View as writeU64 } from '@mqts/common'

/** Header field offsets and size. */
export const INDEX_HEADER = {
  beginTimestamp: 0,
  endTimestamp: 8,
  beginPhyOffset: 16,
  endPhyOffset: 24,
  hashSlotCount: 32,
  indexCount: 36,
  bytes: 40,
} as const

/** One hash slot: an int entry number. */
export const INDEX_SLOT_BYTES = 4

/** Entry field offsets (relative to the entry) and size. */
export const INDEX_ENTRY = {
  keyHash: 0,
  phyOffset: 4,
  timeDiff: 12,
  prevIndex: 16,
  bytes: 20,
} as const

/** Entry numbers start here; 0 means "none" in slots and prevIndex. */
export const FIRST_ENTRY = 1

/** Separator between topic and key in an indexed key, as RocketMQ builds it. */
export const KEY_SEPARATOR = '#'

export const INDEX_DEFAULTS = {
  /** RocketMQ's maxHashSlotNum. */
  maxHashSlotNum: 5_000_000,
  /** RocketMQ's maxIndexNum. */
  maxIndexNum: 20_000_000,
  /** Index files kept mapped at once (the file being written is always mapped besides). */
  maxOpenFiles: 8,
  /** Results per query unless asked otherwise. */
  maxNum: 32,
} as const

/** File size for a geometry: 420,000,040 bytes with the defaults. */
export function indexFileSize(maxHashSlotNum: number, maxIndexNum: number): number {
  return INDEX_HEADER.bytes + maxHashSlotNum * INDEX_SLOT_BYTES + maxIndexNum * INDEX_ENTRY.bytes
}

/** Byte position of slot `slot`. */
export function slotPosition(slot: number): number {
  return INDEX_HEADER.bytes + slot * INDEX_SLOT_BYTES
}

/** Byte position of entry `n` (1-based) in a file with `maxHashSlotNum` slots. */
export function entryPosition(maxHashSlotNum: number, n: number): number {
  return INDEX_HEADER.bytes + maxHashSlotNum * INDEX_SLOT_BYTES + n * INDEX_ENTRY.bytes
}

// 64-bit fields are big-endian Java longs, as two 32-bit halves (@mqts/common).
export { readI64, writeU64, javaHashContinue, javaStringHashCode }

// ---------------------------------------------------------------------------------------------
// Header and entry codecs

export interface IndexHeader {
  beginTimestamp: number
  endTimestamp: number
  beginPhyOffset: number
  endPhyOffset: number
  hashSlotCount: number
  indexCount: number
}

export function encodeHeader(view: DataView, header: IndexHeader): void {
  writeU64(view, INDEX_HEADER.beginTimestamp, header.beginTimestamp)
  writeU64(view, INDEX_HEADER.endTimestamp, header.endTimestamp)
  writeU64(view, INDEX_HEADER.beginPhyOffset, header.beginPhyOffset)
  writeU64(view, INDEX_HEADER.endPhyOffset, header.endPhyOffset)
  view.setInt32(INDEX_HEADER.hashSlotCount, header.hashSlotCount)
  view.setInt32(INDEX_HEADER.indexCount, header.indexCount)
}

export function decodeHeader(view: DataView): IndexHeader {
  return {
    beginTimestamp: readI64(view, INDEX_HEADER.beginTimestamp),
    endTimestamp: readI64(view, INDEX_HEADER.endTimestamp),
    beginPhyOffset: readI64(view, INDEX_HEADER.beginPhyOffset),
    endPhyOffset: readI64(view, INDEX_HEADER.endPhyOffset),
    hashSlotCount: view.getInt32(INDEX_HEADER.hashSlotCount),
    indexCount: view.getInt32(INDEX_HEADER.indexCount),
  }
}

export interface IndexEntry {
  keyHash: number
  phyOffset: number
  timeDiff: number
  prevIndex: number
}

/** Writes an entry at byte `at` of the file. */
export function encodeEntry(view: DataView, at: number, entry: IndexEntry): void {
  view.setInt32(at + INDEX_ENTRY.keyHash, entry.keyHash)
  writeU64(view, at + INDEX_ENTRY.phyOffset, entry.phyOffset)
  view.setInt32(at + INDEX_ENTRY.timeDiff, entry.timeDiff)
  view.setInt32(at + INDEX_ENTRY.prevIndex, entry.prevIndex)
}

export function decodeEntry(view: DataView, at: number): IndexEntry {
  return {
    keyHash: view.getInt32(at + INDEX_ENTRY.keyHash),
    phyOffset: readI64(view, at + INDEX_ENTRY.phyOffset),
    timeDiff: view.getInt32(at + INDEX_ENTRY.timeDiff),
    prevIndex: view.getInt32(at + INDEX_ENTRY.prevIndex),
  }
}

/** timeDiff of a message stored at `storeTimestamp` in a file beginning at `beginTimestamp`. */
export function timeDiffSeconds(beginTimestamp: number, storeTimestamp: number): number {
  if (beginTimestamp <= 0) return 0
  const diff = Math.trunc((storeTimestamp - beginTimestamp) / 1000)
  return diff < 0 ? 0 : diff > 0x7fffffff ? 0x7fffffff : diff
}

// ---------------------------------------------------------------------------------------------
// Key hashing: Java's String.hashCode over UTF-16 code units (@mqts/common); h*31 + c composes,
// so "<topic>#<key>" hashes without building the string.

/** Java `String.hashCode()` of `topic + "#"`, the prefix every key of a topic shares. */
export function topicHashPrefix(topic: string): number {
  return javaHashContinue(javaHashContinue(0, topic), KEY_SEPARATOR)
}

/** RocketMQ's indexKeyHashMethod: |hash|, and 0 for Integer.MIN_VALUE (whose abs overflows). */
export function positiveHash(h: number): number {
  return h < 0 ? (h === -0x80000000 ? 0 : -h) : h
}

/** keyHash stored for `<topic>#<key>`. */
export function indexKeyHash(topic: string, key: string): number {
  return positiveHash(javaHashContinue(topicHashPrefix(topic), key))
}

// ---------------------------------------------------------------------------------------------
// File names

const NAME_PATTERN = /^\d{17}$/

/** `yyyyMMddHHmmssSSS` in UTC. */
export function fileNameOf(timeMs: number): string {
  const d = new Date(timeMs)
  const p = (n: number, w: number): string => String(n).padStart(w, '0')
  return (
    p(d.getUTCFullYear(), 4) +
    p(d.getUTCMonth() + 1, 2) +
    p(d.getUTCDate(), 2) +
    p(d.getUTCHours(), 2) +
    p(d.getUTCMinutes(), 2) +
    p(d.getUTCSeconds(), 2) +
    p(d.getUTCMilliseconds(), 3)
  )
}

/** The time a file name stands for, or undefined when it is not an index file name. */
export function timeOfFileName(name: string): number | undefined {
  if (!NAME_PATTERN.test(name)) return undefined
  const n = (from: number, to: number): number => Number(name.slice(from, to))
  const t = Date.UTC(n(0, 4), n(4, 6) - 1, n(6, 8), n(8, 10), n(10, 12), n(12, 14), n(14, 17))
  return Number.isFinite(t) && fileNameOf(t) === name ? t : undefined
}

export function isIndexFileName(name: string): boolean {
  return NAME_PATTERN.test(name)
}
