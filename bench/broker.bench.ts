/**
 * The broker over loopback TCP (async flush, 1 KiB messages), each row against a baseline
 * measured in the same run. Three processes, as a deployment runs them: the broker alone in one
 * (bench/broker/server.ts starts the real Broker), a load generator in another
 * (bench/broker/load.ts: requests encoded once and re-sent with a new opaque, answers read no
 * further than their code and opaque) and the baselines in a third (bench/broker/baseline.ts):
 * - batched produce: SEND_BATCH_MESSAGE of 32 messages from several connections, against the
 *   embedded store's own putBatch of the same number of batches of the same messages (target
 *   >= 50%), the two in turns for a few rounds and the best round of each compared (a shared
 *   machine makes single rounds swing), with the broker process's CPU per message against
 *   putBatch's;
 * - single send with reply: one caller, SEND_MESSAGE_V2, p50 and p99, against the transport's raw
 *   round trip (an echo server in the baseline process, sent the same frame) plus the store's put;
 * - pull all: every message back with PULL_MESSAGE (32 per pull, one caller per queue), against
 *   the embedded store's raw get of its own queues (the putBatch rounds' messages).
 * BENCH_BROKER_NODE_FLAGS adds node flags to the broker process (e.g. --cpu-prof);
 * BENCH_BROKER_ROWS=produce runs the produce rows only; BENCH_BROKER_ROUNDS=<n> sets the rounds.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import type { EventLoopUtilization } from 'node:perf_hooks'
import { encodeProperties } from '@mqts/store'
import { type BenchResult, compare, isMain, isQuick, percentile, printEnvironment, printResults, type RunOptions } from './lib/report.js'
import { batchBody } from './lib/batch.js'
import { warmPageCache } from './lib/memory.js'
import { BenchChild } from './lib/child.js'
import type { Rate } from './broker/load.js'
import { BATCH, BODY_BYTES, CONNECTIONS, FILE_BYTES, IN_FLIGHT_PER_CONNECTION, QUEUES, WARMUP_SENDS } from './lib/produce-load.js'

const TARGET_PRODUCE_RATIO = 0.5
/** Single sends alternate between the broker and the echo server this many times. */
const SEND_TURNS = 5

interface Sizes {
  /** Batches per produce round (and per putBatch round). */
  roundBatches: number
  rounds: number
  /**
   * Produce and putBatch rounds run first and not counted: the broker's path (transport, broker,
   * store) reaches V8's optimized code and its files their steady state later than putBatch's
   * store alone, so without them its first rounds measured warm-up.
   */
  warmupRounds: number
  sends: number
}
const QUICK: Sizes = { roundBatches: 200, rounds: 2, warmupRounds: 1, sends: 1_000 }
const FULL: Sizes = { roundBatches: 2_000, rounds: 8, warmupRounds: 2, sends: 10_000 }

/**
 * GC flags of the broker process and of the baselines' (the same, so the ratio measures the
 * broker, not a flag): one GC thread. On a 2-core host V8's parallel GC helpers compete with the
 * process's own event loop and with the clients, and the event loop waits for them: the broker's
 * GC wall time was about 65% lower with one thread (README, "Memory"). A larger young generation
 * (--max-semi-space-size) changed nothing here, V8 does not grow it while little survives; forcing
 * it (--min-semi-space-size) made scavenges longer and mark-compacts more frequent.
 * BENCH_BROKER_GC replaces them ('' for V8's defaults).
 */
export const BROKER_NODE_FLAGS = process.env.BENCH_BROKER_GC === undefined ? ['--single-threaded-gc'] : process.env.BENCH_BROKER_GC.split(/\s+/).filter((f) => f !== '')

function nodeFlags(): string[] {
  const extra = process.env.BENCH_BROKER_NODE_FLAGS
  return [...BROKER_NODE_FLAGS, ...(extra ? extra.split(/\s+/).filter((f) => f !== '') : [])]
}

/** CPU µs per message: the whole process, and its main thread (undefined where not known). */
interface Cpu {
  process: number
  main: number | undefined
  /** Share of the round's time the broker's event loop was busy (not waiting for I/O). */
  loop: number | undefined
}

/** The broker process's CPU µs so far. */
interface CpuTotals {
  process: number
  main: number | undefined
  loop: EventLoopUtilization | undefined
}

/** How busy the broker's event loop was in a round, as a percentage ('-' when unknown). */
function loopBusy(cpu: Cpu): string {
  return cpu.loop === undefined ? '-' : `${(cpu.loop * 100).toFixed(0)}%`
}

