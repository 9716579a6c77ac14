// The broker's parts alone: broker.conf parsing and config checks, queue locks with a clock, tag
// expressions, RocketMQ's pull answers, the batch body decoder.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { StoreError } from '@mqts/store'
import { createMessageId, parseHost } from '@mqts/message'
import { ResponseCode, encodeBatchBody, type Channel } from '@mqts/transport'
import { BrokerError, ClientManager, decodeBatchBody, parseBrokerConf, parseTagExpression, pullAnswer, resolveBrokerConfig } from '../src/index.js'
import { RebalanceLockManager } from '../src/rebalance-lock.js'
import { recordParts } from '../src/processors/pull.js'
import { storeErrorResponse } from '../src/processors/send.js'
import { batchMsgIds } from '../src/processors/batch.js'
import { suggestBroker } from '../src/processors/pull-suggest.js'

test('broker.conf: key=value lines, comments, RocketMQ names, typed errors for bad values', () => {
  const conf = parseBrokerConf('# comment\nbrokerClusterName = C1\nbrokerName=b1\nbrokerId=0\nnamesrvAddr=127.0.0.1:9876;127.0.0.1:9877\nflushDiskType=SYNC_FLUSH\ndeleteWhen=04\n\nautoCreateTopicEnable=false\n')
  const ignored: string[] = []
  const c = resolveBrokerConfig(conf, ignored)
  assert.equal(c.brokerClusterName, 'C1')
  assert.deepEqual(c.namesrvAddr, ['127.0.0.1:9876', '127.0.0.1:9877'])
  assert.equal(c.flushDiskType, 'SYNC_FLUSH')
  assert.equal(c.autoCreateTopicEnable, false)
  assert.deepEqual(ignored, ['deleteWhen'])
  const bad = (s: Record<string, unknown>, re: RegExp): void => {
    assert.throws(() => resolveBrokerConfig(s), (e: unknown) => e instanceof BrokerError && e.code === 'INVALID_CONFIG' && re.test(e.message))
  }
  bad({ brokerId: '-1' }, /brokerId/)
  bad({ listenPort: 70000 }, /listenPort/)
  bad({ brokerRole: 'LEADER' }, /brokerRole/)
  bad({ brokerId: 1 }, /SLAVE for brokerId > 0/)
  bad({ autoCreateTopicEnable: 'yes' }, /true or false/)
  assert.equal(c.haMaxTimeSlaveNotCatchup, 15_000)
  assert.equal(resolveBrokerConfig(parseBrokerConf('haMaxTimeSlaveNotCatchup=3000\n')).haMaxTimeSlaveNotCatchup, 3000)
  bad({ haMaxTimeSlaveNotCatchup: '0' }, /haMaxTimeSlaveNotCatchup/)
  assert.throws(() => parseBrokerConf('novalue'), (e: unknown) => e instanceof BrokerError && /line 1/.test(e.message))
})

test('queue locks: held, renewed, released, taken over after expiry', () => {
  let now = 0
  const locks = new RebalanceLockManager(() => now, 1000)
  const q = (queueId: number) => ({ topic: 'T', brokerName: 'b', queueId })
  assert.deepEqual(locks.tryLock('g', 'c1', [q(0), q(1)]), [q(0), q(1)])
  assert.deepEqual(locks.tryLock('g', 'c2', [q(1), q(2)]), [q(2)])
  assert.deepEqual(locks.tryLock('other', 'c2', [q(1)]), [q(1)], 'groups are separate')
  now = 900
  locks.tryLock('g', 'c1', [q(0)])
  now = 1500
  assert.deepEqual(locks.tryLock('g', 'c2', [q(0), q(1)]), [q(1)], 'q1 expired, q0 was renewed at 900')
  locks.unlock('g', 'c1', [q(0)])
  assert.equal(locks.holder('g', q(0)), undefined)
  assert.equal(locks.holder('g', q(1)), 'c2')
})

