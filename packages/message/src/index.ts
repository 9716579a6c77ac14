/**
 * @mqts/message: RocketMQ 4.x's stored message, byte for byte, without a store: the CommitLog
 * record (encode, decode, layout), message properties as text, offset message ids and the hosts
 * they hold. The store writes records with it, the broker and the client read them; it needs no
 * native code, so a client does not install the store to decode what it pulls.
 *
 * ```ts
 * const m = decodeRecord(pulled, 0)
 * console.log(m.topic, m.tags, m.keys, m.msgId, decodeMessageId(m.msgId)?.physicalOffset)
 * ```
 */
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
  TOPIC_BYTE,
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
} from './record.js'
export type { PreparedMessage, PendingBodyCrcs, BodyCopier, StoredMessage, Layout } from './record.js'
export { PROPERTY, PROPERTY_NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR, MAX_PROPERTIES_BYTES, encodeProperties, decodeProperties } from './properties.js'
export { hostHexPrefix, offsetHex, createMessageId, MessageIdEncoder, decodeMessageId, joinOffsetMessageIds } from './message-id.js'
export type { DecodedMessageId } from './message-id.js'
export { HOST_BYTES_IPV4, HOST_BYTES_IPV6, IPV6_EXTRA_BYTES, MAX_PORT, parseHost, formatHost, hostBytes } from './host.js'
export type { Host } from './host.js'
export { BATCH_ENTRY, BATCH_ENTRY_FIXED_BYTES, encodeBatchBody, readBatchEntry, walkBatchBody } from './batch-body.js'
export type { BatchEntry, BatchEntryPosition, BatchEntryVisitor } from './batch-body.js'
export { MessageError } from './errors.js'
export type { MessageErrorCode } from './errors.js'
