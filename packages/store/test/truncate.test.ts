// truncate(offset): examples against a model (mid-file, file boundary, end, across files, both
// flush modes; then appends, reopen), and its typed errors. The crash tests are
// truncate-crash.test.ts.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MessageStore, StoreError, type MessageStoreOptions } from '../src/index.js'
import { SimFileIO } from '../src/sim-file-io.js'
import { SIM_INDEX, simDir, tempDir } from './helpers.js'
import { appendedAfter, assertMatches, putSome, type Sent } from './fixtures/truncate-model.js'
import { steppingIO } from './fixtures/stepping-io.js'

const FILE_SIZE = 16 * 1024

/** Keys of messages that are gone must find nothing. */
async function assertGone(store: MessageStore, gone: Sent[], what: string): Promise<void> {
  for (const s of gone) {
    assert.deepEqual(await store.queryByKey(s.topic, s.key), [], `${what}: queryByKey ${s.key} finds nothing`)
    await assert.rejects(store.lookup(s.physicalOffset), (err: unknown) => err instanceof StoreError && err.code === 'INVALID_ARGUMENT', `${what}: lookup ${s.physicalOffset}`)
  }
}

type Where = 'mid-file' | 'file boundary' | 'end' | 'across files' | 'blank' | 'start'

/** The cut for each case, from the messages sent (every case has several files). */
async function cutFor(where: Where, sent: Sent[], store: MessageStore): Promise<number> {
  const files = store.commitLog.queue.files
  const last = files[files.length - 1]!.fileFromOffset
  const second = files[1]!.fileFromOffset
  switch (where) {
    case 'end':
      return store.maxPhysicalOffset
    case 'start':
      return store.minPhysicalOffset
    case 'mid-file':
      // A record of the last file, not its first.
      return sent.filter((s) => s.physicalOffset > last).at(-2)!.physicalOffset
    case 'file boundary':
      return last
    case 'across files':
      return sent.filter((s) => s.physicalOffset < second).at(-3)!.physicalOffset
    case 'blank': {
      // Where the first file's last record ends: its end-of-file blank starts there.
      const s = sent.filter((m) => m.physicalOffset < second).at(-1)!
      return s.physicalOffset + (await store.lookup(s.physicalOffset)).storeSize
    }
  }
}

for (const flush of ['sync', 'async'] as const) {
  for (const where of ['mid-file', 'file boundary', 'end', 'across files', 'blank', 'start'] as const) {
    test(`truncate (${flush} flush, cut at ${where}): queues, index and queue offsets follow; appends continue densely; a reopen and a kill keep it`, { timeout: 60_000 }, async (t) => {
      const io = new SimFileIO()
      const options: MessageStoreOptions = { dir: simDir(t), flush, commitLogFileSize: FILE_SIZE, consumeQueueUnitsPerFile: 16, ...SIM_INDEX }
      let store = await MessageStore.open({ ...options, fileIO: io })
      try {
        const sent = await putSome(store, 120, 'a')
        assert.ok(store.commitLog.queue.files.length >= 4, 'several files')
        const cut = await cutFor(where, sent, store)
        const filesBefore = store.commitLog.queue.files.length
        await store.truncate(cut)
        const kept = sent.filter((s) => s.physicalOffset < cut)
        assert.equal(store.maxPhysicalOffset, cut)
        const lastFile = store.commitLog.queue.files.at(-1)!.fileFromOffset
        if (where === 'end') assert.equal(store.commitLog.queue.files.length, filesBefore, 'nothing deleted')
        else assert.equal(lastFile, Math.floor(cut / FILE_SIZE) * FILE_SIZE, 'the files after the cut are deleted')
        await assertMatches(store, kept, 'after the truncate')
        await assertGone(store, sent.filter((s) => s.physicalOffset >= cut), 'after the truncate')

        // Appends go at the cut and continue every queue densely.
        const more = await putSome(store, 30, 'b')
        // (After a cut at a blank, a message that no longer fits the file goes to the next one.)
        const next = where === 'blank' && more[0]!.physicalOffset !== cut ? Math.ceil(cut / FILE_SIZE) * FILE_SIZE : cut
        assert.equal(more[0]!.physicalOffset, next, 'the first append goes at the cut')
        const model = appendedAfter(kept, more)
        assert.deepEqual(more.map((s) => s.queueOffset), model.slice(kept.length).map((s) => s.queueOffset), 'queue offsets continue from the cut')
        await assertMatches(store, model, 'after appends')

        await store.close()
        store = await MessageStore.open({ ...options, fileIO: io })
        await assertMatches(store, model, 'after a clean reopen')

        // A second truncate, then a kill: the next open recovers the cut.
        const second = more[10]!.physicalOffset
        await store.truncate(second)
        const killed = io.processCrash()
        await store.close()
        store = await MessageStore.open({ ...options, fileIO: killed })
        await assertMatches(store, model.filter((s) => s.physicalOffset < second), 'after a kill following a second truncate')
      } finally {
        await store.close().catch(() => undefined)
      }
    })
  }
}

