/**
 * PutMessage.propertiesText: properties given already encoded (as a RocketMQ client sends them)
 * are stored as given, read back like the object form's, and checked as strictly.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { SCHEDULE_TOPIC, encodeProperties } from '../src/index.js'
import { isStoreError as isCode, queueUnits, withTempStore } from './helpers.js'

test('encoded properties are stored as given and read back like the object form', { timeout: 30_000 }, async () => {
  await withTempStore({}, async (store) => {
    const props = { TAGS: 'TagA', KEYS: 'k1 k2', UNIQ_KEY: 'AC110001000118B4AAC20000000A', a: 'é ünïcode' }
    const asObject = await store.put({ topic: 't', queueId: 0, body: 'x', properties: props })
    const asText = await store.put({ topic: 't', queueId: 0, body: 'x', propertiesText: encodeProperties(props) })
    const [a, b] = [await store.lookup(asObject.physicalOffset), await store.lookup(asText.physicalOffset)]
    assert.deepEqual(b.properties, a.properties)
    assert.equal(b.tags, 'TagA')
    assert.deepEqual(b.keys, ['k1', 'k2'])
    assert.equal(asText.size, asObject.size)
    // Same tags hash in the ConsumeQueue, and both found by key and by unique key.
    const units = await queueUnits(store, 't', 0)
    assert.equal(units[1]!.split('/')[2], units[2]!.split('/')[2])
    await store.whenDispatched()
    assert.equal((await store.queryByKey('t', 'k2')).length, 2)
    assert.equal((await store.queryByKey('t', 'AC110001000118B4AAC20000000A')).length, 2)
  })
})

test('encoded properties: the last of a repeated name wins, a missing last separator is added, empty is none', { timeout: 30_000 }, async () => {
  await withTempStore({}, async (store) => {
    const r = await store.put({ topic: 't', queueId: 0, body: 'x', propertiesText: 'TAGS\u0001old\u0002a\u0001b\u0002TAGS\u0001new' })
    const m = await store.lookup(r.physicalOffset)
    assert.equal(m.tags, 'new')
    assert.deepEqual(m.properties, { TAGS: 'new', a: 'b' })
    const units = await queueUnits(store, 't', 0)
    await store.put({ topic: 't', queueId: 0, body: 'x', tags: 'new' })
    assert.equal(units[1]!.split('/')[2], (await queueUnits(store, 't', 0))[2]!.split('/')[2])
    const none = await store.putBatch([{ topic: 't', queueId: 1, body: 'y', propertiesText: '' }])
    assert.deepEqual((await store.lookup(none[0]!.physicalOffset)).properties, {})
  })
})

test('encoded properties are refused with typed errors as the object form is, and a refused batch stores nothing', { timeout: 30_000 }, async () => {
  await withTempStore({}, async (store) => {
    const put = (propertiesText: unknown, topic = 't') => store.put({ topic, queueId: 0, body: 'x', propertiesText: propertiesText as string })
    await assert.rejects(put(42), isCode('INVALID_ARGUMENT'))
    await assert.rejects(put(null), isCode('INVALID_ARGUMENT'))
    await assert.rejects(store.put({ topic: 't', queueId: 0, body: 'x', tags: 'T', propertiesText: 'a\u0001b\u0002' }), isCode('INVALID_ARGUMENT'))
    await assert.rejects(store.put({ topic: 't', queueId: 0, body: 'x', properties: {}, propertiesText: 'a\u0001b\u0002' }), isCode('INVALID_ARGUMENT'))
    for (const bad of [
      'novalue\u0002', // no 0x01
      '\u0001v\u0002', // empty name
      'a\u0001\u0002', // empty value
      'a\u0001b\u0001c\u0002', // 0x01 inside the value
      'a\u0001b\u0002\u0002', // an empty entry
      '\u0002',
      'a\u0001\ud800\u0002', // lone surrogate
    ]) {
      await assert.rejects(put(bad), isCode('INVALID_PROPERTY'), JSON.stringify(bad))
    }
    await assert.rejects(put(`big\u0001${'v'.repeat(40_000)}\u0002`), isCode('PROPERTIES_TOO_LONG'))
    await assert.rejects(put('DELAY\u0001soon\u0002', SCHEDULE_TOPIC), isCode('INVALID_PROPERTY'))
    await assert.rejects(store.putBatch([{ topic: 't', queueId: 0, body: 'ok', propertiesText: 'a\u0001b\u0002' }, { topic: 't', queueId: 0, body: 'x', propertiesText: 'a\u0001\u0002' }]), isCode('INVALID_PROPERTY'))
    assert.equal(store.maxOffset('t', 0), 0)
  })
})

/** `text`'s UTF-8 as a view into a larger buffer (as a broker passes a batch request's bytes), garbage around it. */
function bytesOf(text: string): Uint8Array {
  const utf8 = Buffer.from(text, 'utf8')
  const big = Buffer.alloc(utf8.length + 16, 0x01)
  utf8.copy(big, 7)
  return new Uint8Array(big.buffer, big.byteOffset + 7, utf8.length)
}

