/**
 * MessageStore.putEncodedBatch: a batch as RocketMQ's clients encode it (SEND_BATCH_MESSAGE's
 * body) stored message by message, the same records putBatch stores for the same messages, every
 * malformed body refused before anything is written.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { encodeBatchBody, encodeProperties } from '@mqts/message'
import { SCHEDULE_TOPIC, type PutMessage } from '../src/index.js'
import { SMALL_FILE, isStoreError as isCode, queueUnits, withTempStore } from './helpers.js'

/** Properties past 64 bytes take the range copy's other path. */
const LONG = 'v'.repeat(90)
const ENTRIES = [
  { body: Buffer.from('first'), flag: 3, properties: encodeProperties({ TAGS: 'TagA', KEYS: 'k1 k2', UNIQ_KEY: 'U1' }) },
  { body: Buffer.alloc(0), flag: -2, properties: '' },
  { body: Buffer.from('é ünïcode body'), flag: 0, properties: encodeProperties({ TAGS: 'TagB', long: LONG, name: 'é' }) },
  // Without the last separator: completed, as PutMessage.propertiesBytes is.
  { body: Buffer.from('last'), flag: 1, properties: 'TAGS\u0001TagC' },
]

for (const flush of ['async', 'sync'] as const) {
  test(`an encoded batch stores what putBatch stores for the same messages (${flush} flush)`, { timeout: 30_000 }, async () => {
    await withTempStore({ flush }, async (store) => {
      // A batch in the middle of a larger buffer, as a request's body sits in its frame.
      const frame = Buffer.concat([Buffer.from('header'), encodeBatchBody(ENTRIES), Buffer.from('tail')])
      const body = frame.subarray(6, frame.length - 4)
      const common = { topic: 'T', queueId: 2, sysFlag: 0, bornTimestamp: 1_700_000_000_000, bornHost: '10.1.2.3:4567', reconsumeTimes: 1 }
      const encoded = await store.putEncodedBatch({ ...common, body })
      const asObjects = await store.putBatch(ENTRIES.map((e): PutMessage => ({ ...common, body: e.body, flag: e.flag, propertiesText: e.properties })))
      frame.fill(0) // stored by now: nothing refers to the request's bytes any more
      assert.deepEqual(encoded.map((r) => r.queueOffset), [0, 1, 2, 3])
      assert.deepEqual(asObjects.map((r) => r.queueOffset), [4, 5, 6, 7])
      for (let i = 0; i < ENTRIES.length; i++) {
        const a = await store.lookup(encoded[i]!.physicalOffset)
        const b = await store.lookup(asObjects[i]!.physicalOffset)
        assert.equal(encoded[i]!.size, asObjects[i]!.size)
        assert.equal(a.msgId, encoded[i]!.msgId)
        assert.deepEqual(
          [a.body, a.flag, a.properties, a.tags, a.keys, a.bornTimestamp, a.bornHost, a.reconsumeTimes, a.queueId, a.bodyCrc],
          [b.body, b.flag, b.properties, b.tags, b.keys, b.bornTimestamp, b.bornHost, b.reconsumeTimes, b.queueId, b.bodyCrc],
        )
        assert.deepEqual(a.body, ENTRIES[i]!.body)
      }
      assert.equal((await store.lookup(encoded[2]!.physicalOffset)).properties.long, LONG)
      assert.equal((await store.lookup(encoded[3]!.physicalOffset)).tags, 'TagC')
      // Same tags hashes in the ConsumeQueue, and found by key and by unique key.
      const units = await queueUnits(store, 'T', 2)
      for (let i = 1; i <= ENTRIES.length; i++) assert.equal(units[i]!.split('/')[2], units[i + 4]!.split('/')[2])
      await store.whenDispatched()
      assert.equal((await store.queryByKey('T', 'k2')).length, 2)
      assert.equal((await store.queryByKey('T', 'U1')).length, 2)
    })
  })
}

test('a malformed encoded batch is refused whole, before anything is written', { timeout: 30_000 }, async () => {
  await withTempStore({}, async (store) => {
    const two = encodeBatchBody(ENTRIES.slice(0, 2))
    const firstLength = encodeBatchBody(ENTRIES.slice(0, 1)).length
    const put = (body: Uint8Array): Promise<unknown> => store.putEncodedBatch({ topic: 'T', queueId: 0, body })
    for (let cut = 1; cut < two.length; cut++) {
      if (cut === firstLength) continue
      await assert.rejects(put(two.subarray(0, cut)), (err: unknown) => isCode('INVALID_ARGUMENT')(err) && /malformed: batch entry at byte/.test((err as Error).message), `cut at ${cut}`)
    }
    const lying = Buffer.from(two)
    lying.writeInt32BE(5, 0)
    await assert.rejects(put(lying), isCode('INVALID_ARGUMENT'))
    const negativeBody = Buffer.from(two)
    negativeBody.writeInt32BE(-1, 16)
    await assert.rejects(put(negativeBody), /body length -1 past the end/)
    await assert.rejects(put(Buffer.alloc(0)), (err: unknown) => isCode('INVALID_ARGUMENT')(err) && /holds no message/.test((err as Error).message))
    // One bad message's properties refuse the whole batch (the first message is fine).
    for (const bad of ['noSeparator\u0002', '\u0001v\u0002', 'n\u0001\u0002', 'a\u0001b\u0001c\u0002']) {
      const body = encodeBatchBody([ENTRIES[0]!, { body: Buffer.from('x'), flag: 0, properties: bad }])
      await assert.rejects(put(body), isCode('INVALID_PROPERTY'), JSON.stringify(bad))
    }
    const illFormed = encodeBatchBody([{ body: Buffer.from('x'), flag: 0, properties: 'a\u0001b\u0002' }])
    illFormed[illFormed.length - 2] = 0xff
    await assert.rejects(put(illFormed), isCode('INVALID_PROPERTY'))
    await assert.rejects(store.putEncodedBatch({ topic: 'T', queueId: 0, body: 'text' as never }), isCode('INVALID_ARGUMENT'))
    await assert.rejects(store.putEncodedBatch(null as never), isCode('INVALID_ARGUMENT'))
    await assert.rejects(store.putEncodedBatch({ topic: 'bad topic', queueId: 0, body: two }), isCode('TOPIC_INVALID'))
    await assert.rejects(store.putEncodedBatch({ topic: 'T', queueId: -1, body: two }), isCode('INVALID_ARGUMENT'))
    await assert.rejects(store.putEncodedBatch({ topic: 'T', queueId: 0, body: two, bornHost: 'nowhere' }), isCode('INVALID_ARGUMENT'))
    await assert.rejects(store.putEncodedBatch({ topic: 'T', queueId: 0, body: two, sysFlag: 0x40 }), isCode('INVALID_ARGUMENT'))
    const big = encodeBatchBody([{ body: Buffer.alloc(SMALL_FILE), flag: 0, properties: '' }])
    await assert.rejects(put(big), isCode('MESSAGE_TOO_LARGE'))
    assert.equal(store.maxOffset('T', 0), 0, 'nothing was stored')
    assert.equal(store.commitLogMaxOffset, 0)
    // And the store takes the next batch as usual.
    assert.equal((await store.putEncodedBatch({ topic: 'T', queueId: 0, body: two })).length, 2)
  })
})

