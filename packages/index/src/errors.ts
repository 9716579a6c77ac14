/**
 * Every failure the index reports on purpose is an IndexError with a stable `code`.
 * Callers match on `code`; messages may change between versions.
 *
 * | code             | when                                                                     |
 * | ---------------- | ------------------------------------------------------------------------ |
 * | INVALID_ARGUMENT | an option or argument out of range or of the wrong type (sizes, a        |
 * |                  | record's fields, query options); checked before anything is written      |
 * | NOT_OPEN         | the index is closed                                                       |
 * | DISK_FULL        | the OS answered ENOSPC (or EDQUOT) creating or reserving file space;      |
 * |                  | nothing of the put was written, indexedUpTo did not move                  |
 * | IO_ERROR         | any other OS error on an index file or the checkpoint                     |
 *
 * A damaged index file is not an error: the index is derived data, so recovery deletes what it
 * cannot trust, lowers indexedUpTo for the store to re-index from, and lists what it deleted in
 * `recoveryReport`.
 */
import { CodedError, isDiskFull, messageOf, osErrorCode } from '@mqts/common'

export type IndexErrorCode = 'INVALID_ARGUMENT' | 'NOT_OPEN' | 'DISK_FULL' | 'IO_ERROR'

export class IndexError extends CodedError<IndexErrorCode> {}

/** Wraps an OS error into DISK_FULL or IO_ERROR. */
export function ioError(what: string, err: unknown, details: Record<string, unknown> = {}): IndexError {
  if (err instanceof IndexError) return err
  const osCode = osErrorCode(err)
  const message = messageOf(err)
  if (isDiskFull(err)) {
    return new IndexError('DISK_FULL', `disk full while ${what} (${message})`, { cause: err, details: { ...details, osCode } })
  }
  return new IndexError('IO_ERROR', `${what} failed: ${message}`, { cause: err, details: { ...details, osCode } })
}
