/**
 * The CommitLog record, byte-compatible with Apache RocketMQ 4.x, in both directions.
 * Facts: docs/design/storage-format.md (which draws every byte) and RocketMQ's
 * MessageExtEncoder / CommitLog / MessageDecoder. Integers are big-endian.
 *
 * Stored message (one CommitLog record), offsets for IPv4 born and store hosts:
 *
 *  0 TOTALSIZE 4 | 4 MAGICCODE 4 | 8 BODYCRC 4 | 12 QUEUEID 4 | 16 FLAG 4 | 20 QUEUEOFFSET 8
 * 28 PHYSICALOFFSET 8 | 36 SYSFLAG 4 | 40 BORNTIMESTAMP 8 | 48 BORNHOST 8 (ip 4 + port 4)
 * 56 STORETIMESTAMP 8 | 64 STOREHOST 8 | 72 RECONSUMETIMES 4 | 76 PREPARED_TX_OFFSET 8
 * 84 BODYLEN 4 | 88 BODY n | TOPICLEN 1 (V1) or 2 (V2) | TOPIC t | PROPLEN 2 | PROPERTIES p
 *
 * Each IPv6 host (SYSFLAG 0x10 born, 0x20 store) is 16 address bytes + 4 port bytes, 12 more
 * than IPv4, and shifts what follows; the two bits always say what the record holds.
 * End-of-file blank: [remaining bytes 4][BLANK_MAGIC_CODE 4], then the rest of the file is unused.
 *
 * The body CRC is the caller's (the store computes it natively, often a batch at once): a
 * record is prepared with its CRC or with BODY_CRC_PENDING and a PendingBodyCrcs to encode it.
 * Checking records found on disk (recovery) is the store's.
 */
import { TWO_POW_32, readI64, readI64View } from '@mqts/common'
import { MessageError } from './errors.js'
import { HOST_BYTES_IPV4, HOST_BYTES_IPV6, IPV6_EXTRA_BYTES, type Host, formatHost } from './host.js'
import { hostHexPrefix, offsetHex } from './message-id.js'
import { PROPERTY, decodeProperties } from './properties.js'

export const MESSAGE_MAGIC_CODE_V1 = 0xdaa320a7 | 0 // -626843481
export const MESSAGE_MAGIC_CODE_V2 = 0xdaa320ab | 0 // -626843477
export const BLANK_MAGIC_CODE = 0xcbd43194 | 0 // -875286124
/** Bytes of the end-of-file marker: size and magic. A record must leave room for it. */
export const END_FILE_MIN_BLANK_LENGTH = 8

export const RECORD = {
  totalSize: 0,
  magicCode: 4,
  bodyCrc: 8,
  queueId: 12,
  flag: 16,
  queueOffset: 20,
  physicalOffset: 28,
  sysFlag: 36,
  bornTimestamp: 40,
  bornHost: 48,
  /** Valid only when the born host is IPv4. */
  storeTimestamp: 56,
  storeHost: 64,
  reconsumeTimes: 72,
  preparedTransactionOffset: 76,
  bodyLength: 84,
  body: 88,
} as const

/** Record bytes that do not depend on body, topic or properties, V1 magic, IPv4 hosts. */
export const RECORD_FIXED_BYTES_V1 = 91
export const SYSFLAG = {
  COMPRESSED: 0x1,
  MULTI_TAGS: 0x2,
  TRANSACTION_NOT_TYPE: 0,
  TRANSACTION_PREPARED_TYPE: 0x4,
  TRANSACTION_COMMIT_TYPE: 0x8,
  TRANSACTION_ROLLBACK_TYPE: 0xc,
  TRANSACTION_MASK: 0xc,
  BORNHOST_V6: 0x10,
  STOREHOST_V6: 0x20,
  /** The layout bits: set by the codec from the hosts it encodes, never taken from a caller. */
  HOST_V6_MASK: 0x30,
  /** RocketMQ 5.x, not supported by this store: a body to unwrap, an inner batch (one queue entry for many). */
  NEED_UNWRAP: 0x40,
  INNER_BATCH: 0x80,
  /** RocketMQ 5.x compression type of a COMPRESSED body (bits 8-10): 1 LZ4, 2 ZSTD, 3 ZLIB. */
  COMPRESSION_TYPE_MASK: 0x700,
  COMPRESSION_LZ4_TYPE: 0x100,
  COMPRESSION_ZSTD_TYPE: 0x200,
  COMPRESSION_ZLIB_TYPE: 0x300,
} as const

