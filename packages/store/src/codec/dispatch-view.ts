/**
 * The dispatch view of a CommitLog record: what the ConsumeQueue and the index need, read
 * without decoding the whole record (RocketMQ's DispatchRequest).
 */
import { javaStringHashCode, readI64View } from '@mqts/common'
import { PROPERTY } from '@mqts/message'
import { MESSAGE_MAGIC_CODE_V2, RECORD, layoutOf, topicAt, topicLengthBytes } from './record.js'
import { SCHEDULE_TOPIC, deliverTagsCode } from './schedule.js'

export interface DispatchRequest {
  topic: string
  queueId: number
  physicalOffset: number
  size: number
  /**
   * Java String.hashCode of the TAGS property; 0 without tags. Under SCHEDULE_TOPIC_XXXX with a
   * DELAY level: the delivery time (codec/schedule.ts).
   */
  tagsCode: number
  storeTimestamp: number
  queueOffset: number
  sysFlag: number
  /** The KEYS property (space-separated) and UNIQ_KEY; read only when asked for. */
  keys: string | undefined
  uniqKey: string | undefined
}

const NAME_TAGS = Buffer.from(PROPERTY.TAGS, 'latin1')
const NAME_KEYS = Buffer.from(PROPERTY.KEYS, 'latin1')
const NAME_UNIQ_KEY = Buffer.from(PROPERTY.UNIQ_KEY, 'latin1')
const NAME_DELAY = Buffer.from(PROPERTY.DELAY, 'latin1')
const SEP_NAME_VALUE = 1
const SEP_PROPERTY = 2

function nameIs(source: Buffer, at: number, length: number, name: Buffer): boolean {
  if (length !== name.length) return false
  for (let i = 0; i < length; i++) if (source[at + i] !== name[i]) return false
  return true
}

/** Java String.hashCode of the UTF-8 bytes [from, to), without building a string when ASCII. */
export function javaHashOfUtf8(source: Uint8Array, from: number, to: number): number {
  let h = 0
  for (let i = from; i < to; i++) {
    const c = source[i]!
    if (c >= 0x80) return javaStringHashCode(Buffer.from(source.buffer, source.byteOffset + from, to - from).toString('utf8'))
    h = (Math.imul(31, h) + c) | 0
  }
  return h
}

/** Bytes of the topic length field: 2 with the V2 magic, else 1. */
/**
 * Fills `out` from the message record at `source[at]` (already known to be a message record,
 * not a BLANK). `withKeys` also extracts KEYS and UNIQ_KEY. No CRC check, as RocketMQ's reput.
 * `delayLevelsMs` are the store's delay levels: a SCHEDULE_TOPIC_XXXX record's tags code is its
 * delivery time (codec/schedule.ts).
 */
export function readDispatchRequest(source: Buffer, dv: DataView, at: number, withKeys: boolean, out: DispatchRequest, delayLevelsMs?: readonly number[]): void {
  const totalSize = dv.getInt32(at)
  const magic = dv.getInt32(at + RECORD.magicCode)
  const sysFlag = dv.getInt32(at + RECORD.sysFlag)
  const l = layoutOf(sysFlag)
  const bodyLength = dv.getInt32(at + l.bodyLength)
  let pos = at + l.body + bodyLength
  const topicLength = magic === MESSAGE_MAGIC_CODE_V2 ? dv.getInt16(pos) : source[pos]!
  pos += topicLengthBytes(magic)
  out.topic = topicAt(source, pos, topicLength)
  pos += topicLength
  const propertiesLength = dv.getInt16(pos)
  pos += 2
  out.queueId = dv.getInt32(at + RECORD.queueId)
  out.queueOffset = readI64View(dv, at + RECORD.queueOffset)
  out.physicalOffset = readI64View(dv, at + RECORD.physicalOffset)
  out.size = totalSize
  out.sysFlag = sysFlag
  out.storeTimestamp = readI64View(dv, at + l.storeTimestamp)
  out.tagsCode = 0
  out.keys = undefined
  out.uniqKey = undefined
  const end = pos + propertiesLength
  const scheduled = delayLevelsMs !== undefined && out.topic === SCHEDULE_TOPIC
  // The DELAY value's bytes (the last one, as a Java map keeps it).
  let delayFrom = -1
  let delayTo = -1
  while (pos < end) {
    let sep = pos
    while (sep < end && source[sep] !== SEP_NAME_VALUE && source[sep] !== SEP_PROPERTY) sep++
    if (sep >= end || source[sep] !== SEP_NAME_VALUE) {
      pos = sep + 1
      continue
    }
    let valueEnd = sep + 1
    while (valueEnd < end && source[valueEnd] !== SEP_PROPERTY) valueEnd++
    const nameLength = sep - pos
    if (valueEnd > sep + 1) {
      if (nameIs(source, pos, nameLength, NAME_TAGS)) out.tagsCode = javaHashOfUtf8(source, sep + 1, valueEnd)
      else if (withKeys && nameIs(source, pos, nameLength, NAME_KEYS)) out.keys = source.toString('utf8', sep + 1, valueEnd)
      else if (withKeys && nameIs(source, pos, nameLength, NAME_UNIQ_KEY)) out.uniqKey = source.toString('utf8', sep + 1, valueEnd)
      else if (scheduled && nameIs(source, pos, nameLength, NAME_DELAY)) {
        delayFrom = sep + 1
        delayTo = valueEnd
      }
    }
    pos = valueEnd + 1
  }
  if (delayFrom >= 0) {
    const deliverAt = deliverTagsCode(source.toString('utf8', delayFrom, delayTo), out.storeTimestamp, delayLevelsMs!)
    if (deliverAt !== undefined) out.tagsCode = deliverAt
  }
}

