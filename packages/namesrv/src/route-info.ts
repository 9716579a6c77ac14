/**
 * The nameserver's routing state, as RocketMQ's RouteInfoManager: which brokers are alive, how
 * they group into broker names (a master, id 0, and its replicas) and clusters, and which queues
 * each broker name serves for each topic. No I/O and no timers: the clock is a parameter, so a
 * model test can drive it; NameServer (namesrv.ts) feeds it requests and channel events.
 *
 * Registration: a broker registers with its topic configs; a master's configs become the queue
 * data of its broker name (a replica's are ignored: it serves the master's topics). A master
 * registering again with a new data version replaces its topics (ones it no longer has go, as
 * RocketMQ 5 does). A broker silent for its timeout, or whose connection closed, is removed;
 * when a broker name loses its last address, its queue data goes with it.
 */
import { MASTER_ID, PERM, sameDataVersion, type BrokerData, type ClusterInfo, type DataVersion, type QueueData, type RegisterBrokerBody, type TopicRouteData } from './protocol.js'

interface BrokerLive {
  lastUpdate: number
  timeoutMs: number
  dataVersion: DataVersion | undefined
  /** The connection it registered on (Channel.id), if any. */
  channelId: string | undefined
  haServerAddr: string
  brokerName: string
  cluster: string
  brokerId: number
}

interface BrokerGroup {
  cluster: string
  brokerName: string
  /** Broker id to address. */
  addrs: Map<number, string>
}

export interface RegisterBrokerRequest {
  clusterName: string
  brokerAddr: string
  brokerName: string
  brokerId: number
  haServerAddr: string
  body: RegisterBrokerBody
  /** The connection's id, so its close unregisters the broker. */
  channelId?: string
  /** How long the broker may stay silent (RocketMQ 5's heartbeatTimeoutMillis); default expiryMs. */
  timeoutMs?: number
}

export interface RegisterBrokerResult {
  /** For a replica: its master's address and HA address (empty when no master is registered). */
  masterAddr: string
  haServerAddr: string
  /**
   * Another address that held this broker name and id and was still registering (not expired):
   * two brokers configured with one brokerName and brokerId take the entry from each other.
   */
  displaced?: string
}

export interface RouteInfoOptions {
  /** A broker silent this long is removed (RocketMQ: 120 s). */
  expiryMs: number
}

/** Whether a broker last heard from at `lastUpdate` has been silent past its timeout at `now`. */
function expired(live: { lastUpdate: number; timeoutMs: number }, now: number): boolean {
  return live.lastUpdate + live.timeoutMs < now
}

export class RouteInfoManager {
  readonly #topics = new Map<string, Map<string, QueueData>>()
  readonly #groups = new Map<string, BrokerGroup>()
  readonly #clusters = new Map<string, Set<string>>()
  readonly #live = new Map<string, BrokerLive>()
  readonly #filterServers = new Map<string, string[]>()

  constructor(readonly options: RouteInfoOptions) {}

