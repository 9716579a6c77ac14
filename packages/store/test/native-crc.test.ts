// The native CRC-32 (native/crc32.c): it agrees with @node-rs/crc32 and the pure-JS crc-32 on
// every length and alignment around its fold boundaries, writes the masked body CRCs of a batch
// where asked and refuses ranges outside the target before writing anything; records whose CRC
// the append computes are valid, in both flush modes.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { crc32 as nodeRsCrc32 } from '@node-rs/crc32'
import { MessageStore } from '../src/index.js'
import { BODY_CRC_PENDING, RECORD, checkRecord, encodeRecord, prepareRecord } from '../src/codec/index.js'
import { MessageError } from '@mqts/message'
import { BodyCrcBatch, bodyCrc, bodyCrcBatch, crc32Implementation } from '../src/crc.js'
import { native } from '../src/native.js'

const require = createRequire(import.meta.url)
const pureJs = require('crc-32') as { buf: (d: Uint8Array) => number }
const helper = native()

test('the native CRC is the one in use wherever it is accelerated', (t) => {
  if (!helper?.crc32Accelerated) return t.skip(helper ? 'the CPU lacks PCLMULQDQ' : 'native helper not built here')
  assert.equal(crc32Implementation, 'mqts native (PCLMULQDQ)')
  assert.ok(bodyCrcBatch(), 'appends compute body CRCs a batch at a time')
})

test('native crc32 agrees with @node-rs/crc32 and crc-32 on every length to 600 bytes, at every alignment, and on large inputs', (t) => {
  if (!helper) return t.skip('native helper not built here')
  assert.equal(helper.crc32(Buffer.from('123456789'), 0, 9), 0xcbf43926)
  const data = randomBytes(200_000)
  for (let offset = 0; offset < 16; offset++) {
    for (let length = 0; length <= 600; length++) {
      const slice = data.subarray(offset, offset + length)
      const want = nodeRsCrc32(slice)
      assert.equal(helper.crc32(data, offset, length), want, `length ${length} at offset ${offset}`)
      if (length % 61 === 0) assert.equal(pureJs.buf(slice) >>> 0, want)
    }
  }
  for (const length of [4096, 65_536, 65_536 + 15, 199_999]) {
    assert.equal(helper.crc32(data, 1, length), nodeRsCrc32(data.subarray(1, 1 + length)), `length ${length}`)
  }
  assert.equal(helper.crc32(Buffer.alloc(1000), 0, 1000), nodeRsCrc32(Buffer.alloc(1000)), 'all zeros')
  assert.equal(helper.crc32(Buffer.alloc(1000, 0xff), 0, 1000), nodeRsCrc32(Buffer.alloc(1000, 0xff)), 'all ones')
  assert.throws(() => helper.crc32(data, data.length - 10, 11), RangeError)
  assert.throws(() => helper.crc32(data, -1, 10), RangeError)
})

test('bodyCrcs stores each masked CRC big-endian and refuses any range outside the target before writing', (t) => {
  if (!helper) return t.skip('native helper not built here')
  const target = randomBytes(10_000)
  const list = new Float64Array([0, 100, 1024, 4, 2000, 0, 8, 3000, 7000])
  helper.bodyCrcs(target, list, 3)
  assert.equal(target.readInt32BE(0), bodyCrc(target.subarray(100, 1124)))
  assert.equal(target.readInt32BE(4), bodyCrc(Buffer.alloc(0)))
  assert.equal(target.readInt32BE(8), bodyCrc(target.subarray(3000, 10_000)))
  assert.ok(target.readInt32BE(8) >= 0, 'masked to 31 bits')

  const before = Buffer.from(target)
  assert.throws(() => helper.bodyCrcs(target, new Float64Array([20, 0, 16, 9_998, 0, 16]), 2), RangeError)
  assert.throws(() => helper.bodyCrcs(target, new Float64Array([20, 9_990, 16]), 1), RangeError)
  assert.throws(() => helper.bodyCrcs(target, new Float64Array([20, 0, 16]), 2), RangeError, 'count past the list')
  assert.throws(() => helper.bodyCrcs(target, new Float64Array([-4, 0, 16]), 1), RangeError)
  assert.deepEqual(target, before, 'nothing written by a refused call')
})

