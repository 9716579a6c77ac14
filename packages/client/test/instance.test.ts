// Unit tests of what producers and consumers share: nameserver choice (with fake nameservers),
// latency fault tolerance, queue choice, routes.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { InMemoryTransport, RemotingCommand, RequestCode, ResponseCode, encodeRemotingJson, type Channel } from '@mqts/transport'
import { ClientInstance, type ClientMember } from '../src/client-instance.js'
import { ClientError } from '../src/errors.js'
import { LatencyFaultTolerance } from '../src/fault-tolerance.js'
import { NamesrvSelector, parseNamesrvList } from '../src/namesrv-selector.js'
import { QueueChooser, publishQueues, subscribeQueues, type MessageQueue, type TopicRouteData } from '../src/route.js'

test('the first nameserver is a random number modulo the list length; failures move round-robin', () => {
  const list = ['a:1', 'b:2', 'c:3']
  assert.equal(new NamesrvSelector(list, () => 0).current, 'a:1')
  const r = 0.4
  const expected = list[Math.floor(r * 0x7fffffff) % 3]
  const s = new NamesrvSelector(list, () => r)
  assert.equal(s.current, expected)
  const start = list.indexOf(s.current)
  s.failed(s.current)
  assert.equal(s.current, list[(start + 1) % 3])
  s.failed('not-current:1') // a late failure of another address does not move it
  assert.equal(s.current, list[(start + 1) % 3])
  assert.deepEqual(s.order(), [0, 1, 2].map((i) => list[(start + 1 + i) % 3]))
  assert.deepEqual(parseNamesrvList('a:1; b:2'), ['a:1', 'b:2'])
  assert.throws(() => parseNamesrvList(''), (e: unknown) => e instanceof ClientError && e.code === 'INVALID_OPTION')
  assert.throws(() => parseNamesrvList('nohost'), /host:port/)
})

test('a client asks its current nameserver, moves to the next when it does not answer, and stays there', async () => {
  const transport = new InMemoryTransport()
  const asked: string[] = []
  const route: TopicRouteData = { queueDatas: [{ brokerName: 'b', readQueueNums: 2, writeQueueNums: 2, perm: 6 }], brokerDatas: [{ cluster: 'C', brokerName: 'b', brokerAddrs: { '0': 'mem:b' } }] }
  const servers = []
  for (const name of ['ns1', 'ns2']) {
    const s = transport.createServer({ name })
    s.registerProcessor(RequestCode.GET_ROUTEINFO_BY_TOPIC, () => {
      asked.push(name)
      return RemotingCommand.createResponse(ResponseCode.SUCCESS, null, undefined, encodeRemotingJson(route))
    })
    await s.start()
    servers.push(s)
  }
  // ns0 is not listening: the first choice (random 0 → index 0) fails, ns1 answers.
  const client = new ClientInstance({ namesrv: ['mem:ns0', 'mem:ns1', 'mem:ns2'], remoting: transport.createClient(), random: () => 0, requestTimeoutMs: 500 })
  try {
    assert.deepEqual((await client.route('T', true))?.queueDatas.length, 1)
    assert.equal(client.namesrv.current, 'mem:ns1')
    await client.route('T', true)
    assert.deepEqual(asked, ['ns1', 'ns1'])
    await servers[0]!.stop()
    await client.route('T', true)
    assert.deepEqual(asked, ['ns1', 'ns1', 'ns2'])
    assert.equal(client.namesrv.current, 'mem:ns2')
    assert.equal(await client.brokerAddress('b'), 'mem:b')
    await servers[1]!.stop()
    await assert.rejects(client.route('T', true), (e: unknown) => e instanceof ClientError && e.code === 'NO_NAMESRV')
  } finally {
    await client.close()
    for (const s of servers) await s.stop().catch(() => undefined)
  }
})

test('latency fault tolerance avoids a failed broker for a while, then takes it back', () => {
  let now = 1000
  const f = new LatencyFaultTolerance({ now: () => now })
  assert.equal(f.notAvailableFor(10), 0)
  assert.equal(f.notAvailableFor(600), 30_000)
  assert.equal(f.notAvailableFor(20_000), 600_000)
  f.update('a', 5)
  assert.ok(f.isAvailable('a'))
  f.update('b', 0, true)
  assert.ok(!f.isAvailable('b'))
  now += 600_000
  assert.ok(f.isAvailable('b'))
  f.update('a', 700)
  f.update('b', 2500)
  assert.equal(f.leastBad(['a', 'b']), 'a')
})

