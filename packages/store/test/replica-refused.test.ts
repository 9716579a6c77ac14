// A replicated record whose dispatch the ConsumeQueue refuses (its queue offset, queue id or topic
// damaged in transit: the body CRC does not cover the header; or a stream from another group's
// master) is never kept: the replica cuts its log back to where dispatch stopped, refuses the
// chunks queued behind it, and the HA link resumes there, so a master resending the record
// undamaged heals it and a master whose record is really bad is refused every time, never
// acknowledged. replicaEndOffset never passes what is dispatched plus the chunks in flight.
import assert from 'node:assert/strict'
import { readFile, readdir } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { seededRandom, seedFromEnv } from '@mqts/common'
import { MessageStore, StoreError, type FlushMode, type MessageStoreOptions, type PutResult } from '../src/index.js'
import { RECORD } from '../src/internal.js'
import { SMALL_FILE, assertDenseLog, tempDir } from './helpers.js'
import { assertSameAnswers, feed, getAll } from './replica-helpers.js'

const SEED = seedFromEnv()

function storeOptions(dir: string, flush: FlushMode, extra: Partial<MessageStoreOptions> = {}): MessageStoreOptions {
  return { dir, flush, commitLogFileSize: SMALL_FILE, maxHashSlotNum: 512, maxIndexNum: 4096, ...extra }
}

/** Stores in temp directories (the first a master, the last a replica); closed and removed after `fn`. */
async function withStores(flush: FlushMode, masters: number, fn: (stores: MessageStore[], dirs: string[]) => Promise<void>): Promise<void> {
  const temps = await Promise.all(Array.from({ length: masters + 1 }, () => tempDir('mqts-refused-')))
  const stores: MessageStore[] = []
  try {
    for (let i = 0; i <= masters; i++) stores.push(await MessageStore.open(storeOptions(temps[i]!.dir, flush, i === masters ? { role: 'replica' } : {})))
    await fn(
      stores,
      temps.map((t) => t.dir),
    )
  } finally {
    for (const s of stores) await s.close().catch(() => undefined)
    for (const t of temps) await t.cleanup()
  }
}

/** The CommitLog files holding [0, end), whole, concatenated. */
async function filesUpTo(dir: string, end: number): Promise<Buffer> {
  const names = (await readdir(path.join(dir, 'commitlog'))).filter((n) => /^\d{20}$/.test(n)).sort()
  return Buffer.concat(await Promise.all(names.filter((n) => Number(n) < end).map((n) => readFile(path.join(dir, 'commitlog', n)))))
}

async function refusal(p: Promise<unknown>): Promise<StoreError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  assert.ok(err instanceof StoreError, `refused with a StoreError, got ${String(err)}`)
  return err
}

async function putMany(master: MessageStore, topic: string, n: number, queues: number, tag = 'm'): Promise<PutResult[]> {
  const out: PutResult[] = []
  for (let i = 0; i < n; i++) out.push(await master.put({ topic, queueId: i % queues, body: Buffer.from(`${tag} ${i} `.padEnd(60 + (i % 50), 'xyz')), tags: `T${i % 3}`, keys: [`k${i}`] }))
  return out
}

/** Flips one bit of the record at `offset` in `chunk` (read from `start`): a header field the body CRC does not cover. */
function damage(chunk: Buffer, start: number, offset: number, field: 'queueOffset' | 'queueId' | 'topic'): void {
  const at = offset - start
  if (field === 'queueOffset') chunk[at + RECORD.queueOffset + 7]! ^= 0x01
  else if (field === 'queueId') chunk[at + RECORD.queueId]! ^= 0x01 // queue 2^24 + q: a queue that does not exist
  else {
    // The first 'o' of "orders" becomes an 'n': still a valid topic, another queue.
    const t = chunk.indexOf('orders', at, 'latin1')
    assert.ok(t > at && t < at + chunk.readInt32BE(at))
    chunk[t]! ^= 0x01
  }
}

