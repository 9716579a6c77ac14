/**
 * Every failure the broker reports on purpose (outside of wire responses) is a BrokerError with
 * a stable `code`.
 *
 * | code            | when                                                          |
 * | --------------- | ------------------------------------------------------------- |
 * | INVALID_CONFIG  | a configuration value out of range (the message says which)  |
 * | CONFIG_CORRUPT  | a config file (topics.json, subscriptionGroup.json,           |
 * |                 | delayOffset.json) and its .bak hold something, neither parses |
 * | NOT_STARTED     | a call that needs a started broker                            |
 * | INVALID_DELAY   | a sent message's DELAY is not an integer (SYSTEM_ERROR)       |
 */
import { CodedError } from '@mqts/common'

export type BrokerErrorCode = 'INVALID_CONFIG' | 'CONFIG_CORRUPT' | 'NOT_STARTED' | 'INVALID_DELAY'

export class BrokerError extends CodedError<BrokerErrorCode> {}

