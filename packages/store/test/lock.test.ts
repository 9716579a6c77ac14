// The lock file names its holder by pid, boot and process start time: a lock whose pid now
// belongs to another live process (reused after a crash, or after a reboot) is stale and taken
// over; a lock of a live holder refuses the open.
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdir, open, readFile, writeFile } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { MessageStore, StoreError } from '../src/index.js'
import { withTmpfs } from '@mqts/common/testing'
import { NodeFileIO } from '../src/internal.js'
import { acquireStoreLock, currentBootId, decodeLockHolder, processStartTicks } from '../src/lock.js'
import { tempDir } from './helpers.js'

const STORE_MODULE = fileURLToPath(new URL('../src/index.js', import.meta.url))
const LINUX = process.platform === 'linux' && currentBootId() !== undefined

/** A child that opens the store, says "open", then waits (hold) or SIGKILLs itself (crash). */
function opener(dir: string, then: 'hold' | 'crash'): { child: ChildProcess; opened: Promise<void> } {
  const code = `
const { MessageStore } = await import(process.env.STORE_MODULE)
await MessageStore.open({ dir: process.argv[1], commitLogFileSize: 65536, messageIndexEnable: false })
process.stdout.write('open\\n')
if (process.argv[2] === 'crash') process.kill(process.pid, 'SIGKILL')
else setInterval(() => {}, 1000)
`
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, dir, then], { env: { ...process.env, STORE_MODULE }, stdio: ['ignore', 'pipe', 'inherit'] })
  const opened = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('open') && resolve())
    child.on('exit', (c, s) => reject(new Error(`opener exited (${c ?? s}) before opening`)))
  })
  return { child, opened }
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()))
}

/** Another live process, standing in for whatever got the dead holder's pid. */
function bystander(): ChildProcess {
  return spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
}

test('a lock whose pid now belongs to another live process is stale: the store opens', { timeout: 30_000 }, async (t) => {
  if (!LINUX) return void t.skip('process identity needs Linux /proc')
  const { dir, cleanup } = await tempDir()
  let other: ChildProcess | undefined
  try {
    const { child, opened } = opener(dir, 'crash')
    await opened.catch(() => undefined)
    await exited(child)
    // Started later than the holder (start times count 10 ms clock ticks).
    other = bystander()
    while (processStartTicks(other.pid!) === undefined) await new Promise((r) => setTimeout(r, 10))
    const lockFile = path.join(dir, 'lock')
    const text = await readFile(lockFile, 'utf8')
    const holder = decodeLockHolder(text)
    assert.equal(holder?.pid, child.pid, `the lock names its holder: ${text}`)
    assert.notEqual(processStartTicks(other.pid!), holder?.startTicks)
    // The killed holder's pid, now another process's.
    await writeFile(lockFile, text.replace(/^\d+/, String(other.pid)))
    const store = await MessageStore.open({ dir, commitLogFileSize: 65536, messageIndexEnable: false })
    assert.equal(decodeLockHolder(await readFile(lockFile, 'utf8'))?.pid, process.pid, 'the lock was taken over')
    await store.close()
    // The same after a reboot: a live pid, a boot that is over.
    await writeFile(lockFile, `${other.pid} 00000000-0000-0000-0000-000000000000 ${holder?.startTicks ?? '1'}\n`)
    await (await MessageStore.open({ dir, commitLogFileSize: 65536, messageIndexEnable: false })).close()
  } finally {
    other?.kill('SIGKILL')
    if (other) await exited(other)
    await cleanup()
  }
})

test('a lock held by a live process refuses the open with LOCKED', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const { child, opened } = opener(dir, 'hold')
  try {
    await opened
    await assert.rejects(MessageStore.open({ dir, commitLogFileSize: 65536, messageIndexEnable: false }), (e: unknown) => e instanceof StoreError && e.code === 'LOCKED' && e.message.includes(String(child.pid)))
  } finally {
    child.kill('SIGKILL')
    await exited(child)
    await cleanup()
  }
})

test('on a full disk a stale lock is taken over in place (an atomic replace would need a new block)', { timeout: 30_000 }, async (t) => {
  const skip = await withTmpfs('1m', async (mnt) => {
    const dir = path.join(mnt, 'store')
    await mkdir(dir)
    const lockFile = path.join(dir, 'lock')
    // A stale lock: a process that has exited.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!
    await writeFile(lockFile, `${dead} 00000000-0000-0000-0000-000000000000 1\n`)
    await fillDisk(mnt)
    await acquireStoreLock(new NodeFileIO(), dir, lockFile)
    assert.equal(decodeLockHolder(await readFile(lockFile, 'utf8'))?.pid, process.pid)
  })
  if (skip) t.skip(skip)
})

/** Writes a file until the disk says ENOSPC. */
async function fillDisk(mnt: string): Promise<void> {
  const h = await open(path.join(mnt, 'filler'), 'w')
  try {
    const chunk = Buffer.alloc(64 * 1024, 1)
    for (;;) await h.write(chunk)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
  } finally {
    await h.close()
  }
}
