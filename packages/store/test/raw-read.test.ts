// Raw reads for replication and pull answers: readCommitLog from any offset, commitLogMin/MaxOffset,
// committed-offset events with several listeners, and the raw form of get.
import assert from 'node:assert/strict'
import { readFile, readdir } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, StoreError, decodeMessageId, type FlushMode, type MessageStoreOptions, type PutResult } from '../src/index.js'
import { decodeRecord } from '../src/internal.js'
import { SMALL_FILE, tempDir } from './helpers.js'

async function withStore(flush: FlushMode, fn: (store: MessageStore, options: MessageStoreOptions) => Promise<void>, extra: Partial<MessageStoreOptions> = {}): Promise<void> {
  const { dir, cleanup } = await tempDir('mqts-raw-')
  const options: MessageStoreOptions = { dir, flush, commitLogFileSize: SMALL_FILE, messageIndexEnable: false, ...extra }
  const store = await MessageStore.open(options)
  try {
    await fn(store, options)
  } finally {
    await store.close()
    await cleanup()
  }
}

function body(n: number): Buffer {
  return Buffer.from(`m${n}:`.padEnd(50 + ((n * 37) % 900), 'abcdefgh'))
}

/** Every byte readCommitLog returns from `from` up to the committed end, in chunks of `chunk`. */
function readAllRaw(store: MessageStore, from: number, chunk: number): { bytes: Buffer; pieces: number; crossedFiles: number } {
  const parts: Buffer[] = []
  let at = from
  let crossedFiles = 0
  for (;;) {
    const b = store.readCommitLog(at, chunk)
    if (b.length === 0) break
    assert.ok(b.length <= chunk, `a read of at most ${chunk} bytes returned ${b.length}`)
    // Never across a file's end.
    assert.equal(Math.floor(at / SMALL_FILE), Math.floor((at + b.length - 1) / SMALL_FILE), `read at ${at} of ${b.length} bytes crosses a file end`)
    if ((at + b.length) % SMALL_FILE === 0) crossedFiles++
    parts.push(Buffer.from(b))
    at += b.length
  }
  assert.equal(at, store.commitLogMaxOffset)
  return { bytes: Buffer.concat(parts), pieces: parts.length, crossedFiles }
}

async function commitLogFileBytes(dir: string): Promise<Buffer> {
  // Data files only: the next file may still be under its temporary name (renamed meanwhile).
  const names = (await readdir(path.join(dir, 'commitlog'))).filter((n) => /^\d{20}$/.test(n)).sort()
  return Buffer.concat(await Promise.all(names.map((n) => readFile(path.join(dir, 'commitlog', n)))))
}

for (const flush of ['async', 'sync'] as const) {
  test(`readCommitLog returns the committed bytes from any offset in chunks that stop at file ends (${flush})`, async () => {
    await withStore(flush, async (store, options) => {
      assert.equal(store.commitLogMinOffset, 0)
      assert.equal(store.commitLogMaxOffset, 0)
      assert.equal(store.readCommitLog(0, 1000).length, 0, 'empty store reads empty')
      for (let i = 0; i < 300; i++) await store.put({ topic: 'raw', queueId: i % 3, body: body(i), tags: `T${i % 4}` })
      await store.flush()
      const end = store.commitLogMaxOffset
      assert.ok(end > 2 * SMALL_FILE, `the log spans files (${end})`)
      assert.equal(end, store.maxPhysicalOffset)
      const onDisk = await commitLogFileBytes(options.dir)
      // Odd chunk sizes and odd start offsets: views cut records anywhere.
      for (const [from, chunk] of [
        [0, 32 * 1024],
        [0, 777],
        [13, 4093],
        [SMALL_FILE - 3, 100],
      ] as const) {
        const { bytes, crossedFiles } = readAllRaw(store, from, chunk)
        assert.ok(crossedFiles >= 2, 'reads went through the BLANK ends of full files')
        assert.ok(bytes.equals(onDisk.subarray(from, end)), `bytes from ${from} in chunks of ${chunk} equal the files`)
      }
      assert.equal(store.readCommitLog(end, 100).length, 0, 'at the end: empty')
      // A record read back whole decodes to what was put.
      const r = await store.put({ topic: 'raw', queueId: 1, body: Buffer.from('last one') })
      if (flush === 'sync') assert.equal(store.commitLogMaxOffset, r.physicalOffset + r.size)
      const rec = store.readCommitLog(r.physicalOffset, r.size)
      assert.equal(rec.length, r.size)
      assert.equal(decodeRecord(rec, 0).body.toString(), 'last one')
    })
  })
}

test('readCommitLog refuses bad arguments and offsets outside the log with typed errors', async () => {
  await withStore('async', async (store) => {
    await store.put({ topic: 'raw', queueId: 0, body: body(1) })
    const end = store.commitLogMaxOffset
    const code = (fn: () => unknown): string => {
      try {
        fn()
      } catch (err) {
        assert.ok(err instanceof StoreError, `a StoreError, got ${String(err)}`)
        return err.code
      }
      return 'no error'
    }
    assert.equal(code(() => store.readCommitLog(end + 1, 10)), 'OFFSET_OUT_OF_RANGE')
    assert.equal(code(() => store.readCommitLog(-1, 10)), 'INVALID_ARGUMENT')
    assert.equal(code(() => store.readCommitLog(1.5, 10)), 'INVALID_ARGUMENT')
    assert.equal(code(() => store.readCommitLog(0, 0)), 'INVALID_ARGUMENT')
    assert.equal(code(() => store.readCommitLog(0, Number.NaN)), 'INVALID_ARGUMENT')
    assert.equal(code(() => store.readCommitLog('0' as unknown as number, 10)), 'INVALID_ARGUMENT')
    assert.equal(code(() => store.onCommitted(undefined as unknown as () => void)), 'INVALID_ARGUMENT')
    await store.close()
    assert.equal(code(() => store.readCommitLog(0, 10)), 'NOT_OPEN')
  })
})

