/**
 * Every failure the store reports on purpose is a StoreError with a stable `code`.
 * Callers match on `code`; messages may change between versions.
 *
 * | code                 | when                                                                |
 * | -------------------- | ------------------------------------------------------------------- |
 * | MESSAGE_TOO_LARGE    | body over `maxMessageSize`, or the whole record over its limit      |
 * | PROPERTIES_TOO_LONG  | encoded properties over 32,767 bytes (RocketMQ's short length)      |
 * | INVALID_PROPERTY     | a property name or value empty, not a string, with 0x01/0x02 or a   |
 * |                      | lone UTF-16 surrogate; keys of the wrong shape; a DELAY that is not |
 * |                      | a Java int on a SCHEDULE_TOPIC_XXXX message                         |
 * | TOPIC_INVALID        | topic empty, too long, or outside `^[%|a-zA-Z0-9_-]+$`              |
 * | INVALID_ARGUMENT     | a queue id, offset, sysFlag bit, host or option out of range (the   |
 * |                      | message shows what was received); setConfirmOffset on a store       |
 * |                      | opened without confirmOffset: true                                  |
 * | NOT_OPEN             | the store is closing or closed                                      |
 * | DISK_FULL            | the OS answered ENOSPC (or EDQUOT); see the README for what is kept |
 * | IO_ERROR             | any other OS error on a data file                                   |
 * | FLUSH_FAILED         | fdatasync failed: durability of unflushed data is unknown; the      |
 * |                      | store refuses further writes until reopened                         |
 * | CORRUPT_RECORD       | recovery (its scan or the ConsumeQueue rebuild) met a bad record in |
 * |                      | the region the checkpoint says is durable, nothing was truncated;   |
 * |                      | or `get` met a record that is not what its ConsumeQueue unit says   |
 * | CORRUPT_FILE         | a data file has the wrong size or an unparsable name                |
 * |                      | (or consumerOffset.json and its .bak both fail to parse)            |
 * | LOCKED               | another live process holds the store directory                      |
 * | OFFSET_OUT_OF_RANGE  | readCommitLog below the first byte held or past the committed end   |
 * |                      | (or the confirm offset); setConfirmOffset past the committed end or |
 * |                      | below what was already dispatched                                   |
 * | WRONG_ROLE           | put/putBatch on a replica, appendReplicated on a master             |
 * | OFFSET_MISMATCH      | appendReplicated at an offset other than the store's end            |
 * | FILE_SIZE_MISMATCH   | replicated bytes show a master whose commitLogFileSize differs      |
 * | BUSY                 | appends waiting on the disk are at maxPendingAppends or             |
 * |                      | maxPendingAppendBytes: nothing was written (RocketMQ's broker busy) |
 */
import { CodedError, isDiskFull, messageOf, osErrorCode } from '@mqts/common'

export type StoreErrorCode =
  | 'MESSAGE_TOO_LARGE'
  | 'PROPERTIES_TOO_LONG'
  | 'INVALID_PROPERTY'
  | 'TOPIC_INVALID'
  | 'INVALID_ARGUMENT'
  | 'NOT_OPEN'
  | 'DISK_FULL'
  | 'IO_ERROR'
  | 'FLUSH_FAILED'
  | 'CORRUPT_RECORD'
  | 'CORRUPT_FILE'
  | 'LOCKED'
  | 'OFFSET_OUT_OF_RANGE'
  | 'WRONG_ROLE'
  | 'OFFSET_MISMATCH'
  | 'FILE_SIZE_MISMATCH'
  | 'BUSY'

export class StoreError extends CodedError<StoreErrorCode> {}

/** Wraps an OS error from a data file into DISK_FULL or IO_ERROR. */
export function ioError(what: string, err: unknown): StoreError {
  if (err instanceof StoreError) return err
  const osCode = osErrorCode(err)
  // DISK_FULL: the index's IndexError for ENOSPC.
  if (isDiskFull(err) || osCode === 'DISK_FULL') {
    return new StoreError('DISK_FULL', `disk full while ${what} (${messageOf(err)})`, { cause: err, details: { osCode } })
  }
  return new StoreError('IO_ERROR', `${what} failed: ${messageOf(err)}`, { cause: err, details: { osCode } })
}
