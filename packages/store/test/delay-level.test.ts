// Delay levels as RocketMQ 4.x stores them: a message rewritten by toScheduledMessage lands under
// SCHEDULE_TOPIC_XXXX, queue level - 1, with REAL_TOPIC, REAL_QID and DELAY, and its ConsumeQueue
// unit's tags code is store time + the level's delay: for every default level, with custom levels,
// the same after a kill's recovery re-dispatch and after a rebuild from the CommitLog alone, and
// byte for byte as RocketMQ computes it (a unit built here with BigInt from the rule). Levels out
// of range, 0, missing or not a Java int, and normal topics, keep the tags hash.
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { test, type TestContext } from 'node:test'
import {
  DEFAULT_MESSAGE_DELAY_LEVEL,
  MessageStore,
  PROPERTY,
  SCHEDULE_TOPIC,
  StoreError,
  javaStringHashCode,
  parseDelayLevels,
  toScheduledMessage,
  type MessageStoreOptions,
  type PutMessage,
} from '../src/index.js'
import { CQ_UNIT, SimFileIO, readDispatchRequest, dataViewOf, type DispatchRequest } from '../src/internal.js'
import { SIM_INDEX, SMALL_FILE, queueUnits, simDir } from './helpers.js'

/** The default levels as RocketMQ documents them, in ms. */
const DEFAULT_MS = [1, 5, 10, 30].map((s) => s * 1000).concat([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30].map((m) => m * 60_000), [1, 2].map((h) => h * 3_600_000))
const CLOCK = 1_700_000_000_123

function isCode(code: string): (e: unknown) => boolean {
  return (e) => e instanceof StoreError && e.code === code
}

function simOptions(t: TestContext, extra: Partial<MessageStoreOptions> = {}): { options: MessageStoreOptions; io: SimFileIO } {
  const io = new SimFileIO()
  let clock = CLOCK
  return {
    io,
    options: { dir: simDir(t), flush: 'sync', commitLogFileSize: SMALL_FILE, consumeQueueUnitsPerFile: 8, ...SIM_INDEX, now: () => (clock += 7), flushConsumeQueueIntervalMs: 5, ...extra },
  }
}

/** The tags code of the unit of (topic, queueId) at `queueOffset`. */
async function tagsCodeAt(store: MessageStore, topic: string, queueId: number, queueOffset: number): Promise<number> {
  const unit = await store.consumeQueues.find(topic, queueId)!.unitAt(queueOffset)
  assert.ok(unit, `unit ${queueOffset} of ${topic}/${queueId}`)
  return unit.tagsCode
}

test('parseDelayLevels reads RocketMQ\'s default string as its 18 levels', () => {
  assert.deepEqual(parseDelayLevels(DEFAULT_MESSAGE_DELAY_LEVEL), DEFAULT_MS)
  assert.deepEqual(parseDelayLevels('3s 2m 1h 1d'), [3000, 120_000, 3_600_000, 86_400_000])
  for (const bad of ['', '1s  2s', '1x', 's', '1', '-1s', '+1s', ' 1s', '1s ', '1.5s', '99999999999999999d']) assert.equal(typeof parseDelayLevels(bad), 'string', JSON.stringify(bad))
})

