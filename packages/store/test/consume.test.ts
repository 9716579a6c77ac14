// The read path: ConsumeQueues built by dispatch, `get` with RocketMQ's statuses, tag filtering,
// offsetByTime, arrival notifications, the bound on open ConsumeQueue files, and recovery of the
// queues against the CommitLog (behind, ahead, deleted, power loss on the simulated disk).
import assert from 'node:assert/strict'
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, javaStringHashCode, type MessageStoreOptions, type PutResult } from '../src/index.js'
import { CQ_UNIT, SimFileIO } from '../src/internal.js'
import { SIM_INDEX, SMALL_FILE, queueUnits, reopen, simDir, tempDir } from './helpers.js'

const CQ_UNITS = 50

function body(topic: string, queueId: number, n: number): Buffer {
  return Buffer.from(`${topic}/${queueId}/${n}/`.padEnd(100 + (n % 300), 'x'))
}

async function fill(store: MessageStore, topics: string[], queues: number, perQueue: number): Promise<Map<string, PutResult[]>> {
  const puts = new Map<string, PutResult[]>()
  for (let n = 0; n < perQueue; n++) {
    for (const topic of topics) {
      for (let q = 0; q < queues; q++) {
        const r = await store.put({ topic, queueId: q, body: body(topic, q, n), tags: n % 3 === 0 ? 'TagA' : n % 3 === 1 ? 'TagB' : undefined, keys: `k${n}` })
        const key = `${topic}@${q}`
        if (!puts.has(key)) puts.set(key, [])
        puts.get(key)!.push(r)
      }
    }
  }
  return puts
}

/** Reads a whole queue with `get` in batches, following nextOffset. */
async function readAll(store: MessageStore, topic: string, queueId: number, batch = 32, tags?: string[]): Promise<Array<{ queueOffset: number; body: string; tags: string | undefined }>> {
  const out: Array<{ queueOffset: number; body: string; tags: string | undefined }> = []
  let offset = store.minOffset(topic, queueId)
  for (let guard = 0; guard < 100_000; guard++) {
    const r = await store.get({ topic, queueId, offset, maxMessages: batch, tags })
    if (r.status === 'OFFSET_OVERFLOW_ONE' || r.status === 'NO_MESSAGE_IN_QUEUE') break
    assert.ok(r.status === 'FOUND' || r.status === 'NO_MATCHED_MESSAGE', `unexpected ${r.status} at ${offset}`)
    assert.ok(r.nextOffset > offset, 'nextOffset moves forward')
    assert.ok(r.messages.length <= batch)
    for (const m of r.messages) out.push({ queueOffset: m.queueOffset, body: m.body.toString(), tags: m.tags })
    offset = r.nextOffset
  }
  return out
}

test('many topics and queues interleaved are read back in order, across CommitLog and ConsumeQueue files', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const options: MessageStoreOptions = { dir, commitLogFileSize: SMALL_FILE, consumeQueueUnitsPerFile: CQ_UNITS }
  try {
    let store = await MessageStore.open(options)
    const topics = ['alpha', 'beta', 'gamma']
    const puts = await fill(store, topics, 4, 130)
    assert.ok(store.commitLog.queue.files.length > 5, 'the CommitLog rolled over many files')
    const check = async (s: MessageStore): Promise<void> => {
      for (const topic of topics) {
        for (let q = 0; q < 4; q++) {
          assert.equal(s.minOffset(topic, q), 0)
          assert.equal(s.maxOffset(topic, q), 130)
          const got = await readAll(s, topic, q)
          assert.equal(got.length, 130)
          got.forEach((m, n) => {
            assert.equal(m.queueOffset, n)
            assert.equal(m.body, body(topic, q, n).toString())
          })
          assert.equal(puts.get(`${topic}@${q}`)![129]!.queueOffset, 129)
        }
      }
      const files = await readdir(path.join(dir, 'consumequeue', 'alpha', '0'))
      assert.deepEqual(files, ['00000000000000000000', '00000000000000001000', '00000000000000002000'], 'ConsumeQueue files named by logical byte offset')
      assert.equal((await stat(path.join(dir, 'consumequeue', 'alpha', '0', files[0]!))).size, CQ_UNITS * CQ_UNIT.bytes)
    }
    await check(store)
    store = await reopen(store, options)
    await check(store)
    await store.close()
  } finally {
    await cleanup()
  }
})