for (const flush of ['sync', 'async'] as const) {
  test(`truncate on real files (${flush} flush): a cut across files, appends, reopen`, { timeout: 60_000 }, async () => {
    const { dir, cleanup } = await tempDir()
    const options: MessageStoreOptions = { dir, flush, commitLogFileSize: FILE_SIZE, consumeQueueUnitsPerFile: 16, ...SIM_INDEX }
    let store = await MessageStore.open(options)
    try {
      const sent = await putSome(store, 120, 'a')
      const cut = await cutFor('across files', sent, store)
      // Appends made while it runs wait for it and go at the cut.
      const [, during] = await Promise.all([store.truncate(cut), store.put({ topic: 'ta', queueId: 0, body: 'during', keys: ['during'] })])
      const kept = sent.filter((s) => s.physicalOffset < cut)
      assert.equal(during.physicalOffset, cut, 'a put made during the truncate goes at the cut')
      const model = appendedAfter(kept, [{ topic: 'ta', queueId: 0, key: 'during', body: 'during', physicalOffset: during.physicalOffset, queueOffset: during.queueOffset }])
      assert.equal(during.queueOffset, model.at(-1)!.queueOffset)
      const more = await putSome(store, 40, 'b')
      const all = appendedAfter(model, more)
      await assertMatches(store, all, 'after the truncate and appends')
      await store.close()
      store = await MessageStore.open(options)
      await assertMatches(store, all, 'after a reopen')
    } finally {
      await store.close().catch(() => undefined)
      await cleanup()
    }
  })
}

const invalid = (offset: unknown) => (err: unknown): boolean => err instanceof StoreError && err.code === 'INVALID_ARGUMENT' && err.message.includes(String(offset))

test('truncate refuses, typed and changing nothing: inside a record, past the end, below the first file, not an offset, a closed store', { timeout: 60_000 }, async (t) => {
  let clock = Date.UTC(2026, 0, 1, 10)
  const io = new SimFileIO({ clock: () => clock })
  const options: MessageStoreOptions = { dir: simDir(t), commitLogFileSize: FILE_SIZE, consumeQueueUnitsPerFile: 16, ...SIM_INDEX, fileIO: io, now: () => clock, retention: { fileReservedTimeHours: 1 } }
  const store = await MessageStore.open(options)
  try {
    const sent = await putSome(store, 120, 'a')
    const end = store.maxPhysicalOffset
    for (const offset of [sent[5]!.physicalOffset + 1, sent[7]!.physicalOffset + 20, sent.at(-1)!.physicalOffset + 8, end + 1, end + FILE_SIZE]) {
      await assert.rejects(store.truncate(offset), invalid(offset), `offset ${offset}`)
    }
    for (const offset of [-1, 1.5, Number.NaN, '100', undefined, 2 ** 60]) {
      await assert.rejects(store.truncate(offset as number), (err: unknown) => err instanceof StoreError && err.code === 'INVALID_ARGUMENT', `offset ${String(offset)}`)
    }
    assert.equal(store.maxPhysicalOffset, end, 'nothing changed')
    await assertMatches(store, sent, 'after the refusals')

    // Retention deletes the first files: an offset below the new first byte is refused.
    clock += 100 * 3600_000
    await store.deleteExpiredFiles({ manual: true })
    const min = store.minPhysicalOffset
    assert.ok(min > 0, 'retention deleted the first file')
    await assert.rejects(store.truncate(min - FILE_SIZE), invalid(min - FILE_SIZE))
    await assert.rejects(store.truncate(sent[0]!.physicalOffset), invalid(sent[0]!.physicalOffset))
    assert.equal(store.maxPhysicalOffset, end, 'nothing changed')
  } finally {
    await store.close()
  }
  await assert.rejects(store.truncate(0), (err: unknown) => err instanceof StoreError && err.code === 'NOT_OPEN')
})

