// Back-pressure: appends waiting on a stalled disk (SimFileIO.stall()) are bounded by
// maxPendingAppends and maxPendingAppendBytes. Past a bound a put or putBatch fails at once with
// BUSY and writes nothing; what was acknowledged before stays readable; once the disk is
// released every waiting put completes in order and new puts succeed. No timing is asserted:
// "at once" means settled while the disk is still stalled.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MessageStore, type MessageStoreOptions, type PutResult } from '../src/index.js'
import { DEFAULT_MAX_PENDING_APPENDS, DEFAULT_MAX_PENDING_APPEND_BYTES, SimFileIO } from '../src/internal.js'
import { SIM_INDEX, SMALL_FILE, simDir } from './helpers.js'

type State = { kind: 'pending' } | { kind: 'ok'; r: PutResult | PutResult[] } | { kind: 'failed'; err: { code?: string } }

/** Tracks how `p` settles. */
function track<T extends PutResult | PutResult[]>(p: Promise<T>): { state: State; promise: Promise<T> } {
  const t: { state: State; promise: Promise<T> } = { state: { kind: 'pending' }, promise: p }
  p.then(
    (r) => (t.state = { kind: 'ok', r }),
    (err) => (t.state = { kind: 'failed', err }),
  )
  return t
}

/** Lets every settled promise and ready callback run (the disk stays stalled). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
}

function options(dir: string, io: SimFileIO, extra: Partial<MessageStoreOptions>): MessageStoreOptions {
  // No put times out while the disk is stalled: FLUSH_DISK_TIMEOUT is not what is tested.
  return { dir, fileIO: io, commitLogFileSize: SMALL_FILE, syncFlushTimeoutMs: 600_000, ...SIM_INDEX, ...extra }
}

/** Every message of queue `topic`/0 in order: bodies as put. */
async function bodiesOf(store: MessageStore, topic: string): Promise<string[]> {
  const out: string[] = []
  for (let offset = 0; ; ) {
    const r = await store.get({ topic, queueId: 0, offset, maxMessages: 64 })
    if (r.messages.length === 0) return out
    for (const m of r.messages) out.push(m.body.toString())
    offset = r.nextOffset
  }
}

test('back-pressure options: defaults stated, out-of-range values refused at open', { timeout: 30_000 }, async (t) => {
  assert.equal(DEFAULT_MAX_PENDING_APPENDS, 10_000)
  assert.equal(DEFAULT_MAX_PENDING_APPEND_BYTES, 128 * 1024 * 1024)
  const dir = simDir(t)
  for (const bad of [{ maxPendingAppends: 0 }, { maxPendingAppends: 1.5 }, { maxPendingAppendBytes: 0 }, { maxPendingAppendBytes: '1' as unknown as number }]) {
    await assert.rejects(MessageStore.open(options(dir, new SimFileIO(), bad)), { code: 'INVALID_ARGUMENT' }, JSON.stringify(bad))
  }
})

