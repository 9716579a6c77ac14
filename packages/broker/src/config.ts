/**
 * The broker's configuration: RocketMQ's BrokerConfig / MessageStoreConfig names and defaults for
 * what mqts implements, read from an object or from RocketMQ's `key=value` broker.conf text.
 */
import { BrokerError } from './errors.js'

export type BrokerRole = 'ASYNC_MASTER' | 'SYNC_MASTER' | 'SLAVE'
export type FlushDiskType = 'ASYNC_FLUSH' | 'SYNC_FLUSH'

export interface BrokerConfig {
  brokerClusterName: string
  brokerName: string
  /** 0 = master, > 0 a replica. */
  brokerId: number
  /** Nameservers, "host:port" each (broker.conf: `namesrvAddr=a:9876;b:9876`). */
  namesrvAddr: string[]
  /** Address the broker listens on (RocketMQ listens on every interface; mqts on loopback by default). */
  listenHost: string
  /** Port (RocketMQ's listenPort, 10911); 0 picks a free one. */
  listenPort: number
  /** Address registered with the nameservers, which clients dial; default listenHost, or the first non-internal IPv4 when listening on 0.0.0.0. */
  brokerIP1: string | undefined
  /** Store root (RocketMQ's storePathRootDir). */
  storePathRootDir: string
  brokerRole: BrokerRole
  flushDiskType: FlushDiskType
  /** Create an unknown topic when a producer sends to it (from TBW102). */
  autoCreateTopicEnable: boolean
  /** Create a subscription group on first use. */
  autoCreateSubscriptionGroup: boolean
  /** Queues of TBW102, the template of auto-created topics (RocketMQ: 8; producers ask for 4). */
  defaultTopicQueueNums: number
  /** How often the broker registers with every nameserver (30 s). */
  registerBrokerIntervalMs: number
  /** Register timeout for each nameserver call (RocketMQ: 6 s). */
  registerBrokerTimeoutMs: number
  /** How long a client channel may stay silent before it is dropped (120 s). */
  channelExpiredTimeoutMs: number
  /** Long polling on (RocketMQ's longPollingEnable); off: a pull waits shortPollingTimeMills. */
  longPollingEnable: boolean
  shortPollingTimeMills: number
  /** Retry/DLQ: maximum reconsume times for a group without its own setting. */
  maxReconsumeTimes: number
  /** Store: CommitLog file size (RocketMQ's mappedFileSizeCommitLog, 1 GiB). */
  mappedFileSizeCommitLog: number
  /** Store: largest message body (RocketMQ's maxMessageSize, 4 MiB). */
  maxMessageSize: number
  /** Store: the key index (RocketMQ's messageIndexEnable). */
  messageIndexEnable: boolean
  /** Store: delay levels (RocketMQ's messageDelayLevel). */
  messageDelayLevel: string
  /** HA port of a master (RocketMQ's haListenPort); default listenPort + 1 (a free one when listenPort is 0). */
  haListenPort: number | undefined
  /** SYNC_MASTER: how long a send waits for its replicas (RocketMQ's syncFlushTimeout, 5 s). */
  syncFlushTimeout: number
  /** A replica copies its master's topics, offsets and groups this often. */
  slaveSyncIntervalMs: number
  /** An in-sync replica that has not caught up with the master for this long (ms) leaves the in-sync set (RocketMQ 5's haMaxTimeSlaveNotCatchup, 15 s). */
  haMaxTimeSlaveNotCatchup: number
  /** Pulls may be sent to a replica (RocketMQ's slaveReadEnable, default false): a replica serves them, a master suggests it to slow consumers. */
  slaveReadEnable: boolean
  /** A consumer more than this share (%) of the machine's memory behind the CommitLog's end is slow (RocketMQ's accessMessageInMemoryMaxRatio, 40). */
  accessMessageInMemoryMaxRatio: number
}

export const DEFAULT_BROKER_PORT = 10911

export const DEFAULT_BROKER_CONFIG: Readonly<BrokerConfig> = {
  brokerClusterName: 'DefaultCluster',
  brokerName: 'broker-a',
  brokerId: 0,
  namesrvAddr: [],
  listenHost: '127.0.0.1',
  listenPort: DEFAULT_BROKER_PORT,
  brokerIP1: undefined,
  storePathRootDir: './data/store',
  brokerRole: 'ASYNC_MASTER',
  flushDiskType: 'ASYNC_FLUSH',
  autoCreateTopicEnable: true,
  autoCreateSubscriptionGroup: true,
  defaultTopicQueueNums: 8,
  registerBrokerIntervalMs: 30_000,
  registerBrokerTimeoutMs: 6_000,
  channelExpiredTimeoutMs: 120_000,
  longPollingEnable: true,
  shortPollingTimeMills: 1000,
  maxReconsumeTimes: 16,
  mappedFileSizeCommitLog: 1024 * 1024 * 1024,
  maxMessageSize: 4 * 1024 * 1024,
  messageIndexEnable: true,
  messageDelayLevel: '1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h',
  haListenPort: undefined,
  syncFlushTimeout: 5000,
  slaveSyncIntervalMs: 10_000,
  haMaxTimeSlaveNotCatchup: 15_000,
  slaveReadEnable: false,
  accessMessageInMemoryMaxRatio: 40,
}

const ROLES: readonly BrokerRole[] = ['ASYNC_MASTER', 'SYNC_MASTER', 'SLAVE']
const FLUSH: readonly FlushDiskType[] = ['ASYNC_FLUSH', 'SYNC_FLUSH']

