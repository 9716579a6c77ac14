// A real full disk: a 600 KiB tmpfs (mounted only when running as root; skipped otherwise). In
// both flush modes the put that cannot get space fails with DISK_FULL (async: the prefault guard
// gets EFAULT from madvise, never a SIGBUS; sync: the next file cannot be created), every
// acknowledged message stays readable, and the store reopens with all of them.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, StoreError, type PutResult } from '../src/index.js'
import { forceGc } from '../src/file-io.js'
import { SimFileIO } from '../src/internal.js'

for (const flush of ['async', 'sync'] as const) {
  test(`${flush}: a real full disk fails the put with DISK_FULL and loses nothing`, { timeout: 30_000 }, async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to mount a small tmpfs')
    const mountPoint = await mkdtemp(path.join(tmpdir(), 'mqts-fullfs-'))
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=600k', 'tmpfs', mountPoint], { stdio: 'ignore' })
    } catch {
      await rm(mountPoint, { recursive: true, force: true })
      return t.skip('cannot mount a tmpfs here')
    }
    // The index is off: its sparse 420 MB files and spare file have their own full-disk test (packages/index).
    const options = { dir: path.join(mountPoint, 'store'), flush, commitLogFileSize: 256 * 1024, messageIndexEnable: false }
    try {
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
    } finally {
      // Closed files are unmapped by the GC (docs/design/mmap.md): close() ran one, and V8 may
      // release the memory a moment later, so a busy mount is retried briefly before a lazy one.
      let unmounted = false
      for (let i = 0; i < 40 && !unmounted; i++) {
        try {
          execFileSync('umount', [mountPoint], { stdio: 'ignore' })
          unmounted = true
        } catch {
          forceGc()
          await new Promise((r) => setTimeout(r, 50))
        }
      }
      if (!unmounted) execFileSync('umount', ['-l', mountPoint], { stdio: 'ignore' })
      await rm(mountPoint, { recursive: true, force: true })
      assert.ok(unmounted, 'every mapping of the closed store was released')
    }
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
        attempts.set(queueId, (attempts.get(queueId) ?? 0) + 1)
        try {
          acked.push({ ...(await store.put({ topic: 'cqfull', queueId, body: `m${i}` })), queueId })
        } catch (err) {
          assert.ok(err instanceof StoreError && err.code === 'DISK_FULL', `expected DISK_FULL, got ${String(err)}`)
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
