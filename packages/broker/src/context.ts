/**
 * What the request processors share: the configuration, the store, topics, clients, and the
 * broker's hooks for registration with the nameservers. One object, built by Broker.
 */
import type { UniqueIdGenerator } from '@mqts/common'
import type { MessageStore, PutMessage } from '@mqts/store'
import type { ClientManager } from './client-manager.js'
import type { RebalanceLockManager } from './rebalance-lock.js'
import type { SubscriptionGroupManager } from './subscription-group.js'
import type { BrokerConfig } from './config.js'
import type { TopicConfigManager } from './topic-config.js'

export interface BrokerContext {
  readonly config: BrokerConfig
  readonly store: MessageStore
  readonly topics: TopicConfigManager
  readonly clients: ClientManager
  /** UNIQ_KEY for a message that comes without one (RocketMQ's MessageClientIDSetter). */
  readonly uniqueIds: UniqueIdGenerator
  readonly groups: SubscriptionGroupManager
  readonly locks: RebalanceLockManager
  /** Delay levels (messageDelayLevel): a DELAY above it is the highest. */
  readonly delayLevels: number
  /** Queue ids a topic may have (the store's maxQueuesPerTopic). */
  readonly maxQueuesPerTopic: number
  /** Registers with every nameserver soon (topics changed); coalesces calls. */
  registerSoon(): void
  /** Registers with every nameserver now; failures are logged, not thrown. */
  registerNow(): Promise<void>
  /** SYNC_MASTER: resolves once every in-sync replica holds CommitLog offset `end` ('OK' otherwise at once). */
  waitForReplicas(end: number): Promise<'OK' | 'FLUSH_SLAVE_TIMEOUT' | 'SLAVE_NOT_AVAILABLE'>
  /** A message as it is stored: a delayed one goes to SCHEDULE_TOPIC_XXXX; a DELAY that is not an integer throws INVALID_DELAY. */
  schedule(message: PutMessage): PutMessage
  /** The delay levels' offsets, as delayOffset.json holds them. */
  delayOffsets(): unknown
  /** Removes a deleted topic's queues and offsets from the store. */
  deleteTopicData(topic: string): Promise<void>
}
