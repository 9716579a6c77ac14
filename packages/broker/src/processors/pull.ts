/**
 * PULL_MESSAGE (RocketMQ's PullMessageProcessor): checks topic, permission, queue and
 * subscription, reads the queue from the store in its raw form (the answer's body is the stored
 * records, concatenated), maps the store's status to RocketMQ's code and next offset, commits the
 * offset the consumer sends along, and parks a pull that found nothing new (long polling).
 */
import type { GetMessageStatus } from '@mqts/store'
import {
  RemotingCommand,
  ResponseCode,
  headerInt,
  headerOptionalInt,
  headerOptionalString,
  headerString,
  splitTagExpression,
  type Channel,
  type RequestProcessor,
} from '@mqts/transport'
import type { BrokerContext } from '../context.js'
import { PullHoldService } from '../long-polling.js'
import { EXPRESSION_TYPE_TAG, MAX_SUSPEND_MS, PULL_SYS_FLAG, SUB_ALL } from '../protocol.js'
import { isReadable } from '../topic-config.js'
import { suggestBroker } from './pull-suggest.js'

/**
 * The tags a subscription expression names (`TagA || TagB`); undefined for every message; an
 * empty list for an expression of separators only, which RocketMQ's broker refuses.
 */
export const parseTagExpression = splitTagExpression

/** RocketMQ's answer to each store status: response code, and where the client goes next. */
export function pullAnswer(status: GetMessageStatus, requestOffset: number, nextOffset: number): { code: number; nextBeginOffset: number } {
  switch (status) {
    case 'FOUND':
      return { code: ResponseCode.SUCCESS, nextBeginOffset: nextOffset }
    case 'NO_MATCHED_MESSAGE':
    case 'MESSAGE_WAS_REMOVING':
      return { code: ResponseCode.PULL_RETRY_IMMEDIATELY, nextBeginOffset: nextOffset }
    case 'NO_MESSAGE_IN_QUEUE':
      return { code: requestOffset !== 0 ? ResponseCode.PULL_OFFSET_MOVED : ResponseCode.PULL_NOT_FOUND, nextBeginOffset: 0 }
    case 'OFFSET_TOO_SMALL':
    case 'OFFSET_OVERFLOW_BADLY':
      return { code: ResponseCode.PULL_OFFSET_MOVED, nextBeginOffset: nextOffset }
    case 'OFFSET_OVERFLOW_ONE':
      return { code: ResponseCode.PULL_NOT_FOUND, nextBeginOffset: requestOffset }
    case 'OFFSET_FOUND_NULL':
      return { code: ResponseCode.PULL_NOT_FOUND, nextBeginOffset: nextOffset }
  }
}

function fail(code: number, remark: string): RemotingCommand {
  return RemotingCommand.createResponse(code, remark)
}

export interface PullService {
  processor: RequestProcessor
  hold: PullHoldService
}

