import { createRequire } from 'node:module'
import * as zlib from 'node:zlib'

/**
 * CRC-32 (IEEE 802.3 polynomial, the one java.util.zip.CRC32 uses) for the hot path.
 *
 * Measured on 1 KiB buffers (bench/crc.bench.ts): @node-rs/crc32 (SIMD, prebuilt N-API binary for
 * every mainstream platform) is the fastest by a wide margin, Node's built-in zlib.crc32 second,
 * pure-JS crc-32 last. We take the fastest that loads and fall back in that order, so a platform
 * without a prebuilt binary still works.
 */
type Crc32 = (data: Uint8Array) => number

const require = createRequire(import.meta.url)

function pick(): { name: string; fn: Crc32 } {
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
