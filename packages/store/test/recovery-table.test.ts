// The recovery decision table of docs/design/recovery.md ("What the first failing position
// means"), one test per row: what recovery does with the first failing position P, whether valid
// records follow it, and where P lies against the checkpoint's durable offset D. Each store is
// closed cleanly first; a row with P >= D then lowers D in the checkpoint and leaves the abort
// marker (a crash: the scan starts at D), a row with P < D opens with verifyOnOpen (the scan
// starts at the start of the file holding D).
import assert from 'node:assert/strict'
import { cp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, StoreError, type PutResult } from '../src/index.js'
import { NodeFileIO, StoreCheckpoint } from '../src/internal.js'
import { SMALL_FILE, tempDir } from './helpers.js'

const RECORDS = 60
const FIRST_FILE = '00000000000000000000'

interface Built {
  dir: string
  puts: PutResult[]
  file: string
  cleanup: () => Promise<void>
}

/** A store of RECORDS records in its first file, closed cleanly (D = the end of the log). */
async function build(): Promise<Built> {
  const { dir, cleanup } = await tempDir('mqts-rectable-')
  const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, flush: 'sync' })
  const puts: PutResult[] = []
  for (let i = 0; i < RECORDS; i++) puts.push(await store.put({ topic: 'table', queueId: i % 3, body: `m${i}-`.padEnd(150 + ((i * 37) % 100), 'x'), keys: [`k${i}`] }))
  await store.close()
  assert.ok(puts.at(-1)!.physicalOffset + puts.at(-1)!.size < SMALL_FILE, 'every record in the first file')
  return { dir, puts, file: path.join(dir, 'commitlog', FIRST_FILE), cleanup }
}

async function overwrite(file: string, at: number, bytes: Buffer): Promise<void> {
  const h = await open(file, 'r+')
  try {
    await h.write(bytes, 0, bytes.length, at)
  } finally {
    await h.close()
  }
}

/** Zeroes [from, to) of the file. */
function zero(file: string, from: number, to: number): Promise<void> {
  return overwrite(file, from, Buffer.alloc(to - from))
}

/** Damages a record's body (its CRC then fails): P is the record's offset. */
function garble(file: string, put: PutResult): Promise<void> {
  return overwrite(file, put.physicalOffset + put.size - 60, Buffer.from('garbage!'))
}

/** A crash with the checkpoint's durable offset at `durableOffset`: the scan starts there. */
async function crashWithDurableOffset(dir: string, durableOffset: number): Promise<void> {
  const cp = await StoreCheckpoint.open(new NodeFileIO(), path.join(dir, 'checkpoint'))
  cp.values.physicalFlushedOffset = durableOffset
  cp.values.logicsFlushedOffset = Math.min(cp.values.logicsFlushedOffset, durableOffset)
  await cp.flush()
  await cp.close()
  await writeFile(path.join(dir, 'abort'), String(process.pid))
}

/** A copy of a store directory as a kill leaves it (the store stays open: abort marker present). */
function cpDir(from: string, to: string): Promise<void> {
  return cp(from, to, { recursive: true })
}

const openStore = (dir: string, extra: Record<string, unknown> = {}): Promise<MessageStore> => MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, ...extra })

/** The store holds exactly the records before `end`, each with its queue offset. */
async function assertPrefix(store: MessageStore, puts: PutResult[], end: number): Promise<void> {
  assert.equal(store.maxPhysicalOffset, end)
  for (const p of puts) {
    if (p.physicalOffset < end) assert.equal((await store.lookup(p.physicalOffset)).queueOffset, p.queueOffset)
    else await assert.rejects(store.lookup(p.physicalOffset))
  }
  for (let q = 0; q < 3; q++) assert.equal(store.maxOffset('table', q), puts.filter((p, i) => p.physicalOffset < end && i % 3 === q).length, `queue ${q}`)
}

