/**
 * SEND_BATCH_MESSAGE's body (RocketMQ's MessageDecoder batch entries) and its answer's msgId.
 *
 *   entry = | totalSize 4 | magic 4 | bodyCRC 4 | flag 4 | bodyLength 4 | body | propertiesLength 2 | properties |
 *
 * The broker's path builds the store's puts straight from the request's bytes: one pass, each
 * message's body a view of the request (no copy), its properties the text the client encoded
 * (no decode into an object and re-encode: the store checks them as it checks an object's).
 */
import type { PutMessage, PutResult } from '@mqts/store'
import { BATCH_ENTRY_FIXED_BYTES } from '../protocol.js'

/** Where the fields of one entry are in the body. */
interface EntryVisitor {
  (flag: number, bodyStart: number, bodyEnd: number, propsStart: number, propsEnd: number): void
}

/** Walks the entries of a batch body, checking each one's lengths; throws an Error naming the bad entry. */
function walkBatchBody(body: Buffer, visit: EntryVisitor): void {
  let at = 0
  while (at < body.length) {
    if (body.length - at < BATCH_ENTRY_FIXED_BYTES) throw new Error(`batch entry at byte ${at} is truncated`)
    const total = body.readInt32BE(at)
    const flag = body.readInt32BE(at + 12)
    const bodyLength = body.readInt32BE(at + 16)
    const bodyStart = at + 20
    if (bodyLength < 0 || bodyStart + bodyLength + 2 > body.length) throw new Error(`batch entry at byte ${at} has a body length ${bodyLength} past the end`)
    const propsLength = body.readInt16BE(bodyStart + bodyLength)
    const propsStart = bodyStart + bodyLength + 2
    if (propsLength < 0 || propsStart + propsLength > body.length) throw new Error(`batch entry at byte ${at} has a properties length ${propsLength} past the end`)
    if (total !== propsStart + propsLength - at) throw new Error(`batch entry at byte ${at} says ${total} bytes, its fields take ${propsStart + propsLength - at}`)
    visit(flag, bodyStart, bodyStart + bodyLength, propsStart, propsStart + propsLength)
    at += total
  }
}

/** The stored messages of a SEND_BATCH_MESSAGE body (RocketMQ's MessageDecoder.decodesBatch). */
export function decodeBatchBody(body: Buffer): Array<{ flag: number; body: Buffer; properties: string }> {
  const out: Array<{ flag: number; body: Buffer; properties: string }> = []
  walkBatchBody(body, (flag, bodyStart, bodyEnd, propsStart, propsEnd) => {
    out.push({ flag, body: body.subarray(bodyStart, bodyEnd), properties: body.toString('utf8', propsStart, propsEnd) })
  })
  return out
}

/** What every message of one batch shares: the request header's fields and the producer's address. */
export interface BatchCommon {
  topic: string
  queueId: number
  sysFlag: number
  bornTimestamp: number
  bornHost: string
  reconsumeTimes: number
}

/**
 * The store's puts of a batch body, built in one pass: each body a view of the request's bytes
 * (a plain Uint8Array, cheaper to make than a Buffer's subarray), each properties text as encoded.
 */
export function batchPuts(body: Buffer, common: BatchCommon): PutMessage[] {
  const out: PutMessage[] = []
  const bytes = body.buffer
  const base = body.byteOffset
  walkBatchBody(body, (flag, bodyStart, bodyEnd, propsStart, propsEnd) => {
    out.push({
      topic: common.topic,
      queueId: common.queueId,
      body: new Uint8Array(bytes, base + bodyStart, bodyEnd - bodyStart),
      propertiesText: body.toString('utf8', propsStart, propsEnd),
      flag,
      sysFlag: common.sysFlag,
      bornTimestamp: common.bornTimestamp,
      bornHost: common.bornHost,
      reconsumeTimes: common.reconsumeTimes,
    })
  })
  return out
}

/** A batch answer's msgId: the stored messages' offset message ids joined with commas, as RocketMQ answers it. */
export function batchMsgIds(results: readonly PutResult[]): string {
  let ids = results[0]!.msgId
  for (let i = 1; i < results.length; i++) ids += ',' + results[i]!.msgId
  return ids
}
