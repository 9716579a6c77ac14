// A nameserver and a broker as real processes (the `mqts` command) on free loopback ports, used
// by the admin CLI and by ali-ons 3.12.0, an unchanged RocketMQ 4.x client: create a topic,
// produce, consume with a tag filter and with a second group, kill -9 the broker (sync flush),
// restart it, and check that every acknowledged message is there and offsets were kept.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { after, test } from 'node:test'
import { admin, onsClient, startMqts, stop, stopAll, type Server } from './processes.js'

after(stopAll)

interface Sent {
  sent: string
  status: string
  msgId: string
  queueId: number
  queueOffset: number
}
interface Got {
  got: string
  tags: string
  msgId: string
  queueOffset: number
}

const BROKER_CONF = [
  '# a RocketMQ broker.conf',
  'brokerClusterName=TestCluster',
  'brokerName=broker-t',
  'brokerId=0',
  'brokerRole=ASYNC_MASTER',
  'flushDiskType=SYNC_FLUSH',
  'mappedFileSizeCommitLog=16777216',
  '# short delays, so retries come back within the test',
  'messageDelayLevel=1s 1s 1s 1s 1s',
  'deleteWhen=04',
  '',
].join('\n')

test('ali-ons produces and consumes through real mqts processes; kill -9 of the broker loses nothing acknowledged', { timeout: 240_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-cluster-'))
  let ns: Server | undefined
  let broker: Server | undefined
  try {
    ns = await startMqts(['namesrv', '--port', '0', '--data', path.join(dir, 'ns')])
    const conf = path.join(dir, 'broker.conf')
    await writeFile(conf, BROKER_CONF)
    const brokerArgs = ['broker', '-c', conf, '-n', ns.address, '--port', '0', '--data', path.join(dir, 'b')]
    broker = await startMqts(brokerArgs)

    const created = admin(['updateTopic', '-n', ns.address, '-t', 'OnsTopic', '-c', 'TestCluster', '-r', '4', '-w', '4', '--json'])
    assert.equal(created.status, 0, created.stderr)
    assert.deepEqual(JSON.parse(created.stdout).brokers, [broker.address])
    const clusters = admin(['clusterList', '-n', ns.address])
    assert.equal(clusters.status, 0, clusters.stderr)
    assert.match(clusters.stdout, new RegExp(`TestCluster\\s+broker-t\\s+0\\s+${broker.address.replace(/\./g, '\\.')}`))
    const missing = admin(['topicRoute', '-n', ns.address, '-t', 'NoSuchTopic'])
    assert.notEqual(missing.status, 0)
    assert.match(missing.stderr, /no route for topic NoSuchTopic/)

    const first = await onsClient<Sent>(ns.address, ['produce', 'OnsTopic', '20', 'a'])
    assert.equal(first.length, 20)
    assert.ok(first.every((s) => s.status === 'SEND_OK'), JSON.stringify(first[0]))
    // Group G1 takes TagA only (the even ones); G2 takes everything.
    const g1 = await onsClient<Got>(ns.address, ['consume', 'OnsTopic', 'G1', 'TagA', '10'])
    assert.deepEqual([...new Set(g1.map((g) => g.got))].sort(), first.filter((_, i) => i % 2 === 0).map((s) => s.sent).sort())
    assert.ok(g1.every((g) => g.tags === 'TagA'))
    const g2 = await onsClient<Got>(ns.address, ['consume', 'OnsTopic', 'G2', '*', '20'])
    assert.deepEqual([...new Set(g2.map((g) => g.got))].sort(), first.map((s) => s.sent).sort())
    // The msgId a send returned is the one the consumer computes from the stored record.
    const sentIds = new Map(first.map((s) => [s.sent, s.msgId]))
    for (const g of g2) assert.equal(g.msgId, sentIds.get(g.got))

    // A handler that throws: ali-ons sends the message back, the broker puts it into %RETRY%G3
    // after a delay, and the consumer gets it again from there (reconsumeTimes 1).
    const g3 = await onsClient<Got & { reconsumeTimes: number }>(ns.address, ['consume', 'OnsTopic', 'G3', 'TagA', '10', 'throwFirst'])
    assert.deepEqual([...new Set(g3.map((g) => g.got))].sort(), first.filter((_, i) => i % 2 === 0).map((s) => s.sent).sort())
    assert.ok(g3.every((g) => g.reconsumeTimes >= 1), 'each came back through the retry topic')

    // A graceful restart keeps the committed offsets: G2 gets nothing old again.
    await stop(broker, 'SIGTERM')
    broker = await startMqts(brokerArgs)
    const second = await onsClient<Sent>(ns.address, ['produce', 'OnsTopic', '6', 'b'])
    const g2second = await onsClient<Got>(ns.address, ['consume', 'OnsTopic', 'G2', '*', '6'])
    assert.deepEqual([...new Set(g2second.map((g) => g.got))].sort(), second.map((s) => s.sent).sort(), 'after a clean restart only the new messages')

    // kill -9 with sync flush: every acknowledged message survives. Offsets committed since the
    // last persist (every 5 s) may be lost, so some messages may come again (at least once).
    const third = await onsClient<Sent>(ns.address, ['produce', 'OnsTopic', '10', 'c'])
    await stop(broker, 'SIGKILL')
    broker = await startMqts(brokerArgs)
    const fourth = await onsClient<Sent>(ns.address, ['produce', 'OnsTopic', '4', 'd'])
    const g2again = await onsClient<Got>(ns.address, ['consume', 'OnsTopic', 'G2', '*', '14'])
    const again = new Set(g2again.map((g) => g.got))
    for (const s of [...third, ...fourth]) assert.ok(again.has(s.sent), `${s.sent}, acknowledged before the kill or after the restart, is consumed`)
    assert.ok(!first.some((s) => again.has(s.sent)), 'offsets persisted before the kill hold')
  } finally {
    if (broker) await stop(broker)
    if (ns) await stop(ns)
    await rm(dir, { recursive: true, force: true })
  }
})
