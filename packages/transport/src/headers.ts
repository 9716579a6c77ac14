/**
 * Reading a request's custom header (extFields) as RocketMQ's header classes do: every value
 * arrives as text (JSON numbers and booleans are already turned into their text by the codec);
 * a required field that is missing, or a number that does not parse, is an error naming the
 * field, which a processor lets escape so the request is answered SYSTEM_ERROR with that remark
 * (RocketMQ answers a RemotingCommandException the same way).
 */
import type { RemotingCommand } from './command.js'
import { TransportError } from './errors.js'

function missing(cmd: RemotingCommand, key: string): TransportError {
  return new TransportError('BAD_HEADER', `the custom header field ${key} is missing (request code ${cmd.code})`)
}

/** A required text field; an empty value counts as missing (RocketMQ decodes it as null). */
export function headerString(cmd: RemotingCommand, key: string): string {
  const v = cmd.extFields[key]
  if (v === undefined || v === '') throw missing(cmd, key)
  return v
}

/** An optional text field: undefined when absent or empty. */
export function headerOptionalString(cmd: RemotingCommand, key: string): string | undefined {
  const v = cmd.extFields[key]
  return v === undefined || v === '' ? undefined : v
}

/** A required integer field (Java int or long within 2^53). */
export function headerInt(cmd: RemotingCommand, key: string): number {
  const v = headerOptionalInt(cmd, key)
  if (v === undefined) throw missing(cmd, key)
  return v
}

/** An optional integer field: undefined when absent or empty; an error when not an integer. */
export function headerOptionalInt(cmd: RemotingCommand, key: string): number | undefined {
  const v = cmd.extFields[key]
  if (v === undefined || v === '') return undefined
  const text = v.trim()
  const n = /^[+-]?\d+$/.test(text) ? Number(text) : Number.NaN
  if (!Number.isSafeInteger(n)) throw new TransportError('BAD_HEADER', `the custom header field ${key} must be an integer, got ${JSON.stringify(v)} (request code ${cmd.code})`)
  return n
}

/** An optional boolean field: Java's Boolean.parseBoolean (only "true", any case, is true). */
export function headerOptionalBool(cmd: RemotingCommand, key: string): boolean | undefined {
  const v = cmd.extFields[key]
  if (v === undefined || v === '') return undefined
  return v.toLowerCase() === 'true'
}
