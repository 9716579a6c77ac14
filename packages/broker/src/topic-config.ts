/**
 * The broker's topics (RocketMQ's TopicConfigManager): queue counts and permission per topic,
 * persisted in `config/topics.json` in RocketMQ's shape, with a data version that tells the
 * nameservers when to read them again. System topics are made at start; a topic is created by
 * UPDATE_AND_CREATE_TOPIC, by a producer's send when auto-creation is on (from the TBW102
 * template), or for a consumer group's retry and dead-letter queues.
 */
import { writeConfigFile, type FileIO } from '@mqts/common'
import { DEFAULT_PERM, PERM, type DataVersion, type TopicConfig } from '@mqts/namesrv'
import { readBrokerConfigFile } from './config-files.js'

/** Topics RocketMQ's broker makes at start (TopicValidator / TopicConfigManager). */
export const SYSTEM_TOPIC = {
  /** The template of auto-created topics. */
  AUTO_CREATE: 'TBW102',
  SELF_TEST: 'SELF_TEST_TOPIC',
  OFFSET_MOVED_EVENT: 'OFFSET_MOVED_EVENT',
  SCHEDULE: 'SCHEDULE_TOPIC_XXXX',
} as const

export { DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX, dlqTopic, retryTopic } from '@mqts/transport'
export const TOPICS_FILE = 'topics.json'

export function isReadable(perm: number): boolean {
  return (perm & PERM.READ) !== 0
}
export function isWriteable(perm: number): boolean {
  return (perm & PERM.WRITE) !== 0
}
export function isInherited(perm: number): boolean {
  return (perm & PERM.INHERIT) !== 0
}

/** Queue ids a topic may have, read or write (the store's default maxQueuesPerTopic). */
export const MAX_QUEUES_PER_TOPIC = 1024

/**
 * What is wrong with a topic's perm, or undefined: RocketMQ's PermName.isValid takes 0-7 (the
 * READ, WRITE and INHERIT bits); its admin client refuses anything else with this remark
 * (Validators.checkTopicConfig), and so do the broker and `mqts admin`.
 */
export function permProblem(perm: number): string | undefined {
  if (Number.isInteger(perm) && perm >= 0 && perm < PERM.PRIORITY) return undefined
  return `topicPermission value: ${perm} is invalid: a topic's perm is 0-7 (${PERM.READ} read, ${PERM.WRITE} write, ${PERM.INHERIT} inherit; ${PERM.READ | PERM.WRITE} read-write)`
}

/** What is wrong with a topic's queue counts, or undefined: each 0 to `max`, not both 0. */
export function queueNumsProblem(read: number, write: number, max: number = MAX_QUEUES_PER_TOPIC): string | undefined {
  const inRange = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= max
  if (inRange(read) && inRange(write) && read + write > 0) return undefined
  return `readQueueNums ${read} and writeQueueNums ${write} must be 0-${max}, not both 0`
}

interface TopicsFile {
  topicConfigTable: Record<string, TopicConfig>
  dataVersion: DataVersion
}

function parseTopicsFile(text: string): TopicsFile {
  const json = JSON.parse(text) as Partial<TopicsFile>
  if (typeof json !== 'object' || json === null || typeof json.topicConfigTable !== 'object' || json.topicConfigTable === null) throw new Error('no topicConfigTable')
  return { topicConfigTable: json.topicConfigTable, dataVersion: json.dataVersion ?? { timestamp: 0, counter: 0 } }
}

function isTopicsFile(text: string): boolean {
  try {
    parseTopicsFile(text)
    return true
  } catch {
    return false
  }
}

/** A topic config with every field RocketMQ writes. */
export function topicConfig(topicName: string, readQueueNums: number, writeQueueNums: number, perm: number = DEFAULT_PERM, topicSysFlag = 0): TopicConfig {
  return { topicName, readQueueNums, writeQueueNums, perm, topicFilterType: 'SINGLE_TAG', topicSysFlag, order: false, attributes: {} }
}

export interface TopicConfigManagerOptions {
  io: FileIO
  file: string
  clusterName: string
  brokerName: string
  autoCreateTopicEnable: boolean
  defaultTopicQueueNums: number
  /** Delay levels: SCHEDULE_TOPIC_XXXX has one queue per level. */
  delayLevels: number
  now: () => number
}

export class TopicConfigManager {
  readonly #table = new Map<string, TopicConfig>()
  readonly #systemTopics = new Set<string>()
  #dataVersion: DataVersion = { stateVersion: 0, timestamp: 0, counter: 0 }
  #persisting: Promise<void> = Promise.resolve()

  constructor(readonly options: TopicConfigManagerOptions) {
    const o = options
    const system = (tc: TopicConfig): void => {
      this.#table.set(tc.topicName, tc)
      this.#systemTopics.add(tc.topicName)
    }
    system(topicConfig(SYSTEM_TOPIC.SELF_TEST, 1, 1))
    if (o.autoCreateTopicEnable) system(topicConfig(SYSTEM_TOPIC.AUTO_CREATE, o.defaultTopicQueueNums, o.defaultTopicQueueNums, PERM.INHERIT | PERM.READ | PERM.WRITE))
    // The cluster's and the broker's own name are topics too (admin tools route by them).
    system(topicConfig(o.clusterName, 16, 16, PERM.INHERIT | PERM.READ | PERM.WRITE))
    system(topicConfig(o.brokerName, 1, 1, PERM.INHERIT | PERM.READ | PERM.WRITE))
    system(topicConfig(SYSTEM_TOPIC.OFFSET_MOVED_EVENT, 1, 1))
    system(topicConfig(SYSTEM_TOPIC.SCHEDULE, o.delayLevels, o.delayLevels))
  }

