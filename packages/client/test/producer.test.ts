// The producer and the pull consumer against an in-process nameserver and brokers: send
// results, what is stored (properties, keys, tags, ids), one-way and batch sends, ordered sends,
// delay levels, retries on the other broker, read-only brokers, errors with response codes.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ResponseCode, silentLogger } from '@mqts/transport'
import { ClientError } from '../src/errors.js'
import { Producer } from '../src/producer.js'
import { PullConsumer } from '../src/pull-consumer.js'
import { PushConsumer } from '../src/push-consumer.js'
import type { MessageExt } from '../src/message.js'
import type { MessageQueue } from '../src/route.js'
import { startCluster, type TestCluster } from './cluster.js'

async function pullAll(consumer: PullConsumer, queues: MessageQueue[]): Promise<MessageExt[]> {
  const out: MessageExt[] = []
  for (const q of queues) {
    let offset = 0
    for (;;) {
      const r = await consumer.pull(q, offset, { suspendMs: 0 })
      out.push(...r.messages)
      if (r.status === 'NO_NEW_MSG' || r.status === 'OFFSET_ILLEGAL') break
      offset = r.nextOffset
    }
  }
  return out
}

async function withCluster(brokers: number, fn: (c: TestCluster, p: Producer, c2: PullConsumer) => Promise<void>): Promise<void> {
  const c = await startCluster({ brokers })
  const producer = await Producer.start({ namesrv: c.namesrv, group: 'PG', clientIP: '127.0.0.1' })
  const consumer = await PullConsumer.start({ namesrv: c.namesrv, group: 'PullG', clientIP: '127.0.0.1' })
  try {
    await fn(c, producer, consumer)
  } finally {
    await producer.close()
    await consumer.close()
    await c.stop()
  }
}

test('send answers msgId, queue and offset; the stored message has RocketMQ 4.x properties', { timeout: 60_000 }, async () => {
  await withCluster(1, async (c, producer, consumer) => {
    await c.createTopic('T1', 4)
    const r = await producer.send({ topic: 'T1', body: 'hello', tags: 'TagA', keys: ['k1', 'k2'], properties: { app: 'x' } })
    assert.equal(r.status, 'SEND_OK')
    assert.match(r.msgId, /^[0-9A-F]{32}$/)
    assert.match(r.offsetMsgId, /^[0-9A-F]{32}$/)
    assert.equal(r.queue.topic, 'T1')
    assert.equal(r.queue.brokerName, 'broker-a')
    assert.equal(r.queueOffset, 0)
    const got = await pullAll(consumer, await consumer.queues('T1'))
    assert.equal(got.length, 1)
    const m = got[0]!
    assert.equal(m.body.toString(), 'hello')
    assert.equal(m.tags, 'TagA')
    assert.deepEqual(m.keys, ['k1', 'k2'])
    assert.equal(m.msgId, r.msgId)
    assert.equal(m.offsetMsgId, r.offsetMsgId)
    assert.equal(m.queueId, r.queue.queueId)
    assert.equal(m.properties.WAIT, 'true')
    assert.equal(m.properties.UNIQ_KEY, r.msgId)
    assert.equal(m.properties.app, 'x')
    assert.equal(m.properties.CLUSTER, 'TestCluster')
    // Sends spread over the queues round-robin.
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => producer.send({ topic: 'T1', body: `m${i}` })))
    assert.equal(new Set(rs.map((x) => x.queue.queueId)).size, 4)
  })
})

