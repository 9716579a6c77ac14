/**
 * JSON bodies as RocketMQ's Java components write them (fastjson): standard JSON, except that a
 * map with numeric keys may be written with the keys unquoted (`{"brokerAddrs":{0:"a:1"}}`,
 * apache/rocketmq issue #1445). parseRemotingJson reads both; encodeRemotingJson writes standard
 * JSON, which every RocketMQ client reads (Java's fastjson, ali-ons' json2).
 */
import { TransportError } from './errors.js'

/** Parses a JSON body, accepting fastjson's unquoted integer map keys. BAD_BODY when neither parses. */
export function parseRemotingJson(body: Buffer | string): unknown {
  const text = typeof body === 'string' ? body : body.toString('utf8')
  try {
    return JSON.parse(text)
  } catch (first) {
    const quoted = quoteBareNumericKeys(text)
    if (quoted !== text) {
      try {
        return JSON.parse(quoted)
      } catch {
        // Report the first error: the text is not JSON either way.
      }
    }
    throw new TransportError('BAD_BODY', `body is not JSON: ${(first as Error).message}`, { cause: first })
  }
}

/** A body as standard JSON text, in UTF-8. */
export function encodeRemotingJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8')
}

/**
 * Puts quotes around object keys that are bare integers (`{0:` or `, -1 :`), outside strings.
 * Anything else is left as it is, for JSON.parse to judge.
 */
function quoteBareNumericKeys(text: string): string {
  let out = ''
  let copiedTo = 0
  let inString = false
  // Whether the next non-space character would start an object key.
  let keyExpected = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
      continue
    }
    if (c === 0x22) {
      inString = true
      keyExpected = false
    } else if (c === 0x7b || c === 0x2c) {
      // '{' or ',': a key may follow (inside an array a ',' is followed by a value, which a bare
      // number followed by ':' never is in valid input).
      keyExpected = true
    } else if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) {
      // whitespace keeps the state
    } else if (keyExpected && (c === 0x2d || (c >= 0x30 && c <= 0x39))) {
      let j = i + 1
      while (j < text.length && text.charCodeAt(j) >= 0x30 && text.charCodeAt(j) <= 0x39) j++
      let k = j
      while (k < text.length && /\s/.test(text[k]!)) k++
      if (text[k] === ':') {
        out += text.slice(copiedTo, i) + '"' + text.slice(i, j) + '"'
        copiedTo = j
      }
      i = j - 1
      keyExpected = false
    } else {
      keyExpected = false
    }
  }
  return copiedTo === 0 ? text : out + text.slice(copiedTo)
}
