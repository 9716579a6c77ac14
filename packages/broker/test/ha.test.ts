// A master and a replica broker (same brokerName, ids 0 and 1) with a nameserver, in this process
// over TCP: the replica follows the master's HA address it learns at registration, holds the
// master's bytes, serves the same pulls, copies topics and offsets; under SYNC_MASTER a send is
// answered once the replica holds it, SLAVE_NOT_AVAILABLE when none is in sync.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import { NameServer, type TopicRouteData } from '@mqts/namesrv'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { encodeReport } from '@mqts/ha'
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
    await until('the replica in sync', () => master.ha.master!.replicas().some((r) => r.inSync))
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

test('haMaxTimeSlaveNotCatchup: a SYNC_MASTER waits for a peer on its HA port only while it keeps up; alone with one that never caught up it answers SLAVE_NOT_AVAILABLE', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-broker-ha-'))
  const ns = await NameServer.start({ port: 0, logger: silentLogger })
  const common: BrokerOptions = { listenPort: 0, namesrvAddr: [ns.address()], logger: silentLogger, store: STORE, slaveSyncIntervalMs: 200, syncFlushTimeout: 10_000, haMaxTimeSlaveNotCatchup: 300 }
  const master = await Broker.start({ ...common, storePathRootDir: path.join(dir, 'm'), brokerRole: 'SYNC_MASTER' })
  let replica: Broker | undefined
  const client = new TcpRemotingClient({ logger: silentLogger })
  const peers: net.Socket[] = []
  const timers: NodeJS.Timeout[] = []
  /** A connection that reports `offset` on the HA port every 100 ms and nothing else. */
  const rogue = async (offset: number): Promise<void> => {
    const s = net.connect(master.ha.master!.port, '127.0.0.1')
    s.on('error', () => undefined).on('data', () => undefined)
    await new Promise((r) => s.once('connect', r))
    s.write(encodeReport(offset))
    timers.push(setInterval(() => s.write(encodeReport(offset)), 100))
    peers.push(s)
  }
  try {
    assert.equal(master.ha.master!.maxTimeNotCaughtUpMs, 300)
    await client.invoke(master.address, RemotingCommand.createRequest(RequestCode.UPDATE_AND_CREATE_TOPIC, { topic: 'Rep', defaultTopic: 'TBW102', readQueueNums: '1', writeQueueNums: '1', perm: '6', topicFilterType: 'SINGLE_TAG', order: 'false' }), T)
    assert.equal((await client.invoke(master.address, send('Rep', 0, 'first'), T)).code, ResponseCode.SLAVE_NOT_AVAILABLE)
    // Only a peer that reports an empty log and never more: it never caught up, so it is not waited for.
    await rogue(0)
    await until('the peer linked', () => master.ha.master!.replicas().length === 1)
    assert.equal((await client.invoke(master.address, send('Rep', 0, 'rogue alone'), T)).code, ResponseCode.SLAVE_NOT_AVAILABLE)
    // A real replica, and a peer that reports the master's end once caught up and then nothing more:
    // sends are answered SUCCESS once it falls behind for 300 ms, and the replica holds them.
    replica = await Broker.start({ ...common, storePathRootDir: path.join(dir, 'r'), brokerRole: 'SLAVE', brokerId: 1 })
    await until('the replica in sync', () => master.ha.master!.replicas().some((r) => r.inSync))
    await rogue(master.store.commitLogMaxOffset)
    await until('the second peer in sync', () => master.ha.master!.replicas().filter((r) => r.inSync).length === 2)
    for (let i = 0; i < 3; i++) {
      const r = await client.invoke(master.address, send('Rep', 0, `sync ${i}`), T)
      assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
      assert.equal(replica.store.commitLogMaxOffset, master.store.commitLogMaxOffset, 'the replica holds it')
    }
  } finally {
    for (const t of timers) clearInterval(t)
    for (const s of peers) s.destroy()
    await client.close()
    await replica?.stop()
    await master.stop()
    await ns.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
