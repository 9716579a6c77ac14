/**
 * The index checkpoint, `checkpoint` in the index directory: how far the index is durable.
 *
 * ```
 * | magic "MQIX" (4) | version (4) | durableIndexedUpTo (8) | crc32 of the first 16 bytes (4) |
 *   0                  4             8                        16                            20
 * ```
 *
 * durableIndexedUpTo (D) is a CommitLog offset: every record below it was indexed and those
 * entries were synced before the checkpoint was written. It is replaced whole (temp file, sync,
 * rename, directory sync), so it is either the old or the new value; a missing or damaged one
 * reads as 0 (rebuild everything).
 */
import * as path from 'node:path'
import { crc32 } from 'node:zlib'
import type { DataFile, FileIO } from '@mqts/common'
import { readI64 } from './format.js'
import { realFileIO } from './mapping.js'

export const CHECKPOINT_FILE = 'checkpoint'
export const INDEX_CHECKPOINT = { magic: 0, version: 4, durableIndexedUpTo: 8, crc: 16, bytes: 20 } as const
const MAGIC = 0x4d515849
const VERSION = 1

export function encodeCheckpoint(durableIndexedUpTo: number): Buffer {
  const b = Buffer.alloc(INDEX_CHECKPOINT.bytes)
  b.writeUInt32BE(MAGIC, INDEX_CHECKPOINT.magic)
  b.writeUInt32BE(VERSION, INDEX_CHECKPOINT.version)
  b.writeUInt32BE(Math.floor(durableIndexedUpTo / 2 ** 32), INDEX_CHECKPOINT.durableIndexedUpTo)
  b.writeUInt32BE(durableIndexedUpTo >>> 0, INDEX_CHECKPOINT.durableIndexedUpTo + 4)
  b.writeUInt32BE(crc32(b.subarray(0, INDEX_CHECKPOINT.crc)), INDEX_CHECKPOINT.crc)
  return b
}

/** The durable offset, or undefined when the bytes are not a valid checkpoint. */
export function decodeCheckpoint(b: Buffer): number | undefined {
  if (b.length !== INDEX_CHECKPOINT.bytes) return undefined
  if (b.readUInt32BE(INDEX_CHECKPOINT.magic) !== MAGIC || b.readUInt32BE(INDEX_CHECKPOINT.version) !== VERSION) return undefined
  if (b.readUInt32BE(INDEX_CHECKPOINT.crc) !== crc32(b.subarray(0, INDEX_CHECKPOINT.crc))) return undefined
  const d = readI64(new DataView(b.buffer, b.byteOffset, b.byteLength), INDEX_CHECKPOINT.durableIndexedUpTo)
  return d >= 0 && Number.isSafeInteger(d) ? d : undefined
}

/** Reads the checkpoint of `dir`: 0 when it is missing or damaged. Blocking (20 bytes). */
export function readCheckpoint(dir: string, io: FileIO = realFileIO()): number {
  let file: DataFile
  try {
    file = io.openSync(path.join(dir, CHECKPOINT_FILE))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
    throw err
  }
  try {
    // One byte more than a checkpoint has, so a longer file does not pass for one.
    const bytes = Buffer.alloc(INDEX_CHECKPOINT.bytes + 1)
    const n = file.readSync(bytes, 0, bytes.length, 0)
    return decodeCheckpoint(bytes.subarray(0, n)) ?? 0
  } finally {
    file.closeSync()
  }
}

/**
 * Temp files of the two writers. Each has its own: recovery's synchronous write may run while a
 * flush's asynchronous one is between its open and its rename (open removes both names).
 */
const SYNC_TEMP = `${CHECKPOINT_FILE}.tmp`
const FLUSH_TEMP = `${CHECKPOINT_FILE}.flush.tmp`

/** Replaces the checkpoint durably (blocking; it is 20 bytes and rare). */
export function writeCheckpointSync(io: FileIO, dir: string, durableIndexedUpTo: number): void {
  io.writeFileAtomicSync(path.join(dir, CHECKPOINT_FILE), encodeCheckpoint(durableIndexedUpTo), { temp: path.join(dir, SYNC_TEMP) })
}

/**
 * The same on the thread pool, for flushes. The value is written and synced to a temp file
 * asynchronously; then `mayReplace()` is asked and, when it answers true, the temp file is
 * renamed over the checkpoint in the same synchronous step, so nothing (a rollback) can run
 * between the caller's last check and the rename. Returns whether the checkpoint was replaced.
 */
export function writeCheckpoint(io: FileIO, dir: string, durableIndexedUpTo: number, mayReplace: () => boolean = () => true): Promise<boolean> {
  return io.writeFileAtomic(path.join(dir, CHECKPOINT_FILE), encodeCheckpoint(durableIndexedUpTo), { temp: path.join(dir, FLUSH_TEMP), mayReplace })
}
