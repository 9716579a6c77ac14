/**
 * Where a replica link starts, from the replica's first report: that is where the master's
 * stream begins, so it must be a place in this log where a unit starts. RocketMQ's master takes
 * any offset; a peer that reports one inside a record would be streamed the tail of that record
 * as if it were a record start.
 */
import { BLANK_MAGIC_CODE, MESSAGE_MAGIC_CODE_V1, MESSAGE_MAGIC_CODE_V2, RECORD } from '@mqts/message'
import type { MessageStore } from '@mqts/store'

export type LinkStart = { start: number } | { refused: string }

/** Bytes read at a reported offset to tell a unit's start: a record's fields up to its physical offset. */
const HEAD_BYTES = RECORD.physicalOffset + 8
/** A BLANK (the end-of-file filler) is its size and magic code. */
const BLANK_HEAD_BYTES = 8

/**
 * The first report `offset`: 0 (an empty replica) starts at this log's first byte; the log's end
 * or the start of a record whose stored physical offset is `offset` (or of an end-of-file BLANK)
 * starts there; anything else is refused, with the reason.
 */
export function linkStart(store: MessageStore, offset: number): LinkStart {
  const min = store.commitLogMinOffset
  const max = store.commitLogMaxOffset
  // An empty replica (it reports 0) starts where this log does: retention may have deleted the
  // first files, and the replica's store then starts at the same file.
  const start = offset === 0 ? min : offset
  if (start < min) {
    return { refused: "the replica's log ends below this master's first CommitLog offset (retention deleted the files it lacks): it cannot catch up; empty its store directory to seed it again" }
  }
  if (start > max) return { refused: "the replica's log ends past this master's end" }
  if (start === max || unitStartsAt(store, start)) return { start }
  return { refused: `the replica's end ${start} is not where a record starts in this master's log (a replica's end is always a record boundary): not a replica of this log` }
}

function unitStartsAt(store: MessageStore, offset: number): boolean {
  let head: Buffer
  try {
    head = store.readCommitLog(offset, HEAD_BYTES, { unconfirmed: true })
  } catch {
    return false
  }
  if (head.length < BLANK_HEAD_BYTES) return false
  const size = head.readInt32BE(RECORD.totalSize)
  const magic = head.readInt32BE(RECORD.magicCode)
  if (magic === BLANK_MAGIC_CODE) return size >= BLANK_HEAD_BYTES
  if (magic !== MESSAGE_MAGIC_CODE_V1 && magic !== MESSAGE_MAGIC_CODE_V2) return false
  return size >= HEAD_BYTES && head.length >= HEAD_BYTES && head.readBigInt64BE(RECORD.physicalOffset) === BigInt(offset)
}
