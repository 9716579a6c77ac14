/**
 * Every failure the client reports on purpose is a ClientError with a stable `code`; when a
 * broker or a nameserver refused a request, `responseCode` is RocketMQ's response code it
 * answered (ResponseCode in @mqts/transport) and `remark` its text.
 *
 * | code            | when                                                                   |
 * | --------------- | ---------------------------------------------------------------------- |
 * | INVALID_OPTION  | an option or argument out of range (the message says which, and what); |
 * |                 | a queue selector that throws (`cause`) or answers a queue not given    |
 * |                 | a request over the transport's frame limit (never retried)             |
 * | NOT_STARTED     | a call that needs start() first                                        |
 * | CLOSED          | the producer or consumer is closed                                     |
 * | ABORTED         | the caller's AbortSignal fired while the call waited                   |
 * | NO_NAMESRV      | no configured nameserver answered                                      |
 * | NO_ROUTE        | the nameservers know no route for the topic (or no queue to use)       |
 * | NO_BROKER       | the route names no reachable master for a broker name                  |
 * | BROKER_ERROR    | a broker or nameserver answered with a failure (`responseCode` set)    |
 * | REMOTING_FAILED | the request did not get an answer (timeout, connection lost; `cause`)  |
 * | SEND_FAILED     | every attempt of a send failed (`cause` is the last failure)           |
 */
import { CodedError, type CodedErrorOptions } from '@mqts/common'

export type ClientErrorCode =
  | 'INVALID_OPTION'
  | 'NOT_STARTED'
  | 'CLOSED'
  | 'ABORTED'
  | 'NO_NAMESRV'
  | 'NO_ROUTE'
  | 'NO_BROKER'
  | 'BROKER_ERROR'
  | 'REMOTING_FAILED'
  | 'SEND_FAILED'

export interface ClientErrorOptions extends CodedErrorOptions {
  responseCode?: number
  remark?: string | null
}

export class ClientError extends CodedError<ClientErrorCode> {
  /** RocketMQ's response code the server answered, when it answered with a failure. */
  readonly responseCode: number | undefined
  /** The server's remark with that code. */
  readonly remark: string | undefined

  constructor(code: ClientErrorCode, message: string, options: ClientErrorOptions = {}) {
    super(code, message, options)
    this.responseCode = options.responseCode ?? (options.cause instanceof ClientError ? options.cause.responseCode : undefined)
    this.remark = options.remark ?? undefined
  }
}

export function isClientError(err: unknown, code?: ClientErrorCode): err is ClientError {
  return err instanceof ClientError && (code === undefined || err.code === code)
}
