/**
 * RocketMQ's names that brokers and clients both use on the wire: message properties
 * (MessageConst), topic prefixes and the auto-create template (MixAll), permission bits
 * (PermName), PULL_MESSAGE's flags (PullSysFlag), and the route shapes a nameserver answers
 * (TopicRouteData and its parts). Kept once, here, for every package that speaks the protocol.
 */

/** Message properties (RocketMQ 4.x MessageConst): the stored message codec's list, under the wire's name. */
export { PROPERTY as MESSAGE_PROPERTY } from '@mqts/message'

/** Topic prefixes of a consumer group's retry and dead-letter queues (MixAll). */
export const RETRY_GROUP_TOPIC_PREFIX = '%RETRY%'
export const DLQ_GROUP_TOPIC_PREFIX = '%DLQ%'

export function retryTopic(group: string): string {
  return RETRY_GROUP_TOPIC_PREFIX + group
}

export function dlqTopic(group: string): string {
  return DLQ_GROUP_TOPIC_PREFIX + group
}

/** The topic auto-created topics are made from (MixAll.AUTO_CREATE_TOPIC_KEY_TOPIC). */
export const AUTO_CREATE_TOPIC = 'TBW102'

/**
 * The system topics no producer may send to (TopicValidator's NOT_ALLOWED_SEND_TOPIC_SET): the
 * broker writes them itself. A send to SCHEDULE_TOPIC_XXXX would otherwise be delivered, when due,
 * to whatever REAL_TOPIC it names, past that topic's permissions.
 */
export const NOT_ALLOWED_SEND_TOPICS: ReadonlySet<string> = new Set([
  'SCHEDULE_TOPIC_XXXX',
  'RMQ_SYS_TRANS_HALF_TOPIC',
  'RMQ_SYS_TRANS_OP_HALF_TOPIC',
  'TRANS_CHECK_MAX_TIME_TOPIC',
  'SELF_TEST_TOPIC',
  'OFFSET_MOVED_EVENT',
])

/** Topic permission bits (PermName). */
export const PERM = {
  PRIORITY: 8,
  READ: 4,
  WRITE: 2,
  INHERIT: 1,
} as const

/** PULL_MESSAGE's sysFlag bits (PullSysFlag). */
export const PULL_SYS_FLAG = {
  COMMIT_OFFSET: 0x1,
  SUSPEND: 0x2,
  SUBSCRIPTION: 0x4,
  CLASS_FILTER: 0x8,
  LITE_PULL: 0x10,
} as const

/** A subscription to every tag. */
export const SUB_ALL = '*'

/**
 * The tags a subscription expression names, split as RocketMQ's FilterAPI does (broker and client
 * alike): `*` or blank takes every message (undefined); otherwise the distinct parts between `||`,
 * trimmed, blank ones skipped (`A ||` is A). A `*` among other tags is a tag like any other, as in
 * RocketMQ. An empty list means nothing but separators (`||`), which RocketMQ refuses.
 */
export function splitTagExpression(expression: string | undefined): string[] | undefined {
  const text = (expression ?? '').trim()
  if (text === '' || text === SUB_ALL) return undefined
  return [...new Set(text.split('||').map((t) => t.trim()).filter((t) => t.length > 0))]
}

export interface QueueData {
  brokerName: string
  readQueueNums: number
  writeQueueNums: number
  perm: number
  /** TopicSysFlag (UNIT 1, UNIT_SUB 2); 0 when absent. */
  topicSysFlag?: number
}

export interface BrokerData {
  cluster: string
  brokerName: string
  /** Broker id (0 = master) to "host:port". */
  brokerAddrs: Record<string, string>
}

/** GET_ROUTEINFO_BY_TOPIC's answer. */
export interface TopicRouteData {
  orderTopicConf?: string
  queueDatas: QueueData[]
  brokerDatas: BrokerData[]
  filterServerTable?: Record<string, string[]>
}
