// Consumer offsets (persisted in RocketMQ's consumerOffset.json shape, atomically, with a backup)
// and retention driven by an injected clock and a simulated disk, never by sleeping.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFile, readdir, utimes, writeFile } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, type MessageStoreOptions } from '../src/index.js'
import { SimFileIO, parseConsumerOffsets } from '../src/internal.js'
import { SIM_INDEX, SMALL_FILE, reopen, simDir, tempDir } from './helpers.js'

const HOUR = 3600 * 1000

test('consumer offsets: commit, read back, persisted on close in RocketMQ shape, reloaded', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const options: MessageStoreOptions = { dir }
  try {
    let store = await MessageStore.open(options)
    assert.equal(store.committedOffset('g1', 'orders', 0), -1, 'never committed: -1')
    store.commitOffset('g1', 'orders', 0, 12)
    store.commitOffset('g1', 'orders', 3, 7)
    store.commitOffset('g2', 'orders', 0, 1)
    store.commitOffset('g1', 'orders', 0, 15)
    assert.equal(store.committedOffset('g1', 'orders', 0), 15)
    assert.throws(() => store.commitOffset('g1', 'orders', 0, -1), { code: 'INVALID_ARGUMENT' })
    assert.throws(() => store.commitOffset('', 'orders', 0, 1), { code: 'INVALID_ARGUMENT' })
    store = await reopen(store, options)
    assert.equal(store.committedOffset('g1', 'orders', 0), 15)
    assert.equal(store.committedOffset('g1', 'orders', 3), 7)
    assert.equal(store.committedOffset('g2', 'orders', 0), 1)
    const json = JSON.parse(await readFile(path.join(dir, 'config', 'consumerOffset.json'), 'utf8'))
    assert.deepEqual(json.offsetTable, { 'orders@g1': { '0': 15, '3': 7 }, 'orders@g2': { '0': 1 } })
    await store.close()
  } finally {
    await cleanup()
  }
})

test('consumer offsets: persisted periodically, a crash loses at most one interval, a broken file falls back to the backup', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const options: MessageStoreOptions = { dir, persistConsumerOffsetIntervalMs: 20 }
  try {
    let store = await MessageStore.open(options)
    store.commitOffset('g', 't', 0, 100)
    await new Promise((r) => setTimeout(r, 150))
    // A later commit, then a "crash": the file holds the periodic persist.
    const file = path.join(dir, 'config', 'consumerOffset.json')
    assert.equal(parseConsumerOffsets(await readFile(file, 'utf8')).get('t@g')?.get(0), 100)
    store.commitOffset('g', 't', 0, 200)
    await store.persistConsumerOffsets()
    await store.close()
    // RocketMQ's own files (fastjson) have bare integer keys: read them too.
    await writeFile(file, '{"offsetTable":{"t@g":{0:300,1:5}},"dataVersion":{"counter":1,"timestamp":0}}')
    store = await MessageStore.open(options)
    assert.equal(store.committedOffset('g', 't', 0), 300)
    assert.equal(store.committedOffset('g', 't', 1), 5)
    store.commitOffset('g', 't', 0, 301)
    await store.close()
    // A torn main file: the backup (the previous good content) is used.
    await writeFile(file, '{"offsetTable":{"t@g":{"0":')
    store = await MessageStore.open(options)
    assert.equal(store.committedOffset('g', 't', 0), 300, 'from consumerOffset.json.bak')
    await store.close()
  } finally {
    await cleanup()
  }
})

/** Sets the modification time of every CommitLog data file (not a background allocation's temp file). */
async function setAge(dir: string, hoursAgo: number, now: number): Promise<void> {
  for (const name of await readdir(path.join(dir, 'commitlog'))) {
    if (!/^\d{20}$/.test(name)) continue
    const t = (now - hoursAgo * HOUR) / 1000
    await utimes(path.join(dir, 'commitlog', name), t, t)
  }
}