test('toScheduledMessage rewrites as RocketMQ 4.x: schedule topic, queue level - 1, REAL_TOPIC, REAL_QID, DELAY; above the last level the last', () => {
  const m: PutMessage = { topic: 'orders', queueId: 3, body: 'x', tags: 'TagA', properties: { a: 'b' } }
  const s = toScheduledMessage(m, 4)
  assert.deepEqual(s, { topic: SCHEDULE_TOPIC, queueId: 3, body: 'x', tags: 'TagA', properties: { a: 'b', REAL_TOPIC: 'orders', REAL_QID: '3', DELAY: '4' } })
  assert.equal(JSON.stringify(m), JSON.stringify({ topic: 'orders', queueId: 3, body: 'x', tags: 'TagA', properties: { a: 'b' } }), 'the given message is unchanged')
  assert.equal(SCHEDULE_TOPIC, 'SCHEDULE_TOPIC_XXXX')
  assert.deepEqual([PROPERTY.DELAY, PROPERTY.REAL_TOPIC, PROPERTY.REAL_QID], ['DELAY', 'REAL_TOPIC', 'REAL_QID'])
  const clamped = toScheduledMessage(m, 99)
  assert.equal(clamped.queueId, 17)
  assert.equal(clamped.properties!.DELAY, '18')
  assert.equal(toScheduledMessage(m, 99, 3).properties!.DELAY, '3')
  // Not delayed: level 0 or below, a transaction's prepared or rollback half.
  assert.equal(toScheduledMessage(m, 0), m)
  assert.equal(toScheduledMessage(m, -2), m)
  assert.equal(toScheduledMessage({ ...m, sysFlag: 0x4 }, 2).topic, 'orders')
  assert.equal(toScheduledMessage({ ...m, sysFlag: 0xc }, 2).topic, 'orders')
  assert.equal(toScheduledMessage({ ...m, sysFlag: 0x8 }, 2).topic, SCHEDULE_TOPIC, 'a commit is delayed')
  assert.throws(() => toScheduledMessage(m, 1.5), isCode('INVALID_ARGUMENT'))
  assert.throws(() => toScheduledMessage(m, 2, 0), isCode('INVALID_ARGUMENT'))
})

test('messageDelayLevel is checked at open', async () => {
  for (const bad of ['', '1s 2x', '1s,2s', 5, ['1s']]) {
    await assert.rejects(MessageStore.open({ dir: '/nonexistent/never-made', messageDelayLevel: bad as string }), isCode('INVALID_ARGUMENT'), JSON.stringify(bad))
  }
  await assert.rejects(MessageStore.open({ dir: '/nonexistent/never-made', messageDelayLevel: '1s 2s 3s', maxQueuesPerTopic: 2 }), isCode('INVALID_ARGUMENT'), 'more levels than queues')
})

for (const flush of ['sync', 'async'] as const) {
  test(`every default level: the unit's tags code is store time + the level's delay, the same after a kill and after a rebuild (${flush})`, { timeout: 30_000 }, async (t) => {
    // No periodic ConsumeQueue flush: after the kill the recovery re-dispatches every record.
    const { options, io } = simOptions(t, { flush, flushConsumeQueueIntervalMs: 1e9 })
    let store = await MessageStore.open({ ...options, fileIO: io })
    const expected: string[][] = []
    try {
      assert.deepEqual(store.delayLevelsMs, DEFAULT_MS)
      for (let level = 1; level <= 18; level++) {
        const r = await store.put(toScheduledMessage({ topic: 'orders', queueId: level % 4, body: `due at level ${level}`, tags: 'TagA', keys: [`k${level}`] }, level))
        assert.equal(r.queueOffset, 0)
        assert.equal(await tagsCodeAt(store, SCHEDULE_TOPIC, level - 1, 0), r.storeTimestamp + DEFAULT_MS[level - 1]!, `level ${level}`)
        const m = await store.lookup(r.physicalOffset)
        assert.equal(m.topic, SCHEDULE_TOPIC)
        assert.equal(m.queueId, level - 1)
        assert.equal(m.tags, 'TagA')
        assert.deepEqual([m.properties.REAL_TOPIC, m.properties.REAL_QID, m.properties.DELAY], ['orders', String(level % 4), String(level)])
        const raw = await store.get({ topic: SCHEDULE_TOPIC, queueId: level - 1, offset: 0, raw: true })
        assert.equal(raw.records[0]!.tagsCode, r.storeTimestamp + DEFAULT_MS[level - 1]!)
      }
      // A batch takes the same path as single puts: several of one level in one queue.
      const rs = await store.putBatch([1, 2, 3].map((i) => toScheduledMessage({ topic: 'orders', queueId: 0, body: `b${i}` }, 3)))
      for (const r of rs) assert.equal(await tagsCodeAt(store, SCHEDULE_TOPIC, 2, r.queueOffset), r.storeTimestamp + 10_000)
      for (let q = 0; q < 18; q++) expected.push(await queueUnits(store, SCHEDULE_TOPIC, q))
      // Killed: the recovery re-dispatches what the checkpoint did not cover.
      const killed = io.processCrash()
      await store.close()
      store = await MessageStore.open({ ...options, fileIO: killed })
      assert.equal(store.recovery.cleanShutdown, false)
      for (let q = 0; q < 18; q++) assert.deepEqual(await queueUnits(store, SCHEDULE_TOPIC, q), expected[q], `queue ${q} after a kill`)
      // Killed again with the ConsumeQueues lost: rebuilt from the CommitLog alone.
      const lost = killed.processCrash()
      await store.close()
      for (const p of [...lost.files.keys()]) if (p.includes(`${path.sep}consumequeue${path.sep}`)) lost.files.delete(p)
      for (const d of [...lost.dirs]) if (d.includes(`${path.sep}consumequeue${path.sep}`)) lost.dirs.delete(d)
      store = await MessageStore.open({ ...options, fileIO: lost })
      for (let q = 0; q < 18; q++) assert.deepEqual(await queueUnits(store, SCHEDULE_TOPIC, q), expected[q], `queue ${q} rebuilt`)
    } finally {
      await store.close()
    }
  })
}