test('an encoded batch for the schedule topic gets its delivery time from its properties range', { timeout: 30_000 }, async () => {
  await withTempStore({}, async (store) => {
    const props = encodeProperties({ DELAY: '2', REAL_TOPIC: 'T', REAL_QID: '0' })
    const body = Buffer.concat([Buffer.from('pad'), encodeBatchBody([{ body: Buffer.from('later'), flag: 0, properties: props }])]).subarray(3)
    const [r] = await store.putEncodedBatch({ topic: SCHEDULE_TOPIC, queueId: 1, body })
    const units = await queueUnits(store, SCHEDULE_TOPIC, 1)
    // RocketMQ's ScheduleMessageService reads the delivery time from the tags code: store time + 5 s (level 2).
    assert.equal(Number(units[1]!.split('/')[2]), r!.storeTimestamp + 5_000)
  })
})

for (const flush of ['async', 'sync'] as const) {
  test(`an encoded batch whose append waits (a roll) is stored from a copy: the caller's bytes are free once it returns (${flush} flush)`, { timeout: 30_000 }, async () => {
    await withTempStore({ flush }, async (store) => {
      // Nearly a whole file, so the batch waits for the next one.
      await store.put({ topic: 'T', queueId: 0, body: Buffer.alloc(SMALL_FILE - 2_000, 0x61) })
      const entries = [{ body: Buffer.alloc(900, 0x41), flag: 0, properties: encodeProperties({ TAGS: 'tagA' }) }, { body: Buffer.alloc(900, 0x42), flag: 0, properties: encodeProperties({ TAGS: 'tagB' }) }]
      const body = encodeBatchBody(entries)
      const pending = store.putEncodedBatch({ topic: 'T', queueId: 0, body })
      body.fill(0x5a) // reused by the caller at once
      const rs = await pending
      for (let i = 0; i < entries.length; i++) {
        const m = await store.lookup(rs[i]!.physicalOffset)
        assert.deepEqual(Buffer.from(m.body), entries[i]!.body)
        assert.equal(m.tags, i === 0 ? 'tagA' : 'tagB')
      }
      assert.ok(rs[0]!.physicalOffset >= SMALL_FILE, 'the batch went to the next file')
    })
  })
}

test("an encoded batch put while its topic is being deleted is stored from a copy of the caller's bytes", { timeout: 30_000 }, async () => {
  await withTempStore({}, async (store) => {
    await store.put({ topic: 'T', queueId: 0, body: 'old' })
    const deleting = store.deleteTopic('T')
    const body = encodeBatchBody(ENTRIES.slice(0, 2))
    const pending = store.putEncodedBatch({ topic: 'T', queueId: 0, body })
    body.fill(0x5a)
    await deleting
    const rs = await pending
    assert.deepEqual(Buffer.from((await store.lookup(rs[0]!.physicalOffset)).body), ENTRIES[0]!.body)
    assert.equal(rs[0]!.queueOffset, 0, 'the topic starts over')
  })
})

test("an encoded batch follows RocketMQ's putMessages: no transaction type, the whole body within maxMessageSize", { timeout: 30_000 }, async () => {
  await withTempStore({ maxMessageSize: 4096 }, async (store) => {
    const body = encodeBatchBody(ENTRIES.slice(0, 2))
    for (const sysFlag of [0x4, 0x8, 0xc]) {
      await assert.rejects(store.putEncodedBatch({ topic: 'T', queueId: 0, body, sysFlag }), (err: unknown) => isCode('INVALID_ARGUMENT')(err) && /transactional/.test((err as Error).message))
    }
    // Every message within the limit, the batch over it.
    const big = encodeBatchBody(Array.from({ length: 3 }, () => ({ body: Buffer.alloc(2_000), flag: 0, properties: '' })))
    await assert.rejects(store.putEncodedBatch({ topic: 'T', queueId: 0, body: big }), isCode('MESSAGE_TOO_LARGE'))
    assert.equal(store.commitLogMaxOffset, 0, 'nothing was stored')
    assert.equal((await store.putEncodedBatch({ topic: 'T', queueId: 0, body, sysFlag: 0 })).length, 2)
  })
})
