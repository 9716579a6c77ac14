/**
 * Embedded store throughput with 1 KiB bodies, each figure next to the raw limit of the
 * mechanism underneath it, measured in the same run:
 * - flush 'async' appends go into a shared map: compared with Buffer.copy of the same record
 *   bytes into a pre-faulted shared map of a file of the same size.
 * - flush 'sync' puts wait for group commit (pwrite + fdatasync): compared with a loop of pwrite
 *   of 64 KiB / 256 KiB / 1 MiB + fdatasync into a preallocated file.
 */
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as fsp from 'node:fs/promises'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import * as path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { MessageStore, type PutMessage } from '@mqts/store'
import { MESSAGE_MAGIC_CODE_V1, NodeFileIO, forceGc, recordSize } from '@mqts/store/internal'
import { TempDirs, compare, formatBytes, formatNumber, isMain, isQuick, printEnvironment, printResults, sleep, type BenchResult, type RunOptions } from './lib/report.js'

const BODY_BYTES = 1024
const TOPIC = 'BenchTopic'
const RECORD_BYTES = recordSize(BODY_BYTES, Buffer.byteLength(TOPIC, 'latin1'), 0, MESSAGE_MAGIC_CODE_V1)
const BATCH = 32
const PRODUCERS = [64, 256, 1024] as const
const FLUSH_BYTES: Record<(typeof PRODUCERS)[number], number> = { 64: 64 * 1024, 256: 256 * 1024, 1024: 1024 * 1024 }
const MiB = 1024 * 1024

const TARGET_ASYNC_SINGLE = 0.1
const TARGET_ASYNC_BATCH = 0.2
const TARGET_SYNC_64 = 0.5
/** Sequential consume (get, batches of 32) at no less than the async single-put rate. */
const TARGET_CONSUME = 1.0

interface Budget {
  fileSize: number
  /** Measurement window per row, ms. */
  measureMs: number
  /** Async rows: short enough to stay within the pages the store warmed ahead (see settle). */
  asyncMeasureMs: number
  warmupMs: number
  baselineMs: number
  /** Size of the preallocated file the pwrite + fdatasync baseline cycles through. */
  baselineFileSize: number
  /**
   * Sync rows: the baseline and the store take turns this many times (each window split as
   * many ways), so a disk that drifts over seconds weighs on both sides of the ratio alike.
   */
  syncRounds: number
}

function budget(quick: boolean): Budget {
  return quick
    ? { fileSize: 64 * MiB, measureMs: 350, asyncMeasureMs: 200, warmupMs: 80, baselineMs: 300, baselineFileSize: 16 * MiB, syncRounds: 1 }
    : { fileSize: 1024 * MiB, measureMs: 2500, asyncMeasureMs: 700, warmupMs: 300, baselineMs: 2000, baselineFileSize: 256 * MiB, syncRounds: 5 }
}

const log = (line: string): void => console.log(`  .. ${line}`)

// ---------------------------------------------------------------------------------------------
// Raw limits

interface MmapIo {
  map(size: number, protection: number, flags: number, fd: number, offset?: number): Buffer
  advise(buffer: Buffer, offset: number, length: number, advise: number): void
}

const PROT_READ_WRITE = 3
const MAP_SHARED = 1
const MADV_DONTNEED = 4
const MADV_POPULATE_WRITE = 23
const PAGE = 4096

function loadMmapIo(): MmapIo {
  try {
    return createRequire(import.meta.url)('@riaskov/mmap-io') as MmapIo
  } catch {
    // Not hoisted next to bench: take the store's own copy.
    return createRequire(fileURLToPath(import.meta.resolve('@mqts/store')))('@riaskov/mmap-io') as MmapIo
  }
}

/** A full GC, so unreferenced mappings are unmapped before the next phase. */
function collectGarbage(): void {
  forceGc()
}

/** Writes `size` zero bytes through the descriptor (not sparse) and syncs: the store's own allocation. */
function zeroFill(file: string, size: number): Promise<void> {
  return new NodeFileIO().allocate(file, size, { zeroFill: true })
}

