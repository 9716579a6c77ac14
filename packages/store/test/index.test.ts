// The key index as the store uses it: fed by the dispatcher, queried by key with real-key checks,
// rebuilt when deleted, trimmed by retention, and free when disabled.
import assert from 'node:assert/strict'
import { readdir, rm } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, javaStringHashCode, type MessageStoreOptions } from '../src/index.js'
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
