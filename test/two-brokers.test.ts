// Two nameservers and two brokers of one cluster as real processes: each broker registers with
// both nameservers, a topic created for the cluster is served by both, ali-ons spreads its sends
// over both; a broker killed with SIGKILL leaves the routes of both nameservers at once (its
// connections close), a silent one after the expiry; with one nameserver killed clients go on
// with the other.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { after, test } from 'node:test'
import { admin, onsClient, startMqts, stop, stopAll, type Server } from './processes.js'
import { waitUntil } from '@mqts/common/testing'

after(stopAll)

interface Sent {
  sent: string
  status: string
}

function routeOf(ns: string, topic: string): { brokers: string[]; status: number | null } {
  const r = admin(['topicRoute', '-n', ns, '-t', topic, '--json'])
  if (r.status !== 0) return { brokers: [], status: r.status }
  const route = JSON.parse(r.stdout) as { queueDatas: Array<{ brokerName: string }> }
  return { brokers: route.queueDatas.map((q) => q.brokerName).sort(), status: 0 }
}

const until = (what: string, cond: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> => waitUntil(what, cond, ms, 200)

test('two nameservers, two brokers of one cluster: registration with both, routes, eviction, a nameserver down', { timeout: 240_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-two-'))
  const servers: Server[] = []
  try {
    const ns1 = await startMqts(['namesrv', '--port', '0', '--data', path.join(dir, 'ns1'), '--broker-expiry', '3000', '--scan-interval', '200'])
    const ns2 = await startMqts(['namesrv', '--port', '0', '--data', path.join(dir, 'ns2'), '--broker-expiry', '3000', '--scan-interval', '200'])
    servers.push(ns1, ns2)
    const brokers: Server[] = []
    for (const name of ['broker-a', 'broker-b']) {
      const conf = path.join(dir, `${name}.conf`)
      await writeFile(conf, `brokerClusterName=TwoCluster\nbrokerName=${name}\nbrokerId=0\nnamesrvAddr=${ns1.address};${ns2.address}\nregisterBrokerInterval=1000\nmappedFileSizeCommitLog=16777216\n`)
      const b = await startMqts(['broker', '-c', conf, '--port', '0', '--data', path.join(dir, name)])
      brokers.push(b)
      servers.push(b)
    }
    for (const ns of [ns1, ns2]) {
      const clusters = admin(['clusterList', '-n', ns.address, '--json'])
      assert.deepEqual(JSON.parse(clusters.stdout).clusterAddrTable, { TwoCluster: ['broker-a', 'broker-b'] })
    }
    const created = admin(['updateTopic', '-n', ns1.address, '-t', 'Spread', '-c', 'TwoCluster', '-r', '2', '-w', '2'])
    assert.equal(created.status, 0, created.stderr)
    for (const ns of [ns1, ns2]) assert.deepEqual(routeOf(ns.address, 'Spread').brokers, ['broker-a', 'broker-b'])

    // ali-ons sends round-robin over the four queues of both brokers.
    const sent = await onsClient<Sent>(`${ns1.address}`, ['produce', 'Spread', '12', 's'])
    assert.ok(sent.every((s) => s.status === 'SEND_OK'))
    const got = await onsClient<{ got: string }>(ns2.address, ['consume', 'Spread', 'G', '*', '12'])
    assert.deepEqual([...new Set(got.map((g) => g.got))].sort(), sent.map((s) => s.sent).sort())

    // broker-b killed: its connections to both nameservers close, its routes go at once.
    await stop(brokers[1]!, 'SIGKILL')
    for (const ns of [ns1, ns2]) await until(`broker-b gone from ${ns.address}`, () => routeOf(ns.address, 'Spread').brokers.join() === 'broker-a')
    // broker-a stopped by SIGSTOP stays connected but silent: evicted after the 3 s expiry.
    brokers[0]!.child.kill('SIGSTOP')
    try {
      await until('broker-a evicted after its expiry', () => routeOf(ns2.address, 'Spread').status !== 0, 20_000)
    } finally {
      brokers[0]!.child.kill('SIGCONT')
    }
    // It registers again (every second) and is back; with ns1 down, clients use ns2.
    await until('broker-a back', () => routeOf(ns2.address, 'Spread').brokers.join() === 'broker-a')
    await stop(ns1, 'SIGKILL')
    const more = await onsClient<Sent>(ns2.address, ['produce', 'Spread', '4', 't'])
    assert.ok(more.every((s) => s.status === 'SEND_OK'))
  } finally {
    for (const s of servers.reverse()) await stop(s)
    await rm(dir, { recursive: true, force: true })
  }
})
