/**
 * SEND_BATCH_MESSAGE's body (RocketMQ's MessageDecoder batch entries) and its answer's msgId.
 *
 *   entry = | totalSize 4 | magic 4 | bodyCRC 4 | flag 4 | bodyLength 4 | body | propertiesLength 2 | properties |
 *
 * The broker's path builds the store's puts straight from the request's bytes: one pass, each
 * message's body and its properties views of the request (no copy; the properties' bytes are
 * not decoded and re-encoded: the store checks them as it checks an object's and copies them).
 */
import type { PutMessage, PutResult } from '@mqts/store'
import { walkBatchBody } from '@mqts/transport'
import { joinOffsetMessageIds } from '@mqts/message'

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
 * The store's puts of a batch body, built in one pass: each body and each properties a view of the
 * request's bytes (a plain Uint8Array, cheaper to make than a Buffer's subarray).
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
      propertiesBytes: new Uint8Array(bytes, base + propsStart, propsEnd - propsStart),
      flag,
      sysFlag: common.sysFlag,
      bornTimestamp: common.bornTimestamp,
      bornHost: common.bornHost,
      reconsumeTimes: common.reconsumeTimes,
    })
  })
  return out
}

/**
 * A batch answer's msgId: the stored messages' offset message ids joined with commas, as RocketMQ
 * answers it (written as bytes into one flat string: joinOffsetMessageIds).
 */
export function batchMsgIds(results: readonly PutResult[]): string {
  return joinOffsetMessageIds(results)
}
