// The native helper (native/populate.c): it is built at install on Linux; its background prefault
// reports progress through shared memory at once, changes no byte of the mapping while the caller
// writes it, and reports errors; its copy into shared memory (sync-flush staging) moves exactly
// the bytes asked for. Stores written through both keep every message.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore } from '../src/index.js'
import { NodeFileIO, sharedMemoryCopier } from '../src/file-io.js'

const io = new NodeFileIO()

async function tempFile(size: number): Promise<{ dir: string; file: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-populate-'))
  const file = path.join(dir, 'data')
  await io.allocate(file, size)
  return { dir, file }
}

/** Waits (bounded) until `progress` shows the range done or failed. */
async function settled(progress: Int32Array): Promise<void> {
  for (let i = 0; i < 2000 && progress[0] === 0 && progress[1] === 0; i++) await new Promise((r) => setTimeout(r, 1))
}

test('the native prefault helper is built wherever MADV_POPULATE_WRITE works', (t) => {
  if (!io.canPrefault()) return t.skip('MADV_POPULATE_WRITE does not work here')
  assert.equal(io.canPrefaultInBackground(), true, 'native/populate.c should have been built by npm ci (node-gyp)')
})

test('prefaultViewAsync faults a range in, reports progress before the promise settles, and keeps bytes written meanwhile', { timeout: 20_000 }, async (t) => {
  if (!io.canPrefaultInBackground()) return t.skip('no background prefault here')
  const size = 8 * 1024 * 1024
  const { dir, file } = await tempFile(size)
  const f = await io.open(file)
  try {
    const view = f.map(true)
    // Bytes written before (after a synchronous prefault) and during the background run survive it.
    f.prefault(0, 4096)
    view.write('before', 0)
    const progress = new Int32Array(new SharedArrayBuffer(8))
    const done = f.prefaultViewAsync(view, 4096, size - 4096, progress)
    view.write('during', 100)
    await settled(progress)
    assert.equal(progress[1], 0)
    assert.equal(progress[0], size)
    assert.equal(await done, true)
    view.write('after', size - 5)
    assert.equal(view.toString('latin1', 0, 6), 'before')
    assert.equal(view.toString('latin1', 100, 106), 'during')
    const check = Buffer.alloc(6)
    await f.read(check, 0, 6, 0)
    assert.equal(check.toString('latin1'), 'before')
    // A range reaching past the view is clipped to it; one starting outside it is refused.
    assert.equal(await f.prefaultViewAsync(view, size - 10, 100), true)
    const bad = new Int32Array(new SharedArrayBuffer(8))
    await assert.rejects(f.prefaultViewAsync(view, -4096, 100, bad), RangeError)
    assert.notEqual(bad[1], 0, 'the failure shows in the progress cells')
  } finally {
    await f.close()
    await rm(dir, { recursive: true, force: true })
  }
})

test('the native copy into shared memory moves the bytes asked for and refuses ranges outside either buffer', (t) => {
  const copy = sharedMemoryCopier()
  if (!copy) {
    assert.equal(io.canPrefault(), false, 'the native helper is missing where it should have been built')
    return t.skip('native helper not built here')
  }
  const target = Buffer.from(new SharedArrayBuffer(64))
  const source = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])
  copy(target, 10, source, 2, 5)
  assert.deepEqual([...target.subarray(9, 16)], [0, 3, 4, 5, 6, 7, 0])
  assert.throws(() => copy(target, 60, source, 0, 8), RangeError)
  assert.throws(() => copy(target, 0, source, 4, 5), RangeError)
  assert.throws(() => copy(target, -1, source, 0, 1), RangeError)
})

test('sync store through the writer thread stores Buffer and Uint8Array bodies byte for byte', { timeout: 30_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-sharedcopy-'))
  try {
    const store = await MessageStore.open({ dir, flush: 'sync', commitLogFileSize: 256 * 1024, messageIndexEnable: false })
    try {
      const bodies = Array.from({ length: 50 }, (_, i) => (i % 2 ? new Uint8Array(Buffer.alloc(100 + i * 37, i)) : Buffer.alloc(100 + i * 37, i)))
      const rs = await Promise.all(bodies.map((body, i) => store.put({ topic: 'copy', queueId: i % 3, body })))
      for (const [i, r] of rs.entries()) assert.deepEqual((await store.lookup(r.physicalOffset)).body, Buffer.from(bodies[i]!))
    } finally {
      await store.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('async store with background prefault: many rolls, every message intact after reopen', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-bgprefault-'))
  try {
    const fileSize = 256 * 1024
    let store = await MessageStore.open({ dir, flush: 'async', commitLogFileSize: fileSize, messageIndexEnable: false })
    const offsets: number[] = []
    for (let i = 0; i < 3000; i++) {
      const body = Buffer.alloc(300 + (i % 700), i & 0xff)
      if (i % 3 === 0) offsets.push(...(await store.putBatch([{ topic: 'bg', queueId: 0, body }, { topic: 'bg', queueId: 1, body }])).map((r) => r.physicalOffset))
      else offsets.push((await store.put({ topic: 'bg', queueId: i % 2, body })).physicalOffset)
    }
    assert.ok(store.commitLog.queue.files.length > 10)
    await store.close()
    store = await MessageStore.open({ dir, flush: 'async', commitLogFileSize: fileSize, messageIndexEnable: false })
    try {
      for (const o of offsets) {
        const m = await store.lookup(o)
        assert.equal(m.physicalOffset, o)
      }
      assert.equal(store.maxOffset('bg', 0) + store.maxOffset('bg', 1), offsets.length)
    } finally {
      await store.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

