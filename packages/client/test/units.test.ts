// Unit tests of the client's parts: average allocation, the hash selector, tag expressions,
// unique ids, properties and the batch body.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodeBatchBody } from '@mqts/broker'
import { javaStringHashCode } from '@mqts/common'
import { decodeProperties } from '@mqts/message'
import { allocateAveragely } from '../src/allocate.js'
import { ClientError } from '../src/errors.js'
import { matchesTag, parseSubscription } from '../src/expression.js'
import { UniqueIdGenerator } from '@mqts/common'
import { messageProperties } from '../src/message.js'
import { encodeBatchBody } from '../src/index.js'
import type { MessageQueue } from '../src/route.js'
import { selectByHash } from '../src/selector.js'

test('average allocation: contiguous runs over sorted queues and sorted ids, the first ones one longer', () => {
  const queues: MessageQueue[] = []
  for (const b of ['b', 'a']) for (let i = 3; i >= 0; i--) queues.push({ topic: 'T', brokerName: b, queueId: i })
  const ids = ['c3', 'c1', 'c2']
  const names = (id: string): string[] => allocateAveragely(queues, ids, id).map((q) => `${q.brokerName}${q.queueId}`)
  assert.deepEqual(names('c1'), ['a0', 'a1', 'a2'])
  assert.deepEqual(names('c2'), ['a3', 'b0', 'b1'])
  assert.deepEqual(names('c3'), ['b2', 'b3'])
  assert.deepEqual(names('other'), [])
  // More consumers than queues: the last ones get nothing.
  const few = queues.slice(0, 2)
  const five = ['1', '2', '3', '4', '5']
  assert.deepEqual(five.map((id) => allocateAveragely(few, five, id).length), [1, 1, 0, 0, 0])
  // Every queue exactly once, whatever the counts.
  for (let n = 1; n <= 9; n++) {
    const cids = Array.from({ length: n }, (_, i) => `id${i}`)
    const all = cids.flatMap((id) => allocateAveragely(queues, cids, id).map((q) => `${q.brokerName}${q.queueId}`))
    assert.equal(new Set(all).size, queues.length, `n=${n}`)
    assert.equal(all.length, queues.length, `n=${n}`)
  }
})

test('the hash selector sends one key to one queue (Java String.hashCode modulo the count)', () => {
  const queues: MessageQueue[] = Array.from({ length: 8 }, (_, i) => ({ topic: 'T', brokerName: 'a', queueId: i }))
  const m = { topic: 'T', body: '' }
  for (const key of ['order-1', 'order-2', 'zzzzzzzzzzzzzzzzzz', '']) {
    const q = selectByHash(queues, m, key)
    assert.equal(q.queueId, Math.abs(javaStringHashCode(key)) % 8)
    assert.equal(selectByHash(queues, m, key), q)
  }
})

test('tag expressions: "*" and empty take everything, "A || B" takes those tags', () => {
  for (const e of [undefined, '', '*', '  *  ']) assert.equal(parseSubscription('T', e).subString, '*')
  // As RocketMQ's FilterAPI: a '*' beside other tags is one more tag, not "everything".
  const star = parseSubscription('T', 'A || *')
  assert.deepEqual(star.tags, ['A', '*'])
  assert.ok(matchesTag(star, 'A'))
  assert.ok(!matchesTag(star, 'B'))
  const s = parseSubscription('T', ' TagA ||TagB|| ')
  assert.deepEqual(s.tags, ['TagA', 'TagB'])
  assert.deepEqual(s.codes, [javaStringHashCode('TagA'), javaStringHashCode('TagB')])
  assert.ok(matchesTag(s, 'TagA'))
  assert.ok(!matchesTag(s, 'TagC'))
  assert.ok(!matchesTag(s, undefined))
  assert.ok(matchesTag(parseSubscription('T', '*'), undefined))
})

test('unique ids: 32 uppercase hex digits, ip and pid first, the counter last, unique', () => {
  const g = new UniqueIdGenerator('10.1.2.3', () => 0.5)
  const now = new Date(2026, 4, 3, 12).getTime()
  const a = g.next(now)
  const b = g.next(now)
  assert.match(a, /^[0-9A-F]{32}$/)
  assert.equal(a.slice(0, 8), '0A010203')
  assert.equal(parseInt(a.slice(8, 12), 16), process.pid & 0xffff)
  assert.equal(parseInt(a.slice(20, 28), 16), now - new Date(2026, 4, 1).getTime())
  assert.equal((parseInt(a.slice(28), 16) + 1) & 0xffff, parseInt(b.slice(28), 16))
  const many = new Set(Array.from({ length: 5000 }, () => g.next()))
  assert.equal(many.size, 5000)
})

