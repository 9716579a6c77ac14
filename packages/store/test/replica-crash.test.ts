// Replica kill loop: a child process appends a master's CommitLog to a replica (appendReplicated in
// chunks of seeded sizes, printing the committed end after each) and is killed with SIGKILL at a
// seeded moment. Reopened, the replica's log must be a prefix of the master's, byte for byte,
// ending at a record boundary at or past every acknowledged end; its ConsumeQueues must be the
// master's units below its end, its messages readable as the master's; the next child resumes
// from its end. Cycles alternate flush 'sync' and 'async'. REPLICA_CRASH_CYCLES (default 6) sets
// the number of cycles; SEED replays the kill timings and chunk sizes. At the end its ConsumeQueues
// must equal a rebuild from its CommitLog alone.
import assert from 'node:assert/strict'
import { cp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { countFromEnv, seededRandom, seedFromEnv } from '@mqts/common'
import { runUntilKilled } from '@mqts/common/testing'
import { MessageStore } from '../src/index.js'
import { queueUnits, tempDir } from './helpers.js'
import { REPLICA_INDEX, assertSameAnswers, queuesOf } from './replica-helpers.js'

const CYCLES = countFromEnv('REPLICA_CRASH_CYCLES', 6)
const SEED = seedFromEnv()
const WRITER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'replica-writer.js')
const FILE_SIZE = 64 * 1024

/** Runs the child until the kill; returns the highest end it acknowledged and whether it finished. */
async function runAndKill(dir: string, flush: string, masterLog: string, seed: number, killAfterMs: number): Promise<{ acked: number; done: boolean }> {
  const { lines } = await runUntilKilled(WRITER, [dir, flush, String(FILE_SIZE), masterLog, String(seed)], { killAfterMs, killOn: (line) => line === 'done' })
  let acked = 0
  for (const line of lines) if (line.startsWith('ack ')) acked = Math.max(acked, Number(line.slice(4)))
  return { acked, done: lines.includes('done') }
}

/** The CommitLog files of `dir`, concatenated. */
async function logFiles(dir: string): Promise<Buffer> {
  const names = (await readdir(path.join(dir, 'commitlog'))).filter((n) => /^\d{20}$/.test(n)).sort()
  return Buffer.concat(await Promise.all(names.map((n) => readFile(path.join(dir, 'commitlog', n)))))
}

