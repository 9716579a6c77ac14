/**
 * Every failure the message codec reports on purpose is a MessageError with a stable `code`.
 *
 * | code             | when                                                                     |
 * | ---------------- | ------------------------------------------------------------------------ |
 * | INVALID_ARGUMENT | a record asked to be encoded in a shape it cannot have (host bits that   |
 * |                  | do not match its hosts, a pending body CRC without what computes it), or |
 * |                  | a batch entry that cannot be encoded (flag, properties' length)          |
 */
import { CodedError } from '@mqts/common'

export type MessageErrorCode = 'INVALID_ARGUMENT'

export class MessageError extends CodedError<MessageErrorCode> {}
