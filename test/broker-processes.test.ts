// The broker's features as real processes: a nameserver and a broker (the `mqts` command, short
// delay levels from broker.conf's messageDelayLevel) on free loopback ports, driven by the admin
// CLI, @mqts/client and raw remoting requests: the queue shrink RocketMQ describes (16 queues,
// write 8, drain 8-15, read 8, nothing lost), delayed delivery across a broker restart (once,
// not lost, not repeated), QUERY_MESSAGE by key and by unique key and VIEW_MESSAGE_BY_ID, and
// retry then the dead-letter queue. BROKER_E2E_MESSAGES sets the messages per queue of the shrink
// (default 2) and of the other tests.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { after, before, test } from 'node:test'
import { countFromEnv } from '@mqts/common'
import { ConsumeResult, Producer, PullConsumer, PushConsumer, decodeMessages, type MessageExt, type MessageQueue } from '@mqts/client'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { admin, startMqts, stop, stopAll, type Server } from './processes.js'

const MESSAGES = countFromEnv('BROKER_E2E_MESSAGES', 2)
const T = 5000
const BROKER_NAME = 'broker-e'

let dir: string
let ns: Server
let broker: Server
let brokerArgs: string[]
let producer: Producer
let consumer: PullConsumer
const raw = new TcpRemotingClient({ logger: silentLogger })

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'mqts-broker-e2e-'))
  ns = await startMqts(['namesrv', '--port', '0', '--data', path.join(dir, 'ns')])
  const conf = path.join(dir, 'broker.conf')
  // Level 1 is 1 s, level 2 is 2 s; a send-back's level (3 + reconsumeTimes) is at most the last, 1 s.
  await writeFile(conf, ['brokerClusterName=E2ECluster', `brokerName=${BROKER_NAME}`, 'brokerId=0', 'flushDiskType=ASYNC_FLUSH', 'mappedFileSizeCommitLog=16777216', 'messageDelayLevel=1s 2s 1s 1s 1s', ''].join('\n'))
  broker = await startMqts(['broker', '-c', conf, '-n', ns.address, '--port', '0', '--data', path.join(dir, 'broker')])
  // A restart keeps the port, so the clients' routes stay right.
  brokerArgs = ['broker', '-c', conf, '-n', ns.address, '--port', broker.address.split(':').pop()!, '--data', path.join(dir, 'broker')]
  producer = await Producer.start({ namesrv: ns.address, group: 'E2EPG', clientIP: '127.0.0.1' })
  consumer = await PullConsumer.start({ namesrv: ns.address, group: 'E2ECG', clientIP: '127.0.0.1' })
})

after(async () => {
  await producer?.close().catch(() => undefined)
  await consumer?.close().catch(() => undefined)
  await raw.close()
  if (broker) await stop(broker, 'SIGKILL')
  if (ns) await stop(ns, 'SIGKILL')
  stopAll()
  if (dir) await rm(dir, { recursive: true, force: true })
})

function updateTopic(topic: string, read: number, write: number): void {
  const r = admin(['updateTopic', '-n', ns.address, '-t', topic, '-b', broker.address, '-r', String(read), '-w', String(write)])
  assert.equal(r.status, 0, r.stderr)
}