test('sendOneway, sendBatch, ordered sends by key, delay level and a topic auto-created on first send', { timeout: 60_000 }, async () => {
  await withCluster(1, async (c, producer, consumer) => {
    await c.createTopic('T2', 4)
    await producer.sendOneway({ topic: 'T2', body: 'oneway', tags: 'O' })
    const batch = await producer.sendBatch([1, 2, 3].map((i) => ({ topic: 'T2', body: `b${i}`, keys: `bk${i}` })))
    assert.equal(batch.msgId.split(',').length, 3)
    assert.equal(batch.offsetMsgId.split(',').length, 3)
    const ordered = []
    for (let i = 0; i < 12; i++) ordered.push(await producer.send({ topic: 'T2', body: `o${i % 3}-${i}` }, { shardingKey: `order-${i % 3}` }))
    for (let k = 0; k < 3; k++) assert.equal(new Set(ordered.filter((_, i) => i % 3 === k).map((r) => r.queue.queueId)).size, 1)
    await producer.send({ topic: 'T2', body: 'later', delayLevel: 2 })
    await new Promise((r) => setTimeout(r, 200))
    const got = await pullAll(consumer, await consumer.queues('T2'))
    const bodies = got.map((m) => m.body.toString())
    assert.ok(bodies.includes('oneway'))
    const b = got.filter((m) => m.body.toString().startsWith('b'))
    assert.deepEqual(b.map((m) => m.msgId), batch.msgId.split(','))
    assert.deepEqual(b.map((m) => m.queueOffset), [batch.queueOffset, batch.queueOffset + 1, batch.queueOffset + 2])
    for (let k = 0; k < 3; k++) {
      const of = got.filter((m) => m.body.toString().startsWith(`o${k}-`)).map((m) => Number(m.body.toString().split('-')[1]))
      assert.deepEqual(of, [...of].sort((x, y) => x - y), 'one key keeps its order in its queue')
      assert.equal(of.length, 4)
    }
    // The broker's scheduled delivery is not the client's: it carries the level (DELAY=2) and
    // the broker decides where it waits (see the broker's delayed delivery).
    const delayed = got.find((m) => m.body.toString() === 'later')
    if (delayed) assert.equal(delayed.properties.DELAY, '2')
    const auto = await producer.send({ topic: 'AutoCreated', body: 'first' })
    assert.equal(auto.status, 'SEND_OK')
  })
})

test('a read-only broker (perm 4) gets no sends; a stopped broker makes sends move to the other one', { timeout: 60_000 }, async () => {
  await withCluster(2, async (c, producer) => {
    await c.createTopic('T3', 2)
    await c.createTopic('T3', 2, 4, ['broker-b'])
    const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => producer.send({ topic: 'T3', body: `x${i}` })))
    assert.deepEqual([...new Set(rs.map((r) => r.queue.brokerName))], ['broker-a'])
    await c.createTopic('T4', 2)
    const before = await Promise.all(Array.from({ length: 6 }, (_, i) => producer.send({ topic: 'T4', body: `y${i}` })))
    assert.deepEqual([...new Set(before.map((r) => r.queue.brokerName))].sort(), ['broker-a', 'broker-b'])
    await c.brokers[0]!.stop()
    // The route still names broker-a until the nameserver notices; sends fail over.
    for (let i = 0; i < 10; i++) assert.equal((await producer.send({ topic: 'T4', body: `z${i}` })).queue.brokerName, 'broker-b')
  })
})

test('a send nobody can take fails with SEND_FAILED whose cause carries the response code', { timeout: 60_000 }, async () => {
  await withCluster(1, async (c, producer) => {
    await c.createTopic('T5', 2)
    // Routed as writable by a stale route, refused by the broker: NO_PERMISSION on every attempt.
    await producer.send({ topic: 'T5', body: 'ok' })
    await c.createTopic('T5', 2, 4)
    // The producer's cached route still says writable.
    await assert.rejects(producer.send({ topic: 'T5', body: 'refused' }), (e: unknown) => {
      assert.ok(e instanceof ClientError)
      assert.equal(e.code, 'SEND_FAILED')
      assert.equal(e.responseCode, ResponseCode.NO_PERMISSION)
      return true
    })
    await assert.rejects(producer.send({ topic: 'bad topic!', body: '' }), (e: unknown) => e instanceof ClientError && e.code === 'INVALID_OPTION')
  })
})

