/**
 * Remoting frame codec, both directions, both header serializations.
 *
 * Frame (big-endian):
 *
 *   | length (4) | serializeType (1) | headerLength (3) | header (headerLength) | body |
 *
 *   length        = 4 + headerLength + bodyLength; it does not count itself
 *   serializeType = 0 JSON, 1 ROCKETMQ
 *
 * JSON header: UTF-8 text of an object with keys code, extFields, flag, language (enum name),
 * opaque, remark (omitted when null), serializeTypeCurrentRPC ("JSON"), version. Decoding ignores
 * unknown keys and accepts `language` as a name or a number.
 *
 * ROCKETMQ header:
 *
 *   | code (2) | language (1) | version (2) | opaque (4) | flag (4) |
 *   | remarkLength (4) | remark (remarkLength, UTF-8; 0 = null) |
 *   | extLength (4) | entries (extLength) |
 *   entry = | keyLength (2) | key | valueLength (4) | value |
 *
 * `code` and `version` are signed shorts here, so codes above 32767 only travel as JSON.
 * A zero-length extFields value decodes as '' (RocketMQ decodes it as null, which a
 * string-to-string map cannot hold).
 */
import { LanguageCode, languageName, parseLanguage } from './codes.js'
import { RemotingCommand, SerializeType } from './command.js'
import { TransportError } from './errors.js'

export const FRAME = {
  length: 0,
  headerWord: 4,
  header: 8,
  /** Bytes before the header. */
  prefixBytes: 8,
} as const

/** The ROCKETMQ header's fixed part, offsets within the header. */
export const BINARY_HEADER = {
  code: 0,
  language: 2,
  version: 3,
  opaque: 5,
  flag: 9,
  remarkLength: 13,
  fixedBytes: 17,
} as const

/** Largest frame accepted, counting the length field itself (RocketMQ's frameMaxLength). */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
export const MAX_HEADER_BYTES = 0xffffff
const SERIALIZE_TYPE_NAMES = ['JSON', 'ROCKETMQ'] as const
const EMPTY_BUFFER = Buffer.alloc(0)

/**
 * Bodies at most this long are copied next to the header so a frame is one buffer; longer ones
 * stay separate to avoid copying them.
 */
export const INLINE_BODY_BYTES = 16 * 1024

// ---------------------------------------------------------------------------------------------
// Headers

/**
 * The JSON header as text. Built by hand in fastjson's key order because this runs for every
 * frame; only the free-form parts (remark, extFields) go through JSON.stringify.
 */
export function encodeJsonHeaderText(cmd: RemotingCommand): string {
  let ext = '{}'
  for (const _ in cmd.extFields) {
    ext = JSON.stringify(cmd.extFields)
    break
  }
  const remark = cmd.remark === null ? '' : `"remark":${JSON.stringify(cmd.remark)},`
  return jsonHeaderHead(cmd) + ext + jsonHeaderTail(cmd, remark)
}

/** The JSON header up to its extFields' value. */
function jsonHeaderHead(cmd: RemotingCommand): string {
  return `{"code":${cmd.code | 0},"extFields":`
}

/** The JSON header after its extFields' value; `remark` is the remark's member and its comma, or ''. */
function jsonHeaderTail(cmd: RemotingCommand, remark: string): string {
  const name = languageName(cmd.language)
  const language = name === undefined ? String(cmd.language | 0) : `"${name}"`
  return `,"flag":${cmd.flag | 0},"language":${language},"opaque":${cmd.opaque | 0},${remark}"serializeTypeCurrentRPC":"JSON","version":${cmd.version | 0}}`
}

/**
 * Text JSON.stringify writes as it is between quotes, one byte per character: printable ASCII
 * without `"` and `\`. Anything else (escapes, non-ASCII, lone surrogates) goes through
 * JSON.stringify.
 */
const PLAIN_JSON_TEXT = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/
/** Printable ASCII; with no `"` and no `\` found by indexOf, the same as PLAIN_JSON_TEXT. */
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/
/** From this length a long text (a batch answer's 32 msgIds) is checked in PLAIN_JSON_TEXT's two halves. */
const LONG_PLAIN_TEXT_CHARS = 64

/**
 * Whether `text` is PLAIN_JSON_TEXT. A long one is checked as printable ASCII and searched for the
 * two characters that class leaves out: V8 runs the simpler class and the searches in about half
 * the time of the class with holes (0.35 against 0.62 µs for 1 KB).
 */
export function isPlainJsonText(text: string): boolean {
  if (text.length < LONG_PLAIN_TEXT_CHARS) return PLAIN_JSON_TEXT.test(text)
  return PRINTABLE_ASCII.test(text) && text.indexOf('"') < 0 && text.indexOf('\\') < 0
}

export function encodeJsonHeader(cmd: RemotingCommand): Buffer {
  return Buffer.from(encodeJsonHeaderText(cmd), 'utf8')
}

export function decodeJsonHeader(header: Buffer): RemotingCommand {
  return decodeCanonicalJsonHeader(header) ?? decodeJsonHeaderGeneric(header)
}

