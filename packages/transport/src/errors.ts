/**
 * Every failure the transport reports on purpose is a TransportError with a stable `code`.
 * Callers match on `code`; messages may change between versions. `retriable` says whether the
 * same call may succeed if repeated (possibly on a fresh connection).
 *
 * | code             | retriable | when                                                           |
 * | ---------------- | --------- | -------------------------------------------------------------- |
 * | TIMEOUT          | yes       | no response within the caller's timeout; the request may or    |
 * |                  |           | may not have been processed                                    |
 * | CONNECT_FAILED   | yes       | could not open a connection to the address                     |
 * | SEND_FAILED      | yes       | the connection broke before the frame was written              |
 * | CONNECTION_LOST  | yes       | the connection closed while a response was outstanding         |
 * | TOO_MANY_REQUESTS| yes       | the connection already has its limit of outstanding requests,  |
 * |                  |           | or of bytes queued unsent (maxUnsentBytesPerConnection)        |
 * | CLOSED           | no        | the client or server is stopping or stopped                    |
 * | FRAME_TOO_LARGE  | no        | an encoded or received frame exceeds `maxFrameBytes`           |
 * | BAD_FRAME        | no        | received bytes are not a valid frame (length, header type,     |
 * |                  |           | JSON, binary header bounds)                                    |
 * | ENCODE_FAILED    | no        | a command cannot be represented (e.g. code > 32767 in ROCKETMQ)|
 * | BAD_ADDRESS      | no        | an address is not `host:port` (or `mem:name`)                  |
 * | BAD_HEADER       | no        | a request's custom header lacks a required field or holds a    |
 * |                  |           | value of the wrong type (headers.ts)                           |
 * | BAD_BODY         | no        | a JSON body does not parse or lacks what its code needs         |
 */
import { CodedError, type CodedErrorOptions } from '@mqts/common'

export type TransportErrorCode =
  | 'TIMEOUT'
  | 'CONNECT_FAILED'
  | 'SEND_FAILED'
  | 'CONNECTION_LOST'
  | 'TOO_MANY_REQUESTS'
  | 'CLOSED'
  | 'FRAME_TOO_LARGE'
  | 'BAD_FRAME'
  | 'ENCODE_FAILED'
  | 'BAD_ADDRESS'
  | 'BAD_HEADER'
  | 'BAD_BODY'

const RETRIABLE: ReadonlySet<TransportErrorCode> = new Set<TransportErrorCode>([
  'TIMEOUT',
  'CONNECT_FAILED',
  'SEND_FAILED',
  'CONNECTION_LOST',
  'TOO_MANY_REQUESTS',
])

export class TransportError extends CodedError<TransportErrorCode> {
  readonly retriable: boolean

  constructor(code: TransportErrorCode, message: string, options: CodedErrorOptions = {}) {
    super(code, message, options)
    this.retriable = RETRIABLE.has(code)
  }
}

export function isTransportError(err: unknown, code?: TransportErrorCode): err is TransportError {
  return err instanceof TransportError && (code === undefined || err.code === code)
}
