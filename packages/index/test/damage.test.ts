// Queries over damaged index files: a flipped bit in a prevIndex, a phyOffset, a keyHash or a slot
// must neither make a walk loop nor return an offset outside the file, and where the damage is
// detected the entries behind it are still found (the walk falls back to a scan). Both read
// paths (the map and pread) answer the same. A walk that could loop runs in a worker thread, so
// a regression fails the test instead of hanging it.
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { test } from 'node:test'
import { Worker } from 'node:worker_threads'
import { type IndexService } from '../src/index.js'
import { INDEX_ENTRY, entryPosition, indexKeyHash, slotPosition, type IndexFile } from '../src/internal.js'
import { T0, TINY, openTiny, tempDir } from './helpers.js'

const T = { timeout: 20_000 }
/** Long enough for any bounded walk over a tiny file, short enough to fail a looping one. */
const WORKER_LIMIT_MS = 10_000

function listOf(idx: IndexService): IndexFile[] {
  return (idx as unknown as { list: IndexFile[] }).list
}

function filePath(dir: string, f: IndexFile): string {
  return path.join(dir, 'index', f.name)
}

function writeI32(file: string, position: number, value: number): void {
  const b = Buffer.alloc(4)
  b.writeInt32BE(value)
  const fd = fs.openSync(file, 'r+')
  try {
    fs.writeSync(fd, b, 0, 4, position)
  } finally {
    fs.closeSync(fd)
  }
}

function readI32(file: string, position: number): number {
  const b = Buffer.alloc(4)
  const fd = fs.openSync(file, 'r')
  try {
    fs.readSync(fd, b, 0, 4, position)
  } finally {
    fs.closeSync(fd)
  }
  return b.readInt32BE(0)
}

/** Flips bit `bit` of the int at `position`. */
function flipBit(file: string, position: number, bit: number): void {
  writeI32(file, position, readI32(file, position) ^ (1 << bit))
}

/** The same query through the map and through pread, file by file, newest first. */
function bothPaths(idx: IndexService, topic: string, key: string): { viaMap: number[]; viaRead: number[] } {
  const hash = indexKeyHash(topic, key)
  const viaMap: number[] = []
  const viaRead: number[] = []
  for (const f of [...listOf(idx)].reverse()) {
    if (!f.isMapped) idx.query(topic, key, { begin: f.beginTimestamp, end: f.endTimestamp }) // maps it
    f.select(viaMap, hash, 1000, 0, Number.MAX_SAFE_INTEGER)
    f.selectUnmapped(viaRead, hash, 1000, 0, Number.MAX_SAFE_INTEGER)
  }
  return { viaMap, viaRead }
}

test('damage in an older file: no offset outside it, and the entries behind a broken link are still found', T, async () => {
  const { dir, cleanup } = await tempDir()
  let idx = await openTiny(dir)
  try {
    // Record i: entries 2i+1 ('hot') and 2i+2 ('k<i>'); 99 entries a file, so file 0 holds
    // records 0-49 (49 straddles) and file 1 records 49-79.
    const N = 80
    for (let i = 0; i < N; i++) idx.put({ topic: 'T', keys: ['hot', `k${i}`], phyOffset: i * 100, size: 100, storeTimestamp: T0 + i * 1000 })
    const [first, second] = listOf(idx)
    assert.ok(first && second && listOf(idx).length === 2)
    await idx.close()
    const older = filePath(dir, first)
    const slots = TINY.maxHashSlotNum
    const slotOf = (key: string): number => indexKeyHash('T', key) % slots
    // Record 20's 'hot' entry (41): a high bit of its phyOffset flips.
    flipBit(older, entryPosition(slots, 41) + INDEX_ENTRY.phyOffset, 8)
    // Record 10's 'hot' entry (21): prevIndex 19 becomes 18, k8's entry, in another slot.
    assert.notEqual(slotOf('k8'), slotOf('hot'))
    flipBit(older, entryPosition(slots, 21) + INDEX_ENTRY.prevIndex, 0)
    // File 1: the 'hot' slot points past the last entry.
    writeI32(filePath(dir, second), slotPosition(slotOf('hot')), 0x1000)
    idx = await openTiny(dir)
    const expected = Array.from({ length: N }, (_, i) => (N - 1 - i) * 100).filter((o) => o !== 2000)
    assert.deepEqual(idx.query('T', 'hot', { maxNum: 1000 }), expected)
    assert.deepEqual(idx.query('T', 'hot', { maxNum: 3 }), expected.slice(0, 3))
    const { viaMap, viaRead } = bothPaths(idx, 'T', 'hot')
    assert.deepEqual(viaMap, expected)
    assert.deepEqual(viaRead, expected)
    assert.deepEqual(
      idx.damage.map((d) => d.name),
      [second.name, first.name],
      'each damaged file is reported once',
    )
    // Keys whose chains are intact answer as before.
    for (let i = 0; i < N; i++) assert.deepEqual(idx.query('T', `k${i}`), [i * 100], `k${i}`)
  } finally {
    await idx.close()
    await cleanup()
  }
})

