/**
 * Admin commands over the protocol, as RocketMQ's mqadmin: updateTopic, deleteTopic, topicList,
 * topicRoute, clusterList. They ask the nameserver for routes and clusters and send topic changes
 * to the brokers themselves. Output is an aligned table, or JSON with --json.
 */
import type { ClusterInfo, TopicRouteData } from '@mqts/namesrv'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'

export const ADMIN_TIMEOUT_MS = 5000

export class AdminError extends Error {}

/** Text columns padded to the widest cell. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}

export class Admin {
  readonly client = new TcpRemotingClient({ logger: silentLogger })

  constructor(readonly namesrv: string[]) {
    if (namesrv.length === 0) throw new AdminError('no nameserver: pass -n host:port (or set MQTS_NAMESRV)')
  }

  async close(): Promise<void> {
    await this.client.close()
  }

  async #call(addr: string, request: RemotingCommand, accept: number[] = [ResponseCode.SUCCESS]): Promise<RemotingCommand> {
    let r: RemotingCommand
    try {
      r = await this.client.invoke(addr, request, ADMIN_TIMEOUT_MS)
    } catch (err) {
      throw new AdminError(`${addr}: ${(err as Error).message}`)
    }
    if (!accept.includes(r.code)) throw new AdminError(`${addr} answered code ${r.code}${r.remark ? `: ${r.remark}` : ''}`)
    return r
  }

  /** Asks the nameservers in order until one answers. */
  async #namesrvCall(request: () => RemotingCommand, accept?: number[]): Promise<RemotingCommand> {
    let last: unknown
    for (const ns of this.namesrv) {
      try {
        return await this.#call(ns, request(), accept)
      } catch (err) {
        last = err
      }
    }
    throw last
  }

  async clusterInfo(): Promise<ClusterInfo> {
    const r = await this.#namesrvCall(() => RemotingCommand.createRequest(RequestCode.GET_BROKER_CLUSTER_INFO))
    return JSON.parse(r.body.toString()) as ClusterInfo
  }

  /** Master addresses of a cluster's brokers. */
  async mastersOf(cluster: string): Promise<string[]> {
    const info = await this.clusterInfo()
    const names = info.clusterAddrTable[cluster]
    if (!names) throw new AdminError(`no cluster ${cluster} in the nameserver (clusters: ${Object.keys(info.clusterAddrTable).join(', ') || 'none'})`)
    const masters = names.map((n) => info.brokerAddrTable[n]?.brokerAddrs['0']).filter((a): a is string => a !== undefined)
    if (masters.length === 0) throw new AdminError(`cluster ${cluster} has no live master`)
    return masters
  }

  async updateTopic(o: { topic: string; cluster?: string; broker?: string; read: number; write: number; perm: number; order?: boolean }): Promise<string[]> {
    const targets = o.broker ? [o.broker] : await this.mastersOf(o.cluster!)
    for (const addr of targets) {
      await this.#call(
        addr,
        RemotingCommand.createRequest(RequestCode.UPDATE_AND_CREATE_TOPIC, {
          topic: o.topic,
          defaultTopic: 'TBW102',
          readQueueNums: String(o.read),
          writeQueueNums: String(o.write),
          perm: String(o.perm),
          topicFilterType: 'SINGLE_TAG',
          topicSysFlag: '0',
          order: String(o.order ?? false),
        }),
      )
    }
    return targets
  }

  async deleteTopic(topic: string, cluster: string): Promise<string[]> {
    const masters = await this.mastersOf(cluster)
    for (const addr of masters) await this.#call(addr, RemotingCommand.createRequest(RequestCode.DELETE_TOPIC_IN_BROKER, { topic }))
    for (const ns of this.namesrv) await this.#call(ns, RemotingCommand.createRequest(RequestCode.DELETE_TOPIC_IN_NAMESRV, { topic, clusterName: cluster }))
    return masters
  }

  async topicList(): Promise<string[]> {
    const r = await this.#namesrvCall(() => RemotingCommand.createRequest(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER))
    return (JSON.parse(r.body.toString()) as { topicList: string[] }).topicList
  }

  async topicRoute(topic: string): Promise<TopicRouteData> {
    const r = await this.#namesrvCall(() => RemotingCommand.createRequest(RequestCode.GET_ROUTEINFO_BY_TOPIC, { topic }), [ResponseCode.SUCCESS, ResponseCode.TOPIC_NOT_EXIST])
    if (r.code === ResponseCode.TOPIC_NOT_EXIST) throw new AdminError(`no route for topic ${topic}: ${r.remark ?? 'TOPIC_NOT_EXIST'}`)
    return JSON.parse(r.body.toString()) as TopicRouteData
  }
}

export function formatRoute(route: TopicRouteData): string {
  const rows = route.queueDatas.map((q) => {
    const bd = route.brokerDatas.find((b) => b.brokerName === q.brokerName)
    const addrs = bd ? Object.entries(bd.brokerAddrs).map(([id, a]) => `${id}=${a}`).join(' ') : ''
    return [q.brokerName, String(q.readQueueNums), String(q.writeQueueNums), String(q.perm), addrs]
  })
  return table(['#Broker', '#Read', '#Write', '#Perm', '#Addresses (id=addr)'], rows)
}

export function formatClusters(info: ClusterInfo): string {
  const rows: string[][] = []
  for (const [cluster, names] of Object.entries(info.clusterAddrTable)) {
    for (const name of names) {
      const addrs = info.brokerAddrTable[name]?.brokerAddrs ?? {}
      for (const [id, addr] of Object.entries(addrs)) rows.push([cluster, name, id, addr])
    }
  }
  return table(['#Cluster', '#Broker', '#BID', '#Addr'], rows)
}
