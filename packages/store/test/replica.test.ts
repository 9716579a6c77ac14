// The replica side and roles: a replica fed with its master's readCommitLog chunks of seeded
// random sizes holds byte-identical CommitLog files and answers get, queryByKey and its
// ConsumeQueues as the master; a wrong offset, a wrong role, garbage and a master with another
// file size are typed errors that write nothing; setRole promotes (dropping a cut record, puts
// continuing each queue densely) and demotes. SEED replays the chunk sizes.
import assert from 'node:assert/strict'
import { readFile, readdir } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { seededRandom, seedFromEnv } from '@mqts/common'
import { MessageStore, StoreError, type FlushMode, type MessageStoreOptions, type PutMessage, type PutResult } from '../src/index.js'
import { END_FILE_MIN_BLANK_LENGTH, NodeFileIO, SimFileIO } from '../src/internal.js'
import { SMALL_FILE, assertDenseLog, tempDir } from './helpers.js'
import { assertSameAnswers, feed } from './replica-helpers.js'

const SEED = seedFromEnv()
const TOPICS = ['orders', 'audit', '%RETRY%group']
const QUEUES = 4

function storeOptions(dir: string, flush: FlushMode, extra: Partial<MessageStoreOptions> = {}): MessageStoreOptions {
  return { dir, flush, commitLogFileSize: SMALL_FILE, maxHashSlotNum: 512, maxIndexNum: 4096, maxTransferBytes: 64 * 1024 * 1024, ...extra }
}

/** A master and a replica in temp directories; both closed and removed after `fn`. */
async function withPair(flush: FlushMode, fn: (master: MessageStore, replica: MessageStore, dirs: { master: string; replica: string }) => Promise<void>, replicaExtra: Partial<MessageStoreOptions> = {}): Promise<void> {
  const m = await tempDir('mqts-master-')
  const r = await tempDir('mqts-replica-')
  const stores: MessageStore[] = []
  try {
    const master = await MessageStore.open(storeOptions(m.dir, flush))
    stores.push(master)
    const replica = await MessageStore.open(storeOptions(r.dir, flush, { role: 'replica', ...replicaExtra }))
    stores.push(replica)
    await fn(master, replica, { master: m.dir, replica: r.dir })
  } finally {
    for (const s of stores) await s.close().catch(() => undefined)
    await m.cleanup()
    await r.cleanup()
  }
}

/** Puts `n` messages over several topics and queues, with keys and tags, singly and in batches. */
async function putSome(master: MessageStore, n: number, rnd: () => number, from = 0): Promise<PutResult[]> {
  const out: PutResult[] = []
  for (let i = from; i < from + n; ) {
    const batch = rnd() < 0.2 ? 1 + Math.floor(rnd() * 5) : 1
    const ms: PutMessage[] = []
    for (let k = 0; k < batch; k++, i++) {
      const topic = TOPICS[i % TOPICS.length]!
      ms.push({ topic, queueId: (i * 7) % QUEUES, body: Buffer.from(`message ${i} `.padEnd(20 + Math.floor(rnd() * 900), 'xyz')), tags: `T${i % 3}`, keys: [`k${i}`, `g${i % 5}`] })
    }
    if (ms.length === 1) out.push(await master.put(ms[0]!))
    else {
      // A batch goes to one queue.
      out.push(...(await master.putBatch(ms.map((m) => ({ ...m, topic: ms[0]!.topic, queueId: ms[0]!.queueId })))))
    }
  }
  return out
}

function keysOf(n: number): Array<[string, string]> {
  const keys: Array<[string, string]> = []
  for (const t of TOPICS) for (let g = 0; g < 5; g++) keys.push([t, `g${g}`])
  for (let i = 0; i < n; i += 17) keys.push([TOPICS[i % TOPICS.length]!, `k${i}`])
  return keys
}

/** The CommitLog files holding [0, end), whole, concatenated. */
async function filesUpTo(dir: string, end: number): Promise<Buffer> {
  const names = (await readdir(path.join(dir, 'commitlog'))).filter((n) => /^\d{20}$/.test(n)).sort()
  const holding = names.filter((n) => Number(n) < end || (end === 0 && Number(n) === 0))
  return Buffer.concat(await Promise.all(holding.map((n) => readFile(path.join(dir, 'commitlog', n)))))
}

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (err) {
    assert.ok(err instanceof StoreError, `a StoreError, got ${String(err)}`)
    return err.code
  }
  return 'no error'
}

