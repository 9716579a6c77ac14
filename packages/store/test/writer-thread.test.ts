// Sync flush through the writer thread (durable-writer.ts) on real files: concurrent puts are
// all durable and in order, failures of the thread's pwrite / fdatasync surface as typed errors
// on the waiting puts, close() stops the thread, and a lone put keeps the process alive until it
// is durable while an idle store does not.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { MessageStore, StoreError, type PutResult } from '../src/index.js'
import { NodeFileIO, ThreadDurableWriter, type DataFile, type ThreadDurableWriterOptions, type WriterFaults } from '../src/internal.js'
import { SMALL_FILE, reopen, tempDir } from './helpers.js'

test('writer thread: 500 concurrent puts across file rolls are durable, dense and survive a reopen', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const options = { dir, flush: 'sync' as const, commitLogFileSize: SMALL_FILE, fileIO: new NodeFileIO() }
  let store = await MessageStore.open(options)
  try {
    const rs = await Promise.all(Array.from({ length: 500 }, (_, i) => store.put({ topic: 'wt', queueId: i % 4, body: Buffer.alloc(300 + (i % 7) * 50, i & 0xff) })))
    assert.ok(rs.every((r) => r.status === 'PUT_OK'))
    assert.ok(store.commitLog.queue.files.length > 2, 'rolled over several files')
    assert.equal(store.commitLog.flushedOffset, store.commitLog.wroteOffset)
    store = await reopen(store, options, { fileIO: new NodeFileIO() })
    for (const [i, r] of rs.entries()) {
      const m = await store.lookup(r.physicalOffset)
      assert.equal(m.body[0], i & 0xff)
      assert.equal(m.queueOffset, r.queueOffset)
    }
    for (let q = 0; q < 4; q++) assert.equal(store.maxQueueOffset('wt', q), 125)
  } finally {
    await store.close()
    await cleanup()
  }
})

const polls = [
  { spinMicros: 0, pollMicros: 0 },
  { spinMicros: 5_000, pollMicros: 0 },
  { spinMicros: 0, pollMicros: 50_000 },
  { spinMicros: 5_000, pollMicros: undefined },
]
for (const { spinMicros, pollMicros } of polls) {
  test(`writer thread polling ${spinMicros} µs after a write, main thread ${pollMicros ?? 'default'} µs for completions: producers in a loop are grouped, durable and in order`, { timeout: 30_000 }, async () => {
    const { dir, cleanup } = await tempDir()
    const fileIO = new NodeFileIO({ writerSpinMicros: spinMicros, completionPollMicros: pollMicros })
    const store = await MessageStore.open({ dir, flush: 'sync', commitLogFileSize: SMALL_FILE, fileIO })
    try {
      const writer = (store.commitLog as unknown as { groupCommit: { writer: ThreadDurableWriter } }).groupCommit.writer
      let acked: PutResult[][] = []
      // 16 producers, each awaiting its put before the next (as the benchmark's producers do). On
      // a loaded machine every completion of a round may come by the thread pool's callback before
      // a poll finds it: with polling on, up to three rounds, until a poll has found one.
      for (let round = 0; round < 3 && (round === 0 || (pollMicros !== 0 && writer.completionsPolled === 0)); round++) {
        const before = writer.writes
        acked = Array.from({ length: 16 }, () => [])
        await Promise.all(
          acked.map(async (mine, p) => {
            for (let i = 0; i < 40; i++) mine.push(await store.put({ topic: 'spin', queueId: p % 2, body: Buffer.alloc(200, (p * 40 + i) & 0xff) }))
          }),
        )
        const writes = writer.writes - before
        assert.ok(writes < 16 * 40, `puts of resumed producers share durable writes (${writes} writes for ${16 * 40} puts)`)
      }
      const { completionsPolled } = writer
      if (pollMicros === 0) assert.equal(completionsPolled, 0, 'no polling when it is off')
      else assert.ok(completionsPolled > 0, 'the main thread found completions by polling')
      assert.equal(store.commitLog.flushedOffset, store.commitLog.wroteOffset)
      for (const [p, mine] of acked.entries()) {
        for (const [i, r] of mine.entries()) {
          assert.equal(r.status, 'PUT_OK')
          assert.equal((await store.lookup(r.physicalOffset)).body[0], (p * 40 + i) & 0xff)
          if (i > 0) assert.ok(r.physicalOffset > mine[i - 1]!.physicalOffset)
        }
      }
    } finally {
      await store.close()
      await cleanup()
    }
  })
}

