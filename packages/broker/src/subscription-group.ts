/**
 * Consumer group settings (RocketMQ's SubscriptionGroupManager): whether a group may consume,
 * its retry queue count and most retries before the dead-letter queue. Made on first use when
 * `autoCreateSubscriptionGroup` is on, persisted in `config/subscriptionGroup.json` in RocketMQ's
 * shape.
 */
import { writeConfigFile, type FileIO } from '@mqts/common'
import type { DataVersion } from '@mqts/namesrv'
import { readBrokerConfigFile } from './config-files.js'

export interface SubscriptionGroupConfig {
  groupName: string
  consumeEnable: boolean
  consumeFromMinEnable: boolean
  consumeBroadcastEnable: boolean
  retryQueueNums: number
  retryMaxTimes: number
  brokerId: number
  whichBrokerWhenConsumeSlowly: number
  notifyConsumerIdsChangedEnable: boolean
}

export const SUBSCRIPTION_GROUP_FILE = 'subscriptionGroup.json'

/** RocketMQ's defaults for a new group. */
export function subscriptionGroupConfig(groupName: string, retryMaxTimes = 16): SubscriptionGroupConfig {
  return {
    groupName,
    consumeEnable: true,
    consumeFromMinEnable: true,
    consumeBroadcastEnable: true,
    retryQueueNums: 1,
    retryMaxTimes,
    brokerId: 0,
    whichBrokerWhenConsumeSlowly: 1,
    notifyConsumerIdsChangedEnable: true,
  }
}

interface GroupsFile {
  subscriptionGroupTable: Record<string, SubscriptionGroupConfig>
  dataVersion: DataVersion
}

function parseGroups(text: string): GroupsFile {
  const json = JSON.parse(text) as Partial<GroupsFile>
  if (typeof json?.subscriptionGroupTable !== 'object' || json.subscriptionGroupTable === null) throw new Error('no subscriptionGroupTable')
  return { subscriptionGroupTable: json.subscriptionGroupTable, dataVersion: json.dataVersion ?? { timestamp: 0, counter: 0 } }
}

export class SubscriptionGroupManager {
  readonly #table = new Map<string, SubscriptionGroupConfig>()
  #dataVersion: DataVersion = { stateVersion: 0, timestamp: 0, counter: 0 }
  #writing: Promise<void> = Promise.resolve()

  constructor(
    private readonly io: FileIO,
    readonly file: string,
    private readonly autoCreate: boolean,
    private readonly defaultRetryMaxTimes: number,
    private readonly now: () => number,
  ) {}

  async load(): Promise<void> {
    const file = await readBrokerConfigFile(this.io, this.file, parseGroups)
    if (!file) return
    for (const [name, g] of Object.entries(file.subscriptionGroupTable)) {
      if (typeof g === 'object' && g !== null) this.#table.set(name, { ...subscriptionGroupConfig(name, this.defaultRetryMaxTimes), ...g, groupName: name })
    }
    this.#dataVersion = file.dataVersion
  }

  /** A group's settings, made with the defaults on first use when auto-creation is on. */
  findOrCreate(group: string): SubscriptionGroupConfig | undefined {
    const g = this.#table.get(group)
    if (g || !this.autoCreate) return g
    const created = subscriptionGroupConfig(group, this.defaultRetryMaxTimes)
    this.#table.set(group, created)
    void this.persist().catch(() => undefined)
    return created
  }

  get(group: string): SubscriptionGroupConfig | undefined {
    return this.#table.get(group)
  }

  async update(config: SubscriptionGroupConfig): Promise<void> {
    this.#table.set(config.groupName, { ...config })
    await this.persist()
  }

  /** A replica takes its master's groups as they are. */
  async replaceAll(configs: SubscriptionGroupConfig[]): Promise<void> {
    const next = configs.filter((g) => typeof g?.groupName === 'string')
    if (next.length === this.#table.size && next.every((g) => JSON.stringify(this.#table.get(g.groupName)) === JSON.stringify(g))) return
    this.#table.clear()
    for (const g of next) this.#table.set(g.groupName, { ...g })
    await this.persist()
  }

  /** What GET_ALL_SUBSCRIPTIONGROUP_CONFIG answers (and what a replica copies). */
  toJSON(): GroupsFile & { forbiddenTable: Record<string, never> } {
    const subscriptionGroupTable: Record<string, SubscriptionGroupConfig> = {}
    for (const name of [...this.#table.keys()].sort()) subscriptionGroupTable[name] = this.#table.get(name)!
    return { subscriptionGroupTable, forbiddenTable: {}, dataVersion: this.#dataVersion }
  }

  persist(): Promise<void> {
    const run = async (): Promise<void> => {
      this.#dataVersion = { stateVersion: this.#dataVersion.stateVersion ?? 0, timestamp: this.now(), counter: this.#dataVersion.counter + 1 }
      await writeConfigFile(this.io, this.file, JSON.stringify(this.toJSON(), null, 2), (t) => {
        try {
          parseGroups(t)
          return true
        } catch {
          return false
        }
      })
    }
    const p = this.#writing.then(run, run)
    this.#writing = p.catch(() => undefined)
    return p
  }
}
