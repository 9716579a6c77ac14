// A NameServer over real TCP on loopback, driven as brokers and clients drive it: registration
// (with CRC, wildcard hosts, replicas), route discovery as clients parse it, eviction by silence
// and by a closed connection, topic deletion, write permission, the KV config (persisted), and
// bad requests answered without harm to others.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { NameServer, bodyCrc32, type ClusterInfo, type TopicRouteData } from '../src/index.js'

const TIMEOUT = 3000

function registerBody(topics: Record<string, { r?: number; w?: number; perm?: number }>, counter = 1): Buffer {
  const topicConfigTable: Record<string, unknown> = {}
  for (const [name, t] of Object.entries(topics)) {
    topicConfigTable[name] = { topicName: name, readQueueNums: t.r ?? 4, writeQueueNums: t.w ?? 4, perm: t.perm ?? 6, topicFilterType: 'SINGLE_TAG', topicSysFlag: 0, order: false }
  }
  return Buffer.from(JSON.stringify({ topicConfigSerializeWrapper: { topicConfigTable, dataVersion: { timestamp: 1700000000000, counter } }, filterServerList: [] }))
}

function register(fields: { cluster?: string; name: string; addr: string; id?: number; ha?: string; crc?: number }, body: Buffer): RemotingCommand {
  return RemotingCommand.createRequest(
    RequestCode.REGISTER_BROKER,
    {
      brokerName: fields.name,
      brokerAddr: fields.addr,
      clusterName: fields.cluster ?? 'DefaultCluster',
      haServerAddr: fields.ha ?? '',
      brokerId: String(fields.id ?? 0),
      bodyCrc32: String(fields.crc ?? bodyCrc32(body)),
      compressed: 'false',
    },
    body,
  )
}

async function withNamesrv(fn: (ns: NameServer, client: TcpRemotingClient, addr: string) => Promise<void>, options: Parameters<typeof NameServer.start>[0] = {}): Promise<void> {
  const ns = await NameServer.start({ port: 0, logger: silentLogger, ...options })
  const client = new TcpRemotingClient({ logger: silentLogger })
  try {
    await fn(ns, client, ns.address())
  } finally {
    await client.close()
    await ns.stop()
  }
}

function route(client: TcpRemotingClient, addr: string, topic: string): Promise<RemotingCommand> {
  return client.invoke(addr, RemotingCommand.createRequest(RequestCode.GET_ROUTEINFO_BY_TOPIC, { topic }), TIMEOUT)
}

