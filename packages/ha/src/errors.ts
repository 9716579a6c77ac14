/**
 * Every failure the HA package reports on purpose is an HAError with a stable `code`.
 *
 * | code                  | when                                                            |
 * | --------------------- | --------------------------------------------------------------- |
 * | FLUSH_SLAVE_TIMEOUT   | sync replication: no in-sync replica acknowledged in time       |
 * | SLAVE_NOT_AVAILABLE   | sync replication: no replica is connected and in sync           |
 * | INVALID_ARGUMENT      | an option or address out of range                               |
 * | NOT_STARTED           | a call on a service that is not running                         |
 */
import { CodedError } from '@mqts/common'

export type HAErrorCode = 'FLUSH_SLAVE_TIMEOUT' | 'SLAVE_NOT_AVAILABLE' | 'INVALID_ARGUMENT' | 'NOT_STARTED'

export class HAError extends CodedError<HAErrorCode> {}
