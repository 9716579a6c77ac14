/**
 * The CommitLog record as the store uses it. The format itself (layout, encode, decode) is
 * @mqts/message's, re-exported here; this module adds what only a store needs: the body CRC
 * from the store's fast implementation when a record is prepared, its size limits, and the
 * checks of records found on disk (recovery), which recompute every length and the CRC.
 */
import { readI64 } from '@mqts/common'
import {
  BLANK_MAGIC_CODE,
  MESSAGE_MAGIC_CODE_V1,
  MESSAGE_MAGIC_CODE_V2,
  PROPERTY_SEPARATOR,
  RECORD,
  RECORD_FIXED_BYTES_V1,
  TOPIC_BYTE,
  layoutOf,
  prepareRecordOf,
  type PreparedMessage,
} from '@mqts/message'
import { bodyCrc, bodyCrcAt, type BodyCrcCheck } from '../crc.js'

export {
  MESSAGE_MAGIC_CODE_V1,
  MESSAGE_MAGIC_CODE_V2,
  BLANK_MAGIC_CODE,
  END_FILE_MIN_BLANK_LENGTH,
  RECORD,
  RECORD_FIXED_BYTES_V1,
  SYSFLAG,
  SYSFLAG_ACCEPTED_MASK,
  withHostFlags,
  TOPIC_MAX_LENGTH,
  TOPIC_MAX_LENGTH_V2,
  TOPIC_PATTERN,
  BODY_CRC_PENDING,
  takesQueueOffset,
  recordSize,
  prepareRecordOf,
  dataViewOf,
  encodeRecord,
  encodeBlank,
  layoutOf,
  readStoreTimestamp,
  decodeRecord,
  topicLengthBytes,
  topicAt,
} from '@mqts/message'
export type { PreparedMessage, PendingBodyCrcs, BodyCopier, StoredMessage, Layout } from '@mqts/message'

/** RocketMQ's maxMessageSize default (4 MiB); the whole record may exceed it by 64 KiB. */
export const DEFAULT_MAX_MESSAGE_SIZE_BYTES = 4 * 1024 * 1024
export const RECORD_OVERHEAD_ALLOWANCE_BYTES = 64 * 1024


/** A message measured for its record, its body CRC computed now (prepareRecordOf with fields by name). */
export function prepareRecord(
  fields: Omit<PreparedMessage, 'bodyCrc' | 'propertiesAt' | 'propertiesBytes' | 'totalSize' | 'magicCode' | 'tagsCode' | 'keys' | 'uniqKey'> &
    Partial<Pick<PreparedMessage, 'tagsCode' | 'keys' | 'uniqKey'>>,
): PreparedMessage {
  return prepareRecordOf(
    fields.topic,
    fields.topicBytes,
    fields.queueId,
    fields.flag,
    fields.sysFlag,
    fields.bornTimestamp,
    fields.bornHost,
    fields.reconsumeTimes,
    fields.preparedTransactionOffset,
    fields.body,
    fields.properties,
    fields.tagsCode ?? 0,
    fields.keys,
    fields.uniqKey,
    bodyCrc(fields.body),
  )
}

/** What recovery finds at a position. */
export type RecordCheck =
  | { kind: 'record'; size: number; queueId: number; queueOffset: number; sysFlag: number; storeTimestamp: number; topic: string }
  | { kind: 'blank' }
  | { kind: 'end' }
  | { kind: 'bad'; reason: string }

/**
 * Validates the record at `source[at]`, which must sit at `physicalOffset` and end before
 * `limit`: size, magic, recomputed length, own physical offset and (if `verifyCrc`) body CRC.
 */
export function checkRecord(source: Buffer, at: number, limit: number, physicalOffset: number, maxRecordBytes: number, verifyCrc: boolean): RecordCheck {
  const v = verifyRecord(source, at, limit, physicalOffset, maxRecordBytes, verifyCrc)
  if (typeof v === 'string') return { kind: 'bad', reason: v }
  if (v === RECORD_END) return { kind: 'end' }
  if (v === RECORD_BLANK) return { kind: 'blank' }
  const magic = source.readInt32BE(at + 4)
  const sysFlag = source.readInt32BE(at + RECORD.sysFlag)
  const l = layoutOf(sysFlag)
  let pos = at + l.body + source.readInt32BE(at + l.bodyLength)
  let topicLength: number
  if (magic === MESSAGE_MAGIC_CODE_V2) {
    topicLength = source.readInt16BE(pos)
    pos += 2
  } else {
    topicLength = source[pos]!
    pos += 1
  }
  return {
    kind: 'record',
    size: v,
    queueId: source.readInt32BE(at + RECORD.queueId),
    queueOffset: readI64(source, at + RECORD.queueOffset),
    sysFlag,
    storeTimestamp: readI64(source, at + l.storeTimestamp),
    topic: source.toString('utf8', pos, pos + topicLength),
  }
}

