/**
 * SEND_MESSAGE, SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE (RocketMQ's SendMessageProcessor): checks
 * the topic (auto-creating it from TBW102 when allowed), the queue and the permission, stores the
 * message with the connection's address as born host, and answers msgId, queueId and queueOffset.
 * Store failures map to RocketMQ's response codes.
 */
import { decodeProperties } from '@mqts/message'
import { StoreError, parseJavaInt, type PutMessage, type PutResult } from '@mqts/store'
import {
  NOT_ALLOWED_SEND_TOPICS,
  RemotingCommand,
  RequestCode,
  ResponseCode,
  headerInt,
  headerOptionalBool,
  headerOptionalInt,
  headerOptionalString,
  headerString,
  type Channel,
  type RequestProcessor,
} from '@mqts/transport'
import type { TopicConfig } from '@mqts/namesrv'
import type { BrokerContext } from '../context.js'
import { BrokerError } from '../errors.js'
import { DEFAULT_REGION_ID, MESSAGE_PROPERTY, SEND_V2_KEY } from '../protocol.js'
import { DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX, dlqTopic, isWriteable } from '../topic-config.js'
import { VERSION_WITH_MAX_RECONSUME_TIMES } from './send-back.js'
import { batchMsgIds } from './batch.js'

export interface SendHeader {
  producerGroup: string
  topic: string
  defaultTopic: string
  defaultTopicQueueNums: number
  queueId: number
  sysFlag: number
  bornTimestamp: number
  flag: number
  properties: string
  reconsumeTimes: number
  unitMode: boolean
  maxReconsumeTimes: number | undefined
  batch: boolean
}

type SendKeys = { readonly [K in keyof typeof SEND_V2_KEY]: string }

/** V1's field names, each its own key. */
const SEND_V1_KEY: SendKeys = Object.fromEntries(Object.keys(SEND_V2_KEY).map((k) => [k, k])) as unknown as SendKeys

/** The send header of either version: V2's one-letter keys are V1's fields. */
export function readSendHeader(req: RemotingCommand): SendHeader {
  // The names come from a table per version: this runs for every send.
  const k = req.code === RequestCode.SEND_MESSAGE ? SEND_V1_KEY : SEND_V2_KEY
  return {
    producerGroup: headerString(req, k.producerGroup),
    topic: headerString(req, k.topic),
    defaultTopic: headerOptionalString(req, k.defaultTopic) ?? 'TBW102',
    defaultTopicQueueNums: headerOptionalInt(req, k.defaultTopicQueueNums) ?? 4,
    queueId: headerInt(req, k.queueId),
    sysFlag: headerOptionalInt(req, k.sysFlag) ?? 0,
    bornTimestamp: headerOptionalInt(req, k.bornTimestamp) ?? Date.now(),
    flag: headerOptionalInt(req, k.flag) ?? 0,
    properties: headerOptionalString(req, k.properties) ?? '',
    reconsumeTimes: headerOptionalInt(req, k.reconsumeTimes) ?? 0,
    unitMode: headerOptionalBool(req, k.unitMode) ?? false,
    maxReconsumeTimes: headerOptionalInt(req, k.maxReconsumeTimes),
    batch: req.code === RequestCode.SEND_BATCH_MESSAGE || headerOptionalBool(req, k.batch) === true,
  }
}

/** sysFlag's transaction type bits (RocketMQ's MessageSysFlag): PREPARED 0x4, COMMIT 0x8, ROLLBACK 0xc. */
const TRANSACTION_TYPE_MASK = 0xc
const TRANSACTION_PREPARED = 0x4

function fail(code: number, remark: string): RemotingCommand {
  return RemotingCommand.createResponse(code, remark)
}