for (const bound of ['count', 'bytes'] as const) {
  test(`sync flush, stalled disk: puts waiting to be durable are bounded by ${bound}; past it BUSY at once, nothing written; released, all complete`, { timeout: 30_000 }, async (t) => {
    const dir = simDir(t)
    const io = new SimFileIO()
    const body = 'x'.repeat(900)
    const limits = bound === 'count' ? { maxPendingAppends: 6 } : { maxPendingAppendBytes: 5000 }
    const store = await MessageStore.open(options(dir, io, { flush: 'sync', ...limits }))
    let release = (): void => {}
    try {
      const before = [await store.put({ topic: 'bp', queueId: 0, body: 'acked 0' }), await store.put({ topic: 'bp', queueId: 0, body: 'acked 1' })]
      release = io.stall()
      const puts: ReturnType<typeof track<PutResult>>[] = []
      for (let i = 0; i < 20; i++) puts.push(track(store.put({ topic: 'bp', queueId: 0, body: `${i} ${body}` })))
      const batch = track(store.putBatch([{ topic: 'bp', queueId: 0, body: 'batch' }]))
      await settle()
      const waiting = puts.filter((p) => p.state.kind === 'pending')
      const busy = puts.filter((p) => p.state.kind === 'failed')
      assert.ok(waiting.length >= 1 && busy.length >= 1, `some puts wait (${waiting.length}), the rest are refused (${busy.length})`)
      if (bound === 'count') assert.equal(waiting.length, 6, 'exactly maxPendingAppends puts wait')
      else assert.ok(waiting.length * 900 <= 5000 + 1000, `no more than maxPendingAppendBytes wait (${waiting.length} puts of about 1 KiB)`)
      assert.equal(waiting.length + busy.length, puts.length, 'nothing else happened while the disk is stalled')
      // The waiting ones are the first made: order is kept.
      assert.deepEqual(
        puts.map((p) => p.state.kind),
        [...waiting.map(() => 'pending'), ...busy.map(() => 'failed')],
      )
      for (const p of busy) assert.equal((p.state as { err: { code?: string } }).err.code, 'BUSY')
      assert.equal(batch.state.kind, 'failed')
      assert.equal((batch.state as { err: { code?: string } }).err.code, 'BUSY', 'a putBatch too')
      const end = store.maxPhysicalOffset
      await assert.rejects(store.put({ topic: 'bp', queueId: 0, body: 'refused' }), { code: 'BUSY' })
      assert.equal(store.maxPhysicalOffset, end, 'a refused put writes nothing')
      // What was acknowledged before the stall is untouched and readable meanwhile.
      for (const r of before) assert.ok((await store.lookup(r.physicalOffset)).body.toString().startsWith('acked'))
      release()
      const done = await Promise.all(waiting.map((p) => p.promise))
      assert.deepEqual(
        done.map((r) => [r.status, r.queueOffset]),
        done.map((_, i) => ['PUT_OK', 2 + i]),
        'the waiting puts complete in order, their queue offsets dense',
      )
      const after = await store.put({ topic: 'bp', queueId: 0, body: 'after' })
      assert.equal(after.queueOffset, 2 + waiting.length, 'a later put follows them: nothing was written for the refused ones')
      assert.deepEqual(await bodiesOf(store, 'bp'), ['acked 0', 'acked 1', ...waiting.map((_, i) => `${i} ${body}`), 'after'])
    } finally {
      release()
      await store.close()
    }
  })
}

test('async flush, stalled disk: appends queued behind a new file that cannot be created are bounded; BUSY at once; released, all complete', { timeout: 30_000 }, async (t) => {
  const dir = simDir(t)
  const io = new SimFileIO()
  const store = await MessageStore.open(options(dir, io, { flush: 'async', maxPendingAppends: 4 }))
  let release = (): void => {}
  try {
    const first = await store.put({ topic: 'bp', queueId: 0, body: 'acked' })
    await settle() // the next file, made ahead, is ready
    release = io.stall()
    // About 60 records fit a 64 KiB file: the roll to the file made ahead goes, the next one
    // waits for a file the stalled disk cannot create, and appends queue behind it. Each put is
    // given time to complete before the next, so only a stalled roll holds one back.
    const body = 'y'.repeat(1000)
    const puts: ReturnType<typeof track<PutResult>>[] = []
    for (let i = 0; i < 200; i++) {
      puts.push(track(store.put({ topic: 'bp', queueId: 0, body: `${i} ${body}` })))
      await settle()
    }
    const kinds = puts.map((p) => p.state.kind)
    const ok = kinds.indexOf('pending')
    assert.ok(ok > 0, 'puts complete while a file has room')
    assert.deepEqual(kinds.slice(ok, ok + 4), ['pending', 'pending', 'pending', 'pending'], 'maxPendingAppends appends queue behind the roll')
    assert.deepEqual(kinds.slice(0, ok), kinds.slice(0, ok).map(() => 'ok'))
    assert.deepEqual(kinds.slice(ok + 4), kinds.slice(ok + 4).map(() => 'failed'), 'the rest are refused at once')
    for (const p of puts.slice(ok + 4)) assert.equal((p.state as { err: { code?: string } }).err.code, 'BUSY')
    release()
    const done = await Promise.all(puts.slice(0, ok + 4).map((p) => p.promise))
    assert.deepEqual(
      done.map((r) => r.queueOffset),
      done.map((_, i) => i + 1),
    )
    assert.equal((await store.put({ topic: 'bp', queueId: 0, body: 'after' })).queueOffset, ok + 5)
    assert.equal((await store.lookup(first.physicalOffset)).body.toString(), 'acked')
    assert.deepEqual(await bodiesOf(store, 'bp'), ['acked', ...done.map((_, i) => `${i} ${body}`), 'after'])
  } finally {
    release()
    await store.close()
  }
})
