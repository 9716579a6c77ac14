// @mqts/client against real `mqts` processes (two nameservers, two brokers of one cluster, on
// free loopback ports), mixed with ali-ons 3.12.0 in both directions, and consumers in their own
// processes: ordering per queue, rebalance when a consumer joins and when one is killed, orderly
// consumers through a join and a leave, broadcasting, a read-only broker skipped by producers, a
// nameserver killed while producing, a broker killed mid-send. CLIENT_E2E_MESSAGES sets how many
// messages the rebalance test sends (default 120).
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { after, before, test } from 'node:test'
import { countFromEnv } from '@mqts/common'
import { Producer, PullConsumer, PushConsumer, type MessageExt, type SendResult } from '@mqts/client'
import { ROOT, admin, onsClient, startMqts, stop, stopAll, type Server } from './processes.js'

const CONSUMER = path.join(ROOT, 'test', 'fixtures', 'client-consumer.mjs')
const MESSAGES = countFromEnv('CLIENT_E2E_MESSAGES', 120)

let dir: string
let namesrvs: Server[] = []
let brokers: Server[] = []
let namesrv: string
const children = new Set<ChildProcess>()

function brokerConf(name: string): string {
  return ['brokerClusterName=ClientCluster', `brokerName=${name}`, 'brokerId=0', 'brokerRole=ASYNC_MASTER', 'flushDiskType=ASYNC_FLUSH', 'mappedFileSizeCommitLog=16777216', ''].join('\n')
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mqts-client-e2e-'))
  for (const i of [0, 1]) namesrvs.push(await startMqts(['namesrv', '--port', '0', '--data', path.join(dir, `ns${i}`)]))
  namesrv = namesrvs.map((n) => n.address).join(';')
  for (const name of ['broker-a', 'broker-b']) {
    const conf = path.join(dir, `${name}.conf`)
    await writeFile(conf, brokerConf(name))
    brokers.push(await startMqts(['broker', '-c', conf, '-n', namesrv, '--port', '0', '--data', path.join(dir, name)]))
  }
})

after(async () => {
  for (const c of children) c.kill('SIGKILL')
  for (const s of [...brokers, ...namesrvs]) await stop(s, 'SIGKILL')
  stopAll()
  if (dir) await rm(dir, { recursive: true, force: true })
})

function createTopic(topic: string, queues: number, perm = 6, broker?: string): void {
  const target = broker ? ['-b', broker] : ['-c', 'ClientCluster']
  const r = admin(['updateTopic', '-n', namesrvs[namesrvs.length - 1]!.address, '-t', topic, ...target, '-r', String(queues), '-w', String(queues), '-p', String(perm), '--json'])
  assert.equal(r.status, 0, r.stderr)
}

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

interface Got {
  got: string
  broker: string
  queueId: number
  queueOffset: number
  msgId: string
}

interface ConsumerProcess {
  child: ChildProcess
  got: Got[]
  owns: number
}

function startConsumer(topic: string, group: string, name: string, mode = ''): Promise<ConsumerProcess> {
  const child = spawn(process.execPath, [CONSUMER, topic, group, name, mode], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NAMESRV: namesrv, OFFSET_DIR: path.join(dir, 'offsets') } })
  children.add(child)
  child.on('exit', () => children.delete(child))
  const p: ConsumerProcess = { child, got: [], owns: 0 }
  let buffered = ''
  let stderr = ''
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`consumer ${name} did not start: ${stderr}`)), 20_000)
    child.on('exit', (code) => reject(new Error(`consumer ${name} exited ${code}: ${stderr}`)))
    child.stdout!.on('data', (c: Buffer) => {
      buffered += c.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop()!
      for (const line of lines) {
        const j = JSON.parse(line) as Got & { ready?: string; owns?: number }
        if (j.ready) {
          clearTimeout(timer)
          resolve(p)
        } else if (j.owns !== undefined) p.owns = j.owns
        else p.got.push(j)
      }
    })
  })
}

