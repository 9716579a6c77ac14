// truncate(offset) is crash-safe: a power loss or a kill at any point leaves, after the next open's
// recovery, the log as it was or the log cut, never a mix, with the ConsumeQueues and the key index
// agreeing and appends continuing densely.
// - On the simulated disk, before every step of the truncate that changes the disk (a write, a
//   sync, a removal, ...), the disk is taken as a power loss and as a kill would leave it, and each
//   is opened and checked: TRUNCATE_POWER_LOSS_SEEDS (default 2) rounds per flush mode, each with
//   its own seeded cut; SEED=<n> replays.
// - A real child process (fixtures/truncate-writer.ts) appends and truncates, and SIGKILLs itself
//   at a seeded step of a seeded truncate (or after it): TRUNCATE_CRASH_CYCLES (default 6) cycles
//   on one store, alternating flush modes; SEED=<n> replays.
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { seededRandom } from '@mqts/common'
import { runUntilKilled } from '@mqts/common/testing'
import { MessageStore, type MessageStoreOptions } from '../src/index.js'
import { SimFileIO } from '../src/sim-file-io.js'
import { steppingIO } from './fixtures/stepping-io.js'
import { SIM_INDEX, forEachRecord, tempDir } from './helpers.js'
import { appendedAfter, assertMatches, bodyOf, putSome, type Sent } from './fixtures/truncate-model.js'

const BASE_SEED = process.env.SEED ? Number(process.env.SEED) : Date.now() % 1_000_000
const SEEDS = Number(process.env.TRUNCATE_POWER_LOSS_SEEDS ?? 2)
const CYCLES = Number(process.env.TRUNCATE_CRASH_CYCLES ?? 6)
const FILE_SIZE = 16 * 1024
const SIM_DIR = '/sim/truncate-crash'
const WRITER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'truncate-writer.js')

/** Physical offsets of every message of the log, in order (a blank moves to the next file). */
async function logOffsets(store: MessageStore): Promise<number[]> {
  const out: number[] = []
  await forEachRecord(store, store.minPhysicalOffset, (offset) => out.push(offset))
  return out
}

const same = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i])

/** A seeded cut: a message's offset, a file's start or the end of the log. */
function pickCut(rnd: () => number, sent: Sent[], store: MessageStore): number {
  const roll = rnd()
  const files = store.commitLog.queue.files
  if (roll < 0.15) return files[Math.floor(rnd() * files.length)]!.fileFromOffset
  if (roll < 0.2) return store.maxPhysicalOffset
  return sent[Math.floor(rnd() * sent.length)]!.physicalOffset
}

