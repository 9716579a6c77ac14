/**
 * What a producer or a consumer shares with RocketMQ's MQClientInstance: the connection to the
 * nameservers (one chosen at random, the others round-robin on failure), the route of every
 * topic in use (cached, refreshed every routeRefreshIntervalMs), the heartbeat to the brokers
 * (every heartbeatIntervalMs), and the broker's NOTIFY_CONSUMER_IDS_CHANGED.
 */
import { firstIPv4 } from '@mqts/common'
import {
  RemotingCommand,
  RequestCode,
  ResponseCode,
  encodeRemotingJson,
  isTransportError,
  parseRemotingJson,
  silentLogger,
  type Logger,
  type RemotingClient,
} from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { AUTO_CREATE_TOPIC, CLIENT_DEFAULTS, DEFAULT_TOPIC_QUEUE_NUMS } from './constants.js'
import { ClientError } from './errors.js'
import { LatencyFaultTolerance } from './fault-tolerance.js'
import { NamesrvSelector, parseNamesrvList } from './namesrv-selector.js'
import { masterAddresses, parseRouteData, type TopicRouteData } from './route.js'
import { positiveMillis } from './option-checks.js'

export interface ClientOptions {
  /** Nameservers: "host:port;host:port" or an array. */
  namesrv: string | readonly string[]
  /** This client's address in its client id (default: the first non-internal IPv4). */
  clientIP?: string
  /** Second part of the client id; clients of one process differ by it (default: pid and a counter). */
  instanceName?: string
  /** How often the routes of the topics in use are asked for again (default 30 s). */
  routeRefreshIntervalMs?: number
  /** How often the brokers in use get a heartbeat (default 30 s). */
  heartbeatIntervalMs?: number
  /** Timeout of a request to a nameserver or a broker (default 3 s). */
  requestTimeoutMs?: number
  /** Avoid brokers that failed or answered slowly (latency fault tolerance; default true). */
  faultTolerance?: boolean
  logger?: Logger
  /** A remoting client of any transport (default: TCP). */
  remoting?: RemotingClient
  /** Random numbers in [0, 1): the first nameserver, the first queue (tests). */
  random?: () => number
}

export interface ProducerHeartbeat {
  groupName: string
}

export interface ConsumerHeartbeat {
  groupName: string
  consumeType: 'CONSUME_ACTIVELY' | 'CONSUME_PASSIVELY'
  messageModel: 'CLUSTERING' | 'BROADCASTING'
  consumeFromWhere: string
  unitMode: boolean
  subscriptionDataSet: Array<{ classFilterMode: boolean; topic: string; subString: string; tagsSet: string[]; codeSet: number[]; subVersion: number; expressionType: string }>
}

/** A producer or consumer registered with the instance. */
export interface ClientMember {
  heartbeat(): { producer?: ProducerHeartbeat; consumer?: ConsumerHeartbeat }
  /** The broker said the group's membership changed. */
  membershipChanged?(group: string): void
  /** Topics whose routes the member needs refreshed. */
  topics(): Iterable<string>
}

let instanceCounter = 0
const instancesByRemoting = new WeakMap<RemotingClient, Set<ClientInstance>>()


export class ClientInstance {
  readonly clientId: string
  readonly namesrv: NamesrvSelector
  readonly remoting: RemotingClient
  readonly faults: LatencyFaultTolerance | undefined
  readonly requestTimeoutMs: number
  readonly logger: Logger
  readonly random: () => number
  readonly #routes = new Map<string, TopicRouteData>()
  /** Broker name to master address, from every route seen. */
  readonly #brokers = new Map<string, string>()
  readonly #members = new Set<ClientMember>()
  readonly #ownsRemoting: boolean
  readonly #timers: NodeJS.Timeout[] = []
  #closed = false

  constructor(options: ClientOptions) {
    this.random = options.random ?? Math.random
    this.namesrv = new NamesrvSelector(parseNamesrvList(options.namesrv), this.random)
    const n = instanceCounter++
    const instanceName = options.instanceName ?? (n === 0 ? String(process.pid) : `${process.pid}#${n}`)
    this.clientId = `${options.clientIP ?? firstIPv4()}@${instanceName}`
    this.requestTimeoutMs = positiveMillis('requestTimeoutMs', options.requestTimeoutMs, CLIENT_DEFAULTS.requestTimeoutMs)
    this.logger = options.logger ?? silentLogger
    this.faults = options.faultTolerance === false ? undefined : new LatencyFaultTolerance()
    this.#ownsRemoting = options.remoting === undefined
    this.remoting = options.remoting ?? new TcpRemotingClient({ logger: this.logger })
    // Instances may share a remoting client (one passed in): the broker's notice goes to all.
    let sharing = instancesByRemoting.get(this.remoting)
    if (!sharing) {
      const set = new Set<ClientInstance>()
      sharing = set
      instancesByRemoting.set(this.remoting, set)
      this.remoting.registerProcessor(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, (req) => {
        for (const instance of set) instance.#notified(req.extFields.consumerGroup ?? '')
        return undefined
      })
    }
    sharing.add(this)
    const routeMs = positiveMillis('routeRefreshIntervalMs', options.routeRefreshIntervalMs, CLIENT_DEFAULTS.routeRefreshIntervalMs)
    const heartbeatMs = positiveMillis('heartbeatIntervalMs', options.heartbeatIntervalMs, CLIENT_DEFAULTS.heartbeatIntervalMs)
    this.#every(routeMs, () => this.refreshRoutes())
    this.#every(heartbeatMs, () => this.sendHeartbeats())
  }