test('tag expressions and pull answers as RocketMQ', () => {
  assert.equal(parseTagExpression('*'), undefined)
  assert.equal(parseTagExpression(''), undefined)
  assert.deepEqual(parseTagExpression(' TagA || TagB||TagC '), ['TagA', 'TagB', 'TagC'])
  assert.deepEqual(parseTagExpression('TagA || *'), ['TagA', '*'])
  assert.deepEqual(parseTagExpression(' || '), [])
  assert.deepEqual(pullAnswer('FOUND', 3, 7), { code: ResponseCode.SUCCESS, nextBeginOffset: 7 })
  assert.deepEqual(pullAnswer('NO_MESSAGE_IN_QUEUE', 0, 0), { code: ResponseCode.PULL_NOT_FOUND, nextBeginOffset: 0 })
  assert.deepEqual(pullAnswer('NO_MESSAGE_IN_QUEUE', 5, 0), { code: ResponseCode.PULL_OFFSET_MOVED, nextBeginOffset: 0 })
  assert.deepEqual(pullAnswer('OFFSET_OVERFLOW_ONE', 5, 5), { code: ResponseCode.PULL_NOT_FOUND, nextBeginOffset: 5 })
  assert.deepEqual(pullAnswer('OFFSET_TOO_SMALL', 1, 10), { code: ResponseCode.PULL_OFFSET_MOVED, nextBeginOffset: 10 })
  assert.deepEqual(pullAnswer('NO_MATCHED_MESSAGE', 1, 9), { code: ResponseCode.PULL_RETRY_IMMEDIATELY, nextBeginOffset: 9 })
})

test('batch bodies: entries decoded, every malformed length refused', () => {
  const entry = (body: string, properties: string, flag = 0): Buffer => encodeBatchBody([{ body: Buffer.from(body), flag, properties }])
  const two = Buffer.concat([entry('a', 'K\u0001V\u0002', 3), entry('bcd', '')])
  assert.deepEqual(decodeBatchBody(two).map((e) => [e.body.toString(), e.properties, e.flag]), [
    ['a', 'K\u0001V\u0002', 3],
    ['bcd', '', 0],
  ])
  for (let cut = 1; cut < two.length; cut++) {
    if (cut === entry('a', 'K\u0001V\u0002').length) continue
    assert.throws(() => decodeBatchBody(two.subarray(0, cut)), `a body cut at ${cut} is refused`)
  }
  const lying = Buffer.from(two)
  lying.writeInt32BE(5, 0)
  assert.throws(() => decodeBatchBody(lying))
  // Fields are signed big-endian, as Java reads them: a negative flag is kept, a negative body or
  // properties length (top bit set) is refused.
  const signed = entry('x', 'K\u0001V\u0002', -2)
  assert.equal(decodeBatchBody(signed)[0]!.flag, -2)
  const negativeBody = Buffer.from(signed)
  negativeBody.writeInt32BE(-1, 16)
  assert.throws(() => decodeBatchBody(negativeBody), /body length -1 past the end/)
  const negativeProps = Buffer.from(signed)
  negativeProps.writeUInt16BE(0x8000, 21)
  assert.throws(() => decodeBatchBody(negativeProps), /properties length -32768 past the end/)

  const host = parseHost('10.0.0.1:10911')!
  const result = (physicalOffset: number) => ({ status: 'PUT_OK' as const, msgId: createMessageId(host, physicalOffset), physicalOffset, queueOffset: 0, storeTimestamp: 0, size: 0 })
  const rs = [result(0), result(1100), result(2 ** 33 + 7)]
  assert.equal(batchMsgIds(rs), rs.map((r) => r.msgId).join(','))
  assert.equal(batchMsgIds([result(5)]), result(5).msgId)
})

test("store errors answer as RocketMQ's send does", () => {
  const code = (c: string): number => storeErrorResponse(new StoreError(c as never, 'x')).code
  assert.equal(code('BUSY'), ResponseCode.SYSTEM_BUSY)
  assert.match(storeErrorResponse(new StoreError('BUSY', 'x')).remark ?? '', /^\[PC_SYNCHRONIZED\]broker busy/)
  for (const c of ['MESSAGE_TOO_LARGE', 'PROPERTIES_TOO_LONG', 'INVALID_PROPERTY', 'TOPIC_INVALID', 'INVALID_ARGUMENT']) assert.equal(code(c), ResponseCode.MESSAGE_ILLEGAL, c)
  for (const c of ['DISK_FULL', 'IO_ERROR', 'FLUSH_FAILED', 'NOT_OPEN']) assert.equal(code(c), ResponseCode.SERVICE_NOT_AVAILABLE, c)
  assert.equal(code('WRONG_ROLE'), ResponseCode.SYSTEM_ERROR)
  assert.equal(storeErrorResponse(new Error('boom')).code, ResponseCode.SYSTEM_ERROR)
})