test('custom levels (messageDelayLevel): their delays, levels above the last take the last, the same after a rebuild', { timeout: 30_000 }, async (t) => {
  const { options, io } = simOptions(t, { messageDelayLevel: '2s 1d 3h' })
  let store = await MessageStore.open({ ...options, fileIO: io })
  try {
    assert.deepEqual(store.delayLevelsMs, [2000, 86_400_000, 10_800_000])
    const a = await store.put(toScheduledMessage({ topic: 'orders', queueId: 0, body: 'a' }, 2, store.delayLevelsMs.length))
    // Not through the helper: a level above the last in the record itself is the last.
    const b = await store.put({ topic: SCHEDULE_TOPIC, queueId: 2, body: 'b', properties: { REAL_TOPIC: 'orders', REAL_QID: '0', DELAY: '7' } })
    assert.equal(await tagsCodeAt(store, SCHEDULE_TOPIC, 1, 0), a.storeTimestamp + 86_400_000)
    assert.equal(await tagsCodeAt(store, SCHEDULE_TOPIC, 2, 0), b.storeTimestamp + 10_800_000)
    const before = [await queueUnits(store, SCHEDULE_TOPIC, 1), await queueUnits(store, SCHEDULE_TOPIC, 2)]
    const lost = io.processCrash()
    await store.close()
    for (const p of [...lost.files.keys()]) if (p.includes(`${path.sep}consumequeue${path.sep}`)) lost.files.delete(p)
    store = await MessageStore.open({ ...options, fileIO: lost })
    assert.deepEqual([await queueUnits(store, SCHEDULE_TOPIC, 1), await queueUnits(store, SCHEDULE_TOPIC, 2)], before)
  } finally {
    await store.close()
  }
})

