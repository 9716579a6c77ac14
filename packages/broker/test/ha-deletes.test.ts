// Topic deletions reach a replica broker: DELETE_TOPIC_IN_BROKER on the master, then the topic made
// again and written (its queues restart at 0) before the replica's next metadata sync: the replica
// keeps replicating (its stream does not stall on the restarted queue); with its next sync, the
// queue that got nothing new and a topic never made again go from its store (the master tells
// where each deletion was), and it answers pulls as the master.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { NameServer } from '@mqts/namesrv'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { Broker, type BrokerOptions } from '../src/index.js'
import { waitUntil } from '@mqts/common/testing'
import { sendV2, pull as pullRequest, createTopicRequest } from './helpers.js'

const T = 5000
const STORE = { commitLogFileSize: 1024 * 1024, maxHashSlotNum: 1024, maxIndexNum: 4096 }

const send = (topic: string, queueId: number, body: string): RemotingCommand => sendV2(topic, queueId, body, { TAGS: 'A' })

const pull = (topic: string, queueId: number, offset: number): RemotingCommand => pullRequest(topic, queueId, offset, { max: 64 })

const create = (topic: string, queues: number): RemotingCommand => createTopicRequest(topic, queues, queues)

const until = (what: string, cond: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> => waitUntil(what, cond, ms, 25)

test('a topic deleted on the master and made again: the replica follows the deletion, keeps replicating and answers pulls as the master', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-broker-ha-del-'))
  const ns = await NameServer.start({ port: 0, logger: silentLogger })
  const common: BrokerOptions = { listenPort: 0, namesrvAddr: [ns.address()], logger: silentLogger, store: STORE, slaveSyncIntervalMs: 3_600_000 }
  const master = await Broker.start({ ...common, storePathRootDir: path.join(dir, 'm'), brokerRole: 'ASYNC_MASTER' })
  const replica = await Broker.start({ ...common, storePathRootDir: path.join(dir, 'r'), brokerRole: 'SLAVE', brokerId: 1, slaveReadEnable: true })
  const client = new TcpRemotingClient({ logger: silentLogger })
  const sendOk = async (topic: string, queueId: number, body: string): Promise<void> => {
    const r = await client.invoke(master.address, send(topic, queueId, body), T)
    assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
  }
  const caughtUp = (): Promise<void> => until('the replica caught up', () => replica.store.commitLogMaxOffset === master.store.commitLogMaxOffset && replica.store.dispatcher.reputOffset === master.store.commitLogMaxOffset)
  try {
    for (const t of ['Del', 'Gone']) assert.equal((await client.invoke(master.address, create(t, 2), T)).code, ResponseCode.SUCCESS)
    for (let i = 0; i < 10; i++) {
      await sendOk('Del', i % 2, `old ${i}`)
      await sendOk('Gone', i % 2, `gone ${i}`)
    }
    await caughtUp()
    // The metadata sync runs when this test asks (and once at the replica's start).
    const synced = async (what: string, cond: () => boolean): Promise<void> =>
      until(what, async () => {
        await replica.ha.syncMetadata()
        return cond()
      })
    await synced('topics copied', () => replica.topics.get('Gone') !== undefined)
    // A topic the master's store holds but its topic table lacks (no deletion said so: a lost or
    // replaced topics.json, a put through the store) is not deleted on the replica.
    await master.store.put({ topic: 'StoreOnly', queueId: 0, body: Buffer.from('kept') })
    await caughtUp()
    await replica.ha.syncMetadata()
    await replica.ha.syncMetadata()
    assert.equal(replica.store.maxOffset('StoreOnly', 0), 1, 'a topic missing from the master\'s table is no deletion')
    for (const t of ['Del', 'Gone']) assert.equal((await client.invoke(master.address, RemotingCommand.createRequest(RequestCode.DELETE_TOPIC_IN_BROKER, { topic: t }), T)).code, ResponseCode.SUCCESS)
    // Made again and written at once, before the replica's next metadata sync.
    assert.equal((await client.invoke(master.address, create('Del', 2), T)).code, ResponseCode.SUCCESS)
    for (let i = 0; i < 3; i++) await sendOk('Del', 0, `new ${i}`)
    await sendOk('Other', 0, 'after the deletion')
    await caughtUp()
    assert.equal(replica.store.maxOffset('Del', 0), 3, 'the restarted queue followed from the data')
    assert.equal(replica.store.maxOffset('Del', 1), 5, 'the other queue waits for the master to say')
    await synced('the metadata sync deleted what the master deleted', () => replica.store.maxOffset('Del', 1) === 0 && replica.store.topics().every((t) => t.topic !== 'Gone') && replica.topics.get('Gone') === undefined)
    assert.ok(replica.topics.get('Del'))
    assert.deepEqual(replica.store.topics(), master.store.topics())
    assert.equal(replica.store.maxOffset('StoreOnly', 0), 1)
    for (const [topic, q] of [['Del', 0], ['Del', 1], ['Other', 0]] as const) {
      const a = await client.invoke(master.address, pull(topic, q, 0), T)
      const b = await client.invoke(replica.address, pull(topic, q, 0), T)
      assert.equal(b.code, a.code, `${topic}@${q}: ${b.remark ?? ''}`)
      assert.ok(a.body.equals(b.body), `${topic}@${q}: the replica answers the master's bytes`)
    }
    assert.equal(replica.store.maxOffset('Del', 0), 3)
  } finally {
    await client.close()
    await replica.stop()
    await master.stop()
    await ns.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
