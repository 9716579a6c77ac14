// The key index as the store uses it: fed by the dispatcher, queried by key with real-key checks,
// rebuilt when deleted, trimmed by retention, and free when disabled.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { open, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, StoreError, javaStringHashCode, type MessageStoreOptions } from '../src/index.js'
import { SimFileIO } from '../src/internal.js'
import { SMALL_FILE, reopen, tempDir } from './helpers.js'

const TINY_INDEX = { maxHashSlotNum: 16, maxIndexNum: 64 }

test('queryByKey: every key of KEYS and the UNIQ_KEY, newest first, per topic, collisions filtered', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const options: MessageStoreOptions = { dir, commitLogFileSize: SMALL_FILE, ...TINY_INDEX }
  try {
    let store = await MessageStore.open(options)
    assert.equal(javaStringHashCode('Aa'), javaStringHashCode('BB'))
    for (let i = 0; i < 200; i++) {
      await store.put({ topic: i % 2 ? 'odd' : 'even', queueId: i % 4, body: `m${i}`, keys: [`order-${i % 10}`, i % 3 ? 'Aa' : 'BB'], properties: { UNIQ_KEY: `U${i}` } })
    }
    const check = async (s: MessageStore): Promise<void> => {
      const seven = await s.queryByKey('odd', 'order-7')
      assert.deepEqual(seven.map((m) => m.body.toString()), [197, 187, 177, 167, 157, 147, 137, 127, 117, 107, 97, 87, 77, 67, 57, 47, 37, 27, 17, 7].map((i) => `m${i}`))
      assert.deepEqual(await s.queryByKey('even', 'order-7'), [], 'a key in one topic is not found in another')
      const bb = await s.queryByKey('even', 'BB', { maxNum: 100 })
      assert.ok(bb.length > 0 && bb.every((m) => m.keys.includes('BB')), 'a colliding key never answers for the other')
      assert.equal(bb.length, Array.from({ length: 200 }, (_, i) => i).filter((i) => i % 2 === 0 && i % 3 === 0).length)
      assert.deepEqual((await s.queryByKey('odd', 'U33')).map((m) => m.body.toString()), ['m33'])
      assert.equal((await s.queryByKey('odd', 'order-1', { maxNum: 3 })).length, 3)
      assert.deepEqual(await s.queryByKey('odd', 'missing'), [])
    }
    await check(store)
    assert.ok(store.index!.files.length > 3, 'rolled over several small index files')
    store = await reopen(store, options)
    await check(store)
    await store.close()
    // Deleting the index folder rebuilds it from the CommitLog.
    await rm(path.join(dir, 'index'), { recursive: true })
    store = await MessageStore.open(options)
    await check(store)
    await store.close()
  } finally {
    await cleanup()
  }
})

test('queryByKey: time window on store time', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  let clock = Date.UTC(2026, 0, 1)
  try {
    const store = await MessageStore.open({ dir, now: () => clock, ...TINY_INDEX })
    const t0 = clock
    for (let i = 0; i < 10; i++) {
      await store.put({ topic: 'time', queueId: 0, body: `t${i}`, keys: 'k' })
      clock += 60_000
    }
    const within = await store.queryByKey('time', 'k', { begin: t0 + 2 * 60_000, end: t0 + 5 * 60_000 })
    assert.deepEqual(within.map((m) => m.body.toString()), ['t5', 't4', 't3', 't2'])
    assert.equal((await store.queryByKey('time', 'k')).length, 10, 'end defaults to now')
    await store.close()
  } finally {
    await cleanup()
  }
})

test('index files pointing only into deleted CommitLog go with retention', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, ...TINY_INDEX })
    for (let i = 0; i < 400; i++) await store.put({ topic: 'ret', queueId: 0, body: Buffer.alloc(400), keys: `k${i}` })
    const before = (await readdir(path.join(dir, 'index'))).filter((n) => /^\d{17}$/.test(n)).length
    store.retention.options.fileReservedTimeHours = 0
    const r = await store.deleteExpiredFiles({ manual: true })
    assert.ok(r.commitLogFilesDeleted > 0)
    const after = (await readdir(path.join(dir, 'index'))).filter((n) => /^\d{17}$/.test(n)).length
    assert.ok(after < before, `index files ${before} -> ${after}`)
    assert.deepEqual(await store.queryByKey('ret', 'k0'), [], 'its message is gone')
    assert.equal((await store.queryByKey('ret', 'k399')).length, 1)
    await store.close()
  } finally {
    await cleanup()
  }
})