/** Decodes any JSON header through JSON.parse; the reference for decodeCanonicalJsonHeader. */
export function decodeJsonHeaderGeneric(header: Buffer): RemotingCommand {
  let parsed: unknown
  try {
    parsed = JSON.parse(header.toString('utf8'))
  } catch (cause) {
    throw new TransportError('BAD_FRAME', `JSON header does not parse: ${(cause as Error).message}`, { cause })
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new TransportError('BAD_FRAME', 'JSON header is not an object')
  const h = parsed as Record<string, unknown>
  const cmd = new RemotingCommand({ code: jsonInt(h.code, 'code', undefined) })
  if (h.language !== undefined && h.language !== null) {
    const language = parseLanguage(h.language)
    if (language === undefined) throw new TransportError('BAD_FRAME', 'JSON header has an invalid language')
    cmd.language = language
  }
  const remark = h.remark
  if (remark !== undefined && remark !== null && typeof remark !== 'string') throw new TransportError('BAD_FRAME', 'JSON header remark is not a string')
  cmd.version = jsonInt(h.version, 'version', 0)
  cmd.opaque = jsonInt(h.opaque, 'opaque', 0)
  cmd.flag = jsonInt(h.flag, 'flag', 0)
  cmd.remark = (remark as string | null | undefined) ?? null
  cmd.extFields = jsonExtFields(h.extFields)
  cmd.serializeType = SerializeType.JSON
  return cmd
}

// Canonical JSON headers: the exact text encodeJsonHeaderText (and fastjson) writes, read
// straight from the bytes. Anything else (other key order, whitespace, escapes, non-ASCII,
// numbers that are not plain int32s, a "__proto__" key) returns undefined and goes to JSON.parse,
// so the result is always what decodeJsonHeaderGeneric would give.

/** A fixed part of the canonical layout, also as little-endian 32-bit words to compare four bytes at a time. */
interface Literal {
  length: number
  bytes: Buffer
  words: Int32Array
}

function literal(text: string): Literal {
  const bytes = Buffer.from(text, 'latin1')
  const words = new Int32Array(bytes.length >> 2)
  for (let i = 0; i < words.length; i++) words[i] = bytes[4 * i]! | (bytes[4 * i + 1]! << 8) | (bytes[4 * i + 2]! << 16) | (bytes[4 * i + 3]! << 24)
  return { length: bytes.length, bytes, words }
}

const LIT_CODE = literal('{"code":')
const LIT_EXT = literal(',"extFields":{')
const LIT_FLAG = literal(',"flag":')
const LIT_LANGUAGE = literal(',"language":')
const LIT_OPAQUE = literal(',"opaque":')
const LIT_REMARK = literal(',"remark":')
const LIT_VERSION = literal(',"serializeTypeCurrentRPC":"JSON","version":')
const LIT_JAVA = literal('"JAVA"')
const QUOTE = 0x22
const BACKSLASH = 0x5c

/** The one-character strings of printable ASCII, by code: a header's one-letter keys and values (SEND_MESSAGE_V2's). */
const ONE_CHAR: readonly string[] = Array.from({ length: 0x7f }, (_, c) => String.fromCharCode(c))

/**
 * h[start, end) as text, one character per byte; a one-byte text from a table, as most keys and
 * many values of a send's header are (a new string for each was half of its decoding time).
 */
function canonText(h: Buffer, start: number, end: number): string {
  return end - start === 1 ? ONE_CHAR[h[start]!]! : h.toString('latin1', start, end)
}

/** Where the last canonInt or canonString stopped; module state keeps the helpers allocation-free. */
let canonEnd = 0

/** Whether `lit` is at `at` (before `end`). */
function canonLiteral(h: Buffer, at: number, end: number, lit: Literal): boolean {
  const n = lit.length
  if (at + n > end) return false
  // Four bytes per comparison: this runs over most of every header.
  const words = lit.words
  const nWords = words.length
  for (let i = 0; i < nWords; i++) {
    const p = at + 4 * i
    if ((h[p]! | (h[p + 1]! << 8) | (h[p + 2]! << 16) | (h[p + 3]! << 24)) !== words[i]) return false
  }
  const bytes = lit.bytes
  for (let i = nWords * 4; i < n; i++) if (h[at + i] !== bytes[i]) return false
  return true
}

/** An int32 in JSON's integer form at `at`; NaN for anything else, including -0. */
function canonInt(h: Buffer, at: number, end: number): number {
  const negative = at < end && h[at] === 0x2d
  if (negative) at++
  const start = at
  let v = 0
  while (at < end) {
    const c = h[at]!
    if (c < 0x30 || c > 0x39) break
    v = v * 10 + (c - 0x30)
    at++
  }
  const digits = at - start
  if (digits === 0 || digits > 10 || (digits > 1 && h[start] === 0x30)) return NaN
  if (negative) {
    if (v === 0) return NaN
    v = -v
  }
  if (v < -0x80000000 || v > 0x7fffffff) return NaN
  canonEnd = at
  return v
}

/** The end of a string of printable ASCII without escapes at `at` (its closing quote), or -1. */
function canonStringEnd(h: Buffer, at: number, end: number): number {
  if (at >= end || h[at] !== QUOTE) return -1
  at++
  while (at < end) {
    const c = h[at]!
    if (c === QUOTE) return at
    if (c < 0x20 || c > 0x7e || c === BACKSLASH) return -1
    at++
  }
  return -1
}

/** Decodes a header in the canonical layout, or returns undefined for JSON.parse to handle. */
export function decodeCanonicalJsonHeader(h: Buffer): RemotingCommand | undefined {
  return decodeCanonicalJsonHeaderAt(h, 0, h.length)
}

/** decodeCanonicalJsonHeader for the header at h[start, end). */
export function decodeCanonicalJsonHeaderAt(h: Buffer, start: number, end: number): RemotingCommand | undefined {
  let at = start
  if (!canonLiteral(h, at, end, LIT_CODE)) return undefined
  const code = canonInt(h, at + LIT_CODE.length, end)
  if (code !== code) return undefined
  at = canonEnd
  if (!canonLiteral(h, at, end, LIT_EXT)) return undefined
  at += LIT_EXT.length
  const extFields: Record<string, string> = {}
  if (at < end && h[at] === 0x7d) {
    at++
  } else {
    for (;;) {
      const keyEnd = canonStringEnd(h, at, end)
      if (keyEnd < 0 || keyEnd + 1 >= end || h[keyEnd + 1] !== 0x3a) return undefined
      const key = canonText(h, at + 1, keyEnd)
      if (key === '__proto__') return undefined
      at = keyEnd + 2
      const valueEnd = canonStringEnd(h, at, end)
      if (valueEnd < 0) return undefined
      extFields[key] = canonText(h, at + 1, valueEnd)
      at = valueEnd + 1
      if (at >= end) return undefined
      const c = h[at++]
      if (c === 0x7d) break
      if (c !== 0x2c) return undefined
    }
  }
  if (!canonLiteral(h, at, end, LIT_FLAG)) return undefined
  const flag = canonInt(h, at + LIT_FLAG.length, end)
  if (flag !== flag) return undefined
  at = canonEnd
  if (!canonLiteral(h, at, end, LIT_LANGUAGE)) return undefined
  at += LIT_LANGUAGE.length
  let language: number | undefined
  if (canonLiteral(h, at, end, LIT_JAVA)) {
    language = LanguageCode.JAVA
    at += LIT_JAVA.length
  } else if (h[at] === QUOTE) {
    const nameEnd = canonStringEnd(h, at, end)
    if (nameEnd < 0) return undefined
    language = parseLanguage(h.toString('latin1', at + 1, nameEnd))
    at = nameEnd + 1
  } else {
    language = parseLanguage(canonInt(h, at, end))
    at = canonEnd
  }
  if (language === undefined || !canonLiteral(h, at, end, LIT_OPAQUE)) return undefined
  const opaque = canonInt(h, at + LIT_OPAQUE.length, end)
  if (opaque !== opaque) return undefined
  at = canonEnd
  let remark: string | null = null
  if (canonLiteral(h, at, end, LIT_REMARK)) {
    at += LIT_REMARK.length
    const remarkEnd = canonStringEnd(h, at, end)
    if (remarkEnd < 0) return undefined
    remark = h.toString('latin1', at + 1, remarkEnd)
    at = remarkEnd + 1
  }
  if (!canonLiteral(h, at, end, LIT_VERSION)) return undefined
  const version = canonInt(h, at + LIT_VERSION.length, end)
  if (version !== version || canonEnd !== end - 1 || h[canonEnd] !== 0x7d) return undefined
  return new RemotingCommand({ code, language, version, opaque, flag, remark, extFields, serializeType: SerializeType.JSON })
}

function jsonInt(value: unknown, name: string, fallback: number | undefined): number {
  if ((value === undefined || value === null) && fallback !== undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
    throw new TransportError('BAD_FRAME', `JSON header field ${name} is not an int`)
  }
  return value
}

function jsonExtFields(value: unknown): Record<string, string> {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) throw new TransportError('BAD_FRAME', 'JSON header extFields is not an object')
  const map = value as Record<string, unknown>
  // JSON.parse made a plain object (an own "__proto__" key stays a plain key); keep it when
  // every value is already a string, which is the normal case.
  for (const k in map) {
    if (typeof map[k] !== 'string') return coerceExtFields(map)
  }
  return map as Record<string, string>
}

