// A power loss can tear the sector holding part of a record's header past the durable offset.
// The body CRC does not cover the header, so the recovery scan accepts such a record; the
// re-dispatch must find that it does not fit its queue, cut the log there, and never let it
// replace a ConsumeQueue unit. Properties torn past the durable offset (not ending with 0x02, as
// every put ends them) are cut by the scan; below it they are kept. Seeds are printed; SEED=<n>
// replays the random test, TORN_HEADER_ROUNDS=<n> runs more rounds.
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { test, type TestContext } from 'node:test'
import { MessageStore, StoreError, type MessageStoreOptions, type PutResult } from '../src/index.js'
import { seededRandom } from '@mqts/common'
import { RECORD, SimFileIO } from '../src/internal.js'
import { assertDenseLog, SIM_INDEX, simDir } from './helpers.js'

const BASE_SEED = process.env.SEED ? Number(process.env.SEED) : Date.now() % 1_000_000
const ROUNDS = Number(process.env.TORN_HEADER_ROUNDS ?? 40)
const FILE_SIZE = 16 * 1024
const QUEUES = 3

/**
 * A store on the simulated disk with no background flush: the durable offset is where flush()
 * left it, so a test decides what a power loss keeps.
 */
function simStoreOptions(t: TestContext, extra: Partial<MessageStoreOptions> = {}): { dir: string; io: SimFileIO; options: MessageStoreOptions } {
  const dir = simDir(t)
  const io = new SimFileIO()
  return { dir, io, options: { dir, commitLogFileSize: FILE_SIZE, fileIO: io, flushIntervalMs: 3_600_000, flushThoroughIntervalMs: 3_600_000, ...SIM_INDEX, ...extra } }
}

/** The bytes of a CommitLog record in `io`'s page cache (its durable image after a crash()). */
function recordBytes(io: SimFileIO, dir: string, p: PutResult): Buffer {
  const fileStart = Math.floor(p.physicalOffset / FILE_SIZE) * FILE_SIZE
  const entry = io.files.get(path.resolve(dir, 'commitlog', String(fileStart).padStart(20, '0')))
  assert.ok(entry, `CommitLog file at ${fileStart}`)
  return entry.volatile.subarray(p.physicalOffset - fileStart, p.physicalOffset - fileStart + p.size)
}

/** Zeroes `length` bytes at `at` of a CommitLog record, in the page cache and on the disk. */
function zeroRecordBytes(io: SimFileIO, dir: string, p: PutResult, at: number, length: number): void {
  const fileStart = Math.floor(p.physicalOffset / FILE_SIZE) * FILE_SIZE
  const entry = io.files.get(path.resolve(dir, 'commitlog', String(fileStart).padStart(20, '0')))
  assert.ok(entry, `CommitLog file at ${fileStart}`)
  const pos = p.physicalOffset - fileStart + at
  entry.volatile.fill(0, pos, pos + length)
  entry.durable.fill(0, pos, pos + length)
}

/**
 * Every queue is dense and each unit points at the record that carries its queue offset: `get`
 * at every offset returns the message with that queue offset, and every record of the log is
 * reached so.
 */
async function assertQueuesMatchLog(store: MessageStore, what: string): Promise<void> {
  const next = await assertDenseLog(store, what)
  for (let q = 0; q < QUEUES; q++) {
    const max = store.maxQueueOffset('a', q)
    assert.equal(max, next.get(`a@${q}`) ?? 0, `${what}: maxQueueOffset of a@${q}`)
    for (let offset = 0; offset < max; offset++) {
      const r = await store.get({ topic: 'a', queueId: q, offset, maxMessages: 1 })
      assert.equal(r.status, 'FOUND', `${what}: get a@${q} offset ${offset}`)
      assert.equal(r.messages[0]!.queueOffset, offset, `${what}: a@${q} offset ${offset} serves the record of that offset`)
      assert.equal(r.messages[0]!.queueId, q, `${what}: a@${q} offset ${offset} serves a record of its queue`)
    }
  }
}

