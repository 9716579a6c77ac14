/**
 * Who is connected (RocketMQ's ProducerManager and ConsumerManager): producer groups and consumer
 * groups, their clients and channels, and each consumer group's subscriptions, learned from
 * HEART_BEAT. A client is dropped on UNREGISTER_CLIENT, when its connection closes, or after
 * `channelExpiredTimeoutMs` without a heartbeat. A consumer group's membership change is
 * announced to its members (NOTIFY_CONSUMER_IDS_CHANGED) so they rebalance at once.
 */
import type { Channel } from '@mqts/transport'

export interface SubscriptionData {
  topic: string
  subString: string
  tagsSet: string[]
  codeSet: number[]
  subVersion: number
  expressionType?: string
  classFilterMode?: boolean
}

export interface ConsumerData {
  groupName: string
  consumeType: string
  messageModel: string
  consumeFromWhere: string
  unitMode?: boolean
  subscriptionDataSet: SubscriptionData[]
}

export interface HeartbeatData {
  clientID: string
  producerDataSet: Array<{ groupName: string }>
  consumerDataSet: ConsumerData[]
}

interface ClientChannel {
  clientId: string
  channel: Channel
  lastUpdate: number
}

export class ConsumerGroupInfo {
  readonly clients = new Map<string, ClientChannel>()
  readonly subscriptions = new Map<string, SubscriptionData>()
  consumeType = 'CONSUME_PASSIVELY'
  messageModel = 'CLUSTERING'
  consumeFromWhere = 'CONSUME_FROM_LAST_OFFSET'

  constructor(readonly groupName: string) {}

  /** Client ids in the order clients joined (clients sort them before allocating). */
  clientIds(): string[] {
    return [...new Set([...this.clients.values()].map((c) => c.clientId))]
  }

  channels(): Channel[] {
    return [...this.clients.values()].map((c) => c.channel)
  }
}

export type MembershipListener = (group: ConsumerGroupInfo) => void

export class ClientManager {
  readonly #consumers = new Map<string, ConsumerGroupInfo>()
  readonly #producers = new Map<string, Map<string, ClientChannel>>()

  constructor(
    private readonly now: () => number,
    /** Called when a consumer group's members change (to notify them). */
    private readonly onMembershipChange: MembershipListener,
  ) {}

  /** Applies a HEART_BEAT from `channel`. */
  heartbeat(data: HeartbeatData, channel: Channel): void {
    // A heartbeat processed after its connection closed (its processor waited for a topic to be
    // made) must not bring back a client the close removed.
    if (channel.closed) return
    const now = this.now()
    for (const p of data.producerDataSet ?? []) {
      let m = this.#producers.get(p.groupName)
      if (!m) {
        m = new Map()
        this.#producers.set(p.groupName, m)
      }
      m.set(channel.id, { clientId: data.clientID, channel, lastUpdate: now })
    }
    for (const c of data.consumerDataSet ?? []) {
      let g = this.#consumers.get(c.groupName)
      if (!g) {
        g = new ConsumerGroupInfo(c.groupName)
        this.#consumers.set(c.groupName, g)
      }
      g.consumeType = c.consumeType ?? g.consumeType
      g.messageModel = c.messageModel ?? g.messageModel
      g.consumeFromWhere = c.consumeFromWhere ?? g.consumeFromWhere
      // The heartbeat carries the group's whole subscription: topics no longer in it go.
      const topics = new Set<string>()
      for (const s of c.subscriptionDataSet ?? []) {
        topics.add(s.topic)
        const old = g.subscriptions.get(s.topic)
        if (!old || old.subVersion < s.subVersion || old.subString !== s.subString) g.subscriptions.set(s.topic, s)
      }
      for (const t of [...g.subscriptions.keys()]) if (!topics.has(t)) g.subscriptions.delete(t)
      const isNew = !g.clients.has(channel.id)
      g.clients.set(channel.id, { clientId: data.clientID, channel, lastUpdate: now })
      if (isNew) this.onMembershipChange(g)
    }
  }

  /** UNREGISTER_CLIENT: the client leaves the named groups. */
  unregister(clientId: string, channel: Channel, producerGroup: string | undefined, consumerGroup: string | undefined): void {
    if (producerGroup) this.#producers.get(producerGroup)?.delete(channel.id)
    if (consumerGroup) {
      const g = this.#consumers.get(consumerGroup)
      if (g) this.#removeClient(g, (c) => c.channel.id === channel.id || c.clientId === clientId)
    }
  }

  /** The connection closed: every group forgets it. */
  channelClosed(channel: Channel): void {
    for (const m of this.#producers.values()) m.delete(channel.id)
    for (const g of [...this.#consumers.values()]) this.#removeClient(g, (c) => c.channel.id === channel.id)
  }

  /** Drops clients silent for `expiryMs`; returns their channels (the caller closes them). */
  scanNotActive(expiryMs: number): Channel[] {
    const now = this.now()
    const expired: Channel[] = []
    for (const m of this.#producers.values()) {
      for (const [id, c] of m) if (c.lastUpdate + expiryMs < now) {
        m.delete(id)
        expired.push(c.channel)
      }
    }
    for (const g of [...this.#consumers.values()]) {
      const gone = [...g.clients.values()].filter((c) => c.lastUpdate + expiryMs < now)
      if (gone.length === 0) continue
      for (const c of gone) expired.push(c.channel)
      this.#removeClient(g, (c) => gone.includes(c))
    }
    return expired
  }

  #removeClient(g: ConsumerGroupInfo, match: (c: ClientChannel) => boolean): void {
    let removed = false
    for (const [id, c] of g.clients) {
      if (match(c)) {
        g.clients.delete(id)
        removed = true
      }
    }
    if (!removed) return
    if (g.clients.size === 0) this.#consumers.delete(g.groupName)
    else this.onMembershipChange(g)
  }

  consumerGroup(group: string): ConsumerGroupInfo | undefined {
    return this.#consumers.get(group)
  }

  consumerGroups(): string[] {
    return [...this.#consumers.keys()].sort()
  }

  producerGroups(): string[] {
    return [...this.#producers.entries()].filter(([, m]) => m.size > 0).map(([g]) => g).sort()
  }
}
