/**
 * CRC-32 implementations on the message-body sizes that matter: crc-32 (pure JS), Node's
 * zlib.crc32, @node-rs/crc32 (native), and our own native helper (native/crc32.c, where it is
 * built): one call per body, and 32 bodies per call as an append computes them. Also shows which
 * one the store picked.
 */
import { randomBytes } from 'node:crypto'
import * as zlib from 'node:zlib'
import { crc32 as nodeRsCrc32 } from '@node-rs/crc32'
import { crc32Implementation } from '@mqts/store'
import { native } from '@mqts/store/internal'
import CRC from 'crc-32'
import { Bench } from 'tinybench'
import { compare, formatBytes, isMain, isQuick, printEnvironment, printResults, type BenchResult, type RunOptions } from './lib/report.js'

type CrcFn = (b: Buffer) => number

const zlibCrc32 = (zlib as { crc32?: (d: Uint8Array) => number }).crc32

const helper = native()
const BODIES_PER_CALL = 32

/** `body` once, after room for BODIES_PER_CALL CRCs; the list points every entry at that body. */
function bodyBatch(body: Buffer): { target: Buffer; list: Float64Array } {
  const head = 4 * BODIES_PER_CALL
  const target = Buffer.concat([Buffer.alloc(head), body])
  const list = new Float64Array(3 * BODIES_PER_CALL)
  for (let i = 0; i < BODIES_PER_CALL; i++) list.set([4 * i, head, body.length], 3 * i)
  return { target, list }
}
const batches = new Map<Buffer, { target: Buffer; list: Float64Array }>()

/** The masked CRC the batch call stored for `b` (the first entry), unmasked check aside. */
function batchCrc(b: Buffer): number {
  const { target, list } = bodyBatch(b)
  helper!.bodyCrcs(target, list, BODIES_PER_CALL)
  return target.readInt32BE(0)
}

const implementations: { name: string; fn: CrcFn }[] = [
  { name: 'crc-32', fn: (b) => CRC.buf(b) >>> 0 },
  ...(zlibCrc32 ? [{ name: 'zlib.crc32', fn: (b: Buffer) => zlibCrc32(b) }] : []),
  { name: '@node-rs/crc32', fn: (b) => nodeRsCrc32(b) },
  ...(helper ? [{ name: 'mqts native', fn: (b: Buffer) => helper.crc32(b, 0, b.length) }] : []),
]
/** Timed only: gives masked CRCs, checked separately in checkAgreement. */
const batchName = `mqts native, ${BODIES_PER_CALL} bodies per call`

/**
 * Timed loops, one function literal per implementation: a loop shared by all three would see a
 * megamorphic call site and measure the JIT's inlining decisions instead of the CRC code.
 */
const loops: Record<string, (b: Buffer, n: number) => number> = {
  'crc-32': (b, n) => {
    let x = 0
    for (let i = 0; i < n; i++) x ^= CRC.buf(b) >>> 0
    return x
  },
  'zlib.crc32': (b, n) => {
    let x = 0
    for (let i = 0; i < n; i++) x ^= zlibCrc32!(b)
    return x
  },
  '@node-rs/crc32': (b, n) => {
    let x = 0
    for (let i = 0; i < n; i++) x ^= nodeRsCrc32(b)
    return x
  },
  'mqts native': (b, n) => {
    let x = 0
    for (let i = 0; i < n; i++) x ^= helper!.crc32(b, 0, b.length)
    return x
  },
  [batchName]: (b, n) => {
    let batch = batches.get(b)
    if (!batch) batches.set(b, (batch = bodyBatch(b)))
    for (let i = 0; i < n; i += BODIES_PER_CALL) helper!.bodyCrcs(batch.target, batch.list, BODIES_PER_CALL)
    return batch.target.readInt32BE(0)
  },
}

const SIZES = [128, 1024, 64 * 1024]
/** Each timed iteration hashes about this many bytes, so per-sample timer cost stays negligible. */
const BYTES_PER_ITERATION = 64 * 1024

/** Throws unless every implementation gives the same value on the check string and on random data. */
export function checkAgreement(): void {
  const inputs = [Buffer.from('123456789'), Buffer.alloc(0), ...SIZES.map((s) => randomBytes(s)), randomBytes(1000 + 7)]
  for (const input of inputs) {
    const values = implementations.map((i) => i.fn(input))
    if (values.some((v) => v !== values[0])) {
      throw new Error(`CRC-32 implementations disagree on ${input.length} bytes: ${implementations.map((i, k) => `${i.name}=${values[k]!.toString(16)}`).join(' ')}`)
    }
  }
  if (helper) {
    for (const input of inputs) {
      const want = (nodeRsCrc32(input) & 0x7fffffff) | 0
      if (batchCrc(input) !== want) throw new Error(`${batchName} disagrees on ${input.length} bytes`)
    }
  }
  const check = implementations.map((i) => i.fn(Buffer.from('123456789')))
  if (check.some((v) => v !== 0xcbf43926)) throw new Error(`CRC-32 check value of "123456789" is not cbf43926: ${check.map((v) => v.toString(16)).join(' ')}`)
}

export async function run(opts: RunOptions): Promise<BenchResult[]> {
  checkAgreement()
  const bench = new Bench({ time: opts.quick ? 60 : 400, warmupTime: opts.quick ? 20 : 100 })
  let sink = 0
  const meta = new Map<string, { impl: string; size: number; inner: number }>()
  for (const size of SIZES) {
    const buf = randomBytes(size)
    const inner = Math.max(BODIES_PER_CALL, Math.floor(BYTES_PER_ITERATION / size))
    for (const impl of [...implementations, ...(helper ? [{ name: batchName }] : [])]) {
      const name = `${impl.name} ${formatBytes(size)}`
      const loop = loops[impl.name]!
      meta.set(name, { impl: impl.name, size, inner })
      bench.add(name, () => {
        sink ^= loop(buf, inner)
      })
    }
  }
  await bench.run()
  if (sink === 0x7fffffff + 1) console.log('') // keeps `sink` observable

  const rows: BenchResult[] = []
  const reference = new Map<number, number>()
  for (const task of bench.tasks) {
    const m = meta.get(task.name)!
    const r = task.result
    if (r.state !== 'completed') throw new Error(`task ${task.name} ended ${r.state}${'error' in r ? `: ${String(r.error)}` : ''}`)
    const opsPerSec = (m.inner * 1000) / r.latency.mean
    const row: BenchResult = { name: task.name, value: opsPerSec, unit: 'ops/s', mbPerSec: (opsPerSec * m.size) / 1e6, note: `${((opsPerSec * m.size) / 1e9).toFixed(2)} GB/s` }
    if (m.impl === 'crc-32') reference.set(m.size, opsPerSec)
    rows.push(row)
  }
  for (const row of rows) {
    const m = meta.get(row.name)!
    compare(row, `crc-32 ${formatBytes(m.size)}`, reference.get(m.size)!)
  }
  rows.push({ name: 'implementation the store uses', value: NaN, unit: '-', note: crc32Implementation })
  return rows
}

if (isMain(import.meta.url)) {
  const quick = isQuick()
  printEnvironment('CRC-32 benchmark', { mode: quick ? 'quick' : 'full', 'implementations agree': 'checked before timing', 'store picked': crc32Implementation })
  const rows = await run({ quick })
  printResults('CRC-32 (ratio = ops/s vs crc-32 at the same size)', rows)
}
