// The IndexFile codec: field offsets are contiguous and match RocketMQ's layout, the default
// geometry gives RocketMQ's 420,000,040-byte file, a tiny file written by the service has exactly
// the bytes computed by hand from RocketMQ's rules, and the key hash is Java's String.hashCode.
import assert from 'node:assert/strict'
import { readFile, readdir } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { IndexService, INDEX_DEFAULTS, indexFileSize } from '../src/index.js'
import {
  INDEX_ENTRY,
  INDEX_HEADER,
  decodeEntry,
  decodeHeader,
  encodeEntry,
  encodeHeader,
  fileNameOf,
  indexKeyHash,
  javaStringHashCode,
  positiveHash,
  timeDiffSeconds,
  timeOfFileName,
} from '../src/internal.js'
import { tempDir } from './helpers.js'

function assertContiguous(layout: Record<string, number>, widths: Record<string, number>): void {
  const fields = Object.entries(layout).filter(([k]) => k !== 'bytes').sort((a, b) => a[1] - b[1])
  let at = 0
  for (const [name, offset] of fields) {
    assert.equal(offset, at, `${name} starts where the previous field ends`)
    at += widths[name]!
  }
  assert.equal(at, layout.bytes)
}

test('header and entry offsets are contiguous, RocketMQ widths', () => {
  assertContiguous(INDEX_HEADER, { beginTimestamp: 8, endTimestamp: 8, beginPhyOffset: 8, endPhyOffset: 8, hashSlotCount: 4, indexCount: 4 })
  assertContiguous(INDEX_ENTRY, { keyHash: 4, phyOffset: 8, timeDiff: 4, prevIndex: 4 })
  assert.equal(INDEX_HEADER.bytes, 40)
  assert.equal(INDEX_ENTRY.bytes, 20)
})

test('default geometry is 420,000,040 bytes', () => {
  assert.equal(INDEX_DEFAULTS.maxHashSlotNum, 5_000_000)
  assert.equal(INDEX_DEFAULTS.maxIndexNum, 20_000_000)
  assert.equal(indexFileSize(INDEX_DEFAULTS.maxHashSlotNum, INDEX_DEFAULTS.maxIndexNum), 420_000_040)
})

test('header and entry round-trip, including offsets above 2^32', () => {
  const b = new DataView(new ArrayBuffer(100))
  const h = { beginTimestamp: 1_764_000_000_123, endTimestamp: 1_764_000_999_999, beginPhyOffset: 2 ** 40 + 7, endPhyOffset: 2 ** 52 + 1, hashSlotCount: 17, indexCount: 99 }
  encodeHeader(b, h)
  assert.deepEqual(decodeHeader(b), h)
  const e = { keyHash: 0x7fffffff, phyOffset: 2 ** 45 + 3, timeDiff: 12345, prevIndex: 42 }
  encodeEntry(b, 60, e)
  assert.deepEqual(decodeEntry(b, 60), e)
})

test('keyHash is |String.hashCode| of "<topic>#<key>", computed without building the string', () => {
  assert.equal(javaStringHashCode(''), 0)
  assert.equal(javaStringHashCode('hello'), 99162322) // "hello".hashCode() in Java
  assert.equal(javaStringHashCode('Aa'), javaStringHashCode('BB')) // 2112, the classic collision
  assert.equal(javaStringHashCode('polygenelubricants'), -2147483648) // Integer.MIN_VALUE
  assert.equal(positiveHash(-2147483648), 0) // Math.abs overflows: RocketMQ stores 0
  assert.equal(positiveHash(-5), 5)
  for (const [topic, key] of [['T', 'k'], ['TopicTest', 'order-12345'], ['t', '中文键'], ['%RETRY%g', '']] as const) {
    assert.equal(indexKeyHash(topic, key), positiveHash(javaStringHashCode(`${topic}#${key}`)))
  }
})

test('timeDiff: whole seconds since the file began, clamped, 0 without a beginning', () => {
  assert.equal(timeDiffSeconds(1_000_000, 1_005_999), 5)
  assert.equal(timeDiffSeconds(1_000_000, 999_000), 0)
  assert.equal(timeDiffSeconds(0, 5_000_000), 0)
  assert.equal(timeDiffSeconds(1, 1 + 2 ** 31 * 1000 + 5000), 0x7fffffff)
})

test('file names are yyyyMMddHHmmssSSS and parse back', () => {
  const t = Date.UTC(2026, 10, 29, 20, 44, 43, 7)
  assert.equal(fileNameOf(t), '20261129204443007')
  assert.equal(timeOfFileName('20261129204443007'), t)
  assert.equal(timeOfFileName('20261399204443007'), undefined)
  assert.equal(timeOfFileName('checkpoint'), undefined)
})

test('golden: a tiny file holds exactly the bytes RocketMQ would write', { timeout: 10_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    // 4 slots, 4 entries: 40 + 4×4 + 4×20 = 136 bytes.
    const idx = await IndexService.open({ dir, maxHashSlotNum: 4, maxIndexNum: 4, now: () => Date.UTC(2026, 0, 1) })
    idx.put({ topic: 'T', keys: ['k'], phyOffset: 100, size: 50, storeTimestamp: 1_000_000 })
    idx.put({ topic: 'T', keys: ['', 'k'], phyOffset: 300, size: 50, storeTimestamp: 1_005_500 })
    await idx.close()
    assert.deepEqual((await readdir(dir)).sort(), ['20260101000000000', 'checkpoint'])
    const bytes = await readFile(path.join(dir, '20260101000000000'))
    // "T#k".hashCode() = (84×31 + 35)×31 + 107 = 81916 = 0x13ffc; slot 81916 % 4 = 0.
    const expected = Buffer.from(
      [
        '00000000000f4240', // beginTimestamp 1,000,000
        '00000000000f57bc', // endTimestamp 1,005,500
        '0000000000000064', // beginPhyOffset 100
        '000000000000012c', // endPhyOffset 300
        '00000001', // hashSlotCount: one slot in use
        '00000003', // indexCount: next entry is 3
        '00000002 00000000 00000000 00000000', // slots: slot 0 -> entry 2
        '00000000 0000000000000000 00000000 00000000', // entry 0, never used
        '00013ffc 0000000000000064 00000000 00000000', // entry 1: hash, offset 100, 0 s, no prev
        '00013ffc 000000000000012c 00000005 00000001', // entry 2: hash, offset 300, 5 s, prev 1
        '00000000 0000000000000000 00000000 00000000', // entry 3, free
      ]
        .join('')
        .replaceAll(' ', ''),
      'hex',
    )
    assert.equal(bytes.length, 136)
    assert.equal(bytes.toString('hex'), expected.toString('hex'))
  } finally {
    await cleanup()
  }
})