function coerceExtFields(map: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(map)) {
    if (v === null || v === undefined) continue
    // A lenient peer may send numbers or booleans; a Java Map<String,String> would hold their text.
    if (typeof v === 'string') setField(out, k, v)
    else if (typeof v === 'number' || typeof v === 'boolean') setField(out, k, String(v))
    else throw new TransportError('BAD_FRAME', `JSON header extFields.${k} is not a string`)
  }
  return out
}

/** Assigns without letting a peer's `__proto__` key replace the map's prototype. */
function setField(map: Record<string, string>, key: string, value: string): void {
  if (key === '__proto__') Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true })
  else map[key] = value
}

export function encodeBinaryHeader(cmd: RemotingCommand): Buffer {
  if (cmd.code < -0x8000 || cmd.code > 0x7fff) {
    throw new TransportError('ENCODE_FAILED', `code ${cmd.code} does not fit the ROCKETMQ header's short`, { details: { code: cmd.code } })
  }
  if (cmd.version < -0x8000 || cmd.version > 0x7fff) {
    throw new TransportError('ENCODE_FAILED', `version ${cmd.version} does not fit the ROCKETMQ header's short`)
  }
  const remark = cmd.remark === null || cmd.remark === '' ? null : Buffer.from(cmd.remark, 'utf8')
  const entries: Buffer[] = []
  let extBytes = 0
  for (const key in cmd.extFields) {
    const value = cmd.extFields[key]
    if (value === undefined || value === null) continue
    const k = Buffer.from(key, 'utf8')
    if (k.length > 0x7fff) throw new TransportError('ENCODE_FAILED', `extFields key of ${k.length} bytes does not fit a short length`)
    const v = Buffer.from(String(value), 'utf8')
    entries.push(k, v)
    extBytes += 2 + k.length + 4 + v.length
  }
  const total = BINARY_HEADER.fixedBytes + (remark?.length ?? 0) + 4 + extBytes
  const out = Buffer.allocUnsafe(total)
  out.writeInt16BE(cmd.code, BINARY_HEADER.code)
  out.writeUInt8(cmd.language & 0xff, BINARY_HEADER.language)
  out.writeInt16BE(cmd.version, BINARY_HEADER.version)
  out.writeInt32BE(cmd.opaque, BINARY_HEADER.opaque)
  out.writeInt32BE(cmd.flag, BINARY_HEADER.flag)
  let at = BINARY_HEADER.remarkLength
  out.writeInt32BE(remark?.length ?? 0, at)
  at += 4
  if (remark) at += remark.copy(out, at)
  out.writeInt32BE(extBytes, at)
  at += 4
  for (let i = 0; i < entries.length; i += 2) {
    const k = entries[i]!
    const v = entries[i + 1]!
    out.writeInt16BE(k.length, at)
    at += 2
    at += k.copy(out, at)
    out.writeInt32BE(v.length, at)
    at += 4
    at += v.copy(out, at)
  }
  return out
}