test('a store on the simulated disk keeps its index there too: nothing is written to the real disk, and the index survives a power loss', { timeout: 30_000 }, async () => {
  const dir = path.join(tmpdir(), `mqts-sim-only-${process.pid}-${Date.now()}`)
  const io = new SimFileIO()
  const options: MessageStoreOptions = { dir, flush: 'sync', commitLogFileSize: SMALL_FILE, ...TINY_INDEX }
  const store = await MessageStore.open({ ...options, fileIO: io })
  let lost: SimFileIO
  try {
    for (let i = 0; i < 100; i++) await store.put({ topic: 'sim', queueId: i % 2, body: `m${i}`, keys: `k${i}` })
    assert.deepEqual((await store.queryByKey('sim', 'k42')).map((m) => m.body.toString()), ['m42'])
    assert.ok([...io.files.keys()].some((p) => p.startsWith(path.join(dir, 'index') + path.sep)), 'index files on the simulated disk')
    lost = io.crash(7)
  } finally {
    await store.close()
  }
  assert.equal(existsSync(dir), false, `${dir} exists on the real disk`)
  // Every put was acknowledged after its fdatasync: after the power loss each key finds its message.
  const again = await MessageStore.open({ ...options, fileIO: lost })
  try {
    for (let i = 0; i < 100; i += 7) assert.deepEqual((await again.queryByKey('sim', `k${i}`)).map((m) => m.body.toString()), [`m${i}`])
  } finally {
    await again.close()
  }
  assert.equal(existsSync(dir), false, `${dir} exists on the real disk`)
})

test('messageIndexEnable: false writes no index and refuses queries', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const store = await MessageStore.open({ dir, messageIndexEnable: false })
    await store.put({ topic: 'off', queueId: 0, body: 'x', keys: 'k' })
    await assert.rejects(store.queryByKey('off', 'k'), { code: 'INVALID_ARGUMENT' })
    assert.deepEqual(await readdir(path.join(dir, 'index')), [])
    await store.close()
  } finally {
    await cleanup()
  }
})

test('queryByKey returns each message once and maxNum counts messages', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, ...TINY_INDEX })
    // Keys sharing a hash, a key listed twice, a UNIQ_KEY equal to a key.
    for (let i = 0; i < 6; i++) await store.put({ topic: 'dup', queueId: 0, body: `d${i}`, keys: ['Aa', 'BB', 'Aa'], properties: { UNIQ_KEY: 'Aa' } })
    // Enough keys per message that some straddle two index files (64 entries a file).
    for (let i = 0; i < 20; i++) await store.put({ topic: 'dup', queueId: 1, body: `s${i}`, keys: ['x', 'x', 'x', 'x', 'x', 'x', 'x'] })
    const bodies = (ms: { body: Buffer }[]): string[] => ms.map((m) => m.body.toString())
    assert.deepEqual(bodies(await store.queryByKey('dup', 'Aa')), ['d5', 'd4', 'd3', 'd2', 'd1', 'd0'])
    assert.deepEqual(bodies(await store.queryByKey('dup', 'BB', { maxNum: 4 })), ['d5', 'd4', 'd3', 'd2'])
    assert.ok(store.index!.files.length > 1)
    assert.deepEqual(bodies(await store.queryByKey('dup', 'x')), Array.from({ length: 20 }, (_, i) => `s${19 - i}`))
    assert.deepEqual(bodies(await store.queryByKey('dup', 'x', { maxNum: 3 })), ['s19', 's18', 's17'])
    await store.close()
  } finally {
    await cleanup()
  }
})

test('queryByKey checks its options and answers only StoreErrors', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const store = await MessageStore.open({ dir, ...TINY_INDEX })
    await store.put({ topic: 't', queueId: 0, body: 'x', keys: 'k' })
    const cases: [string, unknown][] = [
      ['begin NaN', { begin: Number.NaN }],
      ['end a string', { end: 'x' }],
      ['begin a string', { begin: '0' }],
      ['begin after end', { begin: 10, end: 5 }],
      ['maxNum fractional', { maxNum: 1.5 }],
      ['maxNum past 2^53', { maxNum: 2 ** 60 }],
      ['options null', null],
      ['options a number', 5],
    ]
    for (const [what, options] of cases) {
      await assert.rejects(
        store.queryByKey('t', 'k', options as Parameters<MessageStore['queryByKey']>[2]),
        (e: unknown) => e instanceof StoreError && e.code === 'INVALID_ARGUMENT' && /got|empty/.test(e.message),
        what,
      )
    }
    for (const [topic, key] of [[undefined, 'k'], ['t', null], ['t', 5]]) {
      await assert.rejects(store.queryByKey(topic as string, key as string), (e: unknown) => e instanceof StoreError, `${String(topic)} ${String(key)}`)
    }
    assert.equal((await store.queryByKey('t', 'k', { begin: 0, end: Number.MAX_SAFE_INTEGER, maxNum: 1 })).length, 1)
    await store.close()
  } finally {
    await cleanup()
  }
})