for (const flush of ['async', 'sync'] as const) {
  for (const field of ['queueOffset', 'queueId', 'topic'] as const) {
    test(`a record whose ${field} was damaged in transit is refused and cut back; the same bytes undamaged then go in (${flush}, seed ${SEED})`, async () => {
      await withStores(flush, 1, async ([master, replica], dirs) => {
        const results = await putMany(master!, 'orders', 300, 2)
        await feed(master!, replica!, seededRandom(SEED), results[100]!.physicalOffset)
        const start = replica!.replicaEndOffset
        // One chunk: records before the bad one (kept), the bad one, and records after it.
        const bad = results[150]!.physicalOffset
        const good = master!.readCommitLog(start, results[200]!.physicalOffset + 30 - start)
        const chunk = Buffer.from(good)
        damage(chunk, start, bad, field)
        const err = await refusal(replica!.appendReplicated(start, chunk))
        assert.equal(err.code, 'CORRUPT_RECORD')
        assert.match(err.message, new RegExp(`cut .*back to ${bad}\\b.*resumes at ${bad}\\b`))
        assert.equal(replica!.replicaEndOffset, bad, 'the log ends where dispatch stopped')
        assert.equal(replica!.commitLogMaxOffset, bad)
        assert.equal(replica!.dispatcher.reputOffset, bad)
        assert.equal(replica!.dispatcher.lastError, undefined, 'the cut cleared the dispatch error')
        // Refused again while damaged: nothing of it stays.
        assert.equal((await refusal(replica!.appendReplicated(bad, chunk.subarray(bad - start)))).code, 'CORRUPT_RECORD')
        assert.equal(replica!.replicaEndOffset, bad)
        // The master sends it again undamaged: it goes in, and so does the rest.
        await replica!.appendReplicated(bad, good.subarray(bad - start))
        await feed(master!, replica!, seededRandom(SEED + 1))
        assert.equal(replica!.replicaEndOffset, master!.commitLogMaxOffset)
        await assertSameAnswers(master!, replica!, [['orders', 'k150']], `after the ${field} damage`)
        assert.equal((await getAll(replica!, 'orders', 0)).length + (await getAll(replica!, 'orders', 1)).length, 300)
        await master!.flush()
        await replica!.flush()
        const end = master!.commitLogMaxOffset
        assert.ok((await filesUpTo(dirs[1]!, end)).equals(await filesUpTo(dirs[0]!, end)), 'CommitLog files byte-identical')
        await assertDenseLog(replica!, 'replica')
      })
    })
  }
}

test('chunks queued behind a refused record are refused too; the link resumes at the cut', async () => {
  await withStores('async', 1, async ([master, replica]) => {
    const results = await putMany(master!, 'orders', 400, 1)
    await feed(master!, replica!, seededRandom(SEED + 2), results[50]!.physicalOffset)
    const bad = results[120]!.physicalOffset
    const calls: Promise<void>[] = []
    for (let at = replica!.replicaEndOffset, n = 0; at < master!.commitLogMaxOffset; n++) {
      const bytes = Buffer.from(master!.readCommitLog(at, 1500 + ((n * 977) % 4000)))
      if (bad >= at && bad < at + bytes.length) damage(bytes, at, bad, 'queueOffset')
      calls.push(replica!.appendReplicated(at, bytes))
      at += bytes.length
    }
    const outcome = await Promise.allSettled(calls)
    const codes = outcome.map((r) => (r.status === 'rejected' ? (r.reason as StoreError).code : 'ok'))
    const first = codes.findIndex((c) => c !== 'ok')
    assert.equal(codes[first], 'CORRUPT_RECORD', codes.join(' '))
    assert.ok(
      codes.slice(first).every((c) => c === 'CORRUPT_RECORD' || c === 'OFFSET_MISMATCH'),
      `every chunk after the bad one is refused: ${codes.join(' ')}`,
    )
    assert.equal(replica!.replicaEndOffset, bad)
    assert.equal(replica!.maxQueueOffset('orders', 0), 120)
    await feed(master!, replica!, seededRandom(SEED + 3))
    await assertSameAnswers(master!, replica!, [['orders', 'k120']], 'after the pipelined refusal')
  })
})

