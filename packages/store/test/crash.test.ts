// Real crash test: a child process appends (8 producers, single puts and batches) and prints each
// acknowledged message; the parent kills it with SIGKILL at a random moment, reopens the store and
// checks that every acknowledged message is present and intact at its offsets, every record kept
// is whole (acknowledged or not), queue offsets are dense, and nothing follows the tail. Cycles alternate flush 'sync' and 'async' (an async ack is
// in the page cache, which a process kill does not lose). CRASH_CYCLES (default 30) sets the
// number of cycles; SEED replays the kill timings and the samples. After each reopen the messages
// acknowledged in that cycle, and a seeded sample of the earlier ones, are read back by offset,
// through the ConsumeQueue (`get` at the queue offset its put returned) and by key; the log written
// since the last check is walked for dense queue offsets. In a few seeded cycles the recovered
// ConsumeQueues must equal a fresh rebuild from the CommitLog alone, over the units added since the
// last such check and a sample of the older ones (a rebuild reads the whole log). The checks of a
// cycle thus cost the same however many came before; once at the end every acknowledged message
// and every unit is checked against a rebuild.
import assert from 'node:assert/strict'
import { cp, rm } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { MessageStore } from '../src/index.js'
import { seededRandom } from '@mqts/common'
import { runUntilKilled } from '@mqts/common/testing'
import { CQ_UNITS_PER_FILE, expectedBody } from './fixtures/crash-body.js'
import { forEachRecord, tempDir } from './helpers.js'

const CYCLES = Number(process.env.CRASH_CYCLES ?? 30)
const SEED = process.env.SEED ? Number(process.env.SEED) : Date.now() % 1_000_000
const WRITER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'crash-writer.js')
const FILE_SIZE = 256 * 1024

interface Ack {
  offset: number
  queueId: number
  queueOffset: number
  id: string
  bytes: number
}

/** Runs the writer until the kill; the messages it acknowledged (PUT_OK) before it. */
async function runAndKill(dir: string, flush: string, cycle: number, killAfterMs: number): Promise<{ acks: Ack[] }> {
  const { lines } = await runUntilKilled(WRITER, [dir, flush, String(FILE_SIZE), String(cycle)], { killAfterMs })
  const acks: Ack[] = []
  for (const line of lines) {
    if (!line.startsWith('ack ')) continue
    const [, offset, queueId, queueOffset, id, bytes, status] = line.split(' ')
    if (status === 'PUT_OK') acks.push({ offset: Number(offset), queueId: Number(queueId), queueOffset: Number(queueOffset), id: id!, bytes: Number(bytes) })
  }
  return { acks }
}

const QUEUES = 4
/** Earlier acknowledgements re-checked each cycle (a seeded sample), and earlier units compared. */
const OLD_SAMPLE = 200
/** Cycles (seeded) whose recovered ConsumeQueues are compared with a rebuild, besides the end. */
const REBUILD_CHECKS = 5
/** Acknowledgements of each cycle also looked up by key (its last ones). */
const KEY_SAMPLE = 50

/** A seeded sample of `n` items of `items` (all of them when there are fewer). */
function sample<T>(items: readonly T[], n: number, rnd: () => number): T[] {
  if (items.length <= n) return [...items]
  const out: T[] = []
  for (let i = 0; i < n; i++) out.push(items[Math.floor(rnd() * items.length)]!)
  return out
}