/** Buffer.copy of one record's bytes after another into a pre-faulted shared map; msgs/s. */
async function rawMmapCopy(dir: string, b: Budget): Promise<{ msgsPerSec: number; prefault: string }> {
  const mmap = loadMmapIo()
  const file = path.join(dir, 'raw-mmap')
  await zeroFill(file, b.fileSize)
  const fd = fs.openSync(file, 'r+')
  let view: Buffer | undefined
  try {
    view = mmap.map(b.fileSize, PROT_READ_WRITE, MAP_SHARED, fd, 0)
    let prefault = 'madvise(MADV_POPULATE_WRITE)'
    try {
      mmap.advise(view, 0, view.length, MADV_POPULATE_WRITE)
    } catch {
      prefault = 'touched every page'
      for (let at = 0; at < view.length; at += PAGE) view[at] = 0
    }
    const record = randomBytes(RECORD_BYTES)
    const size = view.length
    const copyLoop = (ms: number): number => {
      let pos = 0
      let n = 0
      const start = performance.now()
      const deadline = start + ms
      for (;;) {
        for (let i = 0; i < 4096; i++) {
          record.copy(view!, pos)
          pos += RECORD_BYTES
          if (pos + RECORD_BYTES > size) pos = 0
        }
        n += 4096
        const now = performance.now()
        if (now >= deadline) return (n * 1000) / (now - start)
      }
    }
    copyLoop(b.warmupMs)
    return { msgsPerSec: copyLoop(b.measureMs), prefault }
  } finally {
    if (view) {
      try {
        mmap.advise(view, 0, view.length, MADV_DONTNEED)
      } catch {
        // advisory
      }
    }
    view = undefined
    fs.closeSync(fd)
    await fsp.rm(file, { force: true })
    collectGarbage()
  }
}

interface SyncBaseline {
  flushBytes: number
  flushes: number
  elapsedMs: number
}

/** pwrite of `flushBytes` + fdatasync in a loop for `ms`, cycling through a preallocated file from `pos`. */
function rawPwriteSync(fd: number, fileSize: number, flushBytes: number, ms: number, pos = 0): SyncBaseline & { pos: number } {
  const data = randomBytes(flushBytes)
  let n = 0
  const start = performance.now()
  let now = start
  do {
    let done = 0
    while (done < flushBytes) done += fs.writeSync(fd, data, done, flushBytes - done, pos + done)
    fs.fdatasyncSync(fd)
    pos += flushBytes
    if (pos + flushBytes > fileSize) pos = 0
    n++
    now = performance.now()
  } while (now - start < ms)
  return { flushBytes, flushes: n, elapsedMs: now - start, pos }
}

// ---------------------------------------------------------------------------------------------
// Store

function message(queueId = 0): PutMessage {
  return { topic: TOPIC, queueId, body: randomBytes(BODY_BYTES) }
}

/** Waits until the store's background allocation and page-cache warm-up are done, so a measurement does not start under them. */
async function settle(store: MessageStore, timeoutMs = 120_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs)))
  const timedOut = await Promise.race([store.commitLog.queue.whenIdle().then(() => false), timeout])
  clearTimeout(timer) // a pending timer would keep the process alive after the run
  if (timedOut) log(`background allocation still busy after ${timeoutMs} ms; measuring anyway`)
}

/** Milliseconds each new store took to open, by flush mode (rows in openRows). */
const openMs: Partial<Record<'sync' | 'async', number>> = {}

async function openStore(dirs: TempDirs, flush: 'sync' | 'async', b: Budget): Promise<MessageStore> {
  const dir = await dirs.make(`store-${flush}`)
  const t0 = performance.now()
  const store = await MessageStore.open({ dir, flush, commitLogFileSize: b.fileSize })
  const t1 = performance.now()
  openMs[flush] = t1 - t0
  await settle(store)
  log(`flush '${flush}': open took ${formatNumber(t1 - t0, 0)} ms (allocates a ${formatBytes(b.fileSize)} file), next file ready ${formatNumber(performance.now() - t1, 0)} ms later`)
  return store
}

/**
 * Open of a new store in each flush mode, against creating one file of the same size durably
 * (ftruncate, fsync, rename, directory fsync) in the same run: what a new store cannot avoid.
 */