/**
 * Opens the index in `indexDir` in a worker thread and queries `key` there (through the map and
 * through pread); resolves with both answers, or rejects when the worker has not answered in time.
 */
async function queryInWorker(indexDir: string, topic: string, key: string): Promise<{ viaQuery: number[]; viaRead: number[] }> {
  const moduleUrl = new URL('../src/internal.js', import.meta.url).href
  const code = `
    const { parentPort, workerData } = require('node:worker_threads')
    import(workerData.moduleUrl).then(async ({ IndexService, indexKeyHash }) => {
      const idx = await IndexService.open({ dir: workerData.indexDir, ...workerData.geometry })
      const viaQuery = idx.query(workerData.topic, workerData.key, { maxNum: 1000 })
      const viaRead = []
      for (const f of [...idx.list].reverse()) f.selectUnmapped(viaRead, indexKeyHash(workerData.topic, workerData.key), 1000, 0, Number.MAX_SAFE_INTEGER)
      await idx.close()
      parentPort.postMessage({ viaQuery, viaRead })
    }, (err) => { throw err })
  `
  const worker = new Worker(code, { eval: true, workerData: { moduleUrl, indexDir, topic, key, geometry: TINY } })
  let timer: NodeJS.Timeout | undefined
  try {
    return await new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`the query did not return within ${WORKER_LIMIT_MS} ms: a chain walk that does not end`)), WORKER_LIMIT_MS)
      worker.once('message', resolve)
      worker.once('error', reject)
    })
  } finally {
    clearTimeout(timer)
    await worker.terminate()
  }
}

test('a flipped bit that turns a chain into a cycle cannot make a query loop', T, async () => {
  const { dir, cleanup } = await tempDir()
  const idx = await openTiny(dir)
  try {
    // A key sharing the slot of 'hot' with another hash: its walk pushes nothing from the hot
    // entries, so only the walk's own bound can end it.
    const slots = TINY.maxHashSlotNum
    const hot = indexKeyHash('T', 'hot')
    const cold = Array.from({ length: 10_000 }, (_, j) => `c${j}`).find((k) => indexKeyHash('T', k) % slots === hot % slots && indexKeyHash('T', k) !== hot)!
    // Entry 1 is the cold key's, entries 2-11 'hot': the chain runs 11 → 10 → … → 2 → 1 → 0.
    idx.put({ topic: 'T', keys: [cold], phyOffset: 0, size: 100, storeTimestamp: T0 })
    for (let i = 1; i <= 10; i++) idx.put({ topic: 'T', keys: ['hot'], phyOffset: i * 100, size: 100, storeTimestamp: T0 + i * 1000 })
    const [file] = listOf(idx)
    await idx.close()
    // Entry 2's prevIndex 1 becomes 3: 3 → 2 → 3 → …
    flipBit(filePath(dir, file!), entryPosition(slots, 2) + INDEX_ENTRY.prevIndex, 1)
    const coldAnswer = await queryInWorker(path.join(dir, 'index'), 'T', cold)
    assert.deepEqual(coldAnswer, { viaQuery: [0], viaRead: [0] })
    const expected = Array.from({ length: 10 }, (_, i) => (10 - i) * 100)
    assert.deepEqual(await queryInWorker(path.join(dir, 'index'), 'T', 'hot'), { viaQuery: expected, viaRead: expected })
  } finally {
    await cleanup()
  }
})

test('a damaged keyHash or timeDiff in a chain is worked around; a self-link ends nothing early', T, async () => {
  const { dir, cleanup } = await tempDir()
  let idx = await openTiny(dir)
  try {
    for (let i = 0; i < 10; i++) idx.put({ topic: 'T', keys: ['hot'], phyOffset: i * 100, size: 100, storeTimestamp: T0 + i * 1000 })
    const [file] = listOf(idx)
    await idx.close()
    const f = filePath(dir, file!)
    const slots = TINY.maxHashSlotNum
    // Entry 8 points at itself, entry 5's timeDiff goes negative, entry 3's keyHash changes.
    writeI32(f, entryPosition(slots, 8) + INDEX_ENTRY.prevIndex, 8)
    flipBit(f, entryPosition(slots, 5) + INDEX_ENTRY.timeDiff, 31)
    flipBit(f, entryPosition(slots, 3) + INDEX_ENTRY.keyHash, 3)
    idx = await openTiny(dir)
    // Entry 5 (offset 400) has no usable time, entry 3 (offset 200) is another key's now.
    const expected = [900, 800, 700, 600, 500, 300, 100, 0]
    assert.deepEqual(idx.query('T', 'hot', { maxNum: 1000 }), expected)
    assert.deepEqual(bothPaths(idx, 'T', 'hot').viaRead, expected)
  } finally {
    await idx.close()
    await cleanup()
  }
})
