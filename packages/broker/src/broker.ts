/**
 * Broker: the store behind RocketMQ's remoting protocol (RocketMQ's BrokerController). It listens,
 * opens the store, keeps topics and clients, registers with every nameserver (and again every
 * 30 s), parks pulls that wait for messages, and shuts down in order: stop taking requests, answer
 * the parked pulls, unregister, close the store.
 */
import * as path from 'node:path'
import { NodeFileIO, UniqueIdGenerator, firstIPv4 } from '@mqts/common'
import { MessageStore, PROPERTY, SCHEDULE_TOPIC, parseDelayLevels, parseJavaInt, toScheduledMessage, type MessageStoreOptions, type PutMessage } from '@mqts/store'
import { RemotingCommand, RequestCode, ResponseCode, consoleLogger, type Logger, type RemotingClient, type RemotingServer, type RequestProcessor } from '@mqts/transport'
import { TcpRemotingClient, TcpRemotingServer, formatAddress } from '@mqts/transport-tcp'
import { ClientManager, type ConsumerGroupInfo } from './client-manager.js'
import { BrokerHAService } from './ha-service.js'
import { resolveBrokerConfig, type BrokerConfig } from './config.js'
import type { BrokerContext } from './context.js'
import { BrokerError } from './errors.js'
import { adminProcessors } from './processors/admin.js'
import { consumerProcessors } from './processors/consumer.js'
import { pullService, type PullService } from './processors/pull.js'
import { sendProcessor } from './processors/send.js'
import { orderlyProcessors } from './processors/orderly.js'
import { sendBackProcessor } from './processors/send-back.js'
import { DELAY_OFFSET_FILE, ScheduleService } from './schedule.js'
import { RebalanceLockManager } from './rebalance-lock.js'
import { NamesrvRegistrar } from './registration.js'
import { SUBSCRIPTION_GROUP_FILE, SubscriptionGroupManager } from './subscription-group.js'
import { MAX_QUEUES_PER_TOPIC, TOPICS_FILE, TopicConfigManager } from './topic-config.js'

export interface BrokerOptions extends Partial<BrokerConfig> {
  logger?: Logger
  /** A remoting server of any transport to serve on (listenHost/listenPort are then unused). */
  server?: RemotingServer
  /** The remoting client used to reach the nameservers and clients. */
  client?: RemotingClient
  /** Store options beyond those the broker config sets (tests: small files, a clock). */
  store?: Partial<MessageStoreOptions>
}

/** How often silent client channels are looked for (RocketMQ: 10 s). */
const CLIENT_SCAN_INTERVAL_MS = 10_000

export class Broker {
  readonly config: BrokerConfig
  readonly server: RemotingServer
  readonly client: RemotingClient
  store!: MessageStore
  topics!: TopicConfigManager
  groups!: SubscriptionGroupManager
  /** Delayed delivery (SCHEDULE_TOPIC_XXXX), on a master. */
  schedule: ScheduleService | undefined
  readonly #delayLevelsMs: number[]
  /** Replication: the HA stream's master or replica side (ha-service.ts). */
  ha!: BrokerHAService
  #haAddr = ''
  readonly locks = new RebalanceLockManager(Date.now)
  readonly clients: ClientManager
  readonly #logger: Logger
  readonly #ownsClient: boolean
  #registrar!: NamesrvRegistrar
  #pull!: PullService
  #addr = ''
  #ready = false
  #timers: NodeJS.Timeout[] = []
  #offArrivals: (() => void) | undefined
  #stopping: Promise<void> | undefined