async function openRows(dirs: TempDirs, b: Budget): Promise<BenchResult[]> {
  const dir = await dirs.make('create')
  const t = performance.now()
  await new NodeFileIO().allocate(path.join(dir, 'file'), b.fileSize, { zeroFill: false })
  const createMs = performance.now() - t
  await fsp.rm(dir, { recursive: true, force: true })
  const base = `create a ${formatBytes(b.fileSize)} sparse file`
  const rows: BenchResult[] = [{ name: base, value: createMs, unit: 'ms', note: 'ftruncate + fsync + rename + directory fsync' }]
  for (const flush of ['async', 'sync'] as const) {
    const ms = openMs[flush]
    if (ms === undefined) continue
    rows.push({ name: `open a new store, flush '${flush}'`, value: ms, unit: 'ms', baseline: base, ratio: ms / createMs, note: `${formatBytes(b.fileSize)} files; ratio = times the baseline (lower is better)` })
  }
  return rows
}

// ---------------------------------------------------------------------------------------------
// Reopen and recovery

/** Appends batches of 32 messages of `bodyBytes` over 4 topics x 8 queues until `bytes` of CommitLog are written. */
async function fillLog(store: MessageStore, bodyBytes: number, bytes: number): Promise<number> {
  const body = randomBytes(bodyBytes)
  let n = 0
  while (store.maxPhysicalOffset < bytes) {
    const batch: PutMessage[] = []
    for (let i = 0; i < BATCH; i++, n++) batch.push({ topic: `Rec${n % 4}`, queueId: (n >> 2) % 8, body })
    await store.putBatch(batch)
  }
  return n
}

/** Reads every CommitLog file of `dir` sequentially in 1 MiB preads, up to `bytes`; MB/s. */
function rawSequentialRead(dir: string, bytes: number): number {
  const buf = Buffer.allocUnsafe(MiB)
  const files = fs.readdirSync(path.join(dir, 'commitlog')).filter((f) => /^\d{20}$/.test(f)).sort()
  const t = performance.now()
  let done = 0
  for (const f of files) {
    const fd = fs.openSync(path.join(dir, 'commitlog', f), 'r')
    try {
      for (let at = 0; done < bytes; at += MiB) {
        const got = fs.readSync(fd, buf, 0, MiB, at)
        if (got <= 0) break
        done += got
      }
    } finally {
      fs.closeSync(fd)
    }
    if (done >= bytes) break
  }
  return done / 1e3 / (performance.now() - t)
}

/** Reopen after a clean close of a store holding `bytes` of 1 KiB messages: reads no record. */
async function cleanReopenRow(dirs: TempDirs, b: Budget, bytes: number): Promise<BenchResult> {
  const dir = await dirs.make('clean-reopen')
  const options = { dir, commitLogFileSize: b.fileSize }
  const store = await MessageStore.open(options)
  let records: number
  try {
    records = await fillLog(store, BODY_BYTES, bytes)
  } finally {
    await store.close()
  }
  const t = performance.now()
  const again = await MessageStore.open(options)
  const ms = performance.now() - t
  const r = again.recovery
  await again.close()
  await fsp.rm(dir, { recursive: true, force: true })
  return { name: `reopen after clean close, ${formatBytes(bytes)} log`, value: ms, unit: 'ms', note: `${formatNumber(records)} msgs of ${BODY_BYTES} B; ${formatNumber(r.recordsScanned)} records read (target: none, under 100 ms)` }
}

/**
 * Recovery after a kill: a child process appends `bytes` of messages of `bodyBytes` with the
 * background flush off (the checkpoint stays at 0, so every record is past it), waits until
 * they are dispatched, and SIGKILLs itself; the reopen's scan, re-dispatch into the queues and
 * the index is timed. Baseline: 1 MiB preads of the same bytes, right after.
 */
