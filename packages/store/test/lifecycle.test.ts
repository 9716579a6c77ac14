// Sync flush under a slow disk, and calls on a closing store: a put whose group takes longer than
// syncFlushTimeoutMs resolves with FLUSH_DISK_TIMEOUT (stored, durable later, readable after), the
// staging limit holds appends back while a group is slow (and lets them all through after), and
// every public call made while the store closes, or after, completes or fails with NOT_OPEN.
// The slow disk is the writer thread's delay fault: one of its fdatasync calls takes long.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MessageStore, StoreError, type MessageStoreOptions, type PutResult } from '../src/index.js'
import { NodeFileIO, type WriterFaults } from '../src/internal.js'
import { reopen, tempDir } from './helpers.js'

/** The second durable write's fdatasync (the first put's is the first) takes `ms`. */
function slowSecondSync(ms: number): NodeFileIO {
  const faults: WriterFaults = { on: 'fdatasync', failCall: 2, delayMs: ms }
  return new NodeFileIO({ writerFaults: faults })
}

/** Settles `p` or fails the test after `ms`: nothing here may hang. */
async function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

test('sync flush: a put whose flush outlasts syncFlushTimeoutMs resolves FLUSH_DISK_TIMEOUT, is durable later and survives a reopen', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  // The timeout leaves a loaded machine's fdatasync (the first put's, the last one's) time to
  // finish; the slow one outlasts it by far.
  const options: MessageStoreOptions = { dir, flush: 'sync', commitLogFileSize: 1024 * 1024, syncFlushTimeoutMs: 1000, fileIO: slowSecondSync(4000) }
  let store = await MessageStore.open(options)
  try {
    const first = await store.put({ topic: 'slow', queueId: 0, body: 'first' })
    assert.equal(first.status, 'PUT_OK')
    // The next group's fdatasync takes 4 s: the single put and the batch behind it time out.
    const [late, batch] = await Promise.all([
      store.put({ topic: 'slow', queueId: 0, body: 'late', keys: 'late' }),
      store.putBatch([
        { topic: 'slow', queueId: 1, body: 'b0' },
        { topic: 'slow', queueId: 1, body: 'b1' },
      ]),
    ])
    assert.equal(late.status, 'FLUSH_DISK_TIMEOUT')
    assert.deepEqual(
      batch.map((r) => r.status),
      ['FLUSH_DISK_TIMEOUT', 'FLUSH_DISK_TIMEOUT'],
    )
    // Stored, with its offsets: a flush waits for the slow write, then everything is readable.
    assert.equal(late.queueOffset, 1)
    assert.deepEqual(
      batch.map((r) => r.queueOffset),
      [0, 1],
    )
    await store.flush()
    assert.ok(store.flushedPhysicalOffset >= batch[1]!.physicalOffset + batch[1]!.size, 'durable after all')
    await store.whenDispatched()
    assert.equal((await store.lookup(late.physicalOffset)).body.toString(), 'late')
    const got = await store.get({ topic: 'slow', queueId: 1, offset: 0 })
    assert.equal(got.status, 'FOUND')
    assert.deepEqual(
      got.messages.map((m) => m.body.toString()),
      ['b0', 'b1'],
    )
    assert.equal((await store.put({ topic: 'slow', queueId: 0, body: 'after' })).status, 'PUT_OK', 'puts resume once the disk is back')
    store = await reopen(store, options, { fileIO: new NodeFileIO() })
    assert.equal(store.recovery.cleanShutdown, true)
    const q0 = await store.get({ topic: 'slow', queueId: 0, offset: 0 })
    assert.deepEqual(
      q0.messages.map((m) => m.body.toString()),
      ['first', 'late', 'after'],
    )
    assert.deepEqual(
      (await store.queryByKey('slow', 'late')).map((m) => m.physicalOffset),
      [late.physicalOffset],
    )
  } finally {
    await store.close()
    await cleanup()
  }
})