for (const flush of ['async', 'sync'] as const) {
  test(`a replica fed in random chunks holds the master's files byte for byte and answers as it (${flush}, seed ${SEED})`, async () => {
    const rnd = seededRandom(SEED)
    await withPair(flush, async (master, replica, dirs) => {
      assert.equal(replica.role, 'replica')
      assert.equal(master.role, 'master')
      let n = 0
      for (let round = 0; round < 4; round++) {
        const count = 80 + Math.floor(rnd() * 80)
        await putSome(master, count, rnd, n)
        n += count
        // Up to a random offset (a record may be cut there), then the rest.
        await feed(master, replica, rnd, Math.floor(rnd() * master.commitLogMaxOffset))
        await assertSameAnswers(master, replica, keysOf(n), `round ${round} part`)
        await feed(master, replica, rnd)
        assert.equal(replica.replicaEndOffset, master.commitLogMaxOffset)
        assert.equal(replica.commitLogMaxOffset, master.commitLogMaxOffset)
        await assertSameAnswers(master, replica, keysOf(n), `round ${round}`)
      }
      assert.ok(master.commitLogMaxOffset > 2 * SMALL_FILE, 'the log spans several files')
      await master.flush()
      await replica.flush()
      const end = master.commitLogMaxOffset
      const mine = await filesUpTo(dirs.replica, end)
      assert.equal(mine.length, (await filesUpTo(dirs.master, end)).length)
      assert.ok(mine.equals(await filesUpTo(dirs.master, end)), 'CommitLog files byte-identical')
      await assertDenseLog(replica, 'replica')
    })
  })

  test(`a replica closed with part of a record held reopens at its last whole record and resumes (${flush}, seed ${SEED})`, async () => {
    const rnd = seededRandom(SEED + 1)
    await withPair(flush, async (master, replica, dirs) => {
      await putSome(master, 200, rnd)
      const results = [await master.put({ topic: 'audit', queueId: 1, body: Buffer.alloc(400, 3) })]
      const cut = results[0]!.physicalOffset + 5
      await feed(master, replica, rnd, cut)
      assert.equal(replica.replicaEndOffset, cut)
      assert.equal(replica.commitLogMaxOffset, results[0]!.physicalOffset, 'only whole records are committed')
      await replica.close()
      const again = await MessageStore.open(storeOptions(dirs.replica, flush, { role: 'replica' }))
      try {
        assert.equal(again.replicaEndOffset, results[0]!.physicalOffset)
        await feed(master, again, rnd)
        await assertSameAnswers(master, again, keysOf(201), 'resumed')
      } finally {
        await again.close()
      }
    })
  })

  test(`a promoted replica drops a cut record and its puts continue every queue densely (${flush}, seed ${SEED})`, async () => {
    const rnd = seededRandom(SEED + 2)
    await withPair(flush, async (master, replica, dirs) => {
      await putSome(master, 150, rnd)
      const last = await master.put({ topic: 'orders', queueId: 2, body: Buffer.alloc(500, 7), keys: 'the-last' })
      // Cut inside the last record's size and magic (the master died mid-record).
      const cut = last.physicalOffset + 1 + Math.floor(rnd() * 30)
      await feed(master, replica, rnd, cut)
      assert.equal(await codeOf(replica.put({ topic: 'orders', queueId: 0, body: Buffer.from('x') })), 'WRONG_ROLE')
      await replica.setRole('master')
      assert.equal(replica.role, 'master')
      assert.equal(replica.replicaEndOffset, last.physicalOffset)
      assert.equal(replica.commitLogMaxOffset, last.physicalOffset)
      const before = new Map<string, number>()
      for (const t of TOPICS) for (let q = 0; q < QUEUES; q++) before.set(`${t}@${q}`, master.maxQueueOffset(t, q))
      // The cut record's queue goes back by one: its message never reached the replica.
      const lost = await master.lookup(last.physicalOffset)
      before.set(`${lost.topic}@${lost.queueId}`, before.get(`${lost.topic}@${lost.queueId}`)! - 1)
      for (const t of TOPICS) {
        for (let q = 0; q < QUEUES; q++) {
          const r = await replica.put({ topic: t, queueId: q, body: Buffer.from(`after promotion ${t} ${q}`) })
          assert.equal(r.queueOffset, before.get(`${t}@${q}`), `queue offset of ${t}@${q} continues`)
        }
      }
      assert.equal(await codeOf(replica.appendReplicated(replica.replicaEndOffset, Buffer.alloc(8))), 'WRONG_ROLE')
      await assertDenseLog(replica, 'promoted')
      await replica.close()
      // Reopened as a master (after a clean close) and after the puts: the same dense log.
      const again = await MessageStore.open(storeOptions(dirs.replica, flush))
      try {
        await assertDenseLog(again, 'promoted, reopened')
        const r = await again.put({ topic: 'orders', queueId: 1, body: Buffer.from('later') })
        assert.equal(r.queueOffset, before.get('orders@1')! + 1)
      } finally {
        await again.close()
      }
    })
  })

  test(`failover: the demoted master follows the promoted replica from its end (${flush}, seed ${SEED})`, async () => {
    const rnd = seededRandom(SEED + 3)
    await withPair(flush, async (a, b, dirs) => {
      await putSome(a, 120, rnd)
      await feed(a, b, rnd)
      await a.setRole('replica')
      await b.setRole('master')
      assert.equal(await codeOf(a.put({ topic: 'orders', queueId: 0, body: Buffer.from('x') })), 'WRONG_ROLE')
      assert.equal(await codeOf(a.putBatch([{ topic: 'orders', queueId: 0, body: Buffer.from('x') }])), 'WRONG_ROLE')
      await putSome(b, 150, rnd, 120)
      await feed(b, a, rnd)
      await assertSameAnswers(b, a, keysOf(270), 'after failover')
      await a.flush()
      await b.flush()
      const end = b.commitLogMaxOffset
      assert.ok((await filesUpTo(dirs.master, end)).equals(await filesUpTo(dirs.replica, end)), 'files byte-identical after failover')
      // The same role again: nothing changes.
      await a.setRole('replica')
      await b.setRole('master')
      assert.equal(a.role, 'replica')
    })
  })
}

