// Seeding a replica from a master whose first CommitLog files retention deleted: an empty replica
// takes a first chunk at the master's minimum offset (a file boundary past 0), names its first
// file by it, and from then on is a store whose early files are gone: the same minimum, queues
// starting past 0, a reopen, a kill and a promotion. A replica that holds anything, or a first
// chunk that does not start a file, is OFFSET_MISMATCH and nothing is written. SEED replays the
// chunk sizes.
import assert from 'node:assert/strict'
import { readFile, readdir } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { seededRandom, seedFromEnv } from '@mqts/common'
import { MessageStore, StoreError, type FlushMode, type MessageStoreOptions } from '../src/index.js'
import { SimFileIO, type FileIO } from '../src/internal.js'
import { SIM_INDEX, SMALL_FILE, assertNothingReal, simPath, tempDir } from './helpers.js'
import { REPLICA_INDEX, chunkSize } from './replica-helpers.js'

const SEED = seedFromEnv()
const TOPICS = ['orders', 'audit']
const QUEUES = 3

function storeOptions(dir: string, flush: FlushMode, extra: Partial<MessageStoreOptions> = {}): MessageStoreOptions {
  // Retention deletes every file but the last one when asked (manual), whatever its age.
  return { dir, flush, commitLogFileSize: SMALL_FILE, ...REPLICA_INDEX, retention: { fileReservedTimeHours: 0 }, ...extra }
}

async function putSome(master: MessageStore, n: number, rnd: () => number, from = 0): Promise<void> {
  for (let i = from; i < from + n; i++) {
    await master.put({ topic: TOPICS[i % TOPICS.length]!, queueId: i % QUEUES, body: Buffer.alloc(200 + Math.floor(rnd() * 1500), i % 251), tags: `T${i % 3}`, keys: `k${i}` })
  }
}

/** Puts until retention leaves the master starting past 0; returns its new minimum. */
async function masterWithRetention(master: MessageStore, rnd: () => number): Promise<number> {
  await putSome(master, 200, rnd)
  await master.flush()
  const r = await master.deleteExpiredFiles({ manual: true })
  assert.ok(r.commitLogFilesDeleted >= 2, `retention deleted ${r.commitLogFilesDeleted} files`)
  assert.ok(master.commitLogMinOffset > 0 && master.commitLogMinOffset % SMALL_FILE === 0)
  await putSome(master, 40, rnd, 200)
  return master.commitLogMinOffset
}

/** Feeds the replica from its end (from the master's minimum when it is empty), in seeded chunks. */
async function feed(master: MessageStore, replica: MessageStore, rnd: () => number, until = master.commitLogMaxOffset): Promise<void> {
  let at = replica.commitLogMaxOffset === replica.commitLogMinOffset && replica.replicaEndOffset === replica.commitLogMinOffset ? master.commitLogMinOffset : replica.replicaEndOffset
  while (at < until) {
    await replica.appendReplicated(at, master.readCommitLog(at, Math.min(chunkSize(rnd), until - at)))
    at = replica.replicaEndOffset
  }
}

/** Every queue as the store answers it: min, max, and each message from min. */
async function answers(store: MessageStore): Promise<string[]> {
  const out: string[] = []
  for (const topic of TOPICS) {
    for (let q = 0; q < QUEUES; q++) {
      const min = store.minOffset(topic, q)
      const r = await store.get({ topic, queueId: q, offset: min, maxMessages: 10_000, maxBytes: 64 * 1024 * 1024 })
      out.push(`${topic}/${q} ${min}-${store.maxOffset(topic, q)}: ${r.messages.map((m) => `${m.queueOffset}@${m.physicalOffset}:${m.keys.join()}`).join(' ')}`)
    }
  }
  return out
}

/** The CommitLog files holding bytes below `end` (not one allocated ahead), by name. */
async function logFiles(io: FileIO | undefined, dir: string, end: number): Promise<Array<[string, Buffer]>> {
  const cl = path.join(dir, 'commitlog')
  const names = (io ? await io.list(cl) : await readdir(cl)).filter((n) => /^\d{20}$/.test(n) && Number(n) < end).sort()
  return Promise.all(names.map(async (n): Promise<[string, Buffer]> => [n, io ? (await io.readFile(path.join(cl, n)))! : await readFile(path.join(cl, n))]))
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof StoreError, `a StoreError, got ${String(err)}`)
    return err.code
  }
  return 'no error'
}