test('readCommitLog below the first file still held after retention answers OFFSET_OUT_OF_RANGE', async () => {
  // Files are aged by their real modification time: the store's clock moves past it.
  let now = Date.now()
  await withStore(
    'async',
    async (store) => {
      for (let i = 0; i < 200; i++) await store.put({ topic: 'raw', queueId: 0, body: body(i) })
      now += 100 * 3600_000
      const r = await store.deleteExpiredFiles({ manual: true })
      assert.ok(r.commitLogFilesDeleted > 0, 'retention deleted files')
      const min = store.commitLogMinOffset
      assert.ok(min > 0 && min % SMALL_FILE === 0)
      assert.throws(() => store.readCommitLog(min - 1, 10), (e: unknown) => e instanceof StoreError && e.code === 'OFFSET_OUT_OF_RANGE' && /below the first byte/.test(e.message))
      assert.ok(store.readCommitLog(min, 10).length === 10)
    },
    { now: () => now },
  )
})

for (const flush of ['async', 'sync'] as const) {
  test(`onCommitted tells every listener each new committed offset; removal and a throwing listener (${flush})`, async () => {
    await withStore(flush, async (store) => {
      const a: number[] = []
      const b: number[] = []
      const offA = store.onCommitted((o) => a.push(o))
      store.onCommitted((o) => b.push(o))
      store.onCommitted(() => {
        throw new Error('a listener that fails')
      })
      const results = []
      for (let i = 0; i < 120; i++) results.push(await store.put({ topic: 'ev', queueId: 0, body: body(i) }))
      await store.flush()
      const last = results[results.length - 1]!
      for (const seen of [a, b]) {
        assert.ok(seen.length > 0)
        for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! >= seen[i - 1]!, 'offsets never go back')
        assert.equal(seen[seen.length - 1], store.commitLogMaxOffset)
        assert.ok(seen[seen.length - 1]! >= last.physicalOffset + last.size)
      }
      // Each put's end was announced by the time the put resolved.
      const announced = new Set(a)
      for (const r of results) assert.ok([...announced].some((o) => o >= r.physicalOffset + r.size))
      offA()
      const before = a.length
      await store.put({ topic: 'ev', queueId: 0, body: body(1) })
      await store.flush()
      assert.equal(a.length, before, 'a removed listener hears nothing')
      assert.ok(b[b.length - 1] === store.commitLogMaxOffset)
    })
  })
}

test('get with raw: true returns the stored bytes of what it found, equal to readCommitLog and to the decoded form', async () => {
  await withStore('async', async (store) => {
    const puts: PutResult[] = []
    for (let i = 0; i < 60; i++) puts.push(await store.put({ topic: 'pull', queueId: 2, body: body(i), tags: i % 2 ? 'TagA' : 'TagB', keys: `k${i}` }))
    const raw = await store.get({ topic: 'pull', queueId: 2, offset: 5, maxMessages: 10, raw: true })
    const decoded = await store.get({ topic: 'pull', queueId: 2, offset: 5, maxMessages: 10 })
    assert.equal(raw.status, 'FOUND')
    assert.equal(raw.messages.length, 0)
    assert.equal(decoded.records.length, 0)
    assert.equal(raw.records.length, 10)
    assert.equal(raw.nextOffset, decoded.nextOffset)
    raw.records.forEach((r, i) => {
      const p = puts[5 + i]!
      assert.equal(r.physicalOffset, p.physicalOffset)
      assert.equal(r.size, p.size)
      assert.equal(r.queueOffset, 5 + i)
      assert.equal(r.data.length, r.size)
      assert.ok(r.data.equals(store.readCommitLog(r.physicalOffset, r.size)))
      const m = decodeRecord(r.data, 0)
      assert.ok(m.body.equals(decoded.messages[i]!.body))
      assert.equal(decodeMessageId(p.msgId)!.physicalOffset, m.physicalOffset)
    })
    // Tag filter by hash; maxBytes bounds the answer (the first record always goes).
    const tagged = await store.get({ topic: 'pull', queueId: 2, offset: 0, maxMessages: 100, tags: ['TagA'], raw: true })
    assert.equal(tagged.records.length, 30)
    assert.ok(tagged.records.every((r) => decodeRecord(r.data, 0).tags === 'TagA'))
    const small = await store.get({ topic: 'pull', queueId: 2, offset: 0, maxMessages: 100, maxBytes: 1, raw: true })
    assert.equal(small.records.length, 1)
    assert.equal(small.nextOffset, 1)
    await assert.rejects(store.get({ topic: 'pull', queueId: 2, offset: 0, raw: 'yes' as unknown as boolean }), (e: unknown) => e instanceof StoreError && e.code === 'INVALID_ARGUMENT')
  })
})
