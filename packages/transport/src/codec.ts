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
import { languageName, parseLanguage } from './codes.js'
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
  const name = languageName(cmd.language)
  const language = name === undefined ? String(cmd.language | 0) : `"${name}"`
  let ext = '{}'
  for (const _ in cmd.extFields) {
    ext = JSON.stringify(cmd.extFields)
    break
  }
  const remark = cmd.remark === null ? '' : `"remark":${JSON.stringify(cmd.remark)},`
  return `{"code":${cmd.code | 0},"extFields":${ext},"flag":${cmd.flag | 0},"language":${language},"opaque":${cmd.opaque | 0},${remark}"serializeTypeCurrentRPC":"JSON","version":${cmd.version | 0}}`
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

const LIT_CODE = Buffer.from('{"code":', 'latin1')
const LIT_EXT = Buffer.from(',"extFields":{', 'latin1')
const LIT_FLAG = Buffer.from(',"flag":', 'latin1')
const LIT_LANGUAGE = Buffer.from(',"language":', 'latin1')
const LIT_OPAQUE = Buffer.from(',"opaque":', 'latin1')
const LIT_REMARK = Buffer.from(',"remark":', 'latin1')
const LIT_VERSION = Buffer.from(',"serializeTypeCurrentRPC":"JSON","version":', 'latin1')
const QUOTE = 0x22
const BACKSLASH = 0x5c

/** Read position of the canonical decoder; module state keeps the helpers allocation-free. */
let canonAt = 0

function canonLiteral(h: Buffer, lit: Buffer): boolean {
  const at = canonAt
  const n = lit.length
  if (at + n > h.length) return false
  for (let i = 0; i < n; i++) if (h[at + i] !== lit[i]) return false
  canonAt = at + n
  return true
}

/** An int32 in JSON's integer form; NaN for anything else, including -0. */
function canonInt(h: Buffer): number {
  let at = canonAt
  const end = h.length
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
  canonAt = at
  return v
}

/** A string of printable ASCII without escapes, whose JSON value is its bytes as they are. */
function canonString(h: Buffer): string | undefined {
  let at = canonAt
  const end = h.length
  if (at >= end || h[at] !== QUOTE) return undefined
  const start = ++at
  while (at < end) {
    const c = h[at]!
    if (c === QUOTE) {
      canonAt = at + 1
      return h.toString('latin1', start, at)
    }
    if (c < 0x20 || c > 0x7e || c === BACKSLASH) return undefined
    at++
  }
  return undefined
}