test('message properties as RocketMQ clients write them; a batch body the broker decodes', () => {
  const p = messageProperties({ topic: 'T', body: 'x', tags: 'TagA', keys: ['k1', 'k2'], delayLevel: 3, properties: { custom: 'v' } }, 'UNIQ')
  assert.deepEqual(p, { TAGS: 'TagA', KEYS: 'k1 k2', WAIT: 'true', DELAY: '3', custom: 'v', UNIQ_KEY: 'UNIQ' })
  assert.throws(() => messageProperties({ topic: 'T', body: '', delayLevel: -1 }, 'U'), /delayLevel/)
  const body = encodeBatchBody([
    { body: Buffer.from('one'), flag: 1, properties: 'TAGS\u0001A\u0002' },
    { body: Buffer.from('second'), flag: 0, properties: '' },
  ])
  const entries = decodeBatchBody(body)
  assert.deepEqual(entries.map((e) => [e.body.toString(), e.flag, decodeProperties(e.properties)]), [
    ['one', 1, { TAGS: 'A' }],
    ['second', 0, {}],
  ])
})

test('a broadcasting consumer keeps its offsets under <ip>@DEFAULT unless given an instance name (a restart finds them)', async () => {
  const { broadcastingStoreId } = await import('../src/push-consumer.js')
  assert.equal(broadcastingStoreId('10.0.0.1@4242', undefined), '10.0.0.1@DEFAULT')
  assert.equal(broadcastingStoreId('10.0.0.1@4242#3', undefined), '10.0.0.1@DEFAULT')
  assert.equal(broadcastingStoreId('10.0.0.1@mine', 'mine'), '10.0.0.1@mine')
})

test('message properties are checked: array keys without spaces, string property values', () => {
  const bad = (m: Parameters<typeof messageProperties>[0]): void => {
    assert.throws(() => messageProperties(m, 'U'), (e: unknown) => (e as { code?: string }).code === 'INVALID_OPTION')
  }
  bad({ topic: 'T', body: 'x', keys: ['a b', 'c'] })
  bad({ topic: 'T', body: 'x', properties: { n: 1 as unknown as string } })
  bad({ topic: 'T', body: 'x', properties: { z: '' } })
  assert.equal(messageProperties({ topic: 'T', body: 'x', keys: 'a b' }, 'U').KEYS, 'a b', "a string is RocketMQ's own space-separated form")
  assert.equal(messageProperties({ topic: 'T', body: 'x', keys: ['a', 'b'] }, 'U').KEYS, 'a b')
})

test("tag expressions as RocketMQ's FilterAPI reads them: empty parts between '||' are skipped, an expression naming no tag is refused", () => {
  // Java's split drops the empty parts, FilterAPI skips the blank ones: 'A ||' is A, '|| B' is B.
  assert.deepEqual(parseSubscription('T', 'A ||').tags, ['A'])
  assert.deepEqual(parseSubscription('T', '|| B').tags, ['B'])
  assert.deepEqual(parseSubscription('T', 'A || || B').tags, ['A', 'B'])
  assert.equal(parseSubscription('T', '').subString, '*')
  // Nothing but separators: RocketMQ refuses '||' (subString split error); the others name no tag.
  for (const e of ['||', '|| ||', '||||', ' || ']) {
    assert.throws(() => parseSubscription('T', e), (err: unknown) => err instanceof ClientError && err.code === 'INVALID_OPTION' && err.message.includes(JSON.stringify(e)), e)
  }
})

test("tags, keys and properties holding the properties' separators (0x01, 0x02) are refused: they would add properties", () => {
  const bad = (m: Parameters<typeof messageProperties>[0], what: string): void => {
    assert.throws(() => messageProperties(m, 'U'), (e: unknown) => e instanceof ClientError && e.code === 'INVALID_OPTION', what)
  }
  bad({ topic: 'T', body: 'x', tags: 'TagA\u0002INJECTED\u0001yes' }, 'tag')
  bad({ topic: 'T', body: 'x', tags: 'a\u0001b' }, 'tag with 0x01')
  bad({ topic: 'T', body: 'x', keys: ['k1\u0002INJECTED\u0001yes'] }, 'array key')
  bad({ topic: 'T', body: 'x', keys: 'k1\u0002INJECTED\u0001yes' }, 'string keys')
  bad({ topic: 'T', body: 'x', properties: { user: 'v\u0002DELAY\u00012' } }, 'value')
  bad({ topic: 'T', body: 'x', properties: { 'a\u0001b': 'v' } }, 'name')
  bad({ topic: 'T', body: 'x', properties: { '': 'v' } }, 'empty name')
  bad({ topic: 'T', body: 'x', properties: { ' ': 'v' } }, 'blank name')
})

test("user properties named as RocketMQ's own (MessageConst's reserved names) are refused, not merged over the message's fields", () => {
  for (const name of ['UNIQ_KEY', 'TAGS', 'KEYS', 'DELAY', 'WAIT', 'RETRY_TOPIC', 'REAL_TOPIC', 'REAL_QID', 'RECONSUME_TIME', 'MAX_RECONSUME_TIMES', 'PGROUP', 'TRAN_MSG', 'MIN_OFFSET', 'CLUSTER']) {
    assert.throws(() => messageProperties({ topic: 'T', body: 'x', tags: 'real', properties: { [name]: 'fake' } }, 'U'),
      (e: unknown) => e instanceof ClientError && e.code === 'INVALID_OPTION' && e.message.includes(name), name)
  }
  // Names of one's own, even near the reserved ones, are kept.
  assert.equal(messageProperties({ topic: 'T', body: 'x', properties: { tags: 'mine', 'k:v': 'a=b' } }, 'U').tags, 'mine')
})