async function crashRecoveryRows(dirs: TempDirs, b: Budget, bodyBytes: number, bytes: number): Promise<BenchResult[]> {
  const dir = await dirs.make(`crash-${bodyBytes}`)
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), RECOVERY_CHILD, dir, String(bodyBytes), String(bytes), String(b.fileSize)], { stdio: 'inherit' })
  if (child.signal !== 'SIGKILL') throw new Error(`recovery child ended with ${child.signal ?? `exit code ${child.status}`}, expected SIGKILL`)
  const t = performance.now()
  const store = await MessageStore.open({ dir, commitLogFileSize: b.fileSize })
  const ms = performance.now() - t
  const r = store.recovery
  await store.close()
  const rawMBps = rawSequentialRead(dir, r.bytesScanned)
  await fsp.rm(dir, { recursive: true, force: true })
  const mbps = r.bytesScanned / 1e3 / ms
  const base = `raw sequential read, ${bodyBytes} B msgs`
  log(`recovery after kill, ${bodyBytes} B: ${formatNumber(ms, 0)} ms, ${formatNumber(r.recordsScanned)} records from offset ${r.scanFromOffset}`)
  return [
    { name: base, value: rawMBps, unit: 'MB/s', mbPerSec: rawMBps, note: `1 MiB preads of the ${formatBytes(r.bytesScanned)} recovery scanned` },
    compare(
      { name: `recovery after SIGKILL, ${bodyBytes} B msgs`, value: mbps, unit: 'MB/s', mbPerSec: mbps, note: `${formatNumber((r.recordsScanned * 1000) / ms)} records/s, ${formatNumber(r.recordsScanned)} records in ${formatNumber(ms, 0)} ms, queues and index rebuilt (target 1 GiB/s or 1M records/s)` },
      base,
      rawMBps,
    ),
  ]
}

/**
 * Open, reopen and recovery rows. `BENCH_STORE_ROWS=open` runs only these (with the 10,000-queue
 * reopen), each new store opened once in each flush mode for the open rows.
 */
async function openAndRecoveryRows(dirs: TempDirs, b: Budget, quick: boolean): Promise<BenchResult[]> {
  const rows: BenchResult[] = []
  try {
    if (process.env.BENCH_STORE_ROWS === 'open') {
      for (const flush of ['async', 'sync'] as const) await (await openStore(dirs, flush, b)).close()
      rows.push(...(await manyQueues(dirs, quick ? 2000 : 10_000)))
    }
    rows.push(...(await openRows(dirs, b)))
    rows.push(await cleanReopenRow(dirs, b, quick ? 256 * MiB : 3 * 1024 * MiB))
    rows.push(...(await crashRecoveryRows(dirs, b, BODY_BYTES, quick ? 128 * MiB : 1024 * MiB)))
    rows.push(...(await crashRecoveryRows(dirs, b, 100, quick ? 32 * MiB : 256 * MiB)))
    return rows
  } finally {
    if (process.env.BENCH_STORE_ROWS === 'open') await dirs.cleanup()
  }
}

/** argv[2] of the child process crashRecoveryRows starts. */
const RECOVERY_CHILD = '--recovery-child'

async function recoveryChild(dir: string, bodyBytes: number, bytes: number, fileSize: number): Promise<never> {
  const store = await MessageStore.open({ dir, commitLogFileSize: fileSize, flushIntervalMs: 3_600_000, flushThoroughIntervalMs: 3_600_000 })
  await fillLog(store, bodyBytes, bytes)
  await store.whenDispatched()
  process.kill(process.pid, 'SIGKILL')
  return new Promise<never>(() => undefined)
}

/** A block of appends slower than this waited on something (a roll to a file still being allocated). */
const STALL_MS = 20

interface LoopRun {
  msgsPerSec: number
  stalls: number
  stallMs: number
  /** Rate over the blocks that did not stall. */
  msgsPerSecWithoutStalls: number
}

/** Runs `block` (which appends `perBlock` messages) until `ms` have passed, timing each block. */
async function timedBlocks(ms: number, perBlock: number, block: () => Promise<void>): Promise<LoopRun> {
  let n = 0
  let stalls = 0
  let stallMs = 0
  const start = performance.now()
  const deadline = start + ms
  let last = start
  for (;;) {
    await block()
    n += perBlock
    const now = performance.now()
    if (now - last > STALL_MS) {
      stalls++
      stallMs += now - last
    }
    last = now
    if (now >= deadline) {
      const elapsed = now - start
      return { msgsPerSec: (n * 1000) / elapsed, stalls, stallMs, msgsPerSecWithoutStalls: ((n - stalls * perBlock) * 1000) / (elapsed - stallMs) }
    }
  }
}

/** Largest dispatch lag (bytes of CommitLog not yet in the ConsumeQueues) seen after an append. */
let maxLagBytes = 0

/** `await store.put()` in a loop for `ms`. */
function putLoop(store: MessageStore, ms: number): Promise<LoopRun> {
  const m = message()
  return timedBlocks(ms, 256, async () => {
    for (let i = 0; i < 256; i++) {
      await store.put(m)
      const lag = store.dispatchLagBytes
      if (lag > maxLagBytes) maxLagBytes = lag
    }
  })
}