/** The least of some CPU figures, two decimals ('-' when unknown). */
function least(values: (number | undefined)[]): string {
  const known = values.filter((v): v is number => v !== undefined)
  return known.length === 0 ? '-' : Math.min(...known).toFixed(2)
}

function medianOf(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** The best of several rounds (the machine may be shared: a slow round says little). */
function best(rates: Rate[]): Rate {
  return { perSec: Math.max(...rates.map((r) => r.perSec)), cpuUs: Math.min(...rates.map((r) => r.cpuUs)) }
}

function child(name: string, file: string, flags: string[] = []): BenchChild {
  return new BenchChild(name, new URL(file, import.meta.url), flags)
}

export async function run(opts: RunOptions): Promise<BenchResult[]> {
  const n = { ...(opts.quick ? QUICK : FULL) }
  if (process.env.BENCH_BROKER_ROUNDS) n.rounds = Number(process.env.BENCH_BROKER_ROUNDS)
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-bench-broker-'))
  const server = child('broker process', './broker/server.js', nodeFlags())
  const baseline = child('baseline process', './broker/baseline.js', BROKER_NODE_FLAGS)
  const load = child('load process', './broker/load.js')
  const rows: BenchResult[] = []
  try {
    const props = encodeProperties({ TAGS: 'TagA' })
    const body = Buffer.alloc(BODY_BYTES, 0x61)
    const addr = await server.call<string>('start', { dir: path.join(dir, 'broker'), fileBytes: FILE_BYTES })
    await baseline.call('open', { dir: path.join(dir, 'embedded'), fileBytes: FILE_BYTES, bodyBytes: BODY_BYTES })
    await load.call('connect', { addr, connections: CONNECTIONS, inFlight: IN_FLIGHT_PER_CONNECTION, queues: QUEUES, bodyBase64: batchBody(body, props, BATCH).toString('base64') })
    /** The broker process's CPU per message while `fn` runs: the whole process, and its main thread. */
    const brokerCpu = async <T>(messages: number, fn: () => Promise<T>): Promise<[T, Cpu]> => {
      const before = await server.call<CpuTotals>('cpu')
      const r = await fn()
      const after = await server.call<CpuTotals>('cpu')
      const loop = after.loop && before.loop ? (after.loop.active - before.loop.active) / (after.loop.active - before.loop.active + after.loop.idle - before.loop.idle) : undefined
      return [r, { process: (after.process - before.process) / messages, main: after.main === undefined || before.main === undefined ? undefined : (after.main - before.main) / messages, loop }]
    }

    // Batched produce and its baseline, in turns.
    const produced: Rate[] = []
    const brokerCpus: Cpu[] = []
    const loadCpus: number[] = []
    const putBatches: Rate[] = []
    const roundMessages = n.roundBatches * BATCH
    // Each side starts its round with the other's background work (flush, file warm-up) done, on
    // page-cache pages the machine already backs (see warmPageCache).
    const roundBytes = roundMessages * (BODY_BYTES + 128)
    const settle = async (): Promise<void> => {
      await Promise.all([server.call('settle'), baseline.call('settle')])
      await warmPageCache(dir, roundBytes * 1.25)
    }
    for (let round = -n.warmupRounds; round < n.rounds; round++) {
      await settle()
      const putBatch = await baseline.call<Rate>('putBatch', { count: n.roundBatches, messages: BATCH, queues: QUEUES })
      await settle()
      const [r, cpu] = await brokerCpu(roundMessages, () => load.call<Rate>('produce', { count: n.roundBatches, messagesPerBatch: BATCH, inFlight: IN_FLIGHT_PER_CONNECTION, queues: QUEUES }))
      if (process.env.BENCH_BROKER_DEBUG) console.error(`round ${round}: produce ${Math.round(r.perSec)} msg/s broker ${cpu.process.toFixed(2)} (main ${cpu.main?.toFixed(2)}, event loop busy ${cpu.loop === undefined ? '?' : (cpu.loop * 100).toFixed(0)}%) µs/msg load ${r.cpuUs.toFixed(2)}; putBatch ${Math.round(putBatch.perSec)} msg/s ${putBatch.cpuUs.toFixed(2)} (main ${putBatch.mainUs?.toFixed(2)}) µs/msg`)
      if (round < 0) continue
      putBatches.push(putBatch)
      produced.push(r)
      brokerCpus.push(cpu)
      loadCpus.push(r.cpuUs)
    }
    const p = best(produced)
    const b = best(putBatches)
    rows.push({
      ...compare({ name: `batched produce (${BATCH} x 1 KiB, ${CONNECTIONS} connections x ${IN_FLIGHT_PER_CONNECTION})`, value: Math.round(p.perSec), unit: 'msg/s', mbPerSec: (p.perSec * BODY_BYTES) / 1e6 }, 'putBatch, own process', b.perSec, TARGET_PRODUCE_RATIO),
      note: `best of ${n.rounds} rounds each after ${n.warmupRounds} not counted (median of the rounds' ratios ${(medianOf(produced.map((r, i) => r.perSec / putBatches[i]!.perSec)) * 100).toFixed(1)}%); broker event loop busy ${loopBusy(brokerCpus[produced.findIndex((r) => r.perSec === p.perSec)]!)} in the best round; CPU µs/msg (least): broker ${least(brokerCpus.map((c) => c.process))} (main thread ${least(brokerCpus.map((c) => c.main))}), load ${least(loadCpus)}, putBatch ${least(putBatches.map((r) => r.cpuUs))} (main thread ${least(putBatches.map((r) => r.mainUs))})`,
    })

    if (process.env.BENCH_BROKER_ROWS === 'produce') return rows

    // Single send with reply, one caller: the broker, then the raw round trip and a put.
    const sends = { n: Math.ceil(n.sends / SEND_TURNS), warmup: WARMUP_SENDS, bodyBase64: body.toString('base64'), properties: props }
    // The broker's and the echo server's round trips in turns, so both see the same conditions
    // (the disk still writing back the produce rounds, the machine's other load).
    const echoAddr = await baseline.call<string>('echo')
    const lat: number[] = []
    const rtt: number[] = []
    for (let turn = 0; turn < SEND_TURNS; turn++) {
      lat.push(...(await load.call<number[]>('sends', { ...sends, addr })))
      rtt.push(...(await load.call<number[]>('sends', { ...sends, addr: echoAddr })))
    }
    lat.sort((x, y) => x - y)
    rtt.sort((x, y) => x - y)
    const putLat = await baseline.call<number[]>('putLatency', { dir: path.join(dir, 'embedded-lat'), n: n.sends })
    for (const pc of [50, 99]) {
      const base = percentile(rtt, pc) + percentile(putLat, pc)
      rows.push({ name: `send p${pc}, 1 caller`, value: Math.round(percentile(lat, pc)), unit: 'µs', baseline: 'raw round trip + store put', ratio: percentile(lat, pc) / base, note: `baseline ${Math.round(base)} µs: round trip ${Math.round(percentile(rtt, pc))} + put ${Math.round(percentile(putLat, pc))} (lower ratio is better)` })
    }

    // Pull everything back, one caller per queue, against the baseline store's raw get.
    const total = (n.warmupRounds + n.rounds) * roundMessages + SEND_TURNS * (Math.ceil(n.sends / SEND_TURNS) + WARMUP_SENDS)
    const [pulled, pullCpu] = await brokerCpu(total, () => load.call<Rate & { pulled: number }>('pullAll', { addr, queues: QUEUES, total }))
    if (pulled.pulled !== total) throw new Error(`pulled ${pulled.pulled} messages, produced ${total}`)
    const got = await baseline.call<Rate & { got: number }>('rawGet', { queues: QUEUES })
    rows.push({
      ...compare({ name: 'pull all (32 per pull, 1 caller per queue)', value: Math.round(pulled.perSec), unit: 'msg/s', mbPerSec: (pulled.perSec * BODY_BYTES) / 1e6 }, 'raw get, own process', got.perSec),
      note: `CPU µs/msg: broker ${pullCpu.process.toFixed(2)} (main thread ${pullCpu.main?.toFixed(2) ?? '-'}), load ${pulled.cpuUs.toFixed(2)}, raw get ${got.cpuUs.toFixed(2)}`,
    })
  } finally {
    await Promise.all([load.stop(), server.stop(), baseline.stop()])
    await rm(dir, { recursive: true, force: true })
  }
  return rows
}

if (isMain(import.meta.url)) {
  const quick = isQuick()
  printEnvironment('broker benchmark', {
    mode: quick ? 'quick' : 'full',
    processes: 'broker | load generator | baselines (putBatch, put, raw get, echo server): one node process each',
    'node flags': `broker ${nodeFlags().join(' ') || '-'}, baselines ${BROKER_NODE_FLAGS.join(' ') || '-'}, load generator -`,
  })
  printResults('broker', await run({ quick }))
}