test('the queue chooser round-robins, skips avoided brokers, and avoids the last broker on a retry', () => {
  const queues: MessageQueue[] = ['a', 'b'].flatMap((brokerName) => [0, 1].map((queueId) => ({ topic: 'T', brokerName, queueId })))
  const f = new LatencyFaultTolerance()
  const c = new QueueChooser(queues, () => 0)
  assert.deepEqual([0, 1, 2, 3].map(() => c.choose(undefined, f)!.queueId + c.choose(undefined, undefined)!.brokerName), ['0a', '0b', '0a', '0b'].map((x, i) => (i % 2 === 0 ? x : x)))
  f.update('a', 0, true)
  for (let i = 0; i < 6; i++) assert.equal(c.choose(undefined, f)!.brokerName, 'b')
  f.update('b', 0, true)
  assert.ok(c.choose(undefined, f), 'every broker avoided: one is still chosen')
  const plain = new QueueChooser(queues, () => 0)
  for (let i = 0; i < 6; i++) assert.notEqual(plain.choose('a', undefined)!.brokerName, 'a')
})

test('routes: read-only brokers give no publish queues, write-only ones no subscribe queues', () => {
  const route: TopicRouteData = {
    queueDatas: [
      { brokerName: 'b', readQueueNums: 2, writeQueueNums: 2, perm: 4 },
      { brokerName: 'a', readQueueNums: 3, writeQueueNums: 2, perm: 6 },
      { brokerName: 'c', readQueueNums: 1, writeQueueNums: 1, perm: 2 },
      { brokerName: 'd', readQueueNums: 1, writeQueueNums: 1, perm: 6 },
    ],
    brokerDatas: ['a', 'b', 'c'].map((n) => ({ cluster: 'C', brokerName: n, brokerAddrs: { '0': `${n}:1` } })),
  }
  assert.deepEqual(publishQueues('T', route).map((q) => `${q.brokerName}${q.queueId}`), ['a0', 'a1', 'c0'], 'd has no master, b is read-only')
  assert.deepEqual(subscribeQueues('T', route).map((q) => `${q.brokerName}${q.queueId}`), ['a0', 'a1', 'a2', 'b0', 'b1', 'd0'])
})

test('a client without a usable nameserver list is refused with INVALID_OPTION', () => {
  for (const bad of [undefined, 42, {}, [], ['x']]) {
    assert.throws(() => new ClientInstance({ namesrv: bad as never }), (e: unknown) => e instanceof ClientError && e.code === 'INVALID_OPTION', JSON.stringify(bad))
  }
})

test("the broker's NOTIFY_CONSUMER_IDS_CHANGED reaches every instance sharing one remoting client", async () => {
  const transport = new InMemoryTransport()
  const route: TopicRouteData = { queueDatas: [{ brokerName: 'b', readQueueNums: 1, writeQueueNums: 1, perm: 6 }], brokerDatas: [{ cluster: 'C', brokerName: 'b', brokerAddrs: { '0': 'mem:b' } }] }
  const ns = transport.createServer({ name: 'ns' })
  ns.registerProcessor(RequestCode.GET_ROUTEINFO_BY_TOPIC, () => RemotingCommand.createResponse(ResponseCode.SUCCESS, null, undefined, encodeRemotingJson(route)))
  const broker = transport.createServer({ name: 'b' })
  const channels: Channel[] = []
  broker.registerProcessor(RequestCode.HEART_BEAT, (_req, channel) => {
    channels.push(channel)
    return RemotingCommand.createResponse(ResponseCode.SUCCESS)
  })
  await ns.start()
  await broker.start()
  const remoting = transport.createClient()
  const notified: string[] = []
  const member = (name: string): ClientMember => ({ heartbeat: () => ({}), topics: () => ['T'], membershipChanged: (g) => void notified.push(`${name}:${g}`) })
  const a = new ClientInstance({ namesrv: 'mem:ns', remoting })
  const b = new ClientInstance({ namesrv: 'mem:ns', remoting })
  try {
    a.addMember(member('a'))
    b.addMember(member('b'))
    await a.route('T')
    await a.sendHeartbeats()
    assert.ok(channels.length > 0)
    await broker.invokeOneway(channels[0]!, RemotingCommand.createRequest(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, { consumerGroup: 'G' }))
    const until = Date.now() + 5000
    while (notified.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
    assert.deepEqual(notified.sort(), ['a:G', 'b:G'])
  } finally {
    await a.close()
    await b.close()
    await remoting.close()
    await ns.stop()
    await broker.stop()
  }
})
