// In-process nameservers and brokers on free loopback ports for the client's tests, each
// broker in a temp dir removed on stop.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { Broker, type BrokerOptions } from '@mqts/broker'
import { NameServer } from '@mqts/namesrv'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'

export interface TestCluster {
  namesrvs: NameServer[]
  brokers: Broker[]
  namesrv: string
  dir: string
  /** Creates (or updates) a topic on every broker (or those named) and registers it now. */
  createTopic(topic: string, queues: number, perm?: number, brokerNames?: string[]): Promise<void>
  stop(): Promise<void>
}

export async function startCluster(options: { brokers?: number; namesrvs?: number; broker?: BrokerOptions } = {}): Promise<TestCluster> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-client-'))
  const namesrvs: NameServer[] = []
  const brokers: Broker[] = []
  const admin = new TcpRemotingClient({ logger: silentLogger })
  const stop = async (): Promise<void> => {
    await admin.close()
    for (const b of brokers) await b.stop().catch(() => undefined)
    for (const n of namesrvs) await n.stop().catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  }
  try {
    for (let i = 0; i < (options.namesrvs ?? 1); i++) namesrvs.push(await NameServer.start({ port: 0, logger: silentLogger }))
    for (let i = 0; i < (options.brokers ?? 1); i++) {
      brokers.push(
        await Broker.start({
          listenPort: 0,
          brokerName: `broker-${String.fromCharCode(97 + i)}`,
          brokerClusterName: 'TestCluster',
          namesrvAddr: namesrvs.map((n) => n.address()),
          storePathRootDir: path.join(dir, `b${i}`),
          logger: silentLogger,
          store: { commitLogFileSize: 4 * 1024 * 1024, maxHashSlotNum: 1024, maxIndexNum: 4096 },
          ...options.broker,
        }),
      )
    }
  } catch (err) {
    await stop()
    throw err
  }
  return {
    namesrvs,
    brokers,
    namesrv: namesrvs.map((n) => n.address()).join(';'),
    dir,
    async createTopic(topic, queues, perm = 6, brokerNames) {
      for (const b of brokers) {
        if (brokerNames && !brokerNames.includes(b.config.brokerName)) continue
        const res = await admin.invoke(
          b.address,
          RemotingCommand.createRequest(RequestCode.UPDATE_AND_CREATE_TOPIC, { topic, defaultTopic: 'TBW102', readQueueNums: String(queues), writeQueueNums: String(queues), perm: String(perm), topicFilterType: 'SINGLE_TAG', order: 'false' }),
          5000,
        )
        if (res.code !== ResponseCode.SUCCESS) throw new Error(`create ${topic} on ${b.config.brokerName}: ${res.code} ${res.remark}`)
        await b.registerAll()
      }
    },
    stop,
  }
}

/** Polls `check` every 20 ms until it is true or `timeoutMs` passed. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
