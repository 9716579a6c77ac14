/**
 * What turns a PutMessage into a PreparedMessage the CommitLog appends: the message checked
 * (put-input.ts holds the checks of single arguments), its topic's state found or made, its
 * properties encoded, and its record measured against the store's limits.
 */
import type { CommitLog, TopicState } from './commit-log.js'
import { StoreError } from './errors.js'
import { bodyCrc } from './crc.js'
import {
  BODY_CRC_PENDING,
  MAX_PROPERTIES_BYTES,
  PROPERTY,
  SCHEDULE_TOPIC,
  TOPIC_MAX_LENGTH,
  TOPIC_MAX_LENGTH_V2,
  TOPIC_PATTERN,
  SYSFLAG,
  javaStringHashCode,
  parseHost,
  parseJavaInt,
  prepareRecordOf,
  withHostFlags,
  type Host,
  type PreparedMessage,
} from './codec/index.js'
import { readBatchEntry, type BatchEntryPosition } from '@mqts/message'
import {
  checkEncodedProperties,
  checkEncodedPropertyBytes,
  checkEncodedPropertyRange,
  checkInt,
  checkOffset,
  checkPutQueueId,
  checkSysFlag,
  checkTopicText,
  describe,
  encodePutProperties,
  keysProperty,
  type EncodedProperties,
} from './put-input.js'

export interface PutMessage {
  topic: string
  queueId: number
  body: Buffer | Uint8Array | string
  /** Stored as the TAGS property. */
  tags?: string
  /**
   * Stored space-separated as the KEYS property: a string is RocketMQ's own form ("k1 k2" is two
   * keys); in an array each element is one key and may not contain a space.
   */
  keys?: string | string[]
  /** A plain object of non-empty string values. */
  properties?: Record<string, string>
  /**
   * The properties already encoded (name 0x01 value 0x02, repeated), as a RocketMQ client sends
   * them: stored as given, without a decode and a re-encode (a broker's path). Checked as the object
   * form is (INVALID_PROPERTY); given with `tags`, `keys` or `properties` it is INVALID_ARGUMENT.
   */
  propertiesText?: string
  /**
   * propertiesText as its UTF-8 bytes (a view of a RocketMQ batch request, say): copied into the
   * record as they are, without a decode and an encode. Checked as propertiesText is, and must be
   * well-formed UTF-8 (INVALID_PROPERTY); given with propertiesText, `tags`, `keys` or
   * `properties` it is INVALID_ARGUMENT.
   */
  propertiesBytes?: Uint8Array
  /** Java int. */
  flag?: number
  /**
   * RocketMQ's sysFlag: 0x1 COMPRESSED, 0x2 MULTI_TAGS, 0xc transaction type, 0x300 compression type
   * (with COMPRESSED). The IPv6 host bits 0x10 / 0x20 are set by the store from the hosts it
   * writes, whatever is passed here; any other bit is refused with INVALID_ARGUMENT.
   */
  sysFlag?: number
  bornTimestamp?: number
  /** "a.b.c.d:port" or "[ipv6]:port"; default 127.0.0.1:0. */
  bornHost?: string
  reconsumeTimes?: number
  preparedTransactionOffset?: number
}

/**
 * Messages already encoded as RocketMQ's batch body (MessageStore.putEncodedBatch, RocketMQ's
 * putMessages of a MessageExtBatch): what the messages share, and the body holding each one's
 * flag, body and encoded properties, which are copied into the records as they are. As RocketMQ's
 * putMessages: the whole body at most maxMessageSize (MESSAGE_TOO_LARGE), no transaction type in
 * sysFlag (INVALID_ARGUMENT).
 */
export interface EncodedBatch {
  topic: string
  queueId: number
  /**
   * | totalSize 4 | magic 4 | bodyCRC 4 | flag 4 | bodyLength 4 | body | propertiesLength 2 |
   * properties |, one entry per message, big-endian (MessageDecoder.encodeMessages; magic and
   * bodyCRC are not read). Each entry's properties are checked as PutMessage.propertiesBytes.
   */
  body: Uint8Array
  sysFlag?: number
  bornTimestamp?: number
  bornHost?: string
  reconsumeTimes?: number
}

/** An encoded batch's messages prepared: one topic state for all, and the sum of their sizes. */
export interface PreparedBatch {
  messages: PreparedMessage[]
  state: TopicState
  total: number
}