test("a replica fed another master's log is refused every time and never ends past its dispatched end; a reopen keeps its own log", async () => {
  await withStores('async', 2, async ([a, b, replica], dirs) => {
    await putMany(a!, 'TA', 300, 1, 'A')
    await putMany(b!, 'TB', 1200, 1, 'B')
    await feed(a!, replica!, seededRandom(SEED + 4))
    const endA = replica!.replicaEndOffset
    assert.ok(b!.commitLogMaxOffset > endA + 32_768)
    for (let k = 0; k < 6; k++) {
      const at = replica!.replicaEndOffset
      const err = await refusal(replica!.appendReplicated(at, b!.readCommitLog(at, 32_768)))
      assert.equal(err.code, 'CORRUPT_RECORD', err.message)
      assert.equal(replica!.replicaEndOffset, endA, `try ${k}: the replica's end stays at its dispatched end`)
      assert.ok(replica!.replicaEndOffset <= replica!.dispatcher.reputOffset)
    }
    assert.equal(replica!.maxQueueOffset('TB', 0), 0)
    assert.equal((await getAll(replica!, 'TA', 0)).length, 300)
    await replica!.close()
    const again = await MessageStore.open(storeOptions(dirs[2]!, 'async', { role: 'replica' }))
    try {
      assert.equal(again.commitLogMaxOffset, endA)
      assert.equal((await getAll(again, 'TA', 0)).length, 300)
    } finally {
      await again.close()
    }
  })
})

test('a record whose queue id or queue offset lost its sign is refused before anything of the chunk is written', async () => {
  await withStores('async', 1, async ([master, replica]) => {
    const results = await putMany(master!, 'orders', 60, 2)
    const bad = results[30]!.physicalOffset
    const good = master!.readCommitLog(0, master!.commitLogMaxOffset)
    for (const [field, at] of [
      ['queue id', RECORD.queueId],
      ['queue offset', RECORD.queueOffset],
    ] as const) {
      const chunk = Buffer.from(good)
      chunk[bad + at]! ^= 0x80
      const err = await refusal(replica!.appendReplicated(0, chunk))
      assert.equal(err.code, 'CORRUPT_RECORD')
      assert.match(err.message, new RegExp(`offset ${bad} .*negative ${field}.*nothing of the chunk was written`))
      assert.equal(replica!.replicaEndOffset, 0, `${field}: nothing written`)
    }
    await replica!.appendReplicated(0, good)
    await assertSameAnswers(master!, replica!, [['orders', 'k30']], 'after the sign damage')
  })
})

// After a reopen the store trusts records below its durable offset to replace stale units (a
// re-dispatch after a crash). A truncate below that offset makes the records written past the
// cut new ones: a damaged one must still be refused, not replace the unit its queue holds.
test('a replica reopened, then cut back below its durable end: a damaged record at the cut is still refused', async () => {
  const m = await tempDir('mqts-refused-')
  const r = await tempDir('mqts-refused-')
  const stores: MessageStore[] = []
  try {
    const master = await MessageStore.open(storeOptions(m.dir, 'async'))
    stores.push(master)
    let replica = await MessageStore.open(storeOptions(r.dir, 'async', { role: 'replica' }))
    stores.push(replica)
    const results = await putMany(master, 'orders', 40, 2)
    await feed(master, replica, seededRandom(SEED))
    await replica.close()
    replica = await MessageStore.open(storeOptions(r.dir, 'async', { role: 'replica' }))
    stores.push(replica)
    // The master's log is cut at a record of queue offset 15 and written again from there.
    const cut = results[30]!.physicalOffset
    await master.truncate(cut)
    const again = await putMany(master, 'orders', 4, 2, 'again')
    assert.equal(again[0]!.queueOffset, 15)
    await replica.truncate(cut)
    const good = master.readCommitLog(cut, master.commitLogMaxOffset - cut)
    const chunk = Buffer.from(good)
    damage(chunk, cut, cut, 'queueOffset') // 15 -> 14, a unit its own record holds
    assert.equal((await refusal(replica.appendReplicated(cut, chunk))).code, 'CORRUPT_RECORD')
    assert.equal(replica.replicaEndOffset, cut)
    assert.equal((await replica.get({ topic: 'orders', queueId: 0, offset: 14, maxMessages: 1 })).messages[0]!.physicalOffset, results[28]!.physicalOffset, 'unit 14 kept')
    await replica.appendReplicated(cut, good)
    await assertSameAnswers(master, replica, [['orders', 'k1']], 'after the cut')
  } finally {
    for (const s of stores) await s.close().catch(() => undefined)
    await m.cleanup()
    await r.cleanup()
  }
})