test('row 1: zeros at P >= D end the log, nothing reported (records after the zeros are past D: gone)', { timeout: 30_000 }, async () => {
  const b = await build()
  try {
    const D = b.puts[40]!.physicalOffset
    const P = b.puts[50]!.physicalOffset
    await zero(b.file, P, b.puts[53]!.physicalOffset) // records 53.. stay valid after the zeros
    await crashWithDurableOffset(b.dir, D)
    const store = await openStore(b.dir)
    try {
      assert.equal(store.recovery.cleanShutdown, false)
      assert.equal(store.recovery.scanFromOffset, D)
      assert.equal(store.recovery.truncated, undefined)
      assert.equal(store.recovery.endOffset, P)
      await assertPrefix(store, b.puts, P)
    } finally {
      await store.close()
    }
    const bytes = await readFile(b.file)
    assert.ok(bytes.subarray(P).every((x) => x === 0), 'what followed the end is zeroed')
  } finally {
    await b.cleanup()
  }
})

test('row 2: zeros at P < D with no valid record after them: cut at P, reported below the durable offset', { timeout: 30_000 }, async () => {
  const b = await build()
  try {
    const P = b.puts[55]!.physicalOffset
    await zero(b.file, P, SMALL_FILE)
    const store = await openStore(b.dir, { verifyOnOpen: true })
    try {
      assert.deepEqual(
        { at: store.recovery.truncated?.atOffset, below: store.recovery.truncated?.belowDurableOffset, followed: store.recovery.truncated?.validDataFollowed },
        { at: P, below: true, followed: false },
      )
      await assertPrefix(store, b.puts, P)
    } finally {
      await store.close()
    }
  } finally {
    await b.cleanup()
  }
})

/**
 * Damage at P below D with valid records after it: the open refuses with CORRUPT_RECORD at P and
 * changes nothing; with onCorruption 'truncate' the log is cut at P.
 */
async function refusedThenCut(b: Built, victim: PutResult): Promise<void> {
  const damaged = await readFile(b.file)
  await assert.rejects(openStore(b.dir, { verifyOnOpen: true }), (err: unknown) => err instanceof StoreError && err.code === 'CORRUPT_RECORD' && err.details.physicalOffset === victim.physicalOffset)
  assert.ok((await readFile(b.file)).equals(damaged), 'the refused open changed nothing')
  const store = await openStore(b.dir, { verifyOnOpen: true, onCorruption: 'truncate' })
  try {
    assert.equal(store.recovery.truncated?.atOffset, victim.physicalOffset)
    assert.equal(store.recovery.truncated?.validDataFollowed, true)
    assert.equal(store.recovery.truncated?.belowDurableOffset, true)
    await assertPrefix(store, b.puts, victim.physicalOffset)
  } finally {
    await store.close()
  }
}

test('row 3: zeros at P < D with valid records after them: CORRUPT_RECORD, nothing changed; truncate cuts at P', { timeout: 30_000 }, async () => {
  const b = await build()
  try {
    const victim = b.puts[30]!
    await zero(b.file, victim.physicalOffset, victim.physicalOffset + victim.size)
    await refusedThenCut(b, victim)
  } finally {
    await b.cleanup()
  }
})

test('row 4: a bad record with nothing valid after it is a torn tail: cut at P, reported', { timeout: 30_000 }, async () => {
  const b = await build()
  try {
    const last = b.puts.at(-1)!
    await garble(b.file, last)
    await crashWithDurableOffset(b.dir, b.puts[50]!.physicalOffset)
    const store = await openStore(b.dir)
    try {
      assert.deepEqual(
        { at: store.recovery.truncated?.atOffset, below: store.recovery.truncated?.belowDurableOffset, followed: store.recovery.truncated?.validDataFollowed },
        { at: last.physicalOffset, below: false, followed: false },
      )
      await assertPrefix(store, b.puts, last.physicalOffset)
    } finally {
      await store.close()
    }
  } finally {
    await b.cleanup()
  }
})

test('row 5: a bad record at P >= D with valid records after it is a torn unflushed region: cut at P, reported', { timeout: 30_000 }, async () => {
  const b = await build()
  try {
    const victim = b.puts[45]!
    await garble(b.file, victim)
    await crashWithDurableOffset(b.dir, b.puts[40]!.physicalOffset)
    const store = await openStore(b.dir)
    try {
      assert.deepEqual(
        { at: store.recovery.truncated?.atOffset, below: store.recovery.truncated?.belowDurableOffset, followed: store.recovery.truncated?.validDataFollowed },
        { at: victim.physicalOffset, below: false, followed: true },
      )
      await assertPrefix(store, b.puts, victim.physicalOffset)
    } finally {
      await store.close()
    }
  } finally {
    await b.cleanup()
  }
})

