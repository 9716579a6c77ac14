// Crash recovery on tmpfs (mounted only when running as root; skipped otherwise), where a read of a
// hole through a shared map allocates a page: recovery must never touch the sparse tail of the
// last CommitLog file through the map. On a full tmpfs such a read is a SIGBUS that kills the
// process; with room left it allocates the whole tail at every recovery.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { rm, statfs, writeFile } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { withTmpfs } from '@mqts/common/testing'
import { fileURLToPath } from 'node:url'

const STORE_MODULE = fileURLToPath(new URL('../src/index.js', import.meta.url))

/**
 * One step in a child process, so a SIGBUS kills only the child. 'fill' puts 1000-byte messages
 * until the store answers DISK_FULL or `count` are stored, then SIGKILLs itself (the abort marker
 * stays, so the next open runs crash recovery); 'open' opens the store and reports how it went.
 */
const CHILD = `
const { MessageStore } = await import(process.env.STORE_MODULE)
const [step, dir, fileSize, count] = process.argv.slice(1)
// Small ConsumeQueue files: a put is acknowledged only once its unit is written, so the queue must not take the space.
const options = { dir, flush: 'async', commitLogFileSize: Number(fileSize), consumeQueueUnitsPerFile: 2000, messageIndexEnable: false }
if (step === 'fill') {
  const store = await MessageStore.open(options)
  let acked = 0
  try {
    while (acked < Number(count)) { await store.put({ topic: 'full', queueId: 0, body: Buffer.alloc(1000, acked & 0xff) }); acked++ }
  } catch (err) {
    if (err.code !== 'DISK_FULL') throw err
  }
  await store.flush()
  process.stdout.write(JSON.stringify({ acked }))
  process.kill(process.pid, 'SIGKILL')
} else {
  try {
    const store = await MessageStore.open(options)
    const out = { opened: true, stored: store.maxQueueOffset('full', 0) }
    await store.close().catch(() => undefined)
    process.stdout.write(JSON.stringify(out))
  } catch (err) {
    process.stdout.write(JSON.stringify({ opened: false, code: err.code, message: String(err) }))
  }
}
`

function runChild(step: 'fill' | 'open', dir: string, fileSize: number, count = 0): { status: number | null; signal: NodeJS.Signals | null; out: any; stderr: string } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD, step, dir, String(fileSize), String(count)], {
    env: { ...process.env, STORE_MODULE },
    encoding: 'utf8',
    timeout: 60_000,
  })
  let out: any
  try {
    out = JSON.parse(r.stdout)
  } catch {
    out = undefined
  }
  return { status: r.status, signal: r.signal, out, stderr: r.stderr }
}

async function usedBytes(dir: string): Promise<number> {
  const s = await statfs(dir)
  return (s.blocks - s.bfree) * s.bsize
}

test('crash recovery on a full tmpfs opens (or answers DISK_FULL) instead of dying of SIGBUS', { timeout: 120_000 }, async (t) => {
  const skip = await withTmpfs('4m', async (mountPoint) => {
    const dir = path.join(mountPoint, 'store')
    const fileSize = 1024 * 1024
    // 64 KiB held back while the store fills the disk, then given back: enough for the lock and
    // marker files (an open on a disk with no page left fails early with DISK_FULL), far less
    // than the sparse tail of the last file.
    const ballast = path.join(mountPoint, 'ballast')
    await writeFile(ballast, Buffer.alloc(64 * 1024, 1))
    const fill = runChild('fill', dir, fileSize, 5000)
    assert.equal(fill.signal, 'SIGKILL', `the writer killed itself after the disk filled: ${fill.stderr}`)
    assert.ok(fill.out?.acked > 100, `messages were stored before the disk filled: ${JSON.stringify(fill.out)}`)
    await rm(ballast)
    const open = runChild('open', dir, fileSize)
    assert.equal(open.signal, null, `the recovering process died of ${open.signal}: ${open.stderr}`)
    assert.equal(open.status, 0, open.stderr)
    if (open.out?.opened) assert.ok(open.out.stored >= fill.out.acked, `recovered ${open.out.stored} of ${fill.out.acked} flushed messages`)
    else assert.equal(open.out?.code, 'DISK_FULL', `refused with ${JSON.stringify(open.out)}`)
  })
  if (skip) t.skip(skip)
})

test('crash recovery on tmpfs does not allocate the sparse tail of the last file', { timeout: 120_000 }, async (t) => {
  const skip = await withTmpfs('96m', async (mountPoint) => {
    const dir = path.join(mountPoint, 'store')
    const fileSize = 64 * 1024 * 1024
    const fill = runChild('fill', dir, fileSize, 200)
    assert.equal(fill.signal, 'SIGKILL', fill.stderr)
    const before = await usedBytes(mountPoint)
    const open = runChild('open', dir, fileSize)
    assert.equal(open.signal, null, open.stderr)
    assert.equal(open.out?.opened, true, JSON.stringify(open.out))
    assert.equal(open.out.stored, 200)
    // The reopened writer faults in a range ahead of its position (at most the background
    // prefault's reach); reading the whole 64 MiB tail through the map would take all of it.
    const grown = (await usedBytes(mountPoint)) - before
    assert.ok(grown < fileSize / 2, `recovery allocated ${grown} bytes of a ${fileSize}-byte file's tail (${before} used before)`)
  })
  if (skip) t.skip(skip)
})
