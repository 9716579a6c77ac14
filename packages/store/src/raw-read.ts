/**
 * Raw reads of the CommitLog, for replication and for pull answers written to a socket as they
 * are stored: bytes from any offset (not only a record start), as views of the file mappings.
 */
import type { CommitLog } from './commit-log.js'
import { StoreError } from './errors.js'
import { checkOffset, describe } from './put-input.js'

/**
 * Up to `maxBytes` bytes of the CommitLog from `offset`, never at or past `limit` (the committed
 * offset, or the confirm offset), as a view of the file's mapping: empty when nothing is there yet;
 * it stops at the end of the file holding `offset` (the next read starts the next file). A view
 * stays valid after the file is deleted (its mapping lives until the view is collected).
 *
 * OFFSET_OUT_OF_RANGE when `offset` is below the first byte still held (retention deleted it) or
 * past `limit`.
 */
export function readCommitLogBytes(log: CommitLog, offset: number, maxBytes: number, limit: number): Buffer {
  checkOffset('offset', offset)
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new StoreError('INVALID_ARGUMENT', `maxBytes must be a positive integer, got ${describe(maxBytes)}`)
  const min = log.minOffset
  if (offset < min) {
    throw new StoreError('OFFSET_OUT_OF_RANGE', `CommitLog offset ${offset} is below the first byte still held, ${min} (older files were deleted)`, { details: { offset, minOffset: min } })
  }
  if (offset > limit) {
    throw new StoreError('OFFSET_OUT_OF_RANGE', `CommitLog offset ${offset} is past the end of the readable log, ${limit}`, { details: { offset, maxOffset: limit } })
  }
  if (offset === limit) return EMPTY
  const file = log.queue.findFile(offset)
  if (!file) return EMPTY
  const pos = offset - file.fileFromOffset
  const end = Math.min(file.committedPosition, limit - file.fileFromOffset, pos + maxBytes)
  if (end <= pos) return EMPTY
  return file.view.subarray(pos, end)
}

const EMPTY = Buffer.alloc(0)
