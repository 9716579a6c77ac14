/**
 * The nameserver's wire shapes: header field names, bodies (RocketMQ's TopicRouteData,
 * ClusterInfo, RegisterBrokerBody, TopicList, KVTable), permission bits and defaults, as
 * RocketMQ 4.x/5.x write them (../shared reference, section 2.6). Bodies are JSON; numeric map
 * keys are written quoted (standard JSON, which every RocketMQ client reads).
 */
import { crc32 } from 'node:zlib'
import { TransportError, parseRemotingJson } from '@mqts/transport'

import { PERM } from '@mqts/transport'
export { PERM }
export const DEFAULT_PERM = PERM.READ | PERM.WRITE

/** How often brokers register (30 s), how long a silent broker lives (120 s), how often that is checked (5 s). */
export const BROKER_REGISTER_INTERVAL_MS = 30_000
export const BROKER_CHANNEL_EXPIRED_MS = 120_000
export const SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS = 5_000

/** The KV namespace whose entries are sent back to a registering broker and name ordered topics. */
export const NAMESPACE_ORDER_TOPIC_CONFIG = 'ORDER_TOPIC_CONFIG'

/** Default nameserver port (RocketMQ's NamesrvStartup). */
export const DEFAULT_NAMESRV_PORT = 9876

/** Broker id of a master. */
export const MASTER_ID = 0

export interface DataVersion {
  stateVersion?: number
  timestamp: number
  counter: number
}

export interface TopicConfig {
  topicName: string
  readQueueNums: number
  writeQueueNums: number
  perm: number
  topicFilterType?: string
  topicSysFlag?: number
  order?: boolean
  attributes?: Record<string, string>
}

/** The route shapes, kept with the other wire names in @mqts/transport. */
import type { BrokerData, QueueData, TopicRouteData } from '@mqts/transport'
export type { BrokerData, QueueData, TopicRouteData }

export interface ClusterInfo {
  brokerAddrTable: Record<string, BrokerData>
  clusterAddrTable: Record<string, string[]>
}

/** What a broker sends with REGISTER_BROKER: its topic configs and their version. */
export interface RegisterBrokerBody {
  topicConfigSerializeWrapper: {
    topicConfigTable: Record<string, TopicConfig>
    dataVersion: DataVersion
  }
  filterServerList: string[]
}

/**
 * Java's UtilAll.crc32 of a body, as REGISTER_BROKER's `bodyCrc32` carries it: CRC-32 masked to
 * 31 bits (0 means "not checked").
 */
export function bodyCrc32(body: Buffer): number {
  return (crc32(body) & 0x7fffffff) >>> 0
}

function badBody(what: string): TransportError {
  return new TransportError('BAD_BODY', `REGISTER_BROKER body: ${what}`)
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function int(v: unknown, what: string, fallback?: number): number {
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback
    throw badBody(`${what} is missing`)
  }
  const n = typeof v === 'string' ? Number(v) : v
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw badBody(`${what} must be an integer, got ${JSON.stringify(v)}`)
  return n
}

/**
 * Reads a REGISTER_BROKER body (uncompressed JSON; a Java broker compresses only with
 * compressedRegister, off by default). An empty body registers no topics.
 */
export function decodeRegisterBrokerBody(body: Buffer): RegisterBrokerBody {
  if (body.length === 0) return { topicConfigSerializeWrapper: { topicConfigTable: {}, dataVersion: { timestamp: 0, counter: 0 } }, filterServerList: [] }
  const json = parseRemotingJson(body)
  if (!isObject(json)) throw badBody('not a JSON object')
  const wrapper = json.topicConfigSerializeWrapper ?? {}
  if (!isObject(wrapper)) throw badBody('topicConfigSerializeWrapper is not an object')
  const table = wrapper.topicConfigTable ?? {}
  if (!isObject(table)) throw badBody('topicConfigTable is not an object')
  const topicConfigTable: Record<string, TopicConfig> = Object.create(null) as Record<string, TopicConfig>
  for (const [name, raw] of Object.entries(table)) {
    if (!isObject(raw)) throw badBody(`topic ${name} is not an object`)
    const topicName = typeof raw.topicName === 'string' && raw.topicName.length > 0 ? raw.topicName : name
    topicConfigTable[name] = {
      topicName,
      readQueueNums: int(raw.readQueueNums, `${name}.readQueueNums`, 16),
      writeQueueNums: int(raw.writeQueueNums, `${name}.writeQueueNums`, 16),
      perm: int(raw.perm, `${name}.perm`, DEFAULT_PERM),
      topicFilterType: typeof raw.topicFilterType === 'string' ? raw.topicFilterType : 'SINGLE_TAG',
      topicSysFlag: int(raw.topicSysFlag, `${name}.topicSysFlag`, 0),
      order: raw.order === true,
    }
  }
  const dv = wrapper.dataVersion ?? {}
  if (!isObject(dv)) throw badBody('dataVersion is not an object')
  const dataVersion: DataVersion = { stateVersion: int(dv.stateVersion, 'dataVersion.stateVersion', 0), timestamp: int(dv.timestamp, 'dataVersion.timestamp', 0), counter: int(dv.counter, 'dataVersion.counter', 0) }
  const filters = Array.isArray(json.filterServerList) ? json.filterServerList.filter((f): f is string => typeof f === 'string') : []
  return { topicConfigSerializeWrapper: { topicConfigTable, dataVersion }, filterServerList: filters }
}

export function sameDataVersion(a: DataVersion | undefined, b: DataVersion | undefined): boolean {
  if (!a || !b) return false
  return a.timestamp === b.timestamp && a.counter === b.counter && (a.stateVersion ?? 0) === (b.stateVersion ?? 0)
}

/** Header fields of the nameserver's requests and responses (RocketMQ's header classes). */
export const HEADER = {
  brokerName: 'brokerName',
  brokerAddr: 'brokerAddr',
  clusterName: 'clusterName',
  haServerAddr: 'haServerAddr',
  brokerId: 'brokerId',
  masterAddr: 'masterAddr',
  bodyCrc32: 'bodyCrc32',
  compressed: 'compressed',
  heartbeatTimeoutMillis: 'heartbeatTimeoutMillis',
  topic: 'topic',
  namespace: 'namespace',
  key: 'key',
  value: 'value',
  cluster: 'cluster',
  wipeTopicCount: 'wipeTopicCount',
  addTopicCount: 'addTopicCount',
} as const
