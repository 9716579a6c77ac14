/**
 * The nameserver's request processors, one per request code (RocketMQ's
 * DefaultRequestProcessor): each reads its header and body, asks the route table or the KV
 * config, and answers as RocketMQ's nameserver does. A missing or malformed header field
 * escapes as a BAD_HEADER error, which the transport answers SYSTEM_ERROR with its message.
 */
import {
  RemotingCommand,
  RequestCode,
  ResponseCode,
  TransportError,
  encodeRemotingJson,
  headerInt,
  headerOptionalBool,
  headerOptionalInt,
  headerOptionalString,
  headerString,
  parseRemotingJson,
  type Channel,
  type RequestProcessor,
} from '@mqts/transport'
import type { KvConfigManager } from './kv-config.js'
import { HEADER, NAMESPACE_ORDER_TOPIC_CONFIG, bodyCrc32, decodeRegisterBrokerBody, type DataVersion, type QueueData } from './protocol.js'
import type { RouteInfoManager } from './route-info.js'

export interface ProcessorContext {
  readonly routes: RouteInfoManager
  readonly kv: KvConfigManager
  readonly now: () => number
  /** Put ORDER_TOPIC_CONFIG's entry for a topic into its route (RocketMQ's orderMessageEnable, default false). */
  readonly orderMessageEnable: boolean
  /** Told when a registration takes a broker name and id from another address still registering. */
  readonly onDisplaced?: (info: { brokerName: string; brokerId: number; brokerAddr: string; displaced: string }) => void
}

const ok = (ext?: Record<string, string>, body?: Buffer): RemotingCommand => RemotingCommand.createResponse(ResponseCode.SUCCESS, null, ext, body)

