// Where recovery starts reading: a clean open reads no record (the checkpoint holds the end of
// the log), a crash recovery checks only what the checkpoint's durable offset does not cover,
// and that offset is always a record boundary, also when a sync flush splits a group's write.
import assert from 'node:assert/strict'
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, type PutResult } from '../src/index.js'
import { NodeFileIO, type DataFile } from '../src/file-io.js'
import { SimFileIO } from '../src/sim-file-io.js'
import { tempDir } from './helpers.js'

const FILE = 256 * 1024

/** Copies a store directory as a killed process leaves it (the store stays open; abort file present). */
async function crashCopy(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true })
  for (const e of await readdir(from, { withFileTypes: true })) {
    const src = path.join(from, e.name)
    const dst = path.join(to, e.name)
    if (e.isDirectory()) await crashCopy(src, dst)
    else await copyFile(src, dst).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
    })
  }
}

async function putMany(store: MessageStore, n: number, from = 0): Promise<PutResult[]> {
  const out: PutResult[] = []
  for (let i = from; i < from + n; i++) out.push(await store.put({ topic: 'rs', queueId: i % 3, body: `body-${i}-`.padEnd(300 + (i % 40), '.'), keys: `k${i}` }))
  return out
}

/** The checkpoint's durable offset as the file holds it (byte 40). */
async function checkpointDurableOffset(dir: string): Promise<number> {
  return Number((await readFile(path.join(dir, 'checkpoint'))).readBigInt64BE(40))
}

async function assertReadable(store: MessageStore, puts: PutResult[]): Promise<void> {
  for (const p of puts) {
    const m = await store.lookup(p.physicalOffset)
    assert.equal(m.queueOffset, p.queueOffset)
  }
}

test('a reopen after a clean close reads no record, over several files', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    for (const flush of ['async', 'sync'] as const) {
      const sub = path.join(dir, flush)
      let store = await MessageStore.open({ dir: sub, flush, commitLogFileSize: FILE })
      const puts = await putMany(store, 2000)
      assert.ok(store.commitLog.queue.files.length >= 3, 'the log spans several files')
      await store.close()
      store = await MessageStore.open({ dir: sub, flush, commitLogFileSize: FILE })
      try {
        const r = store.recovery
        assert.equal(r.cleanShutdown, true)
        assert.equal(r.recordsScanned, 0, `${flush}: no record read`)
        assert.equal(r.bytesScanned, 0)
        assert.equal(r.scanFromOffset, r.durableOffset)
        assert.equal(r.endOffset, puts.at(-1)!.physicalOffset + puts.at(-1)!.size)
        await assertReadable(store, puts)
        // Queue offsets continue from the ConsumeQueues.
        // The zero-filled next file the close left allocated ahead is kept, not made again.
        if (flush === 'sync') assert.equal(r.filesDeleted, 0)
        const next = await store.put({ topic: 'rs', queueId: 0, body: 'next' })
        assert.equal(next.queueOffset, puts.filter((_, i) => i % 3 === 0).length)
        assert.equal(next.physicalOffset, r.endOffset)
        puts.push(...(await putMany(store, 1500, 2000)))
      } finally {
        await store.close()
      }
      store = await MessageStore.open({ dir: sub, flush, commitLogFileSize: FILE })
      try {
        assert.equal(store.recovery.recordsScanned, 0)
        await assertReadable(store, puts)
      } finally {
        await store.close()
      }
    }
  } finally {
    await cleanup()
  }
})