async function putSome(store: MessageStore, n: number, from: number): Promise<PutResult[]> {
  const out: PutResult[] = []
  for (let i = from; i < from + n; i++) out.push(await store.put({ topic: 'a', queueId: i % QUEUES, keys: `k${i}`, body: Buffer.alloc(40 + ((i * 37) % 300), i & 0xff) }))
  return out
}

for (const field of ['queueOffset', 'queueId'] as const) {
  test(`a record past the durable offset whose ${field} a power loss zeroed is cut at recovery, not dispatched`, { timeout: 30_000 }, async (t) => {
    const { dir, io, options } = simStoreOptions(t)
    const store = await MessageStore.open(options)
    const durable = await putSome(store, 12, 0)
    await store.flush()
    const durableOffset = store.flushedPhysicalOffset
    const unflushed = await putSome(store, 12, 12)
    const snapshot = io.processCrash()
    await store.close()
    // Record 16 of queue a@1 had queue offset 5; its header sector came back partly zeroed.
    const torn = unflushed[4]!
    assert.equal(torn.queueOffset, 5)
    assert.equal(durableOffset, durable[11]!.physicalOffset + durable[11]!.size)
    assert.ok(torn.physicalOffset > durableOffset)
    if (field === 'queueOffset') zeroRecordBytes(snapshot, dir, torn, RECORD.queueOffset, 8)
    else zeroRecordBytes(snapshot, dir, torn, RECORD.queueId, 4)

    const reopened = await MessageStore.open({ ...options, fileIO: snapshot })
    // A power loss right after the recovered open: the cut must already be durable.
    const powerLoss = snapshot.crash(BASE_SEED)
    try {
      const cut = reopened.recovery.truncated
      assert.ok(cut, 'the cut is reported')
      assert.equal(cut.atOffset, torn.physicalOffset)
      assert.equal(cut.belowDurableOffset, false)
      assert.equal(cut.validDataFollowed, true)
      assert.match(cut.reason, /claims queue offset/)
      assert.equal(reopened.maxPhysicalOffset, torn.physicalOffset, 'the log ends at the torn record')
      await assertQueuesMatchLog(reopened, 'after the cut')
      // Nothing past the cut is found by key; what precedes it is.
      assert.equal((await reopened.queryByKey('a', `k${12 + 4}`)).length, 0)
      assert.equal((await reopened.queryByKey('a', `k${12 + 8}`)).length, 0)
      assert.equal((await reopened.queryByKey('a', `k${12 + 3}`)).length, 1)
      // New puts continue every queue densely.
      const more = await putSome(reopened, 6, 100)
      assert.equal(more[0]!.queueOffset, 5, 'a@1 continues at 5')
      await assertQueuesMatchLog(reopened, 'after new puts')
    } finally {
      await reopened.close()
    }
    const again = await MessageStore.open({ ...options, fileIO: powerLoss })
    try {
      assert.equal(again.maxPhysicalOffset, torn.physicalOffset)
      await assertQueuesMatchLog(again, 'after a power loss following the cut')
    } finally {
      await again.close()
    }
  })
}

test('a torn ConsumeQueue unit past the durable offset is repaired from the CommitLog, which keeps every record', { timeout: 30_000 }, async (t) => {
  const { dir, io, options } = simStoreOptions(t)
  const store = await MessageStore.open(options)
  await putSome(store, 12, 0)
  await store.flush()
  const unflushed = await putSome(store, 12, 12)
  const end = store.maxPhysicalOffset
  const snapshot = io.processCrash()
  await store.close()
  // The unit of a@1 offset 5 (record 16) lost the low byte of its physical offset; it still
  // points past the unit before it, so the ConsumeQueue's own recovery keeps it.
  const entry = snapshot.files.get(path.resolve(dir, 'consumequeue', 'a', '1', '0'.repeat(20)))
  assert.ok(entry)
  const unit = unflushed[4]!
  assert.equal(unit.queueOffset, 5)
  assert.ok(unit.physicalOffset % 256 !== 0 && unit.physicalOffset - (unit.physicalOffset % 256) > unflushed[1]!.physicalOffset)
  entry.volatile[5 * 20 + 7] = 0
  entry.durable[5 * 20 + 7] = 0
  const reopened = await MessageStore.open({ ...options, fileIO: snapshot })
  try {
    assert.equal(reopened.recovery.truncated, undefined, 'nothing cut')
    assert.equal(reopened.maxPhysicalOffset, end)
    await assertQueuesMatchLog(reopened, 'after the repair')
  } finally {
    await reopened.close()
  }
})