async function waitFor(what: string, cond: () => Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

test('a broker registers over TCP; the route reads as RocketMQ clients parse it; unknown topics are TOPIC_NOT_EXIST', { timeout: 20_000 }, async () => {
  await withNamesrv(async (_ns, client, addr) => {
    const reg = await client.invoke(addr, register({ name: 'broker-a', addr: '127.0.0.1:10911', ha: '127.0.0.1:10912' }, registerBody({ TopicTest: { r: 8, w: 4 } })), TIMEOUT)
    assert.equal(reg.code, ResponseCode.SUCCESS, reg.remark ?? '')
    assert.ok(reg.isResponse)
    const r = await route(client, addr, 'TopicTest')
    assert.equal(r.code, ResponseCode.SUCCESS)
    const text = r.body.toString()
    assert.match(text, /"brokerAddrs":\{"0":"127\.0\.0\.1:10911"\}/, 'master under key 0, standard JSON')
    const data = JSON.parse(text) as TopicRouteData
    assert.ok(Array.isArray(data.queueDatas) && Array.isArray(data.brokerDatas))
    assert.deepEqual(data.queueDatas, [{ brokerName: 'broker-a', readQueueNums: 8, writeQueueNums: 4, perm: 6, topicSysFlag: 0 }])
    assert.equal(data.brokerDatas[0]!.cluster, 'DefaultCluster')
    assert.equal(data.orderTopicConf, undefined, 'no orderTopicConf: ali-ons would switch to ordered mode')
    const missing = await route(client, addr, 'Nope')
    assert.equal(missing.code, ResponseCode.TOPIC_NOT_EXIST)
    assert.match(missing.remark ?? '', /Nope/)
    const cluster = JSON.parse((await client.invoke(addr, RemotingCommand.createRequest(RequestCode.GET_BROKER_CLUSTER_INFO), TIMEOUT)).body.toString()) as ClusterInfo
    assert.deepEqual(cluster.clusterAddrTable, { DefaultCluster: ['broker-a'] })
    assert.deepEqual(cluster.brokerAddrTable['broker-a']!.brokerAddrs, { '0': '127.0.0.1:10911' })
    const list = JSON.parse((await client.invoke(addr, RemotingCommand.createRequest(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER), TIMEOUT)).body.toString())
    assert.deepEqual(list.topicList, ['TopicTest'])
    const byCluster = JSON.parse((await client.invoke(addr, RemotingCommand.createRequest(RequestCode.GET_TOPICS_BY_CLUSTER, { cluster: 'DefaultCluster' }), TIMEOUT)).body.toString())
    assert.deepEqual(byCluster.topicList, ['TopicTest'])
  })
})

test('a replica learns its master and HA address; a wildcard address is replaced by the connection host', { timeout: 20_000 }, async () => {
  await withNamesrv(async (_ns, client, addr) => {
    await client.invoke(addr, register({ name: 'b', addr: '0.0.0.0:10911', ha: '0.0.0.0:10912' }, registerBody({ T: {} })), TIMEOUT)
    const replica = await client.invoke(addr, register({ name: 'b', addr: '127.0.0.1:10921', id: 1 }, registerBody({})), TIMEOUT)
    assert.equal(replica.extFields.masterAddr, '127.0.0.1:10911')
    assert.equal(replica.extFields.haServerAddr, '127.0.0.1:10912')
    const data = JSON.parse((await route(client, addr, 'T')).body.toString()) as TopicRouteData
    assert.deepEqual(data.brokerDatas[0]!.brokerAddrs, { '0': '127.0.0.1:10911', '1': '127.0.0.1:10921' })
  })
})

test('a broker whose registration stops is evicted; one whose connection closes is removed at once', { timeout: 20_000 }, async () => {
  await withNamesrv(
    async (_ns, client, addr) => {
      // The quiet broker has its own connection: the eviction closes it, and a route asked on it
      // at that moment would fail with the close.
      const quiet = new TcpRemotingClient({ logger: silentLogger })
      await quiet.invoke(addr, register({ name: 'quiet', addr: '127.0.0.1:20911' }, registerBody({ Q: {} })), TIMEOUT)
      assert.equal((await route(client, addr, 'Q')).code, ResponseCode.SUCCESS)
      // No re-registration: gone after brokerExpiryMs (its connection is closed too).
      await waitFor('eviction', async () => (await route(client, addr, 'Q')).code === ResponseCode.TOPIC_NOT_EXIST)
      await quiet.close()
      const other = new TcpRemotingClient({ logger: silentLogger })
      await other.invoke(addr, register({ name: 'closing', addr: '127.0.0.1:30911' }, registerBody({ C: {} })), TIMEOUT)
      assert.equal((await route(client, addr, 'C')).code, ResponseCode.SUCCESS)
      await other.close()
      await waitFor('removal on close', async () => (await route(client, addr, 'C')).code === ResponseCode.TOPIC_NOT_EXIST, 2000)
    },
    { brokerExpiryMs: 400, scanIntervalMs: 50 },
  )
})

test('a broker that keeps registering stays; UNREGISTER_BROKER, DELETE_TOPIC_IN_NAMESRV and write permission', { timeout: 20_000 }, async () => {
  await withNamesrv(
    async (_ns, client, addr) => {
      const body = registerBody({ A: {}, B: {} })
      for (let i = 0; i < 6; i++) {
        await client.invoke(addr, register({ name: 'live', addr: '127.0.0.1:10911' }, body), TIMEOUT)
        await new Promise((r) => setTimeout(r, 100))
      }
      assert.equal((await route(client, addr, 'A')).code, ResponseCode.SUCCESS, 'still routed after 3x the expiry')
      const wipe = await client.invoke(addr, RemotingCommand.createRequest(RequestCode.WIPE_WRITE_PERM_OF_BROKER, { brokerName: 'live' }), TIMEOUT)
      assert.equal(wipe.extFields.wipeTopicCount, '2')
      assert.equal((JSON.parse((await route(client, addr, 'A')).body.toString()) as TopicRouteData).queueDatas[0]!.perm, 4)
      const add = await client.invoke(addr, RemotingCommand.createRequest(RequestCode.ADD_WRITE_PERM_OF_BROKER, { brokerName: 'live' }), TIMEOUT)
      assert.equal(add.extFields.addTopicCount, '2')
      const del = await client.invoke(addr, RemotingCommand.createRequest(RequestCode.DELETE_TOPIC_IN_NAMESRV, { topic: 'A' }), TIMEOUT)
      assert.equal(del.code, ResponseCode.SUCCESS)
      assert.equal((await route(client, addr, 'A')).code, ResponseCode.TOPIC_NOT_EXIST)
      const un = await client.invoke(addr, RemotingCommand.createRequest(RequestCode.UNREGISTER_BROKER, { brokerName: 'live', brokerAddr: '127.0.0.1:10911', clusterName: 'DefaultCluster', brokerId: '0' }), TIMEOUT)
      assert.equal(un.code, ResponseCode.SUCCESS)
      assert.equal((await route(client, addr, 'B')).code, ResponseCode.TOPIC_NOT_EXIST)
    },
    { brokerExpiryMs: 200, scanIntervalMs: 50 },
  )
})

test('bad requests get an answer and harm nobody: CRC mismatch, missing header field, bad body, unknown code', { timeout: 20_000 }, async () => {
  await withNamesrv(async (_ns, client, addr) => {
    const body = registerBody({ T: {} })
    const crc = await client.invoke(addr, register({ name: 'b', addr: '127.0.0.1:1' , crc: 12345 }, body), TIMEOUT)
    assert.equal(crc.code, ResponseCode.SYSTEM_ERROR)
    assert.match(crc.remark ?? '', /crc32/)
    const noTopic = await client.invoke(addr, RemotingCommand.createRequest(RequestCode.GET_ROUTEINFO_BY_TOPIC, {}), TIMEOUT)
    assert.equal(noTopic.code, ResponseCode.SYSTEM_ERROR)
    assert.match(noTopic.remark ?? '', /topic/)
    const badId = await client.invoke(addr, register({ name: 'b', addr: '127.0.0.1:1', id: 'x' as unknown as number }, body), TIMEOUT)
    assert.equal(badId.code, ResponseCode.SYSTEM_ERROR)
    const badBody = await client.invoke(addr, register({ name: 'b', addr: '127.0.0.1:1' }, Buffer.from('{"topicConfigSerializeWrapper":')), TIMEOUT)
    assert.equal(badBody.code, ResponseCode.SYSTEM_ERROR)
    const unknown = await client.invoke(addr, RemotingCommand.createRequest(9999), TIMEOUT)
    assert.equal(unknown.code, ResponseCode.REQUEST_CODE_NOT_SUPPORTED)
    // Nothing of the above registered anything, and the connection still works.
    assert.equal((await route(client, addr, 'T')).code, ResponseCode.TOPIC_NOT_EXIST)
    const ok = await client.invoke(addr, register({ name: 'b', addr: '127.0.0.1:1' }, body), TIMEOUT)
    assert.equal(ok.code, ResponseCode.SUCCESS)
  })
})

test('KV config: put, get, list, delete, QUERY_NOT_FOUND, persisted in kvConfig.json across a restart', { timeout: 20_000 }, async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'mqts-namesrv-'))
  try {
    await withNamesrv(
      async (_ns, client, addr) => {
        const put = await client.invoke(addr, RemotingCommand.createRequest(RequestCode.PUT_KV_CONFIG, { namespace: 'ORDER_TOPIC_CONFIG', key: 'OT', value: 'broker-a:4' }), TIMEOUT)
        assert.equal(put.code, ResponseCode.SUCCESS)
        const get = await client.invoke(addr, RemotingCommand.createRequest(RequestCode.GET_KV_CONFIG, { namespace: 'ORDER_TOPIC_CONFIG', key: 'OT' }), TIMEOUT)
        assert.equal(get.extFields.value, 'broker-a:4')
        const none = await client.invoke(addr, RemotingCommand.createRequest(RequestCode.GET_KV_CONFIG, { namespace: 'ORDER_TOPIC_CONFIG', key: 'x' }), TIMEOUT)
        assert.equal(none.code, ResponseCode.QUERY_NOT_FOUND)
        // A registering broker gets ORDER_TOPIC_CONFIG back.
        const reg = await client.invoke(addr, register({ name: 'broker-a', addr: '127.0.0.1:10911' }, registerBody({ OT: {} })), TIMEOUT)
        assert.deepEqual(JSON.parse(reg.body.toString()), { table: { OT: 'broker-a:4' } })
        // orderMessageEnable puts it into the route.
        assert.equal((JSON.parse((await route(client, addr, 'OT')).body.toString()) as TopicRouteData).orderTopicConf, 'broker-a:4')
      },
      { dataDir, orderMessageEnable: true },
    )
    assert.deepEqual(JSON.parse(await readFile(path.join(dataDir, 'kvConfig.json'), 'utf8')), { configTable: { ORDER_TOPIC_CONFIG: { OT: 'broker-a:4' } } })
    await withNamesrv(
      async (_ns, client, addr) => {
        const list = await client.invoke(addr, RemotingCommand.createRequest(RequestCode.GET_KVLIST_BY_NAMESPACE, { namespace: 'ORDER_TOPIC_CONFIG' }), TIMEOUT)
        assert.deepEqual(JSON.parse(list.body.toString()), { table: { OT: 'broker-a:4' } })
        await client.invoke(addr, RemotingCommand.createRequest(RequestCode.DELETE_KV_CONFIG, { namespace: 'ORDER_TOPIC_CONFIG', key: 'OT' }), TIMEOUT)
        const empty = await client.invoke(addr, RemotingCommand.createRequest(RequestCode.GET_KVLIST_BY_NAMESPACE, { namespace: 'ORDER_TOPIC_CONFIG' }), TIMEOUT)
        assert.equal(empty.code, ResponseCode.QUERY_NOT_FOUND)
      },
      { dataDir },
    )
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
})

