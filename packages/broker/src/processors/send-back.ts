/**
 * CONSUMER_SEND_MSG_BACK (RocketMQ's consumerSendMsgBack): a consumer could not process a message.
 * The broker finds the original by its CommitLog offset and stores it again for the group:
 * under `%RETRY%<group>` with the next delay level (the request's, or 3 + reconsumeTimes when it
 * says 0) and reconsumeTimes + 1, or, after the group's most retries (or a negative level), under
 * `%DLQ%<group>`. RETRY_TOPIC keeps the original topic; ORIGIN_MESSAGE_ID the first message id.
 */
import { decodeRecord } from '@mqts/message'
import { toScheduledMessage, type PutMessage } from '@mqts/store'
import { RemotingCommand, ResponseCode, headerInt, headerOptionalInt, headerOptionalString, headerString, type RequestProcessor } from '@mqts/transport'
import { PERM } from '@mqts/namesrv'
import type { BrokerContext } from '../context.js'
import { MESSAGE_PROPERTY } from '../protocol.js'
import { dlqTopic, isWriteable, retryTopic } from '../topic-config.js'
import { rawRecordAt } from './admin.js'
import { storeErrorResponse } from './send.js'

/** The client version from which the request's maxReconsumeTimes counts (RocketMQ's V3_4_9). */
export const VERSION_WITH_MAX_RECONSUME_TIMES = 121
/** Queues of a dead-letter topic (RocketMQ's DLQ_NUMS_PER_GROUP). */
const DLQ_QUEUE_NUMS = 1

function fail(code: number, remark: string): RemotingCommand {
  return RemotingCommand.createResponse(code, remark)
}

export function sendBackProcessor(ctx: BrokerContext): RequestProcessor {
  return async (req) => {
    if (ctx.config.brokerRole === 'SLAVE') return fail(ResponseCode.SERVICE_NOT_AVAILABLE, `the broker[${ctx.config.brokerName}] is a replica: send back to its master`)
    const offset = headerInt(req, 'offset')
    const group = headerString(req, 'group')
    let delayLevel = headerOptionalInt(req, 'delayLevel') ?? 0
    const sg = ctx.groups.findOrCreate(group)
    if (!sg) return fail(ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST, `subscription group not exist, ${group}`)
    const raw = rawRecordAt(ctx.store, offset)
    if (!raw) return fail(ResponseCode.SYSTEM_ERROR, `look message by offset failed, ${offset}`)
    const original = decodeRecord(raw, 0, true)
    const properties = { ...original.properties }
    if (properties[MESSAGE_PROPERTY.RETRY_TOPIC] === undefined) properties[MESSAGE_PROPERTY.RETRY_TOPIC] = original.topic
    properties[MESSAGE_PROPERTY.WAIT] = 'false'
    properties[MESSAGE_PROPERTY.ORIGIN_MESSAGE_ID] ??= headerOptionalString(req, 'originMsgId') ?? original.msgId
    delete properties[MESSAGE_PROPERTY.DELAY]

    let maxReconsumeTimes = sg.retryMaxTimes
    const asked = headerOptionalInt(req, 'maxReconsumeTimes')
    if (req.version >= VERSION_WITH_MAX_RECONSUME_TIMES && asked !== undefined) maxReconsumeTimes = asked
    let topic = retryTopic(group)
    let queueNums = sg.retryQueueNums
    const toDlq = original.reconsumeTimes >= maxReconsumeTimes || delayLevel < 0
    if (toDlq) {
      topic = dlqTopic(group)
      queueNums = DLQ_QUEUE_NUMS
    } else if (delayLevel === 0) {
      delayLevel = 3 + original.reconsumeTimes
    }
    const tc = await ctx.topics.createIfMissing(topic, queueNums, PERM.READ | PERM.WRITE)
    ctx.registerSoon()
    if (!isWriteable(tc.perm)) return fail(ResponseCode.NO_PERMISSION, `the topic[${topic}] sending message is forbidden`)
    let message: PutMessage = {
      topic,
      queueId: Math.floor(Math.random() * Math.max(1, tc.writeQueueNums)),
      body: original.body,
      properties,
      flag: original.flag,
      sysFlag: original.sysFlag,
      bornTimestamp: original.bornTimestamp,
      bornHost: original.bornHost,
      reconsumeTimes: original.reconsumeTimes + 1,
    }
    if (!toDlq) message = toScheduledMessage(message, delayLevel, ctx.delayLevels)
    try {
      await ctx.store.put(message)
    } catch (err) {
      return storeErrorResponse(err)
    }
    return RemotingCommand.createResponse(ResponseCode.SUCCESS)
  }
}