/** Every acknowledged message in `acks` is intact at its offset, at its queue offset, and (for `byKey`) by key. */
async function checkAcks(store: MessageStore, acks: readonly Ack[], byKey: readonly Ack[], where: string): Promise<void> {
  for (const a of acks) {
    const m = await store.lookup(a.offset)
    assert.equal(m.queueId, a.queueId, `${where}: ${a.id}`)
    assert.equal(m.queueOffset, a.queueOffset, `${where}: ${a.id}`)
    assert.ok(m.body.equals(expectedBody(a.id, a.bytes)), `${where}: body of ${a.id}`)
    assert.deepEqual(m.keys, [a.id])
    const r = await store.get({ topic: 'crash', queueId: a.queueId, offset: a.queueOffset, maxMessages: 1 })
    assert.equal(r.status, 'FOUND', `${where}: get ${a.id}`)
    assert.equal(r.messages[0]!.physicalOffset, a.offset, `${where}: get ${a.id}`)
  }
  for (const a of byKey) {
    const found = await store.queryByKey('crash', a.id)
    assert.deepEqual(found.map((m) => m.physicalOffset), [a.offset], `${where}: queryByKey ${a.id}`)
  }
}

/** Where the last walk of the log stopped, and the next queue offset each queue expects there. */
interface Walked {
  offset: number
  next: Map<number, number>
}

/**
 * Walks the log from `from.offset` to its end: every record whole, queue offsets dense, nothing after the tail, each
 * ConsumeQueue ending where the CommitLog says. Returns where it stopped, for the next walk.
 */
async function walkLog(store: MessageStore, from: Walked, where: string): Promise<Walked> {
  const next = new Map(from.next)
  const offset = await forEachRecord(store, from.offset, (at, m) => {
    // Acknowledged or not, every record kept is whole: a write the kill cut short is not kept.
    assert.equal(m.keys.length, 1, `${where}: record at ${at} has its key (${JSON.stringify(m.properties)})`)
    assert.ok(m.body.equals(expectedBody(m.keys[0]!, m.body.length)), `${where}: record at ${at} is whole`)
    assert.equal(m.queueOffset, next.get(m.queueId) ?? 0, `${where}: dense offsets in queue ${m.queueId}`)
    next.set(m.queueId, m.queueOffset + 1)
  })
  assert.equal(offset, store.maxPhysicalOffset)
  for (const [q, n] of next) {
    assert.equal(store.maxQueueOffset('crash', q), n)
    assert.equal(store.maxOffset('crash', q), n, `${where}: ConsumeQueue ${q} ends where the CommitLog says`)
  }
  return { offset, next }
}

/** The units of queue `queueId` at `offsets`, as "queueOffset:physicalOffset/size/tagsCode". */
async function unitsAt(store: MessageStore, queueId: number, offsets: readonly number[]): Promise<string[]> {
  const cq = store.consumeQueues.find('crash', queueId)
  const out: string[] = [`min ${cq?.minOffset ?? 0} max ${cq?.maxOffset ?? 0}`]
  for (const u of offsets) {
    const unit = cq ? await cq.unitAt(u) : undefined
    out.push(unit ? `${u}:${unit.physicalOffset}/${unit.size}/${unit.tagsCode}` : `${u}:missing`)
  }
  return out
}

/** The queue offsets to compare in each queue: those from `since` to the end, and a sample of the older ones. */
function unitsToCompare(store: MessageStore, since: readonly number[], rnd: () => number, all: boolean): number[][] {
  const out: number[][] = []
  for (let q = 0; q < QUEUES; q++) {
    const cq = store.consumeQueues.find('crash', q)
    const min = cq?.minOffset ?? 0
    const max = cq?.maxOffset ?? 0
    const from = all ? min : Math.max(min, Math.min(since[q] ?? 0, max))
    const offsets: number[] = []
    for (let i = 0; i < OLD_SAMPLE && from > min; i++) offsets.push(min + Math.floor(rnd() * (from - min)))
    for (let u = from; u < max; u++) offsets.push(u)
    out.push(offsets)
  }
  return out
}