test('sync flush: stagingLimitBytes holds appends back while a group is slow, then lets every one through in order', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const limit = 8 * 1024
  const options: MessageStoreOptions = { dir, flush: 'sync', commitLogFileSize: 1024 * 1024, stagingLimitBytes: limit, fileIO: slowSecondSync(600) }
  let store = await MessageStore.open(options)
  try {
    await store.put({ topic: 'st', queueId: 0, body: 'first' })
    // 40 puts of 1 KiB (about 45 KiB of records) while the second group's fdatasync is slow.
    const puts: Promise<PutResult>[] = []
    for (let i = 0; i < 40; i++) puts.push(store.put({ topic: 'st', queueId: 0, body: Buffer.alloc(1024, i) }))
    let settled = false
    const all = Promise.all(puts).finally(() => (settled = true))
    let largestUnsynced = 0
    while (!settled) {
      largestUnsynced = Math.max(largestUnsynced, store.maxPhysicalOffset - store.flushedPhysicalOffset)
      await new Promise((r) => setImmediate(r))
    }
    const rs = await all
    const record = rs[0]!.size
    // The limit is checked before an append: at most one append goes past it.
    assert.ok(largestUnsynced <= limit + record, `at most ${limit} bytes and one record waited for the disk at once, saw ${largestUnsynced}`)
    assert.ok(largestUnsynced < 40 * record, 'the limit held appends back')
    assert.deepEqual(
      rs.map((r) => r.status),
      rs.map(() => 'PUT_OK'),
    )
    assert.deepEqual(
      rs.map((r) => r.queueOffset),
      rs.map((_, i) => i + 1),
      'queue offsets in the order the puts were made',
    )
    for (let i = 1; i < rs.length; i++) assert.equal(rs[i]!.physicalOffset, rs[i - 1]!.physicalOffset + rs[i - 1]!.size, 'appended in order, contiguous')
    // One append larger than the whole limit still goes through (nothing else is staged).
    const big = await store.put({ topic: 'st', queueId: 1, body: Buffer.alloc(4 * limit, 7) })
    assert.equal(big.status, 'PUT_OK')
    store = await reopen(store, options, { fileIO: new NodeFileIO() })
    for (const [i, r] of rs.entries()) assert.ok((await store.lookup(r.physicalOffset)).body.equals(Buffer.alloc(1024, i)))
    assert.equal((await store.lookup(big.physicalOffset)).body.length, 4 * limit)
  } finally {
    await store.close()
    await cleanup()
  }
})

/** Every public call of the store, each returning what it returned or threw. */
function everyCall(store: MessageStore, msgId: string): Record<string, () => unknown> {
  return {
    put: () => store.put({ topic: 'c', queueId: 0, body: 'x' }),
    putBatch: () => store.putBatch([{ topic: 'c', queueId: 0, body: 'y' }]),
    lookup: () => store.lookup(0),
    queryByKey: () => store.queryByKey('c', 'k0'),
    viewMessage: () => store.viewMessage(msgId),
    get: () => store.get({ topic: 'c', queueId: 0, offset: 0 }),
    minOffset: () => store.minOffset('c', 0),
    maxOffset: () => store.maxOffset('c', 0),
    maxQueueOffset: () => store.maxQueueOffset('c', 0),
    offsetByTime: () => store.offsetByTime('c', 0, 0),
    earliestMessageTime: () => store.earliestMessageTime('c', 0),
    onMessageArrived: () => store.onMessageArrived(() => undefined)(),
    dispatchLagBytes: () => store.dispatchLagBytes,
    whenDispatched: () => store.whenDispatched(),
    commitOffset: () => store.commitOffset('g', 'c', 0, 1),
    committedOffset: () => store.committedOffset('g', 'c', 0),
    persistConsumerOffsets: () => store.persistConsumerOffsets(),
    deleteExpiredFiles: () => store.deleteExpiredFiles({ manual: true }),
    topics: () => store.topics(),
    deleteTopic: () => store.deleteTopic('c'),
    minPhysicalOffset: () => store.minPhysicalOffset,
    maxPhysicalOffset: () => store.maxPhysicalOffset,
    flushedPhysicalOffset: () => store.flushedPhysicalOffset,
    flush: () => store.flush(),
    close: () => store.close(),
  }
}

