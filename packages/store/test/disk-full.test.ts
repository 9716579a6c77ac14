// A real full disk: a 600 KiB tmpfs (mounted only when running as root; skipped otherwise). In
// both flush modes the put that cannot get space fails with DISK_FULL (async: the prefault guard
// gets EFAULT from madvise, never a SIGBUS; sync: the next file cannot be created), every
// acknowledged message stays readable, and the store reopens with all of them.
import assert from 'node:assert/strict'
import { open, rm, stat } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, StoreError, type PutResult } from '../src/index.js'
import { withTmpfs } from '@mqts/common/testing'
import { SimFileIO, type DataFile, type FileIO } from '../src/internal.js'

for (const flush of ['async', 'sync'] as const) {
  test(`${flush}: a real full disk fails the put with DISK_FULL and loses nothing`, { timeout: 30_000 }, async (t) => {
    // Unmounting fails the test when a mapping of the closed store was never released.
    const skip = await withTmpfs('600k', async (mountPoint) => {
      // The index is off: its sparse 420 MB files and spare file have their own full-disk test (packages/index).
      const options = { dir: path.join(mountPoint, 'store'), flush, commitLogFileSize: 256 * 1024, messageIndexEnable: false }
      const store = await MessageStore.open(options)
      const acked: PutResult[] = []
      let error: unknown
      for (let i = 0; i < 2000 && !error; i++) {
        try {
          acked.push(await store.put({ topic: 'full', queueId: 0, body: Buffer.alloc(1000, i & 0xff) }))
        } catch (err) {
          error = err
        }
      }
      assert.ok(error instanceof StoreError && error.code === 'DISK_FULL', `expected DISK_FULL, got ${String(error)}`)
      assert.ok(acked.length > 100)
      for (const [i, r] of acked.entries()) assert.equal((await store.lookup(r.physicalOffset)).body[0], i & 0xff)
      await store.close()
      const again = await MessageStore.open(options)
      try {
        assert.equal(again.maxQueueOffset('full', 0), acked.length)
        const last = acked.at(-1)!
        assert.equal((await again.lookup(last.physicalOffset)).queueOffset, last.queueOffset)
      } finally {
        await again.close()
      }
    })
    if (skip) t.skip(skip)
  })
}

for (const flush of ['async', 'sync'] as const) {
  test(`${flush}: while ConsumeQueues cannot grow, a put answers DISK_FULL, never PUT_OK for a message get cannot read (simulated disk)`, { timeout: 30_000 }, async () => {
    // Room for the two CommitLog files (the one written and the one made ahead) and a few
    // ConsumeQueue files of 1,000 bytes: new queues soon find no space for their first file.
    const io = new SimFileIO({ capacityBytes: 2 * 256 * 1024 + 16 * 1024 })
    const options = { dir: '/sim/cq-full', fileIO: io, flush, commitLogFileSize: 256 * 1024, consumeQueueUnitsPerFile: 50, messageIndexEnable: false }
    const store = await MessageStore.open(options)
    const acked: Array<PutResult & { queueId: number }> = []
    const attempts = new Map<number, number>()
    let refused = 0
    try {
      for (let i = 0; i < 200; i++) {
        const queueId = i % 64
        try {
          acked.push({ ...(await store.put({ topic: 'cqfull', queueId, body: `m${i}` })), queueId })
          attempts.set(queueId, (attempts.get(queueId) ?? 0) + 1)
        } catch (err) {
          assert.ok(err instanceof StoreError && err.code === 'DISK_FULL', `expected DISK_FULL, got ${String(err)}`)
          // Stored but not dispatched (it says where), or refused before anything was written.
          if (err.details.physicalOffset !== undefined) attempts.set(queueId, (attempts.get(queueId) ?? 0) + 1)
          refused++
        }
      }
      assert.ok(refused > 0, 'the disk filled up')
      assert.ok(acked.length > 0)
      for (const r of acked) {
        const got = await store.get({ topic: 'cqfull', queueId: r.queueId, offset: r.queueOffset, maxMessages: 1 })
        assert.equal(got.status, 'FOUND', `acknowledged message at queue offset ${r.queueOffset} is readable`)
        assert.equal(got.messages[0]!.physicalOffset, r.physicalOffset)
      }
      // Space returns: the records kept in the log are dispatched, and puts work again.
      io.capacityBytes = Number.POSITIVE_INFINITY
      await store.whenDispatched()
      for (const [queueId, n] of attempts) assert.equal(store.maxOffset('cqfull', queueId), n, 'every stored record is dispatched once space returns')
      const after = await store.put({ topic: 'cqfull', queueId: 63, body: 'after' })
      assert.equal((await store.get({ topic: 'cqfull', queueId: 63, offset: after.queueOffset })).messages[0]!.body.toString(), 'after')
    } finally {
      await store.close()
    }
    const again = await MessageStore.open({ ...options, fileIO: io.processCrash() })
    try {
      assert.equal(again.recovery.cleanShutdown, true)
      for (const r of acked) assert.equal((await again.lookup(r.physicalOffset)).queueOffset, r.queueOffset)
    } finally {
      await again.close()
    }
  })
}

