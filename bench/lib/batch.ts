/**
 * A SEND_BATCH_MESSAGE body of `count` copies of one message (@mqts/transport's encoder, the
 * client's), for the benchmarks that produce through a broker.
 */
import { encodeBatchBody } from '@mqts/transport'

export function batchBody(body: Buffer, properties: string, count: number): Buffer {
  return encodeBatchBody(Array.from({ length: count }, () => ({ body, flag: 0, properties })))
}