test('demotion lets the puts under way finish, then refuses puts; appendReplicated goes on at the end', async () => {
  await withPair('sync', async (master) => {
    const pending = Array.from({ length: 50 }, (_, i) => master.put({ topic: 'orders', queueId: i % 2, body: Buffer.alloc(300 + i, 1) }))
    const demoted = master.setRole('replica')
    const late = codeOf(master.put({ topic: 'orders', queueId: 0, body: Buffer.from('late') }))
    await demoted
    const results = await Promise.all(pending)
    assert.ok(results.every((r) => r.status === 'PUT_OK'))
    assert.equal(await late, 'WRONG_ROLE')
    const last = results[results.length - 1]!
    assert.equal(master.replicaEndOffset, last.physicalOffset + last.size)
    assert.equal(master.commitLogMaxOffset, last.physicalOffset + last.size)
    assert.equal(master.maxOffset('orders', 1), 25)
  })
})

test('appendReplicated calls made without waiting are applied in call order; one that fails makes the later ones mismatch', async () => {
  await withPair('sync', async (master, replica) => {
    await putSome(master, 120, seededRandom(SEED + 8))
    const end = master.commitLogMaxOffset
    const calls: Promise<void>[] = []
    let at = 0
    for (let size = 1; at < end; size = (size * 7 + 13) % 3000) {
      const bytes = master.readCommitLog(at, Math.max(1, size))
      calls.push(replica.appendReplicated(at, bytes))
      at += bytes.length
    }
    await Promise.all(calls)
    assert.equal(replica.commitLogMaxOffset, end)
    await putSome(master, 20, seededRandom(SEED + 9), 120)
    const bad = Buffer.from(master.readCommitLog(end, 300))
    bad.writeInt32BE(0x0badf00d, 4)
    const next = master.readCommitLog(end + 300, 300)
    const results = await Promise.allSettled([replica.appendReplicated(end, bad), replica.appendReplicated(end + 300, next)])
    assert.deepEqual(
      results.map((r) => (r.status === 'rejected' ? (r.reason as StoreError).code : 'ok')),
      ['CORRUPT_RECORD', 'OFFSET_MISMATCH'],
    )
    await feed(master, replica, seededRandom(SEED + 10))
    await assertSameAnswers(master, replica, keysOf(140), 'after pipelined calls')
  })
})

test("a replica promoted right after a file's BLANK puts into the next file", async () => {
  for (const flush of ['async', 'sync'] as const) {
    await withPair(flush, async (master, replica) => {
      await putSome(master, 200, seededRandom(SEED + 11))
      assert.ok(master.commitLogMaxOffset > SMALL_FILE)
      await feed(master, replica, seededRandom(SEED + 12), SMALL_FILE)
      assert.equal(replica.commitLogMaxOffset, SMALL_FILE)
      await replica.setRole('master')
      const r = await replica.put({ topic: 'orders', queueId: 3, body: Buffer.from('first of the next file') })
      assert.equal(r.physicalOffset, SMALL_FILE)
      await assertDenseLog(replica, `promoted at a file end (${flush})`)
    })
  }
})