export function pullService(ctx: BrokerContext): PullService {
  const pull = async (req: RemotingCommand, channel: Channel, firstAttempt: boolean): Promise<RemotingCommand | undefined> => {
    const group = headerString(req, 'consumerGroup')
    const topic = headerString(req, 'topic')
    const queueId = headerInt(req, 'queueId')
    const offset = headerInt(req, 'queueOffset')
    const maxMsgNums = Math.max(1, headerOptionalInt(req, 'maxMsgNums') ?? 32)
    const sysFlag = headerOptionalInt(req, 'sysFlag') ?? 0
    const commitOffset = headerOptionalInt(req, 'commitOffset') ?? -1
    const suspendMs = headerOptionalInt(req, 'suspendTimeoutMillis') ?? 15_000
    const maxMsgBytes = headerOptionalInt(req, 'maxMsgBytes')
    const tc = ctx.topics.get(topic)
    if (!tc) return fail(ResponseCode.TOPIC_NOT_EXIST, `topic[${topic}] not exist, apply first please!`)
    if (!isReadable(tc.perm)) return fail(ResponseCode.NO_PERMISSION, `the topic[${topic}] pulling message is forbidden`)
    if (queueId < 0 || queueId >= tc.readQueueNums) {
      return fail(ResponseCode.SYSTEM_ERROR, `queueId[${queueId}] is illegal, topic:[${topic}] topicConfig.readQueueNums:[${tc.readQueueNums}] consumer:[${channel.remoteAddress}]`)
    }
    const sg = ctx.groups.findOrCreate(group)
    if (!sg) return fail(ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST, `subscription group [${group}] does not exist`)
    if (!sg.consumeEnable) return fail(ResponseCode.NO_PERMISSION, `subscription group no permission, ${group}`)
    let expression: string | undefined
    if ((sysFlag & PULL_SYS_FLAG.SUBSCRIPTION) !== 0) {
      const type = headerOptionalString(req, 'expressionType') ?? EXPRESSION_TYPE_TAG
      if (type !== EXPRESSION_TYPE_TAG) return fail(ResponseCode.SUBSCRIPTION_PARSE_FAILED, `expression type ${type} is not supported, only ${EXPRESSION_TYPE_TAG}`)
      expression = headerOptionalString(req, 'subscription') ?? SUB_ALL
      if (parseTagExpression(expression)?.length === 0) return fail(ResponseCode.SUBSCRIPTION_PARSE_FAILED, `subscription expression ${JSON.stringify(expression)} names no tag (subString split error)`)
    } else {
      const sub = ctx.clients.consumerGroup(group)?.subscriptions.get(topic)
      if (!sub) return fail(ResponseCode.SUBSCRIPTION_NOT_EXIST, `the consumer's subscription not exist, group: ${group} topic: ${topic}`)
      expression = sub.subString
    }
    // The offset the consumer has processed, sent along (ali-ons sends -1 for "none").
    if (firstAttempt && (sysFlag & PULL_SYS_FLAG.COMMIT_OFFSET) !== 0 && commitOffset >= 0 && ctx.config.brokerRole !== 'SLAVE') {
      ctx.store.commitOffset(group, topic, queueId, commitOffset)
    }
    const r = await ctx.store.get({ group, topic, queueId, offset, maxMessages: maxMsgNums, tags: parseTagExpression(expression), raw: true, maxBytes: maxMsgBytes && maxMsgBytes > 0 ? maxMsgBytes : undefined })
    const last = r.records.length > 0 ? r.records[r.records.length - 1]!.physicalOffset : undefined
    const { suggestWhichBrokerId, refuse } = suggestBroker({ ...ctx.config, role: ctx.config.brokerRole, commitLogMaxOffset: ctx.store.commitLogMaxOffset, lastPhysicalOffset: last, brokerId: sg.brokerId, whichBrokerWhenConsumeSlowly: sg.whichBrokerWhenConsumeSlowly })
    if (refuse) {
      // A replica without slaveReadEnable sends the consumer back to the master. RocketMQ answers
      // the next offset past what it read; the requested one is kept so that nothing is skipped.
      const ext = { suggestWhichBrokerId: String(suggestWhichBrokerId), nextBeginOffset: String(offset), minOffset: String(r.minOffset), maxOffset: String(r.maxOffset) }
      return RemotingCommand.createResponse(ResponseCode.PULL_RETRY_IMMEDIATELY, 'the replica does not serve reads (slaveReadEnable=false)', ext)
    }
    const { code, nextBeginOffset } = pullAnswer(r.status, offset, r.nextOffset)
    if (code === ResponseCode.PULL_NOT_FOUND && firstAttempt && (sysFlag & PULL_SYS_FLAG.SUSPEND) !== 0) {
      const waitMs = ctx.config.longPollingEnable ? Math.min(Math.max(suspendMs, 0), MAX_SUSPEND_MS) : ctx.config.shortPollingTimeMills
      if (hold.hold(topic, queueId, offset, waitMs, req, channel)) {
        // A message may have arrived between the read and the hold.
        if (ctx.store.maxOffset(topic, queueId) > offset) hold.arrived(topic, queueId, ctx.store.maxOffset(topic, queueId))
        return undefined
      }
    }
    const ext = { suggestWhichBrokerId: String(suggestWhichBrokerId), nextBeginOffset: String(nextBeginOffset), minOffset: String(r.minOffset), maxOffset: String(r.maxOffset) }
    const body = code === ResponseCode.SUCCESS ? recordParts(r.records) : undefined
    return RemotingCommand.createResponse(code, r.status, ext, body)
  }
  const hold: PullHoldService = new PullHoldService(async (req, channel) => (await pull(req, channel, false))!)
  return { processor: (req, channel) => pull(req, channel, true), hold }
}

/**
 * A pull answer's body: the records' bytes as parts the transport writes without joining them,
 * records that follow each other in the CommitLog merged into one view (a producer's batch is
 * stored contiguously), so the answer costs neither a copy nor a write per record.
 */
export function recordParts(records: readonly { data: Buffer }[]): Buffer[] {
  const parts: Buffer[] = []
  let first: Buffer | undefined
  let end = 0
  const close = (): void => {
    if (first === undefined) return
    parts.push(end === first.byteOffset + first.length ? first : Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset))
  }
  for (let i = 0; i < records.length; i++) {
    const data = records[i]!.data
    if (first !== undefined && data.buffer === first.buffer && data.byteOffset === end) {
      end += data.length
      continue
    }
    close()
    first = data
    end = data.byteOffset + data.length
  }
  close()
  return parts
}
