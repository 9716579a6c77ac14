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

/** CONSUMER_SEND_MSG_BACK's delayLevel asking the broker for the DLQ at once (RocketMQ's -1). */
export const SEND_BACK_TO_DLQ = -1

/**
 * The property names RocketMQ keeps for itself (MessageConst.STRING_HASH_SET, 4.9): its
 * Message.putUserProperty refuses them, so a user property never overrides a message's tags,
 * keys, id, delay or the broker's retry and schedule bookkeeping.
 */
export const RESERVED_PROPERTY_NAMES: ReadonlySet<string> = new Set([
  'KEYS', 'TAGS', 'WAIT', 'DELAY', 'RETRY_TOPIC', 'REAL_TOPIC', 'REAL_QID', 'TRAN_MSG', 'PGROUP',
  'MIN_OFFSET', 'MAX_OFFSET', 'BUYER_ID', 'ORIGIN_MESSAGE_ID', 'TRANSFER_FLAG', 'CORRECTION_FLAG',
  'MQ2_FLAG', 'RECONSUME_TIME', 'MSG_REGION', 'TRACE_ON', 'UNIQ_KEY', 'EXTEND_UNIQ_INFO',
  'MAX_RECONSUME_TIMES', 'CONSUME_START_TIME', 'TRAN_PREPARED_QUEUE_OFFSET', 'TRANSACTION_CHECK_TIMES',
  'CHECK_IMMUNITY_TIME_IN_SECONDS', 'INSTANCE_ID', 'CORRELATION_ID', 'REPLY_TO_CLIENT', 'TTL',
  'ARRIVE_TIME', 'PUSH_REPLY_TIME', 'CLUSTER', 'MSG_TYPE', 'POP_CK', 'POP_CK_OFFSET', '1ST_POP_TIME',
  '__SHARDINGKEY', 'DUP_INFO', 'INNER_MULTI_DISPATCH', 'INNER_MULTI_QUEUE_OFFSET', 'TRACE_CONTEXT',
])

/** The properties text's separators (name 0x01 value 0x02): a tag, key, name or value holding one would add properties. */
export const PROPERTY_SEPARATORS = /[\u0001\u0002]/

/**
 * The broker's own topics (RocketMQ's TopicValidator.isSystemTopic, which Validators refuses a
 * send to): the schedule and transaction topics, the auto-create template and rmq_sys_*.
 */
export const SYSTEM_TOPICS: ReadonlySet<string> = new Set([
  'TBW102', 'SCHEDULE_TOPIC_XXXX', 'BenchmarkTest', 'RMQ_SYS_TRANS_HALF_TOPIC', 'RMQ_SYS_TRACE_TOPIC',
  'RMQ_SYS_TRANS_OP_HALF_TOPIC', 'TRANS_CHECK_MAX_TIME_TOPIC', 'SELF_TEST_TOPIC', 'OFFSET_MOVED_EVENT',
])
export const SYSTEM_TOPIC_PREFIX = 'rmq_sys_'

export function isSystemTopic(topic: string): boolean {
  return SYSTEM_TOPICS.has(topic) || topic.toLowerCase().startsWith(SYSTEM_TOPIC_PREFIX)
}


/** Node's timers take at most 2^31 - 1 ms; a longer delay fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1
/** A long-polling pull's request waits this much longer than the broker may hold it. */
export const PULL_TIMEOUT_MARGIN_MS = 5_000
/** The longest suspendMs: its request's timeout must still fit a timer. */
export const MAX_SUSPEND_MS = MAX_TIMER_MS - PULL_TIMEOUT_MARGIN_MS

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