test('appendReplicated at another offset than the end is OFFSET_MISMATCH and writes nothing', async () => {
  await withPair('async', async (master, replica) => {
    await putSome(master, 30, seededRandom(SEED + 4))
    const chunk = master.readCommitLog(0, 5000)
    const err = await replica.appendReplicated(1, chunk).catch((e: unknown) => e)
    assert.ok(err instanceof StoreError && err.code === 'OFFSET_MISMATCH')
    assert.match(err.message, /offset 1\b.*ends at 0/)
    await replica.appendReplicated(0, chunk.subarray(0, 700))
    assert.equal(await codeOf(replica.appendReplicated(0, chunk.subarray(700))), 'OFFSET_MISMATCH')
    assert.equal(await codeOf(replica.appendReplicated(701, chunk.subarray(701))), 'OFFSET_MISMATCH')
    assert.equal(replica.replicaEndOffset, 700)
    await replica.appendReplicated(700, chunk.subarray(700))
    assert.equal(replica.replicaEndOffset, 5000)
    assert.equal(await codeOf(replica.appendReplicated(-1, chunk)), 'INVALID_ARGUMENT')
    assert.equal(await codeOf(replica.appendReplicated(5000, 'abc' as unknown as Buffer)), 'INVALID_ARGUMENT')
    assert.equal(await codeOf(master.appendReplicated(master.replicaEndOffset, Buffer.alloc(0))), 'WRONG_ROLE')
  })
})

for (const cutAtEnd of [true, false]) {
  test(`a replica holding part of a record, truncated ${cutAtEnd ? 'at its written end' : 'below it'}: the held bytes go and appends continue at the cut`, async () => {
    await withPair('async', async (master, replica) => {
      const rs = await putSome(master, 4, seededRandom(SEED + 5))
      const [, second, third] = rs
      // Whole records up to the third one, and part of it held.
      await replica.appendReplicated(0, master.readCommitLog(0, third!.physicalOffset + 10))
      assert.equal(replica.commitLogMaxOffset, third!.physicalOffset)
      assert.equal(replica.replicaEndOffset, third!.physicalOffset + 10)
      const cut = cutAtEnd ? third!.physicalOffset : second!.physicalOffset
      await replica.truncate(cut)
      assert.equal(replica.commitLogMaxOffset, cut)
      assert.equal(replica.replicaEndOffset, cut, 'the next chunk goes at the cut')
      await replica.appendReplicated(cut, master.readCommitLog(cut, master.commitLogMaxOffset - cut))
      assert.equal(replica.commitLogMaxOffset, master.commitLogMaxOffset)
      assert.ok(replica.readCommitLog(0, master.commitLogMaxOffset).equals(master.readCommitLog(0, master.commitLogMaxOffset)))
    })
  })
}

test('a garbage chunk is CORRUPT_RECORD and nothing of it is written; the right bytes then go in', async () => {
  await withPair('async', async (master, replica, dirs) => {
    const results = await putSome(master, 40, seededRandom(SEED + 5))
    // Three whole records and half of the fourth, the third one's body damaged.
    const end = results[3]!.physicalOffset + 40
    const good = Buffer.from(master.readCommitLog(0, end))
    const bad = Buffer.from(good)
    // A body byte (the body starts right after the 91 + 4 bytes of fixed fields): the CRC says so.
    bad[results[2]!.physicalOffset + 100]! ^= 0xff
    const before = await filesUpTo(dirs.replica, 1)
    assert.equal(await codeOf(replica.appendReplicated(0, bad)), 'CORRUPT_RECORD')
    assert.equal(replica.replicaEndOffset, 0)
    assert.equal(replica.commitLogMaxOffset, 0)
    assert.ok((await filesUpTo(dirs.replica, 1)).equals(before), 'nothing written')
    // A cut header that no record could have.
    const junk = Buffer.from([0x7f, 0xff, 0xff, 0xff, 0x01])
    assert.equal(await codeOf(replica.appendReplicated(0, junk)), 'CORRUPT_RECORD')
    const badMagic = Buffer.from(good.subarray(0, 20))
    badMagic.writeInt32BE(0x12345678, 4)
    assert.equal(await codeOf(replica.appendReplicated(0, badMagic)), 'CORRUPT_RECORD')
    // A cut record whose stored offset is not its own.
    const moved = Buffer.from(good.subarray(0, 60))
    moved.writeBigInt64BE(12345n, 28)
    assert.equal(await codeOf(replica.appendReplicated(0, moved)), 'CORRUPT_RECORD')
    assert.equal(replica.replicaEndOffset, 0)
    await replica.appendReplicated(0, good)
    assert.equal(replica.commitLogMaxOffset, results[3]!.physicalOffset)
    // Garbage completing a record held in part: nothing written, and the held part goes too (it
    // may be the bad part: a record's CRC is known only once it is whole), so the link resumes at
    // the last whole record.
    const rest = Buffer.from(master.readCommitLog(end, results[4]!.physicalOffset + 10 - end))
    rest[100 - 40]! ^= 0x55 // a body byte of the record held in part
    assert.equal(await codeOf(replica.appendReplicated(end, rest)), 'CORRUPT_RECORD')
    assert.equal(replica.commitLogMaxOffset, results[3]!.physicalOffset)
    assert.equal(replica.replicaEndOffset, results[3]!.physicalOffset)
    await feed(master, replica, seededRandom(SEED + 6))
    await assertSameAnswers(master, replica, keysOf(40), 'after garbage')
  })
})

