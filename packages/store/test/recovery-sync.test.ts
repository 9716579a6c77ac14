// How crash recovery keeps its cost to what needs checking without weakening what it promises:
// the CommitLog bytes it accepts are synced in the background while it scans and re-dispatches,
// and the checkpoint is held back until that sync is done; the holes of sparse files (the tail
// of a file a killed process was writing) are skipped, not read.
import assert from 'node:assert/strict'
import { open, rm } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, StoreError } from '../src/index.js'
import { CHECKPOINT, CRC_LATER_MAX_BODY_BYTES, CRC_RUN_RECORDS, NodeFileIO, SimFileIO, StoreCheckpoint, decodeCheckpoint, native } from '../src/internal.js'
import { SIM_INDEX, simDir, tempDir } from './helpers.js'

test('the checkpoint holds its writes until the sync it waits for is done, and fails them when it failed', { timeout: 30_000 }, async (t) => {
  const io = new SimFileIO()
  const file = path.join(simDir(t), 'checkpoint')
  await io.mkdirp(path.dirname(file))
  const cp = await StoreCheckpoint.open(io, file)
  const onDisk = async (): Promise<number> => decodeCheckpoint((await io.readFile(file))!.subarray(0, CHECKPOINT.usedBytes)).physicalFlushedOffset
  let release!: () => void
  cp.holdWritesUntil(new Promise<void>((resolve) => (release = resolve)))
  cp.values.physicalFlushedOffset = 1000
  let flushed = false
  const flush = cp.flush().then(() => (flushed = true))
  await new Promise((resolve) => setTimeout(resolve, 20))
  assert.equal(flushed, false, 'the flush waits for the sync')
  assert.equal(await onDisk(), 0, 'nothing written meanwhile')
  release()
  await flush
  assert.equal(await onDisk(), 1000)

  const failure = new StoreError('FLUSH_FAILED', 'fdatasync failed (test)')
  cp.holdWritesUntil(Promise.reject(failure))
  cp.values.physicalFlushedOffset = 2000
  await assert.rejects(cp.flush(), (e: unknown) => e === failure)
  await assert.rejects(cp.write(), (e: unknown) => e === failure, 'a later write fails too')
  assert.equal(await onDisk(), 1000)
  await cp.close()
})

test('after a kill, a failed fdatasync of the recovered CommitLog fails the open with FLUSH_FAILED and the checkpoint vouches for nothing new', { timeout: 30_000 }, async (t) => {
  const io = new SimFileIO()
  const dir = simDir(t)
  const options = { dir, commitLogFileSize: 64 * 1024, ...SIM_INDEX }
  const store = await MessageStore.open({ ...options, fileIO: io })
  for (let i = 0; i < 40; i++) await store.put({ topic: 't', queueId: i % 2, body: Buffer.alloc(500, i) })
  const killed = io.processCrash()
  await store.close().catch(() => undefined)
  const checkpointFile = path.join(dir, 'checkpoint')
  const durableBefore = decodeCheckpoint((await killed.readFile(checkpointFile))!.subarray(0, CHECKPOINT.usedBytes)).physicalFlushedOffset
  killed.failDatasyncs = { code: 'EIO', count: 1, pathIncludes: 'commitlog' }
  await assert.rejects(MessageStore.open({ ...options, fileIO: killed }), (e: unknown) => e instanceof StoreError && e.code === 'FLUSH_FAILED')
  const after = decodeCheckpoint((await killed.readFile(checkpointFile))!.subarray(0, CHECKPOINT.usedBytes))
  assert.equal(after.physicalFlushedOffset, durableBefore, 'the checkpoint was not raised over bytes whose sync failed')
  // The next open syncs them and recovers every message.
  const again = await MessageStore.open({ ...options, fileIO: killed })
  try {
    assert.equal(again.maxQueueOffset('t', 0) + again.maxQueueOffset('t', 1), 40)
    assert.equal(again.recovery.cleanShutdown, false)
  } finally {
    await again.close()
  }
})