test('ConsumeQueue units hold offset, size and the Java hash of the tag, big-endian', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE })
    const a = await store.put({ topic: 'units', queueId: 3, body: 'one', tags: 'TagA' })
    const b = await store.put({ topic: 'units', queueId: 3, body: 'two' })
    const c = await store.put({ topic: 'units', queueId: 3, body: 'three', tags: 'ÄÖ-tag' })
    await store.close()
    const file = await readFile(path.join(dir, 'consumequeue', 'units', '3', '00000000000000000000'))
    assert.equal(file.length, 300_000 * 20, 'RocketMQ default: 300,000 units per file')
    const expect = [
      [a, javaStringHashCode('TagA')],
      [b, 0],
      [c, javaStringHashCode('ÄÖ-tag')],
    ] as const
    expect.forEach(([r, hash], i) => {
      assert.equal(Number(file.readBigInt64BE(i * 20)), r.physicalOffset)
      assert.equal(file.readInt32BE(i * 20 + 8), r.size)
      assert.equal(Number(file.readBigInt64BE(i * 20 + 12)), hash, 'tags code sign-extended to a long')
    })
    assert.ok(file.subarray(60, 4096).every((x) => x === 0))
  } finally {
    await cleanup()
  }
})

test('tag filtering: hash then real tag, "*" and [] mean all, nextOffset skips filtered units', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, consumeQueueUnitsPerFile: CQ_UNITS })
    // "Aa" and "BB" share a Java hash: the real tag must decide.
    assert.equal(javaStringHashCode('Aa'), javaStringHashCode('BB'))
    for (let i = 0; i < 120; i++) await store.put({ topic: 'tags', queueId: 0, body: `m${i}`, tags: ['Aa', 'BB', 'C'][i % 3] })
    await store.put({ topic: 'tags', queueId: 0, body: 'untagged' })
    const onlyAa = await readAll(store, 'tags', 0, 32, ['Aa'])
    assert.equal(onlyAa.length, 40)
    assert.ok(onlyAa.every((m) => m.tags === 'Aa'))
    const two = await readAll(store, 'tags', 0, 32, ['BB', ' C '])
    assert.equal(two.length, 80)
    assert.equal((await readAll(store, 'tags', 0, 32, ['*'])).length, 121)
    assert.equal((await readAll(store, 'tags', 0, 32, [])).length, 121)
    const none = await store.get({ topic: 'tags', queueId: 0, offset: 0, tags: ['Nope'] })
    assert.equal(none.status, 'NO_MATCHED_MESSAGE')
    assert.equal(none.messages.length, 0)
    assert.equal(none.nextOffset, CQ_UNITS, 'a read stops at the end of the ConsumeQueue file')
    await store.close()
  } finally {
    await cleanup()
  }
})

