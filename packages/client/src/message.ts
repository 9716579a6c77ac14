/**
 * Messages: what a producer sends (topic, body, tags, keys, delay level, properties) encoded as
 * RocketMQ 4.x clients encode them, the client's unique id (MessageClientIDSetter's UNIQ_KEY),
 * and the messages a pull brings back, decoded from the broker's raw records.
 *
 * Pulled records are decoded with `decodeRecord` of @mqts/message, the record codec the store
 * writes them with (no store, no native code in a client).
 */
import { inflateSync } from 'node:zlib'
import { SYSFLAG, decodeProperties, decodeRecord, encodeProperties } from '@mqts/message'
import { KEY_SEPARATOR, PROPERTY, PROPERTY_SEPARATORS, RESERVED_PROPERTY_NAMES, RETRY_GROUP_TOPIC_PREFIX } from './constants.js'
import { ClientError } from './errors.js'

export { encodeProperties, decodeProperties }

/** A message to send. */
export interface Message {
  topic: string
  body: Buffer | Uint8Array | string
  /** One tag (the TAGS property), what consumers filter on. */
  tags?: string
  /** Keys the broker indexes (the KEYS property, space-separated). */
  keys?: string | readonly string[]
  /** Delay level, 1-18 by default (the DELAY property): delivered after that level's delay. */
  delayLevel?: number
  /** The user flag stored with the message. */
  flag?: number
  /** More properties (names RocketMQ defines keep their meaning). */
  properties?: Record<string, string>
  /** Whether the send waits for the broker's flush (WAIT; default true, as RocketMQ's). */
  waitStoreMsgOK?: boolean
}

/** A message as consumed. */
export interface MessageExt {
  topic: string
  body: Buffer
  tags: string | undefined
  keys: string[]
  properties: Record<string, string>
  /** The producer's unique id (UNIQ_KEY) when it set one, otherwise the offset id. */
  msgId: string
  /** The id of the stored record: store host and CommitLog offset (32 hex digits for IPv4). */
  offsetMsgId: string
  brokerName: string
  queueId: number
  queueOffset: number
  commitLogOffset: number
  reconsumeTimes: number
  bornTimestamp: number
  bornHost: string
  storeTimestamp: number
  storeHost: string
  flag: number
  sysFlag: number
  storeSize: number
}

/**
 * Properties the client itself sets on a message it sends for the broker (the send-back fallback's
 * RETRY_TOPIC, RECONSUME_TIME...): reserved names allowed, unlike a user's `properties`. Not part
 * of the public API.
 */
export const SYSTEM_PROPERTIES = Symbol('systemProperties')
export type InternalMessage = Message & { [SYSTEM_PROPERTIES]?: Record<string, string> }

/** The properties a send puts on the wire for `m` (UNIQ_KEY included). */
export function messageProperties(m: Message, uniqKey: string): Record<string, string> {
  const p: Record<string, string> = {}
  if (m.tags !== undefined && m.tags !== '') p[PROPERTY.TAGS] = checkText('a tag', m.tags)
  if (m.keys !== undefined) {
    // In an array each element is one key: one with a space would read back as two.
    if (typeof m.keys !== 'string') {
      const bad = [...m.keys].find((k) => typeof k !== 'string' || k.includes(KEY_SEPARATOR))
      if (bad !== undefined) throw new ClientError('INVALID_OPTION', `each key of an array is one key, a string without spaces, got ${JSON.stringify(bad)} (a string of space-separated keys is RocketMQ's own form)`)
    }
    const keys = (typeof m.keys === 'string' ? [m.keys] : [...m.keys]).join(KEY_SEPARATOR).trim()
    if (keys !== '') p[PROPERTY.KEYS] = checkText('a key', keys)
  }
  // RocketMQ's Message sets WAIT in its constructor, so every Java-sent message carries it.
  p[PROPERTY.WAIT] = String(m.waitStoreMsgOK ?? true)
  if (m.delayLevel !== undefined) {
    if (!Number.isInteger(m.delayLevel) || m.delayLevel < 0) throw new ClientError('INVALID_OPTION', `delayLevel must be an integer >= 0, got ${m.delayLevel}`)
    if (m.delayLevel > 0) p[PROPERTY.DELAY] = String(m.delayLevel)
  }
  if (m.properties) {
    for (const [k, v] of Object.entries(m.properties)) {
      // As RocketMQ's Message.putUserProperty: no blank names or values, none of its own names.
      if (k.trim() === '') throw new ClientError('INVALID_OPTION', `a property name is a non-blank string, got ${JSON.stringify(k)}`)
      if (RESERVED_PROPERTY_NAMES.has(k)) throw new ClientError('INVALID_OPTION', `property ${JSON.stringify(k)} is one of RocketMQ's reserved names (set it through the message's own fields, if any)`)
      if (typeof v !== 'string' || v === '') throw new ClientError('INVALID_OPTION', `property ${JSON.stringify(k)} must be a non-empty string, got ${JSON.stringify(v)}`)
      p[checkText('a property name', k)] = checkText(`property ${JSON.stringify(k)}`, v)
    }
  }
  const system = (m as InternalMessage)[SYSTEM_PROPERTIES]
  if (system) for (const [k, v] of Object.entries(system)) p[checkText('a property name', k)] = checkText(`property ${JSON.stringify(k)}`, v)
  if (p[PROPERTY.UNIQ_KEY] === undefined) p[PROPERTY.UNIQ_KEY] = uniqKey
  return p
}

