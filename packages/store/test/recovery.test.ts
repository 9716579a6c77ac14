// Recovery: torn and garbage tails are cut to the last valid record; corruption with valid data
// after it, below the durable offset, fails to open and changes nothing; a simulated power loss
// keeps every message acknowledged under sync flush; ENOSPC and fdatasync failures are typed.
// Seeds are printed; SEED=<n> replays the simulated crash cases.
import assert from 'node:assert/strict'
import { copyFile, mkdir, open, readdir, readFile, rm } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, StoreError, type PutResult } from '../src/index.js'
import { SimFileIO } from '../src/sim-file-io.js'
import { seededRandom } from '@mqts/common'
import { assertDenseLog, SIM_INDEX, simDir, SMALL_FILE, tempDir } from './helpers.js'

const BASE_SEED = process.env.SEED ? Number(process.env.SEED) : Date.now() % 1_000_000

/** Copies a store directory as a crash would leave it (the store stays open; abort file present). */
async function crashCopy(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true })
  for (const name of await readdir(from, { withFileTypes: true })) {
    const src = path.join(from, name.name)
    const dst = path.join(to, name.name)
    if (name.isDirectory()) await crashCopy(src, dst)
    else {
      // A background allocation may rename its temp file while we copy: as in a crash, the
      // copy then simply lacks it.
      await copyFile(src, dst).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err
      })
    }
  }
}

async function overwrite(file: string, at: number, bytes: Buffer): Promise<void> {
  const h = await open(file, 'r+')
  await h.write(bytes, 0, bytes.length, at)
  await h.close()
}

async function putMany(store: MessageStore, n: number, topic = 'rec'): Promise<PutResult[]> {
  const out: PutResult[] = []
  for (let i = 0; i < n; i++) out.push(await store.put({ topic, queueId: i % 2, body: `body-${i}-`.padEnd(200 + (i % 50), '.') }))
  return out
}

for (const damage of ['zeros', 'garbage'] as const) {
  test(`torn tail (${damage}) after a crash is cut to the last valid message`, { timeout: 30_000 }, async () => {
    const { dir, cleanup } = await tempDir()
    const crashed = `${dir}-crashed`
    // Async flush with a long interval: the tail is not yet flushed, as in a real torn write.
    const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, flushIntervalMs: 60_000, flushThoroughIntervalMs: 60_000 })
    try {
      const puts = await putMany(store, 100)
      await crashCopy(dir, crashed)
      const last = puts.at(-1)!
      const damaged = damage === 'zeros' ? Buffer.alloc(40) : Buffer.from(Array.from({ length: 40 }, (_, i) => (i * 89 + 7) & 0xff))
      const file = path.join(crashed, 'commitlog', String(Math.floor(last.physicalOffset / SMALL_FILE) * SMALL_FILE).padStart(20, '0'))
      await overwrite(file, (last.physicalOffset % SMALL_FILE) + last.size - 40, damaged)
      const reopened = await MessageStore.open({ dir: crashed, commitLogFileSize: SMALL_FILE })
      try {
        assert.equal(reopened.recovery.cleanShutdown, false)
        assert.equal(reopened.recovery.truncated?.atOffset, last.physicalOffset)
        assert.equal(reopened.maxPhysicalOffset, last.physicalOffset)
        for (const p of puts.slice(0, -1)) assert.equal((await reopened.lookup(p.physicalOffset)).queueOffset, p.queueOffset)
        await assert.rejects(reopened.lookup(last.physicalOffset), /no message/)
        // The cut bytes are zeroed and the next message takes the torn one's place and offsets.
        const again = await reopened.put({ topic: 'rec', queueId: 1, body: 'replacement' })
        assert.equal(again.physicalOffset, last.physicalOffset)
        assert.equal(again.queueOffset, last.queueOffset)
      } finally {
        await reopened.close()
      }
      const tail = (await readFile(file)).subarray((last.physicalOffset % SMALL_FILE) + 300)
      assert.ok(tail.every((b) => b === 0), 'bytes after the new tail are zero')
    } finally {
      await store.close()
      await cleanup()
      await rm(crashed, { recursive: true, force: true })
    }
  })
}