export function decodeBinaryHeader(header: Buffer): RemotingCommand {
  return decodeBinaryHeaderAt(header, 0, header.length)
}

/** decodeBinaryHeader for the header at h[start, end). */
export function decodeBinaryHeaderAt(h: Buffer, start: number, end: number): RemotingCommand {
  if (end - start < BINARY_HEADER.fixedBytes) throw new TransportError('BAD_FRAME', `ROCKETMQ header of ${end - start} bytes is shorter than its fixed part`)
  const code = h.readInt16BE(start + BINARY_HEADER.code)
  const language = h[start + BINARY_HEADER.language]!
  const version = h.readInt16BE(start + BINARY_HEADER.version)
  const opaque = h.readInt32BE(start + BINARY_HEADER.opaque)
  const flag = h.readInt32BE(start + BINARY_HEADER.flag)
  let at = start + BINARY_HEADER.remarkLength
  const remarkLength = h.readInt32BE(at)
  at += 4
  if (remarkLength < 0 || remarkLength > end - at) throw new TransportError('BAD_FRAME', `ROCKETMQ remark length ${remarkLength} out of bounds`)
  const remark = remarkLength === 0 ? null : h.toString('utf8', at, at + remarkLength)
  at += remarkLength
  if (end - at < 4) throw new TransportError('BAD_FRAME', 'ROCKETMQ header ends before extFields length')
  const extLength = h.readInt32BE(at)
  at += 4
  if (extLength !== end - at) throw new TransportError('BAD_FRAME', `ROCKETMQ extFields length ${extLength} does not match the ${end - at} bytes left`)
  const extFields: Record<string, string> = {}
  while (at < end) {
    if (end - at < 2) throw new TransportError('BAD_FRAME', 'ROCKETMQ extFields entry truncated at key length')
    const keyLength = h.readInt16BE(at)
    at += 2
    if (keyLength < 0 || keyLength > end - at) throw new TransportError('BAD_FRAME', `ROCKETMQ extFields key length ${keyLength} out of bounds`)
    const key = h.toString('utf8', at, at + keyLength)
    at += keyLength
    if (end - at < 4) throw new TransportError('BAD_FRAME', 'ROCKETMQ extFields entry truncated at value length')
    const valueLength = h.readInt32BE(at)
    at += 4
    if (valueLength < 0 || valueLength > end - at) throw new TransportError('BAD_FRAME', `ROCKETMQ extFields value length ${valueLength} out of bounds`)
    setField(extFields, key, h.toString('utf8', at, at + valueLength))
    at += valueLength
  }
  return new RemotingCommand({ code, language, version, opaque, flag, remark, extFields, serializeType: SerializeType.ROCKETMQ })
}

// ---------------------------------------------------------------------------------------------
// Frames

/** JSON header shapes an encoder remembers; see FrameEncoder. */
export const JSON_SHAPE_CACHE_SIZE = 8

/**
 * A JSON header without remark and extFields, minus its opaque: `prefix` runs up to and
 * including `"opaque":`, `suffix` is the rest. Such headers (heartbeats, plain responses) differ
 * only in opaque, so their bytes are built once.
 */
interface JsonShape {
  code: number
  flag: number
  language: number
  version: number
  prefix: Uint8Array
  suffix: Uint8Array
}