test('BodyCrcBatch grows past its first list, writes pending ranges before switching targets, forgets truncated ones, and encodeRecord refuses a pending CRC without one', () => {
  const written: { target: Buffer; ranges: number[] }[] = []
  const batch = new BodyCrcBatch((target, list, count) => written.push({ target, ranges: Array.from(list.subarray(0, 3 * count)) }))
  const a = Buffer.alloc(1)
  const b = Buffer.alloc(1)
  for (let i = 0; i < 200; i++) batch.add(a, i, i + 1, i + 2)
  assert.equal(written.length, 0, 'nothing computed before a flush')
  batch.flush()
  assert.equal(written.length, 1)
  assert.equal(written[0]!.target, a)
  assert.equal(written[0]!.ranges.length, 600)
  assert.deepEqual(written[0]!.ranges.slice(597), [199, 200, 201])
  batch.add(a, 1, 2, 3)
  batch.add(b, 4, 5, 6)
  assert.deepEqual(written[1], { target: a, ranges: [1, 2, 3] }, 'ranges of the previous target are written first')
  const mark = batch.pending
  batch.add(b, 7, 8, 9)
  batch.truncate(mark)
  batch.flush()
  assert.deepEqual(written[2], { target: b, ranges: [4, 5, 6] }, 'the truncated range is gone')
  batch.flush()
  assert.equal(written.length, 3, 'nothing left after a flush')

  const host = { ip: 0x7f000001, port: 10911 }
  const m = prepareRecord({
    topic: 'T',
    topicBytes: Buffer.from('T'),
    queueId: 0,
    flag: 0,
    sysFlag: 0,
    bornTimestamp: 1,
    bornHost: host,
    reconsumeTimes: 0,
    preparedTransactionOffset: 0,
    body: randomBytes(777),
    properties: '',
  })
  const pending = { ...m, bodyCrc: BODY_CRC_PENDING }
  const buf = Buffer.alloc(m.totalSize)
  // Nothing to compute a pending CRC with: refused, never a record with a wrong CRC.
  assert.throws(() => encodeRecord(buf, 0, pending, 0, 0, 2, host), (err: unknown) => err instanceof MessageError && err.code === 'INVALID_ARGUMENT')
  encodeRecord(buf, 0, m, 0, 0, 2, host)
  assert.equal(buf.readInt32BE(RECORD.bodyCrc), m.bodyCrc)
  assert.equal(checkRecord(buf, 0, buf.length, 0, 1 << 20, true).kind, 'record')
})

for (const flush of ['async', 'sync'] as const) {
  test(`flush '${flush}': messages whose CRC the append computed carry their body's CRC, batches and single puts, across a reopen`, { timeout: 30_000 }, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), `mqts-crc-${flush}-`))
    try {
      const sizes = [0, 1, 15, 16, 63, 64, 65, 127, 1024, 4097, 70_000]
      const bodies = sizes.map((n) => randomBytes(n))
      let store = await MessageStore.open({ dir, flush, commitLogFileSize: 1024 * 1024 })
      const offsets: number[] = []
      for (const r of await store.putBatch(bodies.map((body, i) => ({ topic: 'CrcTopic', queueId: i % 3, body })))) offsets.push(r.physicalOffset)
      for (const body of bodies) offsets.push((await store.put({ topic: 'CrcTopic', queueId: 0, body, tags: 't' })).physicalOffset)
      const check = async (): Promise<void> => {
        for (let i = 0; i < offsets.length; i++) {
          const m = await store.lookup(offsets[i]!)
          const body = bodies[i % bodies.length]!
          assert.deepEqual(m.body, body)
          assert.equal(m.bodyCrc, (pureJs.buf(body) >>> 0) & 0x7fffffff, `message ${i} (${body.length} bytes)`)
        }
      }
      await check()
      await store.close()
      // The same after a reopen (recovery after a crash verifies every CRC; see crash.test.ts).
      store = await MessageStore.open({ dir, flush, commitLogFileSize: 1024 * 1024 })
      await check()
      await store.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
}