test('get answers RocketMQ statuses and offsets at the edges', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, consumeQueueUnitsPerFile: CQ_UNITS })
    let r = await store.get({ topic: 'edges', queueId: 0, offset: 7 })
    assert.deepEqual({ ...r, messages: r.messages.length, records: r.records.length }, { status: 'NO_MESSAGE_IN_QUEUE', messages: 0, records: 0, nextOffset: 0, minOffset: 0, maxOffset: 0 })
    for (let i = 0; i < 10; i++) await store.put({ topic: 'edges', queueId: 0, body: Buffer.alloc(1000, i) })
    r = await store.get({ topic: 'edges', queueId: 0, offset: 10 })
    assert.equal(r.status, 'OFFSET_OVERFLOW_ONE')
    assert.equal(r.nextOffset, 10)
    r = await store.get({ topic: 'edges', queueId: 0, offset: 11 })
    assert.equal(r.status, 'OFFSET_OVERFLOW_BADLY')
    assert.equal(r.nextOffset, 0, 'minOffset 0: back to the start')
    r = await store.get({ topic: 'edges', queueId: 0, offset: 2, maxMessages: 3 })
    assert.equal(r.status, 'FOUND')
    assert.deepEqual(r.messages.map((m) => m.queueOffset), [2, 3, 4])
    assert.equal(r.nextOffset, 5)
    assert.equal(r.maxOffset, 10)
    // The byte limit: 2,500 bytes admit two records of ~1.1 KB; the first always goes.
    r = await store.get({ topic: 'edges', queueId: 0, offset: 0, maxBytes: 2500 })
    assert.equal(r.messages.length, 2)
    r = await store.get({ topic: 'edges', queueId: 0, offset: 0, maxBytes: 10 })
    assert.equal(r.messages.length, 1)
    assert.equal(r.nextOffset, 1)
    // Bodies are views of the map, equal to what was put.
    assert.ok(r.messages[0]!.body.equals(Buffer.alloc(1000, 0)))
    await assert.rejects(store.get({ topic: 'edges', queueId: -1, offset: 0 }), { code: 'INVALID_ARGUMENT' })
    await assert.rejects(store.get({ topic: 'edges', queueId: 0, offset: -1 }), { code: 'INVALID_ARGUMENT' })
    await assert.rejects(store.get({ topic: '', queueId: 0, offset: 0 }), { code: 'TOPIC_INVALID' })
    await assert.rejects(store.get({ topic: 'edges', queueId: 0, offset: 0, maxMessages: 0 }), { code: 'INVALID_ARGUMENT' })
    await store.close()
    await assert.rejects(store.get({ topic: 'edges', queueId: 0, offset: 0 }), { code: 'NOT_OPEN' })
  } finally {
    await cleanup()
  }
})

test('offsetByTime and earliestMessageTime search store time', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    let clock = 1_700_000_000_000
    const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, consumeQueueUnitsPerFile: CQ_UNITS, now: () => clock })
    assert.equal(await store.earliestMessageTime('time', 0), -1)
    for (let i = 0; i < 200; i++) {
      clock += 10
      await store.put({ topic: 'time', queueId: 0, body: `t${i}` })
    }
    const first = 1_700_000_000_010
    assert.equal(await store.earliestMessageTime('time', 0), first)
    assert.equal(await store.offsetByTime('time', 0, first), 0)
    assert.equal(await store.offsetByTime('time', 0, 0), 0, 'before everything: minOffset')
    assert.equal(await store.offsetByTime('time', 0, first + 10 * 123), 123)
    assert.equal(await store.offsetByTime('time', 0, first + 10 * 123 - 5), 123, 'between two: the later one')
    assert.equal(await store.offsetByTime('time', 0, clock + 1), 200, 'after everything: maxOffset')
    assert.equal(await store.offsetByTime('unknown', 0, first), 0)
    await store.close()
  } finally {
    await cleanup()
  }
})

test('onMessageArrived reports topic, queue and the new max offset', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  for (const flush of ['async', 'sync'] as const) {
    const store = await MessageStore.open({ dir: path.join(dir, flush), flush })
    try {
      const seen: string[] = []
      const off = store.onMessageArrived((topic, queueId, maxOffset) => seen.push(`${topic}/${queueId}/${maxOffset}`))
      await store.put({ topic: 'arrive', queueId: 1, body: 'a' })
      await store.putBatch([
        { topic: 'arrive', queueId: 1, body: 'b' },
        { topic: 'arrive', queueId: 2, body: 'c' },
      ])
      await store.whenDispatched()
      assert.ok(seen.includes('arrive/1/1'), `${flush}: ${seen.join(' ')}`)
      assert.ok(seen.includes('arrive/1/2') && seen.includes('arrive/2/1'), `${flush}: ${seen.join(' ')}`)
      off()
      const before = seen.length
      await store.put({ topic: 'arrive', queueId: 1, body: 'd' })
      await store.whenDispatched()
      assert.equal(seen.length, before, 'removed listeners are not called')
    } finally {
      await store.close()
    }
  }
  await cleanup()
})