type Kind = 'string' | 'int' | 'bool' | 'list' | 'role' | 'flush' | 'optional-string' | 'optional-int'
const KINDS: Record<keyof BrokerConfig, Kind> = {
  brokerClusterName: 'string',
  brokerName: 'string',
  brokerId: 'int',
  namesrvAddr: 'list',
  listenHost: 'string',
  listenPort: 'int',
  brokerIP1: 'optional-string',
  storePathRootDir: 'string',
  brokerRole: 'role',
  flushDiskType: 'flush',
  autoCreateTopicEnable: 'bool',
  autoCreateSubscriptionGroup: 'bool',
  defaultTopicQueueNums: 'int',
  registerBrokerIntervalMs: 'int',
  registerBrokerTimeoutMs: 'int',
  channelExpiredTimeoutMs: 'int',
  longPollingEnable: 'bool',
  shortPollingTimeMills: 'int',
  maxReconsumeTimes: 'int',
  mappedFileSizeCommitLog: 'int',
  maxMessageSize: 'int',
  messageIndexEnable: 'bool',
  messageDelayLevel: 'string',
  haListenPort: 'optional-int',
  syncFlushTimeout: 'int',
  slaveSyncIntervalMs: 'int',
  haMaxTimeSlaveNotCatchup: 'int',
  slaveReadEnable: 'bool',
  accessMessageInMemoryMaxRatio: 'int',
}

/** RocketMQ's names for the same settings in broker.conf, where they differ from ours. */
const ALIASES: Record<string, keyof BrokerConfig> = {
  registerBrokerInterval: 'registerBrokerIntervalMs',
  registerNameServerPeriod: 'registerBrokerIntervalMs',
  channelExpiredTimeout: 'channelExpiredTimeoutMs',
}

function bad(key: string, value: unknown, want: string): BrokerError {
  return new BrokerError('INVALID_CONFIG', `broker config ${key} must be ${want}, got ${JSON.stringify(value)}`)
}

function toInt(key: string, value: unknown): number {
  const n = typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : value
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw bad(key, value, 'a non-negative integer')
  return n
}

function coerce(key: keyof BrokerConfig, value: unknown): unknown {
  const kind = KINDS[key]
  switch (kind) {
    case 'string': {
      if (typeof value !== 'string' || value.length === 0) throw bad(key, value, 'a non-empty string')
      return value
    }
    case 'optional-string':
      if (value === undefined || value === '') return undefined
      if (typeof value !== 'string') throw bad(key, value, 'a string')
      return value
    case 'optional-int':
      return value === undefined || value === '' ? undefined : toInt(key, value)
    case 'int':
      return toInt(key, value)
    case 'bool': {
      if (typeof value === 'boolean') return value
      if (value === 'true' || value === 'false') return value === 'true'
      throw bad(key, value, 'true or false')
    }
    case 'list': {
      const items = Array.isArray(value) ? value : typeof value === 'string' ? value.split(/[;,]/) : undefined
      if (!items || !items.every((i) => typeof i === 'string')) throw bad(key, value, 'a list of host:port (a;b in broker.conf)')
      return (items as string[]).map((i) => i.trim()).filter((i) => i.length > 0)
    }
    case 'role':
      if (!ROLES.includes(value as BrokerRole)) throw bad(key, value, ROLES.join(' | '))
      return value
    case 'flush':
      if (!FLUSH.includes(value as FlushDiskType)) throw bad(key, value, FLUSH.join(' | '))
      return value
  }
}

/**
 * The full configuration from partial settings (object values or broker.conf text values), every
 * value checked. Unknown keys are refused, except RocketMQ settings mqts does not use, which a
 * broker.conf may carry (`ignored` lists them).
 */
export function resolveBrokerConfig(settings: Partial<Record<string, unknown>>, ignored: string[] = []): BrokerConfig {
  const out: BrokerConfig = { ...DEFAULT_BROKER_CONFIG, namesrvAddr: [...DEFAULT_BROKER_CONFIG.namesrvAddr] }
  for (const [rawKey, value] of Object.entries(settings)) {
    if (value === undefined) continue
    const key = (rawKey in KINDS ? rawKey : ALIASES[rawKey]) as keyof BrokerConfig | undefined
    if (!key) {
      ignored.push(rawKey)
      continue
    }
    ;(out as unknown as Record<string, unknown>)[key] = coerce(key, value)
  }
  if (out.listenPort > 65535) throw bad('listenPort', out.listenPort, 'a port (0-65535)')
  if (out.accessMessageInMemoryMaxRatio > 100) throw bad('accessMessageInMemoryMaxRatio', out.accessMessageInMemoryMaxRatio, 'a percentage (0-100)')
  if (out.defaultTopicQueueNums < 1) throw bad('defaultTopicQueueNums', out.defaultTopicQueueNums, 'at least 1')
  if (out.haMaxTimeSlaveNotCatchup < 1) throw bad('haMaxTimeSlaveNotCatchup', out.haMaxTimeSlaveNotCatchup, 'at least 1 (ms)')
  if (out.brokerId === 0 && out.brokerRole === 'SLAVE') throw bad('brokerRole', out.brokerRole, 'ASYNC_MASTER or SYNC_MASTER for brokerId 0')
  if (out.brokerId > 0 && out.brokerRole !== 'SLAVE') throw bad('brokerRole', out.brokerRole, 'SLAVE for brokerId > 0')
  return out
}

/** Parses RocketMQ's broker.conf: `key=value` lines, `#` comments, blank lines. */
export function parseBrokerConf(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim()
    if (t === '' || t.startsWith('#') || t.startsWith('!')) return
    const eq = t.search(/[=:]/)
    if (eq <= 0) throw new BrokerError('INVALID_CONFIG', `broker.conf line ${i + 1} is not key=value: ${JSON.stringify(line)}`)
    out[t.slice(0, eq).trim()] = t.slice(eq + 1).trim()
  })
  return out
}