const HEADER_JSON_SHAPE = 0
const HEADER_JSON_TEXT = 1
const HEADER_BINARY_FIXED = 2
const HEADER_BINARY = 3
const HEADER_JSON_PLAIN = 4
const NO_KEYS: readonly string[] = []

/**
 * Encodes frames into buffers the caller provides, in two steps so that nothing is written
 * unless the whole frame can be: `prepare(cmd)` checks and measures the frame (and throws
 * ENCODE_FAILED or FRAME_TOO_LARGE), then `writeHead(target, at)` writes `headBytes` bytes: the
 * length, the header word, the header and, unless `separateBody` is set, the body. A large body is
 * left in `separateBody`, to be written after the head without being copied.
 *
 * The prepared frame refers to the command until writeHead(); write it before the next prepare().
 * Read `separateBody` before writeHead(), which lets go of it.
 */
export class FrameEncoder {
  /** Total frame bytes, length field included. */
  frameBytes = 0
  /** Bytes writeHead() writes. */
  headBytes = 0
  /** A body too large to copy next to the header, or undefined. */
  separateBody: Buffer | undefined = undefined
  /** A body in parts (RemotingCommand.bodyParts) too large to copy next to the header, or undefined. */
  separateParts: readonly Buffer[] | undefined = undefined
  private kind = HEADER_JSON_SHAPE
  private typeByte = 0
  private headerLength = 0
  private body: Buffer = EMPTY_BUFFER
  private parts: readonly Buffer[] | undefined = undefined
  private cmd: RemotingCommand | undefined = undefined
  private shape: JsonShape | undefined = undefined
  private opaque = 0
  private opaqueDigits = 0
  private text = ''
  /** HEADER_JSON_PLAIN: the text after extFields' value (`text` holds the text before it). */
  private tail = ''
  /** HEADER_JSON_PLAIN: extFields' keys, in JSON.stringify's order. */
  private plainKeys: readonly string[] = NO_KEYS
  private binary: Buffer = EMPTY_BUFFER
  private readonly shapes: JsonShape[] = []
  private nextShape = 0

  /** Checks and measures `cmd`'s frame; returns frameBytes. */
  prepare(cmd: RemotingCommand, defaultSerializeType: SerializeType = SerializeType.JSON, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): number {
    const type = cmd.serializeType ?? defaultSerializeType
    let headerLength: number
    if (type === SerializeType.ROCKETMQ) {
      if (isEmptyMap(cmd.extFields) && (cmd.remark === null || cmd.remark === '') && fitsInt32Write(cmd.opaque) && fitsInt32Write(cmd.flag)) {
        checkBinaryShorts(cmd)
        this.kind = HEADER_BINARY_FIXED
        headerLength = BINARY_HEADER.fixedBytes + 4
      } else {
        this.binary = encodeBinaryHeader(cmd)
        this.kind = HEADER_BINARY
        headerLength = this.binary.length
      }
    } else if (cmd.remark === null && isEmptyMap(cmd.extFields)) {
      const shape = this.jsonShape(cmd)
      const opaque = cmd.opaque | 0
      this.kind = HEADER_JSON_SHAPE
      this.shape = shape
      this.opaque = opaque
      this.opaqueDigits = decimalDigits(opaque)
      headerLength = shape.prefix.length + this.opaqueDigits + shape.suffix.length
    } else {
      headerLength = this.preparePlainJson(cmd)
      if (headerLength < 0) {
        this.text = encodeJsonHeaderText(cmd)
        this.kind = HEADER_JSON_TEXT
        headerLength = Buffer.byteLength(this.text, 'utf8')
      }
    }
    if (headerLength > MAX_HEADER_BYTES) throw new TransportError('FRAME_TOO_LARGE', `header of ${headerLength} bytes exceeds 24-bit length`)
    const parts = cmd.bodyParts
    const body = parts === undefined ? cmd.body : EMPTY_BUFFER
    const bodyLength = parts === undefined ? body.length : cmd.bodyLength
    const frameBytes = FRAME.prefixBytes + headerLength + bodyLength
    if (frameBytes > maxFrameBytes) {
      throw new TransportError('FRAME_TOO_LARGE', `frame of ${frameBytes} bytes exceeds ${maxFrameBytes}`, { details: { frameBytes, maxFrameBytes } })
    }
    this.cmd = cmd
    this.typeByte = type & 0xff
    this.headerLength = headerLength
    this.body = body
    this.parts = parts
    this.frameBytes = frameBytes
    this.separateBody = undefined
    this.separateParts = undefined
    if (bodyLength <= INLINE_BODY_BYTES) {
      this.headBytes = frameBytes
    } else {
      this.headBytes = FRAME.prefixBytes + headerLength
      if (parts === undefined) this.separateBody = body
      else this.separateParts = parts
    }
    return frameBytes
  }

