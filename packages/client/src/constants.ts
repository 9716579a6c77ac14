/**
 * The client's wire names and defaults: message properties (RocketMQ's MessageConst), topic
 * prefixes (MixAll), permission bits (PermName), and the intervals RocketMQ's Java client uses.
 */

/** Message properties the client reads or writes (RocketMQ 4.x MessageConst). */
export const PROPERTY = {
  KEYS: 'KEYS',
  TAGS: 'TAGS',
  WAIT: 'WAIT',
  DELAY: 'DELAY',
  RETRY_TOPIC: 'RETRY_TOPIC',
  REAL_TOPIC: 'REAL_TOPIC',
  REAL_QID: 'REAL_QID',
  PRODUCER_GROUP: 'PGROUP',
  MIN_OFFSET: 'MIN_OFFSET',
  MAX_OFFSET: 'MAX_OFFSET',
  UNIQ_KEY: 'UNIQ_KEY',
  RECONSUME_TIME: 'RECONSUME_TIME',
  MAX_RECONSUME_TIMES: 'MAX_RECONSUME_TIMES',
  ORIGIN_MESSAGE_ID: 'ORIGIN_MESSAGE_ID',
  CONSUME_START_TIMESTAMP: 'CONSUME_START_TIME',
  CLUSTER: 'CLUSTER',
} as const

/** Keys in the KEYS property are separated by one space. */
export const KEY_SEPARATOR = ' '

/** Topic the broker auto-creates topics from (MixAll.AUTO_CREATE_TOPIC_KEY_TOPIC). */
export const AUTO_CREATE_TOPIC = 'TBW102'
export const DEFAULT_TOPIC_QUEUE_NUMS = 4

export const RETRY_GROUP_TOPIC_PREFIX = '%RETRY%'
export const DLQ_GROUP_TOPIC_PREFIX = '%DLQ%'
export function retryTopic(group: string): string {
  return RETRY_GROUP_TOPIC_PREFIX + group
}

/** Topic permission bits (PermName). */
export const PERM = { READ: 4, WRITE: 2 } as const
export const MASTER_ID = '0'

/** Subscription of every tag. */
export const SUB_ALL = '*'

/** The default intervals and limits, as RocketMQ's Java client has them. */
export const CLIENT_DEFAULTS = {
  routeRefreshIntervalMs: 30_000,
  heartbeatIntervalMs: 30_000,
  requestTimeoutMs: 3_000,
  sendRetries: 2,
  rebalanceIntervalMs: 20_000,
  persistOffsetIntervalMs: 5_000,
  lockRenewIntervalMs: 20_000,
  pullBatchSize: 32,
  suspendMs: 15_000,
  pullTimeoutMs: 30_000,
  pullDelayOnErrorMs: 3_000,
  /** Messages and bytes held per queue before its pull waits (pullThresholdForQueue, pullThresholdSizeForQueue). */
  maxCachedMessagesPerQueue: 1000,
  maxCachedBytesPerQueue: 100 * 1024 * 1024,
  consumeConcurrency: 20,
  maxReconsumeTimes: 16,
  suspendOrderlyMs: 1_000,
} as const

/** PULL_MESSAGE's sysFlag bits (PullSysFlag). */
export const PULL_SYS_FLAG = { COMMIT_OFFSET: 0x1, SUSPEND: 0x2, SUBSCRIPTION: 0x4 } as const

/** Message sysFlag bit of a compressed body (MessageSysFlag.COMPRESSED_FLAG). */
export const SYSFLAG_COMPRESSED = 0x1