test('retention: expired CommitLog files go at the deleteWhen hour, ConsumeQueue files follow, minOffset moves', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  // 10:00 local time today, then moved by the test.
  const start = new Date()
  start.setHours(10, 0, 0, 0)
  let clock = start.getTime()
  const options: MessageStoreOptions = { dir, commitLogFileSize: SMALL_FILE, consumeQueueUnitsPerFile: 40, now: () => clock, retention: { deleteWhen: '04', fileReservedTimeHours: 72 } }
  try {
    const store = await MessageStore.open(options)
    for (let i = 0; i < 600; i++) await store.put({ topic: 'old', queueId: i % 2, body: Buffer.alloc(500, i & 0xff) })
    const files = store.commitLog.queue.files.length
    assert.ok(files >= 5, `${files} CommitLog files`)
    await setAge(dir, 100, clock)

    // Expired, but 10:00 is not a deleteWhen hour.
    let r = await store.deleteExpiredFiles()
    assert.equal(r.trigger, 'idle')
    assert.equal(r.commitLogFilesDeleted, 0)

    // 04:00 the next day: every expired file but the one being written goes.
    clock = start.getTime() + 18 * HOUR
    r = await store.deleteExpiredFiles()
    assert.equal(r.trigger, 'time')
    assert.equal(r.commitLogFilesDeleted, files - 1)
    assert.equal(store.commitLog.queue.files.length, 1, 'the file being written is never deleted')
    assert.ok(r.consumeQueueFilesDeleted > 0, 'ConsumeQueue files pointing only into deleted CommitLog went too')
    const min = store.minPhysicalOffset
    assert.equal(r.minPhysicalOffset, min)
    for (const q of [0, 1]) {
      const lo = store.minOffset('old', q)
      assert.ok(lo > 0, 'minOffset moved')
      const below = await store.get({ topic: 'old', queueId: q, offset: lo - 1 })
      assert.equal(below.status, 'OFFSET_TOO_SMALL')
      assert.equal(below.nextOffset, lo)
      const at = await store.get({ topic: 'old', queueId: q, offset: lo, maxMessages: 1 })
      assert.equal(at.status, 'FOUND')
      assert.ok(at.messages[0]!.physicalOffset >= min)
      assert.equal(await store.offsetByTime('old', q, 0), lo)
    }
    const cqFiles = await readdir(path.join(dir, 'consumequeue', 'old', '0'))
    assert.ok(!cqFiles.includes('00000000000000000000'))
    await store.close()

    // The moved minimum survives a reopen (and a rebuild of the queues from what is left).
    const again = await MessageStore.open(options)
    for (const q of [0, 1]) assert.ok(again.minOffset('old', q) > 0)
    const lo = again.minOffset('old', 0)
    assert.equal((await again.get({ topic: 'old', queueId: 0, offset: lo })).status, 'FOUND')
    await again.close()
  } finally {
    await cleanup()
  }
})

test('retention: files younger than fileReservedTimeHours stay, deleteWhen accepts several hours, manual runs any hour', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const start = new Date()
  start.setHours(13, 30, 0, 0)
  const clock = start.getTime()
  const options: MessageStoreOptions = { dir, commitLogFileSize: SMALL_FILE, now: () => clock, retention: { deleteWhen: '01;13', fileReservedTimeHours: 48 } }
  try {
    const store = await MessageStore.open(options)
    for (let i = 0; i < 300; i++) await store.put({ topic: 'young', queueId: 0, body: Buffer.alloc(500) })
    const files = store.commitLog.queue.files.length
    await setAge(dir, 47, clock)
    let r = await store.deleteExpiredFiles()
    assert.equal(r.trigger, 'time')
    assert.equal(r.commitLogFilesDeleted, 0, '47 h < 48 h')
    await setAge(dir, 49, clock)
    r = await store.deleteExpiredFiles({ manual: true })
    assert.equal(r.commitLogFilesDeleted, files - 1)
    await store.close()
  } finally {
    await cleanup()
  }
})

