/**
 * One PULL_MESSAGE and its answer (RocketMQ's PullAPIWrapper): the request header, long polling
 * (SUSPEND), the offset committed along (COMMIT_OFFSET), the subscription sent with the request
 * (SUBSCRIPTION), and the answer's status, next offset and messages (filtered by tag string).
 * Also the offset requests a consumer makes.
 */
import { RemotingCommand, RequestCode, ResponseCode } from '@mqts/transport'
import { checkResponse, type ClientInstance } from './client-instance.js'
import { CLIENT_DEFAULTS, MAX_SUSPEND_MS, PULL_SYS_FLAG, PULL_TIMEOUT_MARGIN_MS } from './constants.js'
import { ClientError } from './errors.js'
import { matchesTag, type Subscription } from './expression.js'
import { decodeMessages, type MessageExt } from './message.js'
import { withSignal } from './producer.js'
import type { MessageQueue } from './route.js'

export type PullStatus = 'FOUND' | 'NO_NEW_MSG' | 'NO_MATCHED_MSG' | 'OFFSET_ILLEGAL'

export interface PullResult {
  status: PullStatus
  /** Where the next pull of this queue starts. */
  nextOffset: number
  minOffset: number
  maxOffset: number
  messages: MessageExt[]
}

export interface PullRequest {
  group: string
  queue: MessageQueue
  offset: number
  subscription: Subscription
  maxMessages?: number
  /** Long polling: how long the broker may hold a pull that finds nothing (0: answer at once). */
  suspendMs?: number
  /** The offset the consumer has processed, committed along with the pull (-1: none). */
  commitOffset?: number
  signal?: AbortSignal
}

/** `value` (the default when undefined) unless it is no long-polling time a request's timer can wait for. */
export function checkSuspendMs(value: number | undefined): number {
  const ms = value ?? CLIENT_DEFAULTS.suspendMs
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_SUSPEND_MS) throw new ClientError('INVALID_OPTION', `suspendMs is an integer of milliseconds from 0 to ${MAX_SUSPEND_MS} (a timer's range less the request's margin), got ${value}`)
  return ms
}

export async function pullMessages(instance: ClientInstance, r: PullRequest): Promise<PullResult> {
  // Aborted already: no request is sent at all.
  if (r.signal?.aborted) throw new ClientError('ABORTED', `pull of ${r.queue.topic}/${r.queue.queueId} was aborted`, { cause: r.signal.reason })
  const addr = await instance.brokerAddress(r.queue.brokerName, r.queue.topic)
  const suspendMs = checkSuspendMs(r.suspendMs)
  let sysFlag = PULL_SYS_FLAG.SUBSCRIPTION
  if (suspendMs > 0) sysFlag |= PULL_SYS_FLAG.SUSPEND
  const commitOffset = r.commitOffset ?? -1
  if (commitOffset >= 0) sysFlag |= PULL_SYS_FLAG.COMMIT_OFFSET
  const req = RemotingCommand.createRequest(RequestCode.PULL_MESSAGE, {
    consumerGroup: r.group,
    topic: r.queue.topic,
    queueId: String(r.queue.queueId),
    queueOffset: String(r.offset),
    maxMsgNums: String(r.maxMessages ?? CLIENT_DEFAULTS.pullBatchSize),
    sysFlag: String(sysFlag),
    commitOffset: String(commitOffset),
    suspendTimeoutMillis: String(suspendMs),
    subscription: r.subscription.subString,
    subVersion: String(r.subscription.subVersion),
    expressionType: 'TAG',
  })
  // The broker may hold the pull for suspendMs: the request's timeout is longer.
  const timeoutMs = suspendMs > 0 ? Math.max(CLIENT_DEFAULTS.pullTimeoutMs, suspendMs + PULL_TIMEOUT_MARGIN_MS) : instance.requestTimeoutMs
  const res = await withSignal(instance.invokeBroker(addr, req, timeoutMs), r.signal, `pull of ${r.queue.topic}/${r.queue.queueId}`)
  const ok = [ResponseCode.SUCCESS, ResponseCode.PULL_NOT_FOUND, ResponseCode.PULL_RETRY_IMMEDIATELY, ResponseCode.PULL_OFFSET_MOVED]
  checkResponse(res, `pull from ${r.queue.brokerName} (${addr}) queue ${r.queue.topic}/${r.queue.queueId} at ${r.offset}`, ok)
  const nextOffset = Number(res.extFields.nextBeginOffset ?? r.offset)
  const minOffset = Number(res.extFields.minOffset ?? 0)
  const maxOffset = Number(res.extFields.maxOffset ?? 0)
  switch (res.code) {
    case ResponseCode.SUCCESS: {
      const all = decodeMessages(res.body, r.queue.brokerName, minOffset, maxOffset)
      const messages = all.filter((m) => matchesTag(r.subscription, m.tags))
      return { status: messages.length > 0 ? 'FOUND' : 'NO_MATCHED_MSG', nextOffset, minOffset, maxOffset, messages }
    }
    case ResponseCode.PULL_NOT_FOUND:
      return { status: 'NO_NEW_MSG', nextOffset, minOffset, maxOffset, messages: [] }
    case ResponseCode.PULL_RETRY_IMMEDIATELY:
      return { status: 'NO_MATCHED_MSG', nextOffset, minOffset, maxOffset, messages: [] }
    default:
      return { status: 'OFFSET_ILLEGAL', nextOffset, minOffset, maxOffset, messages: [] }
  }
}

