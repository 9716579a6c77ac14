/**
 * CRC-32 implementations on the message-body sizes that matter: crc-32 (pure JS), Node's
 * zlib.crc32, @node-rs/crc32 (native). Also shows which one the store picked.
 */
import { randomBytes } from 'node:crypto'
import * as zlib from 'node:zlib'
import { crc32 as nodeRsCrc32 } from '@node-rs/crc32'
import { crc32Implementation } from '@mqts/store'
import CRC from 'crc-32'
import { Bench } from 'tinybench'
import { compare, formatBytes, isMain, isQuick, printEnvironment, printResults, type BenchResult, type RunOptions } from './lib/report.js'

type CrcFn = (b: Buffer) => number

const zlibCrc32 = (zlib as { crc32?: (d: Uint8Array) => number }).crc32

const implementations: { name: string; fn: CrcFn }[] = [
  { name: 'crc-32', fn: (b) => CRC.buf(b) >>> 0 },
  ...(zlibCrc32 ? [{ name: 'zlib.crc32', fn: (b: Buffer) => zlibCrc32(b) }] : []),
  { name: '@node-rs/crc32', fn: (b) => nodeRsCrc32(b) },
]

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
    const inner = Math.max(1, Math.floor(BYTES_PER_ITERATION / size))
    for (const impl of implementations) {
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