test('a sync store dispatches only durable messages, and every put is readable once it resolves', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const store = await MessageStore.open({ dir, flush: 'sync', commitLogFileSize: SMALL_FILE, consumeQueueUnitsPerFile: CQ_UNITS })
    const rs = await Promise.all(Array.from({ length: 300 }, (_, i) => store.put({ topic: 'sync', queueId: i % 3, body: `s${i}` })))
    for (const r of rs) {
      assert.ok(store.maxOffset('sync', Number(/s(\d+)/.exec((await store.lookup(r.physicalOffset)).body.toString())![1]) % 3) > r.queueOffset)
    }
    assert.ok(store.dispatcher.reputOffset <= store.flushedPhysicalOffset)
    await store.close()
  } finally {
    await cleanup()
  }
})

test('open ConsumeQueue files are bounded: 300 queues through an LRU of 16', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const options: MessageStoreOptions = { dir, commitLogFileSize: 1024 * 1024, consumeQueueUnitsPerFile: CQ_UNITS, maxOpenConsumeQueueFiles: 16 }
  try {
    let store = await MessageStore.open(options)
    for (let round = 0; round < 3; round++) {
      for (let q = 0; q < 300; q++) await store.put({ topic: `many${q % 10}`, queueId: q, body: `r${round}q${q}` })
      assert.ok(store.consumeQueues.segments.size <= 16, `open files ${store.consumeQueues.segments.size}`)
    }
    store = await reopen(store, options)
    for (let q = 0; q < 300; q++) {
      const r = await store.get({ topic: `many${q % 10}`, queueId: q, offset: 0 })
      assert.deepEqual(r.messages.map((m) => m.body.toString()), [0, 1, 2].map((round) => `r${round}q${q}`))
      assert.ok(store.consumeQueues.segments.size <= 16)
    }
    await store.close()
  } finally {
    await cleanup()
  }
})

test('recovery: ConsumeQueue ahead of the CommitLog is truncated, behind it is rebuilt, deleted is rebuilt identically', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const options: MessageStoreOptions = { dir, commitLogFileSize: SMALL_FILE, consumeQueueUnitsPerFile: CQ_UNITS }
  try {
    let store = await MessageStore.open(options)
    await fill(store, ['rec'], 3, 120)
    const reference: string[][] = []
    for (let q = 0; q < 3; q++) reference.push(await queueUnits(store, 'rec', q))
    await store.close()

    // Deleted: rebuilt from the CommitLog alone, unit for unit.
    await rm(path.join(dir, 'consumequeue'), { recursive: true })
    store = await MessageStore.open(options)
    for (let q = 0; q < 3; q++) assert.deepEqual(await queueUnits(store, 'rec', q), reference[q])
    await store.close()

    // Behind: the last file of queue 1 loses its units; the abort marker forces a crash recovery
    // and the checkpoint says nothing is durable.
    const q1 = path.join(dir, 'consumequeue', 'rec', '1')
    const names = (await readdir(q1)).sort()
    await writeFile(path.join(q1, names.at(-1)!), Buffer.alloc(CQ_UNITS * CQ_UNIT.bytes))
    await writeFile(path.join(dir, 'abort'), '1')
    const cp = await readFile(path.join(dir, 'checkpoint'))
    cp.fill(0, 48, 56)
    await writeFile(path.join(dir, 'checkpoint'), cp)
    store = await MessageStore.open(options)
    for (let q = 0; q < 3; q++) assert.deepEqual(await queueUnits(store, 'rec', q), reference[q])
    assert.equal((await store.put({ topic: 'rec', queueId: 1, body: 'next' })).queueOffset, 120)
    await store.close()

    // Ahead: the CommitLog loses its tail (as after a torn write); units pointing past it go.
    const cl = path.join(dir, 'commitlog')
    const clFiles = (await readdir(cl)).sort()
    await rm(path.join(cl, clFiles.at(-1)!))
    await writeFile(path.join(dir, 'abort'), '1')
    const cp2 = await readFile(path.join(dir, 'checkpoint'))
    cp2.fill(0, 40, 48)
    await writeFile(path.join(dir, 'checkpoint'), cp2)
    store = await MessageStore.open(options)
    const end = store.maxPhysicalOffset
    for (let q = 0; q < 3; q++) {
      const units = await queueUnits(store, 'rec', q)
      for (const u of units.slice(1)) {
        const [off, size] = u.split('/').map(Number) as [number, number]
        assert.ok(off + size <= end, `unit ${u} points inside the CommitLog`)
      }
      assert.equal(store.maxOffset('rec', q), store.maxQueueOffset('rec', q))
    }
    // New puts continue the shortened queues densely.
    const r = await store.put({ topic: 'rec', queueId: 0, body: 'after-cut' })
    assert.equal(r.queueOffset, store.maxOffset('rec', 0) - 1)
    const got = await store.get({ topic: 'rec', queueId: 0, offset: r.queueOffset })
    assert.equal(got.messages[0]!.body.toString(), 'after-cut')
    await store.close()
  } finally {
    await cleanup()
  }
})

