/**
 * Our native helper (native/populate.c and native/crc32.c, built by node-gyp at install; Linux
 * only). Everything it offers has a slower fallback in JavaScript, so the store works without it.
 */
import { createRequire } from 'node:module'

export interface NativeHelper {
  /** madvise(MADV_POPULATE_WRITE) of a range of a map, on the thread pool (see populate.c). */
  populate(view: Buffer, offset: number, length: number, progress?: Int32Array): Promise<void>
  /** memmove between two Buffers (V8 copies into shared memory several times slower). */
  copy(target: Buffer, targetStart: number, source: Uint8Array, sourceStart: number, length: number): void
  /** Unsigned CRC-32 of buffer[start, start + length). */
  crc32(buffer: Uint8Array, start: number, length: number): number
  /** For each (crcAt, bodyAt, bodyLength) triple of `list`: the masked body CRC, big-endian at crcAt. */
  bodyCrcs(target: Buffer, list: Float64Array, count: number): void
  /**
   * For each (bodyAt, bodyLength, stored) triple of `list`: whether the masked body CRC is
   * `stored`; the index of the first that is not, or -1. Absent from a helper built before it.
   */
  checkBodyCrcs?(source: Buffer, list: Float64Array, count: number): number
  /**
   * lseek(fd, offset, SEEK_HOLE when `hole`, else SEEK_DATA): -1 when no data follows; throws
   * when not supported. Absent from a helper built before it was added.
   */
  seekData?(fd: number, offset: number, hole: boolean): number
  /** Whether the CRC runs on carry-less multiply instructions (PCLMULQDQ) here. */
  readonly crc32Accelerated: boolean
}

const require = createRequire(import.meta.url)
let helper: NativeHelper | null | undefined

/** The native helper, or null when it was not built (or not for this platform). */
export function native(): NativeHelper | null {
  if (helper === undefined) {
    try {
      helper = require('../../build/Release/mqts_populate.node') as NativeHelper
    } catch {
      helper = null
    }
  }
  return helper
}
