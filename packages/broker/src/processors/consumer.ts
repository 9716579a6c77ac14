/**
 * Client and consumer requests (RocketMQ's ClientManageProcessor and ConsumerManageProcessor,
 * plus the offset queries of AdminBrokerProcessor): heartbeats, unregistration, a group's
 * member list, consumer offsets, and a queue's min/max offset, offset by time and earliest time.
 */
import {
  RemotingCommand,
  RequestCode,
  ResponseCode,
  TransportError,
  encodeRemotingJson,
  headerInt,
  headerOptionalBool,
  headerOptionalString,
  headerString,
  parseRemotingJson,
  type RequestProcessor,
} from '@mqts/transport'
import type { HeartbeatData } from '../client-manager.js'
import type { BrokerContext } from '../context.js'
import { slowConsumerBytes } from './pull-suggest.js'
import { retryTopic } from '../topic-config.js'

const ok = (ext?: Record<string, string>, body?: Buffer): RemotingCommand => RemotingCommand.createResponse(ResponseCode.SUCCESS, null, ext, body)

function heartbeatData(body: Buffer): HeartbeatData {
  const json = parseRemotingJson(body) as Partial<HeartbeatData> | null
  if (!json || typeof json !== 'object' || typeof json.clientID !== 'string') throw new TransportError('BAD_BODY', 'HEART_BEAT body needs a clientID')
  return {
    clientID: json.clientID,
    producerDataSet: Array.isArray(json.producerDataSet) ? json.producerDataSet.filter((p) => typeof p?.groupName === 'string') : [],
    consumerDataSet: Array.isArray(json.consumerDataSet)
      ? json.consumerDataSet
          .filter((c) => typeof c?.groupName === 'string')
          .map((c) => ({ ...c, subscriptionDataSet: Array.isArray(c.subscriptionDataSet) ? c.subscriptionDataSet.filter((s) => typeof s?.topic === 'string') : [] }))
      : [],
  }
}

export function consumerProcessors(ctx: BrokerContext): Map<number, RequestProcessor> {
  const p = new Map<number, RequestProcessor>()
  const { clients } = ctx

  p.set(RequestCode.HEART_BEAT, async (req, channel) => {
    const data = heartbeatData(req.body)
    let created = false
    for (const c of data.consumerDataSet) {
      ctx.groups.findOrCreate(c.groupName)
      // A clustering group's retry topic exists as soon as the group does (RocketMQ makes it on
      // heartbeat), so its route is there before the first send-back.
      if (c.messageModel !== 'BROADCASTING' && !ctx.topics.get(retryTopic(c.groupName))) {
        await ctx.topics.createIfMissing(retryTopic(c.groupName), 1, 6)
        created = true
      }
    }
    clients.heartbeat(data, channel)
    if (created) ctx.registerSoon()
    return ok({ IS_SUPPORT_HEART_BEAT_V2: 'false', IS_SUB_CHANGE: 'false' })
  })

  p.set(RequestCode.UNREGISTER_CLIENT, (req, channel) => {
    clients.unregister(headerString(req, 'clientID'), channel, headerOptionalString(req, 'producerGroup'), headerOptionalString(req, 'consumerGroup'))
    return ok()
  })

  p.set(RequestCode.GET_CONSUMER_LIST_BY_GROUP, (req) => {
    const group = headerString(req, 'consumerGroup')
    const g = clients.consumerGroup(group)
    if (!g || g.clients.size === 0) return RemotingCommand.createResponse(ResponseCode.SYSTEM_ERROR, `no consumer for this group, ${group}`)
    return ok(undefined, encodeRemotingJson({ consumerIdList: g.clientIds() }))
  })

  p.set(RequestCode.QUERY_CONSUMER_OFFSET, async (req) => {
    const group = headerString(req, 'consumerGroup')
    const topic = headerString(req, 'topic')
    const queueId = headerInt(req, 'queueId')
    const offset = ctx.store.committedOffset(group, topic, queueId)
    if (offset >= 0) return ok({ offset: String(offset) })
    // A group new to a queue that still starts at 0 and whose first message is still in memory
    // (a young topic): RocketMQ answers 0, so the group reads the queue from its beginning
    // (unless the client asked not to: setZeroIfNotFound=false). Otherwise the client starts
    // where its consumeFromWhere says (the queue's end by default).
    if (ctx.store.minOffset(topic, queueId) <= 0 && headerOptionalBool(req, 'setZeroIfNotFound') !== false && !(await firstMessageOnDisk(topic, queueId))) return ok({ offset: '0' })
    return RemotingCommand.createResponse(ResponseCode.QUERY_NOT_FOUND, 'Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first')
  })

  /**
   * RocketMQ's checkInDiskByConsumeOffset for queue offset 0: whether the queue's first message
   * lies further behind the CommitLog's end than accessMessageInMemoryMaxRatio % of memory.
   */
  const firstMessageOnDisk = async (topic: string, queueId: number): Promise<boolean> => {
    const r = await ctx.store.get({ topic, queueId, offset: 0, maxMessages: 1, raw: true })
    const first = r.records[0]
    return first !== undefined && ctx.store.commitLogMaxOffset - first.physicalOffset > slowConsumerBytes(ctx.config.accessMessageInMemoryMaxRatio)
  }

  p.set(RequestCode.UPDATE_CONSUMER_OFFSET, (req) => {
    const offset = headerInt(req, 'commitOffset')
    // ali-ons sends -1 for an offset of 0: nothing to keep.
    if (offset >= 0) ctx.store.commitOffset(headerString(req, 'consumerGroup'), headerString(req, 'topic'), headerInt(req, 'queueId'), offset)
    return ok()
  })

  p.set(RequestCode.GET_MAX_OFFSET, (req) => ok({ offset: String(ctx.store.maxOffset(headerString(req, 'topic'), headerInt(req, 'queueId'))) }))
  p.set(RequestCode.GET_MIN_OFFSET, (req) => ok({ offset: String(ctx.store.minOffset(headerString(req, 'topic'), headerInt(req, 'queueId'))) }))
  p.set(RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, async (req) => {
    const offset = await ctx.store.offsetByTime(headerString(req, 'topic'), headerInt(req, 'queueId'), headerInt(req, 'timestamp'))
    return ok({ offset: String(offset) })
  })
  p.set(RequestCode.GET_EARLIEST_MSG_STORETIME, async (req) => {
    const t = await ctx.store.earliestMessageTime(headerString(req, 'topic'), headerInt(req, 'queueId'))
    return ok({ timestamp: String(t) })
  })
  return p
}