test("the store's file layer reports the data regions of a sparse file, so recovery reads none of its holes", { timeout: 30_000 }, async (t) => {
  if (!native()?.seekData) return t.skip('native helper not built here (or built before seekData)')
  const { dir, cleanup } = await tempDir()
  t.after(cleanup)
  const file = path.join(dir, 'sparse')
  const size = 16 * 1024 * 1024
  const io = new NodeFileIO()
  await io.allocate(file, size, { zeroFill: false })
  const h = await open(file, 'r+')
  await h.write(Buffer.alloc(4096, 1), 0, 4096, 0)
  await h.write(Buffer.alloc(4096, 2), 0, 4096, 8 * 1024 * 1024)
  await h.close()
  const data = await io.open(file)
  try {
    const regions = data.dataRegions?.()
    assert.ok(regions, 'regions are known with the native helper')
    for (let i = 0; i < regions.length; i++) {
      const [start, end] = regions[i]!
      assert.ok(start < end && end <= size && (i === 0 || regions[i - 1]![1] < start), `regions ascending and disjoint: ${JSON.stringify(regions)}`)
    }
    const covered = (at: number): boolean => regions.some(([s, e]) => s <= at && at < e)
    for (const at of [0, 4095, 8 * 1024 * 1024, 8 * 1024 * 1024 + 4095]) assert.ok(covered(at), `byte ${at} holds data: ${JSON.stringify(regions)}`)
    // A file system without holes reports the whole file as data; one with them (ext4, xfs,
    // tmpfs, btrfs) leaves the unwritten middle out.
    if (regions.length > 1) assert.equal(covered(4 * 1024 * 1024), false, `the hole is left out: ${JSON.stringify(regions)}`)
  } finally {
    await data.close()
    await rm(file, { force: true })
  }
})

test('after a kill, a body whose CRC fails anywhere in a run of records the scan checks together ends the log exactly there', { timeout: 60_000 }, async (t) => {
  const io = new SimFileIO()
  const dir = simDir(t)
  const options = { dir, commitLogFileSize: 4 * 1024 * 1024, ...SIM_INDEX }
  const store = await MessageStore.open({ ...options, fileIO: io })
  const count = 2100
  const puts = []
  // Every 7th body is large: its CRC is checked at once, between the runs of small ones.
  const bodyOf = (i: number): Buffer => {
    const mark = Buffer.from(`body-${String(i).padStart(6, '0')}`)
    return i % 7 === 0 ? Buffer.concat([mark, Buffer.alloc(CRC_LATER_MAX_BODY_BYTES, 'x')]) : mark
  }
  for (let i = 0; i < count; i++) puts.push(await store.put({ topic: 'runs', queueId: i % 3, body: bodyOf(i) }))
  const commitLogFile = path.join(dir, 'commitlog', '0'.padStart(20, '0'))
  // The first record of the scan (large), the last of a run, the first of the next, one inside,
  // a large one and the small one after it, the last.
  const run = CRC_RUN_RECORDS
  const victims = [0, run, run + 1, 3 * run + 5, 700, 701, count - 1]
  const disks = victims.map(() => io.processCrash())
  await store.close()
  for (const [i, victim] of victims.entries()) {
    const killed = disks[i]!
    const image = killed.files.get(commitLogFile)!
    const body = Buffer.from(`body-${String(victim).padStart(6, '0')}`)
    // What the killed process wrote (the durable image may not hold it yet).
    const at = image.volatile.indexOf(body)
    assert.ok(at > 0, `body ${victim} found`)
    image.volatile[at + 3] ^= 0x20
    if (image.durable.subarray(at, at + body.length).equals(body)) image.durable[at + 3] ^= 0x20
    const reopened = await MessageStore.open({ ...options, fileIO: killed })
    try {
      const r = reopened.recovery
      assert.equal(r.truncated?.atOffset, puts[victim]!.physicalOffset, `victim ${victim}`)
      assert.match(r.truncated?.reason ?? '', /body CRC/)
      assert.equal(r.recordsScanned, victim, `records before victim ${victim} accepted`)
      assert.equal(reopened.maxPhysicalOffset, puts[victim]!.physicalOffset)
      let kept = 0
      for (let q = 0; q < 3; q++) kept += reopened.maxQueueOffset('runs', q)
      assert.equal(kept, victim)
    } finally {
      await reopened.close()
    }
  }
})