/** Writes a file of 4 KiB pages until the file system has no page left; returns its path. */
async function fillUp(dir: string): Promise<string> {
  const file = path.join(dir, 'filler')
  const handle = await open(file, 'w')
  try {
    const page = Buffer.alloc(4096, 1)
    for (;;) await handle.write(page)
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC')
  } finally {
    await handle.close()
  }
  return file
}

test('on a real full disk persistConsumerOffsets and close reject with DISK_FULL, and a close whose data is synced leaves no abort marker', { timeout: 30_000 }, async (t) => {
  const skip = await withTmpfs('2m', async (mountPoint) => {
    const options = { dir: path.join(mountPoint, 'store'), commitLogFileSize: 256 * 1024, messageIndexEnable: false }
    const store = await MessageStore.open(options)
    let closed = false
    try {
      await store.put({ topic: 'offs', queueId: 0, body: 'one' })
      store.commitOffset('g', 'offs', 0, 1)
      await store.persistConsumerOffsets()
      const filler = await fillUp(mountPoint)
      store.commitOffset('g', 'offs', 0, 2)
      await assert.rejects(store.persistConsumerOffsets(), (e: unknown) => e instanceof StoreError && e.code === 'DISK_FULL')
      closed = true
      await assert.rejects(store.close(), (e: unknown) => e instanceof StoreError && e.code === 'DISK_FULL')
      assert.equal(await stat(path.join(options.dir, 'abort')).then(() => true, () => false), false, 'the data was synced: no crash recovery next time')
      await rm(filler)
    } finally {
      if (!closed) await store.close().catch(() => undefined)
    }
    const again = await MessageStore.open(options)
    try {
      assert.equal(again.recovery.cleanShutdown, true)
      assert.equal(again.committedOffset('g', 'offs', 0), 1, 'the offset persisted before the disk filled')
    } finally {
      await again.close()
    }
  })
  if (skip) t.skip(skip)
})

test('a ConsumeQueue file whose first write fails with ENOSPC is closed at once', { timeout: 30_000 }, async () => {
  const sim = new SimFileIO()
  const held = new Map<string, number>()
  // The simulated disk, counting the descriptors held per file.
  const io: FileIO = Object.assign(Object.create(sim) as SimFileIO, {
    open: async (file: string): Promise<DataFile> => {
      const f = await sim.open(file)
      held.set(f.path, (held.get(f.path) ?? 0) + 1)
      return {
        ...f,
        close: async () => {
          held.set(f.path, held.get(f.path)! - 1)
          await f.close()
        },
      }
    },
  })
  const store = await MessageStore.open({ dir: '/sim/cq-enospc', fileIO: io, commitLogFileSize: 256 * 1024, consumeQueueUnitsPerFile: 50, messageIndexEnable: false })
  try {
    await store.put({ topic: 'enospc', queueId: 0, body: 'first' })
    sim.failWrites = { code: 'ENOSPC', count: 1, pathIncludes: path.join('consumequeue', 'enospc', '1') }
    await assert.rejects(store.put({ topic: 'enospc', queueId: 1, body: 'no room' }), (e: unknown) => e instanceof StoreError && e.code === 'DISK_FULL')
    const leaked = [...held].filter(([p, n]) => p.includes(path.join('consumequeue', 'enospc', '1')) && n > 0)
    assert.deepEqual(leaked, [], 'no descriptor of the failed file is left open')
  } finally {
    await store.close()
  }
})