/**
 * Bits a put may carry: RocketMQ 4.x's (compressed, multi tags, the transaction type, the two
 * host bits) and the compression types a 5.x client sets with COMPRESSED (the store never reads
 * a body, so it keeps them for the reader). Everything else is refused.
 */
export const SYSFLAG_ACCEPTED_MASK =
  SYSFLAG.COMPRESSED | SYSFLAG.MULTI_TAGS | SYSFLAG.TRANSACTION_MASK | SYSFLAG.HOST_V6_MASK | SYSFLAG.COMPRESSION_ZLIB_TYPE

/** `sysFlag` with its layout bits replaced by what encoding `bornHost` and `storeHost` writes. */
export function withHostFlags(sysFlag: number, bornHost: Host, storeHost: Host): number {
  return (sysFlag & ~SYSFLAG.HOST_V6_MASK) | (bornHost.ipv6 ? SYSFLAG.BORNHOST_V6 : 0) | (storeHost.ipv6 ? SYSFLAG.STOREHOST_V6 : 0)
}

export const TOPIC_MAX_LENGTH = 127
/** Retry and dead-letter topics may reach 255 characters and are stored with the V2 magic. */
export const TOPIC_MAX_LENGTH_V2 = 255
export const TOPIC_PATTERN = /^[%|a-zA-Z0-9_-]+$/
/** TOPIC_BYTE[b] is 1 when byte b may appear in a topic. */
export const TOPIC_BYTE: Readonly<Uint8Array> = new Uint8Array(256)
for (const c of '%|_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ') (TOPIC_BYTE as Uint8Array)[c.charCodeAt(0)] = 1

// Encoding

/** PreparedMessage.bodyCrc of a message whose CRC is computed when it is encoded (PendingBodyCrcs). */
export const BODY_CRC_PENDING = -1

/** A message validated and measured, ready to be written at any physical offset. */
export interface PreparedMessage {
  topic: string
  topicBytes: Buffer
  queueId: number
  flag: number
  sysFlag: number
  bornTimestamp: number
  bornHost: Host
  reconsumeTimes: number
  preparedTransactionOffset: number
  body: Uint8Array
  bodyCrc: number
  /**
   * The encoded properties (name 0x01 value 0x02, repeated) as text, or as their UTF-8 bytes:
   * then the record holds properties[propertiesAt, propertiesAt + propertiesBytes) (a range of a
   * batch request, say, copied without a view of its own).
   */
  properties: string | Uint8Array
  propertiesAt: number
  propertiesBytes: number
  totalSize: number
  magicCode: number
  /** What dispatch needs, known before encoding: Java hash of TAGS (0 without), KEYS, UNIQ_KEY. */
  tagsCode: number
  keys: string | undefined
  uniqKey: string | undefined
}

/** Whether a record of this sysFlag takes a queue offset (RocketMQ: not for prepared / rollback). */
export function takesQueueOffset(sysFlag: number): boolean {
  const tx = sysFlag & SYSFLAG.TRANSACTION_MASK
  return tx === SYSFLAG.TRANSACTION_NOT_TYPE || tx === SYSFLAG.TRANSACTION_COMMIT_TYPE
}

/** Bytes of a record (RocketMQ's calMsgLength): the host bits of `sysFlag` say which hosts are IPv6. */
export function recordSize(bodyBytes: number, topicBytes: number, propertiesBytes: number, magicCode: number, sysFlag = 0): number {
  const v6 = sysFlag & SYSFLAG.HOST_V6_MASK
  const hosts = v6 === 0 ? 0 : ((v6 & SYSFLAG.BORNHOST_V6 ? 1 : 0) + (v6 & SYSFLAG.STOREHOST_V6 ? 1 : 0)) * IPV6_EXTRA_BYTES
  return RECORD_FIXED_BYTES_V1 + (magicCode === MESSAGE_MAGIC_CODE_V2 ? 1 : 0) + hosts + bodyBytes + topicBytes + propertiesBytes
}

/**
 * A message measured for its record, with positional fields (the append path: no intermediate
 * object per message). `sysFlag` must carry the host bits of what will be encoded
 * (withHostFlags), which size the record. `bodyCrc` is RocketMQ's UtilAll.crc32 of the body
 * (the CRC masked to a non-negative int), or BODY_CRC_PENDING to have it computed on encoding.
 */