/** Calls each of `calls`; each must return, resolve, or fail with NOT_OPEN, within a bound. */
async function callAll(calls: Record<string, () => unknown>, when: string): Promise<Record<string, string>> {
  const outcomes: Record<string, string> = {}
  await Promise.all(
    Object.entries(calls).map(async ([name, call]) => {
      try {
        const r = call()
        if (r instanceof Promise) await bounded(r, 10_000, `${name} ${when}`)
        outcomes[name] = 'completed'
      } catch (err) {
        assert.ok(err instanceof StoreError && err.code === 'NOT_OPEN', `${name} ${when}: completes or fails with NOT_OPEN, got ${String(err)}`)
        outcomes[name] = 'NOT_OPEN'
      }
    }),
  )
  return outcomes
}

for (const flush of ['sync', 'async'] as const) {
  test(`flush '${flush}': every call during and after close completes or fails with NOT_OPEN, and puts acknowledged meanwhile survive`, { timeout: 60_000 }, async () => {
    const { dir, cleanup } = await tempDir()
    // Sync: the group under way at close takes 400 ms, so close is in progress for a while.
    const options: MessageStoreOptions = { dir, flush, commitLogFileSize: 64 * 1024, fileIO: flush === 'sync' ? slowSecondSync(400) : new NodeFileIO() }
    let store = await MessageStore.open(options)
    try {
      const first = await store.put({ topic: 'c', queueId: 0, body: 'first', keys: 'k0' })
      store.commitOffset('g', 'c', 0, 1)
      // Puts under way when close starts: each is acknowledged or refused, never left hanging.
      const inFlight = Array.from({ length: 50 }, (_, i) => store.put({ topic: 'c', queueId: i % 2, body: `in flight ${i}`, keys: `f${i}` }))
      const closing = store.close()
      assert.equal(store.status, 'closing')
      const during = await callAll(everyCall(store, first.msgId), 'during close')
      await bounded(closing, 20_000, 'close')
      assert.equal(store.status, 'closed')
      const after = await callAll(everyCall(store, first.msgId), 'after close')
      for (const name of ['put', 'putBatch', 'lookup', 'get', 'queryByKey', 'viewMessage', 'flush', 'whenDispatched', 'commitOffset', 'committedOffset', 'persistConsumerOffsets', 'deleteExpiredFiles', 'topics', 'deleteTopic']) {
        assert.equal(during[name], 'NOT_OPEN', `${name} during close`)
        assert.equal(after[name], 'NOT_OPEN', `${name} after close`)
      }
      assert.equal(after.close, 'completed', 'close is idempotent')
      const acked: { i: number; r: PutResult }[] = []
      for (const [i, p] of inFlight.entries()) {
        try {
          acked.push({ i, r: await bounded(p, 10_000, `put ${i} made before close`) })
        } catch (err) {
          assert.ok(err instanceof StoreError && err.code === 'NOT_OPEN', `put ${i} made before close: acknowledged or NOT_OPEN, got ${String(err)}`)
        }
      }
      store = await MessageStore.open({ ...options, fileIO: new NodeFileIO() })
      assert.equal(store.recovery.cleanShutdown, true)
      assert.equal(store.committedOffset('g', 'c', 0), 1, 'offsets committed before close were persisted by it')
      for (const { i, r } of acked) assert.equal((await store.lookup(r.physicalOffset)).body.toString(), `in flight ${i}`)
    } finally {
      await store.close()
      await cleanup()
    }
  })
}