/** Decodes a header in the canonical layout, or returns undefined for JSON.parse to handle. */
export function decodeCanonicalJsonHeader(h: Buffer): RemotingCommand | undefined {
  canonAt = 0
  if (!canonLiteral(h, LIT_CODE)) return undefined
  const code = canonInt(h)
  if (code !== code || !canonLiteral(h, LIT_EXT)) return undefined
  const extFields: Record<string, string> = {}
  if (h[canonAt] === 0x7d) {
    canonAt++
  } else {
    for (;;) {
      const key = canonString(h)
      if (key === undefined || key === '__proto__' || h[canonAt] !== 0x3a) return undefined
      canonAt++
      const value = canonString(h)
      if (value === undefined) return undefined
      extFields[key] = value
      const c = h[canonAt++]
      if (c === 0x7d) break
      if (c !== 0x2c) return undefined
    }
  }
  if (!canonLiteral(h, LIT_FLAG)) return undefined
  const flag = canonInt(h)
  if (flag !== flag || !canonLiteral(h, LIT_LANGUAGE)) return undefined
  let language: number | undefined
  if (h[canonAt] === QUOTE) {
    const name = canonString(h)
    if (name === undefined) return undefined
    language = parseLanguage(name)
  } else {
    language = parseLanguage(canonInt(h))
  }
  if (language === undefined || !canonLiteral(h, LIT_OPAQUE)) return undefined
  const opaque = canonInt(h)
  if (opaque !== opaque) return undefined
  let remark: string | null = null
  if (canonLiteral(h, LIT_REMARK)) {
    const text = canonString(h)
    if (text === undefined) return undefined
    remark = text
  }
  if (!canonLiteral(h, LIT_VERSION)) return undefined
  const version = canonInt(h)
  if (version !== version || canonAt !== h.length - 1 || h[canonAt] !== 0x7d) return undefined
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
  const end = header.length
  if (end < BINARY_HEADER.fixedBytes) throw new TransportError('BAD_FRAME', `ROCKETMQ header of ${end} bytes is shorter than its fixed part`)
  const code = header.readInt16BE(BINARY_HEADER.code)
  const language = header.readUInt8(BINARY_HEADER.language)
  const version = header.readInt16BE(BINARY_HEADER.version)
  const opaque = header.readInt32BE(BINARY_HEADER.opaque)
  const flag = header.readInt32BE(BINARY_HEADER.flag)
  let at = BINARY_HEADER.remarkLength
  const remarkLength = header.readInt32BE(at)
  at += 4
  if (remarkLength < 0 || remarkLength > end - at) throw new TransportError('BAD_FRAME', `ROCKETMQ remark length ${remarkLength} out of bounds`)
  const remark = remarkLength === 0 ? null : header.toString('utf8', at, at + remarkLength)
  at += remarkLength
  if (end - at < 4) throw new TransportError('BAD_FRAME', 'ROCKETMQ header ends before extFields length')
  const extLength = header.readInt32BE(at)
  at += 4
  if (extLength !== end - at) throw new TransportError('BAD_FRAME', `ROCKETMQ extFields length ${extLength} does not match the ${end - at} bytes left`)
  const extFields: Record<string, string> = {}
  while (at < end) {
    if (end - at < 2) throw new TransportError('BAD_FRAME', 'ROCKETMQ extFields entry truncated at key length')
    const keyLength = header.readInt16BE(at)
    at += 2
    if (keyLength < 0 || keyLength > end - at) throw new TransportError('BAD_FRAME', `ROCKETMQ extFields key length ${keyLength} out of bounds`)
    const key = header.toString('utf8', at, at + keyLength)
    at += keyLength
    if (end - at < 4) throw new TransportError('BAD_FRAME', 'ROCKETMQ extFields entry truncated at value length')
    const valueLength = header.readInt32BE(at)
    at += 4
    if (valueLength < 0 || valueLength > end - at) throw new TransportError('BAD_FRAME', `ROCKETMQ extFields value length ${valueLength} out of bounds`)
    setField(extFields, key, header.toString('utf8', at, at + valueLength))
    at += valueLength
  }
  return new RemotingCommand({ code, language, version, opaque, flag, remark, extFields, serializeType: SerializeType.ROCKETMQ })
}

// ---------------------------------------------------------------------------------------------
// Frames

/**
 * Encodes `cmd` as one frame, as one buffer or (for a large body) a prefix+header buffer and the
 * body itself, ready for writev. `serializeType` applies when the command names none.
 */