/** Reads queue 0 from its start with get (batches of BATCH) for `ms` or to its end. */
async function consumeSequential(store: MessageStore, ms: number): Promise<{ msgsPerSec: number; messages: number; bytes: number }> {
  let offset = store.minOffset(TOPIC, 0)
  const end = store.maxOffset(TOPIC, 0)
  let messages = 0
  let bytes = 0
  const start = performance.now()
  const deadline = start + ms
  while (offset < end) {
    const r = await store.get({ topic: TOPIC, queueId: 0, offset, maxMessages: BATCH })
    if (r.status !== 'FOUND') throw new Error(`get at ${offset}: ${r.status}`)
    for (const m of r.messages) bytes += m.body.length
    messages += r.messages.length
    offset = r.nextOffset
    if ((messages & 1023) < BATCH && performance.now() >= deadline) break
  }
  return { msgsPerSec: (messages * 1000) / (performance.now() - start), messages, bytes }
}

/** Single-message gets at random offsets of queue 0 for `ms`. */
async function consumeRandom(store: MessageStore, ms: number): Promise<{ msgsPerSec: number; p50: number; p99: number }> {
  const min = store.minOffset(TOPIC, 0)
  const span = store.maxOffset(TOPIC, 0) - min
  const latencies: number[] = []
  const start = performance.now()
  const deadline = start + ms
  let n = 0
  let seed = 12345
  while (performance.now() < deadline) {
    for (let i = 0; i < 256; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      const t = performance.now()
      const r = await store.get({ topic: TOPIC, queueId: 0, offset: min + (seed % span), maxMessages: 1 })
      latencies.push(performance.now() - t)
      if (r.messages.length !== 1) throw new Error(`random get: ${r.status}`)
      n++
    }
  }
  latencies.sort((a, b) => a - b)
  return { msgsPerSec: (n * 1000) / (performance.now() - start), p50: latencies[Math.floor(latencies.length / 2)]! * 1000, p99: latencies[Math.floor(latencies.length * 0.99)]! * 1000 }
}

/** `await store.putBatch()` of BATCH messages in a loop for `ms`. */
function batchLoop(store: MessageStore, ms: number): Promise<LoopRun> {
  const batch = Array.from({ length: BATCH }, (_, i) => message(i % 8))
  return timedBlocks(ms, 8 * BATCH, async () => {
    for (let i = 0; i < 8; i++) await store.putBatch(batch)
  })
}

/** The row for an async loop, plus an informational row without roll stalls when there were any. */
function asyncRows(name: string, r: LoopRun, raw: number, rawName: string, target: number | undefined): BenchResult[] {
  const row = compare({ name, value: r.msgsPerSec, unit: 'msgs/s', mbPerSec: mb(r.msgsPerSec) }, rawName, raw, target)
  if (r.stalls === 0) return [row]
  row.note = `${r.stalls} stall(s) > ${STALL_MS} ms, ${formatNumber(r.stallMs, 0)} ms in all`
  const without = compare({ name: `  ${name.trim()}, stalls excluded`, value: r.msgsPerSecWithoutStalls, unit: 'msgs/s', mbPerSec: mb(r.msgsPerSecWithoutStalls) }, rawName, raw)
  without.note = 'informational: append path alone'
  return [row, without]
}

interface ProducerRun {
  count: number
  elapsedMs: number
  timeouts: number
  /** Latencies of a sample of the puts (every LATENCY_SAMPLE_EVERY-th of each producer), ms. */
  latencies: Float64Array
}

/**
 * Producers time every this-many-th put: the percentiles come from an unbiased sample, and the
 * harness costs the store's turn-around little (two clock reads and a store per sampled put).
 */
const LATENCY_SAMPLE_EVERY = 4