test('a ConsumeQueue file whose removal a power loss undid after a truncate zeroed units before it: recovery drops the zero units too', { timeout: 60_000 }, async (t) => {
  const io = new SimFileIO()
  const dir = simDir(t)
  const options: MessageStoreOptions = { dir, flush: 'async', commitLogFileSize: FILE_SIZE, consumeQueueUnitsPerFile: 16, ...SIM_INDEX }
  let store = await MessageStore.open({ ...options, fileIO: io })
  const sent = await putSome(store, 120, 'a')
  await store.close()
  store = await MessageStore.open({ ...options, fileIO: io })
  // ta@0 holds units 0-29 in two files; the cut keeps 7 of them.
  const second = `${dir}/consumequeue/ta/0/00000000000000000320`
  const secondBytes = await io.readFile(second)
  assert.ok(secondBytes, 'ta@0 has a second ConsumeQueue file')
  const ta0 = sent.filter((s) => s.topic === 'ta' && s.queueId === 0)
  const cut = ta0[7]!.physicalOffset
  await store.truncate(cut)
  assert.equal(await io.exists(second), false, 'the truncate removed the second file')
  const killed = io.processCrash()
  await store.close()
  // The removal undone, the zeroed units of the first file kept.
  await killed.writeFileAtomic(second, secondBytes)
  store = await MessageStore.open({ ...options, fileIO: killed })
  try {
    await assertMatches(store, sent.filter((s) => s.physicalOffset < cut), 'after the recovery')
  } finally {
    await store.close()
  }
})

test('retention that runs during a truncate deletes no file under it: the cut lands where asked', { timeout: 60_000 }, async (t) => {
  let clock = Date.UTC(2026, 0, 1, 10)
  const io = new SimFileIO({ clock: () => clock })
  const retention: Promise<unknown>[] = []
  let store: MessageStore | undefined
  const stepIO = steppingIO(io, () => {
    // At every step of the truncate, a retention pass starts (every file but the last expired).
    if (armed && store) retention.push(store.deleteExpiredFiles({ manual: true }))
  })
  let armed = false
  const options: MessageStoreOptions = { dir: simDir(t), commitLogFileSize: FILE_SIZE, consumeQueueUnitsPerFile: 16, ...SIM_INDEX, fileIO: stepIO, now: () => clock, retention: { fileReservedTimeHours: 1 } }
  store = await MessageStore.open(options)
  try {
    const sent = await putSome(store, 120, 'a')
    const files = store.commitLog.queue.files
    const cut = sent.filter((s) => s.physicalOffset > files[files.length - 1]!.fileFromOffset).at(-2)!.physicalOffset
    clock += 100 * 3600_000
    armed = true
    await store.truncate(cut)
    armed = false
    await Promise.all(retention)
    assert.ok(store.minPhysicalOffset > 0, 'retention deleted files (after the truncate)')
    assert.equal(store.maxPhysicalOffset, cut)
    const kept = sent.filter((s) => s.physicalOffset < cut && s.physicalOffset >= store!.minPhysicalOffset)
    assert.deepEqual(
      (await Promise.all(kept.map((s) => store!.lookup(s.physicalOffset)))).map((m) => m.body.toString()),
      kept.map((s) => s.body),
    )
    const more = await putSome(store, 5, 'b')
    assert.equal(more[0]!.physicalOffset, cut)
  } finally {
    await store.close()
  }
})