/** `text` unless it holds a separator of the properties text, which would add properties to the message. */
function checkText(what: string, text: string): string {
  if (PROPERTY_SEPARATORS.test(text)) throw new ClientError('INVALID_OPTION', `${what} cannot hold the properties' separators 0x01 or 0x02, got ${JSON.stringify(text)}`)
  return text
}

/** The message's flag, a Java int as RocketMQ stores it (0 when not given). */
export function flagOf(m: Message): number {
  const flag = m.flag ?? 0
  if (!Number.isInteger(flag) || flag < -(2 ** 31) || flag >= 2 ** 31) throw new ClientError('INVALID_OPTION', `a message flag is an integer of 32 bits (a Java int), got ${flag}`)
  return flag
}

export function bodyOf(m: Message): Buffer {
  if (typeof m.body === 'string') return Buffer.from(m.body, 'utf8')
  if (Buffer.isBuffer(m.body)) return m.body
  if (m.body instanceof Uint8Array) return Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength)
  throw new ClientError('INVALID_OPTION', `a message body is a Buffer, Uint8Array or string, got ${typeof m.body}`)
}

/**
 * The messages of a pull answer's body (the stored records, concatenated), as RocketMQ's
 * MessageDecoder.decodes reads them: compressed bodies inflated, MIN/MAX_OFFSET added, a retry
 * topic's message shown under its original topic (RETRY_TOPIC).
 */
export function decodeMessages(body: Buffer, brokerName: string, minOffset?: number, maxOffset?: number): MessageExt[] {
  const out: MessageExt[] = []
  let at = 0
  while (at + 4 <= body.length) {
    const size = body.readInt32BE(at)
    if (size <= 0 || at + size > body.length) throw new ClientError('BROKER_ERROR', `a pulled record at byte ${at} says ${size} bytes, the answer has ${body.length - at} left`)
    const r = decodeRecord(body, at, true)
    let msgBody = r.body
    if ((r.sysFlag & SYSFLAG.COMPRESSED) !== 0) msgBody = inflateSync(msgBody)
    const properties = { ...r.properties }
    if (minOffset !== undefined) properties[PROPERTY.MIN_OFFSET] = String(minOffset)
    if (maxOffset !== undefined) properties[PROPERTY.MAX_OFFSET] = String(maxOffset)
    let topic = r.topic
    const retryOf = properties[PROPERTY.RETRY_TOPIC]
    if (topic.startsWith(RETRY_GROUP_TOPIC_PREFIX) && retryOf) topic = retryOf
    out.push({
      topic,
      body: msgBody,
      tags: r.tags,
      keys: r.keys,
      properties,
      msgId: properties[PROPERTY.UNIQ_KEY] ?? r.msgId,
      offsetMsgId: r.msgId,
      brokerName,
      queueId: r.queueId,
      queueOffset: r.queueOffset,
      commitLogOffset: r.physicalOffset,
      reconsumeTimes: r.reconsumeTimes,
      bornTimestamp: r.bornTimestamp,
      bornHost: r.bornHost,
      storeTimestamp: r.storeTimestamp,
      storeHost: r.storeHost,
      flag: r.flag,
      sysFlag: r.sysFlag,
      storeSize: r.storeSize,
    })
    at += size
  }
  return out
}