/** A store error as RocketMQ's send answer (SendMessageProcessor's PutMessageStatus mapping). */
export function storeErrorResponse(err: unknown): RemotingCommand {
  if (err instanceof BrokerError) return fail(ResponseCode.SYSTEM_ERROR, err.message)
  if (!(err instanceof StoreError)) return fail(ResponseCode.SYSTEM_ERROR, `store failed: ${(err as Error)?.message ?? String(err)}`)
  switch (err.code) {
    case 'MESSAGE_TOO_LARGE':
    case 'PROPERTIES_TOO_LONG':
    case 'INVALID_PROPERTY':
    case 'TOPIC_INVALID':
    case 'INVALID_ARGUMENT':
      return fail(ResponseCode.MESSAGE_ILLEGAL, `the message is illegal: ${err.message}`)
    case 'DISK_FULL':
    case 'IO_ERROR':
    case 'FLUSH_FAILED':
    case 'NOT_OPEN':
    case 'CORRUPT_RECORD':
    case 'CORRUPT_FILE':
      return fail(ResponseCode.SERVICE_NOT_AVAILABLE, `service not available now: ${err.message}`)
    default:
      // The store's back-pressure (BUSY) and anything new: the producer may retry elsewhere.
      if ((err.code as string) === 'BUSY') return fail(ResponseCode.SYSTEM_BUSY, `[PC_SYNCHRONIZED]broker busy, start flow control for a while: ${err.message}`)
      return fail(ResponseCode.SYSTEM_ERROR, err.message)
  }
}

/**
 * The send processor. Not an async function: a known topic's batch goes from the request to the
 * store's putBatch and from its result to the answer with one promise between them (this runs
 * for every send; each await or async frame is a promise and a microtask more).
 */
export function sendProcessor(ctx: BrokerContext): RequestProcessor {
  return (req: RemotingCommand, channel: Channel) => {
    if (ctx.config.brokerRole === 'SLAVE') return fail(ResponseCode.SERVICE_NOT_AVAILABLE, `the broker[${ctx.config.brokerName}] is a replica: send to its master`)
    let h = readSendHeader(req)
    if (NOT_ALLOWED_SEND_TOPICS.has(h.topic)) return fail(ResponseCode.NO_PERMISSION, `Sending message to topic[${h.topic}] is forbidden.`)
    if ((h.sysFlag & TRANSACTION_TYPE_MASK) === TRANSACTION_PREPARED) {
      return fail(ResponseCode.NO_PERMISSION, `the broker[${ctx.config.brokerName}] does not take transactional messages`)
    }
    if (h.topic.startsWith(RETRY_GROUP_TOPIC_PREFIX)) {
      const retried = retryOrDeadLetter(ctx, req, h)
      if (retried instanceof RemotingCommand) return retried
      h = retried
    }
    const topicCheck = checkTopic(ctx, h)
    if (topicCheck instanceof Promise) return topicCheck.then((tc) => sendToTopic(ctx, req, channel, h, tc))
    return sendToTopic(ctx, req, channel, h, topicCheck)
  }
}

/**
 * A send to `%RETRY%<group>` (RocketMQ's handleRetryAndDLQ): a batch is refused; a message whose
 * reconsumeTimes reached the group's most retries (the request's maxReconsumeTimes from clients
 * that send it) goes to `%DLQ%<group>` instead, undelayed.
 */
function retryOrDeadLetter(ctx: BrokerContext, req: RemotingCommand, h: SendHeader): SendHeader | RemotingCommand {
  if (h.batch) return fail(ResponseCode.MESSAGE_ILLEGAL, `batch request does not support retry group ${h.topic}`)
  const group = h.topic.slice(RETRY_GROUP_TOPIC_PREFIX.length)
  const sg = ctx.groups.findOrCreate(group)
  if (!sg) return fail(ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST, `subscription group [${group}] does not exist`)
  const max = req.version >= VERSION_WITH_MAX_RECONSUME_TIMES && h.maxReconsumeTimes !== undefined ? h.maxReconsumeTimes : sg.retryMaxTimes
  if (h.reconsumeTimes < max) return h
  return { ...h, topic: dlqTopic(group), queueId: 0 }
}

function sendToTopic(ctx: BrokerContext, req: RemotingCommand, channel: Channel, h: SendHeader, tc: TopicConfig | RemotingCommand): RemotingCommand | Promise<RemotingCommand> {
  if (tc instanceof RemotingCommand) return tc
  let queueId = h.queueId
  if (queueId < 0) queueId = Math.floor(Math.random() * tc.writeQueueNums)
  if (queueId >= tc.writeQueueNums) {
    return fail(ResponseCode.SYSTEM_ERROR, `request queueId[${queueId}] is illegal, topic ${h.topic} has ${tc.writeQueueNums} write queues, producer: ${channel.remoteAddress}`)
  }
  const bornHost = bornHostOf(channel)
  return h.batch ? sendBatch(ctx, req, h, queueId, bornHost) : sendOne(ctx, req, h, queueId, bornHost)
}

