// The in-process broker tests' scaffolding: a nameserver and a broker over real TCP on loopback
// in a temp dir, and the requests RocketMQ clients send (SEND_MESSAGE_V2, PULL_MESSAGE,
// UPDATE_AND_CREATE_TOPIC, GET_ROUTEINFO_BY_TOPIC) built as they build them.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { NameServer, type TopicRouteData } from '@mqts/namesrv'
import { decodeRecord, encodeProperties } from '@mqts/store'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { Broker, PULL_SYS_FLAG, type BrokerOptions } from '../src/index.js'

export const T = 3000

export interface Cluster {
  ns: NameServer
  broker: Broker
  client: TcpRemotingClient
  dir: string
}

export async function startCluster(dir: string, options: BrokerOptions = {}): Promise<Cluster> {
  const ns = await NameServer.start({ port: 0, logger: silentLogger })
  let broker: Broker
  try {
    broker = await Broker.start({
      listenPort: 0,
      namesrvAddr: [ns.address()],
      storePathRootDir: dir,
      logger: silentLogger,
      store: { commitLogFileSize: 4 * 1024 * 1024, maxHashSlotNum: 1024, maxIndexNum: 4096 },
      ...options,
    })
  } catch (err) {
    // A broker that fails to start must not leave the nameserver holding the test process open.
    await ns.stop()
    throw err
  }
  return { ns, broker, client: new TcpRemotingClient({ logger: silentLogger }), dir }
}

export async function stopCluster(c: Cluster): Promise<void> {
  await c.client.close()
  await c.broker.stop()
  await c.ns.stop()
}

export async function withCluster(fn: (c: Cluster) => Promise<void>, options: BrokerOptions = {}): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-broker-'))
  const c = await startCluster(dir, options)
  try {
    await fn(c)
  } finally {
    await stopCluster(c)
    await rm(dir, { recursive: true, force: true })
  }
}

export function sendV2(topic: string, queueId: number, body: string, props: Record<string, string> = {}, extra: Record<string, string> = {}): RemotingCommand {
  return RemotingCommand.createRequest(
    RequestCode.SEND_MESSAGE_V2,
    { a: 'PG', b: topic, c: 'TBW102', d: '4', e: String(queueId), f: '0', g: String(Date.now()), h: '0', i: encodeProperties(props), j: '0', k: 'false', ...extra },
    body,
  )
}

export function pull(topic: string, queueId: number, offset: number, opts: { suspend?: number; sub?: string; max?: number; commit?: number } = {}): RemotingCommand {
  let sysFlag = PULL_SYS_FLAG.SUBSCRIPTION
  if (opts.suspend !== undefined) sysFlag |= PULL_SYS_FLAG.SUSPEND
  if (opts.commit !== undefined) sysFlag |= PULL_SYS_FLAG.COMMIT_OFFSET
  return RemotingCommand.createRequest(RequestCode.PULL_MESSAGE, {
    consumerGroup: 'CG',
    topic,
    queueId: String(queueId),
    queueOffset: String(offset),
    maxMsgNums: String(opts.max ?? 32),
    sysFlag: String(sysFlag),
    commitOffset: String(opts.commit ?? 0),
    suspendTimeoutMillis: String(opts.suspend ?? 0),
    subscription: opts.sub ?? '*',
    subVersion: '0',
  })
}

/** The records of a pull body, decoded. */
export function records(body: Buffer): ReturnType<typeof decodeRecord>[] {
  const out = []
  let at = 0
  while (at < body.length) {
    const m = decodeRecord(body, at)
    out.push(m)
    at += m.storeSize
  }
  return out
}

export function createTopicRequest(topic: string, read: number, write: number, perm = 6): RemotingCommand {
  return RemotingCommand.createRequest(RequestCode.UPDATE_AND_CREATE_TOPIC, { topic, defaultTopic: 'TBW102', readQueueNums: String(read), writeQueueNums: String(write), perm: String(perm), topicFilterType: 'SINGLE_TAG', order: 'false' })
}

export async function createTopic(c: Cluster, topic: string, read: number, write: number, perm = 6): Promise<RemotingCommand> {
  return c.client.invoke(c.broker.address, createTopicRequest(topic, read, write, perm), T)
}

export async function route(c: Cluster, topic: string): Promise<TopicRouteData | undefined> {
  const r = await c.client.invoke(c.ns.address(), RemotingCommand.createRequest(RequestCode.GET_ROUTEINFO_BY_TOPIC, { topic }), T)
  return r.code === ResponseCode.SUCCESS ? (JSON.parse(r.body.toString()) as TopicRouteData) : undefined
}
