// IndexService behaviour with real files in temp dirs and a tiny geometry (64 slots, 99 entries a
// file): lookups, hash collisions, many keys per message, one key in many topics, time windows,
// maxNum, rolling over to more files and querying across them newest first, a bounded number of
// mapped files, reopening, idempotent re-dispatch, retention, and errors.
import assert from 'node:assert/strict'
import { readdir, rm, writeFile } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { IndexError, IndexService, type IndexRecord, type QueryOptions } from '../src/index.js'
import { RECORD_BYTES, T0, TINY, fakeClock, hasKeys, hits, openTiny, record, reopen, tempDir } from './helpers.js'

const T = { timeout: 10_000 }

test('put then query: each key finds its message, absent keys find nothing', T, async () => {
  const { dir, cleanup } = await tempDir()
  const idx = await openTiny(dir)
  try {
    assert.equal(idx.indexedUpTo, 0)
    for (let i = 0; i < 50; i++) idx.put(record(i))
    assert.equal(idx.indexedUpTo, 50 * RECORD_BYTES)
    for (let i = 0; i < 50; i++) assert.deepEqual(hits(idx, i), hasKeys(i) ? [1, 1] : [0, 0], `record ${i}`)
    assert.deepEqual(idx.query('T', 'missing'), [])
    assert.deepEqual(idx.query('Other', 'k1'), [])
    // A record with no keys costs nothing but still moves indexedUpTo.
    const before = idx.files[0]!.indexCount
    idx.put({ topic: 'T', keys: ['', ''], phyOffset: 5000, size: 10, storeTimestamp: T0 })
    assert.equal(idx.files[0]!.indexCount, before)
    assert.equal(idx.indexedUpTo, 5010)
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('hash collisions: "Aa" and "BB" share a hash, so both come back for either key', T, async () => {
  const { dir, cleanup } = await tempDir()
  const idx = await openTiny(dir)
  try {
    idx.put({ topic: 'T', keys: ['Aa'], phyOffset: 0, size: 10, storeTimestamp: T0 })
    idx.put({ topic: 'T', keys: ['BB'], phyOffset: 10, size: 10, storeTimestamp: T0 })
    idx.put({ topic: 'T', keys: ['Ab'], phyOffset: 20, size: 10, storeTimestamp: T0 })
    assert.deepEqual(idx.query('T', 'Aa'), [10, 0])
    assert.deepEqual(idx.query('T', 'BB'), [10, 0])
    assert.deepEqual(idx.query('T', 'Ab'), [20])
    // Same slot, different hash: 64 slots, so keys whose hashes differ by 64 share a chain.
    const ids = Array.from({ length: 40 }, (_, i) => `s${i}`)
    for (const [j, id] of ids.entries()) idx.put({ topic: 'U', keys: [id], phyOffset: 100 + j * 10, size: 10, storeTimestamp: T0 })
    for (const [j, id] of ids.entries()) assert.deepEqual(idx.query('U', id), [100 + j * 10])
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('many keys per message, and one key in many topics', T, async () => {
  const { dir, cleanup } = await tempDir()
  const idx = await openTiny(dir)
  try {
    const keys = Array.from({ length: 20 }, (_, i) => `key-${i}`)
    idx.put({ topic: 'T', keys, uniqKey: 'U1', phyOffset: 0, size: 50, storeTimestamp: T0 })
    assert.equal(idx.files[0]!.indexCount, 1 + 21)
    for (const k of [...keys, 'U1']) assert.deepEqual(idx.query('T', k), [0])
    for (let t = 0; t < 10; t++) idx.put({ topic: `topic-${t}`, keys: ['shared'], phyOffset: 100 + t * 50, size: 50, storeTimestamp: T0 })
    for (let t = 0; t < 10; t++) assert.deepEqual(idx.query(`topic-${t}`, 'shared'), [100 + t * 50])
    assert.deepEqual(idx.query('T', 'shared'), [])
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('time windows and maxNum: newest first, bounded, filtered by store time', T, async () => {
  const { dir, cleanup } = await tempDir()
  const idx = await openTiny(dir)
  try {
    // The same key stored once a minute for 10 minutes.
    for (let i = 0; i < 10; i++) idx.put({ topic: 'T', keys: ['order'], phyOffset: i * 100, size: 100, storeTimestamp: T0 + i * 60_000 })
    assert.deepEqual(idx.query('T', 'order'), [900, 800, 700, 600, 500, 400, 300, 200, 100, 0])
    assert.deepEqual(idx.query('T', 'order', { maxNum: 3 }), [900, 800, 700])
    assert.deepEqual(idx.query('T', 'order', { begin: T0 + 3 * 60_000, end: T0 + 5 * 60_000 }), [500, 400, 300])
    assert.deepEqual(idx.query('T', 'order', { begin: T0 + 3 * 60_000 + 1 }), [900, 800, 700, 600, 500, 400])
    assert.deepEqual(idx.query('T', 'order', { end: T0 + 60_000 }), [100, 0])
    assert.deepEqual(idx.query('T', 'order', { begin: T0 + 3 * 60_000, end: T0 + 5 * 60_000, maxNum: 2 }), [500, 400])
    assert.throws(() => idx.query('T', 'order', { maxNum: 0 }), (e: unknown) => e instanceof IndexError && e.code === 'INVALID_ARGUMENT')
    assert.throws(() => idx.query('T', 'order', { begin: 5, end: 4 }), (e: unknown) => e instanceof IndexError && e.code === 'INVALID_ARGUMENT')
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('a record repeating a key, or whose keys share a hash, comes back once; maxNum counts records', T, async () => {
  const { dir, cleanup } = await tempDir()
  const idx = await openTiny(dir)
  try {
    // "Aa" and "BB" share a hash; the UNIQ_KEY equals a key; a key is listed twice.
    for (let i = 0; i < 5; i++) idx.put({ topic: 'T', keys: ['Aa', 'BB', 'Aa'], uniqKey: 'Aa', phyOffset: i * 10, size: 10, storeTimestamp: T0 })
    assert.deepEqual(idx.query('T', 'Aa'), [40, 30, 20, 10, 0])
    assert.deepEqual(idx.query('T', 'BB', { maxNum: 2 }), [40, 30])
    // A record whose keys straddle two files (99 entries a file): its offset once.
    for (let i = 0; i < 30; i++) idx.put({ topic: 'T', keys: ['a', 'b', 'c'], phyOffset: 100 + i * 10, size: 10, storeTimestamp: T0 })
    idx.put({ topic: 'T', keys: Array.from({ length: 8 }, () => 'dup'), phyOffset: 1000, size: 10, storeTimestamp: T0 })
    assert.equal(idx.files.length, 2, 'the record straddles two files')
    assert.deepEqual(idx.query('T', 'dup'), [1000])
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('put checks the whole record before creating or writing anything', T, async () => {
  const { dir, cleanup } = await tempDir()
  const idx = await openTiny(dir)
  try {
    const good = { topic: 'T', keys: ['k'], phyOffset: 0, size: 10, storeTimestamp: T0 }
    const bad: [string, Record<string, unknown>][] = [
      ['storeTimestamp NaN', { storeTimestamp: Number.NaN }],
      ['negative storeTimestamp', { storeTimestamp: -1 }],
      ['fractional storeTimestamp', { storeTimestamp: 1.5 }],
      ['fractional phyOffset', { phyOffset: 0.5 }],
      ['negative phyOffset', { phyOffset: -10 }],
      ['fractional size', { size: 2.5 }],
      ['topic undefined', { topic: undefined }],
      ['topic not a string', { topic: 7 }],
      ['keys null', { keys: null }],
      ['keys a string', { keys: 'k' }],
      ['a key not a string', { keys: ['k', 3] }],
      ['uniqKey not a string', { uniqKey: 5 }],
    ]
    for (const [what, change] of bad) {
      assert.throws(
        () => idx.put({ ...good, ...change } as unknown as IndexRecord),
        (e: unknown) => e instanceof IndexError && e.code === 'INVALID_ARGUMENT' && /got|received|must/.test(e.message),
        what,
      )
      assert.deepEqual(idx.files, [], `${what}: no file created`)
      assert.equal(idx.indexedUpTo, 0, what)
    }
    assert.deepEqual((await readdir(path.join(dir, 'index'))).filter((n) => /^\d{17}$/.test(n)), [])
    idx.put(good)
    assert.deepEqual(idx.query('T', 'k'), [0])
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('query checks its arguments: topic, key and the time window are typed', T, async () => {
  const { dir, cleanup } = await tempDir()
  const idx = await openTiny(dir)
  try {
    idx.put(record(0))
    const invalid = (e: unknown): boolean => e instanceof IndexError && e.code === 'INVALID_ARGUMENT'
    for (const [topic, key, options] of [
      [undefined, 'k0', {}],
      ['T', null, {}],
      ['T', 'k0', { begin: Number.NaN }],
      ['T', 'k0', { end: 'x' }],
      ['T', 'k0', { begin: '0' }],
      ['T', 'k0', { maxNum: 1.5 }],
      ['T', 'k0', null],
    ] as const) {
      assert.throws(() => idx.query(topic as unknown as string, key as unknown as string, options as unknown as QueryOptions), invalid, `${String(topic)} ${String(key)} ${JSON.stringify(options)}`)
    }
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('rolls over to a second and third file; queries span them newest first', T, async () => {
  const { dir, cleanup } = await tempDir()
  const idx = await openTiny(dir, { maxOpenFiles: 1 })
  try {
    // 99 entries a file; 2 entries per keyed record. The key "hot" goes in every record.
    for (let i = 0; i < 100; i++) idx.put({ topic: 'T', keys: [`k${i}`, 'hot'], phyOffset: i * 100, size: 100, storeTimestamp: T0 + i * 1000 })
    const files = idx.files
    assert.equal(files.length, 3)
    assert.deepEqual(files.map((f) => f.name), ['20260102030405006', '20260102030405007', '20260102030405008'])
    assert.deepEqual(files.map((f) => f.indexCount), [100, 100, 3])
    // A record may straddle two files: the second file begins where the first ended.
    assert.equal(files[0]!.endPhyOffset, 4900)
    assert.equal(files[1]!.beginPhyOffset, 4900)
    const hot = idx.query('T', 'hot', { maxNum: 1000 })
    assert.deepEqual(hot, Array.from({ length: 100 }, (_, i) => (99 - i) * 100))
    for (let i = 0; i < 100; i++) assert.deepEqual(idx.query('T', `k${i}`), [i * 100])
    assert.deepEqual(idx.query('T', 'hot', { maxNum: 5, begin: T0 + 10_000, end: T0 + 14_999 }), [1400, 1300, 1200, 1100, 1000])
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('two files created in the same millisecond get distinct, increasing names', T, async () => {
  const { dir, cleanup } = await tempDir()
  const idx = await openTiny(dir, { now: () => Date.UTC(2026, 5, 1), maxIndexNum: 3 })
  try {
    for (let i = 0; i < 5; i++) idx.put({ topic: 'T', keys: [`k${i}`], phyOffset: i * 10, size: 10, storeTimestamp: T0 })
    assert.deepEqual(idx.files.map((f) => f.name), ['20260601000000000', '20260601000000001', '20260601000000002'])
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('reopen after close: everything found, indexedUpTo kept, re-dispatch is idempotent', T, async () => {
  const { dir, cleanup } = await tempDir()
  let idx = await openTiny(dir)
  try {
    for (let i = 0; i < 120; i++) idx.put(record(i))
    const upTo = idx.indexedUpTo
    const files = idx.files
    idx = await reopen(idx, dir)
    idx.recover(upTo, true)
    assert.equal(idx.indexedUpTo, upTo)
    assert.deepEqual(idx.files, files)
    // Re-dispatching old records changes nothing.
    for (let i = 100; i < 120; i++) idx.put(record(i))
    assert.deepEqual(idx.files, files)
    for (let i = 120; i < 130; i++) idx.put(record(i))
    for (let i = 0; i < 130; i++) assert.deepEqual(hits(idx, i), hasKeys(i) ? [1, 1] : [0, 0], `record ${i}`)
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('deleteBelow removes files whose entries all point below the offset, never the last', T, async () => {
  const { dir, cleanup } = await tempDir()
  const idx = await openTiny(dir)
  try {
    for (let i = 0; i < 200; i++) idx.put(record(i))
    const files = idx.files
    assert.equal(files.length, 4)
    assert.equal(await idx.deleteBelow(files[0]!.endPhyOffset), 0, 'the last entry still points at the offset')
    assert.equal(await idx.deleteBelow(files[0]!.endPhyOffset + 1), 1)
    assert.deepEqual(idx.files, files.slice(1))
    assert.equal(await idx.deleteBelow(Number.MAX_SAFE_INTEGER), 2)
    assert.deepEqual(idx.files, files.slice(3))
    assert.deepEqual((await readdir(path.join(dir, 'index'))).filter((n) => !n.endsWith('.tmp')), [files[3]!.name])
    assert.deepEqual(hits(idx, 199), [1, 1])
    assert.deepEqual(hits(idx, 0), [0, 0])
    idx.put(record(200))
    assert.deepEqual(hits(idx, 200), [1, 1])
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('deleting the index folder and reopening starts from 0', T, async () => {
  const { dir, cleanup } = await tempDir()
  let idx = await openTiny(dir)
  try {
    for (let i = 0; i < 60; i++) idx.put(record(i))
    await idx.close()
    await rm(path.join(dir, 'index'), { recursive: true })
    idx = await openTiny(dir)
    idx.recover(60 * RECORD_BYTES, false)
    assert.equal(idx.indexedUpTo, 0)
    assert.deepEqual(idx.files, [])
    for (let i = 0; i < 60; i++) idx.put(record(i))
    for (let i = 0; i < 60; i++) assert.deepEqual(hits(idx, i), hasKeys(i) ? [1, 1] : [0, 0])
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('leftover temp files and unrelated names are ignored; options are checked', T, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const indexDir = path.join(dir, 'index')
    let idx = await openTiny(dir)
    idx.put(record(0))
    await idx.close()
    await writeFile(path.join(indexDir, '20990101000000000.tmp'), 'x')
    await writeFile(path.join(indexDir, 'README'), 'x')
    idx = await openTiny(dir)
    assert.deepEqual(hits(idx, 0), [1, 1])
    assert.ok(!(await readdir(indexDir)).includes('20990101000000000.tmp'))
    await idx.close()
    for (const bad of [{ maxHashSlotNum: 0 }, { maxIndexNum: 1 }, { maxOpenFiles: 0 }, { maxHashSlotNum: 5_000_000, maxIndexNum: 200_000_000 }]) {
      await assert.rejects(IndexService.open({ dir: indexDir, ...TINY, ...bad }), (e: unknown) => e instanceof IndexError && e.code === 'INVALID_ARGUMENT')
    }
  } finally {
    await cleanup()
  }
})

test('a closed index refuses calls with NOT_OPEN; close is idempotent', T, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const idx = await openTiny(dir)
    await idx.close()
    await idx.close()
    const notOpen = (e: unknown): boolean => e instanceof IndexError && e.code === 'NOT_OPEN'
    assert.throws(() => idx.put(record(0)), notOpen)
    assert.throws(() => idx.query('T', 'k'), notOpen)
    assert.throws(() => idx.recover(0, true), notOpen)
    await assert.rejects(idx.flush(), notOpen)
    await assert.rejects(idx.deleteBelow(1), notOpen)
  } finally {
    await cleanup()
  }
})

test('flush writes the checkpoint that a reopen starts from', T, async () => {
  const { dir, cleanup } = await tempDir()
  let idx = await IndexService.open({ dir, ...TINY, now: fakeClock() })
  try {
    for (let i = 0; i < 30; i++) idx.put(record(i))
    await idx.flush()
    const { readCheckpoint } = await import('../src/internal.js')
    assert.equal(readCheckpoint(dir), 30 * RECORD_BYTES)
    await Promise.all([idx.flush(), idx.flush()])
    await idx.close()
    idx = await IndexService.open({ dir, ...TINY })
    assert.equal(idx.indexedUpTo, 30 * RECORD_BYTES)
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('the next file is prepared in the background and used by the put that rolls over', T, async () => {
  const { dir, cleanup } = await tempDir()
  const indexDir = path.join(dir, 'index')
  let idx = await openTiny(dir)
  try {
    // A spare file is made right after open, and again after each file is created (in the
    // background: wait for it, however loaded the machine is).
    const spares = async (): Promise<string[]> => (await readdir(indexDir)).filter((n) => n.endsWith('.tmp'))
    for (let waited = 0; (await spares()).length === 0 && waited < 10_000; waited += 10) await new Promise((r) => setTimeout(r, 10))
    idx.put(record(0))
    await new Promise((r) => setTimeout(r, 50))
    const spare = await spares()
    assert.equal(spare.length, 1)
    for (let i = 1; i < 70; i++) idx.put(record(i))
    assert.equal(idx.files.length, 2)
    assert.ok(!(await readdir(indexDir)).includes(spare[0]!), 'the spare became the second file')
    for (let i = 0; i < 70; i++) assert.deepEqual(hits(idx, i), hasKeys(i) ? [1, 1] : [0, 0])
    const second = idx.files[1]!
    assert.equal(second.beginPhyOffset, idx.files[0]!.endPhyOffset)
    idx = await reopen(idx, dir)
    assert.deepEqual(idx.files[1], second)
    for (let i = 0; i < 70; i++) assert.deepEqual(hits(idx, i), hasKeys(i) ? [1, 1] : [0, 0])
    await idx.close()
    assert.deepEqual((await readdir(indexDir)).filter((n) => n.endsWith('.tmp')), [], 'close removes an unused spare')
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('without MADV_POPULATE_WRITE space is reserved with zeros, never over indexed data', T, async () => {
  const { setPopulateWriteForTests } = await import('../src/internal.js')
  const { dir, cleanup } = await tempDir()
  setPopulateWriteForTests(false)
  let idx = await openTiny(dir)
  try {
    for (let i = 0; i < 150; i++) idx.put(record(i))
    await new Promise((r) => setTimeout(r, 30)) // let a spare be made this way too
    idx = await reopen(idx, dir)
    idx.recover(150 * RECORD_BYTES, true)
    for (let i = 150; i < 300; i++) idx.put(record(i))
    for (let i = 0; i < 300; i++) assert.deepEqual(hits(idx, i), hasKeys(i) ? [1, 1] : [0, 0], `record ${i}`)
  } finally {
    await idx.close()
    setPopulateWriteForTests(undefined)
    await cleanup()
  }
})

test('older files are mapped on demand, at most maxOpenFiles of them; pread reads give the same answers', T, async () => {
  const { indexKeyHash } = await import('../src/internal.js')
  const { dir, cleanup } = await tempDir()
  const idx = await openTiny(dir, { maxOpenFiles: 2 })
  try {
    for (let i = 0; i < 400; i++) idx.put({ topic: 'T', keys: [`k${i}`, 'hot'], phyOffset: i * 100, size: 100, storeTimestamp: T0 + i * 1000 })
    const list = (idx as unknown as { list: import('../src/internal.js').IndexFile[] }).list
    assert.ok(list.length >= 8)
    for (let i = 0; i < 400; i += 7) assert.deepEqual(idx.query('T', `k${i}`), [i * 100])
    const mapped = list.filter((f) => f.isMapped).length
    assert.ok(mapped <= 3, `${mapped} files mapped: the writer and at most 2 others`)
    const hash = indexKeyHash('T', 'hot')
    for (const f of list) {
      const viaMap: number[] = []
      const viaRead: number[] = []
      if (!f.isMapped) idx.query('T', 'hot', { begin: f.beginTimestamp, end: f.endTimestamp, maxNum: 1000 }) // maps it
      f.select(viaMap, hash, 1000, 0, Number.MAX_SAFE_INTEGER)
      f.selectUnmapped(viaRead, hash, 1000, 0, Number.MAX_SAFE_INTEGER)
      assert.deepEqual(viaRead, viaMap)
      assert.ok(viaMap.length > 0)
    }
  } finally {
    await idx.close()
    await cleanup()
  }
})

test('an unusable directory is an IO_ERROR', T, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const file = path.join(dir, 'not-a-dir')
    await writeFile(file, 'x')
    await assert.rejects(IndexService.open({ dir: file, ...TINY }), (e: unknown) => e instanceof IndexError && e.code === 'IO_ERROR')
  } finally {
    await cleanup()
  }
})