test('row 6: a bad record at P < D with valid records after it: CORRUPT_RECORD, nothing changed; truncate cuts at P', { timeout: 30_000 }, async () => {
  const b = await build()
  try {
    const victim = b.puts[20]!
    await garble(b.file, victim)
    await refusedThenCut(b, victim)
  } finally {
    await b.cleanup()
  }
})

test('sync flush: after a kill the durable offset is the last acknowledged group, so damaged acknowledged data is never cut as a torn tail', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir('mqts-rectable-')
  const crashed = `${dir}-crashed`
  try {
    const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, flush: 'sync' })
    const puts: PutResult[] = []
    for (let i = 0; i < 40; i++) puts.push(await store.put({ topic: 'table', queueId: 0, body: `m${i}-`.padEnd(200, 'x') }))
    // Moments after the last acknowledgement (far less than the 100 ms checkpoint tick), a kill.
    await new Promise((r) => setTimeout(r, 10))
    await cpDir(dir, crashed)
    await store.close()
    const end = puts.at(-1)!.physicalOffset + puts.at(-1)!.size
    // A damaged acknowledged record: past a stale durable offset it would read as a torn
    // unflushed region and be cut with every acknowledged record after it (row 5).
    await garble(path.join(crashed, 'commitlog', FIRST_FILE), puts[35]!)
    // The damage lies below the durable offset: the open refuses it if the ConsumeQueue rebuild
    // reads the record (its checkpoint may be behind), or trusts it; it never cuts.
    let reopened: MessageStore
    try {
      reopened = await openStore(crashed, { flush: 'sync' })
    } catch (err) {
      assert.ok(err instanceof StoreError && err.code === 'CORRUPT_RECORD' && err.details.physicalOffset === puts[35]!.physicalOffset && err.details.durableOffset === end, String(err))
      return
    }
    try {
      assert.equal(reopened.recovery.durableOffset, end)
      assert.equal(reopened.recovery.truncated, undefined)
      assert.equal(reopened.maxPhysicalOffset, end)
      assert.equal(reopened.maxOffset('table', 0), puts.length)
    } finally {
      await reopened.close()
    }
  } finally {
    await cleanup()
    await rm(crashed, { recursive: true, force: true })
  }
})

test('a damaged record below the durable offset that the ConsumeQueue rebuild reads is CORRUPT_RECORD, never a folder named by its bytes; truncate cuts it', { timeout: 30_000 }, async () => {
  const b = await build()
  try {
    // The topic bytes of record 20 become "../..": a rebuild that trusted them would make a
    // ConsumeQueue folder outside the store.
    const victim = b.puts[20]!
    const bytes = await readFile(b.file)
    const bodyLength = bytes.readInt32BE(victim.physicalOffset + 84)
    bytes.write('../..', victim.physicalOffset + 88 + bodyLength + 1, 'latin1')
    await writeFile(b.file, bytes)
    // A crash whose ConsumeQueue checkpoint is behind: the rebuild reads from the log's start.
    await crashWithDurableOffset(b.dir, b.puts.at(-1)!.physicalOffset + b.puts.at(-1)!.size)
    const cp = await StoreCheckpoint.open(new NodeFileIO(), path.join(b.dir, 'checkpoint'))
    cp.values.logicsFlushedOffset = 0
    await cp.flush()
    await cp.close()
    await rm(path.join(b.dir, 'consumequeue'), { recursive: true })
    await assert.rejects(openStore(b.dir), (err: unknown) => err instanceof StoreError && err.code === 'CORRUPT_RECORD' && err.details.physicalOffset === victim.physicalOffset)
    assert.deepEqual(await readdir(path.join(b.dir, 'consumequeue')), ['table'], 'no folder but the real topic')
    assert.deepEqual(await readdir(path.dirname(b.dir)).then((names) => names.filter((n) => n === 'table')), [])
    const store = await openStore(b.dir, { onCorruption: 'truncate' })
    try {
      assert.equal(store.recovery.truncated?.atOffset, victim.physicalOffset)
      assert.equal(store.recovery.truncated?.belowDurableOffset, true)
      await assertPrefix(store, b.puts, victim.physicalOffset)
    } finally {
      await store.close()
    }
  } finally {
    await b.cleanup()
  }
})