test('a ConsumeQueue unit is never replaced by a record of another physical offset once the store is open', { timeout: 30_000 }, async (t) => {
  const dir = simDir(t)
  const store = await MessageStore.open({ dir, commitLogFileSize: FILE_SIZE, fileIO: new SimFileIO(), messageIndexEnable: false })
  try {
    const puts = await putSome(store, 6, 0)
    const cq = store.consumeQueues.find('a', 0)!
    const before = await cq.unitAt(1)
    const other = puts[4]!
    assert.throws(
      () => cq.put(1, other.physicalOffset, other.size, 0),
      (err: unknown) => err instanceof StoreError && err.code === 'CORRUPT_RECORD' && /claims queue offset 1 of a@0/.test(err.message),
    )
    assert.throws(() => cq.put(0 + 5, other.physicalOffset, other.size, 0), (err: unknown) => err instanceof StoreError && err.code === 'CORRUPT_RECORD', 'a gap')
    assert.deepEqual(await cq.unitAt(1), before, 'the unit is unchanged')
    assert.equal(cq.maxOffset, 2, 'the queue keeps its units')
    // Putting a unit again with the same content is still fine (a re-dispatch).
    await cq.put(1, before!.physicalOffset, before!.size, before!.tagsCode)
  } finally {
    await store.close()
  }
})

test(`sim power loss, async flush, torn headers: no record past the durable offset is accepted with another queue or queue offset (seed ${BASE_SEED}, ${ROUNDS} rounds)`, { timeout: 120_000 }, async (t) => {
  const dir = simDir(t)
  let tornRounds = 0
  let cutRounds = 0
  let keptTorn = 0
  for (let round = 0; round < ROUNDS; round++) {
    const seed = BASE_SEED * 131 + round
    const rnd = seededRandom(seed)
    const io = new SimFileIO()
    const roundDir = path.join(dir, `round-${round}`)
    const options = { dir: roundDir, commitLogFileSize: FILE_SIZE, fileIO: io, flushIntervalMs: rnd() < 0.5 ? 5 : 50, flushLeastPages: 1, messageIndexEnable: false }
    const store = await MessageStore.open(options)
    const puts = new Map<number, PutResult & { queueId: number }>()
    const n = 40 + Math.floor(rnd() * 300)
    for (let i = 0; i < n; i++) {
      const queueId = Math.floor(rnd() * QUEUES)
      const p = await store.put({ topic: 'a', queueId, body: Buffer.alloc(20 + Math.floor(rnd() * 500), i & 0xff) })
      puts.set(p.physicalOffset, { ...p, queueId })
      if (rnd() < 0.05) await new Promise((r) => setTimeout(r, 6))
    }
    const flushed = store.flushedPhysicalOffset
    // A power loss, or a kill and then a power loss of the killed process's disk.
    const snapshot = rnd() < 0.5 ? io.crash(seed) : io.processCrash().crash(seed)
    await store.close()
    // Most rounds: a sector boundary inside the header of a record past the durable offset that
    // the power loss otherwise kept came back torn, zeroing a run of queueId, flag and queueOffset
    // bytes (fields a torn sector can damage without failing the scan's checks) up to it.
    let victim: PutResult | undefined
    const kept: PutResult[] = []
    for (const p of puts.values()) {
      if (p.physicalOffset < flushed) continue
      // Only up to the first record the power loss damaged: the scan stops there anyway.
      if (!recordBytes(snapshot, roundDir, p).equals(recordBytes(io, roundDir, p))) break
      kept.push(p)
    }
    for (let tries = 0; kept.length > 0 && tries < 8 && rnd() < 0.9; tries++) {
      const pick = kept[Math.floor(rnd() * kept.length)]!
      const to = rnd() < 0.3 ? RECORD.flag : RECORD.physicalOffset
      const from = RECORD.queueId + Math.floor(rnd() * (to - RECORD.queueId))
      if (recordBytes(snapshot, roundDir, pick).subarray(from, to).every((b) => b === 0)) continue
      zeroRecordBytes(snapshot, roundDir, pick, from, to - from)
      victim = pick
      tornRounds++
      break
    }
    const reopened = await MessageStore.open({ ...options, fileIO: snapshot })
    try {
      const what = `seed ${seed}`
      assert.ok(reopened.maxPhysicalOffset >= flushed, `${what}: nothing durable lost`)
      if (reopened.recovery.truncated?.reason.includes('claims queue offset')) cutRounds++
      // Every record kept is the one put there, with its queue and queue offset.
      const fileSize = reopened.commitLog.fileSizeBytes
      for (let offset = reopened.minPhysicalOffset; offset < reopened.maxPhysicalOffset; ) {
        let m
        try {
          m = await reopened.lookup(offset)
        } catch {
          offset = (Math.floor(offset / fileSize) + 1) * fileSize // blank: next file
          continue
        }
        const put = puts.get(offset)
        assert.ok(put, `${what}: a record at ${offset} was put there`)
        if (offset === victim?.physicalOffset && (m.queueId !== put.queueId || m.queueOffset !== put.queueOffset)) {
          // Undetectable: a queue id torn onto another queue's next offset, with no later record
          // of either queue to contradict it (queues stay dense, the record is served where its
          // header says).
          keptTorn++
          assert.notEqual(m.queueId, put.queueId, `${what}: a torn queue offset is always found`)
        } else {
          assert.deepEqual([m.queueId, m.queueOffset], [put.queueId, put.queueOffset], `${what}: the record at ${offset} keeps its queue and queue offset`)
        }
        offset += m.storeSize
      }
      await assertQueuesMatchLog(reopened, what)
    } finally {
      await reopened.close()
    }
  }
  t.diagnostic(`${tornRounds} rounds with a torn header, ${cutRounds} cut by the re-dispatch, ${keptTorn} torn queue ids kept`)
})