for (const [what, fail] of [
  ['the checkpoint', (io: SimFileIO) => (io.failDatasyncs = { code: 'EIO', count: 1, pathIncludes: 'checkpoint' })],
  ['the CommitLog', (io: SimFileIO) => (io.failDatasyncs = { code: 'EIO', count: 1, pathIncludes: 'commitlog' })],
  ['a ConsumeQueue', (io: SimFileIO) => (io.failDatasyncs = { code: 'EIO', count: 1, pathIncludes: 'consumequeue' })],
] as const) {
  test(`an fdatasync of ${what} failing during a truncate: it rejects typed, the store refuses writes, a reopen finds the old log or the cut one`, { timeout: 60_000 }, async (t) => {
    const io = new SimFileIO()
    const options: MessageStoreOptions = { dir: simDir(t), commitLogFileSize: FILE_SIZE, consumeQueueUnitsPerFile: 16, ...SIM_INDEX }
    let store = await MessageStore.open({ ...options, fileIO: io })
    try {
      const sent = await putSome(store, 80, 'a')
      await store.flush()
      const cut = sent[30]!.physicalOffset
      fail(io)
      await assert.rejects(store.truncate(cut), (err: unknown) => err instanceof StoreError && err.code === 'FLUSH_FAILED' && err.message.includes(String(cut)))
      await assert.rejects(store.put({ topic: 'ta', queueId: 0, body: 'x' }), (err: unknown) => err instanceof StoreError && err.code === 'FLUSH_FAILED')
      const killed = io.processCrash()
      await store.close().catch(() => undefined)
      store = await MessageStore.open({ ...options, fileIO: killed })
      const cutLog = store.maxPhysicalOffset === cut
      await assertMatches(store, cutLog ? sent.slice(0, 30) : sent, `after the reopen (${cutLog ? 'cut' : 'old'} log)`)
      if (what !== 'the checkpoint') assert.ok(cutLog, 'a failure after the commit point leaves the cut log')
    } finally {
      await store.close().catch(() => undefined)
    }
  })
}

test('while dispatch is stopped a truncate above where it stopped is refused; one at it is taken and clears the error (simulated disk)', { timeout: 30_000 }, async () => {
  // A ConsumeQueue that cannot get its first file stops dispatch (DISK_FULL, the record stored).
  const io = new SimFileIO({ capacityBytes: 2 * 256 * 1024 + 16 * 1024 })
  const store = await MessageStore.open({ dir: '/sim/truncate-stopped', fileIO: io, flush: 'async', commitLogFileSize: 256 * 1024, consumeQueueUnitsPerFile: 50, messageIndexEnable: false })
  try {
    let stoppedAt: number | undefined
    for (let i = 0; i < 200 && stoppedAt === undefined; i++) {
      await store.put({ topic: 'cqfull', queueId: i % 64, body: `m${i}` }).catch((err: unknown) => {
        assert.ok(err instanceof StoreError && err.code === 'DISK_FULL', `expected DISK_FULL, got ${String(err)}`)
        stoppedAt = err.details.physicalOffset as number | undefined
      })
    }
    assert.ok(stoppedAt !== undefined && store.dispatcher.lastError !== undefined, 'dispatch stopped on a stored record')
    assert.equal(store.dispatcher.reputOffset, stoppedAt)
    const end = store.maxPhysicalOffset
    assert.ok(end > stoppedAt)
    await assert.rejects(store.truncate(end), (err: unknown) => err instanceof StoreError && err.code === 'DISK_FULL' && /truncate refused/.test(err.message))
    assert.equal(store.maxPhysicalOffset, end, 'a refused truncate changes nothing')
    await store.truncate(stoppedAt)
    assert.equal(store.maxPhysicalOffset, stoppedAt)
    assert.equal(store.dispatcher.lastError, undefined, 'the record dispatch stopped on is gone, and its error')
    io.capacityBytes = Number.POSITIVE_INFINITY
    const r = await store.put({ topic: 'cqfull', queueId: 1, body: 'after the cut' })
    assert.equal(r.physicalOffset, stoppedAt)
    assert.equal(r.queueOffset, store.maxOffset('cqfull', 1) - 1)
    assert.equal((await store.get({ topic: 'cqfull', queueId: 1, offset: r.queueOffset })).messages[0]!.body.toString(), 'after the cut')
  } finally {
    await store.close().catch(() => undefined)
  }
})