export interface PutPreparerOptions {
  commitLog: CommitLog
  storeHost: Host
  maxQueuesPerTopic: number
  maxMessageSize: number
  maxRecordBytes: number
}

const DEFAULT_BORN_HOST: Host = { ip: 0x7f000001, port: 0, ipv6: undefined }
/** Born hosts parsed and kept; the cache starts over beyond this many. */
const BORN_HOST_CACHE_MAX = 4096

/** A topic a message may be stored under: RocketMQ's alphabet and length limits. */
export function checkTopicName(topic: unknown): asserts topic is string {
  checkTopicText(topic)
  if (!TOPIC_PATTERN.test(topic)) throw new StoreError('TOPIC_INVALID', `topic ${JSON.stringify(topic)} has characters outside [%|a-zA-Z0-9_-]`)
  const limit = topic.startsWith('%RETRY%') || topic.startsWith('%DLQ%') ? TOPIC_MAX_LENGTH_V2 : TOPIC_MAX_LENGTH
  if (topic.length > limit) throw new StoreError('TOPIC_INVALID', `topic is ${topic.length} characters, the limit is ${limit}`)
}

/** RocketMQ's dispatch fails on a scheduled record whose level is not a Java int. */
function checkScheduledDelay(topic: string, delay: string | undefined): void {
  if (delay !== undefined && topic === SCHEDULE_TOPIC && parseJavaInt(delay) === undefined) {
    throw new StoreError('INVALID_PROPERTY', `property ${PROPERTY.DELAY} of a ${SCHEDULE_TOPIC} message must be a delay level (a Java int), got ${JSON.stringify(delay)}`)
  }
}

/** Checks and measures the messages of puts, one at a time. */
export class PutPreparer {
  /** The topic of the message prepare() returned last (saves an array per put). */
  preparedState: TopicState | undefined
  readonly #log: CommitLog
  readonly #storeHost: Host
  readonly #maxQueuesPerTopic: number
  readonly #maxMessageSize: number
  readonly #maxRecordBytes: number
  /** Body CRCs are computed by the append, a batch at a time (CommitLog.defersBodyCrc). */
  readonly #crcPending: boolean
  readonly #bornHostCache = new Map<string, Host>()
  /** The born host text of the last message and its host: a batch's messages share one string. */
  #lastBornHostText: unknown = undefined
  #lastBornHost: Host = DEFAULT_BORN_HOST
  /** Reused by prepareEncodedBatch for each entry's position and its checked properties. */
  readonly #entry: BatchEntryPosition = { flag: 0, bodyStart: 0, bodyEnd: 0, propsStart: 0, propsEnd: 0 }
  readonly #entryProperties: EncodedProperties = { text: '', tags: undefined, tagsCode: undefined, keys: undefined, uniqKey: undefined, delay: undefined }

  constructor(options: PutPreparerOptions) {
    this.#log = options.commitLog
    this.#storeHost = options.storeHost
    this.#maxQueuesPerTopic = options.maxQueuesPerTopic
    this.#maxMessageSize = options.maxMessageSize
    this.#maxRecordBytes = options.maxRecordBytes
    this.#crcPending = options.commitLog.defersBodyCrc
  }

