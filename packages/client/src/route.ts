/**
 * Topic routes as the nameserver answers them (TopicRouteData), turned into the queues a
 * producer writes to and a consumer reads from (RocketMQ's MQClientInstance
 * topicRouteData2TopicPublishInfo and topicRouteData2TopicSubscribeInfo), and the choice of a
 * queue for a send (TopicPublishInfo.selectOneMessageQueue with MQFaultStrategy).
 */
import { MASTER_ID, PERM } from './constants.js'
import type { TopicRouteData } from '@mqts/transport'
import type { LatencyFaultTolerance } from './fault-tolerance.js'

/** One queue of a topic on one broker. */
export interface MessageQueue {
  topic: string
  brokerName: string
  queueId: number
}

export type { BrokerData, QueueData, TopicRouteData } from '@mqts/transport'

export function queueKey(q: MessageQueue): string {
  return `${q.topic}@${q.brokerName}@${q.queueId}`
}

/** Sorts queues by topic, broker name, queue id (MessageQueue.compareTo). */
export function compareQueues(a: MessageQueue, b: MessageQueue): number {
  if (a.topic !== b.topic) return a.topic < b.topic ? -1 : 1
  if (a.brokerName !== b.brokerName) return a.brokerName < b.brokerName ? -1 : 1
  return a.queueId - b.queueId
}

/** The route's body, checked enough that the rest of the client can trust its shape. */
export function parseRouteData(json: unknown): TopicRouteData | undefined {
  const r = json as Partial<TopicRouteData> | null
  if (!r || typeof r !== 'object' || !Array.isArray(r.queueDatas) || !Array.isArray(r.brokerDatas)) return undefined
  return {
    orderTopicConf: r.orderTopicConf,
    queueDatas: r.queueDatas.filter((q) => q && typeof q.brokerName === 'string').map((q) => ({ ...q, readQueueNums: Number(q.readQueueNums), writeQueueNums: Number(q.writeQueueNums), perm: Number(q.perm) })),
    brokerDatas: r.brokerDatas.filter((b) => b && typeof b.brokerName === 'string').map((b) => ({ ...b, brokerAddrs: { ...(b.brokerAddrs ?? {}) } })),
  }
}

/** The master address of each broker name in the route. */
export function masterAddresses(route: TopicRouteData): Map<string, string> {
  const out = new Map<string, string>()
  for (const b of route.brokerDatas) {
    const addr = b.brokerAddrs[MASTER_ID]
    if (addr) out.set(b.brokerName, addr)
  }
  return out
}

/** The queues a producer may write: writable brokers that have a master, sorted by broker name. */
export function publishQueues(topic: string, route: TopicRouteData): MessageQueue[] {
  const masters = masterAddresses(route)
  const out: MessageQueue[] = []
  const datas = [...route.queueDatas].sort((a, b) => (a.brokerName < b.brokerName ? -1 : a.brokerName > b.brokerName ? 1 : 0))
  for (const q of datas) {
    if ((q.perm & PERM.WRITE) === 0 || !masters.has(q.brokerName)) continue
    for (let i = 0; i < q.writeQueueNums; i++) out.push({ topic, brokerName: q.brokerName, queueId: i })
  }
  return out
}

/** The queues a consumer reads: readable brokers' read queues. */
export function subscribeQueues(topic: string, route: TopicRouteData): MessageQueue[] {
  const out: MessageQueue[] = []
  for (const q of route.queueDatas) {
    if ((q.perm & PERM.READ) === 0) continue
    for (let i = 0; i < q.readQueueNums; i++) out.push({ topic, brokerName: q.brokerName, queueId: i })
  }
  return out.sort(compareQueues)
}

/**
 * Round-robins over a topic's writable queues. With fault tolerance, queues of brokers that
 * failed recently are skipped while another is available; without, a retry avoids the broker
 * of the attempt before.
 */
export class QueueChooser {
  #next: number

  constructor(readonly queues: readonly MessageQueue[], random: () => number = Math.random) {
    this.#next = Math.floor(random() * 0x7fffffff)
  }

  choose(lastBrokerName: string | undefined, faults: LatencyFaultTolerance | undefined): MessageQueue | undefined {
    const n = this.queues.length
    if (n === 0) return undefined
    if (faults) {
      for (let i = 0; i < n; i++) {
        const q = this.queues[this.#take() % n]!
        if (faults.isAvailable(q.brokerName) && (lastBrokerName === undefined || q.brokerName !== lastBrokerName || this.#onlyBroker())) return q
      }
      // Every broker is avoided: take the one that comes back first.
      const best = faults.leastBad(new Set(this.queues.map((q) => q.brokerName)))
      const of = this.queues.filter((q) => q.brokerName === best)
      return of[this.#take() % of.length]
    }
    for (let i = 0; i < n; i++) {
      const q = this.queues[this.#take() % n]!
      if (q.brokerName !== lastBrokerName) return q
    }
    return this.queues[this.#take() % n]
  }

  #onlyBroker(): boolean {
    const first = this.queues[0]!.brokerName
    return this.queues.every((q) => q.brokerName === first)
  }

  #take(): number {
    const i = this.#next
    this.#next = (this.#next + 1) % 0x7fffffff
    return i
  }
}