/** A ThreadDurableWriter over a new 1 MiB file; `events` counts its completions and keeps its failure. */
async function writerOnFile(options: ThreadDurableWriterOptions): Promise<{ f: DataFile; writer: ThreadDurableWriter; events: { completed: number; failure: Error | undefined }; close: () => Promise<void> }> {
  const { dir, cleanup } = await tempDir()
  const io = new NodeFileIO()
  const file = path.join(dir, 'data')
  await io.allocate(file, 1 << 20)
  const f = await io.open(file)
  const events = { completed: 0, failure: undefined as Error | undefined }
  const writer = new ThreadDurableWriter({ onDone: (n) => (events.completed += n), onError: (err) => (events.failure = err) }, options)
  const close = async (): Promise<void> => {
    await writer.close()
    await f.close()
    await cleanup()
  }
  return { f, writer, events, close }
}

test('writer thread: bytes handed over with writeAhead reach the file before their group ends, and are reported durable only with it', { timeout: 30_000 }, async () => {
  // Polls 10 s after a write, so the write-ahead below finds it polling.
  const { f, writer, events, close } = await writerOnFile({ spinMicros: 10_000_000 })
  const until = async (what: string, ok: () => boolean | Promise<boolean>): Promise<void> => {
    for (let i = 0; i < 2000 && !(await ok()); i++) await new Promise((r) => setTimeout(r, 1))
    assert.ok(await ok(), what)
  }
  const onDisk = async (position: number, length: number, byte: number): Promise<boolean> => {
    const b = Buffer.alloc(length)
    await f.read(b, 0, length, position)
    return b.every((x) => x === byte)
  }
  try {
    const buf = writer.allocate(64 * 1024)
    buf.fill(1, 0, 4096)
    assert.ok(writer.submit(f, buf, 0, 4096, 0))
    writer.start()
    await until('the first group completes', () => events.completed === 1)

    buf.fill(2, 4096, 4096 + 20_000)
    assert.ok(writer.submit(f, buf, 4096, 20_000, 4096))
    writer.writeAhead()
    await until('written ahead into the file', () => onDisk(4096, 20_000, 2))
    await new Promise((r) => setTimeout(r, 20))
    assert.equal(events.completed, 1, 'a write-ahead is not reported durable')

    buf.fill(3, 4096 + 20_000, 4096 + 30_000)
    assert.ok(writer.submit(f, buf, 4096 + 20_000, 10_000, 4096 + 20_000))
    writer.start()
    await until('the group with its written-ahead part completes', () => events.completed === 3)
    assert.ok(await onDisk(4096 + 20_000, 10_000, 3))
    assert.equal(writer.writes, 2, 'one fdatasync per group')
    assert.equal(events.failure, undefined)
  } finally {
    await close()
  }
})

test('writer thread: the main thread stops polling for a completion after its budget and gets it from the message', { timeout: 30_000 }, async () => {
  // The second fdatasync takes 300 ms: far past the 20 ms poll budget.
  const faults: WriterFaults = { on: 'fdatasync', failCall: 2, delayMs: 300 }
  const { f, writer, events, close } = await writerOnFile({ pollMicros: 20_000, faults })
  const turns = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r))
  }
  try {
    const buf = writer.allocate(8192)
    buf.fill(7)
    assert.ok(writer.submit(f, buf, 0, 4096, 0))
    writer.start()
    for (let i = 0; i < 2000 && events.completed === 0; i++) await new Promise((r) => setTimeout(r, 1))
    assert.equal(events.completed, 1)

    assert.ok(writer.submit(f, buf, 4096, 4096, 4096))
    writer.start()
    const t0 = performance.now()
    await turns(3)
    assert.ok(writer.pollingForCompletions, 'polls while the write is under way')
    while (performance.now() - t0 < 100) await new Promise((r) => setTimeout(r, 5))
    await turns(3)
    assert.equal(events.completed, 1, 'the slow fdatasync is still under way')
    assert.equal(writer.pollingForCompletions, false, 'stopped polling after its budget')
    for (let i = 0; i < 2000 && events.completed === 1; i++) await new Promise((r) => setTimeout(r, 1))
    assert.equal(events.completed, 2, 'the completion came with the message')
    assert.ok(performance.now() - t0 >= 250)
    assert.equal(events.failure, undefined)
  } finally {
    await close()
  }
})

