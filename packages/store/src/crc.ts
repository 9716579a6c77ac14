import { createRequire } from 'node:module'
import * as zlib from 'node:zlib'
import { native } from './native.js'

/**
 * CRC-32 (IEEE 802.3 polynomial, the one java.util.zip.CRC32 uses) for the hot path.
 *
 * Measured on 1 KiB buffers (bench/crc.bench.ts): our native helper's carry-less multiply fold
 * (native/crc32.c; built on Linux, used on x86-64 with PCLMULQDQ) first, @node-rs/crc32 (SIMD,
 * prebuilt N-API binary for every mainstream platform) second, Node's built-in zlib.crc32 third,
 * pure-JS crc-32 last. We take the fastest that loads and fall back in that order, so a platform
 * without the helper or a prebuilt binary still works. On the append path the helper also
 * computes all body CRCs of an append in one call (BodyCrcBatch).
 */
type Crc32 = (data: Uint8Array) => number

const require = createRequire(import.meta.url)

/** crc32Implementation when our native helper computes the CRC. */
const NATIVE_CRC = 'mqts native (PCLMULQDQ)'

function pick(): { name: string; fn: Crc32 } {
  const helper = native()
  if (helper?.crc32Accelerated && helper.crc32(Buffer.from('123456789'), 0, 9) === 0xcbf43926) {
    return { name: NATIVE_CRC, fn: (d) => helper.crc32(d, 0, d.length) }
  }
  try {
    const mod = require('@node-rs/crc32') as { crc32: (d: Uint8Array, initial?: number) => number }
    if (mod.crc32(Buffer.from('123456789')) === 0xcbf43926) return { name: '@node-rs/crc32', fn: (d) => mod.crc32(d) }
  } catch {
    // not installed on this platform: fall through
  }
  const builtin = (zlib as unknown as { crc32?: (d: Uint8Array) => number }).crc32
  if (typeof builtin === 'function') return { name: 'zlib.crc32', fn: builtin }
  const js = require('crc-32') as { buf: (d: Uint8Array) => number }
  return { name: 'crc-32', fn: (d) => js.buf(d) >>> 0 }
}

const chosen = pick()

/** Name of the implementation in use, for benchmarks and diagnostics. */
export const crc32Implementation: string = chosen.name

/** Unsigned CRC-32 of `data`. */
export const crc32: Crc32 = chosen.fn

/** RocketMQ's UtilAll.crc32: the CRC masked to a non-negative int, as stored in BODYCRC. */
export function bodyCrc(data: Uint8Array): number {
  return crc32(data) & 0x7fffffff
}

const nativeHelper = chosen.name === NATIVE_CRC ? native() : null

/** bodyCrc of buf[start, start + length), without a view object when the native helper computes it (the recovery scan). */
export function bodyCrcAt(buf: Buffer, start: number, length: number): number {
  if (nativeHelper) return nativeHelper.crc32(buf, start, length) & 0x7fffffff
  return bodyCrc(buf.subarray(start, start + length))
}

/**
 * Body CRCs of records just encoded, computed together by one call of the native helper once
 * the bodies are in place: one crossing into native code per append (async flush) or per group
 * handed to the disk (sync flush) instead of one per message. Ranges of one target buffer
 * accumulate; adding a range of another target first writes those pending. Whoever reads or
 * writes out the records must call flush() first. `bodyCrcBatch()` gives one only where the
 * helper runs its accelerated CRC.
 */
export class BodyCrcBatch {
  private list = new Float64Array(3 * 64)
  private count = 0
  private target: Buffer | undefined

  constructor(private readonly fill: (target: Buffer, list: Float64Array, count: number) => void) {}

  /** Ranges pending (a mark for truncate). */
  get pending(): number {
    return this.count
  }

  /** Forgets the ranges added after `mark` (an append that failed half way). */
  truncate(mark: number): void {
    if (mark < this.count) this.count = mark
  }

  /** The body at target[bodyAt, bodyAt + length) gets its masked CRC stored at target[crcAt]. */
  add(target: Buffer, crcAt: number, bodyAt: number, length: number): void {
    if (target !== this.target) {
      if (this.count > 0) this.flush()
      this.target = target
    }
    let i = 3 * this.count
    if (i + 3 > this.list.length) {
      const grown = new Float64Array(this.list.length * 2)
      grown.set(this.list)
      this.list = grown
    }
    const list = this.list
    list[i++] = crcAt
    list[i++] = bodyAt
    list[i] = length
    this.count++
  }

  /** Computes and stores every CRC pending. */
  flush(): void {
    const target = this.target
    // Holds no reference once done: a target may be a file's mapping, released when collected.
    this.target = undefined
    if (this.count === 0) return
    const count = this.count
    this.count = 0
    this.fill(target!, this.list, count)
  }
}

/** A BodyCrcBatch when the native helper computes CRCs fastest here, else undefined. */
export function bodyCrcBatch(): BodyCrcBatch | undefined {
  return chosen.name === NATIVE_CRC ? new BodyCrcBatch(native()!.bodyCrcs) : undefined
}

/**
 * Body CRCs of a run of records checked in one call of the native helper (the recovery scan,
 * where one call per record cost about as much as the CRC of a 1 KiB body): `add` each record's
 * body range and stored CRC, then `check` answers the index of the first whose body does not
 * match, or -1, and empties the run. Every range of a run is in the one buffer given to check.
 */
export class BodyCrcCheck {
  private readonly list: Float64Array
  /** Records in the run. */
  count = 0

  constructor(
    readonly capacity: number,
    private readonly checkFn: (source: Buffer, list: Float64Array, count: number) => number,
  ) {
    this.list = new Float64Array(3 * capacity)
  }

  get full(): boolean {
    return this.count >= this.capacity
  }

  /** The body at [bodyAt, bodyAt + length) must have the masked CRC `stored`. */
  add(bodyAt: number, length: number, stored: number): void {
    const i = 3 * this.count++
    const list = this.list
    list[i] = bodyAt
    list[i + 1] = length
    list[i + 2] = stored
  }

  /** Index in the run of the first record whose body CRC differs, or -1; empties the run. */
  check(source: Buffer): number {
    const count = this.count
    this.count = 0
    return count === 0 ? -1 : this.checkFn(source, this.list, count)
  }
}

/** A BodyCrcCheck of `capacity` records when the native helper computes CRCs here (and has checkBodyCrcs), else undefined. */
export function bodyCrcCheck(capacity: number): BodyCrcCheck | undefined {
  const check = nativeHelper?.checkBodyCrcs
  return check ? new BodyCrcCheck(capacity, check) : undefined
}
