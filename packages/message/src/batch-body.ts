/**
 * SEND_BATCH_MESSAGE's body as RocketMQ 4.x clients write it (MessageDecoder.encodeMessages): one
 * entry per message, | totalSize 4 | magic 4 | bodyCRC 4 | flag 4 | bodyLength 4 | body |
 * propertiesLength 2 | properties |, big-endian; the broker ignores magic and bodyCRC (written 0).
 * The encoder and the reader live here once: the client, the broker's tests and the benchmarks
 * encode; the store reads the entries of a batch it is given encoded (putEncodedBatch).
 */
import { MessageError } from './errors.js'
import { MAX_PROPERTIES_BYTES } from './properties.js'

/** The bytes of an entry besides its body and properties. */
export const BATCH_ENTRY_FIXED_BYTES = 4 + 4 + 4 + 4 + 4 + 2

/** Where an entry's fields start (the body at BODY, its properties' length right after it). */
export const BATCH_ENTRY = {
  TOTAL_SIZE: 0,
  MAGIC: 4,
  BODY_CRC: 8,
  FLAG: 12,
  BODY_LENGTH: 16,
  BODY: 20,
} as const

export interface BatchEntry {
  body: Buffer
  flag: number
  /** The message's properties as encoded text (name 0x01 value 0x02 ...). */
  properties: string
}

/**
 * The body of a SEND_BATCH_MESSAGE holding `entries` in order. A flag that is not a Java int, or
 * properties past MAX_PROPERTIES_BYTES (their length is a short), is a MessageError.
 */
export function encodeBatchBody(entries: readonly BatchEntry[]): Buffer {
  const parts: Buffer[] = []
  for (const e of entries) {
    if (!Number.isInteger(e.flag) || e.flag < -0x80000000 || e.flag > 0x7fffffff) {
      throw new MessageError('INVALID_ARGUMENT', `a batch entry's flag must be a Java int, got ${String(e.flag)}`)
    }
    const props = Buffer.from(e.properties, 'utf8')
    if (props.length > MAX_PROPERTIES_BYTES) {
      throw new MessageError('INVALID_ARGUMENT', `a batch entry's properties take ${props.length} bytes, the limit is ${MAX_PROPERTIES_BYTES}`)
    }
    const head = Buffer.alloc(BATCH_ENTRY.BODY)
    head.writeInt32BE(BATCH_ENTRY_FIXED_BYTES + e.body.length + props.length, BATCH_ENTRY.TOTAL_SIZE)
    head.writeInt32BE(e.flag, BATCH_ENTRY.FLAG)
    head.writeInt32BE(e.body.length, BATCH_ENTRY.BODY_LENGTH)
    const propsLength = Buffer.alloc(2)
    propsLength.writeInt16BE(props.length, 0)
    parts.push(head, e.body, propsLength, props)
  }
  return Buffer.concat(parts)
}

/** Where the fields of one entry are in the body. */
export interface BatchEntryVisitor {
  (flag: number, bodyStart: number, bodyEnd: number, propsStart: number, propsEnd: number): void
}

/** The big-endian int32 at b[at] (in range: the caller checked), as readInt32BE reads it, without its checks. */
function int32At(b: Uint8Array, at: number): number {
  return (b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!
}

/** The big-endian int16 at b[at] (in range), sign-extended as readInt16BE reads it. */
function int16At(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) >> 16) | b[at + 1]!
}

/** One entry of a batch body, as readBatchEntry leaves it: where its parts are in the body. */
export interface BatchEntryPosition {
  flag: number
  bodyStart: number
  bodyEnd: number
  propsStart: number
  propsEnd: number
}

/**
 * Reads the entry at body[at] into `out`, checking its lengths, and returns where the next one
 * starts; throws an Error naming the bad entry. Its fields are read byte by byte (the lengths
 * checked first): Buffer's readInt32BE made a walk cost four times as much, for every batch a
 * broker takes; `out` is reused by the caller, so a walk allocates nothing.
 */
export function readBatchEntry(body: Uint8Array, at: number, out: BatchEntryPosition): number {
  const length = body.length
  if (length - at < BATCH_ENTRY_FIXED_BYTES) throw new Error(`batch entry at byte ${at} is truncated`)
  const total = int32At(body, at + BATCH_ENTRY.TOTAL_SIZE)
  const bodyLength = int32At(body, at + BATCH_ENTRY.BODY_LENGTH)
  const bodyStart = at + BATCH_ENTRY.BODY
  if (bodyLength < 0 || bodyStart + bodyLength + 2 > length) throw new Error(`batch entry at byte ${at} has a body length ${bodyLength} past the end`)
  const propsLength = int16At(body, bodyStart + bodyLength)
  const propsStart = bodyStart + bodyLength + 2
  if (propsLength < 0 || propsStart + propsLength > length) throw new Error(`batch entry at byte ${at} has a properties length ${propsLength} past the end`)
  if (total !== propsStart + propsLength - at) throw new Error(`batch entry at byte ${at} says ${total} bytes, its fields take ${propsStart + propsLength - at}`)
  out.flag = int32At(body, at + BATCH_ENTRY.FLAG)
  out.bodyStart = bodyStart
  out.bodyEnd = bodyStart + bodyLength
  out.propsStart = propsStart
  out.propsEnd = propsStart + propsLength
  return at + total
}

/** Walks the entries of a batch body (readBatchEntry's checks); throws an Error naming the bad entry. */
export function walkBatchBody(body: Uint8Array, visit: BatchEntryVisitor): void {
  const entry: BatchEntryPosition = { flag: 0, bodyStart: 0, bodyEnd: 0, propsStart: 0, propsEnd: 0 }
  for (let at = 0; at < body.length; ) {
    at = readBatchEntry(body, at, entry)
    visit(entry.flag, entry.bodyStart, entry.bodyEnd, entry.propsStart, entry.propsEnd)
  }
}