test('a chunk of many records over several files: its body CRCs are checked in runs, and the first bad record is the one reported', async () => {
  await withPair('async', async (master, replica) => {
    // More records than one run of CRC checks holds (1024), in small files (BLANKs between).
    const results: PutResult[] = []
    for (let i = 0; i < 1500; i++) results.push(await master.put({ topic: TOPICS[i % 3]!, queueId: i % QUEUES, body: Buffer.from(`m${i}`), keys: [`k${i}`] }))
    const end = master.commitLogMaxOffset
    const parts: Buffer[] = []
    for (let at = 0; at < end; ) {
      const b = master.readCommitLog(at, end - at)
      parts.push(b)
      at += b.length
    }
    const good = Buffer.concat(parts)
    // Where record i's body ("m<i>") is.
    const bodyAt = (i: number): number => good.indexOf(`m${i}`, results[i]!.physicalOffset)
    const corruptAt = async (damage: (b: Buffer) => void): Promise<StoreError> => {
      const bad = Buffer.from(good)
      damage(bad)
      try {
        await replica.appendReplicated(0, bad)
      } catch (err) {
        assert.ok(err instanceof StoreError && err.code === 'CORRUPT_RECORD', `CORRUPT_RECORD, got ${String(err)}`)
        assert.equal(replica.replicaEndOffset, 0, 'nothing written')
        return err
      }
      return assert.fail('the damaged chunk was taken')
    }
    // A body byte of record 1100 (past the first run), a bad magic code in record 1300.
    const crcFirst = await corruptAt((b) => {
      b[bodyAt(1100)]! ^= 0xff
      b.writeInt32BE(0x12345678, results[1300]!.physicalOffset + 4)
    })
    assert.equal(crcFirst.details.physicalOffset, results[1100]!.physicalOffset)
    assert.match(crcFirst.message, /body CRC/)
    // The magic code first, a body later: the magic code is reported.
    const magicFirst = await corruptAt((b) => {
      b.writeInt32BE(0x12345678, results[900]!.physicalOffset + 4)
      b[bodyAt(1100)]! ^= 0xff
    })
    assert.equal(magicFirst.details.physicalOffset, results[900]!.physicalOffset)
    assert.match(magicFirst.message, /magic/)
    await replica.appendReplicated(0, good)
    assert.equal(replica.commitLogMaxOffset, end)
    await assertSameAnswers(master, replica, [['orders', 'k0'], ['audit', 'k1400']], 'after the big chunk')
  })
})

for (const replicaFileSize of [2 * SMALL_FILE, SMALL_FILE / 2]) {
  test(`a master with another commitLogFileSize (replica ${replicaFileSize}) is FILE_SIZE_MISMATCH and the chunk is not written`, async () => {
    await withPair(
      'sync',
      async (master, replica) => {
        await putSome(master, 300, seededRandom(SEED + 7))
        assert.ok(master.commitLogMaxOffset > 2 * SMALL_FILE)
        let failed: unknown
        let at = 0
        for (;;) {
          const bytes = master.readCommitLog(at, 4096)
          if (bytes.length === 0) break
          const before = replica.commitLogMaxOffset
          try {
            await replica.appendReplicated(at, bytes)
          } catch (err) {
            failed = err
            assert.equal(replica.commitLogMaxOffset, before, 'nothing of the failed chunk committed')
            assert.equal(replica.replicaEndOffset, at, 'the end stays where the chunk was to go')
            break
          }
          at += bytes.length
        }
        assert.ok(failed instanceof StoreError, `a StoreError, got ${String(failed)}`)
        assert.equal(failed.code, 'FILE_SIZE_MISMATCH')
        assert.match(failed.message, /commitLogFileSize/)
      },
      { commitLogFileSize: replicaFileSize },
    )
  })
}