function queueHeader(group: string | undefined, q: MessageQueue): Record<string, string> {
  const h: Record<string, string> = { topic: q.topic, queueId: String(q.queueId) }
  if (group !== undefined) h.consumerGroup = group
  return h
}

/**
 * The group's committed offset of a queue on its broker, or -1 when the broker has none
 * (QUERY_NOT_FOUND). RocketMQ's broker answers 0 instead for a group new to a queue that
 * starts at 0 (so a new group reads it from the beginning) unless asked not to
 * (setZeroIfNotFound=false, which `zeroIfNotFound: false` sends).
 */
export async function queryConsumerOffset(instance: ClientInstance, group: string, q: MessageQueue, options: { zeroIfNotFound?: boolean } = {}): Promise<number> {
  const addr = await instance.brokerAddress(q.brokerName, q.topic)
  const header = queueHeader(group, q)
  if (options.zeroIfNotFound === false) header.setZeroIfNotFound = 'false'
  const res = await instance.invokeBroker(addr, RemotingCommand.createRequest(RequestCode.QUERY_CONSUMER_OFFSET, header))
  if (res.code === ResponseCode.QUERY_NOT_FOUND) return -1
  checkResponse(res, `offset of ${group} on ${q.topic}/${q.queueId}`)
  return Number(res.extFields.offset)
}

export async function updateConsumerOffset(instance: ClientInstance, group: string, q: MessageQueue, offset: number): Promise<void> {
  const addr = await instance.brokerAddress(q.brokerName, q.topic)
  const res = await instance.invokeBroker(addr, RemotingCommand.createRequest(RequestCode.UPDATE_CONSUMER_OFFSET, { ...queueHeader(group, q), commitOffset: String(offset) }))
  checkResponse(res, `commit of ${group}'s offset ${offset} on ${q.topic}/${q.queueId}`)
}

export async function queueOffset(instance: ClientInstance, q: MessageQueue, which: 'min' | 'max'): Promise<number> {
  const addr = await instance.brokerAddress(q.brokerName, q.topic)
  const code = which === 'min' ? RequestCode.GET_MIN_OFFSET : RequestCode.GET_MAX_OFFSET
  const res = checkResponse(await instance.invokeBroker(addr, RemotingCommand.createRequest(code, queueHeader(undefined, q))), `${which} offset of ${q.topic}/${q.queueId}`)
  return Number(res.extFields.offset)
}

export async function searchOffset(instance: ClientInstance, q: MessageQueue, timestamp: number): Promise<number> {
  const addr = await instance.brokerAddress(q.brokerName, q.topic)
  const res = await instance.invokeBroker(addr, RemotingCommand.createRequest(RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, { ...queueHeader(undefined, q), timestamp: String(timestamp) }))
  return Number(checkResponse(res, `offset at ${timestamp} of ${q.topic}/${q.queueId}`).extFields.offset)
}
