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