/** The recovered ConsumeQueues equal a rebuild from the CommitLog alone, at `offsets` of each queue. */
async function compareWithRebuild(dir: string, options: { commitLogFileSize: number; consumeQueueUnitsPerFile: number }, offsets: number[][], recovered: string[][], where: string): Promise<void> {
  const copy = `${dir}-rebuild`
  await rm(copy, { recursive: true, force: true })
  // Without consumequeue/ (rebuilt from the CommitLog) and index/ (not compared, so not rebuilt).
  const skip = new Set([path.join(dir, 'consumequeue'), path.join(dir, 'index')])
  await cp(dir, copy, { recursive: true, filter: (from) => !skip.has(from) })
  const rebuilt = await MessageStore.open({ ...options, dir: copy, messageIndexEnable: false })
  try {
    for (let q = 0; q < QUEUES; q++) assert.deepEqual(await unitsAt(rebuilt, q, offsets[q]!), recovered[q], `${where}: queue ${q} equals its rebuild`)
  } finally {
    await rebuilt.close()
    await rm(copy, { recursive: true, force: true })
  }
}

test(`crash loop: ${CYCLES} SIGKILL cycles lose no acknowledged message (seed ${SEED})`, { timeout: 60_000 + CYCLES * 10_000 }, async (t) => {
  const { dir, cleanup } = await tempDir('mqts-crash-')
  const rnd = seededRandom(SEED)
  // The checks draw from their own stream, so the kill timings of a seed stay those of earlier runs.
  const pick = seededRandom(SEED ^ 0x5bd1e995)
  const options = { dir, commitLogFileSize: FILE_SIZE, consumeQueueUnitsPerFile: CQ_UNITS_PER_FILE }
  const all: Ack[] = []
  let walked: Walked = { offset: 0, next: new Map() }
  let unitsChecked: number[] = []
  // A rebuild reads the whole log: compare with one in a few seeded cycles, and once at the end.
  const rebuildCycles = new Set(Array.from({ length: REBUILD_CHECKS }, () => Math.floor(pick() * CYCLES)))
  try {
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const where = `cycle ${cycle} seed ${SEED}`
      const flush = cycle % 2 === 0 ? 'sync' : 'async'
      const killAfterMs = 5 + Math.floor(rnd() * 250)
      const { acks } = await runAndKill(dir, flush, cycle, killAfterMs)
      const old = sample(all, OLD_SAMPLE, pick)
      all.push(...acks)
      const rebuildNow = rebuildCycles.has(cycle)
      const store = await MessageStore.open(options)
      let offsets: number[][] | undefined
      const recovered: string[][] = []
      try {
        assert.equal(store.recovery.cleanShutdown, false, 'the kill left the abort marker')
        await checkAcks(store, [...acks, ...old], [...acks.slice(-KEY_SAMPLE), ...sample(old, 10, pick)], where)
        walked = await walkLog(store, walked, where)
        if (rebuildNow) {
          offsets = unitsToCompare(store, unitsChecked, pick, false)
          for (let q = 0; q < QUEUES; q++) recovered.push(await unitsAt(store, q, offsets[q]!))
          unitsChecked = Array.from({ length: QUEUES }, (_, q) => store.maxOffset('crash', q))
        }
      } finally {
        await store.close()
      }
      if (rebuildNow) await compareWithRebuild(dir, options, offsets!, recovered, where)
    }
    // Once at the end: every acknowledgement, the whole log and every unit.
    const where = `after ${CYCLES} cycles, seed ${SEED}`
    const store = await MessageStore.open(options)
    let offsets: number[][]
    const recovered: string[][] = []
    try {
      await checkAcks(store, all, all, where)
      await walkLog(store, { offset: 0, next: new Map() }, where)
      offsets = unitsToCompare(store, [], pick, true)
      for (let q = 0; q < QUEUES; q++) recovered.push(await unitsAt(store, q, offsets[q]!))
    } finally {
      await store.close()
    }
    await compareWithRebuild(dir, options, offsets, recovered, where)
    t.diagnostic(`acknowledged ${all.length} messages over ${CYCLES} cycles, log ${all.at(-1)?.offset ?? 0} bytes`)
    assert.ok(all.length > CYCLES, `acknowledged ${all.length} messages over ${CYCLES} cycles`)
  } finally {
    await cleanup()
  }
})