for (const flush of ['async', 'sync'] as const) {
  test(`a replica whose disk is full answers DISK_FULL at a record boundary and resumes once space returns (${flush}, simulated disk)`, async () => {
    const m = await tempDir('mqts-master-')
    const master = await MessageStore.open(storeOptions(m.dir, flush, { messageIndexEnable: false }))
    // Room for two CommitLog files and the ConsumeQueues: the third file cannot be made.
    const io = new SimFileIO({ capacityBytes: 2 * SMALL_FILE + 48 * 1024 })
    const options = storeOptions('/sim/replica-full', flush, { role: 'replica', fileIO: io, messageIndexEnable: false, consumeQueueUnitsPerFile: 100 })
    let replica = await MessageStore.open(options)
    try {
      await putSome(master, 400, seededRandom(SEED + 13))
      assert.ok(master.commitLogMaxOffset > 3 * SMALL_FILE)
      // Up to near the end of the second file, then one chunk across its end (readCommitLog stops
      // at a file's end; an HA link may send more at once): the third file cannot be made.
      await feed(master, replica, seededRandom(SEED + 14), 2 * SMALL_FILE - 100)
      const at = replica.replicaEndOffset
      const across = Buffer.concat([master.readCommitLog(at, 2 * SMALL_FILE - at), master.readCommitLog(2 * SMALL_FILE, 3000)])
      const err = await replica.appendReplicated(at, across).catch((e: unknown) => e)
      assert.ok(err instanceof StoreError && err.code === 'DISK_FULL', `DISK_FULL, got ${String(err)}`)
      assert.equal(replica.commitLogMaxOffset, 2 * SMALL_FILE, 'whole files up to the one that could not be made')
      assert.equal(replica.replicaEndOffset, replica.commitLogMaxOffset, 'nothing held past what was written')
      await assertSameAnswers(master, replica, [], 'disk full')
      io.capacityBytes = Number.POSITIVE_INFINITY
      await feed(master, replica, seededRandom(SEED + 15))
      assert.equal(replica.commitLogMaxOffset, master.commitLogMaxOffset)
      await assertSameAnswers(master, replica, [], 'space returned')
      await replica.close()
      replica = await MessageStore.open({ ...options, fileIO: io.processCrash() })
      await assertSameAnswers(master, replica, [], 'reopened')
    } finally {
      await replica.close()
      await master.close()
      await m.cleanup()
    }
  })
}

test('async flush: a replica writes by pwrite; a failed write is DISK_FULL with nothing of its chunk kept, and the store resumes at its last whole record', async () => {
  const m = await tempDir('mqts-master-')
  // Files large enough for runs of several hundred KiB.
  const fileSize = 1024 * 1024
  const master = await MessageStore.open(storeOptions(m.dir, 'async', { messageIndexEnable: false, commitLogFileSize: fileSize }))
  const io = new SimFileIO()
  const options = storeOptions('/sim/replica-pwrite', 'async', { role: 'replica', fileIO: io, messageIndexEnable: false, commitLogFileSize: fileSize })
  let replica = await MessageStore.open(options)
  try {
    await putSome(master, 2400, seededRandom(SEED + 21))
    assert.ok(master.commitLogMaxOffset > fileSize, `a log past its first file: ${master.commitLogMaxOffset}`)
    await feed(master, replica, seededRandom(SEED + 22), 100 * 1024)
    // The next write to the CommitLog fails as a full disk would (a write through the map would
    // not have met it): a small chunk, then a large one.
    for (const size of [8 * 1024, 256 * 1024]) {
      const at = replica.replicaEndOffset
      const whole = replica.commitLogMaxOffset
      io.failWrites = { code: 'ENOSPC', count: 1, pathIncludes: 'commitlog' }
      const err = await replica.appendReplicated(at, master.readCommitLog(at, size)).catch((e: unknown) => e)
      assert.ok(err instanceof StoreError && err.code === 'DISK_FULL', `DISK_FULL for ${size} bytes, got ${String(err)}`)
      assert.equal(replica.commitLogMaxOffset, whole, 'the store ends where it did')
      assert.equal(replica.replicaEndOffset, whole, 'the bytes held of a cut record went with the chunk')
      await feed(master, replica, seededRandom(SEED + 23 + size), whole + 50 * 1024)
    }
    await replica.close()
    replica = await MessageStore.open({ ...options, fileIO: io.processCrash() })
    await feed(master, replica, seededRandom(SEED + 24))
    assert.equal(replica.commitLogMaxOffset, master.commitLogMaxOffset)
    await assertSameAnswers(master, replica, [], 'after the failed writes and a reopen')
  } finally {
    await replica.close()
    await master.close()
    await m.cleanup()
  }
})

