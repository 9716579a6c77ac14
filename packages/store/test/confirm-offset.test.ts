// The confirm offset (confirmOffset: true): get, key queries, arrival events and readCommitLog see
// only records ending at or below the offset set with setConfirmOffset (also one inside a record),
// puts resolve by their flush mode without waiting for it, queue offsets stay dense past it; it
// survives a clean reopen, a kill (it comes back as the checkpoint last had it, never higher, and
// ConsumeQueue units past it go) and a power loss once synced; every misuse is a typed error.
// Seeded power losses while it moves (POWER_LOSS_ROUNDS; SEED=<n> replays from that base seed).
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { test, type TestContext } from 'node:test'
import { MessageStore, type FlushMode, type MessageStoreOptions, type PutResult } from '../src/index.js'
import { CHECKPOINT, RECORD, SimFileIO, decodeCheckpoint, encodeCheckpoint } from '../src/internal.js'
import { seededRandom } from '@mqts/common'
import { isStoreError as isCode, SIM_INDEX, SMALL_FILE, assertDenseLog, simDir, tempDir } from './helpers.js'

const BASE_SEED = process.env.SEED ? Number(process.env.SEED) : Date.now() % 1_000_000
const POWER_LOSS_ROUNDS = 6

const end = (r: PutResult): number => r.physicalOffset + r.size

/** Queue offsets `get` finds in (topic, queueId) from 0 (following nextOffset across files). */
async function visible(store: MessageStore, topic = 'c', queueId = 0): Promise<number[]> {
  const found: number[] = []
  for (let offset = 0; ; ) {
    const r = await store.get({ topic, queueId, offset, maxMessages: 1000 })
    found.push(...r.messages.map((m) => m.queueOffset))
    if (r.status !== 'FOUND') return found
    offset = r.nextOffset
  }
}

async function putN(store: MessageStore, n: number, from = 0): Promise<PutResult[]> {
  const rs: PutResult[] = []
  for (let i = from; i < from + n; i++) rs.push(await store.put({ topic: 'c', queueId: 0, body: `message ${i} `.padEnd(40 + i * 13, '.'), keys: [`k${i}`, 'all'] }))
  return rs
}

function simOptions(t: TestContext, flush: FlushMode, extra: Partial<MessageStoreOptions> = {}): MessageStoreOptions {
  return { dir: simDir(t), flush, commitLogFileSize: SMALL_FILE, consumeQueueUnitsPerFile: 4, ...SIM_INDEX, confirmOffset: true, ...extra }
}