for (const flush of ['async', 'sync'] as const) {
  test(`an empty replica seeded at the master's minimum holds its files from there and answers as it, across a reopen (${flush}, seed ${SEED})`, async () => {
    const m = await tempDir('mqts-seed-master-')
    const r = await tempDir('mqts-seed-replica-')
    const rnd = seededRandom(SEED)
    const master = await MessageStore.open(storeOptions(m.dir, flush))
    let replica = await MessageStore.open(storeOptions(r.dir, flush, { role: 'replica' }))
    try {
      const min = await masterWithRetention(master, rnd)
      await feed(master, replica, rnd)
      assert.equal(replica.commitLogMinOffset, min, "the replica's log starts at the master's minimum")
      assert.equal(replica.commitLogMaxOffset, master.commitLogMaxOffset)
      assert.deepEqual(await answers(replica), await answers(master))
      assert.ok(TOPICS.some((t) => replica.minOffset(t, 0) > 0), 'a queue starts past 0')
      assert.throws(() => replica.readCommitLog(min - 1, 10), (e: unknown) => e instanceof StoreError && e.code === 'OFFSET_OUT_OF_RANGE')
      replica = await (async () => {
        await replica.close()
        return MessageStore.open(storeOptions(r.dir, flush, { role: 'replica' }))
      })()
      assert.equal(replica.commitLogMinOffset, min, 'the same minimum after a reopen')
      await putSome(master, 60, rnd, 240)
      await feed(master, replica, rnd)
      assert.deepEqual(await answers(replica), await answers(master))
      await master.flush()
      await replica.flush()
      const mine = await logFiles(undefined, r.dir, master.commitLogMaxOffset)
      const theirs = await logFiles(undefined, m.dir, master.commitLogMaxOffset)
      assert.deepEqual(mine.map(([n]) => n), theirs.map(([n]) => n), 'the same file names')
      for (let i = 0; i < mine.length; i++) assert.ok(mine[i]![1].equals(theirs[i]![1]), `${mine[i]![0]} byte for byte`)
      // Promoted, it continues every queue after the master's last offset.
      await replica.setRole('master')
      const p = await replica.put({ topic: 'orders', queueId: 1, body: 'after promotion' })
      assert.equal(p.queueOffset, master.maxOffset('orders', 1))
    } finally {
      await master.close()
      await replica.close()
      await m.cleanup()
      await r.cleanup()
    }
  })
}

test(`a seeded replica killed (simulated disk), before and after its first record, reopens at its minimum and resumes (seed ${SEED})`, async () => {
  const mdir = simPath('seed-master')
  const rdir = simPath('seed-replica')
  const rnd = seededRandom(SEED + 1)
  const mio = new SimFileIO()
  let rio = new SimFileIO()
  const base = { ...SIM_INDEX, flushConsumeQueueIntervalMs: 1e9 }
  const master = await MessageStore.open(storeOptions(mdir, 'async', { ...base, fileIO: mio }))
  let replica = await MessageStore.open(storeOptions(rdir, 'async', { ...base, fileIO: rio, role: 'replica' }))
  try {
    const min = await masterWithRetention(master, rnd)
    const kill = async (): Promise<void> => {
      const killed = rio.processCrash()
      await replica.close()
      rio = killed
      replica = await MessageStore.open(storeOptions(rdir, 'async', { ...base, fileIO: rio, role: 'replica' }))
    }
    // Killed once seeded with only part of a record held: an empty store starting at min.
    await replica.appendReplicated(min, master.readCommitLog(min, 5))
    assert.equal(replica.replicaEndOffset, min + 5)
    await kill()
    assert.deepEqual([replica.commitLogMinOffset, replica.commitLogMaxOffset, replica.replicaEndOffset], [min, min, min])
    await feed(master, replica, rnd, min + 3000)
    const acked = replica.commitLogMaxOffset
    assert.ok(acked > min)
    await kill()
    assert.equal(replica.recovery.cleanShutdown, false)
    assert.equal(replica.commitLogMinOffset, min)
    assert.ok(replica.replicaEndOffset >= acked, `reopened at ${replica.replicaEndOffset}, acknowledged ${acked}`)
    await feed(master, replica, rnd)
    assert.deepEqual(await answers(replica), await answers(master))
    await master.flush()
    await replica.flush()
    const mine = await logFiles(rio, rdir, master.commitLogMaxOffset)
    const theirs = await logFiles(mio, mdir, master.commitLogMaxOffset)
    assert.deepEqual(mine.map(([n]) => n), theirs.map(([n]) => n))
    for (let i = 0; i < mine.length; i++) assert.ok(mine[i]![1].equals(theirs[i]![1]), `${mine[i]![0]} byte for byte`)
  } finally {
    await master.close()
    await replica.close()
    assertNothingReal(mdir)
    assertNothingReal(rdir)
  }
})

test('only an empty replica starts at another offset, and only at a file boundary; anything else is OFFSET_MISMATCH and writes nothing', async () => {
  const m = await tempDir('mqts-seed-master-')
  const r = await tempDir('mqts-seed-replica-')
  const rnd = seededRandom(SEED + 2)
  const master = await MessageStore.open(storeOptions(m.dir, 'async'))
  const replica = await MessageStore.open(storeOptions(r.dir, 'async', { role: 'replica' }))
  try {
    const min = await masterWithRetention(master, rnd)
    const chunk = master.readCommitLog(min, 4000)
    // Not a file boundary: refused, the replica stays empty at 0.
    const err = await replica.appendReplicated(min + 10, chunk.subarray(10)).catch((e: unknown) => e)
    assert.ok(err instanceof StoreError && err.code === 'OFFSET_MISMATCH', String(err))
    assert.match(err.message, /file/)
    assert.equal(replica.replicaEndOffset, 0)
    assert.deepEqual((await readdir(path.join(r.dir, 'commitlog'))).filter((n) => /^\d{20}$/.test(n) && Number(n) >= min), [])
    // Seeded at min; from now on it holds records: another file boundary is a mismatch.
    await replica.appendReplicated(min, chunk)
    assert.equal(replica.commitLogMinOffset, min)
    assert.equal(await codeOf(replica.appendReplicated(min + SMALL_FILE, chunk.subarray(0, 100))), 'OFFSET_MISMATCH')
    assert.equal(await codeOf(replica.appendReplicated(0, Buffer.alloc(0))), 'OFFSET_MISMATCH')
    assert.equal(replica.replicaEndOffset, min + 4000)
  } finally {
    await master.close()
    await replica.close()
    await m.cleanup()
    await r.cleanup()
  }
})