test(`replica kill loop: ${CYCLES} SIGKILL cycles keep a prefix of the master at a record boundary (seed ${SEED})`, { timeout: 60_000 + CYCLES * 15_000 }, async (t) => {
  const m = await tempDir('mqts-rmaster-')
  const r = await tempDir('mqts-rcrash-')
  const rnd = seededRandom(SEED)
  const masterOptions = { dir: m.dir, commitLogFileSize: FILE_SIZE, ...REPLICA_INDEX }
  const replicaOptions = { dir: r.dir, commitLogFileSize: FILE_SIZE, role: 'replica' as const, ...REPLICA_INDEX }
  const master = await MessageStore.open(masterOptions)
  try {
    // The master: several topics and queues, keys and tags, over many files.
    const boundaries = new Set<number>([0])
    const keys: Array<[string, string]> = []
    for (let i = 0; i < 3000; i++) {
      const topic = i % 3 === 0 ? 'audit' : 'orders'
      const res = await master.put({ topic, queueId: i % 4, body: Buffer.alloc(100 + Math.floor(rnd() * 1200), i % 251), tags: `T${i % 3}`, keys: [`k${i}`, `g${i % 7}`] })
      // Every record's start and end (a file's end, after its BLANK, is the next record's start).
      boundaries.add(res.physicalOffset)
      boundaries.add(res.physicalOffset + res.size)
      if (i % 50 === 0) keys.push([topic, `k${i}`])
    }
    for (let g = 0; g < 7; g++) keys.push(['orders', `g${g}`], ['audit', `g${g}`])
    await master.flush()
    const end = master.commitLogMaxOffset
    const bytes = (await logFiles(m.dir)).subarray(0, end)
    const masterLog = path.join(m.dir, 'master-log.bin')
    await writeFile(masterLog, bytes)
    // The master's units, for the comparison with what each reopened replica holds.
    const masterUnits = new Map<string, string[]>()
    for (const q of queuesOf(master)) {
      const at = q.lastIndexOf('@')
      masterUnits.set(q, await queueUnits(master, q.slice(0, at), Number(q.slice(at + 1))))
    }

    let acked = 0
    let previous = 0
    let completed = false
    for (let cycle = 0; cycle < CYCLES && !completed; cycle++) {
      const where = `cycle ${cycle} seed ${SEED}`
      const flush = cycle % 2 === 0 ? 'sync' : 'async'
      const run = await runAndKill(r.dir, flush, masterLog, SEED + cycle, 5 + Math.floor(rnd() * 150))
      acked = Math.max(acked, run.acked)
      const replica = await MessageStore.open({ ...replicaOptions, flush })
      try {
        const got = replica.commitLogMaxOffset
        assert.equal(replica.replicaEndOffset, got, `${where}: nothing held after a reopen`)
        assert.ok(got >= acked, `${where}: the log ends at ${got}, below the acknowledged ${acked}`)
        assert.ok(got >= previous, `${where}: the log went back from ${previous} to ${got}`)
        assert.ok(boundaries.has(got), `${where}: the log ends at ${got}, not a record boundary of the master`)
        const mine = await logFiles(r.dir)
        assert.ok(mine.subarray(0, got).equals(bytes.subarray(0, got)), `${where}: the replica's log is the master's prefix`)
        // The rest of the replica's files reads zeros (a torn tail was cut, nothing stale remains).
        assert.ok(mine.subarray(got).every((b) => b === 0), `${where}: zeros after the end`)
        // ConsumeQueues: the master's units below the replica's end.
        for (const [q, units] of masterUnits) {
          const at = q.lastIndexOf('@')
          const own = await queueUnits(replica, q.slice(0, at), Number(q.slice(at + 1)))
          const below = units.slice(1).filter((u) => Number(u.split('/')[0]) < got)
          const expected = below.length === 0 && own.length === 0 ? [] : [`min 0 max ${below.length}`, ...below]
          assert.deepEqual(own, expected, `${where}: ConsumeQueue ${q}`)
        }
        if (cycle % 3 === 2) await assertSameAnswers(master, replica, keys, where)
        t.diagnostic(`${where}: ${flush}, acknowledged ${acked}, reopened at ${got} of ${end}`)
        previous = got
        completed = run.done && got === end
      } finally {
        await replica.close()
      }
    }
    // Whatever is left, then everything compared once.
    const replica = await MessageStore.open(replicaOptions)
    try {
      for (let at = replica.replicaEndOffset; at < end; at = replica.replicaEndOffset) await replica.appendReplicated(at, bytes.subarray(at, Math.min(end, at + 5000)))
      await assertSameAnswers(master, replica, keys, `after ${CYCLES} cycles, seed ${SEED}`)
      await replica.flush()
      assert.ok((await logFiles(r.dir)).subarray(0, end).equals(bytes), 'the whole log byte for byte')
    } finally {
      await replica.close()
    }
    // Its ConsumeQueues, built chunk by chunk across the kills, equal a rebuild from its CommitLog alone.
    const copy = `${r.dir}-rebuild`
    const skip = new Set([path.join(r.dir, 'consumequeue'), path.join(r.dir, 'index')])
    await cp(r.dir, copy, { recursive: true, filter: (from) => !skip.has(from) })
    const rebuilt = await MessageStore.open({ ...replicaOptions, dir: copy, messageIndexEnable: false })
    const again = await MessageStore.open(replicaOptions)
    try {
      for (const q of queuesOf(master)) {
        const at = q.lastIndexOf('@')
        const [topic, queueId] = [q.slice(0, at), Number(q.slice(at + 1))]
        assert.deepEqual(await queueUnits(again, topic, queueId), await queueUnits(rebuilt, topic, queueId), `ConsumeQueue ${q} equals its rebuild`)
      }
    } finally {
      await rebuilt.close()
      await again.close()
      await rm(copy, { recursive: true, force: true })
    }
    t.diagnostic(`replica reached ${previous} of ${end} bytes through the kills (acknowledged ${acked})`)
  } finally {
    await master.close()
    await m.cleanup()
    await r.cleanup()
  }
})
