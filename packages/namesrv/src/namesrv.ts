/**
 * NameServer: RocketMQ's route registry on a remoting server. Brokers register with every
 * nameserver (and again every 30 s); clients ask for a topic's route. Nameservers share no
 * state: each learns everything from the brokers' registrations. A broker silent past its
 * timeout (120 s), or whose connection closes, is removed with its routes.
 */
import * as path from 'node:path'
import { consoleLogger, type Logger, type RemotingServer } from '@mqts/transport'
import { TcpRemotingServer } from '@mqts/transport-tcp'
import { NamesrvError } from './errors.js'
import { KvConfigManager } from './kv-config.js'
import { nameServerProcessors } from './processors.js'
import { BROKER_CHANNEL_EXPIRED_MS, DEFAULT_NAMESRV_PORT, SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS } from './protocol.js'
import { RouteInfoManager } from './route-info.js'

export interface NameServerOptions {
  /** Listen address; default 127.0.0.1 (RocketMQ listens on every interface: pass 0.0.0.0). */
  host?: string
  /** Listen port; default 9876, 0 picks a free one (see address()). */
  port?: number
  /** A remoting server of any transport to serve on instead (host and port are then unused). */
  server?: RemotingServer
  /** Where kvConfig.json is kept; without it the KV config lives in memory only. */
  dataDir?: string
  /** A broker silent this long is removed (RocketMQ: 120 s); a broker may ask for its own. */
  brokerExpiryMs?: number
  /** How often silent brokers are looked for (RocketMQ: 5 s). */
  scanIntervalMs?: number
  /** Add ORDER_TOPIC_CONFIG's entry to a topic's route (RocketMQ's orderMessageEnable; default false). */
  orderMessageEnable?: boolean
  logger?: Logger
  /** Clock, for tests. */
  now?: () => number
}

/** The file of the KV config under dataDir (RocketMQ: ~/namesrv/kvConfig.json). */
export const KV_CONFIG_FILE = 'kvConfig.json'

function positive(name: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback
  if (!Number.isSafeInteger(v) || v <= 0) throw new NamesrvError('INVALID_OPTION', `${name} must be a positive integer (ms), got ${JSON.stringify(v)}`)
  return v
}

export class NameServer {
  readonly routes: RouteInfoManager
  readonly kv: KvConfigManager
  readonly server: RemotingServer
  readonly #logger: Logger
  readonly #now: () => number
  readonly #scanIntervalMs: number
  #timer: NodeJS.Timeout | undefined
  #stopping: Promise<void> | undefined

  private constructor(options: NameServerOptions) {
    const expiryMs = positive('brokerExpiryMs', options.brokerExpiryMs, BROKER_CHANNEL_EXPIRED_MS)
    this.#scanIntervalMs = positive('scanIntervalMs', options.scanIntervalMs, SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS)
    const port = options.port ?? DEFAULT_NAMESRV_PORT
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new NamesrvError('INVALID_OPTION', `port must be 0-65535, got ${JSON.stringify(options.port)}`)
    this.#logger = options.logger ?? consoleLogger
    this.#now = options.now ?? Date.now
    this.routes = new RouteInfoManager({ expiryMs })
    this.kv = new KvConfigManager(options.dataDir ? path.join(options.dataDir, KV_CONFIG_FILE) : undefined)
    this.server = options.server ?? new TcpRemotingServer({ host: options.host ?? '127.0.0.1', port, logger: this.#logger })
    const processors = nameServerProcessors({
      routes: this.routes,
      kv: this.kv,
      now: this.#now,
      orderMessageEnable: options.orderMessageEnable ?? false,
      onDisplaced: (d) =>
        this.#logger.warn('two brokers register with one brokerName and brokerId: the route now lists the newer address; check their brokerName and brokerId', {
          brokerName: d.brokerName,
          brokerId: d.brokerId,
          broker: d.brokerAddr,
          displaced: d.displaced,
        }),
    })
    for (const [code, processor] of processors) this.server.registerProcessor(code, processor)
    this.server.on('close', (channel) => {
      const addr = this.routes.onChannelClosed(channel.id)
      if (addr) this.#logger.warn('broker connection closed: its routes are removed', { broker: addr })
    })
  }

  /** Creates a nameserver, loads its KV config and starts listening. */
  static async start(options: NameServerOptions = {}): Promise<NameServer> {
    const ns = new NameServer(options)
    await ns.kv.load()
    await ns.server.start()
    ns.#timer = setInterval(() => ns.#scan(), ns.#scanIntervalMs)
    ns.#timer.unref()
    return ns
  }

  /** Where clients and brokers reach it: "host:port" (or the transport's own form). */
  address(): string {
    return this.server.address().address
  }

  #scan(): void {
    const expired = this.routes.scanNotActiveBrokers(this.#now())
    if (expired.length === 0) return
    const channels = this.server.channels()
    for (const e of expired) {
      this.#logger.warn('broker expired: no registration within its timeout, routes removed', { broker: e.brokerAddr })
      channels.find((c) => c.id === e.channelId)?.close('broker registration expired')
    }
  }

  /** Stops listening and closes every connection. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      if (this.#timer) clearInterval(this.#timer)
      await this.server.stop({ timeoutMs: 1000 })
    })()
    return this.#stopping
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop()
  }
}
