/**
 * @mqts/store: an embeddable, RocketMQ-compatible message store.
 *
 * ```ts
 * const store = await MessageStore.open({ dir, flush: 'sync' })
 * const r = await store.put({ topic: 'orders', queueId: 0, body: Buffer.from('hi') })
 * const m = await store.lookup(r.physicalOffset)
 * await store.close()
 * ```
 */
export { MessageStore, STORE_PATHS, DEFAULT_COMMIT_LOG_FILE_SIZE_BYTES } from './message-store.js'
export type {
  MessageStoreOptions,
  PutMessage,
  EncodedBatch,
  PutResult,
  PutStatus,
  StoreStatus,
  GetMessageRequest,
  GetMessageResult,
  GetMessageStatus,
  RawRecord,
  CommittedListener,
  MessageArrivedListener,
  StoreRole,
} from './message-store.js'
export type { RetentionOptions, RetentionResult } from './retention.js'
export { DEFAULT_RETENTION } from './retention.js'
export type { DispatchRequest } from './codec/index.js'
export type { DispatchListener } from './dispatcher.js'
export type { RecoveryReport, FlushMode } from './commit-log.js'
export type { TopicQueues } from './topics.js'
export type { StoredMessage, DecodedMessageId } from './codec/index.js'
export { decodeMessageId, javaStringHashCode } from './codec/index.js'
export { decodeProperties, encodeProperties, decodeRecord } from './codec/index.js'
export { SCHEDULE_TOPIC, DEFAULT_MESSAGE_DELAY_LEVEL, PROPERTY, parseDelayLevels, parseJavaInt, toScheduledMessage } from './codec/index.js'
export type { SchedulableMessage } from './codec/index.js'
export { StoreError } from './errors.js'
export type { StoreErrorCode } from './errors.js'
export { crc32Implementation } from './crc.js'