test('two nameservers share nothing: each knows only the brokers that registered with it', { timeout: 20_000 }, async () => {
  await withNamesrv(async (_a, client, addrA) => {
    await withNamesrv(async (_b, _c, addrB) => {
      await client.invoke(addrA, register({ name: 'only-a', addr: '127.0.0.1:10911' }, registerBody({ T: {} })), TIMEOUT)
      assert.equal((await route(client, addrA, 'T')).code, ResponseCode.SUCCESS)
      assert.equal((await route(client, addrB, 'T')).code, ResponseCode.TOPIC_NOT_EXIST)
    })
  })
})

test('invalid options are typed errors', async () => {
  await assert.rejects(NameServer.start({ port: 0, brokerExpiryMs: 0 }), (e: unknown) => (e as { code?: string }).code === 'INVALID_OPTION')
  await assert.rejects(NameServer.start({ port: 70000 }), (e: unknown) => (e as { code?: string }).code === 'INVALID_OPTION')
})

test('two brokers registering one brokerName and brokerId are logged: the newer address takes the route, the warning names both', { timeout: 20_000 }, async () => {
  const warnings: Array<{ message: string; fields?: Record<string, unknown> }> = []
  const logger = { ...silentLogger, warn: (message: string, fields?: Record<string, unknown>) => void warnings.push({ message, fields }) }
  await withNamesrv(
    async (_ns, client, addr) => {
      const a = await client.invoke(addr, register({ name: 'twin', addr: '127.0.0.1:20911' }, registerBody({ T: { r: 4, w: 4 } })), TIMEOUT)
      assert.equal(a.code, ResponseCode.SUCCESS)
      // The same address again is a re-registration, not a second broker.
      await client.invoke(addr, register({ name: 'twin', addr: '127.0.0.1:20911' }, registerBody({ T: { r: 4, w: 4 } })), TIMEOUT)
      assert.equal(warnings.filter((w) => w.message.includes('brokerName and brokerId')).length, 0)
      const b = await client.invoke(addr, register({ name: 'twin', addr: '127.0.0.1:20921' }, registerBody({ T: { r: 4, w: 4 } })), TIMEOUT)
      assert.equal(b.code, ResponseCode.SUCCESS)
      const twin = warnings.filter((w) => w.message.includes('brokerName and brokerId'))
      assert.equal(twin.length, 1, JSON.stringify(warnings))
      assert.deepEqual(twin[0]!.fields, { brokerName: 'twin', brokerId: 0, broker: '127.0.0.1:20921', displaced: '127.0.0.1:20911' })
      const r = JSON.parse((await route(client, addr, 'T')).body.toString()) as TopicRouteData
      assert.equal(r.brokerDatas[0]!.brokerAddrs['0'], '127.0.0.1:20921')
    },
    { logger },
  )
})
