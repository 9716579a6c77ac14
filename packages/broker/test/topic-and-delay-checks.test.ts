// What the broker refuses as RocketMQ does: UPDATE_AND_CREATE_TOPIC with a perm that is not one of
// PermName's (0-7) or queue counts out of range, and a send whose DELAY property is not a Java int
// (RocketMQ's Integer.parseInt throws and the send answers SYSTEM_ERROR). A DELAY of 0 or below is
// no delay; one above the highest level is the highest.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RemotingCommand, RequestCode, ResponseCode, encodeBatchBody } from '@mqts/transport'
import { T, createTopic, pull, records, route, sendV2, withCluster } from './helpers.js'

test('UPDATE_AND_CREATE_TOPIC refuses a perm outside 0-7 and queue counts out of range; nothing is created', { timeout: 30_000 }, async () => {
  await withCluster(async (c) => {
    for (const perm of [99, 8, -1, 16]) {
      const r = await createTopic(c, 'BadPerm', 4, 4, perm)
      assert.equal(r.code, ResponseCode.NO_PERMISSION, `perm ${perm}: ${r.remark}`)
      assert.match(r.remark ?? '', new RegExp(`topicPermission value: ${perm} is invalid`))
    }
    for (const [read, write] of [
      [-1, 4],
      [4, -1],
      [1025, 4],
      [4, 1025],
      [0, 0],
    ] as const) {
      const r = await createTopic(c, 'BadQueues', read, write)
      assert.equal(r.code, ResponseCode.SYSTEM_ERROR, `read ${read} write ${write}`)
      assert.match(r.remark ?? '', new RegExp(`readQueueNums ${read} and writeQueueNums ${write}`))
    }
    const all = await c.client.invoke(c.broker.address, RemotingCommand.createRequest(RequestCode.GET_ALL_TOPIC_CONFIG), T)
    const table = JSON.parse(all.body.toString()).topicConfigTable
    assert.equal(table.BadPerm, undefined)
    assert.equal(table.BadQueues, undefined)
    // Every PermName value is taken (7 = read, write and inherit, as TBW102 has).
    for (let perm = 0; perm < 8; perm++) assert.equal((await createTopic(c, `Perm${perm}`, 1, 1, perm)).code, ResponseCode.SUCCESS, `perm ${perm}`)
    await c.broker.registerAll()
    assert.equal((await route(c, 'Perm7'))?.queueDatas[0]?.perm, 7)
  })
})

test('a send whose DELAY is not an integer is refused; 0 or below is delivered at once; above the highest is the highest', { timeout: 30_000 }, async () => {
  await withCluster(
    async (c) => {
      await createTopic(c, 'Delays', 1, 1)
      for (const level of ['abc', '1.5', ' 2', '0x1', '1e1', '99999999999']) {
        const r = await c.client.invoke(c.broker.address, sendV2('Delays', 0, `bad ${level}`, { DELAY: level }), T)
        assert.equal(r.code, ResponseCode.SYSTEM_ERROR, `DELAY ${JSON.stringify(level)}: ${r.remark}`)
        assert.match(r.remark ?? '', /DELAY/)
      }
      // None of those was stored, delayed or not.
      const max = await c.client.invoke(c.broker.address, RemotingCommand.createRequest(RequestCode.GET_MAX_OFFSET, { topic: 'SCHEDULE_TOPIC_XXXX', queueId: '0' }), T)
      assert.equal(max.extFields.offset, '0')
      // RocketMQ's getDelayTimeLevel() > 0 decides: -3 and 0 are stored in the real topic at once, DELAY kept.
      for (const level of ['-3', '0']) {
        const r = await c.client.invoke(c.broker.address, sendV2('Delays', 0, `now ${level}`, { DELAY: level }), T)
        assert.equal(r.code, ResponseCode.SUCCESS, `DELAY ${level}: ${r.remark}`)
      }
      const now = records((await c.client.invoke(c.broker.address, pull('Delays', 0, 0), T)).body)
      assert.deepEqual(
        now.map((m) => [m.body.toString(), m.properties.DELAY]),
        [
          ['now -3', '-3'],
          ['now 0', '0'],
        ],
      )
      // 99 and +2 (Java's parseInt takes a sign) are levels 2: held in SCHEDULE_TOPIC_XXXX queue 1, then delivered.
      for (const level of ['99', '+2']) assert.equal((await c.client.invoke(c.broker.address, sendV2('Delays', 0, `later ${level}`, { DELAY: level }), T)).code, ResponseCode.SUCCESS)
      const held = await c.client.invoke(c.broker.address, RemotingCommand.createRequest(RequestCode.GET_MAX_OFFSET, { topic: 'SCHEDULE_TOPIC_XXXX', queueId: '1' }), T)
      assert.equal(held.extFields.offset, '2')
      const got: string[] = []
      for (let offset = 2; got.length < 2; ) {
        const p = await c.client.invoke(c.broker.address, pull('Delays', 0, offset, { suspend: 5000 }), 10_000)
        assert.equal(p.code, ResponseCode.SUCCESS, 'delivered when due')
        for (const m of records(p.body)) got.push(`${m.body.toString()} ${m.properties.DELAY ?? '-'} ${m.properties.REAL_QID}`)
        offset = Number(p.extFields.nextBeginOffset)
      }
      assert.deepEqual(got.sort(), ['later +2 - 0', 'later 99 - 0'])
    },
    { messageDelayLevel: '1s 1s' },
  )
})