  private constructor(options: BrokerOptions) {
    const { logger, server, client, store: _store, ...settings } = options
    this.config = resolveBrokerConfig(settings)
    this.#logger = logger ?? consoleLogger
    this.server = server ?? new TcpRemotingServer({ host: this.config.listenHost, port: this.config.listenPort, logger: this.#logger })
    this.#ownsClient = client === undefined
    this.client = client ?? new TcpRemotingClient({ logger: this.#logger })
    this.clients = new ClientManager(Date.now, (g) => this.#notifyMembership(g))
    const levels = parseDelayLevels(this.config.messageDelayLevel)
    if (typeof levels === 'string') throw new BrokerError('INVALID_CONFIG', `messageDelayLevel ${JSON.stringify(this.config.messageDelayLevel)} does not parse: ${levels}`)
    this.#delayLevelsMs = levels
  }

  /** Starts a broker: listens, opens the store, registers with the nameservers. */
  static async start(options: BrokerOptions = {}): Promise<Broker> {
    const b = new Broker(options)
    try {
      await b.#start(options)
    } catch (err) {
      await b.stop().catch(() => undefined)
      throw err
    }
    return b
  }

  async #start(options: BrokerOptions): Promise<void> {
    const c = this.config
    this.#registerProcessors()
    this.server.on('close', (channel) => this.clients.channelClosed(channel))
    await this.server.start()
    const listened = this.server.address()
    const host = c.brokerIP1 ?? (c.listenHost === '0.0.0.0' || c.listenHost === '::' ? firstIPv4() : c.listenHost)
    // An IPv6 address in brackets, as the store's host and clients' address parsers take it.
    this.#addr = formatAddress(host, listened.port)
    this.store = await MessageStore.open({
      dir: c.storePathRootDir,
      flush: c.flushDiskType === 'SYNC_FLUSH' ? 'sync' : 'async',
      commitLogFileSize: c.mappedFileSizeCommitLog,
      maxMessageSize: c.maxMessageSize,
      messageIndexEnable: c.messageIndexEnable,
      messageDelayLevel: c.messageDelayLevel,
      role: c.brokerRole === 'SLAVE' ? 'replica' : 'master',
      storeHost: this.#addr,
      ...options.store,
    })
    this.topics = new TopicConfigManager({
      io: new NodeFileIO(),
      file: path.join(c.storePathRootDir, 'config', TOPICS_FILE),
      clusterName: c.brokerClusterName,
      brokerName: c.brokerName,
      autoCreateTopicEnable: c.autoCreateTopicEnable,
      defaultTopicQueueNums: c.defaultTopicQueueNums,
      delayLevels: this.#delayLevelsMs.length,
      now: Date.now,
    })
    await this.topics.load()
    this.groups = new SubscriptionGroupManager(new NodeFileIO(), path.join(c.storePathRootDir, 'config', SUBSCRIPTION_GROUP_FILE), c.autoCreateSubscriptionGroup, c.maxReconsumeTimes, Date.now)
    await this.groups.load()
    this.#registrar = new NamesrvRegistrar(this.client, c, this.topics, () => this.#addr, () => this.#haAddr, this.#logger)
    this.#offArrivals = this.store.onMessageArrived((topic, queueId, maxOffset) => this.#pull.hold.arrived(topic, queueId, maxOffset))
    // A replica keeps its master's delay offsets without delivering (its master does).
    this.schedule = new ScheduleService(this.store, new NodeFileIO(), path.join(c.storePathRootDir, 'config', DELAY_OFFSET_FILE), this.#delayLevelsMs)
    await this.schedule.load()
    if (c.brokerRole !== 'SLAVE') this.schedule.start()
    this.ha = new BrokerHAService({ config: c, store: this.store, client: this.client, topics: this.topics, groups: this.groups, schedule: this.schedule, logger: this.#logger })
    if (c.brokerRole === 'SLAVE') this.ha.startReplica()
    else {
      const haPort = await this.ha.startMaster(c.listenHost, c.haListenPort ?? (c.listenPort === 0 ? 0 : listened.port + 1))
      this.#haAddr = formatAddress(host, haPort)
    }
    this.#ready = true
    await this.#register()
    this.#every(c.registerBrokerIntervalMs, () => void this.#register())
    this.#every(CLIENT_SCAN_INTERVAL_MS, () => {
      for (const ch of this.clients.scanNotActive(c.channelExpiredTimeoutMs)) ch.close('no heartbeat within channelExpiredTimeout')
    })
  }

  #every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms)
    t.unref()
    this.#timers.push(t)
  }

  /** The address clients dial ("host:port"), as registered with the nameservers. */
  get address(): string {
    return this.#addr
  }

  /** Registers with every nameserver now (it also happens every registerBrokerIntervalMs). */
  registerAll(): Promise<unknown> {
    if (!this.#ready) return Promise.reject(new BrokerError('NOT_STARTED', 'the broker is not started'))
    return this.#register()
  }

  /** Registers; a replica learns its master from the answers, and copies its metadata the first time. */
  async #register(): Promise<void> {
    const results = await this.#registrar.registerAll()
    if (this.config.brokerRole !== 'SLAVE') return
    const known = this.ha.masterAddr
    for (const r of results) if (r.ok && r.masterAddr) this.ha.learnMaster(r.masterAddr, r.haServerAddr)
    if (!known && this.ha.masterAddr) void this.ha.syncMetadata()
  }

  /** The HA address replicas connect to ("" on a replica). */
  get haAddress(): string {
    return this.#haAddr
  }

  /** What the processors see; the store and topics exist once start() has opened them. */
  #context(): BrokerContext {
    const broker = this
    return {
      config: this.config,
      get store() {
        return broker.store
      },
      get topics() {
        return broker.topics
      },
      clients: this.clients,
      uniqueIds: new UniqueIdGenerator(this.config.brokerIP1 ?? firstIPv4()),
      get groups() {
        return broker.groups
      },
      locks: this.locks,
      delayLevels: this.#delayLevelsMs.length,
      maxQueuesPerTopic: MAX_QUEUES_PER_TOPIC,
      registerSoon: () => this.#registrar.registerSoon(),
      registerNow: () => this.#register(),
      waitForReplicas: (end: number) => this.ha.waitForReplicas(end),
      schedule: (m: PutMessage) => this.#scheduled(m),
      delayOffsets: () => this.schedule?.toJSON() ?? { offsetTable: {} },
      deleteTopicData: async (topic: string) => {
        await this.store.deleteTopic(topic)
      },
    }
  }

  /**
   * A message with a DELAY level above 0 goes to SCHEDULE_TOPIC_XXXX (RocketMQ's putMessage); 0 or
   * below is no delay. A DELAY that is not a Java int makes RocketMQ's Integer.parseInt throw and
   * the send fail with SYSTEM_ERROR: INVALID_DELAY, answered the same way.
   */
  #scheduled(m: PutMessage): PutMessage {
    const text = m.properties?.[PROPERTY.DELAY]
    if (text === undefined || m.topic === SCHEDULE_TOPIC) return m
    const level = parseJavaInt(text)
    const max = this.#delayLevelsMs.length
    if (level === undefined) throw new BrokerError('INVALID_DELAY', `the message's ${PROPERTY.DELAY} property must be a delay level (an integer: 1-${max}, higher is ${max}, 0 or below no delay), got ${JSON.stringify(text)}`)
    if (level <= 0) return m
    return toScheduledMessage(m, level, max)
  }

  #registerProcessors(): void {
    const ctx = this.#context()
    this.#pull = pullService(ctx)
    const all = new Map<number, RequestProcessor>([...consumerProcessors(ctx), ...adminProcessors(ctx), ...orderlyProcessors(ctx)])
    const send = sendProcessor(ctx)
    all.set(RequestCode.SEND_MESSAGE, send)
    all.set(RequestCode.SEND_MESSAGE_V2, send)
    all.set(RequestCode.SEND_BATCH_MESSAGE, send)
    all.set(RequestCode.PULL_MESSAGE, this.#pull.processor)
    all.set(RequestCode.CONSUMER_SEND_MSG_BACK, sendBackProcessor(ctx))
    for (const [code, processor] of all) {
      this.server.registerProcessor(code, (req, channel) => {
        if (!this.#ready) return RemotingCommand.createResponse(ResponseCode.SERVICE_NOT_AVAILABLE, this.#stopping ? 'the broker is shutting down' : 'the broker is starting')
        return processor(req, channel)
      })
    }
  }

  /** Tells a consumer group's members that its membership changed (they rebalance). */
  #notifyMembership(group: ConsumerGroupInfo): void {
    for (const channel of group.channels()) {
      if (channel.closed) continue
      const req = RemotingCommand.createRequest(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, { consumerGroup: group.groupName })
      this.server.invokeOneway(channel, req).catch(() => undefined)
    }
  }

  /**
   * Stops in order: no new requests, parked pulls answered, unregistered from the nameservers,
   * the store flushed and closed. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      for (const t of this.#timers) clearInterval(t)
      this.#pull?.hold.stop()
      this.#ready = false
      await this.schedule?.stop().catch(() => undefined)
      this.#offArrivals?.()
      await this.ha?.stop().catch(() => undefined)
      if (this.#registrar) await this.#registrar.unregisterAll()
      await this.server.stop({ timeoutMs: 2000 }).catch(() => undefined)
      if (this.#ownsClient) await this.client.close().catch(() => undefined)
      await this.store?.close()
    })()
    return this.#stopping
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop()
  }
}
