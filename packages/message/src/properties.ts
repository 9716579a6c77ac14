/** Message properties as RocketMQ stores them: name 0x01 value 0x02, repeated. */

export const PROPERTY_NAME_VALUE_SEPARATOR = '\u0001'
export const PROPERTY_SEPARATOR = '\u0002'
/** Message properties (RocketMQ 4.x MessageConst) mqts reads or writes; the one list for every package. */
export const PROPERTY = {
  KEYS: 'KEYS',
  TAGS: 'TAGS',
  UNIQ_KEY: 'UNIQ_KEY',
  WAIT: 'WAIT',
  /** Delay level of a scheduled message (RocketMQ's PROPERTY_DELAY_TIME_LEVEL), a Java int. */
  DELAY: 'DELAY',
  /** Topic and queue id a scheduled message is delivered to once due (codec/schedule.ts). */
  REAL_TOPIC: 'REAL_TOPIC',
  REAL_QID: 'REAL_QID',
  RETRY_TOPIC: 'RETRY_TOPIC',
  TRANSACTION_PREPARED: 'TRAN_MSG',
  PRODUCER_GROUP: 'PGROUP',
  MIN_OFFSET: 'MIN_OFFSET',
  MAX_OFFSET: 'MAX_OFFSET',
  RECONSUME_TIME: 'RECONSUME_TIME',
  MAX_RECONSUME_TIMES: 'MAX_RECONSUME_TIMES',
  ORIGIN_MESSAGE_ID: 'ORIGIN_MESSAGE_ID',
  CONSUME_START_TIMESTAMP: 'CONSUME_START_TIME',
  CLUSTER: 'CLUSTER',
  MSG_REGION: 'MSG_REGION',
  TRACE_SWITCH: 'TRACE_ON',
} as const
/** The properties length is a Java short. */
export const MAX_PROPERTIES_BYTES = 32767

export function encodeProperties(properties: Record<string, string>): string {
  let out = ''
  for (const name in properties) {
    const value = properties[name]
    if (value === undefined || value === null) continue
    out += name + PROPERTY_NAME_VALUE_SEPARATOR + value + PROPERTY_SEPARATOR
  }
  return out
}

/** RocketMQ's string2messageProperties: segments shorter than 3 chars or without a name and a value are ignored. */
export function decodeProperties(text: string): Record<string, string> {
  const map: Record<string, string> = {}
  const len = text.length
  let index = 0
  while (index < len) {
    let next = text.indexOf(PROPERTY_SEPARATOR, index)
    if (next < 0) next = len
    if (next - index >= 3) {
      const sep = text.indexOf(PROPERTY_NAME_VALUE_SEPARATOR, index)
      if (sep > index && sep < next - 1) {
        const name = text.slice(index, sep)
        // "__proto__" is a name like any other here, not the object's prototype.
        if (name === '__proto__') Object.defineProperty(map, name, { value: text.slice(sep + 1, next), enumerable: true, writable: true, configurable: true })
        else map[name] = text.slice(sep + 1, next)
      }
    }
    index = next + 1
  }
  return map
}

