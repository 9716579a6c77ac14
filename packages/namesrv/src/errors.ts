/**
 * Every failure the nameserver reports on purpose is a NamesrvError with a stable `code`.
 *
 * | code               | when                                                         |
 * | ------------------ | ------------------------------------------------------------ |
 * | INVALID_OPTION     | a NameServer option out of range (the message says which)    |
 * | CONFIG_UNREADABLE  | the KV config file exists but cannot be read or parsed       |
 * | NOT_STARTED        | a call that needs a started nameserver                       |
 */
import { CodedError } from '@mqts/common'

export type NamesrvErrorCode = 'INVALID_OPTION' | 'CONFIG_UNREADABLE' | 'NOT_STARTED'

export class NamesrvError extends CodedError<NamesrvErrorCode> {}
