// A master and a replica broker (same brokerName, ids 0 and 1) with a nameserver, in this process
// over TCP: the replica follows the master's HA address it learns at registration, holds the
// master's bytes, serves the same pulls, copies topics and offsets; under SYNC_MASTER a send is
// answered once the replica holds it, SLAVE_NOT_AVAILABLE when none is in sync.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { NameServer, type TopicRouteData } from '@mqts/namesrv'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { Broker, type BrokerOptions } from '../src/index.js'
import { waitUntil } from '@mqts/common/testing'
import { sendV2, pull as pullRequest } from './helpers.js'

const T = 5000
const STORE = { commitLogFileSize: 1024 * 1024, maxHashSlotNum: 1024, maxIndexNum: 4096 }

const send = (topic: string, queueId: number, body: string): RemotingCommand => sendV2(topic, queueId, body, { TAGS: 'A' })

const pull = (topic: string, queueId: number, offset: number): RemotingCommand => pullRequest(topic, queueId, offset, { max: 64 })

const until = (what: string, cond: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> => waitUntil(what, cond, ms, 25)

test('a replica broker follows its SYNC_MASTER: same bytes, same pulls, copied topics and offsets; sends wait for it', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-broker-ha-'))
  const ns = await NameServer.start({ port: 0, logger: silentLogger })
  const common: BrokerOptions = { listenPort: 0, namesrvAddr: [ns.address()], logger: silentLogger, store: STORE, slaveSyncIntervalMs: 200, syncFlushTimeout: 2000 }
  const master = await Broker.start({ ...common, storePathRootDir: path.join(dir, 'm'), brokerRole: 'SYNC_MASTER' })
  let replica: Broker | undefined = await Broker.start({ ...common, storePathRootDir: path.join(dir, 'r'), brokerRole: 'SLAVE', brokerId: 1 })
  const client = new TcpRemotingClient({ logger: silentLogger })
  try {
    await client.invoke(master.address, RemotingCommand.createRequest(RequestCode.UPDATE_AND_CREATE_TOPIC, { topic: 'Rep', defaultTopic: 'TBW102', readQueueNums: '2', writeQueueNums: '2', perm: '6', topicFilterType: 'SINGLE_TAG', order: 'false' }), T)
    await until('the replica connected', () => master.ha.master!.replicas().some((r) => r.ackOffset >= 0))
    for (let i = 0; i < 40; i++) {
      const r = await client.invoke(master.address, send('Rep', i % 2, `m${i}`.padEnd(200 + i * 10, '.')), T)
      assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
      const end = master.store.commitLogMaxOffset
      assert.ok(replica.store.commitLogMaxOffset >= end - 0 || replica.store.commitLogMaxOffset >= Number(r.extFields.queueOffset), 'acknowledged: the replica holds it')
    }
    assert.equal(replica.store.commitLogMaxOffset, master.store.commitLogMaxOffset, 'a SYNC_MASTER answers once its replica holds the message')
    // The route lists both; the replica answers pulls with the same records.
    await master.registerAll()
    await replica.registerAll()
    const route = JSON.parse((await client.invoke(ns.address(), RemotingCommand.createRequest(RequestCode.GET_ROUTEINFO_BY_TOPIC, { topic: 'Rep' }), T)).body.toString()) as TopicRouteData
    assert.deepEqual(Object.keys(route.brokerDatas[0]!.brokerAddrs).sort(), ['0', '1'])
    await until('topics copied', () => replica!.topics.get('Rep') !== undefined)
    // slaveReadEnable off (the default): the replica sends the consumer back to the master and
    // keeps its offset; on, it serves the pull.
    const refused = await client.invoke(replica.address, pull('Rep', 0, 0), T)
    assert.equal(refused.code, ResponseCode.PULL_RETRY_IMMEDIATELY)
    assert.deepEqual([refused.extFields.suggestWhichBrokerId, refused.extFields.nextBeginOffset], ['0', '0'])
    replica.config.slaveReadEnable = true
    for (const q of [0, 1]) {
      const a = await client.invoke(master.address, pull('Rep', q, 0), T)
      const b = await client.invoke(replica.address, pull('Rep', q, 0), T)
      assert.equal(b.code, ResponseCode.SUCCESS, b.remark ?? '')
      assert.ok(a.body.equals(b.body), `queue ${q}: the replica answers the master's bytes`)
    }
    // Offsets committed on the master reach the replica.
    await client.invoke(master.address, RemotingCommand.createRequest(RequestCode.UPDATE_CONSUMER_OFFSET, { consumerGroup: 'CG', topic: 'Rep', queueId: '0', commitOffset: '7' }), T)
    await until('offsets copied', () => replica!.store.committedOffset('CG', 'Rep', 0) === 7)
    // A replica refuses sends.
    assert.equal((await client.invoke(replica.address, send('Rep', 0, 'x'), T)).code, ResponseCode.SERVICE_NOT_AVAILABLE)
    // Without a replica in sync a SYNC_MASTER answers SLAVE_NOT_AVAILABLE (the message is stored).
    await replica.stop()
    replica = undefined
    await until('the replica link closed', () => master.ha.master!.replicas().length === 0)
    const alone = await client.invoke(master.address, send('Rep', 0, 'alone'), T)
    assert.equal(alone.code, ResponseCode.SLAVE_NOT_AVAILABLE)
    assert.equal(alone.extFields.queueOffset, '20')
  } finally {
    await client.close()
    await replica?.stop()
    await master.stop()
    await ns.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
