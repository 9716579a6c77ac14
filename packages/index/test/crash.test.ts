// Real crash test: a child process indexes a simulated CommitLog and prints the durable
// indexedUpTo after each flush; the parent kills it with SIGKILL at a random moment, reopens the
// index and recovers it, alternating two ways:
// - recover(lastPrinted, clean=false), as after a crash where the CommitLog ends at what was
//   acknowledged: indexedUpTo is exactly that end;
// - recover(far end, clean=true), trusting the page cache: indexedUpTo is at least the last
//   printed value.
// Either way every record below indexedUpTo is found exactly once for each key and none at or
// past it, and the next cycle's child re-dispatches from there. INDEX_CRASH_CYCLES (default 8) sets the
// number of cycles; SEED replays the kill timings.
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { IndexService } from '../src/index.js'
import { CRASH_GEOMETRY, CRASH_RECORD_BYTES, CRASH_RECORD_LIMIT, crashKeys } from './fixtures/crash-records.js'
import { seededRandom } from '@mqts/common'
import { runUntilKilled } from '@mqts/common/testing'
import { tempDir } from './helpers.js'

const CYCLES = Number(process.env.INDEX_CRASH_CYCLES ?? 8)
const SEED = process.env.SEED ? Number(process.env.SEED) : Date.now() % 1_000_000
const WRITER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'crash-writer.js')

/**
 * Runs the writer and kills it `killAfterMs` after it is ready (or, with `afterFirstFlush`, after
 * its first flush); returns the last durable offset printed and whether it finished its records.
 */
async function runAndKill(args: string[], killAfterMs: number, afterFirstFlush: boolean): Promise<{ durable: number | undefined; finished: boolean; stderr: string }> {
  const armOn = afterFirstFlush ? (line: string): boolean => line.startsWith('durable') : undefined
  const { lines, stderr } = await runUntilKilled(WRITER, args, { killAfterMs, armOn, exitOk: true, guardMs: 15_000 })
  let durable: number | undefined
  for (const line of lines) {
    const [word, value] = line.split(' ')
    if (word === 'durable') durable = Number(value)
  }
  return { durable, finished: lines.includes('done'), stderr }
}

function verify(idx: IndexService, cycle: number): void {
  const upTo = idx.indexedUpTo
  const firstAbsent = Math.ceil(upTo / CRASH_RECORD_BYTES)
  for (let i = 0; i < Math.min(CRASH_RECORD_LIMIT, firstAbsent + 200); i++) {
    const at = i * CRASH_RECORD_BYTES
    for (const key of crashKeys(i)) {
      const found = idx.query('Crash', key, { maxNum: 64 }).filter((o) => o === at).length
      assert.equal(found, at < upTo ? 1 : 0, `cycle ${cycle} (seed ${SEED}): record ${i} key ${key}, indexedUpTo ${upTo}`)
    }
  }
}

test(`kill -9 at random moments, recover, every durable key found exactly once (seed ${SEED})`, { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await tempDir('mqts-index-crash-')
  const random = seededRandom(SEED)
  let upTo = 0
  try {
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      // Even cycles may die before their first flush; odd ones always make progress.
      const run = await runAndKill([dir, String(upTo), 'clean', String(SEED + cycle)], 5 + Math.floor(random() * 120), cycle % 2 === 1)
      assert.equal(run.stderr, '', `writer failed in cycle ${cycle}`)
      const printed = run.durable ?? upTo
      const idx = await IndexService.open({ dir, ...CRASH_GEOMETRY })
      try {
        if (cycle % 2 === 0) {
          idx.recover(printed, false)
          assert.equal(idx.indexedUpTo, printed, `cycle ${cycle}: recover(printed, false)`)
        } else {
          idx.recover(CRASH_RECORD_LIMIT * CRASH_RECORD_BYTES, true)
          assert.ok(idx.indexedUpTo >= printed, `cycle ${cycle}: ${idx.indexedUpTo} >= ${printed}`)
        }
        verify(idx, cycle)
        upTo = idx.indexedUpTo
      } finally {
        await idx.close()
      }
      if (run.finished) break
    }
    assert.ok(upTo > 0, 'the writer indexed something')
  } finally {
    await cleanup()
  }
})