// The third put's group fails: its fdatasync is the third, its first write the fifth (a run is
// written in two, its first 4 bytes last: run-write.ts).
const failures: { faults: WriterFaults; code: string }[] = [
  { faults: { on: 'fdatasync', failCall: 3, code: 'EIO' }, code: 'FLUSH_FAILED' },
  { faults: { on: 'write', failCall: 5, code: 'EIO' }, code: 'FLUSH_FAILED' },
  { faults: { on: 'write', failCall: 5, code: 'ENOSPC' }, code: 'DISK_FULL' },
]
for (const { faults, code } of failures) {
  test(`writer thread: ${faults.code} from ${faults.on} fails the waiting puts with ${code} and refuses further writes`, { timeout: 30_000 }, async () => {
    const { dir, cleanup } = await tempDir()
    const store = await MessageStore.open({ dir, flush: 'sync', commitLogFileSize: SMALL_FILE, fileIO: new NodeFileIO({ writerFaults: faults }) })
    try {
      const ok: PutResult[] = []
      for (let i = 0; i < 2; i++) ok.push(await store.put({ topic: 'f', queueId: 0, body: `fine ${i}` }))
      const waiting = Array.from({ length: 20 }, (_, i) => store.put({ topic: 'f', queueId: 0, body: `lost? ${i}` }))
      for (const p of waiting) await assert.rejects(p, (e: unknown) => e instanceof StoreError && e.code === code)
      await assert.rejects(store.put({ topic: 'f', queueId: 0, body: 'more' }), (e: unknown) => e instanceof StoreError && e.code === code)
      await assert.rejects(store.flush(), (e: unknown) => e instanceof StoreError && e.code === code)
      for (const [i, r] of ok.entries()) assert.equal((await store.lookup(r.physicalOffset)).body.toString(), `fine ${i}`)
    } finally {
      // The failed log cannot be closed cleanly: close says so (and keeps the abort marker).
      await store.close().catch((e: unknown) => assert.ok(e instanceof StoreError && e.code === code, `close: ${String(e)}`))
      await cleanup()
    }
  })
}

const here = path.dirname(fileURLToPath(import.meta.url))
const storeIndex = path.join(here, '..', 'src', 'index.js')

function runChild(source: string, dir: string): { status: number | null; stdout: string; stderr: string; ms: number } {
  const t0 = Date.now()
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', source, storeIndex, dir], { encoding: 'utf8', timeout: 20_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 }
}

test('writer thread: a lone awaited put keeps the process alive until durable; close() stops the thread', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const source = `
      const { MessageStore } = await import(process.argv[1])
      const store = await MessageStore.open({ dir: process.argv[2], flush: 'sync', commitLogFileSize: 65536 })
      const r = await store.put({ topic: 't', queueId: 0, body: 'one' })
      const rs = await Promise.all(Array.from({ length: 100 }, () => store.put({ topic: 't', queueId: 0, body: 'x' })))
      await store.close()
      console.log(r.status, rs.length)
    `
    const r = runChild(source, dir)
    assert.equal(r.status, 0, r.stderr)
    assert.equal(r.stdout.trim(), 'PUT_OK 100')
    assert.ok(r.ms < 15_000)
  } finally {
    await cleanup()
  }
})

test('writer thread: an open, idle sync store does not keep the process alive', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const source = `
      const { MessageStore } = await import(process.argv[1])
      const store = await MessageStore.open({ dir: process.argv[2], flush: 'sync', commitLogFileSize: 65536 })
      await store.put({ topic: 't', queueId: 0, body: 'one' })
      console.log('put done')
    `
    const r = runChild(source, dir)
    assert.equal(r.status, 0, r.stderr)
    assert.equal(r.stdout.trim(), 'put done')
  } finally {
    await cleanup()
  }
})