test('the tags hash stays: level 0 or below, no DELAY, DELAY on a normal topic; a scheduled DELAY that is not a Java int is refused', { timeout: 30_000 }, async (t) => {
  const { options, io } = simOptions(t)
  const store = await MessageStore.open({ ...options, fileIO: io })
  try {
    const hash = javaStringHashCode('TagA')
    const cases: [Record<string, string> | undefined, string, number | 'hash'][] = [
      [{ DELAY: '0' }, SCHEDULE_TOPIC, 'hash'],
      [{ DELAY: '-3' }, SCHEDULE_TOPIC, 'hash'],
      [undefined, SCHEDULE_TOPIC, 'hash'],
      [{ REAL_TOPIC: 'orders' }, SCHEDULE_TOPIC, 'hash'],
      [{ DELAY: '+2' }, SCHEDULE_TOPIC, 5000],
      [{ DELAY: '002' }, SCHEDULE_TOPIC, 5000],
      [{ DELAY: '2147483647' }, SCHEDULE_TOPIC, 7_200_000],
      [{ DELAY: '3' }, 'orders', 'hash'],
      [{ DELAY: 'soon' }, 'orders', 'hash'],
    ]
    for (const [properties, topic, want] of cases) {
      const r = await store.put({ topic, queueId: 5, body: 'x', tags: 'TagA', ...(properties ? { properties } : {}) })
      const got = await tagsCodeAt(store, topic, 5, r.queueOffset)
      assert.equal(got, want === 'hash' ? hash : r.storeTimestamp + want, `${topic} ${JSON.stringify(properties)}`)
    }
    for (const delay of ['soon', '1.5', '2147483648', ' 1']) {
      await assert.rejects(store.put({ topic: SCHEDULE_TOPIC, queueId: 0, body: 'x', properties: { DELAY: delay } }), isCode('INVALID_PROPERTY'), delay)
    }
  } finally {
    await store.close()
  }
})

test('golden: the scheduled unit and record bytes are what RocketMQ 4.x computes', { timeout: 30_000 }, async (t) => {
  const { options, io } = simOptions(t, { now: () => CLOCK })
  const store = await MessageStore.open({ ...options, fileIO: io })
  try {
    const r = await store.put(toScheduledMessage({ topic: 'orders', queueId: 1, body: 'golden', tags: 'TagA' }, 3))
    assert.equal(r.storeTimestamp, CLOCK)
    // ConsumeQueue unit: physicalOffset (8) | size (4) | tagsCode (8) = CLOCK + 10 s, big-endian.
    const want = Buffer.alloc(CQ_UNIT.bytes)
    want.writeBigInt64BE(BigInt(r.physicalOffset), 0)
    want.writeInt32BE(r.size, 8)
    want.writeBigInt64BE(BigInt(CLOCK) + 10_000n, 12)
    const file = io.files.get(path.join(options.dir, 'consumequeue', SCHEDULE_TOPIC, '2', '00000000000000000000'))
    assert.ok(file, 'the queue file of level 3 is queue 2')
    assert.equal(Buffer.from(file.volatile.subarray(0, CQ_UNIT.bytes)).toString('hex'), want.toString('hex'))
    assert.equal(want.subarray(12).toString('hex'), '0000018bcfe58f8b', 'CLOCK + 10 s')
    // The record's properties as RocketMQ writes them: name 0x01 value 0x02.
    const bytes = store.readCommitLog(r.physicalOffset, r.size)
    const text = bytes.toString('latin1')
    assert.ok(text.includes(`${SCHEDULE_TOPIC}`), 'topic')
    for (const [k, v] of [['REAL_TOPIC', 'orders'], ['REAL_QID', '1'], ['DELAY', '3'], ['TAGS', 'TagA']]) assert.ok(text.includes(`${k}\u0001${v}\u0002`), `${k}=${v}`)
    // The dispatch view of those bytes, as the log-following pass and a replica read them.
    const req = {} as DispatchRequest
    readDispatchRequest(Buffer.from(bytes), dataViewOf(Buffer.from(bytes)), 0, false, req, store.delayLevelsMs)
    assert.equal(req.tagsCode, CLOCK + 10_000)
    readDispatchRequest(Buffer.from(bytes), dataViewOf(Buffer.from(bytes)), 0, false, req)
    assert.equal(req.tagsCode, javaStringHashCode('TagA'), 'without levels: the tags hash')
  } finally {
    await store.close()
  }
})