test('on a 16 MiB disk the default index geometry is refused at open with the options to change; a smaller one indexes, reads and reopens full', { timeout: 60_000 }, async (t) => {
  const skip = await withTmpfs('16m', async (mountPoint) => {
    const dir = path.join(mountPoint, 'store')
    await assert.rejects(MessageStore.open({ dir }), (e: unknown) => {
      assert.ok(e instanceof StoreError && e.code === 'DISK_FULL', `got ${String(e)}`)
      for (const option of ['maxHashSlotNum', 'maxIndexNum', 'messageIndexEnable']) assert.match(e.message, new RegExp(option))
      return true
    })
    const options = { dir, commitLogFileSize: 1024 * 1024, maxHashSlotNum: 10_000, maxIndexNum: 40_000 }
    let store = await MessageStore.open(options)
    const acked: Array<{ queueId: number; key: string; physicalOffset: number; queueOffset: number }> = []
    let full = 0
    try {
      for (let i = 0; i < 40_000 && full < 20; i++) {
        const queueId = i % 8
        try {
          const r = await store.put({ topic: 'small', queueId, body: Buffer.alloc(500, i & 0xff), keys: `key-${i}` })
          acked.push({ queueId, key: `key-${i}`, physicalOffset: r.physicalOffset, queueOffset: r.queueOffset })
        } catch (err) {
          assert.ok(err instanceof StoreError && err.code === 'DISK_FULL', `expected DISK_FULL, got ${String(err)}`)
          full++
        }
      }
      assert.ok(full > 0, 'the disk filled up')
      assert.ok(acked.length > 1000)
      const check = async (s: MessageStore): Promise<void> => {
        for (const [i, a] of acked.entries()) {
          if (i % 97 !== 0 && i !== acked.length - 1) continue
          const got = await s.get({ topic: 'small', queueId: a.queueId, offset: a.queueOffset, maxMessages: 1 })
          assert.equal(got.messages[0]?.physicalOffset, a.physicalOffset, `queue ${a.queueId} offset ${a.queueOffset} readable`)
          assert.deepEqual((await s.queryByKey('small', a.key)).map((m) => m.physicalOffset), [a.physicalOffset])
        }
      }
      await check(store)
      await store.close().catch((err: unknown) => assert.ok(err instanceof StoreError && err.code === 'DISK_FULL', `close: ${String(err)}`))
      // Reopens on the full disk (twice: the first open's own flushes find no room either).
      for (let round = 0; round < 2; round++) {
        store = await MessageStore.open(options)
        await check(store)
        await store.close().catch((err: unknown) => assert.ok(err instanceof StoreError && err.code === 'DISK_FULL', `close: ${String(err)}`))
      }
    } finally {
      await store.close().catch(() => undefined)
    }
  })
  if (skip) t.skip(skip)
})

test('a store whose records could not be dispatched for lack of space reopens on the still full disk, refuses appends until they are, then continues their queue offsets (simulated disk)', { timeout: 30_000 }, async () => {
  // The simulated disk, with no room for new ConsumeQueue files while `cqFull`.
  const sim = new SimFileIO()
  let cqFull = false
  const io: FileIO = Object.assign(Object.create(sim) as SimFileIO, {
    allocate: async (file: string, size: number): Promise<void> => {
      if (cqFull && file.includes('consumequeue')) throw Object.assign(new Error(`ENOSPC: allocate ${file}`), { code: 'ENOSPC' })
      return sim.allocate(file, size)
    },
  })
  const options = { dir: '/sim/cq-backlog', fileIO: io, commitLogFileSize: 256 * 1024, consumeQueueUnitsPerFile: 50, messageIndexEnable: false, flushConsumeQueueIntervalMs: 20 }
  let store = await MessageStore.open(options)
  let stored = 0
  try {
    await store.put({ topic: 'backlog', queueId: 0, body: 'first' })
    stored++
    // Queue 1 gets no file: its message is stored, not dispatched, and not acknowledged.
    cqFull = true
    await assert.rejects(store.put({ topic: 'backlog', queueId: 1, body: 'stuck' }), (e: unknown) => e instanceof StoreError && e.code === 'DISK_FULL' && e.details.physicalOffset !== undefined)
    await assert.rejects(store.put({ topic: 'backlog', queueId: 1, body: 'refused' }), (e: unknown) => e instanceof StoreError && e.code === 'DISK_FULL' && e.details.physicalOffset === undefined)
  } finally {
    await store.close()
  }
  store = await MessageStore.open(options)
  try {
    assert.equal(store.recovery.cleanShutdown, true)
    await assert.rejects(store.put({ topic: 'backlog', queueId: 1, body: 'still refused' }), (e: unknown) => e instanceof StoreError && e.code === 'DISK_FULL')
    assert.equal(store.maxOffset('backlog', 1), 0)
    cqFull = false
    let r: PutResult | undefined
    for (let i = 0; i < 200 && !r; i++) {
      r = await store.put({ topic: 'backlog', queueId: 1, body: 'after' }).catch(() => undefined)
      if (!r) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    assert.ok(r, 'appends resume once space returns')
    assert.equal(r.queueOffset, 1, "the stored message kept queue offset 0; the next put takes 1")
    const got = await store.get({ topic: 'backlog', queueId: 1, offset: 0 })
    assert.deepEqual(got.messages.map((m) => m.body.toString()), ['stuck', 'after'])
    assert.equal(stored, 1)
  } finally {
    await store.close()
  }
})