async function sendOne(ctx: BrokerContext, req: RemotingCommand, h: SendHeader, queueId: number, bornHost: string): Promise<RemotingCommand> {
  try {
    const properties = decodeProperties(h.properties)
    if (h.topic.startsWith(DLQ_GROUP_TOPIC_PREFIX)) delete properties[MESSAGE_PROPERTY.DELAY]
    else if (!h.topic.startsWith(RETRY_GROUP_TOPIC_PREFIX)) properties[MESSAGE_PROPERTY.CLUSTER] = ctx.config.brokerClusterName
    // A message without a unique id gets one, as RocketMQ's broker gives it (ali-ons sends none).
    properties[MESSAGE_PROPERTY.UNIQ_KEY] ??= ctx.uniqueIds.next()
    const message: PutMessage = {
      topic: h.topic,
      queueId,
      body: req.body,
      properties,
      flag: h.flag,
      sysFlag: h.sysFlag,
      bornTimestamp: h.bornTimestamp,
      bornHost,
      reconsumeTimes: h.reconsumeTimes,
    }
    const r = await ctx.store.put(ctx.schedule(message))
    let replicated: ReplicaSync | Promise<ReplicaSync> = r.status === 'PUT_OK' ? replicasOf(ctx, r.physicalOffset + r.size) : 'OK'
    if (typeof replicated !== 'string') replicated = await replicated
    return sendResponse(ctx, replicated === 'OK' ? r.status : replicated, r.msgId, queueId, r.queueOffset, properties[MESSAGE_PROPERTY.UNIQ_KEY])
  } catch (err) {
    return storeErrorResponse(err)
  }
}

function sendBatch(ctx: BrokerContext, req: RemotingCommand, h: SendHeader, queueId: number, bornHost: string): RemotingCommand | Promise<RemotingCommand> {
  // A batch is never delayed: RocketMQ's CommitLog refuses one whose properties ask for it.
  if (h.properties.includes(MESSAGE_PROPERTY.DELAY)) {
    const text = decodeProperties(h.properties)[MESSAGE_PROPERTY.DELAY]
    const level = text === undefined ? 0 : parseJavaInt(text)
    if (level === undefined) return fail(ResponseCode.SYSTEM_ERROR, `the batch's ${MESSAGE_PROPERTY.DELAY} property is not an integer: ${JSON.stringify(text)}`)
    if (level > 0) return fail(ResponseCode.MESSAGE_ILLEGAL, `a batch cannot be delayed (its ${MESSAGE_PROPERTY.DELAY} is ${level}): send delayed messages one by one`)
  }
  let put: Promise<PutResult[]>
  try {
    // The store copies each message's body and properties from the request's bytes as they are.
    put = ctx.store.putEncodedBatch({ topic: h.topic, queueId, body: req.body, sysFlag: h.sysFlag, bornTimestamp: h.bornTimestamp, bornHost, reconsumeTimes: h.reconsumeTimes })
  } catch (err) {
    return storeErrorResponse(err)
  }
  return put.then((rs) => batchStored(ctx, rs, queueId), storeErrorResponse)
}

/** The answer to a stored batch, once its replicas have it when the broker waits for them. */
function batchStored(ctx: BrokerContext, rs: PutResult[], queueId: number): RemotingCommand | Promise<RemotingCommand> {
  try {
    const status = rs.some((r) => r.status !== 'PUT_OK') ? 'FLUSH_DISK_TIMEOUT' : 'PUT_OK'
    const last = rs[rs.length - 1]!
    const replicated = status === 'PUT_OK' ? replicasOf(ctx, last.physicalOffset + last.size) : 'OK'
    if (typeof replicated !== 'string') {
      return replicated.then((r) => sendResponse(ctx, r === 'OK' ? status : r, batchMsgIds(rs), queueId, rs[0]!.queueOffset, undefined), storeErrorResponse)
    }
    return sendResponse(ctx, replicated === 'OK' ? status : replicated, batchMsgIds(rs), queueId, rs[0]!.queueOffset, undefined)
  } catch (err) {
    return storeErrorResponse(err)
  }
}