test('retention on a full disk: over 75% expired files go at any hour, over 85% even young ones, never the last', { timeout: 30_000 }, async (t) => {
  let clock = new Date().setHours(10, 0, 0, 0)
  const io = new SimFileIO({ capacityBytes: 1024 * 1024, clock: () => clock })
  const options: MessageStoreOptions = { dir: simDir(t), fileIO: io, commitLogFileSize: SMALL_FILE, consumeQueueUnitsPerFile: 40, ...SIM_INDEX, now: () => clock }
  const store = await MessageStore.open(options)
  try {
    // Fill until the disk is over 85% (files are allocated whole: 64 KiB at a time).
    let i = 0
    while (io.usedBytes() < 0.9 * 1024 * 1024) await store.put({ topic: 'full', queueId: 0, body: Buffer.alloc(900, i++ & 0xff) })
    const files = store.commitLog.queue.files.length
    // Young files, disk over 85%: deleted regardless of age until usage is under 85%.
    let r = await store.deleteExpiredFiles()
    assert.equal(r.trigger, 'forced')
    assert.ok(r.commitLogFilesDeleted > 0)
    assert.ok(r.diskUsedRatio <= 85, `usage after: ${r.diskUsedRatio.toFixed(1)}%`)
    assert.ok(store.commitLog.queue.files.length >= 1)
    const lo = store.minOffset('full', 0)
    assert.ok(lo > 0)
    assert.equal((await store.get({ topic: 'full', queueId: 0, offset: lo - 1 })).status, 'OFFSET_TOO_SMALL')
    assert.equal((await store.get({ topic: 'full', queueId: 0, offset: lo })).status, 'FOUND')
    // Appends continue; between 75% and 85% only expired files go, at any hour.
    while (io.usedBytes() < 0.8 * 1024 * 1024) await store.put({ topic: 'full', queueId: 0, body: Buffer.alloc(900, i++ & 0xff) })
    r = await store.deleteExpiredFiles()
    assert.equal(r.trigger, 'space')
    assert.equal(r.commitLogFilesDeleted, 0, 'nothing expired yet')
    clock += 73 * HOUR
    const before = store.commitLog.queue.files.length
    r = await store.deleteExpiredFiles()
    assert.equal(r.trigger, 'space')
    assert.equal(r.commitLogFilesDeleted, Math.min(10, before - 1), 'expired files go at any hour, up to deleteFileBatchMax')
    assert.ok(files > 0)
  } finally {
    await store.close()
  }
})

test('diskUsedRatio is computed as df does: used / (used + available), blocks reserved for root count as neither', { timeout: 30_000 }, async () => {
  // The numbers of the report: 23% used by df, 69.6% by total - available over total.
  const io = new SimFileIO()
  const gib = 1024 ** 3
  io.diskUsage = async () => ({ totalBytes: 100 * gib, usedBytes: 23 * gib, freeBytes: 30.4 * gib })
  const store = await MessageStore.open({ dir: '/sim/df', fileIO: io, commitLogFileSize: SMALL_FILE, messageIndexEnable: false, now: () => new Date().setHours(10, 0, 0, 0) })
  try {
    const r = await store.deleteExpiredFiles()
    assert.equal(r.trigger, 'idle', 'a disk df shows 43% used is not over diskMaxUsedSpaceRatio')
    assert.ok(Math.abs(r.diskUsedRatio - (23 / 53.4) * 100) < 1e-9, `got ${r.diskUsedRatio}`)
  } finally {
    await store.close()
  }
})

test('diskUsedRatio of a real directory agrees with df', { timeout: 30_000 }, async (t) => {
  const { dir, cleanup } = await tempDir()
  try {
    let df: string
    try {
      df = execFileSync('df', ['-P', '-k', dir], { encoding: 'utf8' })
    } catch {
      return t.skip('no df here')
    }
    // "Filesystem 1024-blocks Used Available Capacity Mounted-on": Capacity is used / (used + available), rounded up.
    const fields = df.trim().split('\n').at(-1)!.trim().split(/\s+/)
    const capacity = Number(fields[4]!.replace('%', ''))
    const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, messageIndexEnable: false })
    try {
      const r = await store.deleteExpiredFiles()
      // Other writers share the disk: allow a point either side of df's rounded-up figure.
      assert.ok(r.diskUsedRatio > capacity - 2 && r.diskUsedRatio <= capacity + 1, `store says ${r.diskUsedRatio.toFixed(2)}%, df says ${capacity}%`)
    } finally {
      await store.close()
    }
  } finally {
    await cleanup()
  }
})