for (const flush of ['sync', 'async'] as const) {
  test(`truncate on the simulated disk (${flush} flush, ${SEEDS} seeds from ${BASE_SEED}): a power loss or a kill before any of its steps leaves the old log or the cut one`, { timeout: 300_000 }, async () => {
    for (let round = 0; round < SEEDS; round++) {
      const seed = BASE_SEED + round
      const rnd = seededRandom(seed)
      const io = new SimFileIO()
      const disks: Array<{ what: string; power: SimFileIO; kill: SimFileIO }> = []
      let armed = false
      const stepIO = steppingIO(io, (what) => {
        if (armed) disks.push({ what, power: io.crash(seed * 1000 + disks.length), kill: io.processCrash() })
      })
      // Long flush intervals: only the truncate's own syncs (and the test's flush) make data durable.
      const options: MessageStoreOptions = { dir: SIM_DIR, flush, commitLogFileSize: FILE_SIZE, consumeQueueUnitsPerFile: 16, ...SIM_INDEX, flushIntervalMs: 60_000, flushThoroughIntervalMs: 60_000 }
      const store = await MessageStore.open({ ...options, fileIO: stepIO })
      const sent = await putSome(store, 30 + Math.floor(rnd() * 70), `s${seed}-`)
      await store.flush()
      await store.whenDispatched()
      const cut = pickCut(rnd, sent, store)
      armed = true
      await store.truncate(cut)
      armed = false
      disks.push({ what: 'after the truncate', power: io.crash(seed * 1000 + disks.length), kill: io.processCrash() })
      await store.close()

      const old = sent.map((s) => s.physicalOffset)
      const kept = sent.filter((s) => s.physicalOffset < cut)
      const cutLog = kept.map((s) => s.physicalOffset)
      for (const kind of ['kill', 'power'] as const) {
        let wasCut = false
        for (let step = 0; step < disks.length; step++) {
          const d = disks[step]!
          const where = `seed ${seed}, cut at ${cut}, ${kind === 'kill' ? 'kill' : 'power loss'} before step ${step} (${d.what})`
          const s = await MessageStore.open({ ...options, fileIO: d[kind] })
          try {
            const found = await logOffsets(s)
            const isCut = same(found, cutLog)
            if (!isCut && !same(found, old)) assert.fail(`${where}: neither the old log (${old.length} messages) nor the cut one (${cutLog.length}): ${found.length} messages, ending at ${s.maxPhysicalOffset}`)
            if (wasCut && !isCut && cut !== s.maxPhysicalOffset) assert.fail(`${where}: the old log came back after an earlier step left the cut one`)
            if (d.what === 'after the truncate') assert.ok(isCut, `${where}: a truncate that returned is durable`)
            wasCut ||= isCut
            const model = isCut ? kept : sent
            await assertMatches(s, model, where)
            const more = await putSome(s, 8, `m${step}-`)
            await assertMatches(s, appendedAfter(model, more), `${where}, then appends`)
          } finally {
            await s.close()
          }
        }
      }
    }
  })
}

/** Runs the writer until it kills itself; returns what it printed. */
async function runWriter(dir: string, flush: string, cycle: number, seed: number): Promise<string[]> {
  const { lines } = await runUntilKilled(WRITER, [dir, flush, String(FILE_SIZE), String(cycle), String(seed)], { guardMs: 60_000 })
  return lines.filter((l) => l.length > 0)
}

test(`truncate in a real process killed at seeded steps (${CYCLES} cycles from seed ${BASE_SEED}): after each reopen the log is the old one or the cut one, queues and keys agree`, { timeout: 300_000 }, async (t) => {
  const { dir, cleanup } = await tempDir()
  let model: Sent[] = []
  let killedInside = 0
  try {
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const flush = cycle % 2 === 0 ? 'sync' : 'async'
      const seed = BASE_SEED + cycle
      const lines = await runWriter(dir, flush, cycle, seed)
      let pending: number | undefined
      for (const line of lines) {
        const [kind, ...f] = line.split(' ')
        if (kind === 'ack') {
          const [offset, topic, queueId, queueOffset, key] = f as [string, string, string, string, string]
          model.push({ topic, queueId: Number(queueId), key, body: bodyOf(key), physicalOffset: Number(offset), queueOffset: Number(queueOffset) })
        } else if (kind === 'cut') pending = Number(f[0])
        else if (kind === 'cutdone') {
          model = model.filter((s) => s.physicalOffset < Number(f[0]))
          pending = undefined
        }
      }
      const store = await MessageStore.open({ dir, flush, commitLogFileSize: FILE_SIZE, consumeQueueUnitsPerFile: 16, ...SIM_INDEX })
      try {
        const where = `cycle ${cycle} (${flush} flush, seed ${seed})${pending === undefined ? '' : `, killed while truncating at ${pending}`}`
        const found = await logOffsets(store)
        if (pending !== undefined) killedInside++
        const cutModel = pending === undefined ? model : model.filter((s) => s.physicalOffset < pending!)
        if (same(found, cutModel.map((s) => s.physicalOffset))) model = cutModel
        else if (!same(found, model.map((s) => s.physicalOffset))) assert.fail(`${where}: neither the old log (${model.length} messages) nor the cut one (${cutModel.length}): ${found.length} messages`)
        await assertMatches(store, model, where)
      } finally {
        await store.close()
      }
    }
    t.diagnostic(`${killedInside} of ${CYCLES} kills inside a truncate`)
  } finally {
    await cleanup()
  }
})