async function until<T>(what: string, get: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await get()
    if (v !== undefined) return v
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

function queue(topic: string, queueId: number): MessageQueue {
  return { topic, brokerName: BROKER_NAME, queueId }
}

/** Every message of a queue from `offset`, then its offset committed. */
async function drain(q: MessageQueue, offset = 0): Promise<MessageExt[]> {
  const out: MessageExt[] = []
  for (;;) {
    const r = await consumer.pull(q, offset, { suspendMs: 0 })
    out.push(...r.messages)
    if (r.nextOffset === offset) break
    offset = r.nextOffset
  }
  await consumer.commitOffset(q, offset)
  return out
}

/** A raw request to the broker (the queries the client has no call for). */
function invoke(code: number, ext: Record<string, string>): Promise<RemotingCommand> {
  return raw.invoke(broker.address, RemotingCommand.createRequest(code, ext), T)
}

test('shrinking a topic through the admin CLI: 16 queues, write 8, drain 8-15, read 8; no message lost', { timeout: 60_000 }, async () => {
  updateTopic('Shrink', 16, 16)
  const sent = new Set<string>()
  for (let q = 0; q < 16; q++) {
    for (let i = 0; i < MESSAGES; i++) {
      const body = `q${q}-${i}`
      const r = await producer.send({ topic: 'Shrink', body }, { selector: (queues) => queues.find((x) => x.queueId === q)!, arg: q })
      assert.equal(r.queue.queueId, q)
      sent.add(body)
    }
  }
  updateTopic('Shrink', 16, 8)
  // A producer started now sees 8 write queues; the broker refuses a send to queue 9.
  const fresh = await Producer.start({ namesrv: ns.address, group: 'E2EPG2', clientIP: '127.0.0.1' })
  try {
    assert.deepEqual((await fresh.publishQueues('Shrink')).map((q) => q.queueId), [0, 1, 2, 3, 4, 5, 6, 7])
    for (let i = 0; i < 8; i++) {
      const r = await fresh.send({ topic: 'Shrink', body: `new${i}` })
      assert.ok(r.queue.queueId < 8)
      sent.add(`new${i}`)
    }
  } finally {
    await fresh.close()
  }
  const late = await raw.invoke(broker.address, RemotingCommand.createRequest(RequestCode.SEND_MESSAGE_V2, { a: 'PG', b: 'Shrink', c: 'TBW102', d: '4', e: '9', f: '0', g: String(Date.now()), h: '0', i: '', j: '0', k: 'false' }, 'late'), T)
  assert.equal(late.code, ResponseCode.SYSTEM_ERROR, 'queue 9 is no longer writable')
  const consumed: string[] = []
  for (let q = 8; q < 16; q++) consumed.push(...(await drain(queue('Shrink', q))).map((m) => m.body.toString()))
  updateTopic('Shrink', 8, 8)
  assert.deepEqual((await consumer.queues('Shrink')).map((q) => q.queueId), [0, 1, 2, 3, 4, 5, 6, 7])
  await assert.rejects(consumer.pull(queue('Shrink', 9), 0, { suspendMs: 0 }), 'queue 9 is no longer readable')
  for (let q = 0; q < 8; q++) consumed.push(...(await drain(queue('Shrink', q))).map((m) => m.body.toString()))
  assert.deepEqual(consumed.sort(), [...sent].sort(), 'every message consumed once')
})

test('delayed messages across a broker restart: delivered when due, once, none lost or repeated', { timeout: 60_000 }, async () => {
  updateTopic('Later', 1, 1)
  const q = queue('Later', 0)
  const before = await producer.send({ topic: 'Later', body: 'before the restart', delayLevel: 1 })
  assert.equal(before.status, 'SEND_OK')
  const first = await consumer.pull(q, 0, { suspendMs: 8000 })
  assert.deepEqual(first.messages.map((m) => m.body.toString()), ['before the restart'])
  // Held while the broker stops: delivered by the restarted one, from delayOffset.json's offsets.
  for (let i = 0; i < MESSAGES; i++) assert.equal((await producer.send({ topic: 'Later', body: `across ${i}`, delayLevel: 2 })).status, 'SEND_OK')
  assert.equal(await stop(broker, 'SIGTERM'), 0)
  broker = await startMqts(brokerArgs)
  const got = await until('the held messages', async () => {
    const r = await consumer.pull(q, 1, { suspendMs: 3000 }).catch(() => undefined)
    return r && r.messages.length >= MESSAGES ? r.messages : undefined
  })
  assert.deepEqual(got.map((m) => m.body.toString()).sort(), Array.from({ length: MESSAGES }, (_, i) => `across ${i}`).sort())
  assert.ok(got.every((m) => m.properties.DELAY === undefined && m.properties.REAL_TOPIC === 'Later'))
  // Past every level's delay: nothing more comes (the one delivered before the restart is not repeated).
  await new Promise((r) => setTimeout(r, 2500))
  assert.equal(await consumer.maxOffset(q), 1 + MESSAGES, 'each delivered once')
})

test('QUERY_MESSAGE by key and by unique key, VIEW_MESSAGE_BY_ID by the offset id a send answered', { timeout: 30_000 }, async () => {
  updateTopic('Query', 2, 2)
  const sent = []
  for (let i = 0; i < MESSAGES + 1; i++) sent.push(await producer.send({ topic: 'Query', body: `order ${i}`, keys: [`order-${i}`, 'shared'] }))
  const query = async (key: string, unique = false): Promise<string[]> => {
    const ext: Record<string, string> = { topic: 'Query', key, maxNum: '32', beginTimestamp: '0', endTimestamp: String(Date.now() + 60_000) }
    if (unique) ext._UNIQUE_KEY_QUERY = 'true'
    const r = await invoke(RequestCode.QUERY_MESSAGE, ext)
    if (r.code === ResponseCode.QUERY_NOT_FOUND) return []
    assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
    return decodeMessages(r.body, BROKER_NAME).map((m) => m.body.toString()).sort()
  }
  assert.deepEqual(await query('order-1'), ['order 1'])
  assert.deepEqual(await query('shared'), sent.map((_, i) => `order ${i}`).sort())
  assert.deepEqual(await query(sent[0]!.msgId, true), ['order 0'], "the producer's UNIQ_KEY")
  assert.deepEqual(await query('no-such-key'), [])
  // An offset message id: store host (8 bytes) then the CommitLog offset (8 bytes), in hex.
  const offset = Number.parseInt(sent[1]!.offsetMsgId.slice(16), 16)
  const view = await invoke(RequestCode.VIEW_MESSAGE_BY_ID, { offset: String(offset) })
  assert.equal(view.code, ResponseCode.SUCCESS, view.remark ?? '')
  const [m] = decodeMessages(view.body, BROKER_NAME)
  assert.equal(m?.body.toString(), 'order 1')
  assert.equal(m?.offsetMsgId, sent[1]!.offsetMsgId)
  assert.equal((await invoke(RequestCode.VIEW_MESSAGE_BY_ID, { offset: String(offset + 1) })).code, ResponseCode.SYSTEM_ERROR, 'no record starts there')
})

test('a message its consumer keeps failing is redelivered through %RETRY%<group>, then goes to %DLQ%<group>', { timeout: 60_000 }, async () => {
  updateTopic('Flaky', 1, 1)
  const seen = new Map<string, number[]>()
  const push = new PushConsumer({ namesrv: ns.address, group: 'FlakyG', clientIP: '127.0.0.1', maxReconsumeTimes: 2, suspendMs: 1000, consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET', rebalanceIntervalMs: 500, routeRefreshIntervalMs: 500 })
  push.subscribe('Flaky', '*', (m) => {
    seen.set(m.body.toString(), [...(seen.get(m.body.toString()) ?? []), m.reconsumeTimes])
    return ConsumeResult.RETRY
  })
  await push.start()
  try {
    const bodies = Array.from({ length: MESSAGES }, (_, i) => `flaky ${i}`)
    for (const body of bodies) await producer.send({ topic: 'Flaky', body })
    // The first delivery and two retries (reconsumeTimes 0, 1, 2), then the dead-letter queue.
    await until('three deliveries of each', async () => (bodies.every((b) => (seen.get(b)?.length ?? 0) >= 3) ? true : undefined), 30_000)
    const dlq = queue('%DLQ%FlakyG', 0)
    const dead = await until('the dead letters', async () => {
      const r = await consumer.pull(dlq, 0, { suspendMs: 0 }).catch(() => undefined)
      return r && r.messages.length >= MESSAGES ? r.messages : undefined
    })
    assert.deepEqual(dead.map((m) => m.body.toString()).sort(), bodies)
    for (const m of dead) {
      assert.equal(m.properties.RETRY_TOPIC, 'Flaky', 'the original topic is kept')
      assert.equal(m.reconsumeTimes, 3)
    }
    for (const b of bodies) assert.deepEqual(seen.get(b)?.slice(0, 3), [0, 1, 2], `${b}: delivered with reconsumeTimes 0, 1, 2`)
    assert.ok((await consumer.queues('%DLQ%FlakyG')).length > 0, 'the DLQ topic is routed')
  } finally {
    await push.close()
  }
})