test('a record whose queue id a power loss tore onto another queue leaves no unit in its old queue', { timeout: 30_000 }, async (t) => {
  const { dir, io, options } = simStoreOptions(t, { messageIndexEnable: false })
  const store = await MessageStore.open(options)
  // Nothing flushed: the durable offset stays 0. The killed process left a@1's unit 0 behind.
  const p = await store.put({ topic: 'a', queueId: 1, body: 'moved by a tear' })
  const snapshot = io.processCrash()
  await store.close()
  zeroRecordBytes(snapshot, dir, p, RECORD.queueId, 4) // now it claims a@0, offset 0: it fits there
  const reopened = await MessageStore.open({ ...options, fileIO: snapshot })
  try {
    assert.equal(reopened.maxOffset('a', 0), 1)
    assert.equal(reopened.maxOffset('a', 1), 0, "a@1 lost the unit pointing at another queue's record")
    assert.equal((await reopened.get({ topic: 'a', queueId: 1, offset: 0 })).messages.length, 0)
    await assertQueuesMatchLog(reopened, 'after the tear')
  } finally {
    await reopened.close()
  }
})

/** Sets the last byte of a record's properties, in the page cache and on the disk. */
function setLastPropertyByte(io: SimFileIO, dir: string, p: PutResult, value: number): void {
  const fileStart = Math.floor(p.physicalOffset / FILE_SIZE) * FILE_SIZE
  const entry = io.files.get(path.resolve(dir, 'commitlog', String(fileStart).padStart(20, '0')))
  assert.ok(entry, `CommitLog file at ${fileStart}`)
  const at = p.physicalOffset - fileStart + p.size - 1
  assert.equal(entry.volatile[at], 0x02, 'properties end with 0x02')
  entry.volatile[at] = entry.durable[at] = value
}