for (const flush of ['sync', 'async'] as const) {
  test(`consumers see only records ending at or below the confirm offset, also one set inside a record (${flush})`, { timeout: 30_000 }, async () => {
    const { dir, cleanup } = await tempDir('mqts-confirm-')
    const store = await MessageStore.open({ dir, flush, commitLogFileSize: SMALL_FILE, confirmOffset: true })
    try {
      const arrived: number[] = []
      store.onMessageArrived((_topic, _queueId, maxOffset) => arrived.push(maxOffset))
      assert.equal(store.confirmOffset, 0)
      // Puts resolve by their flush mode, though nothing is confirmed.
      const rs = await putN(store, 4)
      assert.deepEqual(rs.map((r) => r.queueOffset), [0, 1, 2, 3])
      if (flush === 'sync') assert.ok(store.flushedPhysicalOffset >= end(rs[3]!), 'sync: durable when it resolved')
      await store.whenDispatched()
      assert.equal((await store.get({ topic: 'c', queueId: 0, offset: 0 })).status, 'NO_MESSAGE_IN_QUEUE')
      assert.equal(store.maxOffset('c', 0), 0)
      assert.equal(store.maxQueueOffset('c', 0), 4, 'queue offsets are taken at append time')
      assert.deepEqual(await store.queryByKey('c', 'all'), [])
      assert.equal(store.readCommitLog(0, 1 << 20).length, 0, 'readCommitLog stops at the confirm offset')
      assert.equal(store.readCommitLog(0, 1 << 20, { unconfirmed: true }).length, store.commitLogMaxOffset, 'replication reads past it')
      assert.deepEqual(arrived, [])

      // Inside the first record: still nothing.
      store.setConfirmOffset(end(rs[0]!) - 1)
      await store.whenDispatched()
      assert.deepEqual(await visible(store), [])
      assert.deepEqual(arrived, [])
      // Inside the third record: the first two.
      const inside = rs[2]!.physicalOffset + 7
      store.setConfirmOffset(inside)
      await store.whenDispatched()
      assert.equal(store.confirmOffset, inside)
      assert.deepEqual(await visible(store), [0, 1])
      assert.equal(store.maxOffset('c', 0), 2)
      assert.equal(arrived.at(-1), 2, 'onMessageArrived fires when the confirm offset advances')
      arrived.length = 0
      assert.deepEqual((await store.queryByKey('c', 'all')).map((m) => m.queueOffset), [1, 0])
      assert.equal(store.readCommitLog(0, 1 << 20).length, inside, 'raw bytes up to the confirm offset exactly')
      assert.equal((await store.get({ topic: 'c', queueId: 0, offset: 0, raw: true })).records.length, 2)
      await assert.rejects(async () => store.readCommitLog(inside + 1, 10), isCode('OFFSET_OUT_OF_RANGE'))
      assert.equal(store.readCommitLog(inside + 1, 10, { unconfirmed: true }).length, 10)

      // Typed errors, nothing changed.
      assert.throws(() => store.setConfirmOffset(store.commitLogMaxOffset + 1), isCode('OFFSET_OUT_OF_RANGE'))
      assert.throws(() => store.setConfirmOffset(end(rs[1]!) - 1), isCode('OFFSET_OUT_OF_RANGE'), 'below what consumers saw')
      assert.throws(() => store.setConfirmOffset(-1), isCode('INVALID_ARGUMENT'))
      assert.throws(() => store.setConfirmOffset(1.5), isCode('INVALID_ARGUMENT'))
      assert.throws(() => store.setConfirmOffset('5' as unknown as number), isCode('INVALID_ARGUMENT'))
      assert.throws(() => store.readCommitLog(0, 10, { unconfirmed: 'yes' as unknown as boolean }), isCode('INVALID_ARGUMENT'))
      assert.throws(() => store.readCommitLog(0, 10, null as unknown as object), isCode('INVALID_ARGUMENT'))
      assert.equal(store.confirmOffset, inside)
      // Lowered, but not below what was dispatched: allowed.
      store.setConfirmOffset(end(rs[1]!))
      assert.equal(store.confirmOffset, end(rs[1]!))

      // New puts continue the queue densely; everything once confirmed.
      const more = await putN(store, 2, 4)
      assert.deepEqual(more.map((r) => r.queueOffset), [4, 5])
      store.setConfirmOffset(store.commitLogMaxOffset)
      await store.whenDispatched()
      assert.deepEqual(await visible(store), [0, 1, 2, 3, 4, 5])
      assert.equal(arrived.at(-1), 6)
      assert.equal(store.confirmOffset, store.commitLogMaxOffset)
    } finally {
      await store.close()
      await cleanup()
    }
  })
}

test('without confirmOffset: setConfirmOffset is refused, confirmOffset is commitLogMaxOffset; the option is checked', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir('mqts-confirm-')
  try {
    await assert.rejects(MessageStore.open({ dir, confirmOffset: 'yes' as unknown as boolean }), isCode('INVALID_ARGUMENT'))
    const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE })
    try {
      const [r] = await putN(store, 1)
      assert.equal(store.confirmOffset, end(r!))
      assert.equal(store.confirmOffset, store.commitLogMaxOffset)
      assert.throws(() => store.setConfirmOffset(0), isCode('INVALID_ARGUMENT'))
      assert.deepEqual(await visible(store), [0])
    } finally {
      await store.close()
    }
  } finally {
    await cleanup()
  }
})