export function prepareRecordOf(
  topic: string,
  topicBytes: Buffer,
  queueId: number,
  flag: number,
  sysFlag: number,
  bornTimestamp: number,
  bornHost: Host,
  reconsumeTimes: number,
  preparedTransactionOffset: number,
  body: Uint8Array,
  properties: string | Uint8Array,
  tagsCode: number,
  keys: string | undefined,
  uniqKey: string | undefined,
  bodyCrc: number,
  /** For properties as bytes: where they start in `properties`, and end (its length by default). */
  propertiesAt = 0,
  propertiesEnd?: number,
): PreparedMessage {
  const propertiesBytes = typeof properties !== 'string' ? (propertiesEnd ?? properties.length) - propertiesAt : properties.length === 0 ? 0 : Buffer.byteLength(properties)
  const magicCode = topicBytes.length > TOPIC_MAX_LENGTH ? MESSAGE_MAGIC_CODE_V2 : MESSAGE_MAGIC_CODE_V1
  // One literal with a fixed field order keeps every PreparedMessage the same hidden class.
  return {
    topic,
    topicBytes,
    queueId,
    flag,
    sysFlag,
    bornTimestamp,
    bornHost,
    reconsumeTimes,
    preparedTransactionOffset,
    body,
    bodyCrc,
    properties,
    propertiesAt,
    propertiesBytes,
    totalSize: recordSize(body.length, topicBytes.length, propertiesBytes, magicCode, sysFlag),
    magicCode,
    tagsCode,
    keys,
    uniqKey,
  }
}

/** A DataView over exactly the bytes of `b`: its setters are much cheaper than Buffer's write*BE. */
export function dataViewOf(b: Buffer): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength)
}

/** Computes body CRCs after the bodies are in place (the store's batch of native CRCs). */
export interface PendingBodyCrcs {
  /** The CRC of target[bodyAt, +length) goes to target[crcAt] (big-endian int) later. */
  add(target: Buffer, crcAt: number, bodyAt: number, length: number): void
}

/** memmove of source[sourceStart, +length) to target[targetStart]. */
export type BodyCopier = (target: Buffer, targetStart: number, source: Uint8Array, sourceStart: number, length: number) => void

/**
 * Writes `m` at `target[at]` as it will sit at `physicalOffset`. The caller has checked that
 * `m.totalSize` bytes fit. `dv` must view the same bytes as `target` (see dataViewOf). TOTALSIZE,
 * the first field, is written last: an encode stopped part way leaves it 0.
 */