/**
 * Puts single messages until less than a batch of eight 1000-byte bodies fits in the master's
 * file, then that batch: a batch is appended whole in one file, so the file ends with a BLANK
 * whose padding is several records long (a roll a batch caused, as on a busy master).
 */
async function rollOnBatch(master: MessageStore, rnd: () => number): Promise<PutResult[]> {
  const batch = Array.from({ length: 8 }, (_, k) => ({ topic: TOPICS[0]!, queueId: 1, body: Buffer.alloc(1000, 97 + k), tags: 'B', keys: `b${k}` }))
  const room = (): number => SMALL_FILE - (master.commitLogMaxOffset % SMALL_FILE)
  const out: PutResult[] = []
  // Eight records of 1000-byte bodies take more than 8000 bytes, and the BLANK its 8 after them.
  for (let i = 0; room() >= 8000 + END_FILE_MIN_BLANK_LENGTH; i++) {
    out.push(await master.put({ topic: TOPICS[i % TOPICS.length]!, queueId: i % QUEUES, body: Buffer.alloc(20 + Math.floor(rnd() * 900), i % 251), tags: 'R' }))
  }
  out.push(...(await master.putBatch(batch)))
  return out
}

/**
 * The BLANKs that end files among `results` (the gaps before a file's first record): where each
 * starts and its padding, the bytes after its first END_FILE_MIN_BLANK_LENGTH.
 */
function blanksOf(results: PutResult[]): Array<{ at: number; padding: number }> {
  const sorted = [...results].sort((a, b) => a.physicalOffset - b.physicalOffset)
  const out: Array<{ at: number; padding: number }> = []
  for (let i = 1; i < sorted.length; i++) {
    const end = sorted[i - 1]!.physicalOffset + sorted[i - 1]!.size
    if (sorted[i]!.physicalOffset > end) out.push({ at: end, padding: sorted[i]!.physicalOffset - end - END_FILE_MIN_BLANK_LENGTH })
  }
  return out
}

/**
 * How far a replica's end may run ahead of its disk when appendReplicated calls of `chunk` bytes
 * are made without waiting. A call waits while the staged bytes reach the limit, then writes the
 * rest of the record held from the last chunk (under a record) and its chunk's whole records. A
 * BLANK's padding is never staged (the zero-filled file reads zeros there: only the BLANK's first
 * bytes are written) but it moves the end at once, so until the BLANK is durable the end is that
 * much further ahead. The padding is the room a master's append did not fit in: after a batch,
 * several records' worth.
 */
function stagingBound(limit: number, chunk: number, results: PutResult[]): { bound: number; record: number; padding: number } {
  const record = Math.max(...results.map((r) => r.size))
  const padding = Math.max(0, ...blanksOf(results).map((b) => b.padding))
  return { bound: limit + chunk + record + padding, record, padding }
}

test(`sync flush: appendReplicated calls made without waiting stage at most stagingLimitBytes ahead of a slow disk (seed ${SEED})`, async () => {
  const limit = 8 * 1024
  const chunk = 1024
  // The second fdatasync (the first group after the first chunk's) takes 800 ms.
  const io = new NodeFileIO({ writerFaults: { on: 'fdatasync', failCall: 2, delayMs: 800 } })
  await withPair(
    'sync',
    async (master, replica) => {
      const results = await putSome(master, 150, seededRandom(SEED + 16))
      const end = master.commitLogMaxOffset
      await replica.appendReplicated(0, master.readCommitLog(0, chunk))
      let most = 0
      const log = replica.commitLog
      const sample = setInterval(() => (most = Math.max(most, log.wroteOffset - log.committedOffset)), 2)
      try {
        const calls: Promise<void>[] = []
        for (let at = chunk; at < end; ) {
          const bytes = master.readCommitLog(at, chunk)
          calls.push(replica.appendReplicated(at, bytes))
          at += bytes.length
        }
        for (const c of calls) {
          await c
          most = Math.max(most, log.wroteOffset - log.committedOffset)
        }
      } finally {
        clearInterval(sample)
      }
      // Not limit + chunk + two records: a batch that did not fit leaves a BLANK whose padding
      // is larger than a record (SEED=1280464891: 3017 bytes, the end 11745 bytes ahead).
      const { bound, record, padding } = stagingBound(limit, chunk, results)
      assert.ok(most <= bound, `at most ${bound} bytes ahead of the disk (limit ${limit} + chunk ${chunk} + record ${record} + a BLANK's padding ${padding}), saw ${most}`)
      assert.equal(replica.commitLogMaxOffset, end)
    },
    { stagingLimitBytes: limit, fileIO: io },
  )
})

