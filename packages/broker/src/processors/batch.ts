/**
 * SEND_BATCH_MESSAGE's body (RocketMQ's MessageDecoder batch entries) and its answer's msgId.
 *
 *   entry = | totalSize 4 | magic 4 | bodyCRC 4 | flag 4 | bodyLength 4 | body | propertiesLength 2 | properties |
 *
 * The broker's send path hands the request's bytes to the store as they are (putEncodedBatch:
 * each message's body and properties copied from them, not decoded and re-encoded).
 */
import type { PutResult } from '@mqts/store'
import { joinOffsetMessageIds, walkBatchBody } from '@mqts/message'

/** The stored messages of a SEND_BATCH_MESSAGE body (RocketMQ's MessageDecoder.decodesBatch). */
export function decodeBatchBody(body: Buffer): Array<{ flag: number; body: Buffer; properties: string }> {
  const out: Array<{ flag: number; body: Buffer; properties: string }> = []
  walkBatchBody(body, (flag, bodyStart, bodyEnd, propsStart, propsEnd) => {
    out.push({ flag, body: body.subarray(bodyStart, bodyEnd), properties: body.toString('utf8', propsStart, propsEnd) })
  })
  return out
}

/**
 * A batch answer's msgId: the stored messages' offset message ids joined with commas, as RocketMQ
 * answers it (joinOffsetMessageIds).
 */
export function batchMsgIds(results: readonly PutResult[]): string {
  return joinOffsetMessageIds(results)
}
