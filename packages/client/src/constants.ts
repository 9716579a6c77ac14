/**
 * The client's wire names and defaults: message properties (RocketMQ's MessageConst), topic
 * prefixes (MixAll), permission bits (PermName), and the intervals RocketMQ's Java client uses.
 */

export { MESSAGE_PROPERTY as PROPERTY } from '@mqts/transport'

/** Keys in the KEYS property are separated by one space. */
export const KEY_SEPARATOR = ' '

export { AUTO_CREATE_TOPIC, DLQ_GROUP_TOPIC_PREFIX, PERM, PULL_SYS_FLAG, RETRY_GROUP_TOPIC_PREFIX, SUB_ALL, retryTopic, splitTagExpression } from '@mqts/transport'
export const DEFAULT_TOPIC_QUEUE_NUMS = 4

export const MASTER_ID = '0'


/** The default intervals and limits, as RocketMQ's Java client has them. */
export const CLIENT_DEFAULTS = {
  routeRefreshIntervalMs: 30_000,
  heartbeatIntervalMs: 30_000,
  requestTimeoutMs: 3_000,
  sendRetries: 2,
  rebalanceIntervalMs: 20_000,
  persistOffsetIntervalMs: 5_000,
  lockRenewIntervalMs: 20_000,
  /** A queue lock not renewed for this long is lost (ProcessQueue's REBALANCE_LOCK_MAX_LIVE_TIME). */
  lockMaxLiveMs: 30_000,
  /** Orderly: how often a consumer asks again for a lock it lost or was refused. */
  relockIntervalMs: 1_000,
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

