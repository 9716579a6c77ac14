// A real full disk: a 600 KiB tmpfs (mounted only when running as root; skipped otherwise). Index
// files of 280 KiB are reserved whole when created, so the third cannot get space: the put that
// needs it fails with DISK_FULL, writes nothing, leaves indexedUpTo where it was, and every key
// indexed before stays found, also after reopening.
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { test } from 'node:test'
import { IndexError, IndexService } from '../src/index.js'
import { forceGc } from '../src/internal.js'
import { withTmpfs } from '@mqts/common/testing'

const GEOMETRY = { maxHashSlotNum: 16_384, maxIndexNum: 11_000 } // 40 + 64 KiB + 215 KiB

test('a real full disk fails the put with DISK_FULL and loses nothing', { timeout: 20_000 }, async (t) => {
  const skip = await withTmpfs('600k', async (mountPoint) => {
    const dir = path.join(mountPoint, 'index')
    const idx = await IndexService.open({ dir, ...GEOMETRY })
    let error: unknown
    let n = 0
    for (; n < 40_000 && !error; n++) {
      try {
        idx.put({ topic: 'T', keys: [`k${n}`, `x${n}`], phyOffset: n * 100, size: 100, storeTimestamp: 1_700_000_000_000 + n })
      } catch (err) {
        error = err
      }
    }
    const failed = n - 1
    assert.ok(error instanceof IndexError && error.code === 'DISK_FULL', `expected DISK_FULL, got ${String(error)}`)
    assert.equal(idx.indexedUpTo, failed * 100, 'the failed put did not move indexedUpTo')
    assert.equal(idx.files.length, 2)
    assert.ok(failed > 10_000)
    for (let i = 0; i < failed; i += 97) assert.deepEqual(idx.query('T', `x${i}`), [i * 100])
    // Nothing of the failed record is in the index.
    assert.deepEqual(idx.query('T', `k${failed}`), [])
    assert.deepEqual(idx.query('T', `x${failed}`), [])
    // The failed file's blocks come back once V8 has collected its mapping and the unmap ran,
    // a few event-loop turns later; flush (which writes the checkpoint) then succeeds.
    let flushed = false
    for (let i = 0; i < 40 && !flushed; i++) {
      forceGc()
      await new Promise((r) => setTimeout(r, 25))
      flushed = await idx.flush().then(
        () => true,
        (err: unknown) => (err instanceof IndexError && err.code === 'DISK_FULL' ? false : Promise.reject(err)),
      )
    }
    assert.ok(flushed, 'flush succeeds once the failed file is unmapped')
    await idx.close()
    const again = await IndexService.open({ dir, ...GEOMETRY })
    try {
      again.recover(failed * 100, false)
      assert.equal(again.indexedUpTo, failed * 100)
      for (let i = 0; i < failed; i += 97) assert.deepEqual(again.query('T', `k${i}`), [i * 100])
    } finally {
      await again.close()
    }
  })
  if (skip) t.skip(skip)
})