  /** Writes the prepared frame's head at target[at, at + headBytes). */
  writeHead(target: Buffer, at: number): void {
    const length = this.frameBytes - 4
    target[at] = length >>> 24
    target[at + 1] = length >>> 16
    target[at + 2] = length >>> 8
    target[at + 3] = length
    const headerLength = this.headerLength
    target[at + 4] = this.typeByte
    target[at + 5] = headerLength >>> 16
    target[at + 6] = headerLength >>> 8
    target[at + 7] = headerLength
    let p = at + FRAME.header
    switch (this.kind) {
      case HEADER_JSON_SHAPE: {
        const shape = this.shape!
        target.set(shape.prefix, p)
        p += shape.prefix.length
        writeDecimal(target, p, this.opaque, this.opaqueDigits)
        target.set(shape.suffix, p + this.opaqueDigits)
        break
      }
      case HEADER_JSON_TEXT:
        target.write(this.text, p, headerLength, 'utf8')
        break
      case HEADER_JSON_PLAIN:
        this.writePlainJson(target, p)
        break
      case HEADER_BINARY_FIXED:
        writeBinaryFixed(target, p, this.cmd!)
        break
      default:
        target.set(this.binary, p)
    }
    if (this.headBytes === this.frameBytes) {
      let b = at + FRAME.header + headerLength
      const parts = this.parts
      if (parts === undefined) {
        if (this.body.length > 0) target.set(this.body, b)
      } else {
        for (let i = 0; i < parts.length; i++) {
          target.set(parts[i]!, b)
          b += parts[i]!.length
        }
      }
    }
    // Hold nothing of the command once written: an idle connection's encoder keeps no body alive.
    this.cmd = undefined
    this.body = EMPTY_BUFFER
    this.parts = undefined
    this.separateBody = undefined
    this.separateParts = undefined
    this.text = ''
    this.tail = ''
    this.plainKeys = NO_KEYS
    this.binary = EMPTY_BUFFER
  }

  /** The prepared frame as one new buffer, or a head buffer and the large body (or its parts). */
  toParts(): Buffer[] {
    const head = Buffer.allocUnsafe(this.headBytes)
    const body = this.separateBody
    const parts = this.separateParts
    this.writeHead(head, 0)
    if (parts !== undefined) return [head, ...parts]
    return body === undefined ? [head] : [head, body]
  }

  /**
   * A JSON header whose extFields and remark are plain text (PLAIN_JSON_TEXT, as a send's answer
   * with its 32 msgIds): measured here and written by writePlainJson straight into the frame, the
   * same bytes as encodeJsonHeaderText without JSON.stringify, a joined string and a UTF-8 pass.
   * Returns the header's length, or -1 (nothing kept) when a part needs JSON.stringify.
   */
  private preparePlainJson(cmd: RemotingCommand): number {
    const remark = cmd.remark
    if (remark !== null && (typeof remark !== 'string' || !isPlainJsonText(remark))) return -1
    const ext = cmd.extFields
    // Object.keys: own enumerable keys in the order JSON.stringify writes them.
    const keys = Object.keys(ext)
    // '{' and '}', a comma between entries, and per entry its four quotes and the colon.
    let length = keys.length === 0 ? 2 : 1 + keys.length * 6
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!
      const value = ext[key]
      if (typeof value !== 'string' || !PLAIN_JSON_TEXT.test(key) || !isPlainJsonText(value)) return -1
      length += key.length + value.length
    }
    this.plainKeys = keys
    this.text = jsonHeaderHead(cmd)
    this.tail = jsonHeaderTail(cmd, remark === null ? '' : `"remark":"${remark}",`)
    this.kind = HEADER_JSON_PLAIN
    return this.text.length + length + this.tail.length
  }

  /** Writes the header preparePlainJson measured at target[at...]: every part one byte per character. */
  private writePlainJson(target: Buffer, at: number): void {
    at = writeLatin1(target, at, this.text)
    target[at++] = 0x7b // {
    // The command is held until written; its extFields are the ones measured.
    const ext = this.cmd!.extFields
    const keys = this.plainKeys
    for (let i = 0; i < keys.length; i++) {
      if (i > 0) target[at++] = 0x2c // ,
      const key = keys[i]!
      target[at++] = QUOTE
      at = writeLatin1(target, at, key)
      target[at] = QUOTE
      target[at + 1] = 0x3a // :
      target[at + 2] = QUOTE
      at += 3
      at = writeLatin1(target, at, ext[key]!)
      target[at++] = QUOTE
    }
    target[at++] = 0x7d // }
    writeLatin1(target, at, this.tail)
  }

  private jsonShape(cmd: RemotingCommand): JsonShape {
    const { code, flag, language, version } = cmd
    const shapes = this.shapes
    for (let i = 0; i < shapes.length; i++) {
      const s = shapes[i]!
      if (s.code === code && s.flag === flag && s.language === language && s.version === version) return s
    }
    // Built by encodeJsonHeaderText itself, so both paths always write the same bytes.
    // opaque 0: one digit, which the prefix cuts off just before the suffix.
    const model = new RemotingCommand({ code: 0, opaque: 0 })
    model.code = code
    model.flag = flag
    model.language = language
    model.version = version
    const marker = encodeJsonHeaderText(model)
    const at = marker.indexOf(',"serializeTypeCurrentRPC":')
    const prefix = Buffer.from(marker.slice(0, at - 1), 'latin1')
    const shape: JsonShape = { code, flag, language, version, prefix, suffix: Buffer.from(marker.slice(at), 'latin1') }
    if (shapes.length < JSON_SHAPE_CACHE_SIZE) shapes.push(shape)
    else shapes[this.nextShape] = shape
    this.nextShape = (this.nextShape + 1) % JSON_SHAPE_CACHE_SIZE
    return shape
  }
}