/** Every processor of the nameserver, by request code. */
export function nameServerProcessors(ctx: ProcessorContext): Map<number, RequestProcessor> {
  const p = new Map<number, RequestProcessor>()
  const { routes, kv, now } = ctx

  p.set(RequestCode.REGISTER_BROKER, async (req, channel) => {
    const brokerId = headerInt(req, HEADER.brokerId)
    const clusterName = headerString(req, HEADER.clusterName)
    const brokerName = headerString(req, HEADER.brokerName)
    const brokerAddr = dialable(headerString(req, HEADER.brokerAddr), channel)
    const haServerAddr = dialable(headerOptionalString(req, HEADER.haServerAddr) ?? '', channel)
    const crc = headerOptionalInt(req, HEADER.bodyCrc32) ?? 0
    if (crc !== 0 && crc !== bodyCrc32(req.body)) {
      return RemotingCommand.createResponse(ResponseCode.SYSTEM_ERROR, `crc32 not match: header says ${crc}, the body has ${bodyCrc32(req.body)}`)
    }
    if (headerOptionalBool(req, HEADER.compressed) === true) {
      return RemotingCommand.createResponse(ResponseCode.SYSTEM_ERROR, 'compressed broker registration is not supported: register with compressedRegister=false')
    }
    const body = decodeRegisterBrokerBody(req.body)
    const timeoutMs = headerOptionalInt(req, HEADER.heartbeatTimeoutMillis)
    const result = routes.registerBroker({ clusterName, brokerAddr, brokerName, brokerId, haServerAddr, body, channelId: channel.id, timeoutMs: timeoutMs && timeoutMs > 0 ? timeoutMs : undefined }, now())
    if (result.displaced !== undefined) ctx.onDisplaced?.({ brokerName, brokerId, brokerAddr, displaced: result.displaced })
    const order = kv.list(NAMESPACE_ORDER_TOPIC_CONFIG)
    return ok({ [HEADER.haServerAddr]: result.haServerAddr, [HEADER.masterAddr]: result.masterAddr }, order ? encodeRemotingJson({ table: order }) : undefined)
  })

  p.set(RequestCode.UNREGISTER_BROKER, (req, channel) => {
    routes.unregisterBroker(headerString(req, HEADER.clusterName), dialable(headerString(req, HEADER.brokerAddr), channel), headerString(req, HEADER.brokerName), headerInt(req, HEADER.brokerId))
    return ok()
  })

  p.set(RequestCode.BROKER_HEARTBEAT, (req, channel) => {
    routes.touch(dialable(headerString(req, HEADER.brokerAddr), channel), now())
    return ok()
  })

  p.set(RequestCode.QUERY_DATA_VERSION, (req, channel) => {
    const version = parseRemotingJson(req.body) as DataVersion
    const r = routes.queryDataVersion(dialable(headerString(req, HEADER.brokerAddr), channel), version, now())
    return ok({ changed: String(r.changed) }, r.current ? encodeRemotingJson(r.current) : undefined)
  })

  p.set(RequestCode.GET_ROUTEINFO_BY_TOPIC, (req) => {
    const topic = headerString(req, HEADER.topic)
    const route = routes.pickupTopicRouteData(topic)
    if (!route) {
      return RemotingCommand.createResponse(ResponseCode.TOPIC_NOT_EXIST, `No topic route info in name server for the topic: ${topic}`)
    }
    if (ctx.orderMessageEnable) {
      const conf = kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, topic)
      if (conf) route.orderTopicConf = conf
    }
    return ok(undefined, encodeRemotingJson(route))
  })

  p.set(RequestCode.GET_BROKER_CLUSTER_INFO, () => ok(undefined, encodeRemotingJson(routes.clusterInfo())))
  p.set(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER, () => ok(undefined, encodeRemotingJson({ topicList: routes.allTopics() })))
  p.set(RequestCode.GET_TOPICS_BY_CLUSTER, (req) => ok(undefined, encodeRemotingJson({ topicList: routes.topicsOfCluster(headerString(req, HEADER.cluster)) })))
  p.set(RequestCode.GET_SYSTEM_TOPIC_LIST_FROM_NS, () => {
    const r = routes.systemTopics()
    return ok(undefined, encodeRemotingJson({ topicList: r.topics, brokerAddr: r.brokerAddr }))
  })
  // topicSysFlag bits: UNIT 1, UNIT_SUB 2 (RocketMQ's TopicSysFlag).
  p.set(RequestCode.GET_UNIT_TOPIC_LIST, () => ok(undefined, encodeRemotingJson({ topicList: routes.topicsWithSysFlag((f) => (f & 1) !== 0) })))
  p.set(RequestCode.GET_HAS_UNIT_SUB_TOPIC_LIST, () => ok(undefined, encodeRemotingJson({ topicList: routes.topicsWithSysFlag((f) => (f & 2) !== 0) })))
  p.set(RequestCode.GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST, () => ok(undefined, encodeRemotingJson({ topicList: routes.topicsWithSysFlag((f) => (f & 1) === 0 && (f & 2) !== 0) })))

  p.set(RequestCode.DELETE_TOPIC_IN_NAMESRV, (req) => {
    routes.deleteTopic(headerString(req, HEADER.topic), headerOptionalString(req, HEADER.clusterName))
    return ok()
  })

  p.set(RequestCode.REGISTER_TOPIC_IN_NAMESRV, (req) => {
    const topic = headerString(req, HEADER.topic)
    const route = parseRemotingJson(req.body) as { queueDatas?: unknown }
    if (!Array.isArray(route?.queueDatas)) throw new TransportError('BAD_BODY', 'REGISTER_TOPIC_IN_NAMESRV body needs a queueDatas array')
    routes.registerTopic(topic, route.queueDatas.map(queueData))
    return ok()
  })

  p.set(RequestCode.WIPE_WRITE_PERM_OF_BROKER, (req) => ok({ [HEADER.wipeTopicCount]: String(routes.setWritePerm(headerString(req, HEADER.brokerName), false)) }))
  p.set(RequestCode.ADD_WRITE_PERM_OF_BROKER, (req) => ok({ [HEADER.addTopicCount]: String(routes.setWritePerm(headerString(req, HEADER.brokerName), true)) }))

  p.set(RequestCode.PUT_KV_CONFIG, async (req) => {
    await kv.put(headerString(req, HEADER.namespace), headerString(req, HEADER.key), headerString(req, HEADER.value))
    return ok()
  })
  p.set(RequestCode.GET_KV_CONFIG, (req) => {
    const namespace = headerString(req, HEADER.namespace)
    const key = headerString(req, HEADER.key)
    const value = kv.get(namespace, key)
    if (value === undefined) return RemotingCommand.createResponse(ResponseCode.QUERY_NOT_FOUND, `No config item, Namespace: ${namespace} Key: ${key}`)
    return ok({ [HEADER.value]: value })
  })
  p.set(RequestCode.DELETE_KV_CONFIG, async (req) => {
    await kv.delete(headerString(req, HEADER.namespace), headerString(req, HEADER.key))
    return ok()
  })
  p.set(RequestCode.GET_KVLIST_BY_NAMESPACE, (req) => {
    const namespace = headerString(req, HEADER.namespace)
    const table = kv.list(namespace)
    if (!table) return RemotingCommand.createResponse(ResponseCode.QUERY_NOT_FOUND, `No config item, Namespace: ${namespace}`)
    return ok(undefined, encodeRemotingJson({ table }))
  })
  return p
}

function queueData(raw: unknown): QueueData {
  const q = raw as Partial<QueueData> | null
  if (!q || typeof q.brokerName !== 'string') throw new TransportError('BAD_BODY', 'a queueData needs a brokerName')
  const n = (v: unknown, d: number): number => (Number.isSafeInteger(Number(v)) && v !== null && v !== undefined ? Number(v) : d)
  return { brokerName: q.brokerName, readQueueNums: n(q.readQueueNums, 0), writeQueueNums: n(q.writeQueueNums, 0), perm: n(q.perm, 6), topicSysFlag: n(q.topicSysFlag, 0) }
}

/**
 * An address a client can dial: a broker that registers a wildcard host (0.0.0.0, ::) is listed
 * under the host its connection comes from, with the port it gave.
 */
export function dialable(addr: string, channel: Channel): string {
  if (addr === '') return addr
  const colon = addr.lastIndexOf(':')
  if (colon < 0) return addr
  const host = addr.slice(0, colon).replace(/^\[|\]$/g, '')
  if (host !== '0.0.0.0' && host !== '::' && host !== '') return addr
  const remote = channel.remoteAddress
  const rc = remote.lastIndexOf(':')
  if (rc < 0) return addr
  let remoteHost = remote.slice(0, rc)
  // An IPv4 peer seen through an IPv6 socket: clients split "host:port" on ':'.
  const mapped = /^\[::ffff:(\d+\.\d+\.\d+\.\d+)\]$/i.exec(remoteHost)
  if (mapped) remoteHost = mapped[1]!
  return `${remoteHost}${addr.slice(colon)}`
}
