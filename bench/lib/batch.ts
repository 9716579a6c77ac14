/**
 * A SEND_BATCH_MESSAGE body of `count` copies of one message (RocketMQ's MessageDecoder batch
 * entry: [totalSize 4][magic 4][bodyCRC 4][flag 4][bodyLength 4][body][propertiesLength 2][properties]),
 * for the benchmarks that produce through a broker.
 */
export function batchBody(body: Buffer, properties: string, count: number): Buffer {
  const p = Buffer.from(properties)
  const one = Buffer.alloc(22 + body.length + p.length)
  one.writeInt32BE(one.length, 0)
  one.writeInt32BE(body.length, 16)
  body.copy(one, 20)
  one.writeInt16BE(p.length, 20 + body.length)
  p.copy(one, 22 + body.length)
  return Buffer.concat(Array.from({ length: count }, () => one))
}
