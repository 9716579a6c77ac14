/**
 * How a run of records reaches a CommitLog file by pwrite (sync flush's staged chunks, through
 * the writer thread or the thread pool; a replica's received bytes): every byte but the run's
 * first RUN_HEAD_BYTES first, then those. A run always starts at a record start (staged chunks and
 * their writes begin where an append, a BLANK or a replicated record began, and are split only
 * between records), so those bytes are the first record's TOTALSIZE, and the file reads 0 there
 * until the rest is written: a kill that ends the first write early (Linux may stop a write to a
 * regular file at a page boundary on a fatal signal) or comes between the two writes leaves a
 * run that recovery reads as the log's end, never a record torn after its body CRC, and the
 * cut zeroes what was written of it (recovery.ts). Making the run durable comes after both writes.
 * Nothing here orders what reaches the disk at a power loss: recovery's checks are for that.
 */
import type { DataFile } from '@mqts/common'

/** The bytes written last: TOTALSIZE of the run's first record. */
export const RUN_HEAD_BYTES = 4

/** Writes source[offset, +length) at `position` of `file`, its first RUN_HEAD_BYTES last. */
export async function writeRun(file: DataFile, source: Buffer, offset: number, length: number, position: number): Promise<void> {
  if (length > RUN_HEAD_BYTES) await file.write(source, offset + RUN_HEAD_BYTES, length - RUN_HEAD_BYTES, position + RUN_HEAD_BYTES)
  await file.write(source, offset, Math.min(length, RUN_HEAD_BYTES), position)
}

/** writeRun, blocking. */
export function writeRunSync(file: DataFile, source: Buffer, offset: number, length: number, position: number): void {
  if (length > RUN_HEAD_BYTES) file.writeSync(source, offset + RUN_HEAD_BYTES, length - RUN_HEAD_BYTES, position + RUN_HEAD_BYTES)
  file.writeSync(source, offset, Math.min(length, RUN_HEAD_BYTES), position)
}

/**
 * A run given as consecutive parts (the writer thread's pwritev), split for writeRun's order: the
 * parts without the first RUN_HEAD_BYTES, and those bytes. Undefined when the first part is not
 * longer than them (never for records: a part is one submission, at least a record or a BLANK).
 */
export function splitRunHead(parts: readonly Buffer[]): { rest: Buffer[]; head: Buffer } | undefined {
  const first = parts[0]
  if (!first || first.length <= RUN_HEAD_BYTES) return undefined
  return { rest: [first.subarray(RUN_HEAD_BYTES), ...parts.slice(1)], head: first.subarray(0, RUN_HEAD_BYTES) }
}