test('a damaged last record after a clean close is cut and reported', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    let store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, flush: 'sync' })
    const puts = await putMany(store, 20)
    await store.close()
    const last = puts.at(-1)!
    await overwrite(path.join(dir, 'commitlog', '00000000000000000000'), last.physicalOffset + 100, Buffer.from('garbage!'))
    // A clean open trusts the log up to the checkpoint; verifyOnOpen checks its last file.
    store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, verifyOnOpen: true })
    assert.equal(store.recovery.truncated?.atOffset, last.physicalOffset)
    assert.equal(store.recovery.truncated?.belowDurableOffset, true)
    assert.equal(store.recovery.truncated?.validDataFollowed, false)
    assert.equal(store.maxPhysicalOffset, last.physicalOffset)
    await store.close()
  } finally {
    await cleanup()
  }
})

test('corruption in the middle of durable data fails to open, reports the offset, changes nothing', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    let store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, flush: 'sync' })
    const puts = await putMany(store, 50)
    await store.close()
    const victim = puts[20]!
    const file = path.join(dir, 'commitlog', '00000000000000000000')
    const before = await readFile(file)
    await overwrite(file, victim.physicalOffset + 120, Buffer.from([0xde, 0xad, 0xbe, 0xef]))
    const damaged = await readFile(file)
    await assert.rejects(MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, verifyOnOpen: true }), (err: unknown) => {
      assert.ok(err instanceof StoreError)
      assert.equal(err.code, 'CORRUPT_RECORD')
      assert.equal(err.details.physicalOffset, victim.physicalOffset)
      assert.match(err.message, new RegExp(String(victim.physicalOffset)))
      return true
    })
    assert.ok((await readFile(file)).equals(damaged), 'the failed open changed nothing')
    assert.ok(!before.equals(damaged))
    // Opening again still fails (not silently skipped), until the operator asks to truncate.
    await assert.rejects(MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, verifyOnOpen: true }), /CommitLog corrupt at offset/)
    store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, verifyOnOpen: true, onCorruption: 'truncate' })
    assert.equal(store.recovery.truncated?.atOffset, victim.physicalOffset)
    assert.equal(store.recovery.truncated?.validDataFollowed, true)
    assert.equal(store.maxPhysicalOffset, victim.physicalOffset)
    await store.close()
  } finally {
    await cleanup()
  }
})

test('a data file of the wrong size fails to open with CORRUPT_FILE', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE })
    await store.put({ topic: 't', queueId: 0, body: 'x' })
    await store.close()
    await assert.rejects(MessageStore.open({ dir, commitLogFileSize: SMALL_FILE * 2 }), (e: unknown) => e instanceof StoreError && e.code === 'CORRUPT_FILE')
  } finally {
    await cleanup()
  }
})

// ----------------------------------------------------------------------------------------------
// Simulated power loss


for (let round = 0; round < 12; round++) {
  const seed = BASE_SEED + round
  test(`sim power loss, sync flush, seed ${seed}: every acknowledged message survives`, { timeout: 30_000 }, async (t) => {
    const rnd = seededRandom(seed)
    const io = new SimFileIO()
    const options = { dir: simDir(t), flush: 'sync' as const, commitLogFileSize: 16 * 1024, fileIO: io, ...SIM_INDEX }
    const store = await MessageStore.open(options)
    const acked: PutResult[] = []
    const bodies = new Map<number, string>()
    const crashAfter = 20 + Math.floor(rnd() * 300)
    let snapshot: SimFileIO | undefined
    await new Promise<void>((resolve) => {
      let inFlight = 0
      let issued = 0
      const pump = (): void => {
        while (!snapshot && inFlight < 16) {
          const i = issued++
          const body = `m${i}-`.padEnd(50 + Math.floor(rnd() * 900), String.fromCharCode(97 + (i % 26)))
          inFlight++
          store
            .put({ topic: `t${i % 3}`, queueId: i % 4, body, keys: `k${i}` })
            .then((r) => {
              inFlight--
              if (snapshot) return
              acked.push(r)
              bodies.set(r.physicalOffset, body)
              if (acked.length >= crashAfter) {
                snapshot = io.crash(seed)
                resolve()
              } else pump()
            })
            .catch(() => undefined)
        }
      }
      pump()
    })
    await store.close().catch(() => undefined)
    const reopened = await MessageStore.open({ ...options, fileIO: snapshot! })
    try {
      for (const r of acked) {
        const m = await reopened.lookup(r.physicalOffset)
        assert.equal(m.body.toString(), bodies.get(r.physicalOffset), `seed ${seed}: message at ${r.physicalOffset}`)
        assert.equal(m.queueOffset, r.queueOffset)
      }
      await assertDenseLog(reopened)
    } finally {
      await reopened.close()
    }
  })
}