test('ali-ons and @mqts/client mix in both directions; what either sends is stored alike', { timeout: 120_000 }, async () => {
  createTopic('MixTopic', 4)
  const ons = await onsClient<{ sent: string; msgId: string; queueId: number; queueOffset: number }>(namesrvs[0]!.address, ['produce', 'MixTopic', '10', 'ons'])
  const producer = await Producer.start({ namesrv, group: 'MixPG', clientIP: '127.0.0.1' })
  const ours: SendResult[] = []
  try {
    for (let i = 0; i < 10; i++) ours.push(await producer.send({ topic: 'MixTopic', body: `cli-${i}`, tags: i % 2 === 0 ? 'TagA' : 'TagB', keys: [`cli-${i}`] }))
  } finally {
    await producer.close()
  }
  // ali-ons consumes ours (and its own) with a tag filter: the ids it computes are our offset ids.
  const onsGot = await onsClient<{ got: string; tags: string; msgId: string }>(namesrvs[0]!.address, ['consume', 'MixTopic', 'MixOnsG', 'TagA', '10'])
  const expected = [...ons.filter((_, i) => i % 2 === 0).map((s) => s.sent), ...ours.filter((_, i) => i % 2 === 0).map((_, k) => `cli-${2 * k}`)]
  assert.deepEqual([...new Set(onsGot.map((g) => g.got))].sort(), expected.sort())
  for (const g of onsGot.filter((x) => x.got.startsWith('cli-'))) {
    assert.equal(g.tags, 'TagA')
    assert.equal(g.msgId, ours[Number(g.got.slice(4))]!.offsetMsgId)
  }
  // Our push consumer takes both: ali-ons sets no UNIQ_KEY, so the broker gives its messages one
  // (as RocketMQ's does) and their msgId is that; the offset id is what ali-ons' send answered.
  const got = new Map<string, MessageExt>()
  const consumer = new PushConsumer({ namesrv, group: 'MixCliG', clientIP: '127.0.0.1', consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET', suspendMs: 1000 })
  consumer.subscribe('MixTopic', 'TagA || TagB', (m) => void got.set(m.body.toString(), m))
  await consumer.start()
  try {
    await waitFor(() => got.size === 20, 30_000, 'all 20 messages')
  } finally {
    await consumer.close()
  }
  for (const [i, s] of ons.entries()) {
    const m = got.get(s.sent)!
    assert.match(m.msgId, /^[0-9A-F]{32}$/)
    assert.equal(m.msgId, m.properties.UNIQ_KEY)
    assert.equal(m.offsetMsgId, s.msgId)
    assert.equal(m.queueOffset, s.queueOffset)
    assert.equal(m.tags, i % 2 === 0 ? 'TagA' : 'TagB')
    assert.deepEqual(m.keys, [s.sent])
  }
  for (const [i, s] of ours.entries()) {
    const m = got.get(`cli-${i}`)!
    assert.equal(m.msgId, s.msgId)
    assert.equal(m.offsetMsgId, s.offsetMsgId)
    // On disk: the same TAGS, KEYS, CLUSTER and UNIQ_KEY (the broker's, for ali-ons) as ali-ons'
    // messages; and RocketMQ 4.x's own client's WAIT, which ali-ons does not set.
    const theirs = got.get(`ons-${i}`)!
    const strip = (p: Record<string, string>): Record<string, string> => {
      const { MIN_OFFSET: _a, MAX_OFFSET: _b, WAIT: _c, UNIQ_KEY: _d, ...rest } = p
      return rest
    }
    assert.deepEqual({ ...strip(m.properties), KEYS: 'x' }, { ...strip(theirs.properties), KEYS: 'x' })
    assert.equal(m.properties.KEYS, `cli-${i}`)
    assert.equal(theirs.properties.KEYS, `ons-${i}`)
    assert.equal(m.properties.WAIT, 'true')
    assert.equal(m.properties.UNIQ_KEY, s.msgId)
    assert.match(theirs.properties.UNIQ_KEY ?? '', /^[0-9A-F]{32}$/)
    if (m.brokerName === theirs.brokerName) assert.equal(m.offsetMsgId.slice(0, 16), theirs.offsetMsgId.slice(0, 16), 'one store host, one id prefix')
  }
})

test('consumers in their own processes: per-queue order, a third joins, one is killed; nothing lost', { timeout: 180_000 }, async () => {
  createTopic('RbTopic', 4)
  const producer = await Producer.start({ namesrv, group: 'RbPG', clientIP: '127.0.0.1' })
  const sent: SendResult[] = []
  const send = async (from: number, to: number): Promise<void> => {
    for (let i = from; i < to; i++) sent.push(await producer.send({ topic: 'RbTopic', body: `k${i % 5}:${i}` }, { shardingKey: `k${i % 5}` }))
  }
  try {
    const c1 = await startConsumer('RbTopic', 'RbG', 'c1')
    const c2 = await startConsumer('RbTopic', 'RbG', 'c2')
    const all = (): Got[] => [c1, c2, c3].filter((c): c is ConsumerProcess => c !== undefined).flatMap((c) => c.got)
    const distinct = (): number => new Set(all().map((g) => g.got)).size
    let c3: ConsumerProcess | undefined
    await waitFor(() => c1.owns + c2.owns === 8, 20_000, 'two consumers owning the 8 queues')
    const third = Math.floor(MESSAGES / 3)
    await send(0, third)
    c3 = await startConsumer('RbTopic', 'RbG', 'c3')
    await waitFor(() => c3!.owns > 0 && c1.owns + c2.owns + c3!.owns === 8, 20_000, 'the third consumer taking queues')
    await send(third, 2 * third)
    await waitFor(() => distinct() === 2 * third, 30_000, 'every message so far')
    c2.child.kill('SIGKILL')
    await waitFor(() => c1.owns + c3!.owns === 8, 30_000, 'the killed consumer\'s queues taken over')
    await send(2 * third, MESSAGES)
    await waitFor(() => distinct() === MESSAGES, 30_000, 'every message')
    const got = all()
    const duplicates = got.length - distinct()
    console.log(`# rebalance: ${MESSAGES} messages, ${duplicates} duplicate deliveries (allowed within the commit interval)`)
    // Per queue, each consumer saw increasing offsets; per key, the producer's order is the queue's.
    for (const c of [c1, c2, c3!]) {
      const last = new Map<string, number>()
      for (const g of c.got) {
        const q = `${g.broker}/${g.queueId}`
        assert.ok(g.queueOffset > (last.get(q) ?? -1) || got.filter((x) => x.got === g.got).length > 1, `${q} offsets go up in one consumer`)
        last.set(q, Math.max(g.queueOffset, last.get(q) ?? -1))
      }
    }
    for (let k = 0; k < 5; k++) {
      const ofKey = sent.filter((_, i) => i % 5 === k)
      assert.equal(new Set(ofKey.map((s) => `${s.queue.brokerName}/${s.queue.queueId}`)).size, 1, `key k${k} in one queue`)
      assert.deepEqual(ofKey.map((s) => s.queueOffset), [...ofKey.map((s) => s.queueOffset)].sort((a, b) => a - b))
    }
    c1.child.kill('SIGTERM')
    c3.child.kill('SIGTERM')
  } finally {
    await producer.close()
  }
})

test('orderly consumers in their own processes: each key in order through a join and a graceful leave', { timeout: 120_000 }, async () => {
  createTopic('OrdTopic', 3)
  const producer = await Producer.start({ namesrv, group: 'OrdPG', clientIP: '127.0.0.1' })
  let n = 0
  const send = async (count: number): Promise<void> => {
    for (const end = n + count; n < end; n++) await producer.send({ topic: 'OrdTopic', body: `k${n % 4}:${n}` }, { shardingKey: `k${n % 4}` })
  }
  try {
    const o1 = await startConsumer('OrdTopic', 'OrdG', 'o1', 'orderly')
    const o2 = await startConsumer('OrdTopic', 'OrdG', 'o2', 'orderly')
    await waitFor(() => o1.owns + o2.owns === 6, 20_000, 'two orderly consumers owning the 6 queues')
    await send(40)
    const o3 = await startConsumer('OrdTopic', 'OrdG', 'o3', 'orderly')
    await send(40)
    await waitFor(() => o3.owns > 0, 20_000, 'the third taking queues')
    const members = [o1, o2, o3]
    const distinct = (): number => new Set(members.flatMap((m) => m.got.map((g) => g.got))).size
    await waitFor(() => distinct() === 80, 30_000, 'the first 80')
    o2.child.kill('SIGTERM')
    await send(40)
    await waitFor(() => distinct() === 120, 30_000, 'all 120')
    // In each consumer, each key's messages came in the order they were sent (a message may come
    // again only from a queue's committed offset, so a repeat never precedes what it repeats).
    for (const m of members) {
      const last = new Map<string, number>()
      for (const g of m.got) {
        const [key, seq] = g.got.split(':') as [string, string]
        const before = last.get(key) ?? -1
        assert.ok(Number(seq) > before || m.got.filter((x) => x.got === g.got).length > 1, `${key}: ${seq} after ${before}`)
        last.set(key, Math.max(before, Number(seq)))
      }
    }
    o1.child.kill('SIGTERM')
    o3.child.kill('SIGTERM')
  } finally {
    await producer.close()
  }
})

test('broadcasting consumers in their own processes each get every message', { timeout: 60_000 }, async () => {
  createTopic('BcTopic', 2)
  const members = [await startConsumer('BcTopic', 'BcG', 'bc1', 'broadcasting'), await startConsumer('BcTopic', 'BcG', 'bc2', 'broadcasting')]
  await waitFor(() => members.every((m) => m.owns === 4), 20_000, 'both members owning every queue')
  const producer = await Producer.start({ namesrv, group: 'BcPG', clientIP: '127.0.0.1' })
  try {
    for (let i = 0; i < 20; i++) await producer.send({ topic: 'BcTopic', body: `bc${i}` })
  } finally {
    await producer.close()
  }
  await waitFor(() => members.every((m) => new Set(m.got.map((g) => g.got)).size === 20), 20_000, 'every message in both members')
  for (const m of members) m.child.kill('SIGTERM')
})

test('a broker whose topic is read-only (perm 4) gets no sends', { timeout: 60_000 }, async () => {
  createTopic('RoTopic', 2)
  createTopic('RoTopic', 2, 4, brokers[1]!.address)
  const producer = await Producer.start({ namesrv, group: 'RoPG', clientIP: '127.0.0.1' })
  try {
    const rs: SendResult[] = []
    for (let i = 0; i < 20; i++) rs.push(await producer.send({ topic: 'RoTopic', body: `r${i}` }))
    assert.deepEqual([...new Set(rs.map((r) => r.queue.brokerName))], ['broker-a'])
    // The read-only broker's queues are still read.
    const pull = await PullConsumer.start({ namesrv, group: 'RoG', clientIP: '127.0.0.1' })
    try {
      assert.deepEqual([...new Set((await pull.queues('RoTopic')).map((q) => q.brokerName))], ['broker-a', 'broker-b'])
    } finally {
      await pull.close()
    }
  } finally {
    await producer.close()
  }
})

test('the nameserver in use is killed while a producer sends: it moves to the other one', { timeout: 60_000 }, async () => {
  createTopic('NsTopic', 2)
  const producer = await Producer.start({ namesrv, group: 'NsPG', clientIP: '127.0.0.1', routeRefreshIntervalMs: 200 })
  try {
    for (let i = 0; i < 5; i++) assert.equal((await producer.send({ topic: 'NsTopic', body: `n${i}` })).status, 'SEND_OK')
    const used = producer.instance.namesrv.current
    const victim = namesrvs.find((n) => n.address === used)!
    await stop(victim, 'SIGKILL')
    namesrvs = namesrvs.filter((n) => n !== victim)
    for (let i = 5; i < 25; i++) {
      assert.equal((await producer.send({ topic: 'NsTopic', body: `n${i}` })).status, 'SEND_OK')
      await new Promise((r) => setTimeout(r, 20))
    }
    // A topic it never asked about needs the nameserver now.
    createTopic('NsTopic2', 2)
    assert.equal((await producer.send({ topic: 'NsTopic2', body: 'fresh' })).status, 'SEND_OK')
    assert.equal(producer.instance.namesrv.current, namesrvs[0]!.address)
  } finally {
    await producer.close()
  }
})

test('a broker killed mid-send: the sends move to the other broker of the cluster', { timeout: 60_000 }, async () => {
  createTopic('KillTopic', 2)
  const producer = await Producer.start({ namesrv, group: 'KillPG', clientIP: '127.0.0.1', sendTimeoutMs: 2000 })
  try {
    const before: SendResult[] = []
    for (let i = 0; i < 10; i++) before.push(await producer.send({ topic: 'KillTopic', body: `b${i}` }))
    assert.deepEqual([...new Set(before.map((r) => r.queue.brokerName))].sort(), ['broker-a', 'broker-b'])
    const sends: Array<Promise<SendResult>> = []
    for (let i = 0; i < 30; i++) {
      if (i === 10) await stop(brokers[0]!, 'SIGKILL')
      sends.push(producer.send({ topic: 'KillTopic', body: `k${i}` }))
      await new Promise((r) => setTimeout(r, 10))
    }
    const results = await Promise.all(sends)
    assert.ok(results.every((r) => r.status === 'SEND_OK'))
    assert.deepEqual([...new Set(results.slice(10).map((r) => r.queue.brokerName))], ['broker-b'])
  } finally {
    await producer.close()
  }
})