test('QUERY_CONSUMER_OFFSET for a group new to a queue: 0 while the queue starts at 0 and its first message is within accessMessageInMemoryMaxRatio of the CommitLog end, else QUERY_NOT_FOUND (RocketMQ checkInDiskByConsumeOffset)', { timeout: 30_000 }, async () => {
  const query = (queueId: number): RemotingCommand => RemotingCommand.createRequest(RequestCode.QUERY_CONSUMER_OFFSET, { consumerGroup: 'NewGroup', topic: 'Young', queueId: String(queueId) })
  for (const [ratio, expected] of [
    [40, ResponseCode.SUCCESS],
    [0, ResponseCode.QUERY_NOT_FOUND],
  ] as const) {
    await withCluster(
      async (c) => {
        assert.equal((await createTopic(c, 'Young', 2, 2)).code, ResponseCode.SUCCESS)
        assert.equal((await c.client.invoke(c.broker.address, sendV2('Young', 0, 'first'), T)).code, ResponseCode.SUCCESS)
        assert.equal((await c.client.invoke(c.broker.address, sendV2('Young', 0, 'second'), T)).code, ResponseCode.SUCCESS)
        const q = await c.client.invoke(c.broker.address, query(0), T)
        assert.equal(q.code, expected, `ratio ${ratio}: ${q.remark ?? ''}`)
        if (expected === ResponseCode.SUCCESS) assert.equal(q.extFields.offset, '0')
        // An empty queue has no message on disk: 0 either way.
        const empty = await c.client.invoke(c.broker.address, query(1), T)
        assert.equal(empty.code, ResponseCode.SUCCESS)
        assert.equal(empty.extFields.offset, '0')
      },
      { accessMessageInMemoryMaxRatio: ratio },
    )
  }
})

test("sends RocketMQ refuses: to a system topic (NO_PERMISSION), a transactional batch and a batch over maxMessageSize (MESSAGE_ILLEGAL); nothing stored", { timeout: 30_000 }, async () => {
  await withCluster(
    async (c) => {
      await createTopic(c, 'ReadOnly', 1, 1, 4)
      await createTopic(c, 'Batches', 1, 1)
      // A delayed message sent to the schedule topic itself would reach its REAL_TOPIC past its perm.
      const sched = await c.client.invoke(c.broker.address, sendV2('SCHEDULE_TOPIC_XXXX', 0, 'sneaky', { DELAY: '1', REAL_TOPIC: 'ReadOnly', REAL_QID: '0' }), T)
      assert.equal(sched.code, ResponseCode.NO_PERMISSION, sched.remark ?? '')
      assert.match(sched.remark ?? '', /SCHEDULE_TOPIC_XXXX\] is forbidden/)
      for (const topic of ['RMQ_SYS_TRANS_HALF_TOPIC', 'OFFSET_MOVED_EVENT']) assert.equal((await c.client.invoke(c.broker.address, sendV2(topic, 0, 'x'), T)).code, ResponseCode.NO_PERMISSION, topic)
      const batch = (body: Buffer, sysFlag: number): RemotingCommand =>
        RemotingCommand.createRequest(RequestCode.SEND_BATCH_MESSAGE, { a: 'PG', b: 'Batches', c: 'TBW102', d: '4', e: '0', f: String(sysFlag), g: '1', h: '0', m: 'true' }, body)
      const two = encodeBatchBody([{ body: Buffer.from('a'), flag: 0, properties: '' }, { body: Buffer.from('b'), flag: 0, properties: '' }])
      for (const sysFlag of [0x8, 0xc]) {
        const r = await c.client.invoke(c.broker.address, batch(two, sysFlag), T)
        assert.equal(r.code, ResponseCode.MESSAGE_ILLEGAL, `sysFlag ${sysFlag}: ${r.remark}`)
      }
      // Each message within maxMessageSize (4 KiB here), the batch over it.
      const big = encodeBatchBody(Array.from({ length: 3 }, () => ({ body: Buffer.alloc(2_000, 0x61), flag: 0, properties: '' })))
      assert.equal((await c.client.invoke(c.broker.address, batch(big, 0), T)).code, ResponseCode.MESSAGE_ILLEGAL)
      assert.equal((await c.client.invoke(c.broker.address, batch(two, 0), T)).code, ResponseCode.SUCCESS)
      assert.deepEqual(records((await c.client.invoke(c.broker.address, pull('Batches', 0, 0), T)).body).map((m) => m.body.toString()), ['a', 'b'])
      assert.equal((await c.client.invoke(c.broker.address, pull('ReadOnly', 0, 0), T)).code, ResponseCode.PULL_NOT_FOUND)
    },
    { maxMessageSize: 4096 },
  )
})