test(`sim power loss, async flush: the recovered log is a valid prefix holding all flushed data (seed ${BASE_SEED})`, { timeout: 30_000 }, async (t) => {
  const dir = simDir(t)
  for (let round = 0; round < 10; round++) {
    const seed = BASE_SEED * 31 + round
    const io = new SimFileIO()
    const options = { dir: path.join(dir, `round-${round}`), commitLogFileSize: 16 * 1024, fileIO: io, flushIntervalMs: 5, flushLeastPages: 1, ...SIM_INDEX }
    const store = await MessageStore.open(options)
    const puts: PutResult[] = []
    const rnd = seededRandom(seed)
    const n = 50 + Math.floor(rnd() * 400)
    for (let i = 0; i < n; i++) {
      puts.push(await store.put({ topic: 'a', queueId: i % 3, body: Buffer.alloc(30 + Math.floor(rnd() * 700), i & 0xff) }))
      if (rnd() < 0.05) await new Promise((r) => setTimeout(r, 6))
    }
    const flushed = store.flushedPhysicalOffset
    const snapshot = io.crash(seed)
    await store.close()
    const reopened = await MessageStore.open({ ...options, fileIO: snapshot })
    try {
      for (const p of puts) {
        if (p.physicalOffset + p.size > flushed) break
        assert.equal((await reopened.lookup(p.physicalOffset)).queueOffset, p.queueOffset, `seed ${seed}`)
      }
      assert.ok(reopened.maxPhysicalOffset >= flushed)
      await assertDenseLog(reopened)
    } finally {
      await reopened.close()
    }
  }
})

test('disk full: the put fails with DISK_FULL, the store stays readable and recovers when space returns', { timeout: 30_000 }, async (t) => {
  // Room for four CommitLog files and two ConsumeQueue files (a put is acknowledged only once its
  // ConsumeQueue unit is written: a queue file that cannot be made fails the put too).
  const io = new SimFileIO({ capacityBytes: 4 * 16 * 1024 + 4096 + 2 * 100 * 20 })
  const store = await MessageStore.open({ dir: simDir(t), flush: 'sync', commitLogFileSize: 16 * 1024, consumeQueueUnitsPerFile: 100, fileIO: io, ...SIM_INDEX })
  try {
    const ok: PutResult[] = []
    let error: unknown
    for (let i = 0; i < 200 && !error; i++) {
      try {
        ok.push(await store.put({ topic: 'full', queueId: 0, body: Buffer.alloc(1000, i) }))
      } catch (err) {
        error = err
      }
    }
    assert.ok(error instanceof StoreError && error.code === 'DISK_FULL', `got ${String(error)}`)
    assert.ok(ok.length >= 30)
    for (const r of ok) assert.equal((await store.lookup(r.physicalOffset)).body[0], ok.indexOf(r) & 0xff)
    await assert.rejects(store.put({ topic: 'full', queueId: 0, body: Buffer.alloc(1000) }), (e: unknown) => e instanceof StoreError && e.code === 'DISK_FULL')
    io.capacityBytes = Number.POSITIVE_INFINITY
    const after = await store.put({ topic: 'full', queueId: 0, body: Buffer.alloc(1000, 7) })
    assert.equal(after.queueOffset, ok.length, 'no queue offset was burnt by the failed puts')
  } finally {
    await store.close()
  }
})

test('a failed fdatasync fails the waiting puts with FLUSH_FAILED and refuses further writes', { timeout: 30_000 }, async (t) => {
  const io = new SimFileIO()
  const dir = simDir(t)
  const store = await MessageStore.open({ dir, flush: 'sync', commitLogFileSize: 16 * 1024, fileIO: io, ...SIM_INDEX })
  await store.put({ topic: 'f', queueId: 0, body: 'fine' })
  io.failDatasyncs = { code: 'EIO', count: 1, pathIncludes: 'commitlog' }
  await assert.rejects(store.put({ topic: 'f', queueId: 0, body: 'lost?' }), (e: unknown) => e instanceof StoreError && e.code === 'FLUSH_FAILED')
  await assert.rejects(store.put({ topic: 'f', queueId: 0, body: 'more' }), (e: unknown) => e instanceof StoreError && e.code === 'FLUSH_FAILED')
  assert.equal((await store.lookup(0)).body.toString(), 'fine')
  // What the log holds past the failed sync is unsure: close says so and keeps the abort marker.
  await assert.rejects(store.close(), (e: unknown) => e instanceof StoreError && e.code === 'FLUSH_FAILED')
  assert.equal(await io.exists(path.join(dir, 'abort')), true)
})