for (const seed of [1, 2, 3, 4, 5, 6]) {
  test(`sim power loss (seed ${seed}): every acknowledged message is reachable through get; queues equal a rebuild`, { timeout: 30_000 }, async (t) => {
    let io = new SimFileIO()
    const dir = simDir(t)
    const base: MessageStoreOptions = { dir, flush: 'sync', commitLogFileSize: SMALL_FILE, consumeQueueUnitsPerFile: CQ_UNITS, flushConsumeQueueIntervalMs: 5, ...SIM_INDEX }
    let store = await MessageStore.open({ ...base, fileIO: io })
    const acked: PutResult[] = []
    const queueOf = new Map<number, number>()
    for (let round = 0; round < 8; round++) {
      const rs = await Promise.all(
        Array.from({ length: 25 }, (_, i) => {
          const q = (round * 25 + i) % 3
          return store.put({ topic: 'power', queueId: q, body: `p${round}-${i}`, tags: i % 2 ? 'odd' : 'even' }).then((r) => {
            queueOf.set(r.physicalOffset, q)
            return r
          })
        }),
      )
      acked.push(...rs)
      if (round % 3 === 1) await new Promise((r) => setTimeout(r, 10))
    }
    const snapshot = io.crash(seed)
    await store.close()
    io = snapshot
    store = await MessageStore.open({ ...base, fileIO: io })
    try {
      for (const r of acked) {
        const got = await store.get({ topic: 'power', queueId: queueOf.get(r.physicalOffset)!, offset: r.queueOffset, maxMessages: 1 })
        assert.equal(got.status, 'FOUND')
        assert.equal(got.messages[0]!.physicalOffset, r.physicalOffset)
      }
      const units: string[][] = []
      for (let q = 0; q < 3; q++) units.push(await queueUnits(store, 'power', q))
      await store.close()
      const fresh = io.processCrash()
      for (const p of [...fresh.files.keys()]) if (p.includes('/consumequeue/')) fresh.files.delete(p)
      for (const d of [...fresh.dirs]) if (d.includes('/consumequeue/')) fresh.dirs.delete(d)
      const rebuilt = await MessageStore.open({ ...base, fileIO: fresh })
      try {
        for (let q = 0; q < 3; q++) assert.deepEqual(await queueUnits(rebuilt, 'power', q), units[q])
      } finally {
        await rebuilt.close()
      }
    } finally {
      if (store.status !== 'closed') await store.close()
    }
  })
}