test('a heartbeat processed after its connection closed does not bring the client back', () => {
  const notified: string[] = []
  const clients = new ClientManager(Date.now, (g) => notified.push(g.groupName))
  const channel = { id: 'ch1', closed: false } as unknown as Channel
  const hb = { clientID: '127.0.0.1@1', producerDataSet: [], consumerDataSet: [{ groupName: 'G', consumeType: 'CONSUME_PASSIVELY', messageModel: 'CLUSTERING', consumeFromWhere: 'CONSUME_FROM_LAST_OFFSET', subscriptionDataSet: [] }] }
  clients.heartbeat(hb, channel)
  assert.deepEqual(clients.consumerGroup('G')?.clientIds(), ['127.0.0.1@1'])
  ;(channel as { closed: boolean }).closed = true
  clients.channelClosed(channel)
  assert.equal(clients.consumerGroup('G'), undefined)
  clients.heartbeat(hb, channel) // late: its processor was still waiting when the close came
  assert.equal(clients.consumerGroup('G'), undefined)
})

test('suggestWhichBrokerId and replica reads as RocketMQ: the backlog against a share of memory, slaveReadEnable', () => {
  const base = { role: 'ASYNC_MASTER' as const, slaveReadEnable: true, accessMessageInMemoryMaxRatio: 40, commitLogMaxOffset: 1000, brokerId: 0, whichBrokerWhenConsumeSlowly: 1, memoryBytes: 1000 }
  // 40 % of 1000 bytes: a backlog of 400 is not slow, 401 is.
  assert.deepEqual(suggestBroker({ ...base, lastPhysicalOffset: 600 }), { suggestWhichBrokerId: 0, refuse: false })
  assert.deepEqual(suggestBroker({ ...base, lastPhysicalOffset: 599 }), { suggestWhichBrokerId: 1, refuse: false })
  assert.deepEqual(suggestBroker({ ...base, lastPhysicalOffset: undefined }), { suggestWhichBrokerId: 0, refuse: false }, 'nothing read: the group\'s broker')
  assert.deepEqual(suggestBroker({ ...base, lastPhysicalOffset: 599, slaveReadEnable: false }), { suggestWhichBrokerId: 0, refuse: false })
  assert.deepEqual(suggestBroker({ ...base, lastPhysicalOffset: 599, role: 'SLAVE', slaveReadEnable: false }), { suggestWhichBrokerId: 0, refuse: true })
  assert.deepEqual(suggestBroker({ ...base, lastPhysicalOffset: 599, role: 'SLAVE' }), { suggestWhichBrokerId: 1, refuse: false })
  assert.equal(resolveBrokerConfig({}).slaveReadEnable, false)
  assert.equal(resolveBrokerConfig({ slaveReadEnable: 'true', accessMessageInMemoryMaxRatio: '30' }).accessMessageInMemoryMaxRatio, 30)
  assert.throws(() => resolveBrokerConfig({ accessMessageInMemoryMaxRatio: '101' }), (e: unknown) => e instanceof BrokerError && e.code === 'INVALID_CONFIG')
})

test('a pull answer body: records next to each other in the CommitLog go out as one part, others as their own', () => {
  const log = Buffer.alloc(100, 7)
  const other = Buffer.alloc(10, 8)
  const at = (buf: Buffer, from: number, to: number): { data: Buffer } => ({ data: buf.subarray(from, to) })
  const parts = recordParts([at(log, 0, 10), at(log, 10, 30), at(log, 30, 31), at(log, 40, 50), at(other, 0, 10), at(log, 50, 60)])
  assert.deepEqual(parts.map((p) => [p.buffer === log.buffer, p.byteOffset - log.byteOffset * Number(p.buffer === log.buffer), p.length]), [
    [true, 0, 31],
    [true, 40, 10],
    [false, other.byteOffset, 10],
    [true, 50, 10],
  ])
  assert.deepEqual(recordParts([]), [])
})