/**
 * verifyRecord leaves to `crcLater` the CRCs of bodies under this size: for those the native
 * call costs more than the CRC. A larger body is checked at once, while its bytes stream through
 * the cache on the way to the next record (checked later, a 1 KiB body measured slower: its
 * lines are read twice).
 */
export const CRC_LATER_MAX_BODY_BYTES = 512

/**
 * The last byte of non-empty properties: every put ends them with it (RocketMQ's clients end each
 * entry with 0x02; the put path adds one a caller left off), and so has every mqts version.
 */
export const PROPERTIES_LAST_BYTE = PROPERTY_SEPARATOR.charCodeAt(0)

/** verifyRecord: no record, the end of the data (zeros or fewer than 8 bytes left). */
export const RECORD_END = 0
/** verifyRecord: an end-of-file BLANK record filling the rest of the file. */
export const RECORD_BLANK = -1

/**
 * checkRecord without building a result (the recovery scan, once per record): the record's
 * size (> 0), RECORD_END, RECORD_BLANK, or why the bytes are not a record.
 *
 * With `crcLater` (and `verifyCrc`) the CRC of a body under CRC_LATER_MAX_BODY_BYTES is not
 * computed but added to it, checked later with the records around it (the recovery scan).
 * With `propertiesEnd`, non-empty properties must end with PROPERTIES_LAST_BYTE: the body CRC
 * does not cover them, and a record torn there ends in zeros. Recovery asks it only past the
 * durable offset (records this version wrote), never of records other writers stored.
 */
export function verifyRecord(
  source: Buffer,
  at: number,
  limit: number,
  physicalOffset: number,
  maxRecordBytes: number,
  verifyCrc: boolean,
  crcLater?: BodyCrcCheck,
  propertiesEnd = false,
): number | string {
  if (limit - at < 8) return RECORD_END
  const totalSize = source.readInt32BE(at)
  const magic = source.readInt32BE(at + 4)
  if (magic === BLANK_MAGIC_CODE) {
    return totalSize === limit - at ? RECORD_BLANK : `blank marker claims ${totalSize} bytes, ${limit - at} remain`
  }
  if (totalSize === 0 && magic === 0) return RECORD_END
  if (magic !== MESSAGE_MAGIC_CODE_V1 && magic !== MESSAGE_MAGIC_CODE_V2) return `bad magic code 0x${(magic >>> 0).toString(16)}`
  if (totalSize < RECORD_FIXED_BYTES_V1 || totalSize > maxRecordBytes) return `bad total size ${totalSize}`
  if (totalSize > limit - at) return `record of ${totalSize} bytes runs past the end of the file`
  const sysFlag = source.readInt32BE(at + RECORD.sysFlag)
  const l = layoutOf(sysFlag)
  const end = at + totalSize
  if (at + l.body > end) return 'record shorter than its header'
  const bodyLength = source.readInt32BE(at + l.bodyLength)
  if (bodyLength < 0 || at + l.body + bodyLength + 1 > end) return `bad body length ${bodyLength}`
  let pos = at + l.body + bodyLength
  let topicLength: number
  if (magic === MESSAGE_MAGIC_CODE_V2) {
    if (pos + 2 > end) return 'truncated topic length'
    topicLength = source.readInt16BE(pos)
    pos += 2
  } else {
    topicLength = source[pos]!
    pos += 1
  }
  if (topicLength <= 0 || pos + topicLength + 2 > end) return `bad topic length ${topicLength}`
  const topicAt = pos
  pos += topicLength
  const propertiesLength = source.readInt16BE(pos)
  pos += 2
  if (propertiesLength < 0 || pos + propertiesLength !== end) return 'recomputed length differs from total size'
  if (propertiesEnd && propertiesLength > 0 && source[end - 1] !== PROPERTIES_LAST_BYTE) return `properties end with 0x${source[end - 1]!.toString(16)}, not 0x02`
  const storedOffset = readI64(source, at + RECORD.physicalOffset)
  if (storedOffset !== physicalOffset) return `record says physical offset ${storedOffset}`
  // The body CRC does not cover the topic: a torn sector there must not pass as a record.
  for (let i = topicAt; i < topicAt + topicLength; i++) {
    if (!TOPIC_BYTE[source[i]!]) return `topic byte 0x${source[i]!.toString(16)} outside [%|a-zA-Z0-9_-]`
  }
  if (verifyCrc) {
    const expected = source.readInt32BE(at + RECORD.bodyCrc)
    if (crcLater && bodyLength < CRC_LATER_MAX_BODY_BYTES) {
      crcLater.add(at + l.body, bodyLength, expected)
      return totalSize
    }
    const actual = bodyCrcAt(source, at + l.body, bodyLength)
    if (expected !== actual) return `body CRC ${actual} differs from stored ${expected}`
  }
  return totalSize
}

/** Name of a data file: its start offset as 20 zero-padded decimal digits. */
export function offsetToFileName(offset: number): string {
  return String(offset).padStart(20, '0')
}

export const DATA_FILE_NAME_PATTERN = /^\d{20}$/