for (const flush of ['sync', 'async'] as const) {
  test(`a clean reopen keeps the confirm offset; queue offsets continue past unconfirmed records (${flush})`, { timeout: 30_000 }, async (t) => {
    const io = new SimFileIO()
    const options = simOptions(t, flush)
    let store = await MessageStore.open({ ...options, fileIO: io })
    try {
      const rs = await putN(store, 9)
      const inside = rs[5]!.physicalOffset + 1
      store.setConfirmOffset(inside)
      await store.whenDispatched()
      await store.close()
      store = await MessageStore.open({ ...options, fileIO: io })
      assert.equal(store.recovery.cleanShutdown, true)
      assert.equal(store.confirmOffset, inside)
      assert.deepEqual(await visible(store), [0, 1, 2, 3, 4])
      const [next] = await putN(store, 1, 9)
      assert.equal(next!.queueOffset, 9, 'after the 9 records, 4 of them unconfirmed')
      store.setConfirmOffset(store.commitLogMaxOffset)
      await store.whenDispatched()
      assert.deepEqual(await visible(store), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      await assertDenseLog(store)
      // Opened without it, everything is visible; opened with it again, it starts from there.
      await store.close()
      store = await MessageStore.open({ ...options, confirmOffset: false, fileIO: io })
      const [plain] = await putN(store, 1, 10)
      assert.deepEqual(await visible(store), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
      await store.close()
      store = await MessageStore.open({ ...options, fileIO: io })
      assert.equal(store.confirmOffset, end(plain!))
      assert.deepEqual(await visible(store), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    } finally {
      await store.close()
    }
  })

  test(`after a kill the confirm offset is the one the checkpoint had, never higher: units past it go, key queries skip it (${flush})`, { timeout: 30_000 }, async (t) => {
    let io = new SimFileIO()
    // No periodic ConsumeQueue flush: the checkpoint keeps the confirm offset of the clean close.
    const options = simOptions(t, flush, { flushConsumeQueueIntervalMs: 1e9, flushIntervalMs: 1e9, flushThoroughIntervalMs: 1e9 })
    let store = await MessageStore.open({ ...options, fileIO: io })
    try {
      const rs = await putN(store, 8)
      const first = end(rs[2]!) + 3
      store.setConfirmOffset(first)
      await store.close()
      store = await MessageStore.open({ ...options, fileIO: io })
      assert.equal(store.confirmOffset, first)
      store.setConfirmOffset(store.commitLogMaxOffset)
      await store.whenDispatched()
      assert.deepEqual(await visible(store), [0, 1, 2, 3, 4, 5, 6, 7])
      assert.equal((await store.queryByKey('c', 'all', { maxNum: 100 })).length, 8)
      // Killed before any checkpoint write carried the new value.
      const killed = io.processCrash()
      await store.close()
      io = killed
      store = await MessageStore.open({ ...options, fileIO: io })
      assert.equal(store.recovery.cleanShutdown, false)
      assert.equal(store.confirmOffset, first, 'the confirm offset the checkpoint had')
      assert.deepEqual(await visible(store), [0, 1, 2], 'nothing past it, though its units were written before the kill')
      assert.equal(store.maxOffset('c', 0), 3)
      assert.deepEqual((await store.queryByKey('c', 'all', { maxNum: 100 })).map((m) => m.queueOffset), [2, 1, 0], 'the index entries past it are not answered')
      assert.equal(store.readCommitLog(0, 1 << 20).length, first)
      // Appends continue past the unconfirmed records; confirming brings everything back.
      const [next] = await putN(store, 1, 8)
      assert.equal(next!.queueOffset, 8)
      store.setConfirmOffset(store.commitLogMaxOffset)
      await store.whenDispatched()
      assert.deepEqual(await visible(store), [0, 1, 2, 3, 4, 5, 6, 7, 8])
      assert.equal((await store.queryByKey('c', 'all', { maxNum: 100 })).length, 9)
      await assertDenseLog(store)
    } finally {
      await store.close()
    }
  })

  test(`the confirm offset is synced with the periodic checkpoint flush and survives a power loss (${flush})`, { timeout: 30_000 }, async (t) => {
    let io = new SimFileIO()
    const options = simOptions(t, flush, { flushConsumeQueueIntervalMs: 5 })
    let store = await MessageStore.open({ ...options, fileIO: io })
    try {
      const rs = await putN(store, 6)
      await store.flush()
      const at = rs[4]!.physicalOffset + 2
      store.setConfirmOffset(at)
      const file = io.files.get(path.join(options.dir, 'checkpoint'))!
      // Bounded wait for the periodic flush (every 5 ms) to sync it.
      for (let i = 0; i < 2000 && file.durable.readBigInt64BE(CHECKPOINT.confirmPhyOffset) !== BigInt(at); i++) await sleep(5)
      assert.equal(file.durable.readBigInt64BE(CHECKPOINT.confirmPhyOffset), BigInt(at), 'synced at byte 32 (confirmPhyOffset)')
      const lost = io.crash(7)
      await store.close()
      io = lost
      store = await MessageStore.open({ ...options, fileIO: io })
      assert.equal(store.confirmOffset, at)
      assert.deepEqual(await visible(store), [0, 1, 2, 3])
    } finally {
      await store.close()
    }
  })
}

test('key queries skip index entries past the confirm offset that outlived a kill (the index synced, the checkpoint not)', { timeout: 30_000 }, async (t) => {
  let io = new SimFileIO()
  const options = simOptions(t, 'sync', { flushConsumeQueueIntervalMs: 5 })
  let store = await MessageStore.open({ ...options, fileIO: io })
  try {
    const rs = await putN(store, 6)
    const first = end(rs[1]!)
    store.setConfirmOffset(first)
    await store.close()
    store = await MessageStore.open({ ...options, fileIO: io })
    // Every write of the store's checkpoint fails from now on; the periodic flush still syncs the
    // ConsumeQueues and the index first.
    io.failWrites = { code: 'EIO', count: 1e9, pathIncludes: path.join(options.dir, 'checkpoint') }
    store.setConfirmOffset(store.commitLogMaxOffset)
    await store.whenDispatched()
    for (let i = 0; i < 2000 && io.failWrites.count === 1e9; i++) await sleep(5)
    assert.ok(io.failWrites.count < 1e9, 'a checkpoint write was tried after the index flush')
    const killed = io.processCrash()
    io.failWrites = undefined
    await store.close().catch(() => undefined)
    io = killed
    store = await MessageStore.open({ ...options, fileIO: io })
    assert.equal(store.confirmOffset, first)
    assert.deepEqual((await store.queryByKey('c', 'all', { maxNum: 100 })).map((m) => m.queueOffset), [1, 0])
    assert.deepEqual((await store.queryByKey('c', 'k5')).length, 0)
    store.setConfirmOffset(store.commitLogMaxOffset)
    await store.whenDispatched()
    assert.equal((await store.queryByKey('c', 'all', { maxNum: 100 })).length, 6)
  } finally {
    await store.close()
  }
})

test('a record past the confirm offset and the durable offset whose queue offset was torn is cut at open, as the re-dispatch would', { timeout: 30_000 }, async (t) => {
  const io = new SimFileIO()
  const options = simOptions(t, 'sync')
  let store = await MessageStore.open({ ...options, fileIO: io })
  const rs = await putN(store, 6)
  store.setConfirmOffset(end(rs[1]!))
  await store.close()
  store = await MessageStore.open({ ...options, fileIO: io })
  const killed = io.processCrash()
  await store.close()
  // A power loss tore the queue offset of record 4 (the body CRC does not cover it); the
  // checkpoint's durable offset is below it.
  const log = killed.files.get(path.join(options.dir, 'commitlog', '00000000000000000000'))!
  for (const b of [log.volatile, log.durable]) b.writeBigInt64BE(9n, rs[4]!.physicalOffset + RECORD.queueOffset)
  const cp = killed.files.get(path.join(options.dir, 'checkpoint'))!
  const values = decodeCheckpoint(cp.volatile)
  values.physicalFlushedOffset = end(rs[2]!)
  for (const b of [cp.volatile, cp.durable]) encodeCheckpoint(b, values)
  store = await MessageStore.open({ ...options, fileIO: killed })
  try {
    assert.equal(store.recovery.truncated?.atOffset, rs[4]!.physicalOffset, 'cut at the torn record')
    assert.equal(store.commitLogMaxOffset, rs[4]!.physicalOffset)
    assert.equal(store.confirmOffset, end(rs[1]!))
    assert.equal(store.maxQueueOffset('c', 0), 4)
    const [next] = await putN(store, 1, 6)
    assert.equal(next!.queueOffset, 4, 'the queue continues after the last sound record')
    store.setConfirmOffset(store.commitLogMaxOffset)
    await store.whenDispatched()
    assert.deepEqual(await visible(store), [0, 1, 2, 3, 4])
    await assertDenseLog(store)
  } finally {
    await store.close()
  }
})

test('the confirm offset is clamped to the end of the recovered log', { timeout: 30_000 }, async (t) => {
  const io = new SimFileIO()
  const options = simOptions(t, 'sync')
  let store = await MessageStore.open({ ...options, fileIO: io })
  try {
    await putN(store, 3)
    store.setConfirmOffset(store.commitLogMaxOffset)
    const logEnd = store.commitLogMaxOffset
    await store.close()
    // A checkpoint claiming more than the log holds (as one written ahead of data a power loss
    // then lost would).
    const entry = io.files.get(path.join(options.dir, 'checkpoint'))!
    const values = decodeCheckpoint(entry.volatile)
    values.confirmPhyOffset = logEnd + 5000
    for (const b of [entry.volatile, entry.durable]) encodeCheckpoint(b, values)
    store = await MessageStore.open({ ...options, fileIO: io })
    assert.equal(store.confirmOffset, logEnd)
    // Synced at once: appends past the end must not find the old value covering them after a crash.
    assert.equal(io.files.get(path.join(options.dir, 'checkpoint'))!.durable.readBigInt64BE(CHECKPOINT.confirmPhyOffset), BigInt(logEnd))
    assert.deepEqual(await visible(store), [0, 1, 2])
  } finally {
    await store.close()
  }
  await assert.rejects(async () => store.setConfirmOffset(0), isCode('NOT_OPEN'))
})

for (let round = 0; round < POWER_LOSS_ROUNDS; round++) {
  const seed = BASE_SEED + round
  test(`power loss while the confirm offset moves (seed ${seed}): it comes back no higher, consumers see exactly the acknowledged records below it, queues stay dense`, { timeout: 60_000 }, async (t) => {
    const rnd = seededRandom(seed)
    let io = new SimFileIO()
    const options = simOptions(t, 'sync', { flushConsumeQueueIntervalMs: 5 })
    let store = await MessageStore.open({ ...options, fileIO: io })
    const acked: { r: PutResult; topic: string; queueId: number }[] = []
    let confirm = 0
    // A lowered value is durable only once synced (setConfirmOffset's doc): after a power loss the
    // store may come back at a higher one set before, never above the highest ever set.
    let highest = 0
    try {
      for (let batch = 0; batch < 12; batch++) {
        const n = 1 + Math.floor(rnd() * 10)
        const puts = Array.from({ length: n }, (_, i) => {
          const topic = `t${Math.floor(rnd() * 2)}`
          const queueId = Math.floor(rnd() * 2)
          return store.put({ topic, queueId, body: `b${batch}-${i}`.padEnd(30 + Math.floor(rnd() * 600), 'x'), keys: ['k'] }).then((r) => acked.push({ r, topic, queueId }))
        })
        await Promise.all(puts)
        if (rnd() < 0.6) {
          const pending = acked.filter((a) => end(a.r) > confirm)
          const a = pending[Math.floor(rnd() * pending.length)]
          confirm = !a || rnd() < 0.3 ? store.commitLogMaxOffset : a.r.physicalOffset + 1 + Math.floor(rnd() * a.r.size)
          store.setConfirmOffset(confirm)
          highest = Math.max(highest, confirm)
        }
        if (rnd() < 0.3) await sleep(Math.floor(rnd() * 8))
      }
      // More appends in flight while the power goes.
      const inFlight = Array.from({ length: 6 }, (_, i) => store.put({ topic: 't0', queueId: 0, body: `late${i}` }).catch(() => undefined))
      const lost = io.crash(seed)
      await Promise.all(inFlight)
      await store.close()
      io = lost
      store = await MessageStore.open({ ...options, fileIO: io })
      const now = store.confirmOffset
      assert.ok(now <= highest, `confirm offset ${now} after the power loss is at most the highest one set, ${highest} (the last was ${confirm})`)
      assert.ok(now <= store.commitLogMaxOffset)
      for (const { r, topic, queueId } of acked) {
        const got = await store.get({ topic, queueId, offset: r.queueOffset, maxMessages: 1 })
        if (end(r) <= now) {
          assert.equal(got.status, 'FOUND', `${topic}/${queueId}:${r.queueOffset} (ends at ${end(r)}, confirm ${now})`)
          assert.equal(got.messages[0]!.physicalOffset, r.physicalOffset)
        } else assert.notEqual(got.status, 'FOUND', `${topic}/${queueId}:${r.queueOffset} ends at ${end(r)}, past the confirm offset ${now}`)
      }
      store.setConfirmOffset(store.commitLogMaxOffset)
      await store.whenDispatched()
      for (const { r, topic, queueId } of acked) {
        const got = await store.get({ topic, queueId, offset: r.queueOffset, maxMessages: 1 })
        assert.equal(got.messages[0]?.physicalOffset, r.physicalOffset, `${topic}/${queueId}:${r.queueOffset} once confirmed`)
      }
      await assertDenseLog(store)
    } finally {
      await store.close()
    }
  })
}