test(`sync flush, stalled disk: appendReplicated stages at most stagingLimitBytes and a call's bytes; a BLANK's padding is never staged (seed ${SEED})`, async () => {
  const limit = 8 * 1024
  const chunk = 1024
  const m = await tempDir('mqts-master-')
  const master = await MessageStore.open(storeOptions(m.dir, 'sync', { messageIndexEnable: false }))
  const io = new SimFileIO()
  const replica = await MessageStore.open(storeOptions('/sim/replica-staging', 'sync', { role: 'replica', fileIO: io, messageIndexEnable: false, stagingLimitBytes: limit }))
  let release = (): void => {}
  try {
    const rnd = seededRandom(SEED + 17)
    const results = [...(await putSome(master, 40, rnd)), ...(await rollOnBatch(master, rnd)), ...(await putSome(master, 20, rnd, 40))]
    const end = master.commitLogMaxOffset
    const blanks = blanksOf(results)
    assert.equal(blanks.length, 1, 'the log crosses one file end')
    const { bound, record, padding } = stagingBound(limit, chunk, results)
    assert.ok(padding > chunk + 2 * record, `the BLANK's padding (${padding}) is several records (${record}) long`)
    // Durable up to a little before the BLANK, with the next file allocated ahead (a stalled disk
    // makes no file), then the disk stalls and the rest is sent without waiting.
    for (let at = 0; at < blanks[0]!.at - 2 * chunk; at = replica.replicaEndOffset) await replica.appendReplicated(at, master.readCommitLog(at, chunk))
    await replica.commitLog.queue.whenIdle()
    release = io.stall()
    const calls: Array<{ settled: boolean; promise: Promise<void> }> = []
    for (let at = replica.replicaEndOffset; at < end; ) {
      const bytes = master.readCommitLog(at, chunk)
      const call = { settled: false, promise: replica.appendReplicated(at, bytes) }
      call.promise.then(() => (call.settled = true), () => (call.settled = true))
      calls.push(call)
      at += bytes.length
    }
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
    const log = replica.commitLog
    const ahead = log.wroteOffset - log.committedOffset
    assert.ok(log.wroteOffset > blanks[0]!.at + padding, 'the BLANK and records after it are written, not durable')
    assert.ok(log.stagingFull, 'the staging area is full: the calls left wait for it')
    assert.ok(calls.every((c) => !c.settled), 'nothing is durable while the disk is stalled')
    // The staged bytes (the end less the BLANK's padding) are within the limit and one call's.
    assert.ok(ahead - padding <= limit + chunk + record, `staged at most ${limit} + ${chunk} + ${record} bytes, saw ${ahead - padding}`)
    assert.ok(ahead <= bound, `at most ${bound} bytes ahead of the disk, saw ${ahead}`)
    release()
    await Promise.all(calls.map((c) => c.promise))
    assert.equal(replica.commitLogMaxOffset, end)
  } finally {
    release()
    await replica.close()
    await master.close()
    await m.cleanup()
  }
})

test('role is checked at open and by setRole', async () => {
  const { dir, cleanup } = await tempDir('mqts-role-')
  try {
    assert.equal(await codeOf(MessageStore.open({ dir, role: 'slave' as unknown as 'replica' })), 'INVALID_ARGUMENT')
    const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, messageIndexEnable: false })
    try {
      assert.equal(store.role, 'master')
      assert.equal(await codeOf(store.setRole('backup' as unknown as 'replica')), 'INVALID_ARGUMENT')
      await store.setRole('master')
      assert.equal(store.role, 'master')
    } finally {
      await store.close()
    }
    assert.equal(await codeOf(store.setRole('replica')), 'NOT_OPEN')
    assert.equal(await codeOf(store.appendReplicated(0, Buffer.alloc(1))), 'NOT_OPEN')
  } finally {
    await cleanup()
  }
})
