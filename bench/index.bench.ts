/**
 * The message-key index on its own (default file geometry: 5,000,000 slots, 20,000,000 entries):
 * - build: puts of one key per message (`order-<n>` in one topic), keys/s, timed without making
 *   the key strings; the first put's file creation (sparse file, slot table reserved) separately;
 * - query: latency of single queries for random present and absent keys (process.hrtime.bigint
 *   around each call), p50 / p99 / max; target: present-key p99 under 100 µs;
 * - memory: RSS, and the index files' apparent and allocated bytes.
 * 10,000,000 keys; BENCH_QUICK=1 uses 1,000,000.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { performance } from 'node:perf_hooks'
import { IndexService, INDEX_DEFAULTS, indexFileSize } from '@mqts/index'
import { MessageStore } from '@mqts/store'
import { seededRandom } from '@mqts/common'
import { forceGc } from '@mqts/index/internal'
import { TempDirs, formatBytes, formatNumber, isMain, isQuick, printEnvironment, printResults, type BenchResult, type RunOptions } from './lib/report.js'

const TOPIC = 'BenchTopic'
/** A plausible CommitLog record size: offsets advance by this much per message. */
const RECORD_BYTES = 320
const CHUNK = 1_000_000
const QUERIES = 200_000
const TARGET_P99_US = 100
/** Appends with the index on at no less than this share of the same appends with it off. */
const TARGET_APPEND_RATIO = 0.8
const log = (line: string): void => console.log(`  .. ${line}`)

function percentile(sorted: BigInt64Array | Float64Array, p: number): number {
  return Number(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!)
}

/** Times `n` single queries for keys from `keyOf`; returns p50/p99/max in µs and hits. */
function timeQueries(idx: IndexService, n: number, keyOf: (i: number) => string): { p50: number; p99: number; max: number; mean: number; found: number } {
  const keys = Array.from({ length: n }, (_, i) => keyOf(i))
  const ns = new BigInt64Array(n)
  let found = 0
  for (let i = 0; i < Math.min(n, 10_000); i++) idx.query(TOPIC, keys[i]!) // warm the JIT
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint()
    const r = idx.query(TOPIC, keys[i]!)
    ns[i] = process.hrtime.bigint() - t0
    found += r.length
  }
  ns.sort()
  let sum = 0n
  for (const v of ns) sum += v
  return { p50: percentile(ns, 0.5) / 1000, p99: percentile(ns, 0.99) / 1000, max: Number(ns[n - 1]) / 1000, mean: Number(sum / BigInt(n)) / 1000, found }
}

function filesBytes(dir: string): { apparent: number; allocated: number } {
  let apparent = 0
  let allocated = 0
  for (const name of fs.readdirSync(dir)) {
    const st = fs.statSync(path.join(dir, name))
    apparent += st.size
    allocated += st.blocks * 512
  }
  return { apparent, allocated }
}

/** A deterministic sequence of uint32s (mulberry32, seeded). */
function randomInts(seed: number): () => number {
  const next = seededRandom(seed)
  return () => next() * 4294967296
}

/**
 * Puts `total` keys into files of `maxIndexNum` entries, yielding to the event loop every 10,000
 * puts as a dispatcher does, and times the puts that roll over to the next file (every
 * maxIndexNum - 1 keys) against the slowest of all the others.
 */
async function rollOver(dir: string, total: number, maxIndexNum: number): Promise<{ rollUs: number[]; otherWorstUs: number; files: number }> {
  const idx = await IndexService.open({ dir, maxIndexNum })
  const oneKey = ['']
  const record = { topic: TOPIC, keys: oneKey, phyOffset: 0, size: RECORD_BYTES, storeTimestamp: Date.UTC(2026, 0, 1) }
  const rollUs: number[] = []
  let other = 0n
  try {
    for (let m = 0; m < total; m++) {
      oneKey[0] = `order-${m}`
      record.phyOffset = m * RECORD_BYTES
      const t0 = process.hrtime.bigint()
      idx.put(record)
      const dt = process.hrtime.bigint() - t0
      if (m > 0 && m % (maxIndexNum - 1) === 0) rollUs.push(Number(dt) / 1000)
      else if (m > 0 && dt > other) other = dt
      if (m % 10_000 === 0) await new Promise((r) => setImmediate(r))
    }
    return { rollUs, otherWorstUs: Number(other) / 1000, files: idx.files.length }
  } finally {
    await idx.close()
  }
}

