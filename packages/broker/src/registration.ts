/**
 * Registration with the nameservers (RocketMQ's BrokerOuterAPI): REGISTER_BROKER to every
 * configured nameserver at start, every `registerBrokerIntervalMs`, and whenever topics change;
 * UNREGISTER_BROKER at shutdown. Each nameserver is independent: one that is down is retried at
 * the next round and does not delay the others.
 */
import { bodyCrc32 } from '@mqts/namesrv'
import { RemotingCommand, RequestCode, ResponseCode, encodeRemotingJson, type Logger, type RemotingClient } from '@mqts/transport'
import type { BrokerConfig } from './config.js'
import type { TopicConfigManager } from './topic-config.js'

export interface RegistrationResult {
  namesrv: string
  ok: boolean
  masterAddr?: string
  haServerAddr?: string
  error?: string
}

export class NamesrvRegistrar {
  #pending: Promise<RegistrationResult[]> | undefined
  #again = false
  #soon: NodeJS.Immediate | undefined

  constructor(
    private readonly client: RemotingClient,
    private readonly config: BrokerConfig,
    private readonly topics: TopicConfigManager,
    private readonly brokerAddr: () => string,
    private readonly haServerAddr: () => string,
    private readonly logger: Logger,
  ) {}

  /** Registers with every nameserver; a call during a round makes one more round after it. */
  registerAll(): Promise<RegistrationResult[]> {
    if (this.#pending) {
      this.#again = true
      return this.#pending
    }
    this.#pending = (async () => {
      try {
        let results: RegistrationResult[]
        do {
          this.#again = false
          results = await Promise.all(this.config.namesrvAddr.map((ns) => this.#registerOne(ns)))
        } while (this.#again)
        return results
      } finally {
        this.#pending = undefined
      }
    })()
    return this.#pending
  }

  registerSoon(): void {
    if (this.#soon) return
    this.#soon = setImmediate(() => {
      this.#soon = undefined
      void this.registerAll()
    })
  }

  async #registerOne(namesrv: string): Promise<RegistrationResult> {
    const body = encodeRemotingJson(this.topics.registerBody())
    const request = RemotingCommand.createRequest(
      RequestCode.REGISTER_BROKER,
      {
        brokerAddr: this.brokerAddr(),
        brokerId: String(this.config.brokerId),
        brokerName: this.config.brokerName,
        clusterName: this.config.brokerClusterName,
        haServerAddr: this.haServerAddr(),
        compressed: 'false',
        bodyCrc32: String(bodyCrc32(body)),
      },
      body,
    )
    try {
      const r = await this.client.invoke(namesrv, request, this.config.registerBrokerTimeoutMs)
      if (r.code !== ResponseCode.SUCCESS) {
        this.logger.warn('nameserver refused the registration', { namesrv, code: r.code, remark: r.remark })
        return { namesrv, ok: false, error: r.remark ?? `code ${r.code}` }
      }
      return { namesrv, ok: true, masterAddr: r.extFields.masterAddr, haServerAddr: r.extFields.haServerAddr }
    } catch (err) {
      this.logger.warn('registration with a nameserver failed; retried next round', { namesrv, error: (err as Error).message })
      return { namesrv, ok: false, error: (err as Error).message }
    }
  }

  /** UNREGISTER_BROKER to every nameserver (shutdown); failures are ignored. */
  async unregisterAll(): Promise<void> {
    if (this.#soon) clearImmediate(this.#soon)
    await Promise.all(
      this.config.namesrvAddr.map((ns) =>
        this.client
          .invoke(
            ns,
            RemotingCommand.createRequest(RequestCode.UNREGISTER_BROKER, {
              brokerAddr: this.brokerAddr(),
              brokerId: String(this.config.brokerId),
              brokerName: this.config.brokerName,
              clusterName: this.config.brokerClusterName,
            }),
            this.config.registerBrokerTimeoutMs,
          )
          .catch(() => undefined),
      ),
    )
  }
}