test('crash recovery checks only the records after the checkpoint and rebuilds their queue entries', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const crashed = `${dir}-crashed`
  // Async flush, no background flush: the checkpoint says what flush() made durable.
  const options = { commitLogFileSize: FILE, flushIntervalMs: 60_000, flushThoroughIntervalMs: 60_000 }
  const store = await MessageStore.open({ dir, ...options })
  try {
    const durable = await putMany(store, 700)
    await store.flush()
    const durableEnd = durable.at(-1)!.physicalOffset + durable.at(-1)!.size
    // The checkpoint is written right after the flush, without waiting for it.
    for (let i = 0; i < 200 && (await checkpointDurableOffset(dir)) !== durableEnd; i++) await new Promise((r) => setTimeout(r, 5))
    assert.equal(await checkpointDurableOffset(dir), durableEnd)
    assert.ok(durableEnd % FILE > 0, 'the durable offset lies inside a file, not at its start')
    const after = await putMany(store, 120, 700)
    await crashCopy(dir, crashed)
    const reopened = await MessageStore.open({ dir: crashed, ...options })
    try {
      const r = reopened.recovery
      assert.equal(r.cleanShutdown, false)
      assert.equal(r.durableOffset, durableEnd)
      assert.equal(r.scanFromOffset, durableEnd, 'the scan starts at the durable offset')
      assert.equal(r.recordsScanned, after.length)
      assert.equal(r.endOffset, after.at(-1)!.physicalOffset + after.at(-1)!.size)
      assert.equal(r.bytesScanned, r.endOffset - durableEnd)
      assert.equal(r.truncated, undefined)
      await assertReadable(reopened, [...durable, ...after])
      for (let q = 0; q < 3; q++) {
        const expect = [...durable, ...after].filter((_, i) => i % 3 === q)
        assert.equal(reopened.maxOffset('rs', q), expect.length)
        const got = await reopened.get({ topic: 'rs', queueId: q, offset: expect.length - 5, maxMessages: 5 })
        assert.deepEqual(got.messages.map((m) => m.physicalOffset), expect.slice(-5).map((p) => p.physicalOffset))
      }
      const byKey = await reopened.queryByKey('rs', 'k810')
      assert.deepEqual(byKey.map((m) => m.physicalOffset), [after[110]!.physicalOffset])
    } finally {
      await reopened.close()
    }
  } finally {
    await store.close()
    await cleanup()
    await rm(crashed, { recursive: true, force: true })
  }
})

test('sync flush through the thread pool splits a group only between records: the durable offset stays a record boundary', { timeout: 30_000 }, async () => {
  const io = new SimFileIO()
  const store = await MessageStore.open({ dir: '/sim/split', fileIO: io, messageIndexEnable: false, flush: 'sync', syncFlushConcurrency: 4, commitLogFileSize: 4 * 1024 * 1024 })
  try {
    const seen = new Set<number>()
    const follow = store.commitLog.onCommitted
    store.commitLog.onCommitted = () => {
      seen.add(store.commitLog.flushedOffset)
      return follow?.()
    }
    const puts: PutResult[] = []
    for (let round = 0; round < 5; round++) {
      const batch = await Promise.all(Array.from({ length: 300 }, (_, i) => store.put({ topic: 'rs', queueId: 0, body: Buffer.alloc(200 + ((i * 37) % 300), i) })))
      puts.push(...batch)
    }
    const boundaries = new Set([0, ...puts.map((p) => p.physicalOffset + p.size)])
    assert.ok(seen.size > 5)
    for (const d of seen) assert.ok(boundaries.has(d), `flushed offset ${d} is a record boundary`)
  } finally {
    await store.close()
  }
})

test('a new sync-flush store opens without zero-filling its first file; the file after it is filled ahead', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const size = 32 * 1024 * 1024
  try {
    let store = await MessageStore.open({ dir, flush: 'sync', commitLogFileSize: size })
    const first = path.join(dir, 'commitlog', '00000000000000000000')
    const allocated = (await stat(first)).blocks * 512
    assert.ok(allocated < size / 4, `the first file is sparse at open (${allocated} of ${size} bytes allocated)`)
    const puts = await putMany(store, 200)
    await store.commitLog.queue.whenIdle()
    const second = path.join(dir, 'commitlog', String(size).padStart(20, '0'))
    assert.equal((await stat(second)).blocks * 512 >= size, true, 'the next file is zero-filled ahead')
    await store.close()
    store = await MessageStore.open({ dir, flush: 'sync', commitLogFileSize: size })
    try {
      await assertReadable(store, puts)
    } finally {
      await store.close()
    }
  } finally {
    await cleanup()
  }
})

/** Counts the ConsumeQueue files opened. */
class CountingIO extends NodeFileIO {
  cqOpens = 0
  override async open(file: string): Promise<DataFile> {
    if (file.includes(`${path.sep}consumequeue${path.sep}`)) this.cqOpens++
    return super.open(file)
  }
}

