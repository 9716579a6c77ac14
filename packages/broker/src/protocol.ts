/**
 * The broker's wire names and constants: send header keys (V1 names and V2's one-letter keys),
 * pull flags, message properties the broker reads or sets, batch body layout (reference
 * sections 2.3-2.5 and 3.2).
 */

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

/** PULL_MESSAGE's sysFlag bits (RocketMQ's PullSysFlag). */
export const PULL_SYS_FLAG = {
  COMMIT_OFFSET: 0x1,
  SUSPEND: 0x2,
  SUBSCRIPTION: 0x4,
  CLASS_FILTER: 0x8,
  LITE_PULL: 0x10,
} as const

/** Message properties (RocketMQ's MessageConst) the broker reads or writes. */
export const MESSAGE_PROPERTY = {
  KEYS: 'KEYS',
  TAGS: 'TAGS',
  WAIT: 'WAIT',
  DELAY: 'DELAY',
  RETRY_TOPIC: 'RETRY_TOPIC',
  REAL_TOPIC: 'REAL_TOPIC',
  REAL_QID: 'REAL_QID',
  TRANSACTION_PREPARED: 'TRAN_MSG',
  PRODUCER_GROUP: 'PGROUP',
  MIN_OFFSET: 'MIN_OFFSET',
  MAX_OFFSET: 'MAX_OFFSET',
  UNIQ_KEY: 'UNIQ_KEY',
  MAX_RECONSUME_TIMES: 'MAX_RECONSUME_TIMES',
  ORIGIN_MESSAGE_ID: 'ORIGIN_MESSAGE_ID',
  CLUSTER: 'CLUSTER',
  MSG_REGION: 'MSG_REGION',
  TRACE_SWITCH: 'TRACE_ON',
} as const

/** What every send response carries besides the result (RocketMQ adds region and trace switch). */
export const DEFAULT_REGION_ID = 'DefaultRegion'

/** Batch body entry: [totalSize 4][magic 4][bodyCRC 4][flag 4][bodyLen 4][body][propsLen 2][props]. */
export const BATCH_ENTRY_FIXED_BYTES = 4 + 4 + 4 + 4 + 4 + 2

/** Longest a pull may be held, whatever the client asks (a client's socket timeout is 30 s). */
export const MAX_SUSPEND_MS = 25_000

/** Expression type of a subscription (RocketMQ's ExpressionType). */
export const EXPRESSION_TYPE_TAG = 'TAG'

/** Subscription of everything. */
export const SUB_ALL = '*'
