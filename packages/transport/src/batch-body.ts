/**
 * SEND_BATCH_MESSAGE's body as RocketMQ 4.x clients write it (MessageDecoder.encodeMessages): one
 * entry per message, | totalSize 4 | magic 4 | bodyCRC 4 | flag 4 | bodyLength 4 | body |
 * propertiesLength 2 | properties |, big-endian; the broker ignores magic and bodyCRC (written 0).
 * The encoder lives here once for the client, the broker's tests and the benchmarks; the broker
 * decodes with its own reader (processors/send.ts).
 */

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

/** The body of a SEND_BATCH_MESSAGE holding `entries` in order. */
export function encodeBatchBody(entries: readonly BatchEntry[]): Buffer {
  const parts: Buffer[] = []
  for (const e of entries) {
    const props = Buffer.from(e.properties, 'utf8')
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