  /** Reads topics.json (or its .bak); topics there override the built-in ones. */
  async load(): Promise<void> {
    const file = await readBrokerConfigFile(this.options.io, this.options.file, parseTopicsFile)
    if (!file) return
    for (const [name, tc] of Object.entries(file.topicConfigTable)) {
      if (typeof tc !== 'object' || tc === null) continue
      const t = tc as Partial<TopicConfig>
      this.#table.set(name, { ...topicConfig(name, t.readQueueNums ?? 16, t.writeQueueNums ?? 16, t.perm ?? DEFAULT_PERM, t.topicSysFlag ?? 0), ...t, topicName: name })
    }
    this.#dataVersion = { stateVersion: file.dataVersion.stateVersion ?? 0, timestamp: file.dataVersion.timestamp, counter: file.dataVersion.counter }
  }

  get dataVersion(): DataVersion {
    return { ...this.#dataVersion }
  }

  get(topic: string): TopicConfig | undefined {
    return this.#table.get(topic)
  }

  all(): TopicConfig[] {
    return [...this.#table.values()].sort((a, b) => (a.topicName < b.topicName ? -1 : 1))
  }

  isSystemTopic(topic: string): boolean {
    return this.#systemTopics.has(topic)
  }

  /** Creates or replaces a topic (UPDATE_AND_CREATE_TOPIC); persisted before it resolves. */
  async update(tc: TopicConfig): Promise<void> {
    this.#table.set(tc.topicName, { ...tc })
    await this.#changed()
  }

  /** A replica takes its master's topics as they are (SlaveSynchronize). */
  async replaceAll(configs: TopicConfig[]): Promise<void> {
    const next = new Map(configs.filter((tc) => typeof tc?.topicName === 'string').map((tc) => [tc.topicName, { ...tc }]))
    const same = next.size === this.#table.size && [...next].every(([k, v]) => JSON.stringify(this.#table.get(k)) === JSON.stringify(v))
    if (same) return
    this.#table.clear()
    for (const [k, v] of next) this.#table.set(k, v)
    await this.#changed()
  }

  async delete(topic: string): Promise<boolean> {
    if (!this.#table.delete(topic)) return false
    await this.#changed()
    return true
  }

  /**
   * The config of a topic a producer sends to that does not exist: made from the default topic
   * (TBW102) when auto-creation is on and that topic may be inherited, with
   * min(asked, template's) queues, as RocketMQ's createTopicInSendMessageMethod.
   */
  async createOnSend(topic: string, defaultTopic: string, askedQueueNums: number, topicSysFlag: number): Promise<TopicConfig | undefined> {
    const existing = this.#table.get(topic)
    if (existing) return existing
    const template = this.#table.get(defaultTopic)
    if (!template || !this.options.autoCreateTopicEnable || !isInherited(template.perm)) return undefined
    const queues = Math.max(1, Math.min(askedQueueNums > 0 ? askedQueueNums : template.writeQueueNums, template.writeQueueNums))
    const tc = topicConfig(topic, queues, queues, template.perm & ~PERM.INHERIT, topicSysFlag)
    await this.update(tc)
    return tc
  }

  /** A retry or DLQ topic of a group, made on first use (RocketMQ's createTopicInSendMessageBackMethod). */
  async createIfMissing(topic: string, queueNums: number, perm: number): Promise<TopicConfig> {
    const existing = this.#table.get(topic)
    if (existing) return existing
    const tc = topicConfig(topic, queueNums, queueNums, perm)
    await this.update(tc)
    return tc
  }

  async #changed(): Promise<void> {
    const v = this.#dataVersion
    this.#dataVersion = { stateVersion: v.stateVersion ?? 0, timestamp: this.options.now(), counter: v.counter + 1 }
    const write = async (): Promise<void> => {
      const topicConfigTable: Record<string, TopicConfig> = {}
      for (const tc of this.all()) topicConfigTable[tc.topicName] = tc
      await writeConfigFile(this.options.io, this.options.file, JSON.stringify({ topicConfigTable, dataVersion: this.#dataVersion }, null, 2), isTopicsFile)
    }
    const p = this.#persisting.then(write, write)
    this.#persisting = p.catch(() => undefined)
    await p
  }

  /** What REGISTER_BROKER carries: every topic and the data version. */
  registerBody(): { topicConfigSerializeWrapper: { topicConfigTable: Record<string, TopicConfig>; dataVersion: DataVersion }; filterServerList: string[] } {
    const topicConfigTable: Record<string, TopicConfig> = {}
    for (const tc of this.all()) topicConfigTable[tc.topicName] = tc
    return { topicConfigSerializeWrapper: { topicConfigTable, dataVersion: this.dataVersion }, filterServerList: [] }
  }
}
