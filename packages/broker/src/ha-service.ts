/**
 * The broker's HA service: on a master (ASYNC_MASTER, SYNC_MASTER) it serves the HA stream on
 * the HA port (the broker's port + 1 by default) and, under SYNC_MASTER, holds a send's answer
 * until every in-sync replica has the message; on a replica (SLAVE) it follows the master whose HA
 * address the nameserver gave at registration, and copies the master's metadata (topics,
 * consumer offsets, delay offsets, subscription groups) every `slaveSyncIntervalMs`, as
 * RocketMQ's SlaveSynchronize does; a topic its master deleted is deleted from its store too.
 */
import { HAMaster, HAReplica, type SyncResult } from '@mqts/ha'
import type { MessageStore } from '@mqts/store'
import { RemotingCommand, RequestCode, ResponseCode, parseRemotingJson, type Logger, type RemotingClient } from '@mqts/transport'
import type { TopicConfig } from '@mqts/namesrv'
import type { BrokerConfig } from './config.js'
import { DELETED_TOPIC_OFFSETS } from './protocol.js'
import type { ScheduleService } from './schedule.js'
import type { SubscriptionGroupConfig, SubscriptionGroupManager } from './subscription-group.js'
import type { TopicConfigManager } from './topic-config.js'

export interface HAServiceParts {
  config: BrokerConfig
  store: MessageStore
  client: RemotingClient
  topics: TopicConfigManager
  groups: SubscriptionGroupManager
  schedule: ScheduleService | undefined
  logger: Logger
}

/** How long a metadata request to the master may take. */
const SLAVE_SYNC_TIMEOUT_MS = 5000

export class BrokerHAService {
  #master: HAMaster | undefined
  #replica: HAReplica | undefined
  /** A replica's master: its broker address (metadata) and HA address (the stream). */
  masterAddr = ''
  masterHaAddr = ''
  #syncTimer: NodeJS.Timeout | undefined
  #syncing = false

  constructor(private readonly parts: HAServiceParts) {}

  /** Starts the master side; returns the HA port. */
  async startMaster(host: string, port: number): Promise<number> {
    const maxTimeNotCaughtUpMs = this.parts.config.haMaxTimeSlaveNotCatchup
    this.#master = await HAMaster.start({ store: this.parts.store, host, port, maxTimeNotCaughtUpMs, logger: this.parts.logger })
    return this.#master.port
  }

  /** Starts following (the master's address comes with the first registration). */
  startReplica(): void {
    this.#replica = HAReplica.start({ store: this.parts.store, masterAddress: () => this.masterHaAddr || undefined, logger: this.parts.logger })
    this.#syncTimer = setInterval(() => void this.syncMetadata(), this.parts.config.slaveSyncIntervalMs)
    this.#syncTimer.unref()
  }

  /** What a registration answered: a replica learns its master. */
  learnMaster(masterAddr: string | undefined, haServerAddr: string | undefined): void {
    if (masterAddr) this.masterAddr = masterAddr
    if (haServerAddr) this.masterHaAddr = haServerAddr
  }

  get master(): HAMaster | undefined {
    return this.#master
  }

  get replica(): HAReplica | undefined {
    return this.#replica
  }

  /**
   * SYNC_MASTER: waits until every in-sync replica holds CommitLog offset `end`. 'OK' at once on
   * an ASYNC_MASTER.
   */
  async waitForReplicas(end: number): Promise<SyncResult> {
    if (this.parts.config.brokerRole !== 'SYNC_MASTER' || !this.#master) return 'OK'
    return this.#master.waitForReplicas(end, this.parts.config.syncFlushTimeout)
  }

  /** The send answer's code for a replication result. */
  static responseCode(r: SyncResult): number {
    return r === 'OK' ? ResponseCode.SUCCESS : r === 'FLUSH_SLAVE_TIMEOUT' ? ResponseCode.FLUSH_SLAVE_TIMEOUT : ResponseCode.SLAVE_NOT_AVAILABLE
  }

  /** A replica copies its master's topics, offsets, delay offsets and groups. */
  async syncMetadata(): Promise<void> {
    if (this.#syncing || !this.masterAddr) return
    this.#syncing = true
    const { client, topics, groups, store, schedule, logger } = this.parts
    const ask = async (code: number): Promise<unknown> => {
      const r = await client.invoke(this.masterAddr, RemotingCommand.createRequest(code), SLAVE_SYNC_TIMEOUT_MS)
      if (r.code !== ResponseCode.SUCCESS) throw new Error(`code ${r.code}: ${r.remark ?? ''}`)
      return parseRemotingJson(r.body)
    }
    try {
      const t = (await ask(RequestCode.GET_ALL_TOPIC_CONFIG)) as { topicConfigTable?: Record<string, TopicConfig>; [DELETED_TOPIC_OFFSETS]?: Record<string, unknown> }
      if (t.topicConfigTable) {
        await topics.replaceAll(Object.values(t.topicConfigTable))
        await this.#followDeletions(t[DELETED_TOPIC_OFFSETS] ?? {})
      }
      const o = (await ask(RequestCode.GET_ALL_CONSUMER_OFFSET)) as { offsetTable?: Record<string, Record<string, number>> }
      for (const [key, byQueue] of Object.entries(o.offsetTable ?? {})) {
        const at = key.indexOf('@')
        if (at <= 0) continue
        for (const [q, offset] of Object.entries(byQueue)) {
          if (Number.isSafeInteger(offset) && offset >= 0) store.consumerOffsets.commit(key.slice(at + 1), key.slice(0, at), Number(q), offset)
        }
      }
      const d = (await ask(RequestCode.GET_ALL_DELAY_OFFSET)) as { offsetTable?: Record<string, number> }
      if (schedule && d.offsetTable) await schedule.replaceOffsets(d.offsetTable)
      const g = (await ask(RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG)) as { subscriptionGroupTable?: Record<string, SubscriptionGroupConfig> }
      if (g.subscriptionGroupTable) await groups.replaceAll(Object.values(g.subscriptionGroupTable))
    } catch (err) {
      logger.warn('copying the master\'s metadata failed; retried next round', { master: this.masterAddr, error: (err as Error).message })
    } finally {
      this.#syncing = false
    }
  }

  /**
   * Deletions on the master reach this replica's store: each topic it holds that the master
   * deleted (`deletedAt`: the master's CommitLog offset of the deletion; every record of the topic
   * below it is a deleted one, also when the topic was made again since) is followed at that
   * offset. Only a deletion the master names is followed: a topic merely missing from the master's
   * table (a lost or replaced topics.json) keeps its data here, as RocketMQ's replicas keep theirs.
   * A deletion this store has not replicated up to yet is followed by a later round.
   */
  async #followDeletions(deletedAt: Record<string, unknown>): Promise<void> {
    const { store, logger } = this.parts
    for (const { topic } of store.topics()) {
      const d = Object.hasOwn(deletedAt, topic) ? deletedAt[topic] : undefined
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) continue
      try {
        if (await store.followTopicDeletion(topic, d)) logger.debug?.('a topic deleted on the master: its queues deleted here', { topic, offset: d })
      } catch (err) {
        // The rest of the metadata still goes; the next round tries again.
        logger.warn('following a topic deletion of the master failed; retried next round', { topic, offset: d, error: (err as Error).message })
      }
    }
  }

  async stop(): Promise<void> {
    if (this.#syncTimer) clearInterval(this.#syncTimer)
    await this.#replica?.stop()
    await this.#master?.stop()
  }
}