export function encodeFrameParts(cmd: RemotingCommand, defaultSerializeType: SerializeType = SerializeType.JSON, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Buffer[] {
  const type = cmd.serializeType ?? defaultSerializeType
  let headerText: string | undefined
  let headerBinary: Buffer | undefined
  let headerLength: number
  if (type === SerializeType.ROCKETMQ) {
    headerBinary = encodeBinaryHeader(cmd)
    headerLength = headerBinary.length
  } else {
    headerText = encodeJsonHeaderText(cmd)
    headerLength = Buffer.byteLength(headerText, 'utf8')
  }
  if (headerLength > MAX_HEADER_BYTES) throw new TransportError('FRAME_TOO_LARGE', `header of ${headerLength} bytes exceeds 24-bit length`)
  const body = cmd.body
  const frameBytes = FRAME.prefixBytes + headerLength + body.length
  if (frameBytes > maxFrameBytes) {
    throw new TransportError('FRAME_TOO_LARGE', `frame of ${frameBytes} bytes exceeds ${maxFrameBytes}`, { details: { frameBytes, maxFrameBytes } })
  }
  const inline = body.length <= INLINE_BODY_BYTES
  const head = Buffer.allocUnsafe(FRAME.prefixBytes + headerLength + (inline ? body.length : 0))
  head.writeInt32BE(frameBytes - 4, FRAME.length)
  head.writeInt32BE(((type & 0xff) << 24) | headerLength, FRAME.headerWord)
  if (headerText !== undefined) head.write(headerText, FRAME.header, headerLength, 'utf8')
  else headerBinary!.copy(head, FRAME.header)
  if (inline) {
    if (body.length > 0) body.copy(head, FRAME.header + headerLength)
    return [head]
  }
  return [head, body]
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
  if (content.length < 4) throw new TransportError('BAD_FRAME', `frame of ${content.length} bytes has no header word`)
  const word = content.readUInt32BE(0)
  const type = word >>> 24
  const headerLength = word & 0xffffff
  if (headerLength > content.length - 4) {
    throw new TransportError('BAD_FRAME', `header length ${headerLength} exceeds the frame's ${content.length - 4} bytes`)
  }
  const header = content.subarray(4, 4 + headerLength)
  let cmd: RemotingCommand
  if (type === SerializeType.JSON) cmd = decodeJsonHeader(header)
  else if (type === SerializeType.ROCKETMQ) cmd = decodeBinaryHeader(header)
  else throw new TransportError('BAD_FRAME', `unknown serialize type ${type}`)
  cmd.body = content.subarray(4 + headerLength)
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
  private readonly chunks: Buffer[] = []
  private buffered = 0
  /** Total bytes of the frame at the head of `chunks`, or -1 until its length field is in. */
  private frameBytes = -1
  private failed = false

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes held for an incomplete frame. */
  get pendingBytes(): number {
    return this.buffered
  }

  /** Feeds a chunk; calls `onCommand` for each complete frame in order. Throws TransportError on bad input. */
  push(chunk: Buffer, onCommand: (cmd: RemotingCommand) => void): void {
    if (this.failed) throw new TransportError('BAD_FRAME', 'decoder already failed')
    try {
      if (this.buffered === 0) {
        this.drain(chunk, onCommand)
        return
      }
      this.chunks.push(chunk)
      this.buffered += chunk.length
      if (this.frameBytes < 0 && this.buffered >= 4) this.frameBytes = checkLength(this.peekLength(), this.maxFrameBytes) + 4
      if (this.frameBytes >= 0 && this.buffered >= this.frameBytes) {
        // Only the last chunk can run past the pending frame. Join just the frame's bytes and
        // decode the rest of the chunk in place, instead of copying the whole chunk along.
        const frameBytes = this.frameBytes
        const fromChunk = frameBytes - (this.buffered - chunk.length)
        let frame: Buffer
        if (this.chunks.length === 1) {
          frame = chunk.subarray(0, frameBytes)
        } else {
          this.chunks[this.chunks.length - 1] = chunk.subarray(0, fromChunk)
          frame = Buffer.concat(this.chunks, frameBytes)
        }
        this.chunks.length = 0
        this.buffered = 0
        this.frameBytes = -1
        this.drain(frame, onCommand)
        if (fromChunk < chunk.length) this.drain(chunk.subarray(fromChunk), onCommand)
      }
    } catch (err) {
      this.failed = true
      this.chunks.length = 0
      this.buffered = 0
      throw err
    }
  }

  private drain(buf: Buffer, onCommand: (cmd: RemotingCommand) => void): void {
    let at = 0
    while (buf.length - at >= 4) {
      const length = checkLength(buf.readInt32BE(at), this.maxFrameBytes)
      if (buf.length - at - 4 < length) break
      const cmd = decodeFrameContent(buf.subarray(at + 4, at + 4 + length))
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