/** Below this many characters a loop writes a one-byte-per-character text faster than Buffer.write's native call. */
const SHORT_LATIN1_CHARS = 32

/** Writes `text` (each character below 256) at target[at...] one byte per character; returns where it ends. */
function writeLatin1(target: Buffer, at: number, text: string): number {
  const n = text.length
  if (n >= SHORT_LATIN1_CHARS) return at + target.write(text, at, 'latin1')
  for (let i = 0; i < n; i++) target[at + i] = text.charCodeAt(i)
  return at + n
}

/** True when encoding `map` writes no entries (no enumerable keys at all). */
function isEmptyMap(map: Record<string, string> | null | undefined): boolean {
  for (const _ in map) return false
  return true
}

function checkBinaryShorts(cmd: RemotingCommand): void {
  if (cmd.code < -0x8000 || cmd.code > 0x7fff) {
    throw new TransportError('ENCODE_FAILED', `code ${cmd.code} does not fit the ROCKETMQ header's short`, { details: { code: cmd.code } })
  }
  if (cmd.version < -0x8000 || cmd.version > 0x7fff) {
    throw new TransportError('ENCODE_FAILED', `version ${cmd.version} does not fit the ROCKETMQ header's short`)
  }
}

/** The ROCKETMQ header of a command without remark and extFields: the fixed part and two zero lengths. */
function writeBinaryFixed(target: Buffer, at: number, cmd: RemotingCommand): void {
  // Byte stores as Buffer's writeInt16BE/writeInt32BE make them; prepare() did their range checks.
  const { code, version, opaque, flag } = cmd
  target[at] = code >>> 8
  target[at + 1] = code
  target[at + 2] = cmd.language & 0xff
  target[at + 3] = version >>> 8
  target[at + 4] = version
  target[at + 5] = opaque >>> 24
  target[at + 6] = opaque >>> 16
  target[at + 7] = opaque >>> 8
  target[at + 8] = opaque
  target[at + 9] = flag >>> 24
  target[at + 10] = flag >>> 16
  target[at + 11] = flag >>> 8
  target[at + 12] = flag
  // remarkLength and extLength: both 0
  for (let i = BINARY_HEADER.remarkLength; i < BINARY_HEADER.fixedBytes + 4; i++) target[at + i] = 0
}

/** Whether Buffer's writeInt32BE accepts `v` (it rejects only values outside int32's range). */
function fitsInt32Write(v: number): boolean {
  return !(v > 0x7fffffff || v < -0x80000000)
}

/** Characters of an int32 in decimal, sign included. */
function decimalDigits(v: number): number {
  let n = 1
  if (v < 0) {
    n = 2
    v = -v
  }
  while (v >= 10) {
    v = Math.floor(v / 10)
    n++
  }
  return n
}

function writeDecimal(target: Buffer, at: number, v: number, digits: number): void {
  let end = at + digits
  if (v < 0) {
    target[at] = 0x2d
    v = -v
  }
  do {
    const q = Math.floor(v / 10)
    target[--end] = 0x30 + (v - q * 10)
    v = q
  } while (v > 0)
}

const sharedEncoder = new FrameEncoder()

/**
 * Encodes `cmd` as one frame, as one buffer or (for a large body) a prefix+header buffer and the
 * body itself, ready for writev. `serializeType` applies when the command names none.
 */
