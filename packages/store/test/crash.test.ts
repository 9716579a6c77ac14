// Real crash test: a child process appends (8 producers, single puts and batches) and prints each
// acknowledged message; the parent kills it with SIGKILL at a random moment, reopens the store and
// checks that every acknowledged message is present and intact at its offsets, queue offsets are
// dense, and nothing follows the tail. Cycles alternate flush 'sync' and 'async' (an async ack is
// in the page cache, which a process kill does not lose). CRASH_CYCLES (default 30) sets the
// number of cycles; SEED replays the kill timings. After each reopen every acknowledged message is
// also read back through the ConsumeQueue (`get` at the queue offset its put returned), and the
// recovered ConsumeQueues must equal a fresh rebuild from the CommitLog alone.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { cp, rm } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { MessageStore } from '../src/index.js'
import { mulberry32 } from '../src/sim-file-io.js'
import { CQ_UNITS_PER_FILE, expectedBody } from './fixtures/crash-body.js'
import { queueUnits, tempDir } from './helpers.js'

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

function runAndKill(dir: string, flush: string, cycle: number, killAfterMs: number): Promise<{ acks: Ack[]; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, dir, flush, String(FILE_SIZE), String(cycle)], { stdio: ['ignore', 'pipe', 'pipe'] })
    const acks: Ack[] = []
    let buffered = ''
    let stderr = ''
    let timer: NodeJS.Timeout | undefined
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000)
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk
      let nl: number
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        if (line.startsWith('ready')) timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
        else if (line.startsWith('ack ')) {
          const [, offset, queueId, queueOffset, id, bytes, status] = line.split(' ')
          if (status === 'PUT_OK') acks.push({ offset: Number(offset), queueId: Number(queueId), queueOffset: Number(queueOffset), id: id!, bytes: Number(bytes) })
        }
      }
    })
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(guard)
      if (timer) clearTimeout(timer)
      if (signal !== 'SIGKILL') reject(new Error(`writer exited with ${code}: ${stderr}`))
      else resolve({ acks, stderr })
    })
  })
}

test(`crash loop: ${CYCLES} SIGKILL cycles lose no acknowledged message (seed ${SEED})`, { timeout: 60_000 + CYCLES * 10_000 }, async (t) => {
  const { dir, cleanup } = await tempDir('mqts-crash-')
  const rnd = mulberry32(SEED)
  const all: Ack[] = []
  try {
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const flush = cycle % 2 === 0 ? 'sync' : 'async'
      const killAfterMs = 5 + Math.floor(rnd() * 250)
      const { acks } = await runAndKill(dir, flush, cycle, killAfterMs)
      all.push(...acks)
      const options = { dir, commitLogFileSize: FILE_SIZE, consumeQueueUnitsPerFile: CQ_UNITS_PER_FILE }
      const store = await MessageStore.open(options)
      let recovered: string[][]
      try {
        assert.equal(store.recovery.cleanShutdown, false, 'the kill left the abort marker')
        for (const a of all) {
          const m = await store.lookup(a.offset)
          assert.equal(m.queueId, a.queueId, `cycle ${cycle} seed ${SEED}: ${a.id}`)
          assert.equal(m.queueOffset, a.queueOffset, `cycle ${cycle} seed ${SEED}: ${a.id}`)
          assert.ok(m.body.equals(expectedBody(a.id, a.bytes)), `cycle ${cycle} seed ${SEED}: body of ${a.id}`)
          assert.deepEqual(m.keys, [a.id])
        }
        // Dense offsets and nothing after the tail.
        const next = new Map<number, number>()
        let offset = store.minPhysicalOffset
        while (offset < store.maxPhysicalOffset) {
          let m
          try {
            m = await store.lookup(offset)
          } catch {
            offset = (Math.floor(offset / FILE_SIZE) + 1) * FILE_SIZE
            continue
          }
          assert.equal(m.queueOffset, next.get(m.queueId) ?? 0, `cycle ${cycle} seed ${SEED}: dense offsets in queue ${m.queueId}`)
          next.set(m.queueId, m.queueOffset + 1)
          offset += m.storeSize
        }
        assert.equal(offset, store.maxPhysicalOffset)
        for (const [q, n] of next) {
          assert.equal(store.maxQueueOffset('crash', q), n)
          assert.equal(store.maxOffset('crash', q), n, `cycle ${cycle} seed ${SEED}: ConsumeQueue ${q} ends where the CommitLog says`)
        }
        // Every acknowledged message through the read path, at the queue offset its put returned.
        for (const a of all) {
          const r = await store.get({ topic: 'crash', queueId: a.queueId, offset: a.queueOffset, maxMessages: 1 })
          assert.equal(r.status, 'FOUND', `cycle ${cycle} seed ${SEED}: get ${a.id}`)
          assert.equal(r.messages[0]!.physicalOffset, a.offset, `cycle ${cycle} seed ${SEED}: get ${a.id}`)
        }
        // And by key, through the index (a sample: every acknowledged message of this cycle's last 50).
        for (const a of all.slice(-50)) {
          const byKey = await store.queryByKey('crash', a.id)
          assert.deepEqual(byKey.map((m) => m.physicalOffset), [a.offset], `cycle ${cycle} seed ${SEED}: queryByKey ${a.id}`)
        }
        recovered = []
        for (let q = 0; q < 4; q++) recovered.push(await queueUnits(store, 'crash', q))
      } finally {
        await store.close()
      }
      // The recovered ConsumeQueues equal a rebuild from the CommitLog alone.
      const copy = `${dir}-rebuild`
      await rm(copy, { recursive: true, force: true })
      await cp(dir, copy, { recursive: true })
      await rm(path.join(copy, 'consumequeue'), { recursive: true, force: true })
      const rebuilt = await MessageStore.open({ ...options, dir: copy })
      try {
        for (let q = 0; q < 4; q++) assert.deepEqual(await queueUnits(rebuilt, 'crash', q), recovered[q], `cycle ${cycle} seed ${SEED}: queue ${q} equals its rebuild`)
      } finally {
        await rebuilt.close()
        await rm(copy, { recursive: true, force: true })
      }
    }
    t.diagnostic(`acknowledged ${all.length} messages over ${CYCLES} cycles, log ${all.at(-1)?.offset ?? 0} bytes`)
    assert.ok(all.length > CYCLES, `acknowledged ${all.length} messages over ${CYCLES} cycles`)
  } finally {
    await cleanup()
  }
})