export function encodeRecord(
  target: Buffer,
  at: number,
  m: PreparedMessage,
  queueOffset: number,
  physicalOffset: number,
  storeTimestamp: number,
  storeHost: Host,
  dv: DataView = dataViewOf(target),
  /** Copies the body instead of TypedArray#set (for a target in shared memory, see file-io). */
  copyBody?: BodyCopier,
  /** Takes the body CRC of a BODY_CRC_PENDING message, to be computed after the copy. */
  crcs?: PendingBodyCrcs,
): void {
  const bodyLength = m.body.length
  const sysFlag = m.sysFlag
  // The layout bits must say what is written here, or the record cannot be read back.
  const v6 = (m.bornHost.ipv6 ? SYSFLAG.BORNHOST_V6 : 0) | (storeHost.ipv6 ? SYSFLAG.STOREHOST_V6 : 0)
  if ((sysFlag & SYSFLAG.HOST_V6_MASK) !== v6) {
    throw new MessageError('INVALID_ARGUMENT', `sysFlag 0x${sysFlag.toString(16)} does not match its hosts (IPv6 bits 0x${v6.toString(16)}): prepare it with withHostFlags`)
  }
  const l = layoutOf(v6)
  let crc = m.bodyCrc
  if (crc === BODY_CRC_PENDING) {
    if (crcs === undefined) throw new MessageError('INVALID_ARGUMENT', 'a message prepared with BODY_CRC_PENDING needs the PendingBodyCrcs that computes its CRC, got none')
    crcs.add(target, at + RECORD.bodyCrc, at + l.body, bodyLength)
    crc = 0
  }
  dv.setInt32(at + RECORD.magicCode, m.magicCode)
  dv.setInt32(at + RECORD.bodyCrc, crc)
  dv.setInt32(at + RECORD.queueId, m.queueId)
  dv.setInt32(at + RECORD.flag, m.flag)
  dv.setUint32(at + RECORD.queueOffset, Math.floor(queueOffset / TWO_POW_32))
  dv.setUint32(at + RECORD.queueOffset + 4, queueOffset >>> 0)
  dv.setUint32(at + RECORD.physicalOffset, Math.floor(physicalOffset / TWO_POW_32))
  dv.setUint32(at + RECORD.physicalOffset + 4, physicalOffset >>> 0)
  dv.setInt32(at + RECORD.sysFlag, sysFlag)
  dv.setUint32(at + RECORD.bornTimestamp, Math.floor(m.bornTimestamp / TWO_POW_32))
  dv.setUint32(at + RECORD.bornTimestamp + 4, m.bornTimestamp >>> 0)
  writeHost(target, dv, at + RECORD.bornHost, m.bornHost)
  dv.setUint32(at + l.storeTimestamp, Math.floor(storeTimestamp / TWO_POW_32))
  dv.setUint32(at + l.storeTimestamp + 4, storeTimestamp >>> 0)
  writeHost(target, dv, at + l.storeHost, storeHost)
  dv.setInt32(at + l.reconsumeTimes, m.reconsumeTimes)
  const ptx = m.preparedTransactionOffset
  const ptxHi = Math.floor(ptx / TWO_POW_32)
  dv.setInt32(at + l.preparedTransactionOffset, ptxHi | 0)
  dv.setUint32(at + l.preparedTransactionOffset + 4, (ptx - ptxHi * TWO_POW_32) >>> 0)
  dv.setInt32(at + l.bodyLength, bodyLength)
  if (copyBody === undefined) target.set(m.body, at + l.body)
  else copyBody(target, at + l.body, m.body, 0, bodyLength)
  let pos = at + l.body + bodyLength
  const topicLength = m.topicBytes.length
  if (m.magicCode === MESSAGE_MAGIC_CODE_V2) {
    dv.setInt16(pos, topicLength)
    pos += 2
  } else {
    target[pos++] = topicLength
  }
  if (topicLength <= 32) for (let i = 0; i < topicLength; i++) target[pos + i] = m.topicBytes[i]!
  else m.topicBytes.copy(target, pos)
  pos += topicLength
  dv.setInt16(pos, m.propertiesBytes)
  pos += 2
  if (m.propertiesBytes > 0) {
    const properties = m.properties
    if (typeof properties === 'string') target.write(properties, pos, m.propertiesBytes, 'utf8')
    else if (m.propertiesBytes === properties.length) target.set(properties, pos)
    else copyRange(properties, m.propertiesAt, m.propertiesBytes, target, pos)
  }
  // TOTALSIZE last: a kill in the middle of an encode into the map leaves what was written in the
  // page cache, and a record whose size is still 0 reads as the log's end (recovery cuts there).
  dv.setInt32(at + RECORD.totalSize, m.totalSize)
}

/** Up to this many bytes a loop copies a range faster than making a view of it for TypedArray#set. */
const SHORT_COPY_BYTES = 64

/** source[from, from + length) to target[at...]. */
function copyRange(source: Uint8Array, from: number, length: number, target: Uint8Array, at: number): void {
  if (length > SHORT_COPY_BYTES) {
    target.set(source.subarray(from, from + length), at)
    return
  }
  for (let i = 0; i < length; i++) target[at + i] = source[from + i]!
}

/** Address (4 or 16 bytes) then port (an int), as RocketMQ's socketAddress2ByteBuffer. */
function writeHost(target: Buffer, dv: DataView, at: number, host: Host): void {
  const ipv6 = host.ipv6
  if (ipv6 === undefined) {
    dv.setUint32(at, host.ip)
    dv.setInt32(at + 4, host.port)
  } else {
    target.set(ipv6, at)
    dv.setInt32(at + 16, host.port)
  }
}

/** The end-of-file BLANK record: its size written last, as a record's (see encodeRecord). */
export function encodeBlank(target: Buffer, at: number, remainingBytes: number): void {
  target.writeInt32BE(BLANK_MAGIC_CODE, at + 4)
  target.writeInt32BE(remainingBytes, at)
}

// ---------------------------------------------------------------------------------------------
// Decoding

export interface StoredMessage {
  topic: string
  queueId: number
  queueOffset: number
  physicalOffset: number
  storeSize: number
  body: Buffer
  bodyCrc: number
  flag: number
  sysFlag: number
  bornTimestamp: number
  bornHost: string
  storeTimestamp: number
  storeHost: string
  reconsumeTimes: number
  preparedTransactionOffset: number
  /** Every property as stored, TAGS and KEYS included. */
  properties: Record<string, string>
  tags: string | undefined
  keys: string[]
  msgId: string
}