test('propertiesBytes: stored as the same record as propertiesText, read back, indexed and scheduled alike', { timeout: 30_000 }, async () => {
  await withTempStore({}, async (store) => {
    const cases = [
      encodeProperties({ TAGS: 'TagA', KEYS: 'k1 k2', UNIQ_KEY: 'AC110001000118B4AAC20000000A', a: 'é ünïcode 中文 😀' }),
      'TAGS\u0001old\u0002a\u0001b\u0002TAGS\u0001new\u0002',
      'TAGS\u0001no last separator',
      `TAGS\u0001${'long-tag-'.repeat(10)}\u0002`,
      'TAGS\u0001tägs\u0002',
      'TAGS\u0001😀 中\u0002KEYS\u0001k\u0002',
      '',
    ]
    for (const text of cases) {
      const asText = await store.put({ topic: 't', queueId: 0, body: 'x', bornTimestamp: 1, propertiesText: text })
      const asBytes = await store.put({ topic: 't', queueId: 0, body: 'x', bornTimestamp: 1, propertiesBytes: bytesOf(text) })
      const [a, b] = [await store.lookup(asText.physicalOffset), await store.lookup(asBytes.physicalOffset)]
      assert.deepEqual(b.properties, a.properties, JSON.stringify(text))
      assert.equal(b.tags, a.tags)
      assert.deepEqual(b.keys, a.keys)
      assert.equal(asBytes.size, asText.size)
      const units = await queueUnits(store, 't', 0)
      assert.equal(units.at(-1)!.split('/')[2], units.at(-2)!.split('/')[2], `tags hash of ${JSON.stringify(text)}`)
    }
    await store.whenDispatched()
    assert.equal((await store.queryByKey('t', 'k2')).length, 2)
    assert.equal((await store.queryByKey('t', 'AC110001000118B4AAC20000000A')).length, 2)
    // A scheduled message's delivery time (its ConsumeQueue tags code) comes from DELAY in either form.
    const delay = `DELAY\u00013\u0002${encodeProperties({ REAL_TOPIC: 't', REAL_QID: '0' })}`
    await store.put({ topic: SCHEDULE_TOPIC, queueId: 2, body: 'x', propertiesText: delay })
    await store.put({ topic: SCHEDULE_TOPIC, queueId: 2, body: 'x', propertiesBytes: bytesOf(delay) })
    const scheduled = (await queueUnits(store, SCHEDULE_TOPIC, 2)).slice(1)
    assert.equal(scheduled.length, 2)
    const [t1, t2] = scheduled.map((u) => Number(u.split('/')[2]))
    assert.ok(t1! > 1e12 && t2! >= t1! && t2! - t1! < 5_000, `delivery times ${t1} ${t2}`)
  })
})

test('propertiesBytes are refused with the errors propertiesText gets, and ill-formed UTF-8 is INVALID_PROPERTY', { timeout: 30_000 }, async () => {
  await withTempStore({}, async (store) => {
    const put = (propertiesBytes: unknown) => store.put({ topic: 't', queueId: 0, body: 'x', propertiesBytes: propertiesBytes as Uint8Array })
    await assert.rejects(put('a\u0001b\u0002'), isCode('INVALID_ARGUMENT'))
    await assert.rejects(put([0x61, 1, 0x62, 2]), isCode('INVALID_ARGUMENT'))
    await assert.rejects(store.put({ topic: 't', queueId: 0, body: 'x', propertiesText: 'a\u0001b\u0002', propertiesBytes: bytesOf('a\u0001b\u0002') }), isCode('INVALID_ARGUMENT'))
    await assert.rejects(store.put({ topic: 't', queueId: 0, body: 'x', tags: 'T', propertiesBytes: bytesOf('a\u0001b\u0002') }), isCode('INVALID_ARGUMENT'))
    for (const bad of ['novalue\u0002', '\u0001v\u0002', 'a\u0001\u0002', 'a\u0001b\u0001c\u0002', 'a\u0001b\u0002\u0002', '\u0002', 'a\u0001b\u0002c']) {
      await assert.rejects(put(bytesOf(bad)), isCode('INVALID_PROPERTY'), JSON.stringify(bad))
    }
    // A lone surrogate's UTF-8 form (ED A0 80), a stray continuation byte, a truncated sequence.
    for (const bad of [[0x61, 1, 0xed, 0xa0, 0x80, 2], [0x61, 1, 0x80, 2], [0x61, 1, 0xe4, 0xb8, 2], [0x61, 1, 0xff, 2]]) {
      await assert.rejects(put(Uint8Array.from(bad)), isCode('INVALID_PROPERTY'), JSON.stringify(bad))
    }
    await assert.rejects(put(bytesOf(`big\u0001${'v'.repeat(40_000)}\u0002`)), isCode('PROPERTIES_TOO_LONG'))
    await assert.rejects(store.put({ topic: SCHEDULE_TOPIC, queueId: 0, body: 'x', propertiesBytes: bytesOf('DELAY\u0001soon\u0002') }), isCode('INVALID_PROPERTY'))
    assert.equal(store.maxOffset('t', 0), 0)
  })
})