// Torn properties: the body CRC covers the body only, so a record whose properties did not all
// reach the file has consistent lengths and a valid CRC. Every put ends non-empty properties with
// 0x02 (as RocketMQ's clients encode them), so past the durable offset one that does not is cut.
test('a record past the durable offset whose properties do not end with 0x02 is cut at recovery', { timeout: 30_000 }, async (t) => {
  const { dir, io, options } = simStoreOptions(t)
  const store = await MessageStore.open(options)
  await putSome(store, 6, 0)
  await store.flush()
  const unflushed = await putSome(store, 6, 6)
  const snapshot = io.processCrash()
  await store.close()
  const torn = unflushed[2]!
  zeroRecordBytes(snapshot, dir, torn, torn.size - 2, 2)
  const reopened = await MessageStore.open({ ...options, fileIO: snapshot })
  try {
    const cut = reopened.recovery.truncated
    assert.ok(cut, 'the cut is reported')
    assert.equal(cut.atOffset, torn.physicalOffset)
    assert.equal(cut.belowDurableOffset, false)
    assert.match(cut.reason, /0x02/)
    assert.equal(reopened.maxPhysicalOffset, torn.physicalOffset)
    await assertQueuesMatchLog(reopened, 'after the cut')
  } finally {
    await reopened.close()
  }
})

test('below the durable offset a record whose properties do not end with 0x02 is kept (verifyOnOpen too)', { timeout: 30_000 }, async (t) => {
  const { dir, io, options } = simStoreOptions(t)
  const store = await MessageStore.open(options)
  const durable = await putSome(store, 6, 0)
  await store.flush()
  await putSome(store, 6, 6)
  const end = store.maxPhysicalOffset
  const snapshot = io.processCrash()
  await store.close()
  // As a writer that left the last 0x02 off would have stored it ("KEYS 0x01 k2x").
  setLastPropertyByte(snapshot, dir, durable[2]!, 'x'.charCodeAt(0))
  const reopened = await MessageStore.open({ ...options, fileIO: snapshot, verifyOnOpen: true })
  try {
    assert.equal(reopened.recovery.truncated, undefined, 'nothing cut')
    assert.equal(reopened.maxPhysicalOffset, end)
    assert.deepEqual((await reopened.lookup(durable[2]!.physicalOffset)).keys, ['k2x'])
    await assertQueuesMatchLog(reopened, 'after the open')
  } finally {
    await reopened.close()
  }
})

test('every way a put gives properties stores them ending with 0x02: a crash leaves all of them past the durable offset', { timeout: 30_000 }, async (t) => {
  const { io, options } = simStoreOptions(t)
  const store = await MessageStore.open(options)
  const puts: PutResult[] = [
    await store.put({ topic: 'a', queueId: 0, body: 'object', properties: { x: 'y' } }),
    await store.put({ topic: 'a', queueId: 0, body: 'tags and keys', tags: 'T', keys: ['k1', 'k2'] }),
    await store.put({ topic: 'a', queueId: 0, body: 'text', propertiesText: 'TAGS\u0001T\u0002a\u0001b' }),
    await store.put({ topic: 'a', queueId: 0, body: 'bytes', propertiesBytes: Buffer.from('a\u0001b\u0002c\u0001d') }),
    await store.put({ topic: 'a', queueId: 0, body: 'none' }),
    ...(await store.putBatch([
      { topic: 'a', queueId: 1, body: 'batch text', propertiesText: 'KEYS\u0001b1' },
      { topic: 'a', queueId: 1, body: 'batch bytes', propertiesBytes: Buffer.from('KEYS\u0001b2') },
    ])),
  ]
  const end = store.maxPhysicalOffset
  const snapshot = io.processCrash()
  await store.close()
  const reopened = await MessageStore.open({ ...options, fileIO: snapshot })
  try {
    assert.equal(reopened.recovery.durableOffset, 0, 'nothing was flushed: every record is checked')
    assert.equal(reopened.recovery.truncated, undefined, 'nothing cut')
    assert.equal(reopened.maxPhysicalOffset, end)
    assert.deepEqual((await reopened.lookup(puts[3]!.physicalOffset)).properties, { a: 'b', c: 'd' })
    assert.deepEqual((await reopened.lookup(puts[6]!.physicalOffset)).keys, ['b2'])
  } finally {
    await reopened.close()
  }
})