export interface Layout {
  bornHostBytes: number
  storeTimestamp: number
  storeHost: number
  storeHostBytes: number
  reconsumeTimes: number
  preparedTransactionOffset: number
  bodyLength: number
  body: number
}

function layout(sysFlag: number): Layout {
  const bornHostBytes = sysFlag & SYSFLAG.BORNHOST_V6 ? HOST_BYTES_IPV6 : HOST_BYTES_IPV4
  const storeHostBytes = sysFlag & SYSFLAG.STOREHOST_V6 ? HOST_BYTES_IPV6 : HOST_BYTES_IPV4
  const storeTimestamp = RECORD.bornHost + bornHostBytes
  const storeHost = storeTimestamp + 8
  const reconsumeTimes = storeHost + storeHostBytes
  const preparedTransactionOffset = reconsumeTimes + 4
  const bodyLength = preparedTransactionOffset + 8
  return { bornHostBytes, storeTimestamp, storeHost, storeHostBytes, reconsumeTimes, preparedTransactionOffset, bodyLength, body: bodyLength + 4 }
}

/** The four layouts, by the host bits of sysFlag (bit 4 born, bit 5 store). */
const LAYOUTS: readonly Layout[] = [0, SYSFLAG.BORNHOST_V6, SYSFLAG.STOREHOST_V6, SYSFLAG.HOST_V6_MASK].map(layout)

/** Field offsets of a record with this sysFlag. */
export function layoutOf(sysFlag: number): Layout {
  return LAYOUTS[(sysFlag & SYSFLAG.HOST_V6_MASK) >>> 4]!
}

/** Store timestamp of the record at `at` (handles an IPv6 born host). */
export function readStoreTimestamp(source: Buffer, at: number): number {
  const sysFlag = source.readInt32BE(at + RECORD.sysFlag)
  return readI64(source, at + layoutOf(sysFlag).storeTimestamp)
}

/**
 * Decodes the record at `source[at]`. The body is copied unless `copyBody` is false, in which
 * case it is a view into `source` and lives only as long as `source` does.
 */
const hostStrings = new Map<number, string>()
const hostPrefixes = new Map<number, string>()
const HOST_CACHE_MAX = 1024

/** "a.b.c.d:port" of an IPv4 host, cached (a store sees few distinct hosts). */
/** Remembers the last host it formatted: records alternate between few born and store hosts. */
function lastHostMemo(): (ip: number, port: number) => string {
  let lastIp = -1
  let lastPort = -1
  let last = ''
  return (ip, port) => {
    if (ip !== lastIp || port !== lastPort) {
      lastIp = ip
      lastPort = port
      last = ipv4HostStringCached(ip, port)
    }
    return last
  }
}
const bornHostString = lastHostMemo()
const storeHostString = lastHostMemo()

