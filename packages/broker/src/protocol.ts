/**
 * The broker's wire names and constants: send header keys (V1 names and V2's one-letter keys),
 * pull flags, message properties the broker reads or sets, batch body layout (reference
 * sections 2.3-2.5 and 3.2). The names clients use too (properties, pull flags) are
 * @mqts/transport's message-const.ts, re-exported here.
 */
export { MESSAGE_PROPERTY, PULL_SYS_FLAG, SUB_ALL } from '@mqts/transport'

/** SEND_MESSAGE_V2's one-letter header keys, by the V1 field they stand for. */
export const SEND_V2_KEY = {
  producerGroup: 'a',
  topic: 'b',
  defaultTopic: 'c',
  defaultTopicQueueNums: 'd',
  queueId: 'e',
  sysFlag: 'f',
  bornTimestamp: 'g',
  flag: 'h',
  properties: 'i',
  reconsumeTimes: 'j',
  unitMode: 'k',
  maxReconsumeTimes: 'l',
  batch: 'm',
  brokerName: 'n',
} as const



/** What every send response carries besides the result (RocketMQ adds region and trace switch). */
export const DEFAULT_REGION_ID = 'DefaultRegion'

/** Batch body entry: [totalSize 4][magic 4][bodyCRC 4][flag 4][bodyLen 4][body][propsLen 2][props]. */
export { BATCH_ENTRY_FIXED_BYTES } from '@mqts/transport'

/** Longest a pull may be held, whatever the client asks (a client's socket timeout is 30 s). */
export const MAX_SUSPEND_MS = 25_000

/** Expression type of a subscription (RocketMQ's ExpressionType). */
export const EXPRESSION_TYPE_TAG = 'TAG'

/**
 * GET_ALL_TOPIC_CONFIG's body field beyond RocketMQ's TopicConfigSerializeWrapper: each topic the
 * master deleted, with the CommitLog offset of the deletion (its records below it are deleted).
 */
export const DELETED_TOPIC_OFFSETS = 'deletedTopicOffsets'