test('a reopen after a clean close takes the ConsumeQueues from the close summary without opening their files', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const options = { dir, commitLogFileSize: FILE }
    let store = await MessageStore.open(options)
    for (let q = 0; q < 40; q++) await store.put({ topic: `T${q % 4}`, queueId: Math.floor(q / 4), body: `m${q}` })
    await store.put({ topic: 'T0', queueId: 0, body: 'second' })
    await store.close()
    const io = new CountingIO()
    store = await MessageStore.open({ ...options, fileIO: io })
    try {
      assert.equal(io.cqOpens, 0, 'no ConsumeQueue file opened at open')
      assert.equal(store.maxOffset('T0', 0), 2)
      assert.equal(store.maxOffset('T3', 9), 1)
      const got = await store.get({ topic: 'T0', queueId: 0, offset: 0, maxMessages: 8 })
      assert.deepEqual(got.messages.map((m) => m.body.toString()), ['m0', 'second'])
      const next = await store.put({ topic: 'T0', queueId: 0, body: 'third' })
      assert.equal(next.queueOffset, 2)
      // Appended since: after a crash the summary is not trusted (it was removed when read).
      await crashCopy(dir, `${dir}-crashed`)
    } finally {
      await store.close()
    }
    const io2 = new CountingIO()
    const crashed = await MessageStore.open({ dir: `${dir}-crashed`, commitLogFileSize: FILE, fileIO: io2 })
    try {
      assert.equal(crashed.recovery.cleanShutdown, false)
      assert.ok(io2.cqOpens > 0, 'crash recovery reads the queues')
      assert.equal(crashed.maxOffset('T0', 0), 3)
    } finally {
      await crashed.close()
      await rm(`${dir}-crashed`, { recursive: true, force: true })
    }
  } finally {
    await cleanup()
  }
})

test('a queue folder deleted after a clean close is rebuilt at the next open', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const options = { dir, commitLogFileSize: FILE }
    let store = await MessageStore.open(options)
    const puts: PutResult[] = []
    for (let i = 0; i < 30; i++) puts.push(await store.put({ topic: 'Q', queueId: i % 3, body: `m${i}` }))
    await store.close()
    await rm(path.join(dir, 'consumequeue', 'Q', '1'), { recursive: true })
    store = await MessageStore.open(options)
    try {
      assert.equal(store.maxOffset('Q', 1), 10)
      const got = await store.get({ topic: 'Q', queueId: 1, offset: 0, maxMessages: 32 })
      assert.deepEqual(got.messages.map((m) => m.physicalOffset), puts.filter((_, i) => i % 3 === 1).map((p) => p.physicalOffset))
    } finally {
      await store.close()
    }
  } finally {
    await cleanup()
  }
})

test('a clean reopen re-dispatches nothing when a queue has its next file made ahead', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    // 12 units in files of 16: past the middle of its file, the queue makes the next one ahead,
    // which the close summary leaves out.
    const options = { dir, flush: 'sync' as const, commitLogFileSize: 64 * 1024, consumeQueueUnitsPerFile: 16, messageIndexEnable: false }
    let store = await MessageStore.open(options)
    const puts: PutResult[] = []
    for (let i = 0; i < 12; i++) puts.push(await store.put({ topic: 'T', queueId: 0, body: `body-${i}` }))
    await store.close()
    assert.deepEqual(await readdir(path.join(dir, 'consumequeue', 'T', '0')), ['00000000000000000000', '00000000000000000320'])
    // A record re-dispatched at open would now land in queue 7: its queue id is rewritten.
    const log = path.join(dir, 'commitlog', '00000000000000000000')
    const bytes = await readFile(log)
    bytes.writeInt32BE(7, puts[10]!.physicalOffset + 12)
    await writeFile(log, bytes)
    store = await MessageStore.open(options)
    try {
      assert.equal(store.recovery.recordsScanned, 0)
      assert.equal(store.maxOffset('T', 7), 0, 'no record was re-dispatched')
      assert.equal(store.maxOffset('T', 0), 12)
      const got = await store.get({ topic: 'T', queueId: 0, offset: 11, maxMessages: 1 })
      assert.equal(Buffer.from(got.messages[0]!.body).toString(), 'body-11')
    } finally {
      await store.close()
    }
  } finally {
    await cleanup()
  }
})
