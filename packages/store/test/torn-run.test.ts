// A kill -9 can end a write to a regular file early (Linux stops at a page boundary on a fatal
// signal), leaving a prefix of a run of records in the file: a record whose header and body made
// it and whose properties are zeros has consistent lengths and a valid body CRC. Sync flush
// writes each run's first 4 bytes (the first record's TOTALSIZE) after the rest, so such a prefix
// is never a record: recovery must keep only whole records, every acknowledged one among them.
// The simulated disk cuts a write at a chosen byte (SimFileIO.killAt); the writer thread's write
// is cut by its fault hook. Seeds are printed; SEED=<n> replays, TORN_RUN_ROUNDS=<n> runs more.
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, type PutMessage, type PutResult } from '../src/index.js'
import { seededRandom } from '@mqts/common'
import { NodeFileIO, SimFileIO } from '../src/internal.js'
import { assertDenseLog, forEachRecord, SIM_INDEX, simDir, simPath, tempDir } from './helpers.js'

const BASE_SEED = process.env.SEED ? Number(process.env.SEED) : Date.now() % 1_000_000
const ROUNDS = Number(process.env.TORN_RUN_ROUNDS ?? 24)
const FILE_SIZE = 256 * 1024
const QUEUES = 3
const FIRST_FILE = path.join('commitlog', '0'.repeat(20))

/** Message `n`: its key and body say which it is, so a record is whole only if both match. */
function message(n: number): PutMessage {
  const key = `k${String(n).padStart(6, '0')}`
  return { topic: 'torn', queueId: n % QUEUES, keys: key, body: bodyOf(key) }
}

function bodyOf(key: string): Buffer {
  return Buffer.from(`${key}:`.repeat(20))
}

function isZero(b: Buffer, from: number): boolean {
  for (let i = from; i < b.length; i++) if (b[i] !== 0) return false
  return true
}

/**
 * Every record of the recovered log is whole (its key and body belong together), its queues are
 * dense, and every acknowledged put is there. Returns the records kept.
 */
async function assertWhole(store: MessageStore, acks: ReadonlyArray<{ n: number; r: PutResult }>, where: string): Promise<number> {
  let records = 0
  await forEachRecord(store, 0, (offset, m) => {
    assert.equal(m.keys.length, 1, `${where}: record at ${offset} has one key (${JSON.stringify(m.properties)})`)
    assert.ok(m.body.equals(bodyOf(m.keys[0]!)), `${where}: record at ${offset} is whole (key ${m.keys[0]})`)
    records++
  })
  await assertDenseLog(store, where)
  for (const { n, r } of acks) {
    const m = await store.lookup(r.physicalOffset)
    assert.deepEqual(m.keys, [message(n).keys], `${where}: acknowledged put ${n} kept`)
  }
  return records
}

test(`sync flush: a write cut short by a kill never leaves a torn record that recovery keeps (simulated disk, ${ROUNDS} rounds, seed ${BASE_SEED})`, { timeout: 120_000 }, async (t) => {
  for (let round = 0; round < ROUNDS; round++) {
    const seed = BASE_SEED + round
    const where = `round ${round} seed ${seed}`
    const rnd = seededRandom(seed)
    const dir = simDir(t)
    const io = new SimFileIO()
    const options = { dir, flush: 'sync' as const, commitLogFileSize: FILE_SIZE, ...SIM_INDEX }
    const store = await MessageStore.open({ ...options, fileIO: io })
    const acks: Array<{ n: number; r: PutResult }> = []
    let seq = 0
    for (let i = 0, warm = 1 + Math.floor(rnd() * 4); i < warm; i++, seq++) acks.push({ n: seq, r: await store.put(message(seq)) })
    // Every record has this size; the kill cuts a write within the next 30 of them: in half the
    // rounds inside a record's properties (the torn record the body CRC does not see), else anywhere.
    const size = acks[0]!.r.size
    const start = store.maxPhysicalOffset
    const k = Math.floor(rnd() * 30)
    const cutAt = round % 2 === 0 ? start + k * size + size - 1 - Math.floor(rnd() * 6) : start + Math.floor(rnd() * 30 * size)
    io.killAt = { position: cutAt, pathIncludes: FIRST_FILE }
    const producer = async (): Promise<void> => {
      while (!io.killed && seq < 200) {
        const n = seq
        const batch = rnd() < 0.3 ? 1 + Math.floor(rnd() * 4) : 0
        seq += Math.max(1, batch)
        try {
          if (batch === 0) {
            const r = await store.put(message(n))
            if (!io.killed && r.status === 'PUT_OK') acks.push({ n, r })
          } else {
            // One queue per batch.
            const ms = Array.from({ length: batch }, (_, i) => ({ ...message(n + i), queueId: n % QUEUES }))
            const rs = await store.putBatch(ms)
            if (!io.killed) rs.forEach((r, i) => r.status === 'PUT_OK' && acks.push({ n: n + i, r }))
          }
        } catch {
          return
        }
      }
    }
    await Promise.all(Array.from({ length: 4 }, producer))
    assert.ok(io.killed, `${where}: the write at ${cutAt} was reached`)
    await store.close().catch(() => undefined)
    const reopened = await MessageStore.open({ ...options, fileIO: io.killed })
    try {
      const kept = await assertWhole(reopened, acks, where)
      // What the kill left past the cut is zeroed, on disk too: a later append followed by a
      // crash must not find a stale record of the cut run after its own records.
      const end = reopened.maxPhysicalOffset
      const file = io.killed.files.get(path.resolve(dir, FIRST_FILE))!
      assert.ok(isZero(file.volatile, end), `${where}: zeros past the recovered end ${end}`)
      assert.ok(isZero(file.durable, end), `${where}: zeros past the recovered end ${end}, on disk`)
      t.diagnostic(`${where}: cut at ${cutAt}, ${acks.length} acknowledged, ${kept} kept`)
    } finally {
      await reopened.close()
    }
  }
})

test('sync flush, writer thread: a run whose write a kill cut short is not kept by recovery', { timeout: 60_000 }, async () => {
  // The size of one record: the same message on the simulated disk.
  const probe = await MessageStore.open({ dir: simPath('torn-probe'), fileIO: new SimFileIO(), ...SIM_INDEX })
  const size = (await probe.put({ ...message(0), queueId: 0 })).size
  await probe.close()
  // The first write of the thread takes the batch's run; it stops inside the third record's
  // properties and fails, as a kill there would leave the file.
  const cutAfter = 3 * size - 3
  const { dir, cleanup } = await tempDir('mqts-torn-run-')
  const options = { dir, flush: 'sync' as const, commitLogFileSize: FILE_SIZE }
  try {
    const store = await MessageStore.open({ ...options, fileIO: new NodeFileIO({ writerFaults: { on: 'write', failCall: 1, code: 'EIO', writeBytes: cutAfter } }) })
    await assert.rejects(store.putBatch(Array.from({ length: 12 }, (_, i) => ({ ...message(i), queueId: 0 }))))
    await store.close().catch(() => undefined)
    const reopened = await MessageStore.open(options)
    try {
      assert.equal(reopened.recovery.cleanShutdown, false)
      assert.equal(await assertWhole(reopened, [], 'after the cut write'), 0, 'nothing of the cut run is kept')
      assert.equal(reopened.maxPhysicalOffset, 0)
    } finally {
      await reopened.close()
    }
  } finally {
    await cleanup()
  }
})