/** `producers` concurrent loops of `await store.put()` for `ms`; throughput counted up to the stop. */
async function producersLoop(store: MessageStore, producers: number, ms: number): Promise<ProducerRun> {
  const m = message()
  let stop = false
  let count = 0
  let timeouts = 0
  let latencies = new Float64Array(1 << 16)
  let sampled = 0
  const start = performance.now()
  const worker = async (): Promise<void> => {
    for (let i = 0; !stop; i++) {
      if (i % LATENCY_SAMPLE_EVERY !== 0) {
        const r = await store.put(m)
        if (stop) break
        if (r.status !== 'PUT_OK') timeouts++
        count++
        continue
      }
      const t = performance.now()
      const r = await store.put(m)
      if (stop) break
      if (sampled === latencies.length) {
        const grown = new Float64Array(latencies.length * 2)
        grown.set(latencies)
        latencies = grown
      }
      latencies[sampled++] = performance.now() - t
      if (r.status !== 'PUT_OK') timeouts++
      count++
    }
  }
  const workers = Array.from({ length: producers }, worker)
  const failed = Promise.all(workers).then(() => undefined)
  await Promise.race([sleep(ms), failed])
  stop = true
  const elapsedMs = performance.now() - start
  const counted = count
  await failed
  return { count: counted, elapsedMs, timeouts, latencies: latencies.subarray(0, sampled) }
}

interface SyncComparison {
  flushesPerSec: number
  /** Baseline: `flushBytes / 1 KiB` messages per flush. */
  baseMsgsPerSec: number
  msgsPerSec: number
  timeouts: number
  p50: number
  p99: number
}

/**
 * The pwrite + fdatasync baseline and `producers` concurrent puts, taking turns `rounds` times;
 * each side's rate is over all its windows.
 */
async function syncComparison(store: MessageStore, fd: number, b: Budget, producers: number, flushBytes: number): Promise<SyncComparison> {
  let flushes = 0
  let baseMs = 0
  let count = 0
  let storeMs = 0
  let timeouts = 0
  let pos = 0
  const samples: Float64Array[] = []
  for (let round = 0; round < b.syncRounds; round++) {
    const base = rawPwriteSync(fd, b.baselineFileSize, flushBytes, b.baselineMs / b.syncRounds, pos)
    pos = base.pos
    flushes += base.flushes
    baseMs += base.elapsedMs
    const r = await producersLoop(store, producers, b.measureMs / b.syncRounds)
    count += r.count
    storeMs += r.elapsedMs
    timeouts += r.timeouts
    samples.push(r.latencies)
  }
  const latencies = new Float64Array(samples.reduce((n, a) => n + a.length, 0))
  samples.reduce((at, a) => (latencies.set(a, at), at + a.length), 0)
  latencies.sort()
  const q = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN
  const flushesPerSec = (flushes * 1000) / baseMs
  return { flushesPerSec, baseMsgsPerSec: (flushesPerSec * flushBytes) / BODY_BYTES, msgsPerSec: (count * 1000) / storeMs, timeouts, p50: q(0.5), p99: q(0.99) }
}

const mb = (msgsPerSec: number): number => (msgsPerSec * RECORD_BYTES) / 1e6

/**
 * Many queues: one message into each of `queues` new queues, then one read from each, with the
 * default bound of open ConsumeQueue files (1024): descriptors and memory stay bounded.
 */
async function manyQueues(dirs: TempDirs, queues: number): Promise<BenchResult[]> {
  const dir = await dirs.make('many-queues')
  const fdCount = (): number => fs.readdirSync('/proc/self/fd').length
  const fds0 = fdCount()
  const store = await MessageStore.open({ dir, commitLogFileSize: 64 * MiB })
  try {
    const body = Buffer.alloc(100)
    let t = performance.now()
    for (let q = 0; q < queues; q++) await store.put({ topic: `Many${q % 100}`, queueId: Math.floor(q / 100), body })
    const createMs = performance.now() - t
    t = performance.now()
    for (let q = 0; q < queues; q++) {
      const r = await store.get({ topic: `Many${q % 100}`, queueId: Math.floor(q / 100), offset: 0 })
      if (r.messages.length !== 1) throw new Error(`queue ${q}: ${r.status}`)
    }
    const readMs = performance.now() - t
    const fds = fdCount() - fds0
    const rss = process.memoryUsage().rss
    const open = store.consumeQueues.segments.size
    await store.close()
    t = performance.now()
    const again = await MessageStore.open({ dir, commitLogFileSize: 64 * MiB })
    const reopenMs = performance.now() - t
    const scanned = again.recovery.recordsScanned
    await again.close()
    return [
      { name: `${formatNumber(queues)} new queues: put x1 each`, value: (queues * 1000) / createMs, unit: 'queues/s', note: `${formatNumber((createMs * 1000) / queues, 0)} µs per new queue (creates its ConsumeQueue file)` },
      { name: `${formatNumber(queues)} queues: get x1 each`, value: (queues * 1000) / readMs, unit: 'queues/s', note: `${open} ConsumeQueue windows mapped (bound 1024), +${fds} descriptors, RSS ${formatBytes(rss)}` },
      { name: `${formatNumber(queues)} queues: reopen`, value: reopenMs, unit: 'ms', note: `clean shutdown: queues from the close summary, ${scanned} records read (target under 1 s)` },
    ]
  } finally {
    if (store.status !== 'closed') await store.close()
  }
}

