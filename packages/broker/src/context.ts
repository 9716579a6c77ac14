/**
 * What the request processors share: the configuration, the store, topics, clients, and the
 * broker's hooks for registration with the nameservers. One object, built by Broker.
 */
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
  /** A message as it is stored: a delayed one goes to SCHEDULE_TOPIC_XXXX. */
  schedule(message: PutMessage): PutMessage
  /** The delay levels' offsets, as delayOffset.json holds them. */
  delayOffsets(): unknown
  /** Removes a deleted topic's queues and offsets from the store. */
  deleteTopicData(topic: string): Promise<void>
}
