/**
 * Checks of what callers pass to put, get and lookup. Every failure is a StoreError that says
 * what is wrong and shows what was received (a string quoted, so "0" and 0 differ).
 */
import { isUtf8 } from 'node:buffer'
import { StoreError, type StoreErrorCode } from './errors.js'
import { PROPERTY, PROPERTY_NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR, SYSFLAG, SYSFLAG_ACCEPTED_MASK, javaHashOfUtf8 } from './codec/index.js'

/** RocketMQ's default queue count per topic is 4 to 16; a broker may raise it, up to this by default. */
export const DEFAULT_MAX_QUEUES_PER_TOPIC = 1024
/** Queue ids are Java ints. */
export const MAX_QUEUE_ID = 0x7fffffff
const INT32_MIN = -0x80000000
const INT32_MAX = 0x7fffffff
/** Characters of a received string shown in a message. */
const SHOWN_CHARS = 64

/** How a received value reads in an error message: strings JSON-quoted, objects by kind. */
export function describe(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return `the string ${JSON.stringify(value.length > SHOWN_CHARS ? value.slice(0, SHOWN_CHARS) + '…' : value)}`
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value)
    case 'bigint':
      return `the bigint ${value}n`
    case 'undefined':
      return 'undefined'
    case 'boolean':
      return String(value)
    case 'function':
      return 'a function'
    case 'symbol':
      return 'a symbol'
  }
  if (value === null) return 'null'
  if (Array.isArray(value)) return `an array of ${value.length}`
  if (value instanceof Uint8Array) return `a ${value.constructor.name} of ${value.length} bytes`
  const proto = Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null
  if (proto === null || proto === Object.prototype) return 'an object'
  return `a ${proto.constructor?.name || 'object'}`
}

function fail(code: StoreErrorCode, message: string, received: unknown): never {
  throw new StoreError(code, message, { details: { received: typeof received === 'bigint' ? String(received) : received } })
}

/** A topic as reads and key queries take it: any non-empty string (a put checks more: checkTopicName). */
export function checkTopicText(topic: unknown): asserts topic is string {
  if (typeof topic !== 'string' || topic.length === 0) throw new StoreError('TOPIC_INVALID', `topic must be a non-empty string, got ${describe(topic)}`)
}

/** A Java int: an integer from -2^31 to 2^31-1, at least `min`. */
export function checkInt(name: string, value: unknown, min: number = INT32_MIN): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > INT32_MAX) {
    const range = min === INT32_MIN ? 'an int (-2^31 to 2^31-1)' : `an integer from ${min} to 2^31-1`
    fail('INVALID_ARGUMENT', `${name} must be ${range}, got ${describe(value)}`, value)
  }
  return value
}

/**
 * A non-negative integer a number holds exactly (a Java long in practice): offsets, timestamps.
 * Each way it can be wrong has its own message.
 */
export function checkOffset(name: string, value: unknown): number {
  if (typeof value !== 'number') fail('INVALID_ARGUMENT', `${name} must be a number, got ${describe(value)}`, value)
  if (!Number.isInteger(value)) fail('INVALID_ARGUMENT', `${name} must be an integer, got ${describe(value)}`, value)
  if (value < 0) fail('INVALID_ARGUMENT', `${name} must not be negative, got ${describe(value)}`, value)
  if (!Number.isSafeInteger(value)) {
    fail('INVALID_ARGUMENT', `${name} ${describe(value)} is beyond 2^53-1 (Number.MAX_SAFE_INTEGER), the largest integer a number holds exactly`, value)
  }
  return value
}

/** A queue id of a put: below `maxQueuesPerTopic`. */
export function checkPutQueueId(value: unknown, maxQueuesPerTopic: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    fail('INVALID_ARGUMENT', `queueId must be an integer from 0 to ${maxQueuesPerTopic - 1}, got ${describe(value)}`, value)
  }
  if (value >= maxQueuesPerTopic) {
    fail('INVALID_ARGUMENT', `queueId ${value} is not below maxQueuesPerTopic (${maxQueuesPerTopic}); raise the option to use more queues`, value)
  }
  return value
}

/** A queue id of a read: any Java int from 0 (a queue that does not exist reads as empty). */
export function checkQueueId(value: unknown): number {
  return checkInt('queueId', value, 0)
}

/**
 * The sysFlag of a put. Its host bits (0x10, 0x20) are the codec's: whatever the caller says, the
 * record gets the bits of the hosts it really holds (withHostFlags). A broker passes a client's
 * sysFlag through, and a client cannot know which address family the broker sees it from or
 * stores under, so those bits are replaced rather than refused. Bits no RocketMQ 4.x record may
 * carry are refused: an unknown meaning would be stored and passed on as if understood.
 */