// ---------------------------------------------------------------------------------------------

export async function run(opts: RunOptions): Promise<BenchResult[]> {
  const b = budget(opts.quick)
  // The targets are stated for the default 1 GiB files and full windows: a quick run (64 MiB
  // files, rolls and their allocation inside the windows) reports ratios without judging them.
  const judged = (target: number): number | undefined => (opts.quick ? undefined : target)
  if (opts.quick) log('quick run: 64 MiB files and short windows, ratios shown, targets judged only in the full run')
  const dirs = new TempDirs()
  const stores: MessageStore[] = []
  const rows: BenchResult[] = []
  if (process.env.BENCH_STORE_ROWS === 'open') return openAndRecoveryRows(dirs, b, opts.quick)
  try {
    // Raw limit for the mapped append path.
    const rawDir = await dirs.make('raw')
    const raw = await rawMmapCopy(rawDir, b)
    const rawName = 'raw mmap copy'
    rows.push({ name: rawName, value: raw.msgsPerSec, unit: 'msgs/s', mbPerSec: mb(raw.msgsPerSec), note: `${RECORD_BYTES} B records, ${formatBytes(b.fileSize)} map, ${raw.prefault}` })
    log(`raw mmap copy: ${formatNumber(raw.msgsPerSec)} msgs/s`)

    // flush 'async'.
    const asyncStore = await openStore(dirs, 'async', b)
    stores.push(asyncStore)
    await putLoop(asyncStore, b.warmupMs)
    await settle(asyncStore)
    const single = await putLoop(asyncStore, b.asyncMeasureMs)
    rows.push(...asyncRows('async put x1', single, raw.msgsPerSec, rawName, judged(TARGET_ASYNC_SINGLE)))
    log(`async put: ${formatNumber(single.msgsPerSec)} msgs/s (${single.stalls} stalls, ${formatNumber(single.stallMs, 0)} ms)`)
    await batchLoop(asyncStore, b.warmupMs)
    await settle(asyncStore)
    const batch = await batchLoop(asyncStore, b.asyncMeasureMs)
    rows.push(...asyncRows(`async putBatch x${BATCH}`, batch, raw.msgsPerSec, rawName, judged(TARGET_ASYNC_BATCH)))
    log(`async putBatch: ${formatNumber(batch.msgsPerSec)} msgs/s (${batch.stalls} stalls, ${formatNumber(batch.stallMs, 0)} ms)`)
    rows.push({ name: 'dispatch lag during async puts', value: maxLagBytes, unit: 'bytes max', note: 'ConsumeQueue trails the CommitLog by this much at most after a put returns' })

    // Consume what was appended: queue 0 holds the single-put run and a share of the batches.
    await asyncStore.whenDispatched()
    await consumeSequential(asyncStore, b.warmupMs)
    const seq = await consumeSequential(asyncStore, b.measureMs)
    rows.push(compare({ name: `consume get x${BATCH}, sequential`, value: seq.msgsPerSec, unit: 'msgs/s', mbPerSec: mb(seq.msgsPerSec), note: `${formatNumber(seq.messages)} messages, bodies are views of the map` }, 'async put x1', single.msgsPerSec, judged(TARGET_CONSUME)))
    log(`consume sequential: ${formatNumber(seq.msgsPerSec)} msgs/s`)
    const rnd = await consumeRandom(asyncStore, b.measureMs)
    rows.push(compare({ name: 'consume get x1, random offset', value: rnd.msgsPerSec, unit: 'msgs/s', mbPerSec: mb(rnd.msgsPerSec), note: `p50 ${rnd.p50.toFixed(1)} µs, p99 ${rnd.p99.toFixed(1)} µs` }, 'async put x1', single.msgsPerSec))
    log(`consume random: ${formatNumber(rnd.msgsPerSec)} msgs/s`)

    const files = asyncStore.commitLog.queue.files.length
    const c0 = performance.now()
    await asyncStore.close()
    stores.splice(stores.indexOf(asyncStore), 1)
    log(`flush 'async': wrote ${formatBytes(asyncStore.maxPhysicalOffset)} over ${files} file(s); close took ${formatNumber(performance.now() - c0, 0)} ms`)
    await fsp.rm(asyncStore.dir, { recursive: true, force: true })

    // flush 'sync': for each producer count, the store and its own pwrite + fdatasync baseline take turns.
    const syncStore = await openStore(dirs, 'sync', b)
    stores.push(syncStore)
    const baseDir = await dirs.make('pwrite')
    const baseFile = path.join(baseDir, 'baseline')
    await zeroFill(baseFile, b.baselineFileSize)
    const fd = fs.openSync(baseFile, 'r+')
    try {
      await producersLoop(syncStore, PRODUCERS[0], b.warmupMs)
      let base64 = 0
      for (const producers of PRODUCERS) {
        const flushBytes = FLUSH_BYTES[producers]
        const r = await syncComparison(syncStore, fd, b, producers, flushBytes)
        if (producers === 64) base64 = r.baseMsgsPerSec
        const baseName = `raw pwrite ${formatBytes(flushBytes)} + fdatasync`
        rows.push({ name: baseName, value: r.baseMsgsPerSec, unit: 'msgs/s', mbPerSec: (r.flushesPerSec * flushBytes) / 1e6, note: `${formatNumber(r.flushesPerSec)} flushes/s, ${flushBytes / BODY_BYTES} msgs per flush` })
        log(`${baseName}: ${formatNumber(r.flushesPerSec)} flushes/s`)
        const row = compare({ name: `sync put, ${producers} producers`, value: r.msgsPerSec, unit: 'msgs/s', mbPerSec: mb(r.msgsPerSec) }, baseName, r.baseMsgsPerSec, producers === 64 ? judged(TARGET_SYNC_64) : undefined)
        const extra = producers === 64 ? '' : `, ${((r.msgsPerSec / base64) * 100).toFixed(0)}% of 64 KiB baseline`
        row.note = `p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms${r.timeouts > 0 ? `, ${r.timeouts} FLUSH_DISK_TIMEOUT` : ''}${extra}`
        rows.push(row)
        log(`sync put, ${producers} producers: ${formatNumber(r.msgsPerSec)} msgs/s`)
      }
    } finally {
      fs.closeSync(fd)
    }
    await syncStore.close()
    stores.splice(stores.indexOf(syncStore), 1)

    rows.push(...(await manyQueues(dirs, opts.quick ? 2000 : 10_000)))
    rows.push(...(await openAndRecoveryRows(dirs, b, opts.quick)))
    return rows
  } finally {
    for (const s of stores) await s.close().catch((err: unknown) => console.error(`closing store ${s.dir}: ${String(err)}`))
    await dirs.cleanup()
  }
}

if (isMain(import.meta.url) && process.argv[2] === RECOVERY_CHILD) {
  const [dir, bodyBytes, bytes, fileSize] = process.argv.slice(3)
  await recoveryChild(dir!, Number(bodyBytes), Number(bytes), Number(fileSize))
} else if (isMain(import.meta.url)) {
  const quick = isQuick()
  const b = budget(quick)
  printEnvironment('Store benchmark', {
    mode: quick ? 'quick' : 'full',
    flush: "'async' and 'sync' (fresh store dir each)",
    body: `${BODY_BYTES} B, record ${RECORD_BYTES} B, topic ${TOPIC}`,
    commitLogFileSize: formatBytes(b.fileSize),
    window: `${b.asyncMeasureMs} ms per async row (inside pre-warmed pages), ${b.measureMs} ms per sync row and ${b.baselineMs} ms per pwrite baseline, taking ${b.syncRounds} turn(s) each`,
    MB: '10^6 bytes of records (baselines: bytes written)',
  })
  const rows = await run({ quick })
  printResults('Store throughput (ratio = msgs/s vs the baseline named)', rows)
}