export function encodeFrameParts(cmd: RemotingCommand, defaultSerializeType: SerializeType = SerializeType.JSON, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Buffer[] {
  sharedEncoder.prepare(cmd, defaultSerializeType, maxFrameBytes)
  return sharedEncoder.toParts()
}

/** Encodes `cmd` as one contiguous frame. */
export function encodeFrame(cmd: RemotingCommand, defaultSerializeType: SerializeType = SerializeType.JSON, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Buffer {
  const parts = encodeFrameParts(cmd, defaultSerializeType, maxFrameBytes)
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
}

/**
 * Decodes a frame's content: everything after the length field. The body is a view into
 * `content`, not a copy.
 */
export function decodeFrameContent(content: Buffer): RemotingCommand {
  return decodeFrameContentAt(content, 0, content.length)
}

/** decodeFrameContent for the content at buf[start, end), without a view per frame. */
export function decodeFrameContentAt(buf: Buffer, start: number, end: number): RemotingCommand {
  if (end - start < 4) throw new TransportError('BAD_FRAME', `frame of ${end - start} bytes has no header word`)
  const word = buf.readUInt32BE(start)
  const type = word >>> 24
  const headerLength = word & 0xffffff
  const headerStart = start + 4
  const headerEnd = headerStart + headerLength
  if (headerEnd > end) {
    throw new TransportError('BAD_FRAME', `header length ${headerLength} exceeds the frame's ${end - headerStart} bytes`)
  }
  let cmd: RemotingCommand
  if (type === SerializeType.JSON) cmd = decodeCanonicalJsonHeaderAt(buf, headerStart, headerEnd) ?? decodeJsonHeaderGeneric(buf.subarray(headerStart, headerEnd))
  else if (type === SerializeType.ROCKETMQ) cmd = decodeBinaryHeaderAt(buf, headerStart, headerEnd)
  else throw new TransportError('BAD_FRAME', `unknown serialize type ${type}`)
  cmd.body = headerEnd === end ? EMPTY_BUFFER : buf.subarray(headerEnd, end)
  return cmd
}

/** Decodes one whole frame, length field included; the length must match the buffer exactly. */
export function decodeFrame(frame: Buffer, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): RemotingCommand {
  if (frame.length < 4) throw new TransportError('BAD_FRAME', 'frame shorter than its length field')
  const length = checkLength(frame.readInt32BE(0), maxFrameBytes)
  if (length + 4 !== frame.length) throw new TransportError('BAD_FRAME', `length field ${length} does not match ${frame.length - 4} bytes`)
  return decodeFrameContent(frame.subarray(4))
}

export function serializeTypeName(type: number): string {
  return SERIALIZE_TYPE_NAMES[type] ?? `UNKNOWN(${type})`
}

function checkLength(length: number, maxFrameBytes: number): number {
  if (length < 4) throw new TransportError('BAD_FRAME', `length field ${length} is below the 4-byte minimum`)
  if (length > maxFrameBytes - 4) {
    throw new TransportError('FRAME_TOO_LARGE', `frame of ${length + 4} bytes exceeds ${maxFrameBytes}`, { details: { frameBytes: length + 4, maxFrameBytes } })
  }
  return length
}

/**
 * Incremental decoder for a byte stream of frames: takes chunks split anywhere and yields whole
 * commands. A partial frame is kept as a list of chunks and joined once, when complete, so a
 * large frame arriving in many small chunks costs one copy rather than one per chunk.
 * After an error the decoder is unusable; the caller closes the connection.
 */
export class FrameDecoder {
  // Replaced rather than emptied (setting an array's length is a runtime call, once per frame here).
  private chunks: Buffer[] = []
  private buffered = 0
  /** Total bytes of the frame at the head of `chunks`, or -1 until its length field is in. */
  private frameBytes = -1
  private failed = false

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes held for an incomplete frame. */
  get pendingBytes(): number {
    return this.buffered
  }

  /** The whole length of the incomplete frame held, once its length field is in; else -1. */
  get pendingFrameBytes(): number {
    return this.buffered === 0 ? -1 : this.frameBytes
  }

  /** Feeds a chunk; calls `onCommand` for each complete frame in order. Throws TransportError on bad input. */
  push(chunk: Buffer, onCommand: (cmd: RemotingCommand) => void): void {
    if (this.failed) throw new TransportError('BAD_FRAME', 'decoder already failed')
    try {
      if (this.buffered === 0) {
        this.drain(chunk, onCommand)
        return
      }
      // `tail`: the last of the held chunks, which may now run past the pending frame.
      const last = this.chunks[this.chunks.length - 1]!
      let tail: Buffer
      if (last.buffer === chunk.buffer && last.byteOffset + last.length === chunk.byteOffset) {
        // The chunk continues the last one in memory (reads into one arena): one view of both.
        tail = Buffer.from(last.buffer, last.byteOffset, last.length + chunk.length)
        this.chunks[this.chunks.length - 1] = tail
      } else {
        tail = chunk
        this.chunks.push(chunk)
      }
      this.buffered += chunk.length
      if (this.frameBytes < 0 && this.buffered >= 4) this.frameBytes = checkLength(this.peekLength(), this.maxFrameBytes) + 4
      if (this.frameBytes >= 0 && this.buffered >= this.frameBytes) {
        // Only the last chunk can run past the pending frame. Join just the frame's bytes and
        // decode the rest of the chunk in place, instead of copying the whole chunk along.
        const frameBytes = this.frameBytes
        const fromTail = frameBytes - (this.buffered - tail.length)
        let frame: Buffer
        if (this.chunks.length === 1) {
          frame = tail.subarray(0, frameBytes)
        } else {
          this.chunks[this.chunks.length - 1] = tail.subarray(0, fromTail)
          frame = Buffer.concat(this.chunks, frameBytes)
        }
        this.chunks = []
        this.buffered = 0
        this.frameBytes = -1
        this.drain(frame, onCommand)
        if (fromTail < tail.length) this.drain(tail.subarray(fromTail), onCommand)
      }
    } catch (err) {
      this.failed = true
      this.chunks = []
      this.buffered = 0
      throw err
    }
  }

  private drain(buf: Buffer, onCommand: (cmd: RemotingCommand) => void): void {
    let at = 0
    while (buf.length - at >= 4) {
      const length = checkLength(buf.readInt32BE(at), this.maxFrameBytes)
      if (buf.length - at - 4 < length) break
      const cmd = decodeFrameContentAt(buf, at + 4, at + 4 + length)
      at += 4 + length
      onCommand(cmd)
    }
    if (at < buf.length) {
      const rest = buf.subarray(at)
      this.chunks.push(rest)
      this.buffered = rest.length
      this.frameBytes = rest.length >= 4 ? rest.readInt32BE(0) + 4 : -1
    }
  }

  private peekLength(): number {
    const first = this.chunks[0]!
    if (first.length >= 4) return first.readInt32BE(0)
    const head = Buffer.concat(this.chunks, this.buffered).subarray(0, 4)
    return head.readInt32BE(0)
  }
}