export function checkSysFlag(value: unknown): number {
  if (value === undefined) return 0
  const sysFlag = checkInt('sysFlag', value)
  const unknown = sysFlag & ~SYSFLAG_ACCEPTED_MASK
  const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`
  if (unknown & (SYSFLAG.NEED_UNWRAP | SYSFLAG.INNER_BATCH)) {
    fail('INVALID_ARGUMENT', `sysFlag ${hex(sysFlag)} has RocketMQ 5.x bits this store does not support (0x40 NEED_UNWRAP, 0x80 INNER_BATCH)`, value)
  }
  if (unknown !== 0) {
    fail(
      'INVALID_ARGUMENT',
      `sysFlag ${hex(sysFlag)} has unknown bits ${hex(unknown)}; known: 0x1 COMPRESSED, 0x2 MULTI_TAGS, 0xc transaction type, 0x10/0x20 IPv6 hosts, 0x300 compression type`,
      value,
    )
  }
  if ((sysFlag & SYSFLAG.COMPRESSION_TYPE_MASK) !== 0 && (sysFlag & SYSFLAG.COMPRESSED) === 0) {
    fail('INVALID_ARGUMENT', `sysFlag ${hex(sysFlag)} names a compression type (bits 8-9) without COMPRESSED (0x1)`, value)
  }
  return sysFlag
}

/**
 * KEYS as stored, space-separated. A string is RocketMQ's own form ("k1 k2" is two keys; runs of
 * spaces separate too). In an array each element is one key, so an element with a space is refused
 * rather than silently split into several.
 */
export function keysProperty(keys: unknown): string | undefined {
  if (typeof keys === 'string') {
    // One key, the common case, is stored as given.
    if (keys.length > 0 && keys.indexOf(' ') < 0) return keys
    const tokens = keys.split(' ').filter((k) => k.length > 0)
    if (tokens.length === 0) fail('INVALID_PROPERTY', `keys must hold at least one key, got ${describe(keys)}`, keys)
    return tokens.join(' ')
  }
  if (!Array.isArray(keys)) fail('INVALID_PROPERTY', `keys must be a string (space-separated keys) or an array of strings, got ${describe(keys)}`, keys)
  for (let i = 0; i < keys.length; i++) {
    const k: unknown = keys[i]
    if (typeof k !== 'string' || k.length === 0 || k.includes(' ')) {
      fail('INVALID_PROPERTY', `keys[${i}] must be a non-empty string without spaces (a space separates keys: give them as elements, or as one string "k1 k2"), got ${describe(k)}`, k)
    }
  }
  return keys.length > 0 ? keys.join(' ') : undefined
}

/** Whether a string is well-formed UTF-16 (no lone surrogate): String#isWellFormed, fast for one-byte strings. */
export function isWellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed()
}

/** Whether `value` is a plain object ({...}, or made with Object.create(null)). */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === null || proto === Object.prototype
}

/** What a put says about its properties; `keys` and `tags` win over KEYS and TAGS in `properties`. */
export interface PropertyInput {
  tags?: unknown
  keys?: unknown
  properties?: unknown
}

/**
 * The properties string of a put (name 0x01 value 0x02, repeated), every value checked. `keys` is
 * keysProperty(m.keys), computed once by the caller, which also needs it.
 */
export function encodePutProperties(keys: string | undefined, m: PropertyInput): string {
  let out = ''
  const add = (name: string, value: unknown): void => {
    if (typeof value !== 'string' || value.length === 0) fail('INVALID_PROPERTY', `property ${JSON.stringify(name)} must be a non-empty string, got ${describe(value)}`, value)
    if (name.length === 0) fail('INVALID_PROPERTY', 'property names must not be empty', name)
    if (name.includes(PROPERTY_NAME_VALUE_SEPARATOR) || name.includes(PROPERTY_SEPARATOR) || value.includes(PROPERTY_NAME_VALUE_SEPARATOR) || value.includes(PROPERTY_SEPARATOR)) {
      fail('INVALID_PROPERTY', `property ${JSON.stringify(name)} contains a 0x01 or 0x02 separator`, name)
    }
    // A lone surrogate has no UTF-8 form: it would be stored as U+FFFD and never match again.
    if (!isWellFormed(name) || !isWellFormed(value)) fail('INVALID_PROPERTY', `property ${JSON.stringify(name)} holds a lone UTF-16 surrogate, which UTF-8 cannot store`, name)
    out += name + PROPERTY_NAME_VALUE_SEPARATOR + value + PROPERTY_SEPARATOR
  }
  if (keys !== undefined) add(PROPERTY.KEYS, keys)
  if (m.tags !== undefined) add(PROPERTY.TAGS, m.tags)
  const properties = m.properties
  if (properties !== undefined) {
    if (!isPlainObject(properties)) fail('INVALID_ARGUMENT', `properties must be a plain object of string values, got ${describe(properties)}`, properties)
    for (const name of Object.keys(properties)) {
      if (name === PROPERTY.KEYS && m.keys !== undefined) continue
      if (name === PROPERTY.TAGS && m.tags !== undefined) continue
      add(name, properties[name])
    }
  }
  return out
}

/** What a put's encoded properties say about the fields the store indexes (the last of each wins, as readers decode). */
export interface EncodedProperties {
  /** What to store: the given text (with the last separator added when it was left off) or bytes. */
  text: string | Uint8Array
  tags: string | undefined
  /** The tags' hash when it was taken from the bytes (propertiesBytes), without making `tags`. */
  tagsCode: number | undefined
  keys: string | undefined
  uniqKey: string | undefined
  delay: string | undefined
}

/** Whether text[start, end) is exactly `name`. */
function nameIs(text: string, start: number, end: number, name: string): boolean {
  return end - start === name.length && text.startsWith(name, start)
}

/**
 * A put's properties given as their encoded text (PutMessage.propertiesText): name 0x01 value 0x02,
 * repeated, as a RocketMQ client sends them, stored without a decode and a re-encode. Checked as
 * strictly as the object form, in one pass: every entry a non-empty name, one 0x01 and a non-empty
 * value, and no lone UTF-16 surrogate. A name given twice is stored twice; readers keep the last,
 * as they would from the object form, and so do the fields taken here.
 */
export function checkEncodedProperties(text: unknown): EncodedProperties {
  if (typeof text !== 'string') fail('INVALID_ARGUMENT', `propertiesText must be a string (name 0x01 value 0x02, repeated), got ${describe(text)}`, text)
  const out: EncodedProperties = { text, tags: undefined, tagsCode: undefined, keys: undefined, uniqKey: undefined, delay: undefined }
  const len = text.length
  if (len === 0) return out
  if (!isWellFormed(text)) fail('INVALID_PROPERTY', 'propertiesText holds a lone UTF-16 surrogate, which UTF-8 cannot store', text)
  let at = 0
  let sep = text.indexOf(PROPERTY_NAME_VALUE_SEPARATOR)
  while (at < len) {
    let end = text.indexOf(PROPERTY_SEPARATOR, at)
    if (end < 0) end = len
    if (sep < 0 || sep >= end) fail('INVALID_PROPERTY', `propertiesText entry at character ${at} has no 0x01 between its name and its value, got ${describe(text.slice(at, end))}`, text)
    if (sep === at) fail('INVALID_PROPERTY', `propertiesText entry at character ${at} has an empty name`, text)
    if (sep + 1 === end) fail('INVALID_PROPERTY', `property ${JSON.stringify(text.slice(at, sep))} must have a non-empty value`, text)
    const nextSep = text.indexOf(PROPERTY_NAME_VALUE_SEPARATOR, sep + 1)
    if (nextSep >= 0 && nextSep < end) fail('INVALID_PROPERTY', `property ${JSON.stringify(text.slice(at, sep))} contains a 0x01 or 0x02 separator`, text)
    // Only the four names the store reads are compared; most entries cost two indexOf calls.
    const c = text.charCodeAt(at)
    if (c === 0x54 /* T */ && nameIs(text, at, sep, PROPERTY.TAGS)) out.tags = text.slice(sep + 1, end)
    else if (c === 0x4b /* K */ && nameIs(text, at, sep, PROPERTY.KEYS)) out.keys = text.slice(sep + 1, end)
    else if (c === 0x55 /* U */ && nameIs(text, at, sep, PROPERTY.UNIQ_KEY)) out.uniqKey = text.slice(sep + 1, end)
    else if (c === 0x44 /* D */ && nameIs(text, at, sep, PROPERTY.DELAY)) out.delay = text.slice(sep + 1, end)
    at = end + 1
    sep = nextSep
  }
  // RocketMQ's clients end every entry with 0x02; one that left the last off is completed.
  if (text.charCodeAt(len - 1) !== 0x02) out.text = text + PROPERTY_SEPARATOR
  return out
}

/** Whether bytes[start, end) is exactly the ASCII `name`. */
function bytesAre(bytes: Uint8Array, start: number, end: number, name: string): boolean {
  if (end - start !== name.length) return false
  for (let i = 0; i < name.length; i++) if (bytes[start + i] !== name.charCodeAt(i)) return false
  return true
}

/** bytes[start, end) as text (well-formed UTF-8); short ASCII without a Buffer. */
function textOf(bytes: Uint8Array, start: number, end: number): string {
  if (end - start <= 32) {
    let text = ''
    for (let i = start; i < end; i++) {
      const c = bytes[i]!
      if (c >= 0x80) return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('utf8')
      text += String.fromCharCode(c)
    }
    return text
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('utf8')
}

/**
 * PutMessage.propertiesBytes: checkEncodedProperties over the UTF-8 bytes, which are stored as
 * they are. Well-formed UTF-8 stands for the text's "no lone surrogate" (a surrogate's UTF-8 form
 * is ill-formed); bytes without the last 0x02 go the text's way, which completes them.
 */
export function checkEncodedPropertyBytes(bytes: unknown): EncodedProperties {
  if (!(bytes instanceof Uint8Array)) fail('INVALID_ARGUMENT', `propertiesBytes must be a Uint8Array (the UTF-8 of name 0x01 value 0x02, repeated), got ${describe(bytes)}`, bytes)
  return checkEncodedPropertyRange(bytes, 0, bytes.length, { text: bytes, tags: undefined, tagsCode: undefined, keys: undefined, uniqKey: undefined, delay: undefined })
}

/**
 * checkEncodedPropertyBytes over bytes[start, end), into `out` (reused by the caller: a batch's
 * messages cost no object each). `out.text` is `bytes` when the range is stored as it is, or the
 * completed text (a new object) when it lacked the last 0x02.
 */
export function checkEncodedPropertyRange(bytes: Uint8Array, start: number, end: number, out: EncodedProperties): EncodedProperties {
  out.text = bytes
  out.tags = undefined
  out.tagsCode = undefined
  out.keys = undefined
  out.uniqKey = undefined
  out.delay = undefined
  if (end === start) return out
  if (bytes[end - 1] !== 0x02) {
    const range = bytes.subarray(start, end)
    if (!isUtf8(range)) fail('INVALID_PROPERTY', 'properties bytes are not well-formed UTF-8', range)
    return checkEncodedProperties(textOf(bytes, start, end))
  }
  // Every byte but the 0x02s ORed: below 0x80, all ASCII, which is well-formed UTF-8 without asking.
  let high = 0
  let at = start
  while (at < end) {
    // One entry: its 0x01 and its end (the 0x02; the last byte is one).
    let sep = -1
    let stop = at
    for (; ; stop++) {
      const b = bytes[stop]!
      if (b === 0x02) break
      high |= b
      if (b !== 0x01) continue
      if (sep >= 0) fail('INVALID_PROPERTY', `property ${JSON.stringify(textOf(bytes, at, sep))} contains a 0x01 or 0x02 separator`, bytes.subarray(start, end))
      sep = stop
    }
    if (sep < 0) fail('INVALID_PROPERTY', `properties entry at byte ${at - start} has no 0x01 between its name and its value, got ${describe(textOf(bytes, at, stop))}`, bytes.subarray(start, end))
    if (sep === at) fail('INVALID_PROPERTY', `properties entry at byte ${at - start} has an empty name`, bytes.subarray(start, end))
    if (sep + 1 === stop) fail('INVALID_PROPERTY', `property ${JSON.stringify(textOf(bytes, at, sep))} must have a non-empty value`, bytes.subarray(start, end))
    const c = bytes[at]
    // The tags are only hashed: from the bytes, without their string (every batched message has some).
    if (c === 0x54 /* T */ && bytesAre(bytes, at, sep, PROPERTY.TAGS)) out.tagsCode = javaHashOfUtf8(bytes, sep + 1, stop)
    else if (c === 0x4b /* K */ && bytesAre(bytes, at, sep, PROPERTY.KEYS)) out.keys = textOf(bytes, sep + 1, stop)
    else if (c === 0x55 /* U */ && bytesAre(bytes, at, sep, PROPERTY.UNIQ_KEY)) out.uniqKey = textOf(bytes, sep + 1, stop)
    else if (c === 0x44 /* D */ && bytesAre(bytes, at, sep, PROPERTY.DELAY)) out.delay = textOf(bytes, sep + 1, stop)
    at = stop + 1
  }
  if (high >= 0x80 && !isUtf8(bytes.subarray(start, end))) fail('INVALID_PROPERTY', 'properties bytes are not well-formed UTF-8', bytes.subarray(start, end))
  return out
}