  #every(ms: number, fn: () => Promise<unknown>): void {
    const t = setInterval(() => void fn().catch((err: unknown) => this.logger.warn(`client ${this.clientId}: ${(err as Error).message}`)), ms)
    t.unref()
    this.#timers.push(t)
  }

  #notified(group: string): void {
    for (const m of this.#members) m.membershipChanged?.(group)
  }

  get closed(): boolean {
    return this.#closed
  }

  addMember(m: ClientMember): void {
    this.#members.add(m)
  }

  removeMember(m: ClientMember): void {
    this.#members.delete(m)
  }

  /** Sends a request to a nameserver: the current one, then the others round-robin. */
  async invokeNamesrv(req: () => RemotingCommand): Promise<RemotingCommand> {
    let last: unknown
    for (const addr of this.namesrv.order()) {
      try {
        return await this.remoting.invoke(addr, req(), this.requestTimeoutMs)
      } catch (err) {
        if (!isTransportError(err) || err.code === 'CLOSED' || isUnsendable(err)) throw this.#remotingError(err, addr)
        last = err
        this.namesrv.failed(addr)
      }
    }
    throw new ClientError('NO_NAMESRV', `no nameserver answered (tried ${this.namesrv.addresses.join(', ')}): ${(last as Error)?.message}`, { cause: last })
  }

  /** Sends a request to a broker; a failed request becomes a ClientError REMOTING_FAILED. */
  async invokeBroker(addr: string, req: RemotingCommand, timeoutMs = this.requestTimeoutMs): Promise<RemotingCommand> {
    try {
      return await this.remoting.invoke(addr, req, timeoutMs)
    } catch (err) {
      throw this.#remotingError(err, addr)
    }
  }

  async invokeBrokerOneway(addr: string, req: RemotingCommand): Promise<void> {
    try {
      await this.remoting.invokeOneway(addr, req.markOneway())
    } catch (err) {
      throw this.#remotingError(err, addr)
    }
  }

  #remotingError(err: unknown, addr: string): ClientError {
    if (this.#closed) return new ClientError('CLOSED', 'the client is closed', { cause: err })
    // A request the transport cannot encode fails the same way on every broker: not retried.
    if (isUnsendable(err)) return new ClientError('INVALID_OPTION', `the request to ${addr} cannot be sent: ${(err as Error).message}`, { cause: err })
    return new ClientError('REMOTING_FAILED', `request to ${addr} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err })
  }

  /** The topic's route from the nameservers (cached), or undefined when they know none. */
  async route(topic: string, refresh = false): Promise<TopicRouteData | undefined> {
    if (!refresh) {
      const cached = this.#routes.get(topic)
      if (cached) return cached
    }
    const res = await this.invokeNamesrv(() => RemotingCommand.createRequest(RequestCode.GET_ROUTEINFO_BY_TOPIC, { topic, acceptStandardJsonOnly: 'true' }))
    if (res.code === ResponseCode.TOPIC_NOT_EXIST) {
      this.#routes.delete(topic)
      return undefined
    }
    checkResponse(res, `route of ${topic}`)
    const route = parseRouteData(parseRemotingJson(res.body))
    if (!route) throw new ClientError('BROKER_ERROR', `the nameserver's route of ${topic} is not a TopicRouteData: ${res.body.toString('utf8', 0, 200)}`)
    this.#routes.set(topic, route)
    let newBroker = false
    for (const [name, addr] of masterAddresses(route)) {
      if (this.#brokers.get(name) !== addr) newBroker = true
      this.#brokers.set(name, addr)
    }
    // A broker met for the first time learns about this client's groups now, not at the next
    // heartbeat: a consumer group's member list there must include it before a rebalance.
    if (newBroker && this.#members.size > 0) void this.sendHeartbeats()
    return route
  }

  /**
   * The route a producer uses for a topic no broker has yet: the auto-create template's
   * (TBW102), queue counts capped at defaultTopicQueueNums, so a broker that allows it creates
   * the topic on the first send (DefaultMQProducerImpl.tryToFindTopicPublishInfo).
   */
  async autoCreateRoute(): Promise<TopicRouteData | undefined> {
    const template = await this.route(AUTO_CREATE_TOPIC)
    if (!template) return undefined
    return { ...template, queueDatas: template.queueDatas.map((q) => ({ ...q, readQueueNums: Math.min(q.readQueueNums, DEFAULT_TOPIC_QUEUE_NUMS), writeQueueNums: Math.min(q.writeQueueNums, DEFAULT_TOPIC_QUEUE_NUMS) })) }
  }

  /** The master address of a broker name, asking for `topic`'s route when it is not known. */
  async brokerAddress(brokerName: string, topic?: string): Promise<string> {
    let addr = this.#brokers.get(brokerName)
    if (!addr && topic) {
      await this.route(topic, true)
      addr = this.#brokers.get(brokerName)
    }
    if (!addr) throw new ClientError('NO_BROKER', `no master address known for broker ${brokerName}${topic ? ` (topic ${topic})` : ''}`)
    return addr
  }

  /** Every master address known from the routes in use. */
  brokerAddresses(): string[] {
    return [...new Set(this.#brokers.values())]
  }

  /** Asks again for the route of every topic the members use. */
  async refreshRoutes(): Promise<void> {
    const topics = new Set<string>()
    for (const m of this.#members) for (const t of m.topics()) topics.add(t)
    for (const t of topics) {
      try {
        await this.route(t, true)
      } catch (err) {
        this.logger.warn(`client ${this.clientId}: route of ${t} not refreshed: ${(err as Error).message}`)
      }
    }
    // Forget brokers no route names any more (a broker gone for good).
    const named = new Set<string>()
    for (const r of this.#routes.values()) for (const b of r.brokerDatas) named.add(b.brokerName)
    for (const name of [...this.#brokers.keys()]) if (!named.has(name)) this.#brokers.delete(name)
  }

  heartbeatBody(): Buffer {
    const producerDataSet: ProducerHeartbeat[] = []
    const consumerDataSet: ConsumerHeartbeat[] = []
    for (const m of this.#members) {
      const h = m.heartbeat()
      if (h.producer) producerDataSet.push(h.producer)
      if (h.consumer) consumerDataSet.push(h.consumer)
    }
    return encodeRemotingJson({ clientID: this.clientId, producerDataSet, consumerDataSet })
  }

  /** One heartbeat to every broker in use; a broker that does not answer is only logged. */
  async sendHeartbeats(): Promise<void> {
    if (this.#closed) return
    const body = this.heartbeatBody()
    await Promise.all(
      this.brokerAddresses().map(async (addr) => {
        try {
          checkResponse(await this.invokeBroker(addr, RemotingCommand.createRequest(RequestCode.HEART_BEAT, {}, body)), `heartbeat to ${addr}`)
        } catch (err) {
          this.logger.warn(`client ${this.clientId}: ${(err as Error).message}`)
        }
      }),
    )
  }

  /** Tells every broker in use that this client left a group (UNREGISTER_CLIENT). */
  async unregister(group: { producerGroup?: string; consumerGroup?: string }): Promise<void> {
    const ext: Record<string, string> = { clientID: this.clientId }
    if (group.producerGroup) ext.producerGroup = group.producerGroup
    if (group.consumerGroup) ext.consumerGroup = group.consumerGroup
    await Promise.all(this.brokerAddresses().map((addr) => this.invokeBroker(addr, RemotingCommand.createRequest(RequestCode.UNREGISTER_CLIENT, ext)).catch(() => undefined)))
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const t of this.#timers) clearInterval(t)
    instancesByRemoting.get(this.remoting)?.delete(this)
    if (this.#ownsRemoting) await this.remoting.close().catch(() => undefined)
  }
}

/** A request too large for a frame (or not encodable): no server, no retry can take it. */
function isUnsendable(err: unknown): boolean {
  return isTransportError(err) && (err.code === 'FRAME_TOO_LARGE' || err.code === 'ENCODE_FAILED')
}

/** Throws a ClientError BROKER_ERROR for any code but SUCCESS (or those in `ok`). */
export function checkResponse(res: RemotingCommand, what: string, ok: readonly number[] = [ResponseCode.SUCCESS]): RemotingCommand {
  if (ok.includes(res.code)) return res
  throw new ClientError('BROKER_ERROR', `${what} failed: code ${res.code}${res.remark ? `, ${res.remark}` : ''}`, { responseCode: res.code, remark: res.remark })
}