test('queryByKey skips index entries that point at no record (damaged index bytes)', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    type Raw = { commitLog: { recordAt(offset: number): { buf: Buffer; at: number } | undefined } }
    // The bytes of a record of topic 't' with key 'k', made by another store (so stored at 0).
    const other = await MessageStore.open({ dir: path.join(dir, 'other'), commitLogFileSize: SMALL_FILE, ...TINY_INDEX })
    const { size } = await other.put({ topic: 't', queueId: 0, body: 'forged', keys: 'k' })
    const where = (other as unknown as Raw).commitLog.recordAt(0)!
    const forged = Buffer.from(where.buf.subarray(where.at, where.at + size))
    await other.close()
    const store = await MessageStore.open({ dir: path.join(dir, 'store'), commitLogFileSize: SMALL_FILE, ...TINY_INDEX })
    const offsets: number[] = []
    for (let i = 0; i < 20; i++) offsets.push((await store.put({ topic: 't', queueId: 0, body: `m${i}`.repeat(20), keys: 'k' })).physicalOffset)
    // A message whose body is that record: an offset into its body reads as a record of 't'.
    const carrier = (await store.put({ topic: 'u', queueId: 0, body: forged })).physicalOffset
    for (let i = 20; i < 22; i++) offsets.push((await store.put({ topic: 't', queueId: 0, body: `m${i}`.repeat(20), keys: 'k' })).physicalOffset)
    const inCarrier = (store as unknown as Raw).commitLog.recordAt(carrier)!
    const forgedAt = carrier + inCarrier.buf.indexOf(forged, inCarrier.at) - inCarrier.at
    // Entries n = i + 1, in the one file being written (mapped: a write through the descriptor
    // shows in the map). Some now point into the middle of a record, one at the forged record.
    const file = path.join(dir, 'store', 'index', store.index!.files[0]!.name)
    const entryAt = (n: number): number => 40 + TINY_INDEX.maxHashSlotNum * 4 + n * 20
    const fd = await open(file, 'r+')
    const moved = new Map([
      [3, offsets[3]! + 1],
      [5, offsets[5]! + 8],
      [7, offsets[7]! + 30],
      [9, offsets[9]! + 100],
      [11, offsets[11]! + 4],
      [13, forgedAt],
    ])
    try {
      for (const [i, to] of moved) {
        const b = Buffer.alloc(8)
        b.writeUInt32BE(Math.floor(to / 2 ** 32))
        b.writeUInt32BE(to >>> 0, 4)
        await fd.write(b, 0, 8, entryAt(i + 1) + 4)
      }
    } finally {
      await fd.close()
    }
    const expected = Array.from({ length: 22 }, (_, i) => 21 - i).filter((i) => !moved.has(i)).map((i) => `m${i}`.repeat(20))
    const got = await store.queryByKey('t', 'k', { maxNum: 100 })
    assert.deepEqual(got.map((m) => m.body.toString()), expected)
    await store.close()
  } finally {
    await cleanup()
  }
})

test('queryByKey by default finds messages stored before the clock stepped back', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  let clock = Date.UTC(2026, 0, 1, 12)
  const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, maxHashSlotNum: 64, maxIndexNum: 256, now: () => clock })
  try {
    await store.put({ topic: 'T', queueId: 0, body: 'first', keys: ['k'] })
    clock -= 2000 // NTP steps the clock back
    await store.put({ topic: 'T', queueId: 0, body: 'second', keys: ['k'] })
    const found = await store.queryByKey('T', 'k')
    assert.deepEqual(found.map((m) => Buffer.from(m.body).toString()).sort(), ['first', 'second'])
  } finally {
    await store.close()
    await cleanup()
  }
})