test('async flush: messages are readable through get before they are flushed', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const store = await MessageStore.open({ dir, flushIntervalMs: 60_000, flushThoroughIntervalMs: 600_000 })
    const r = await store.put({ topic: 'unflushed', queueId: 0, body: 'not on disk yet' })
    assert.ok(store.flushedPhysicalOffset < r.physicalOffset + r.size, 'nothing flushed yet')
    const got = await store.get({ topic: 'unflushed', queueId: 0, offset: 0 })
    assert.equal(got.status, 'FOUND')
    assert.equal(got.messages[0]!.body.toString(), 'not on disk yet')
    await store.close()
  } finally {
    await cleanup()
  }
})

test('a busy ConsumeQueue creates its next file once past the middle of the current one, before any unit goes there', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const units = 200
  const store = await MessageStore.open({ dir, commitLogFileSize: 1024 * 1024, consumeQueueUnitsPerFile: units })
  try {
    const queueDir = path.join(dir, 'consumequeue', 'ahead', '0')
    const files = async (): Promise<string[]> => (await readdir(queueDir)).filter((f) => /^\d{20}$/.test(f)).sort()
    for (let i = 0; i < units / 2 - 10; i++) await store.put({ topic: 'ahead', queueId: 0, body: `m${i}` })
    assert.deepEqual(await files(), ['00000000000000000000'], 'before the middle: one file')
    for (let i = units / 2 - 10; i < units / 2 + 10; i++) await store.put({ topic: 'ahead', queueId: 0, body: `m${i}` })
    const second = String(units * CQ_UNIT.bytes).padStart(20, '0')
    for (let i = 0; i < 500 && !(await files()).includes(second); i++) await new Promise((r) => setTimeout(r, 2))
    assert.deepEqual(await files(), ['00000000000000000000', second], 'past the middle: the next file is there')
    assert.equal(store.maxOffset('ahead', 0), units / 2 + 10)
    for (let i = units / 2 + 10; i < units * 2 + 5; i++) await store.put({ topic: 'ahead', queueId: 0, body: `m${i}` })
    const all = await readAll(store, 'ahead', 0)
    assert.deepEqual(all.map((m) => m.body), Array.from({ length: units * 2 + 5 }, (_, i) => `m${i}`))
    assert.equal((await files()).length, 3)
  } finally {
    await store.close()
    await cleanup()
  }
})

test('reopen after deleting consumequeue/ with more ConsumeQueue files than maxOpenConsumeQueueFiles: rebuilt, and a clean close leaves no abort marker', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  // 8 queues x 50 files of 2 units through an LRU of 16: the rebuild evicts files while the
  // recovery's flush (and the windows opened ahead) still hold them.
  const options: MessageStoreOptions = { dir, commitLogFileSize: 1024 * 1024, consumeQueueUnitsPerFile: 2, maxOpenConsumeQueueFiles: 16, messageIndexEnable: false }
  try {
    let store = await MessageStore.open(options)
    for (let n = 0; n < 100; n += 10) {
      const batch = []
      for (let q = 0; q < 8; q++) for (let i = n; i < n + 10; i++) batch.push({ topic: 'lru', queueId: q, body: `q${q}n${i}` })
      await store.putBatch(batch)
    }
    await store.close()
    assert.ok((await readdir(path.join(dir, 'consumequeue', 'lru', '0'))).length >= 50)
    for (let round = 0; round < 3; round++) {
      await rm(path.join(dir, 'consumequeue'), { recursive: true })
      store = await MessageStore.open(options)
      assert.equal(store.recovery.cleanShutdown, true)
      for (let q = 0; q < 8; q++) {
        assert.equal(store.maxOffset('lru', q), 100)
        const r = await store.get({ topic: 'lru', queueId: q, offset: 99 })
        assert.equal(r.messages[0]!.body.toString(), `q${q}n99`)
      }
      await store.close()
      assert.equal(await stat(path.join(dir, 'abort')).then(() => true, () => false), false, 'a clean close removes the abort marker')
    }
  } finally {
    await cleanup()
  }
})
