/**
 * On-disk formats and their constants, byte-compatible with Apache RocketMQ 4.x, one module per
 * record: the CommitLog record (and its dispatch view), message properties, message ids, hosts,
 * the ConsumeQueue unit, the checkpoint. docs/design/storage-format.md draws every byte.
 * The record, properties, message ids and hosts are @mqts/message's, re-exported here.
 */
export { javaStringHashCode, readI64, writeI64, writeU64 } from '@mqts/common'
export * from './record.js'
export * from './dispatch-view.js'
export { PROPERTY, PROPERTY_NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR, MAX_PROPERTIES_BYTES, encodeProperties, decodeProperties } from '@mqts/message'
export { hostHexPrefix, offsetHex, createMessageId, MessageIdEncoder, decodeMessageId, type DecodedMessageId } from '@mqts/message'
export { HOST_BYTES_IPV4, HOST_BYTES_IPV6, IPV6_EXTRA_BYTES, MAX_PORT, parseHost, formatHost, hostBytes, type Host } from '@mqts/message'
export * from './consume-queue-unit.js'
export * from './checkpoint.js'
export * from './schedule.js'