  /** Validates and measures `m`; its topic's state is left in `preparedState`. */
  prepare(m: PutMessage, now: number): PreparedMessage {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new StoreError('INVALID_ARGUMENT', `a message must be an object, got ${describe(m)}`)
    const st = this.#topicFor(m.topic)
    const queueId = checkPutQueueId(m.queueId, this.#maxQueuesPerTopic)
    let body: Uint8Array
    if (m.body instanceof Uint8Array) body = m.body
    else if (typeof m.body === 'string') body = Buffer.from(m.body, 'utf8')
    else throw new StoreError('INVALID_ARGUMENT', `body must be a Buffer, Uint8Array or string, got ${describe(m.body)}`)
    if (body.length > this.#maxMessageSize) {
      throw new StoreError('MESSAGE_TOO_LARGE', `body of ${body.length} bytes exceeds maxMessageSize ${this.#maxMessageSize}`, { details: { bytes: body.length, limit: this.#maxMessageSize } })
    }
    let properties: string | Uint8Array = ''
    let tagsCode = 0
    let keys: string | undefined
    let uniqKey: string | undefined
    if (m.propertiesText !== undefined || m.propertiesBytes !== undefined) {
      if (m.keys !== undefined || m.tags !== undefined || m.properties !== undefined || (m.propertiesText !== undefined && m.propertiesBytes !== undefined)) {
        throw new StoreError('INVALID_ARGUMENT', 'propertiesText or propertiesBytes is the whole properties: give one of them, without tags, keys or properties')
      }
      const given = m.propertiesBytes !== undefined ? checkEncodedPropertyBytes(m.propertiesBytes) : checkEncodedProperties(m.propertiesText)
      properties = given.text
      if (given.tagsCode !== undefined) tagsCode = given.tagsCode
      else if (given.tags !== undefined) tagsCode = javaStringHashCode(given.tags)
      keys = given.keys
      uniqKey = given.uniqKey
      checkScheduledDelay(st.topic, given.delay)
    } else if (m.keys !== undefined || m.tags !== undefined || m.properties !== undefined) {
      const givenKeys = m.keys === undefined ? undefined : keysProperty(m.keys)
      properties = encodePutProperties(givenKeys, m)
      // Checked by encodePutProperties: a plain object of non-empty strings.
      const props = m.properties
      const tags = m.tags ?? props?.[PROPERTY.TAGS]
      if (tags !== undefined) tagsCode = javaStringHashCode(tags)
      keys = m.keys !== undefined ? givenKeys : props?.[PROPERTY.KEYS]
      uniqKey = props?.[PROPERTY.UNIQ_KEY]
      checkScheduledDelay(st.topic, props?.[PROPERTY.DELAY])
    }
    const bornHost = this.#bornHost(m.bornHost)
    const prepared = prepareRecordOf(
      st.topic,
      st.bytes,
      queueId,
      m.flag === undefined ? 0 : checkInt('flag', m.flag),
      // The host bits follow the hosts written, whatever the caller's sysFlag says (checkSysFlag).
      withHostFlags(checkSysFlag(m.sysFlag), bornHost, this.#storeHost),
      m.bornTimestamp === undefined ? now : checkOffset('bornTimestamp', m.bornTimestamp),
      bornHost,
      m.reconsumeTimes === undefined ? 0 : checkInt('reconsumeTimes', m.reconsumeTimes, 0),
      m.preparedTransactionOffset === undefined ? 0 : checkOffset('preparedTransactionOffset', m.preparedTransactionOffset),
      body,
      properties,
      tagsCode,
      keys,
      uniqKey,
      this.#crcPending ? BODY_CRC_PENDING : bodyCrc(body),
    )
    this.#checkMeasured(prepared)
    this.preparedState = st
    return prepared
  }

  /**
   * Validates and measures the messages of an encoded batch: the shared fields once, then each
   * entry (its body a view of the batch, its properties a range of it). A malformed entry, or a
   * batch without one, is INVALID_ARGUMENT.
   */
  prepareEncodedBatch(batch: EncodedBatch, now: number): PreparedBatch {
    if (batch === null || typeof batch !== 'object' || Array.isArray(batch)) throw new StoreError('INVALID_ARGUMENT', `an encoded batch must be an object, got ${describe(batch)}`)
    const bytes = batch.body
    if (!(bytes instanceof Uint8Array)) throw new StoreError('INVALID_ARGUMENT', `an encoded batch's body must be a Uint8Array (RocketMQ's batch body), got ${describe(bytes)}`)
    if (bytes.length === 0) throw new StoreError('INVALID_ARGUMENT', 'the encoded batch holds no message')
    // RocketMQ's putMessages: the whole body within maxMessageSize, no transaction type.
    if (bytes.length > this.#maxMessageSize) {
      throw new StoreError('MESSAGE_TOO_LARGE', `encoded batch of ${bytes.length} bytes exceeds maxMessageSize ${this.#maxMessageSize}`, { details: { bytes: bytes.length, limit: this.#maxMessageSize } })
    }
    const st = this.#topicFor(batch.topic)
    const queueId = checkPutQueueId(batch.queueId, this.#maxQueuesPerTopic)
    const bornHost = this.#bornHost(batch.bornHost)
    const sysFlag = withHostFlags(checkSysFlag(batch.sysFlag), bornHost, this.#storeHost)
    if ((sysFlag & SYSFLAG.TRANSACTION_MASK) !== 0) {
      throw new StoreError('INVALID_ARGUMENT', `an encoded batch cannot be transactional (sysFlag 0x${sysFlag.toString(16)} has transaction type 0x${(sysFlag & SYSFLAG.TRANSACTION_MASK).toString(16)})`)
    }
    const bornTimestamp = batch.bornTimestamp === undefined ? now : checkOffset('bornTimestamp', batch.bornTimestamp)
    const reconsumeTimes = batch.reconsumeTimes === undefined ? 0 : checkInt('reconsumeTimes', batch.reconsumeTimes, 0)
    const messages: PreparedMessage[] = []
    const entry = this.#entry
    const buffer = bytes.buffer
    const base = bytes.byteOffset
    let total = 0
    for (let at = 0; at < bytes.length; ) {
      try {
        at = readBatchEntry(bytes, at, entry)
      } catch (err) {
        throw new StoreError('INVALID_ARGUMENT', `the encoded batch is malformed: ${(err as Error).message}`, { details: { message: messages.length } })
      }
      // Each body is within maxMessageSize: the whole batch is (checked above).
      const bodyLength = entry.bodyEnd - entry.bodyStart
      const given = checkEncodedPropertyRange(bytes, entry.propsStart, entry.propsEnd, this.#entryProperties)
      checkScheduledDelay(st.topic, given.delay)
      // Stored as they are (a range of the batch), or as the text that completed them.
      const asIs = given.text === bytes
      const body = new Uint8Array(buffer, base + entry.bodyStart, bodyLength)
      const prepared = prepareRecordOf(
        st.topic,
        st.bytes,
        queueId,
        entry.flag,
        sysFlag,
        bornTimestamp,
        bornHost,
        reconsumeTimes,
        0,
        body,
        given.text,
        given.tagsCode ?? (given.tags !== undefined ? javaStringHashCode(given.tags) : 0),
        given.keys,
        given.uniqKey,
        this.#crcPending ? BODY_CRC_PENDING : bodyCrc(body),
        asIs ? entry.propsStart : 0,
        asIs ? entry.propsEnd : undefined,
      )
      this.#checkMeasured(prepared)
      messages.push(prepared)
      total += prepared.totalSize
    }
    this.preparedState = st
    return { messages, state: st, total }
  }

  /** The limits on a measured message's properties and record. */
  #checkMeasured(prepared: PreparedMessage): void {
    if (prepared.propertiesBytes > MAX_PROPERTIES_BYTES) {
      throw new StoreError('PROPERTIES_TOO_LONG', `properties take ${prepared.propertiesBytes} bytes, the limit is ${MAX_PROPERTIES_BYTES}`)
    }
    if (prepared.totalSize > this.#maxRecordBytes) {
      throw new StoreError('MESSAGE_TOO_LARGE', `record of ${prepared.totalSize} bytes exceeds the limit of ${this.#maxRecordBytes}`, { details: { bytes: prepared.totalSize, limit: this.#maxRecordBytes } })
    }
  }

  /** The state of a known topic at the cost of one lookup; a new name is checked once. */
  #topicFor(topic: unknown): TopicState {
    if (typeof topic === 'string') {
      const known = this.#log.topics.get(topic)
      if (known) return known
    }
    checkTopicName(topic)
    return this.#log.topicState(topic, Buffer.from(topic, 'latin1'))
  }

  #bornHost(text: unknown): Host {
    if (text === undefined) return DEFAULT_BORN_HOST
    if (text === this.#lastBornHostText) return this.#lastBornHost
    if (typeof text !== 'string') throw new StoreError('INVALID_ARGUMENT', `bornHost must be "a.b.c.d:port" or "[ipv6]:port", got ${describe(text)}`)
    let host = this.#bornHostCache.get(text)
    if (!host) {
      host = parseHost(text)
      if (!host) throw new StoreError('INVALID_ARGUMENT', `bornHost must be "a.b.c.d:port" or "[ipv6]:port", got ${describe(text)}`)
      if (this.#bornHostCache.size > BORN_HOST_CACHE_MAX) this.#bornHostCache.clear()
      this.#bornHostCache.set(text, host)
    }
    this.#lastBornHostText = text
    this.#lastBornHost = host
    return host
  }
}
