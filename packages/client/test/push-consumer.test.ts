// The push consumer against an in-process nameserver and broker: clustering shares the queues
// and rebalances, broadcasting gives everyone everything with offsets in a file, tag filters,
// offsets committed on close, a failing handler's message redelivered through the retry topic,
// orderly consumption, and flow control.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import type { BrokerOptions } from '@mqts/broker'
import { javaStringHashCode } from '@mqts/common'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { isClientError } from '../src/errors.js'
import type { MessageExt } from '../src/message.js'
import { Producer } from '../src/producer.js'
import { PullConsumer } from '../src/pull-consumer.js'
import { ConsumeResult, PushConsumer, type PushConsumerOptions } from '../src/push-consumer.js'
import { startCluster, waitFor, type TestCluster } from './cluster.js'

const FAST = { rebalanceIntervalMs: 300, persistOffsetIntervalMs: 200, lockRenewIntervalMs: 300, suspendMs: 1000, pullDelayOnErrorMs: 100, suspendOrderlyMs: 50, clientIP: '127.0.0.1' }

async function withSetup(fn: (c: TestCluster, p: Producer, consumers: PushConsumer[], make: (o: Partial<PushConsumerOptions>) => PushConsumer) => Promise<void>, broker: BrokerOptions = {}): Promise<void> {
  const c = await startCluster({ brokers: 1, broker })
  const producer = await Producer.start({ namesrv: c.namesrv, group: 'PG', clientIP: '127.0.0.1' })
  const consumers: PushConsumer[] = []
  const make = (o: Partial<PushConsumerOptions>): PushConsumer => {
    const consumer = new PushConsumer({ namesrv: c.namesrv, group: 'CG', consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET', ...FAST, ...o })
    consumers.push(consumer)
    return consumer
  }
  try {
    await fn(c, producer, consumers, make)
  } finally {
    for (const x of consumers) await x.close()
    await producer.close()
    await c.stop()
  }
}

test('clustering: two members share the queues, a third joins and takes some, a leaver gives its back; nothing lost', { timeout: 60_000 }, async () => {
  await withSetup(async (c, producer, _all, make) => {
    await c.createTopic('PT', 6)
    const got = new Map<string, number>()
    const by = new Map<string, Set<number>>()
    const handler = (name: string) => (m: MessageExt) => {
      const b = m.body.toString()
      got.set(b, (got.get(b) ?? 0) + 1)
      by.set(name, (by.get(name) ?? new Set()).add(m.queueId))
    }
    const owned = (x: PushConsumer): number => x.assignedQueues().filter((q) => q.topic === 'PT').length
    const a = make({ instanceName: 'a' }).subscribe('PT', '*', handler('a'))
    const b = make({ instanceName: 'b' }).subscribe('PT', '*', handler('b'))
    await a.start()
    await b.start()
    await waitFor(() => owned(a) === 3 && owned(b) === 3, 10_000, 'two members with 3 queues each')
    for (let i = 0; i < 60; i++) await producer.send({ topic: 'PT', body: `m${i}` })
    await waitFor(() => got.size === 60, 15_000, 'every message')
    const third = make({ instanceName: 'c' }).subscribe('PT', '*', handler('c'))
    await third.start()
    await waitFor(() => [a, b, third].every((x) => owned(x) === 2), 10_000, 'three members with 2 queues each')
    for (let i = 60; i < 120; i++) await producer.send({ topic: 'PT', body: `m${i}` })
    await waitFor(() => got.size === 120, 15_000, 'every message after the join')
    await third.close()
    await waitFor(() => owned(a) === 3 && owned(b) === 3, 10_000, 'the leaver\'s queues taken back')
    for (let i = 120; i < 150; i++) await producer.send({ topic: 'PT', body: `m${i}` })
    await waitFor(() => got.size === 150, 15_000, 'every message after the leave')
    const dups = [...got.values()].filter((n) => n > 1).length
    console.log(`# clustering: 150 messages, ${dups} delivered more than once`)
    assert.ok(by.get('c')?.size, 'the third member consumed')
  })
})

test('broadcasting: every member gets everything; offsets kept in a file survive a restart', { timeout: 60_000 }, async () => {
  await withSetup(async (c, producer, _all, make) => {
    await c.createTopic('BT', 2)
    const dir = path.join(c.dir, 'offsets')
    const seen = [new Set<string>(), new Set<string>()]
    const opts = (i: number): Partial<PushConsumerOptions> => ({ group: 'BG', messageModel: 'BROADCASTING', instanceName: `bc${i}`, offsetStoreDir: dir })
    const one = make(opts(0)).subscribe('BT', 'TagA', (m) => void seen[0]!.add(m.body.toString()))
    const two = make(opts(1)).subscribe('BT', 'TagA || TagB', (m) => void seen[1]!.add(m.body.toString()))
    await one.start()
    await two.start()
    for (let i = 0; i < 20; i++) await producer.send({ topic: 'BT', body: `b${i}`, tags: ['TagA', 'TagB', 'TagC'][i % 3] })
    await waitFor(() => seen[0]!.size === 7 && seen[1]!.size === 14, 15_000, 'both members')
    assert.ok([...seen[0]!].every((b) => Number(b.slice(1)) % 3 === 0))
    await one.close()
    const file = JSON.parse(await readFile(path.join(dir, '127.0.0.1@bc0', 'BG', 'offsets.json'), 'utf8')) as { offsetTable: Record<string, number> }
    assert.equal(Object.values(file.offsetTable).reduce((x, y) => x + y, 0), 20)
    const again = new Set<string>()
    const restarted = make(opts(0)).subscribe('BT', 'TagA', (m) => void again.add(m.body.toString()))
    await restarted.start()
    await producer.send({ topic: 'BT', body: 'new', tags: 'TagA' })
    await waitFor(() => again.has('new'), 10_000, 'the new message')
    assert.deepEqual([...again], ['new'])
  })
})

test('offsets are committed on close: the next member of the group starts after them', { timeout: 60_000 }, async () => {
  await withSetup(async (c, producer, _all, make) => {
    await c.createTopic('OT', 2)
    for (let i = 0; i < 10; i++) await producer.send({ topic: 'OT', body: `o${i}` })
    const first = new Set<string>()
    const a = make({ group: 'OG', persistOffsetIntervalMs: 60_000 }).subscribe('OT', '*', (m) => void first.add(m.body.toString()))
    await a.start()
    await waitFor(() => first.size === 10, 10_000, 'the first ten')
    await a.close()
    for (let i = 10; i < 15; i++) await producer.send({ topic: 'OT', body: `o${i}` })
    const second: string[] = []
    const b = make({ group: 'OG' }).subscribe('OT', '*', (m) => void second.push(m.body.toString()))
    await b.start()
    await waitFor(() => second.length >= 5, 10_000, 'the next five')
    await new Promise((r) => setTimeout(r, 300))
    assert.deepEqual(second.sort(), ['o10', 'o11', 'o12', 'o13', 'o14'])
  })
})

test('a handler that throws or answers RETRY gets the message again through the retry topic', { timeout: 60_000 }, async () => {
  await withSetup(async (c, producer, _all, make) => {
    await c.createTopic('RT', 2)
    const deliveries = new Map<string, MessageExt[]>()
    const consumer = make({ group: 'RG' }).subscribe('RT', '*', (m) => {
      const b = m.body.toString()
      const list = deliveries.get(b) ?? []
      list.push(m)
      deliveries.set(b, list)
      if (list.length === 1) {
        if (b === 'r0') throw new Error('first delivery fails')
        return ConsumeResult.RETRY
      }
      return ConsumeResult.SUCCESS
    })
    await consumer.start()
    const sent = [await producer.send({ topic: 'RT', body: 'r0', tags: 'T', keys: 'key0' }), await producer.send({ topic: 'RT', body: 'r1' })]
    await waitFor(() => [...deliveries.values()].every((l) => l.length >= 2) && deliveries.size === 2, 30_000, 'the redeliveries')
    const again = deliveries.get('r0')![1]!
    assert.equal(again.topic, 'RT', 'shown under its original topic')
    assert.equal(again.body.toString(), 'r0')
    assert.equal(again.tags, 'T')
    assert.deepEqual(again.keys, ['key0'])
    assert.equal(again.reconsumeTimes, 1)
    assert.equal(again.properties.RETRY_TOPIC, 'RT')
    assert.equal(again.properties.ORIGIN_MESSAGE_ID, sent[0]!.msgId)
  })
})

test('orderly: one message at a time per queue, in order, a failure retried in place', { timeout: 60_000 }, async () => {
  await withSetup(async (c, producer, _all, make) => {
    await c.createTopic('ORD', 4)
    const seen = new Map<string, number[]>()
    let running = 0
    let maxRunningPerQueue = 0
    const runningPerQueue = new Map<number, number>()
    let failedOnce = false
    const consumer = make({ group: 'ORDG', orderly: true }).subscribe('ORD', '*', async (m) => {
      const q = m.queueId
      runningPerQueue.set(q, (runningPerQueue.get(q) ?? 0) + 1)
      maxRunningPerQueue = Math.max(maxRunningPerQueue, runningPerQueue.get(q)!)
      running++
      try {
        await new Promise((r) => setTimeout(r, 2))
        const [key, n] = m.body.toString().split(':') as [string, string]
        if (key === 'k1' && n === '3' && !failedOnce) {
          failedOnce = true
          throw new Error('fails once')
        }
        seen.set(key, [...(seen.get(key) ?? []), Number(n)])
      } finally {
        running--
        runningPerQueue.set(q, runningPerQueue.get(q)! - 1)
      }
    })
    await consumer.start()
    for (let i = 0; i < 40; i++) await producer.send({ topic: 'ORD', body: `k${i % 4}:${Math.floor(i / 4)}` }, { shardingKey: `k${i % 4}` })
    await waitFor(() => [...seen.values()].reduce((s, l) => s + l.length, 0) === 40, 20_000, 'every ordered message')
    for (const [key, list] of seen) assert.deepEqual(list, Array.from({ length: 10 }, (_, i) => i), key)
    assert.equal(maxRunningPerQueue, 1)
    assert.ok(failedOnce)
    assert.ok(running === 0)
  })
})

test('flow control: a queue holds at most maxCachedMessagesPerQueue (plus one pull) while the handler is slow', { timeout: 60_000 }, async () => {
  await withSetup(async (c, producer, _all, make) => {
    await c.createTopic('FT', 1)
    await producer.sendBatch(Array.from({ length: 200 }, (_, i) => ({ topic: 'FT', body: `f${i}` })))
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    let done = 0
    const consumer = make({ group: 'FG', maxCachedMessagesPerQueue: 20, pullBatchSize: 8, consumeConcurrency: 4 }).subscribe('FT', '*', async () => {
      await gate
      done++
    })
    await consumer.start()
    let maxHeld = 0
    const sample = (): number => {
      for (const q of consumer.cached()) maxHeld = Math.max(maxHeld, q.messages)
      return maxHeld
    }
    await waitFor(() => sample() >= 20, 10_000, 'the queue to fill up to its bound')
    for (let i = 0; i < 30; i++) {
      sample()
      await new Promise((r) => setTimeout(r, 10))
    }
    assert.ok(maxHeld < 20 + 8, `held ${maxHeld}`)
    release()
    await waitFor(() => done === 200, 20_000, 'every message once released')
  })
})

test('a failed message goes back with CONSUMER_SEND_MSG_BACK naming its CommitLog offset, group and origin', { timeout: 60_000 }, async () => {
  await withSetup(async (c, producer, _all, make) => {
    await c.createTopic('SBT', 1)
    // Stands in for the broker's send-back (built separately): records what the client asks.
    const asked: Array<Record<string, string>> = []
    c.brokers[0]!.server.registerProcessor(RequestCode.CONSUMER_SEND_MSG_BACK, (req) => {
      asked.push({ ...req.extFields })
      return RemotingCommand.createResponse(ResponseCode.SUCCESS)
    })
    const seen: MessageExt[] = []
    const consumer = make({ group: 'SBG', maxReconsumeTimes: 5 }).subscribe('SBT', '*', (m) => {
      seen.push(m)
      throw new Error('always fails')
    })
    await consumer.start()
    const sent = await producer.send({ topic: 'SBT', body: 'back' })
    await waitFor(() => asked.length === 1, 10_000, 'the send-back')
    assert.deepEqual(asked[0], {
      offset: String(seen[0]!.commitLogOffset),
      group: 'SBG',
      delayLevel: '0',
      originMsgId: sent.msgId,
      originTopic: 'SBT',
      unitMode: 'false',
      maxReconsumeTimes: '5',
    })
    // Taken by the broker: the queue's offset moves past it.
    await new Promise((r) => setTimeout(r, 400))
    assert.equal(seen.length, 1)
  })
})

test(
  'a message that keeps failing ends in %DLQ%<group> after maxReconsumeTimes deliveries',
  { timeout: 60_000 },
  async () => {
    await withSetup(async (c, producer, _all, make) => {
      await c.createTopic('DT', 1)
      let deliveries = 0
      const consumer = make({ group: 'DG', maxReconsumeTimes: 2 }).subscribe('DT', '*', () => {
        deliveries++
        throw new Error('always fails')
      })
      await consumer.start()
      await producer.send({ topic: 'DT', body: 'poison' })
      const pull = await PullConsumer.start({ namesrv: c.namesrv, group: 'DLQReader', clientIP: '127.0.0.1' })
      try {
        let found: MessageExt | undefined
        await waitFor(async () => {
          const queues = await pull.queues('%DLQ%DG').catch(() => [])
          for (const q of queues) found ??= (await pull.pull(q, 0, { suspendMs: 0 })).messages[0]
          return found !== undefined
        }, 40_000, 'the message in the DLQ')
        assert.equal(found!.body.toString(), 'poison')
        assert.equal(deliveries, 3)
      } finally {
        await pull.close()
      }
    }, { messageDelayLevel: '1s 1s 1s 1s 1s 1s' }) // retries come back after a second
  },
)

test('orderly: a message that keeps failing is retried in place with reconsumeTimes 0..max, then goes to %DLQ%<group> once and the queue moves on', { timeout: 60_000 }, async () => {
  await withSetup(async (c, producer, _all, make) => {
    await c.createTopic('OD', 1)
    const poison: number[] = []
    const after: string[] = []
    const consumer = make({ group: 'ODG', orderly: true, maxReconsumeTimes: 3 }).subscribe('OD', '*', (m) => {
      if (m.body.toString() !== 'poison') return void after.push(m.body.toString())
      poison.push(m.reconsumeTimes)
      throw new Error('always fails')
    })
    await consumer.start()
    await producer.send({ topic: 'OD', body: 'poison' }, { shardingKey: 'k' })
    await producer.send({ topic: 'OD', body: 'next' }, { shardingKey: 'k' })
    await waitFor(() => after.includes('next'), 20_000, 'the message after the failing one')
    const pull = await PullConsumer.start({ namesrv: c.namesrv, group: 'ODLQReader', clientIP: '127.0.0.1' })
    try {
      const dlq: MessageExt[] = []
      await waitFor(async () => {
        dlq.length = 0
        for (const q of await pull.queues('%DLQ%ODG').catch(() => [])) dlq.push(...(await pull.pull(q, 0, { suspendMs: 0 })).messages)
        return dlq.length > 0
      }, 20_000, 'the message in the DLQ')
      // Whatever came back through a retry topic would show up here within a few delay levels.
      await new Promise((r) => setTimeout(r, 3_000))
      assert.deepEqual(poison, [0, 1, 2, 3], 'max + 1 deliveries, reconsumeTimes counting up')
      assert.deepEqual(dlq.map((m) => m.body.toString()), ['poison'])
      assert.deepEqual(after, ['next'])
    } finally {
      await pull.close()
    }
  }, { messageDelayLevel: '1s 1s 1s 1s 1s 1s 1s 1s 1s 1s' })
})

test("a brand-new group's first send-back creates its retry topic: the member takes its queues then, not at the next periodic rebalance", { timeout: 60_000 }, async () => {
  await withSetup(async (c, producer, _all, make) => {
    await c.createTopic('NewRT', 1)
    const deliveries: number[] = []
    // A periodic rebalance that never comes within the test: only the send-back can bring the retry topic.
    const consumer = make({ group: 'FreshG', rebalanceIntervalMs: 600_000 }).subscribe('NewRT', '*', (m) => {
      deliveries.push(m.reconsumeTimes)
      if (m.reconsumeTimes === 0) throw new Error('fails once')
    })
    await consumer.start()
    assert.equal(consumer.assignedQueues().filter((q) => q.topic === '%RETRY%FreshG').length, 0, 'no retry topic before the first send-back')
    await producer.send({ topic: 'NewRT', body: 'x' })
    await waitFor(() => deliveries.length === 2, 20_000, 'the retry delivered')
    assert.deepEqual(deliveries, [0, 1])
  }, { messageDelayLevel: '1s 1s 1s 1s 1s 1s' })
})

test("a member joining makes the broker notify the others (NOTIFY_CONSUMER_IDS_CHANGED), who rebalance at once", { timeout: 60_000 }, async () => {
  await withSetup(async (c, _producer, _all, make) => {
    await c.createTopic('NT', 4)
    // A rebalance timer that never fires within the test: only the notification can move queues.
    const slow = { rebalanceIntervalMs: 600_000 }
    const owned = (x: PushConsumer): number => x.assignedQueues().filter((q) => q.topic === 'NT').length
    const a = make({ group: 'NG', instanceName: 'na', ...slow }).subscribe('NT', '*', () => {})
    await a.start()
    assert.equal(owned(a), 4)
    const b = make({ group: 'NG', instanceName: 'nb', ...slow }).subscribe('NT', '*', () => {})
    await b.start()
    await waitFor(() => owned(a) === 2 && owned(b) === 2, 10_000, 'the first member giving up half its queues')
    await b.close()
    await waitFor(() => owned(a) === 4, 10_000, 'the queues back after the leave')
  })
})

test('a consumer started before its topic exists gets its messages once the topic appears (heartbeat to the new broker at once)', { timeout: 60_000 }, async () => {
  await withSetup(async (c, producer, _all, make) => {
    const got: string[] = []
    const consumer = make({ group: 'LG' }).subscribe('LateT', '*', (m) => void got.push(m.body.toString()))
    await consumer.start()
    await c.createTopic('LateT', 2)
    await producer.send({ topic: 'LateT', body: 'late' })
    // Well before the 30 s heartbeat: the broker must know the member as soon as its route does.
    await waitFor(() => got.includes('late'), 10_000, 'the message')
  })
})

test('the heartbeat registers the group as RocketMQ clients do: model, start point, subscriptions with tag codes, the retry topic', { timeout: 60_000 }, async () => {
  await withSetup(async (c, _producer, _all, make) => {
    await c.createTopic('HT', 2)
    const consumer = make({ group: 'HG', instanceName: 'hb' }).subscribe('HT', 'TagA || TagB', () => {})
    await consumer.start()
    const g = c.brokers[0]!.clients.consumerGroup('HG')!
    assert.deepEqual(g.clientIds(), ['127.0.0.1@hb'])
    assert.equal(g.messageModel, 'CLUSTERING')
    assert.equal(g.consumeFromWhere, 'CONSUME_FROM_FIRST_OFFSET')
    const sub = g.subscriptions.get('HT')!
    assert.equal(sub.subString, 'TagA || TagB')
    assert.deepEqual(sub.tagsSet, ['TagA', 'TagB'])
    assert.deepEqual(sub.codeSet, [javaStringHashCode('TagA'), javaStringHashCode('TagB')])
    assert.equal(g.subscriptions.get('%RETRY%HG')?.subString, '*')
  })
})

test('orderly: a queue lock not renewed for lockMaxLiveMs is treated as lost (consuming stops) until the broker locks it again', { timeout: 60_000 }, async () => {
  const c = await startCluster({ brokers: 1 })
  // The consumer's connection to the broker, with LOCK_BATCH_MQ failing while `refuse` is set:
  // a broker that stops renewing (its own lock may live on; the client cannot know).
  let refuse = false
  let refused = 0
  const tcp = new TcpRemotingClient({ logger: silentLogger })
  const remoting = new Proxy(tcp, {
    get(target, prop, receiver) {
      if (prop === 'invoke') {
        return (addr: string, req: RemotingCommand, timeoutMs: number) => {
          if (req.code === RequestCode.LOCK_BATCH_MQ && refuse) {
            refused++
            return Promise.resolve(RemotingCommand.createResponse(ResponseCode.SYSTEM_ERROR, 'lock service stopped'))
          }
          return target.invoke(addr, req, timeoutMs)
        }
      }
      const v = Reflect.get(target, prop, receiver) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    },
  })
  assert.throws(() => new PushConsumer({ namesrv: c.namesrv, group: 'LXG', lockRenewIntervalMs: 300, lockMaxLiveMs: 300 }), (e: unknown) => isClientError(e, 'INVALID_OPTION'))
  const producer = await Producer.start({ namesrv: c.namesrv, group: 'PG', clientIP: '127.0.0.1' })
  const got: string[] = []
  const consumer = new PushConsumer({ namesrv: c.namesrv, group: 'LXG', consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET', ...FAST, orderly: true, lockRenewIntervalMs: 100, lockMaxLiveMs: 500, remoting })
  try {
    await c.createTopic('LXT', 1)
    consumer.subscribe('LXT', '*', (m) => void got.push(m.body.toString()))
    await consumer.start()
    await producer.send({ topic: 'LXT', body: 'a' })
    await waitFor(() => got.length === 1, 10_000, 'the first message')
    refuse = true
    // Past the lock's live time since its last renewal, with renewals refused meanwhile.
    await waitFor(() => refused >= 3, 10_000, 'refused renewals')
    await new Promise((r) => setTimeout(r, 700))
    await producer.send({ topic: 'LXT', body: 'b' })
    await producer.send({ topic: 'LXT', body: 'c' })
    // Nothing is consumed without the lock, however long we wait.
    await new Promise((r) => setTimeout(r, 1_000))
    assert.deepEqual(got, ['a'])
    refuse = false
    await waitFor(() => got.length === 3, 10_000, 'the queue consumed again once relocked')
    assert.deepEqual(got, ['a', 'b', 'c'])
  } finally {
    await consumer.close()
    await producer.close()
    await tcp.close()
    await c.stop()
  }
})