/**
 * `await store.put()` of 1 KiB messages with one key each into a fresh async store, index on or
 * off; msgs/s over the timed part (after the store's file is allocated and warmed).
 */
async function appendRun(dirs: TempDirs, indexOn: boolean, count: number, keys: string[]): Promise<number> {
  const dir = await dirs.make(`append-${indexOn ? 'on' : 'off'}`)
  const store = await MessageStore.open({ dir, commitLogFileSize: 1024 * 1024 * 1024, messageIndexEnable: indexOn })
  try {
    await store.commitLog.queue.whenIdle()
    const body = Buffer.alloc(1024, 7)
    const m = { topic: TOPIC, queueId: 0, body, keys: '' }
    // Untimed warm-up: JIT, and the first touch of the files' pages (the index's slot table).
    const warm = Math.floor(count / 4)
    for (let i = 0; i < warm; i++) {
      m.keys = keys[i]!
      await store.put(m)
    }
    const start = performance.now()
    for (let i = warm; i < count + warm; i++) {
      m.keys = keys[i]!
      await store.put(m)
    }
    return (count * 1000) / (performance.now() - start)
  } finally {
    await store.close()
    await fs.promises.rm(dir, { recursive: true, force: true })
  }
}

export async function run(opts: RunOptions): Promise<BenchResult[]> {
  const total = opts.quick ? 1_000_000 : 10_000_000
  const dirs = new TempDirs()
  const rows: BenchResult[] = []
  try {
    const dir = await dirs.make('index')
    forceGc()
    const rssBefore = process.memoryUsage().rss
    const idx = await IndexService.open({ dir })
    const t0 = Date.UTC(2026, 0, 1)
    const keys: string[] = new Array<string>(CHUNK)
    const record = { topic: TOPIC, keys: [''], phyOffset: 0, size: RECORD_BYTES, storeTimestamp: t0 }
    const oneKey: string[] = ['']
    record.keys = oneKey

    // The first put creates the file: sparse, header and slot table reserved.
    oneKey[0] = 'order-0'
    let start = performance.now()
    idx.put(record)
    const createMs = performance.now() - start
    let putMs = 0
    let putCpuUs = 0
    for (let base = 1; base < total; base += CHUNK) {
      const n = Math.min(CHUNK, total - base)
      // The dispatcher's keys are decoded from the record, so they are flat strings; a template
      // literal makes a cons string that the first charCodeAt would flatten inside the timing.
      for (let i = 0; i < n; i++) {
        const key = `order-${base + i}`
        key.charCodeAt(0)
        keys[i] = key
      }
      start = performance.now()
      const cpu0 = process.cpuUsage()
      for (let i = 0; i < n; i++) {
        const m = base + i
        oneKey[0] = keys[i]!
        record.phyOffset = m * RECORD_BYTES
        record.storeTimestamp = t0 + Math.floor(m / 1000) // 1000 messages per ms
        idx.put(record)
      }
      putMs += performance.now() - start
      const cpu = process.cpuUsage(cpu0)
      putCpuUs += cpu.user + cpu.system
      log(`${formatNumber(base + n)} keys indexed, ${formatNumber(((base + n - 1) / putMs) * 1000)} keys/s so far`)
    }
    const rate = ((total - 1) / putMs) * 1000
    start = performance.now()
    await idx.flush()
    const flushMs = performance.now() - start
    const rss = process.memoryUsage().rss
    const bytes = filesBytes(dir)

    rows.push({
      name: 'build: put, 1 key per message',
      value: rate,
      unit: 'keys/s',
      note: `${formatNumber(total)} keys, ${formatNumber((putMs * 1e6) / (total - 1), 0)} ns per put (${formatNumber((putCpuUs * 1e3) / (total - 1), 0)} ns of CPU)`,
    })
    rows.push({ name: 'build: first put (creates the file)', value: createMs, unit: 'ms', note: `${formatBytes(indexFileSize(INDEX_DEFAULTS.maxHashSlotNum, INDEX_DEFAULTS.maxIndexNum))} sparse, slot table reserved` })
    rows.push({ name: 'build: flush after the build', value: flushMs, unit: 'ms', note: 'fdatasync of the file + checkpoint' })

    const random = randomInts(42)
    const present = timeQueries(idx, QUERIES, () => `order-${random() % total}`)
    if (present.found < QUERIES) throw new Error(`only ${present.found} of ${QUERIES} present keys found`)
    const absent = timeQueries(idx, QUERIES, () => `absent-${random()}`)
    for (const [label, q] of [['present key', present], ['absent key', absent]] as const) {
      rows.push({ name: `query ${label}: p50`, value: q.p50, unit: 'µs' })
      const p99: BenchResult = { name: `query ${label}: p99`, value: q.p99, unit: 'µs', note: `mean ${formatNumber(q.mean)} µs, max ${formatNumber(q.max)} µs, ${formatNumber(QUERIES)} queries` }
      if (label === 'present key') {
        p99.pass = q.p99 < TARGET_P99_US
        p99.note = `target < ${TARGET_P99_US} µs; ${p99.note}`
      }
      rows.push(p99)
    }
    rows.push({ name: 'absent keys: offsets returned (hash collisions)', value: absent.found, unit: 'offsets', note: `of ${formatNumber(QUERIES)} queries; the caller filters by the real key` })

    rows.push({ name: 'memory: RSS growth', value: (rss - rssBefore) / 2 ** 20, unit: 'MiB', note: `RSS ${formatBytes(rss)} after the build (mapped index pages count)` })
    rows.push({ name: 'memory: index files, allocated', value: bytes.allocated / 2 ** 20, unit: 'MiB', note: `apparent ${formatBytes(bytes.apparent)}: ${idx.files.length} file(s) in use and the next one made ahead` })
    await idx.close()

    // Effect on appends: the same puts into a store with the index off and on, alternated.
    const appends = opts.quick ? 200_000 : 500_000
    const appendKeys = Array.from({ length: appends + appends / 4 }, (_, i) => `order-${i}`)
    const off: number[] = []
    const on: number[] = []
    for (let round = 0; round < 3; round++) {
      off.push(await appendRun(dirs, false, appends, appendKeys))
      on.push(await appendRun(dirs, true, appends, appendKeys))
      log(`append round ${round}: index off ${formatNumber(off.at(-1)!)} msgs/s, on ${formatNumber(on.at(-1)!)} msgs/s`)
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
    const offRate = median(off)
    const onRate = median(on)
    rows.push({ name: 'store put x1, index off', value: offRate, unit: 'msgs/s', note: `1 KiB body, one key, async flush; median of 3 runs of ${formatNumber(appends)} after ${formatNumber(appends / 4)} untimed` })
    rows.push({
      name: 'store put x1, index on',
      value: onRate,
      unit: 'msgs/s',
      baseline: 'store put x1, index off',
      ratio: onRate / offRate,
      target: TARGET_APPEND_RATIO,
      pass: onRate / offRate >= TARGET_APPEND_RATIO,
      note: `median of 3 runs; each run ${on.map((x) => formatNumber(x)).join(' / ')} vs ${off.map((x) => formatNumber(x)).join(' / ')}`,
    })

    const small = opts.quick ? 250_000 : 1_000_000
    const roll = await rollOver(await dirs.make('index-roll'), small * 3 - 10, small)
    rows.push({
      name: 'roll over: the put that switches files',
      value: Math.max(...roll.rollUs),
      unit: 'µs',
      note: `worst of ${roll.rollUs.map((u) => formatNumber(u)).join(', ')} µs (${formatNumber(small)}-entry files, next file made in the background); slowest other put ${formatNumber(roll.otherWorstUs)} µs`,
    })
  } finally {
    await dirs.cleanup()
  }
  return rows
}

if (isMain(import.meta.url)) {
  const quick = isQuick()
  printEnvironment('Index benchmark', { mode: quick ? 'quick (1,000,000 keys)' : 'full (10,000,000 keys)', geometry: `${INDEX_DEFAULTS.maxHashSlotNum} slots, ${INDEX_DEFAULTS.maxIndexNum} entries per file` })
  const rows = await run({ quick })
  printResults('Index', rows)
}