function ipv4HostStringCached(ip: number, port: number): string {
  if (port < 0 || port > 0xffff) return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}:${port}`
  const key = ip * 65536 + port
  let text = hostStrings.get(key)
  if (text === undefined) {
    if (hostStrings.size >= HOST_CACHE_MAX) hostStrings.clear()
    text = `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}:${port}`
    hostStrings.set(key, text)
  }
  return text
}

/** Message id prefix (ip and port, hex) of an IPv4 store host, cached. */
function ipv4HostPrefix(ip: number, port: number): string {
  if (port < 0 || port > 0xffff) return hostHexPrefix({ ip, port })
  const key = ip * 65536 + port
  let text = hostPrefixes.get(key)
  if (text === undefined) {
    if (hostPrefixes.size >= HOST_CACHE_MAX) hostPrefixes.clear()
    text = hostHexPrefix({ ip, port })
    hostPrefixes.set(key, text)
  }
  return text
}

/**
 * Decodes the record at `source[at]`. The body is copied unless `copyBody` is false, in which
 * case it is a view into `source` and lives only as long as `source` does. `dv` is a DataView of
 * `source` when the caller has one.
 */
export function decodeRecord(source: Buffer, at: number, copyBody = true, dv: DataView = dataViewOf(source)): StoredMessage {
  const totalSize = dv.getInt32(at + RECORD.totalSize)
  const magic = dv.getInt32(at + RECORD.magicCode)
  const sysFlag = dv.getInt32(at + RECORD.sysFlag)
  const l = layoutOf(sysFlag)
  const bornIpBytes = l.bornHostBytes - 4
  const storeIpBytes = l.storeHostBytes - 4
  const bornPort = dv.getInt32(at + RECORD.bornHost + bornIpBytes)
  const storePort = dv.getInt32(at + l.storeHost + storeIpBytes)
  let bornHost: string
  let storeHost: string
  let idPrefix: string
  if (bornIpBytes === 4) bornHost = bornHostString(dv.getUint32(at + RECORD.bornHost), bornPort)
  else bornHost = formatHost(source.subarray(at + RECORD.bornHost, at + RECORD.bornHost + bornIpBytes), bornPort)
  if (storeIpBytes === 4) {
    const ip = dv.getUint32(at + l.storeHost)
    storeHost = storeHostString(ip, storePort)
    idPrefix = ipv4HostPrefix(ip, storePort)
  } else {
    const storeIp = source.subarray(at + l.storeHost, at + l.storeHost + storeIpBytes)
    storeHost = formatHost(storeIp, storePort)
    idPrefix = Buffer.concat([storeIp, source.subarray(at + l.storeHost + storeIpBytes, at + l.storeHost + storeIpBytes + 4)]).toString('hex').toUpperCase()
  }
  const physicalOffset = readI64View(dv, at + RECORD.physicalOffset)
  const bodyLength = dv.getInt32(at + l.bodyLength)
  const bodyStart = at + l.body
  const bodyView = source.subarray(bodyStart, bodyStart + bodyLength)
  let pos = bodyStart + bodyLength
  const topicLength = magic === MESSAGE_MAGIC_CODE_V2 ? dv.getInt16(pos) : source[pos]!
  pos += topicLengthBytes(magic)
  const topic = topicAt(source, pos, topicLength)
  pos += topicLength
  const propertiesLength = dv.getInt16(pos)
  pos += 2
  const properties = propertiesLength > 0 ? decodeProperties(source.toString('utf8', pos, pos + propertiesLength)) : {}
  const keysText = properties[PROPERTY.KEYS]
  return {
    topic,
    queueId: dv.getInt32(at + RECORD.queueId),
    queueOffset: readI64View(dv, at + RECORD.queueOffset),
    physicalOffset,
    storeSize: totalSize,
    body: copyBody ? Buffer.from(bodyView) : bodyView,
    bodyCrc: dv.getInt32(at + RECORD.bodyCrc),
    flag: dv.getInt32(at + RECORD.flag),
    sysFlag,
    bornTimestamp: readI64View(dv, at + RECORD.bornTimestamp),
    bornHost,
    storeTimestamp: readI64View(dv, at + l.storeTimestamp),
    storeHost,
    reconsumeTimes: dv.getInt32(at + l.reconsumeTimes),
    preparedTransactionOffset: readI64View(dv, at + l.preparedTransactionOffset),
    properties,
    tags: properties[PROPERTY.TAGS],
    keys: keysText ? keysText.split(' ').filter((k) => k.length > 0) : [],
    msgId: idPrefix + offsetHex(physicalOffset),
  }
}

/** Bytes of the topic length field: 2 with the V2 magic, else 1. */
export function topicLengthBytes(magic: number): number {
  return magic === MESSAGE_MAGIC_CODE_V2 ? 2 : 1
}

/** Topic strings by their bytes, so dispatch does not decode the same topic over and over. */
const topicCache = new Map<number, string>()
const TOPIC_CACHE_MAX = 4096

let lastTopic = ''

/** Whether `text` (ASCII, as topics are) equals the bytes [at, at + length). */
function sameAscii(text: string, source: Buffer, at: number, length: number): boolean {
  if (text.length !== length) return false
  for (let i = 0; i < length; i++) if (text.charCodeAt(i) !== source[at + i]) return false
  return true
}

/** The topic string at [at, at + length): the previous one, a cached one, or a new decode. */
export function topicAt(source: Buffer, at: number, length: number): string {
  if (sameAscii(lastTopic, source, at, length)) return lastTopic
  let h = length
  for (let i = 0; i < length; i++) h = (Math.imul(h, 31) + source[at + i]!) | 0
  let topic = topicCache.get(h)
  if (topic === undefined || !sameAscii(topic, source, at, length)) {
    topic = source.toString('utf8', at, at + length)
    if (topicCache.size >= TOPIC_CACHE_MAX) topicCache.clear()
    topicCache.set(h, topic)
  }
  lastTopic = topic
  return topic
}