/** The answer's code and remark for a stored message (every one of these still counts as stored). */
const STORED_STATUS: Record<string, [number, string | null]> = {
  PUT_OK: [ResponseCode.SUCCESS, null],
  FLUSH_DISK_TIMEOUT: [ResponseCode.FLUSH_DISK_TIMEOUT, 'flush disk timeout: stored, not yet confirmed durable'],
  FLUSH_SLAVE_TIMEOUT: [ResponseCode.FLUSH_SLAVE_TIMEOUT, 'flush slave timeout: stored on the master, not yet acknowledged by every in-sync replica'],
  SLAVE_NOT_AVAILABLE: [ResponseCode.SLAVE_NOT_AVAILABLE, 'slave not available: stored on the master, no replica is in sync'],
}

function sendResponse(ctx: BrokerContext, status: string, msgId: string, queueId: number, queueOffset: number, uniqKey: string | undefined): RemotingCommand {
  const [code, remark] = STORED_STATUS[status] ?? [ResponseCode.SYSTEM_ERROR, `unknown store status ${status}`]
  const ext: Record<string, string> = {
    msgId,
    queueId: String(queueId),
    queueOffset: String(queueOffset),
    [MESSAGE_PROPERTY.MSG_REGION]: DEFAULT_REGION_ID,
    [MESSAGE_PROPERTY.TRACE_SWITCH]: 'true',
  }
  if (uniqKey !== undefined) ext.transactionId = uniqKey
  void ctx
  return RemotingCommand.createResponse(code, remark, ext)
}

/**
 * The topic's config, or the answer refusing the send: at once for a known topic (no await on the
 * send path), through a promise when it has to be created first (on first send, when allowed).
 */
function checkTopic(ctx: BrokerContext, h: SendHeader): TopicConfig | RemotingCommand | Promise<TopicConfig | RemotingCommand> {
  const tc = ctx.topics.get(h.topic)
  return tc ? writeableTopic(tc, h) : createTopicOnSend(ctx, h)
}

async function createTopicOnSend(ctx: BrokerContext, h: SendHeader): Promise<TopicConfig | RemotingCommand> {
  let tc: TopicConfig | undefined
  if (h.topic.startsWith(RETRY_GROUP_TOPIC_PREFIX) || h.topic.startsWith(DLQ_GROUP_TOPIC_PREFIX)) tc = await ctx.topics.createIfMissing(h.topic, 1, 6)
  else tc = await ctx.topics.createOnSend(h.topic, h.defaultTopic, h.defaultTopicQueueNums, 0)
  if (tc) ctx.registerSoon()
  if (!tc) return fail(ResponseCode.TOPIC_NOT_EXIST, `topic[${h.topic}] not exist, apply first please!`)
  return writeableTopic(tc, h)
}

function writeableTopic(tc: TopicConfig, h: SendHeader): TopicConfig | RemotingCommand {
  if (!isWriteable(tc.perm)) return fail(ResponseCode.NO_PERMISSION, `the topic[${h.topic}] sending message is forbidden`)
  return tc
}

/** Replication's verdict on a stored send: only a SYNC_MASTER waits for its replicas (the others answer at once, without an await). */
type ReplicaSync = Awaited<ReturnType<BrokerContext['waitForReplicas']>>

function replicasOf(ctx: BrokerContext, end: number): ReplicaSync | Promise<ReplicaSync> {
  return ctx.config.brokerRole === 'SYNC_MASTER' ? ctx.waitForReplicas(end) : 'OK'
}

/** Born hosts by connection address, so a send does not run two regular expressions; starts over past this many. */
const BORN_HOSTS_MAX = 4096
const bornHosts = new Map<string, string>()

/** The producer's address as the store records it ("a.b.c.d:port" or "[v6]:port"). */
export function bornHostOf(channel: Channel): string {
  const remote = channel.remoteAddress
  let host = bornHosts.get(remote)
  if (host === undefined) {
    host = parseBornHost(remote)
    if (bornHosts.size >= BORN_HOSTS_MAX) bornHosts.clear()
    bornHosts.set(remote, host)
  }
  return host
}

function parseBornHost(remote: string): string {
  const m = /^\[::ffff:(\d+\.\d+\.\d+\.\d+)\]:(\d+)$/i.exec(remote)
  if (m) return `${m[1]}:${m[2]}`
  return /^(\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:.]+\]):\d+$/.test(remote) ? remote : '127.0.0.1:0'
}