test('the pull consumer iterates a queue from an offset, waits for new messages, and stops on abort', { timeout: 60_000 }, async () => {
  await withCluster(1, async (c, producer, consumer) => {
    await c.createTopic('T6', 1)
    const [queue] = await consumer.queues('T6')
    for (let i = 0; i < 5; i++) await producer.send({ topic: 'T6', body: `p${i}`, tags: i % 2 ? 'B' : 'A' })
    const ac = new AbortController()
    const seen: string[] = []
    const done = (async () => {
      for await (const m of consumer.messages({ queue: queue!, offset: 2, signal: ac.signal, expression: 'A' })) {
        seen.push(m.body.toString())
        if (seen.length === 3) setTimeout(() => ac.abort(), 50)
      }
    })()
    await new Promise((r) => setTimeout(r, 200))
    await producer.send({ topic: 'T6', body: 'p5', tags: 'B' })
    await producer.send({ topic: 'T6', body: 'p6', tags: 'A' })
    await done
    assert.deepEqual(seen, ['p2', 'p4', 'p6'])
    await consumer.commitOffset(queue!, 7)
    assert.equal(await consumer.committedOffset(queue!), 7)
    assert.equal(await consumer.maxOffset(queue!), 7)
    assert.equal(await consumer.minOffset(queue!), 0)
    const r = await consumer.pull(queue!, 100, { suspendMs: 0 })
    assert.equal(r.status, 'OFFSET_ILLEGAL')
    // RocketMQ sends a pull past the end back to the min offset when the queue starts at 0.
    assert.equal(r.nextOffset, 0)
    assert.equal(r.maxOffset, 7)
  })
})

test('a pull given an aborted signal sends nothing: no request left to fail after close', { timeout: 30_000 }, async () => {
  const unhandled: unknown[] = []
  const onUnhandled = (e: unknown): void => void unhandled.push(e)
  process.on('unhandledRejection', onUnhandled)
  try {
    await withCluster(1, async (c, producer, consumer) => {
      await c.createTopic('AbortT', 1)
      await producer.send({ topic: 'AbortT', body: 'x' })
      const [q] = (await consumer.queues('AbortT'))!
      await assert.rejects(consumer.pull(q!, 1, { signal: AbortSignal.abort() }), (e: unknown) => e instanceof ClientError && e.code === 'ABORTED')
    })
    await new Promise((r) => setTimeout(r, 200))
    assert.deepEqual(unhandled, [])
  } finally {
    process.off('unhandledRejection', onUnhandled)
  }
})

test('commitOffset refuses an offset that is not an integer >= 0; consumeFromWhere is checked', { timeout: 30_000 }, async () => {
  await withCluster(1, async (c, _producer, consumer) => {
    await c.createTopic('CommitT', 1)
    const [q] = (await consumer.queues('CommitT'))!
    for (const bad of [-5, Number.NaN, 1.5, 2 ** 53]) {
      await assert.rejects(consumer.commitOffset(q!, bad), (e: unknown) => e instanceof ClientError && e.code === 'INVALID_OPTION', String(bad))
    }
  })
  const { PushConsumer } = await import('../src/push-consumer.js')
  assert.throws(() => new PushConsumer({ namesrv: '127.0.0.1:1', group: 'G', consumeFromWhere: 'FOO' as never }), (e: unknown) => e instanceof ClientError && e.code === 'INVALID_OPTION')
})

test('a selector must answer one of the queues it was given (else INVALID_OPTION); one that throws is a ClientError with the cause', { timeout: 30_000 }, async () => {
  await withCluster(1, async (c, producer) => {
    await c.createTopic('SelT', 4)
    const answers: unknown[] = [2, undefined, null, 'q', { topic: 'SelT', brokerName: 'broker-a', queueId: 4 }, { topic: 'Other', brokerName: 'broker-a', queueId: 0 }, { topic: 'SelT', brokerName: 'broker-z', queueId: 0 }]
    for (const answer of answers) {
      await assert.rejects(
        producer.send({ topic: 'SelT', body: 'x' }, { selector: () => answer as never }),
        (e: unknown) => e instanceof ClientError && e.code === 'INVALID_OPTION' && /selector/.test(e.message),
        JSON.stringify(answer),
      )
    }
    const boom = new Error('selector bug')
    await assert.rejects(producer.send({ topic: 'SelT', body: 'x' }, { selector: () => { throw boom } }), (e: unknown) => {
      assert.ok(e instanceof ClientError, `a ClientError, got ${String(e)}`)
      assert.equal(e.code, 'INVALID_OPTION')
      assert.equal(e.cause, boom)
      return true
    })
    // A selector may answer a copy of a queue it was given.
    const r = await producer.send({ topic: 'SelT', body: 'x' }, { selector: (qs) => ({ ...qs[3]! }) })
    assert.equal(r.queue.queueId, 3)
  })
})