  registerBroker(req: RegisterBrokerRequest, now: number): RegisterBrokerResult {
    const { clusterName, brokerAddr, brokerName, brokerId } = req
    let names = this.#clusters.get(clusterName)
    if (!names) {
      names = new Set()
      this.#clusters.set(clusterName, names)
    }
    names.add(brokerName)
    let group = this.#groups.get(brokerName)
    if (!group) {
      group = { cluster: clusterName, brokerName, addrs: new Map() }
      this.#groups.set(brokerName, group)
    }
    // A replica promoted to master (or the reverse) registers its address under a new id: the
    // old entry for the same address goes first.
    for (const [id, addr] of group.addrs) if (addr === brokerAddr && id !== brokerId) group.addrs.delete(id)
    // Another address registering under an id frees the previous one's live entry.
    const previous = group.addrs.get(brokerId)
    let displaced: string | undefined
    if (previous !== undefined && previous !== brokerAddr) {
      const held = this.#live.get(previous)
      if (held !== undefined && !expired(held, now)) displaced = previous
      this.#forgetLive(previous)
    }
    const firstRegistration = previous === undefined
    group.addrs.set(brokerId, brokerAddr)

    const version = req.body.topicConfigSerializeWrapper.dataVersion
    const live = this.#live.get(brokerAddr)
    if (brokerId === MASTER_ID && (firstRegistration || !sameDataVersion(live?.dataVersion, version))) {
      this.#replaceTopicsOf(brokerName, req.body)
    }
    this.#live.set(brokerAddr, {
      lastUpdate: now,
      timeoutMs: req.timeoutMs ?? this.options.expiryMs,
      dataVersion: version,
      channelId: req.channelId,
      haServerAddr: req.haServerAddr,
      brokerName,
      cluster: clusterName,
      brokerId,
    })
    if (req.body.filterServerList.length > 0) this.#filterServers.set(brokerAddr, [...req.body.filterServerList])
    else this.#filterServers.delete(brokerAddr)

    const result: RegisterBrokerResult = { masterAddr: '', haServerAddr: '' }
    if (displaced !== undefined) result.displaced = displaced
    const masterAddr = brokerId === MASTER_ID ? undefined : group.addrs.get(MASTER_ID)
    if (masterAddr !== undefined) {
      result.masterAddr = masterAddr
      result.haServerAddr = this.#live.get(masterAddr)?.haServerAddr ?? ''
    }
    return result
  }

  /** The master's topics become its broker name's queue data; topics it no longer has go. */
  #replaceTopicsOf(brokerName: string, body: RegisterBrokerBody): void {
    const table = body.topicConfigSerializeWrapper.topicConfigTable
    const keep = new Set<string>()
    for (const tc of Object.values(table)) {
      keep.add(tc.topicName)
      this.#putQueueData(tc.topicName, {
        brokerName,
        readQueueNums: tc.readQueueNums,
        writeQueueNums: tc.writeQueueNums,
        perm: tc.perm,
        topicSysFlag: tc.topicSysFlag ?? 0,
      })
    }
    for (const [topic, byBroker] of this.#topics) {
      if (keep.has(topic) || !byBroker.has(brokerName)) continue
      byBroker.delete(brokerName)
      if (byBroker.size === 0) this.#topics.delete(topic)
    }
  }

  #putQueueData(topic: string, qd: QueueData): void {
    let byBroker = this.#topics.get(topic)
    if (!byBroker) {
      byBroker = new Map()
      this.#topics.set(topic, byBroker)
    }
    byBroker.set(qd.brokerName, qd)
  }

  /** Whether the broker's topic configs differ from `version`; refreshes its liveness (QUERY_DATA_VERSION). */
  queryDataVersion(brokerAddr: string, version: DataVersion, now: number): { changed: boolean; current: DataVersion | undefined } {
    const live = this.#live.get(brokerAddr)
    if (live) live.lastUpdate = now
    return { changed: !sameDataVersion(live?.dataVersion, version), current: live?.dataVersion }
  }

  /** Refreshes a registered broker's liveness (BROKER_HEARTBEAT); false when it is not registered. */
  touch(brokerAddr: string, now: number): boolean {
    const live = this.#live.get(brokerAddr)
    if (!live) return false
    live.lastUpdate = now
    return true
  }

  unregisterBroker(clusterName: string, brokerAddr: string, brokerName: string, brokerId: number): void {
    this.#forgetLive(brokerAddr)
    const group = this.#groups.get(brokerName)
    if (!group) return
    if (group.addrs.get(brokerId) === brokerAddr) group.addrs.delete(brokerId)
    if (group.addrs.size === 0) this.#removeBrokerName(brokerName, clusterName)
  }

  /** The connection `channelId` closed: the broker registered on it goes, as if unregistered. */
  onChannelClosed(channelId: string): string | undefined {
    for (const [addr, live] of this.#live) {
      if (live.channelId === channelId) {
        this.#removeAddress(addr)
        return addr
      }
    }
    return undefined
  }

  /**
   * Removes brokers silent past their timeout; returns them with the connection they used, so
   * the caller closes it (RocketMQ closes the channel of an expired broker).
   */
  scanNotActiveBrokers(now: number): Array<{ brokerAddr: string; channelId: string | undefined }> {
    const gone: Array<{ brokerAddr: string; channelId: string | undefined }> = []
    for (const [addr, live] of this.#live) {
      if (expired(live, now)) gone.push({ brokerAddr: addr, channelId: live.channelId })
    }
    for (const e of gone) this.#removeAddress(e.brokerAddr)
    return gone
  }

  #forgetLive(brokerAddr: string): void {
    this.#live.delete(brokerAddr)
    this.#filterServers.delete(brokerAddr)
  }

  /** Drops an address from every broker name that lists it, and names left without one. */
  #removeAddress(brokerAddr: string): void {
    this.#forgetLive(brokerAddr)
    for (const group of [...this.#groups.values()]) {
      for (const [id, addr] of group.addrs) if (addr === brokerAddr) group.addrs.delete(id)
      if (group.addrs.size === 0) this.#removeBrokerName(group.brokerName, group.cluster)
    }
  }

  #removeBrokerName(brokerName: string, clusterName: string): void {
    this.#groups.delete(brokerName)
    for (const [cluster, names] of this.#clusters) {
      if (cluster !== clusterName && !names.has(brokerName)) continue
      names.delete(brokerName)
      if (names.size === 0) this.#clusters.delete(cluster)
    }
    for (const [topic, byBroker] of this.#topics) {
      byBroker.delete(brokerName)
      if (byBroker.size === 0) this.#topics.delete(topic)
    }
  }

  /** The route of `topic`, or undefined when no live broker serves it (TOPIC_NOT_EXIST). */
  pickupTopicRouteData(topic: string): TopicRouteData | undefined {
    const byBroker = this.#topics.get(topic)
    if (!byBroker || byBroker.size === 0) return undefined
    const queueDatas: QueueData[] = []
    const brokerDatas: BrokerData[] = []
    const filterServerTable: Record<string, string[]> = {}
    for (const qd of [...byBroker.values()].sort((a, b) => (a.brokerName < b.brokerName ? -1 : a.brokerName > b.brokerName ? 1 : 0))) {
      queueDatas.push({ ...qd })
      const group = this.#groups.get(qd.brokerName)
      if (!group) continue
      const bd = this.#brokerData(group)
      brokerDatas.push(bd)
      for (const addr of Object.values(bd.brokerAddrs)) {
        const f = this.#filterServers.get(addr)
        if (f) filterServerTable[addr] = [...f]
      }
    }
    if (brokerDatas.length === 0) return undefined
    return { queueDatas, brokerDatas, filterServerTable }
  }

  #brokerData(group: BrokerGroup): BrokerData {
    const brokerAddrs: Record<string, string> = {}
    for (const id of [...group.addrs.keys()].sort((a, b) => a - b)) brokerAddrs[String(id)] = group.addrs.get(id)!
    return { cluster: group.cluster, brokerName: group.brokerName, brokerAddrs }
  }

  clusterInfo(): ClusterInfo {
    const brokerAddrTable: Record<string, BrokerData> = {}
    for (const name of [...this.#groups.keys()].sort()) brokerAddrTable[name] = this.#brokerData(this.#groups.get(name)!)
    const clusterAddrTable: Record<string, string[]> = {}
    for (const cluster of [...this.#clusters.keys()].sort()) clusterAddrTable[cluster] = [...this.#clusters.get(cluster)!].sort()
    return { brokerAddrTable, clusterAddrTable }
  }

  allTopics(): string[] {
    return [...this.#topics.keys()].sort()
  }

  /** Topics served by a broker name of `cluster`. */
  topicsOfCluster(cluster: string): string[] {
    const names = this.#clusters.get(cluster)
    if (!names) return []
    return this.allTopics().filter((t) => [...this.#topics.get(t)!.keys()].some((b) => names.has(b)))
  }

  /** RocketMQ's "system topics" answer: every cluster name and broker name (each is a topic). */
  systemTopics(): { topics: string[]; brokerAddr: string } {
    const topics = new Set<string>()
    let brokerAddr = ''
    for (const [cluster, names] of this.#clusters) {
      topics.add(cluster)
      for (const name of names) {
        topics.add(name)
        brokerAddr ||= this.#groups.get(name)?.addrs.get(MASTER_ID) ?? ''
      }
    }
    return { topics: [...topics].sort(), brokerAddr }
  }

  /** Topics whose queue data carries `flag` in topicSysFlag (UNIT 1, UNIT_SUB 2), as RocketMQ's unit lists. */
  topicsWithSysFlag(test: (flag: number) => boolean): string[] {
    return this.allTopics().filter((t) => [...this.#topics.get(t)!.values()].some((qd) => test(qd.topicSysFlag ?? 0)))
  }

  /** Removes `topic`, only from the broker names of `cluster` when given (DELETE_TOPIC_IN_NAMESRV). */
  deleteTopic(topic: string, cluster?: string): void {
    const byBroker = this.#topics.get(topic)
    if (!byBroker) return
    if (cluster === undefined) {
      this.#topics.delete(topic)
      return
    }
    const names = this.#clusters.get(cluster)
    if (!names) return
    for (const name of names) byBroker.delete(name)
    if (byBroker.size === 0) this.#topics.delete(topic)
  }

  /** Adds queue data for a topic directly (REGISTER_TOPIC_IN_NAMESRV), for broker names known here. */
  registerTopic(topic: string, queueDatas: QueueData[]): void {
    for (const qd of queueDatas) if (this.#groups.has(qd.brokerName)) this.#putQueueData(topic, { ...qd })
  }

  /** Clears (wipe) or sets (add) the write bit of every topic of `brokerName`; returns how many. */
  setWritePerm(brokerName: string, writable: boolean): number {
    let count = 0
    for (const byBroker of this.#topics.values()) {
      const qd = byBroker.get(brokerName)
      if (!qd) continue
      qd.perm = writable ? qd.perm | PERM.WRITE : qd.perm & ~PERM.WRITE
      count++
    }
    return count
  }

  /** Live brokers by address (for tests and status output). */
  liveBrokers(): Array<{ brokerAddr: string; brokerName: string; brokerId: number; cluster: string; lastUpdate: number; haServerAddr: string }> {
    return [...this.#live.entries()].map(([brokerAddr, l]) => ({ brokerAddr, brokerName: l.brokerName, brokerId: l.brokerId, cluster: l.cluster, lastUpdate: l.lastUpdate, haServerAddr: l.haServerAddr }))
  }
}
