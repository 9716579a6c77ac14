/**
 * Topic administration and message queries (RocketMQ's AdminBrokerProcessor and
 * QueryMessageProcessor): create/update and delete topics, list their configs, view a message
 * by its offset id, query messages by key. Answers with stored records carry their raw bytes.
 */
import { StoreError, type MessageStore } from '@mqts/store'
import {
  RemotingCommand,
  RequestCode,
  ResponseCode,
  encodeRemotingJson,
  headerInt,
  headerOptionalInt,
  headerOptionalString,
  headerString,
  type RequestProcessor,
} from '@mqts/transport'
import { DEFAULT_PERM } from '@mqts/namesrv'
import type { BrokerContext } from '../context.js'
import { DELETED_TOPIC_OFFSETS } from '../protocol.js'
import { SYSTEM_TOPIC, permProblem, queueNumsProblem, topicConfig } from '../topic-config.js'

const ok = (ext?: Record<string, string>, body?: Buffer): RemotingCommand => RemotingCommand.createResponse(ResponseCode.SUCCESS, null, ext, body)

/** RocketMQ's TopicValidator: the alphabet, the length, and no clash with the auto-create template. */
export function topicNameProblem(topic: string): string | undefined {
  if (!/^[%|a-zA-Z0-9_-]+$/.test(topic)) return `The specified topic[${topic}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$`
  if (topic.length > 127) return `The specified topic[${topic}] is longer than topic max length 127.`
  if (topic === SYSTEM_TOPIC.AUTO_CREATE) return `The topic[${topic}] is conflict with AUTO_CREATE_TOPIC_KEY_TOPIC.`
  return undefined
}

/** The stored bytes of the record at `offset` (a copy), or undefined when none starts there. */
export function rawRecordAt(store: MessageStore, offset: number): Buffer | undefined {
  try {
    const head = store.readCommitLog(offset, 4)
    if (head.length < 4) return undefined
    const size = head.readInt32BE(0)
    if (size <= 0) return undefined
    const rec = store.readCommitLog(offset, size)
    return rec.length === size ? Buffer.from(rec) : undefined
  } catch (err) {
    if (err instanceof StoreError) return undefined
    throw err
  }
}

export function adminProcessors(ctx: BrokerContext): Map<number, RequestProcessor> {
  const p = new Map<number, RequestProcessor>()


  p.set(RequestCode.UPDATE_AND_CREATE_TOPIC, async (req) => {
    const topic = headerString(req, 'topic')
    const problem = topicNameProblem(topic)
    if (problem) return RemotingCommand.createResponse(ResponseCode.SYSTEM_ERROR, problem)
    const read = headerInt(req, 'readQueueNums')
    const write = headerInt(req, 'writeQueueNums')
    const queuesWrong = queueNumsProblem(read, write, ctx.maxQueuesPerTopic)
    if (queuesWrong) return RemotingCommand.createResponse(ResponseCode.SYSTEM_ERROR, queuesWrong)
    const perm = headerOptionalInt(req, 'perm') ?? DEFAULT_PERM
    // RocketMQ's admin client refuses such a perm with NO_PERMISSION before sending; the broker
    // refuses it too, so no other client can store a topic that no perm check understands.
    const permWrong = permProblem(perm)
    if (permWrong) return RemotingCommand.createResponse(ResponseCode.NO_PERMISSION, permWrong)
    const tc = topicConfig(topic, read, write, perm, headerOptionalInt(req, 'topicSysFlag') ?? 0)
    tc.topicFilterType = headerOptionalString(req, 'topicFilterType') ?? 'SINGLE_TAG'
    tc.order = headerOptionalString(req, 'order') === 'true'
    await ctx.topics.update(tc)
    await ctx.registerNow()
    return ok()
  })

  p.set(RequestCode.DELETE_TOPIC_IN_BROKER, async (req) => {
    const topic = headerString(req, 'topic')
    if (ctx.topics.isSystemTopic(topic)) return RemotingCommand.createResponse(ResponseCode.SYSTEM_ERROR, `The topic[${topic}] is a system topic and cannot be deleted`)
    // The queues' deletion starts in the same turn as the config's, before the config file is
    // written: a send arriving meanwhile makes the topic again (auto-creation) and its put waits
    // for the deletion, instead of landing in the old queues and being deleted with them.
    const data = ctx.deleteTopicData(topic)
    const config = ctx.topics.delete(topic)
    await Promise.all([config, data])
    await ctx.registerNow()
    return ok()
  })

  p.set(RequestCode.GET_ALL_TOPIC_CONFIG, () => {
    const body: Record<string, unknown> = { ...ctx.topics.registerBody().topicConfigSerializeWrapper }
    // Beyond RocketMQ's wrapper (its tools ignore it): where each deleted topic's records end, so
    // replicas delete exactly those (BrokerHAService.syncMetadata, the store's followTopicDeletion).
    const deleted = ctx.store.deletedTopics()
    if (deleted.length > 0) body[DELETED_TOPIC_OFFSETS] = Object.fromEntries(deleted.map((d) => [d.topic, d.offset]))
    return ok(undefined, encodeRemotingJson(body))
  })

  p.set(RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG, () => ok(undefined, encodeRemotingJson(ctx.groups.toJSON())))
  p.set(RequestCode.GET_ALL_DELAY_OFFSET, () => ok(undefined, encodeRemotingJson(ctx.delayOffsets())))
  p.set(RequestCode.GET_ALL_CONSUMER_OFFSET, () => ok(undefined, Buffer.from(ctx.store.consumerOffsets.encode(), 'utf8')))

  p.set(RequestCode.VIEW_MESSAGE_BY_ID, (req) => {
    const offset = headerInt(req, 'offset')
    const rec = rawRecordAt(ctx.store, offset)
    if (!rec) return RemotingCommand.createResponse(ResponseCode.SYSTEM_ERROR, `can not find message by the offset, ${offset}`)
    return ok(undefined, rec)
  })

  p.set(RequestCode.QUERY_MESSAGE, async (req) => {
    const topic = headerString(req, 'topic')
    const key = headerString(req, 'key')
    const unique = req.extFields._UNIQUE_KEY_QUERY === 'true'
    const maxNum = unique ? 32 : Math.max(1, headerOptionalInt(req, 'maxNum') ?? 32)
    const begin = headerOptionalInt(req, 'beginTimestamp') ?? 0
    const end = headerOptionalInt(req, 'endTimestamp') ?? Date.now()
    if (!ctx.store.index) return RemotingCommand.createResponse(ResponseCode.QUERY_NOT_FOUND, 'the key index is disabled on this broker (messageIndexEnable=false)')
    const found = await ctx.store.queryByKey(topic, key, { maxNum, begin, end: Math.max(begin, end) })
    const records = found.map((m) => rawRecordAt(ctx.store, m.physicalOffset)).filter((r): r is Buffer => r !== undefined)
    const ext = { indexLastUpdateTimestamp: String(ctx.store.commitLog.lastStoreTimestamp), indexLastUpdatePhyoffset: String(ctx.store.commitLogMaxOffset) }
    if (records.length === 0) return RemotingCommand.createResponse(ResponseCode.QUERY_NOT_FOUND, 'can not find message, maybe time range not correct', ext)
    return ok(ext, Buffer.concat(records))
  })
  return p
}