test('a message whose frame is over the transport limit (16 MiB) fails at once with INVALID_OPTION, not retried', { timeout: 60_000 }, async () => {
  await withCluster(1, async (c, producer) => {
    await c.createTopic('BigT', 2)
    const warnings: string[] = []
    const p2 = await Producer.start({ namesrv: c.namesrv, group: 'PG2', clientIP: '127.0.0.1', logger: { ...silentLogger, warn: (m: string) => void warnings.push(m) } })
    try {
      await p2.send({ topic: 'BigT', body: 'warm' })
      await assert.rejects(p2.send({ topic: 'BigT', body: Buffer.alloc(16 * 1024 * 1024) }), (e: unknown) => {
        assert.ok(e instanceof ClientError)
        assert.equal(e.code, 'INVALID_OPTION')
        assert.match(e.message, /16777216/)
        return true
      })
      assert.deepEqual(warnings, [], 'no attempt retried')
      assert.equal((await p2.send({ topic: 'BigT', body: 'after' })).status, 'SEND_OK')
    } finally {
      await p2.close()
    }
    void producer
  })
})

test('committing an offset for a queue the topic does not have is refused with INVALID_OPTION', { timeout: 30_000 }, async () => {
  await withCluster(1, async (c, _producer, consumer) => {
    await c.createTopic('QT', 2)
    const qs = await consumer.queues('QT')
    assert.equal(qs.length, 2)
    for (const bad of [{ topic: 'QT', brokerName: 'broker-a', queueId: 2 }, { topic: 'QT', brokerName: 'broker-a', queueId: -1 }, { topic: 'QT', brokerName: 'broker-a', queueId: 0.5 }, { topic: 'QT', brokerName: 'broker-z', queueId: 0 }]) {
      await assert.rejects(consumer.commitOffset(bad, 1), (e: unknown) => e instanceof ClientError && e.code === 'INVALID_OPTION', JSON.stringify(bad))
    }
    await consumer.commitOffset(qs[1]!, 1)
    assert.equal(await consumer.committedOffset(qs[1]!), 1)
  })
})

test('messages() after close() rejects CLOSED as pull() does; before start() NOT_STARTED', { timeout: 30_000 }, async () => {
  await withCluster(1, async (c, _producer, consumer) => {
    await c.createTopic('ClosedT', 1)
    const [q] = await consumer.queues('ClosedT')
    const fresh = new PullConsumer({ namesrv: c.namesrv, group: 'PullG2', clientIP: '127.0.0.1' })
    await assert.rejects(fresh.messages({ queue: q!, offset: 0 }).next(), (e: unknown) => e instanceof ClientError && e.code === 'NOT_STARTED')
    await fresh.close()
    await consumer.close()
    await assert.rejects(consumer.pull(q!, 0), (e: unknown) => e instanceof ClientError && e.code === 'CLOSED')
    await assert.rejects(consumer.messages({ queue: q!, offset: 0 }).next(), (e: unknown) => e instanceof ClientError && e.code === 'CLOSED')
  })
})

test('committedOffset answers -1 for a group that never committed, 0 once 0 was committed', { timeout: 30_000 }, async () => {
  await withCluster(1, async (c, producer, consumer) => {
    await c.createTopic('NeverT', 1)
    await producer.send({ topic: 'NeverT', body: 'x' })
    const [q] = await consumer.queues('NeverT')
    assert.equal(await consumer.committedOffset(q!), -1)
    await consumer.commitOffset(q!, 0)
    assert.equal(await consumer.committedOffset(q!), 0)
  })
})

