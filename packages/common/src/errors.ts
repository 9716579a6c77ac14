/**
 * The base of every package's error class (StoreError, IndexError, ...): a stable `code` callers
 * match on, `details` with the facts (offsets, paths, sizes), and the `cause`.
 */
export interface CodedErrorOptions {
  cause?: unknown
  details?: Record<string, unknown>
}

export class CodedError<C extends string = string> extends Error {
  readonly code: C
  /** Extra facts for the caller: offsets, paths, sizes. */
  readonly details: Record<string, unknown>

  constructor(code: C, message: string, options: CodedErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = code
    this.details = options.details ?? {}
  }
}

/** The OS error code of `err` (ENOSPC, EIO, ...), if it has one. */
export function osErrorCode(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' ? code : undefined
}

/** Whether the OS said the disk (or the quota) is full. */
export function isDiskFull(err: unknown): boolean {
  const code = osErrorCode(err)
  return code === 'ENOSPC' || code === 'EDQUOT'
}

/** The message of an error or the text of anything else thrown. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