test('deterministic mistakes are refused before sending (INVALID_OPTION): a flag that is no Java int, a system topic', { timeout: 60_000 }, async () => {
  await withCluster(1, async (c, producer) => {
    await c.createTopic('TF', 1)
    const invalid = (e: unknown): boolean => (e as { code?: string }).code === 'INVALID_OPTION'
    for (const flag of [1.5, -(2 ** 31) - 1, 2 ** 31, Number.NaN]) {
      await assert.rejects(producer.send({ topic: 'TF', body: 'x', flag }), invalid, `flag ${flag}`)
      await assert.rejects(producer.sendBatch([{ topic: 'TF', body: 'x', flag }]), invalid, `batch flag ${flag}`)
    }
    // RocketMQ's TopicValidator: the system topics are the broker's, never a producer's.
    for (const topic of ['SCHEDULE_TOPIC_XXXX', 'TBW102', 'RMQ_SYS_TRANS_HALF_TOPIC', 'RMQ_SYS_TRACE_TOPIC', 'rmq_sys_anything', 'OFFSET_MOVED_EVENT']) {
      await assert.rejects(producer.send({ topic, body: 'x' }), (e: unknown) => invalid(e) && (e as Error).message.includes(topic), topic)
      await assert.rejects(producer.sendOneway({ topic, body: 'x' }), invalid, `oneway ${topic}`)
    }
    // A Java int flag is fine, negative ones included.
    assert.equal((await producer.send({ topic: 'TF', body: 'x', flag: -5 })).status, 'SEND_OK')
  })
})

test("a suspendMs past a timer's range (2^31 ms) is refused (INVALID_OPTION), by pull and by the push consumer; a pull waiting when close() is called rejects CLOSED", { timeout: 30_000 }, async () => {
  const invalid = (e: unknown): boolean => e instanceof ClientError && e.code === 'INVALID_OPTION'
  for (const suspendMs of [2 ** 31, 1e12, -1, 1.5, Number.NaN]) {
    assert.throws(() => new PushConsumer({ namesrv: '127.0.0.1:1', group: 'G', suspendMs }), invalid, `push ${suspendMs}`)
  }
  await withCluster(1, async (c, producer, consumer) => {
    await c.createTopic('SuspT', 1)
    await producer.send({ topic: 'SuspT', body: 'x' })
    const [q] = await consumer.queues('SuspT')
    for (const suspendMs of [2 ** 31, 1e12, -1]) await assert.rejects(consumer.pull(q!, 1, { suspendMs }), invalid, `pull ${suspendMs}`)
    // Held by the broker (nothing past offset 1) until close() ends it.
    const waiting = consumer.pull(q!, 1, { suspendMs: 20_000 })
    await new Promise((r) => setTimeout(r, 300))
    await consumer.close()
    await assert.rejects(waiting, (e: unknown) => e instanceof ClientError && e.code === 'CLOSED')
  })
})

test("every duration option must fit a timer (at most 2^31 - 1 ms) and every count option be a whole number >= 1 (INVALID_OPTION)", () => {
  const invalid = (e: unknown): boolean => e instanceof ClientError && e.code === 'INVALID_OPTION'
  for (const name of ['rebalanceIntervalMs', 'persistOffsetIntervalMs', 'lockRenewIntervalMs', 'lockMaxLiveMs', 'pullDelayOnErrorMs', 'suspendOrderlyMs', 'requestTimeoutMs', 'routeRefreshIntervalMs', 'heartbeatIntervalMs']) {
    for (const v of [2 ** 31, 1e12, 0, -1, Number.NaN]) assert.throws(() => new PushConsumer({ namesrv: '127.0.0.1:1', group: 'G', [name]: v }), invalid, `${name} ${v}`)
  }
  for (const name of ['pullBatchSize', 'maxCachedMessagesPerQueue', 'maxCachedBytesPerQueue', 'consumeConcurrency', 'maxReconsumeTimes']) {
    for (const v of [1.5, 0, -1, Number.POSITIVE_INFINITY]) assert.throws(() => new PushConsumer({ namesrv: '127.0.0.1:1', group: 'G', [name]: v }), invalid, `${name} ${v}`)
  }
  for (const v of [2 ** 31, 0]) assert.throws(() => new Producer({ namesrv: '127.0.0.1:1', group: 'P', requestTimeoutMs: v }), invalid, `producer requestTimeoutMs ${v}`)
})
