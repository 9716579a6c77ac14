// Checks the stored-message codec byte for byte against RocketMQ's layout: field offsets, the
// 91-byte fixed overhead, properties with unusual characters, V2 topics, message ids, CRC, and a
// golden IPv6 record (test/fixtures) in both directions with every reader of a record.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { crc32 } from '../src/crc.js'
import {
  BLANK_MAGIC_CODE,
  MESSAGE_MAGIC_CODE_V1,
  MESSAGE_MAGIC_CODE_V2,
  MessageIdEncoder,
  RECORD,
  RECORD_FIXED_BYTES_V1,
  checkRecord,
  SYSFLAG,
  SYSFLAG_ACCEPTED_MASK,
  createMessageId,
  dataViewOf,
  decodeMessageId,
  decodeProperties,
  decodeRecord,
  encodeBlank,
  encodeProperties,
  encodeRecord,
  formatHost,
  javaStringHashCode,
  offsetToFileName,
  parseHost,
  prepareRecord,
  readDispatchRequest,
  readI64,
  readStoreTimestamp,
  recordSize,
  withHostFlags,
  writeI64,
  type DispatchRequest,
  type Host,
  type PreparedMessage,
} from '../src/codec/index.js'
import { MessageError } from '@mqts/message'

function prepared(overrides: Partial<Parameters<typeof prepareRecord>[0]> = {}): PreparedMessage {
  const topic = overrides.topic ?? 'TopicTest'
  return prepareRecord({
    topic,
    topicBytes: Buffer.from(topic),
    queueId: 3,
    flag: 7,
    sysFlag: 0,
    bornTimestamp: 1_700_000_000_123,
    bornHost: parseHost('10.1.2.3:45678')!,
    reconsumeTimes: 2,
    preparedTransactionOffset: 0,
    body: Buffer.from('hello world'),
    properties: encodeProperties({ TAGS: 'TagA', KEYS: 'k1 k2' }),
    ...overrides,
  })
}

test('magic codes match RocketMQ', () => {
  assert.equal(MESSAGE_MAGIC_CODE_V1, -626843481)
  assert.equal(MESSAGE_MAGIC_CODE_V2, -626843477)
  assert.equal(BLANK_MAGIC_CODE, -875286124)
})

test('record field offsets are contiguous and the fixed overhead is 91 bytes', () => {
  const sizes: Record<keyof typeof RECORD, number> = {
    totalSize: 4, magicCode: 4, bodyCrc: 4, queueId: 4, flag: 4, queueOffset: 8, physicalOffset: 8, sysFlag: 4,
    bornTimestamp: 8, bornHost: 8, storeTimestamp: 8, storeHost: 8, reconsumeTimes: 4, preparedTransactionOffset: 8, bodyLength: 4, body: 0,
  }
  let at = 0
  for (const [field, offset] of Object.entries(RECORD)) {
    assert.equal(offset, at, `${field} offset`)
    at += sizes[field as keyof typeof RECORD]
  }
  assert.equal(at + 1 + 2, RECORD_FIXED_BYTES_V1)
  const m = prepared({ body: Buffer.alloc(0), properties: '' })
  assert.equal(m.totalSize, 91 + 'TopicTest'.length)
})

test('encode writes every field where RocketMQ reads it', () => {
  const m = prepared()
  const buf = Buffer.alloc(m.totalSize + 10)
  encodeRecord(buf, 5, m, 42, 1_234_567_890_123, 1_700_000_000_999, parseHost('192.168.0.1:10911')!)
  const r = buf.subarray(5)
  assert.equal(r.readInt32BE(0), m.totalSize)
  assert.equal(r.readInt32BE(4), MESSAGE_MAGIC_CODE_V1)
  assert.equal(r.readInt32BE(8), crc32(Buffer.from('hello world')) & 0x7fffffff)
  assert.equal(r.readInt32BE(12), 3)
  assert.equal(r.readInt32BE(16), 7)
  assert.equal(readI64(r, 20), 42)
  assert.equal(readI64(r, 28), 1_234_567_890_123)
  assert.equal(r.readInt32BE(36), 0)
  assert.equal(readI64(r, 40), 1_700_000_000_123)
  assert.deepEqual([...r.subarray(48, 52)], [10, 1, 2, 3])
  assert.equal(r.readInt32BE(52), 45678)
  assert.equal(readI64(r, 56), 1_700_000_000_999)
  assert.deepEqual([...r.subarray(64, 68)], [192, 168, 0, 1])
  assert.equal(r.readInt32BE(68), 10911)
  assert.equal(r.readInt32BE(72), 2)
  assert.equal(readI64(r, 76), 0)
  assert.equal(r.readInt32BE(84), 11)
  assert.equal(r.toString('utf8', 88, 99), 'hello world')
  assert.equal(r[99], 9)
  assert.equal(r.toString('utf8', 100, 109), 'TopicTest')
  const propsLength = r.readInt16BE(109)
  assert.equal(r.toString('utf8', 111, 111 + propsLength), 'TAGS\u0001TagA\u0002KEYS\u0001k1 k2\u0002')
  assert.equal(111 + propsLength, m.totalSize)
})

test('decode(encode(x)) round trips, including IDs and hosts', () => {
  const m = prepared()
  const buf = Buffer.alloc(m.totalSize)
  encodeRecord(buf, 0, m, 9, 65536, 1_700_000_001_000, parseHost('127.0.0.1:10911')!)
  const d = decodeRecord(buf, 0)
  assert.equal(d.topic, 'TopicTest')
  assert.equal(d.queueId, 3)
  assert.equal(d.queueOffset, 9)
  assert.equal(d.physicalOffset, 65536)
  assert.equal(d.body.toString(), 'hello world')
  assert.equal(d.tags, 'TagA')
  assert.deepEqual(d.keys, ['k1', 'k2'])
  assert.equal(d.bornHost, '10.1.2.3:45678')
  assert.equal(d.storeHost, '127.0.0.1:10911')
  assert.equal(d.msgId, '7F00000100002A9F0000000000010000')
  assert.equal(d.msgId, createMessageId(parseHost('127.0.0.1:10911')!, 65536))
  assert.deepEqual(decodeMessageId(d.msgId), { host: '127.0.0.1:10911', physicalOffset: 65536 })
  assert.equal(d.storeSize, m.totalSize)
  assert.equal(checkRecord(buf, 0, buf.length, 65536, 1 << 20, true).kind, 'record')
})

test('the append-path id encoder gives the same ids as createMessageId, across the 32-bit boundary', () => {
  const host = parseHost('192.168.7.201:10911')!
  const enc = new MessageIdEncoder(host)
  const offsets = [0, 1, 0xffff, 0x10000, 0xabcdef, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 0x1234_5678, 2 ** 40 + 5, 7, 2 ** 53 - 1]
  for (const o of offsets) {
    assert.equal(enc.encode(o), createMessageId(host, o), `offset ${o}`)
    assert.deepEqual(decodeMessageId(enc.encode(o)), { host: '192.168.7.201:10911', physicalOffset: o })
  }
})

test('properties with unusual characters round trip', () => {
  const props = { 'name=with;odd:chars': 'välue ✓ 🚀 "quoted" \\ back', '中文': '日本語テキスト', a: '=', tab: '\t\n\r' }
  const text = encodeProperties(props)
  assert.deepEqual(decodeProperties(text), props)
  const m = prepared({ properties: text })
  const buf = Buffer.alloc(m.totalSize)
  encodeRecord(buf, 0, m, 0, 0, 1, parseHost('127.0.0.1:1')!)
  assert.deepEqual(decodeRecord(buf, 0).properties, props)
})

test('property parser ignores malformed segments as RocketMQ does', () => {
  assert.deepEqual(decodeProperties('a\u0001b\u0002'), { a: 'b' })
  assert.deepEqual(decodeProperties('\u0001x\u0002ab\u0002k\u0001\u0002ok\u0001yes'), { ok: 'yes' })
  assert.deepEqual(decodeProperties(''), {})
})

test('topics over 127 characters use the V2 magic with a 2-byte length', () => {
  const topic = '%RETRY%' + 'g'.repeat(200)
  const m = prepared({ topic, topicBytes: Buffer.from(topic) })
  assert.equal(m.magicCode, MESSAGE_MAGIC_CODE_V2)
  const buf = Buffer.alloc(m.totalSize)
  encodeRecord(buf, 0, m, 0, 0, 1, parseHost('127.0.0.1:1')!)
  assert.equal(decodeRecord(buf, 0).topic, topic)
  assert.equal(checkRecord(buf, 0, buf.length, 0, 1 << 20, true).kind, 'record')
})

test('checkRecord rejects bad CRC, wrong own offset, bad size, and sees blanks and zeros', () => {
  const m = prepared()
  const buf = Buffer.alloc(m.totalSize + 16)
  encodeRecord(buf, 0, m, 0, 100, 1, parseHost('127.0.0.1:1')!)
  assert.equal(checkRecord(buf, 0, buf.length, 101, 1 << 20, true).kind, 'bad')
  const flipped = Buffer.from(buf)
  flipped[90]! ^= 0xff
  assert.equal(checkRecord(flipped, 0, buf.length, 100, 1 << 20, true).kind, 'bad')
  assert.equal(checkRecord(flipped, 0, buf.length, 100, 1 << 20, false).kind, 'record')
  const sized = Buffer.from(buf)
  sized.writeInt32BE(m.totalSize + 1, 0)
  assert.equal(checkRecord(sized, 0, buf.length, 100, 1 << 20, false).kind, 'bad')
  assert.equal(checkRecord(buf, m.totalSize, buf.length, 100 + m.totalSize, 1 << 20, true).kind, 'end')
  encodeBlank(buf, m.totalSize, 16)
  assert.equal(checkRecord(buf, m.totalSize, buf.length, 100 + m.totalSize, 1 << 20, true).kind, 'blank')
})

test('64-bit helpers, file names and Java hashCode', () => {
  const b = Buffer.alloc(8)
  for (const v of [0, 1, 2 ** 32, 2 ** 53 - 1, -1, -(2 ** 40)]) {
    writeI64(b, 0, v)
    assert.equal(readI64(b, 0), v)
    assert.equal(b.readBigInt64BE(0), BigInt(v))
  }
  assert.equal(offsetToFileName(1073741824), '00000000001073741824')
  assert.equal(javaStringHashCode('TagA'), 2598919)
  assert.equal(javaStringHashCode(''), 0)
  // "polygenelubricants".hashCode() == Integer.MIN_VALUE in Java
  assert.equal(javaStringHashCode('polygenelubricants'), -2147483648)
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926)
})

/** Bytes of a fixture: `hex` lines, comments after '#'. */
function fixture(name: string): Buffer {
  const file = fileURLToPath(new URL(`../../test/fixtures/${name}`, import.meta.url))
  const parts: Buffer[] = []
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('hex ')) parts.push(Buffer.from(line.slice(4).replace(/#.*$/, '').replace(/\s+/g, ''), 'hex'))
  }
  return Buffer.concat(parts)
}

function ipv6Record(): { m: PreparedMessage; storeHost: Host } {
  const bornHost = parseHost('[2001:db8::1]:45678')!
  const storeHost = parseHost('[::1]:10911')!
  const m = prepared({ sysFlag: withHostFlags(SYSFLAG.MULTI_TAGS, bornHost, storeHost), bornHost, properties: encodeProperties({ TAGS: 'TagA' }) })
  return { m, storeHost }
}

test('golden: a record with IPv6 born and store hosts is the bytes RocketMQ 4.x writes, and reads back', () => {
  const golden = fixture('record-ipv6.hex.txt')
  const { m, storeHost } = ipv6Record()
  assert.equal(m.sysFlag, 0x32)
  assert.equal(m.totalSize, golden.length)
  assert.equal(m.totalSize, recordSize(11, 9, 10, MESSAGE_MAGIC_CODE_V1, 0x32))
  const buf = Buffer.alloc(m.totalSize)
  encodeRecord(buf, 0, m, 42, 4096, 1_700_000_000_999, storeHost)
  assert.equal(buf.toString('hex'), golden.toString('hex'))

  const d = decodeRecord(golden, 0)
  assert.equal(d.sysFlag, 0x32)
  assert.equal(d.bornHost, '[2001:db8::1]:45678')
  assert.equal(d.storeHost, '[::1]:10911')
  assert.equal(d.bornTimestamp, 1_700_000_000_123)
  assert.equal(d.storeTimestamp, 1_700_000_000_999)
  assert.equal(d.reconsumeTimes, 2)
  assert.equal(d.body.toString(), 'hello world')
  assert.equal(d.topic, 'TopicTest')
  assert.equal(d.tags, 'TagA')
  // RocketMQ's createMessageId: store address (16) + port (4) + offset (8), uppercase hex.
  assert.equal(d.msgId, '00000000000000000000000000000001' + '00002A9F' + '0000000000001000')
  assert.equal(d.msgId, createMessageId(storeHost, 4096))
  assert.equal(new MessageIdEncoder(storeHost).encode(4096), d.msgId)
  assert.deepEqual(decodeMessageId(d.msgId), { host: '[::1]:10911', physicalOffset: 4096 })
  assert.equal(readStoreTimestamp(golden, 0), 1_700_000_000_999)

  const check = checkRecord(golden, 0, golden.length, 4096, 1 << 20, true)
  assert.deepEqual(check, { kind: 'record', size: 145, queueId: 3, queueOffset: 42, sysFlag: 0x32, storeTimestamp: 1_700_000_000_999, topic: 'TopicTest' })
  const req = {} as DispatchRequest
  readDispatchRequest(golden, dataViewOf(golden), 0, true, req)
  assert.deepEqual(
    { ...req },
    { topic: 'TopicTest', queueId: 3, queueOffset: 42, physicalOffset: 4096, size: 145, sysFlag: 0x32, storeTimestamp: 1_700_000_000_999, tagsCode: javaStringHashCode('TagA'), keys: undefined, uniqKey: undefined },
  )
})

test('golden: a record with IPv4 hosts is the bytes RocketMQ 4.x writes, and reads back', () => {
  const golden = fixture('record-ipv4.hex.txt')
  const bornHost = parseHost('10.0.0.1:45678')!
  const storeHost = parseHost('127.0.0.1:10911')!
  const m = prepared({ sysFlag: SYSFLAG.MULTI_TAGS, bornHost, properties: encodeProperties({ TAGS: 'TagA' }) })
  assert.equal(m.totalSize, golden.length)
  const buf = Buffer.alloc(m.totalSize)
  encodeRecord(buf, 0, m, 42, 4096, 1_700_000_000_999, storeHost)
  assert.equal(buf.toString('hex'), golden.toString('hex'))
  const d = decodeRecord(golden, 0)
  assert.equal(d.bornHost, '10.0.0.1:45678')
  assert.equal(d.storeHost, '127.0.0.1:10911')
  assert.equal(d.storeTimestamp, 1_700_000_000_999)
  assert.equal(d.body.toString(), 'hello world')
  // RocketMQ's createMessageId: store address (4) + port (4) + offset (8), uppercase hex.
  assert.equal(d.msgId, '7F00000100002A9F0000000000001000')
  assert.deepEqual(checkRecord(golden, 0, golden.length, 4096, 1 << 20, true), { kind: 'record', size: 121, queueId: 3, queueOffset: 42, sysFlag: 0x2, storeTimestamp: 1_700_000_000_999, topic: 'TopicTest' })
})

test('each host of a record may be IPv6 on its own: sizes, offsets and every reader agree', () => {
  const hosts = { v4: parseHost('10.0.0.9:1')!, v6: parseHost('[fe80::9]:2')! }
  for (const born of ['v4', 'v6'] as const) {
    for (const store of ['v4', 'v6'] as const) {
      const bornHost = hosts[born]
      const storeHost = hosts[store]
      const m = prepared({ sysFlag: withHostFlags(0x30 | 0x1, bornHost, storeHost), bornHost })
      const v6 = (born === 'v6' ? 0x10 : 0) | (store === 'v6' ? 0x20 : 0)
      assert.equal(m.sysFlag, 0x1 | v6, `${born}/${store}`)
      assert.equal(m.totalSize, prepared().totalSize + (born === 'v6' ? 12 : 0) + (store === 'v6' ? 12 : 0))
      const buf = Buffer.alloc(m.totalSize + 8)
      encodeRecord(buf, 8, m, 5, 777, 1_700_000_000_500, storeHost)
      const d = decodeRecord(buf, 8)
      assert.equal(d.bornHost, born === 'v6' ? '[fe80::9]:2' : '10.0.0.9:1')
      assert.equal(d.storeHost, store === 'v6' ? '[fe80::9]:2' : '10.0.0.9:1')
      assert.equal(d.msgId.length, store === 'v6' ? 56 : 32)
      assert.equal(d.msgId, createMessageId(storeHost, 777))
      assert.equal(d.body.toString(), 'hello world')
      assert.deepEqual(d.keys, ['k1', 'k2'])
      assert.equal(d.storeTimestamp, 1_700_000_000_500)
      assert.equal(readStoreTimestamp(buf, 8), 1_700_000_000_500)
      assert.equal(checkRecord(buf, 8, buf.length, 777, 1 << 20, true).kind, 'record')
      // A record whose host bits lie about its layout is refused, not misread.
      const lying = Buffer.from(buf)
      lying.writeInt32BE(m.sysFlag ^ 0x10, 8 + RECORD.sysFlag)
      assert.equal(checkRecord(lying, 8, buf.length, 777, 1 << 20, false).kind, 'bad')
    }
  }
})

test('encodeRecord refuses a sysFlag whose host bits disagree with the hosts', () => {
  const m = prepared({ sysFlag: SYSFLAG.BORNHOST_V6 })
  assert.throws(() => encodeRecord(Buffer.alloc(m.totalSize), 0, m, 0, 0, 1, parseHost('127.0.0.1:1')!), (err: unknown) => err instanceof MessageError && err.code === 'INVALID_ARGUMENT')
  const v4 = prepared()
  assert.throws(() => encodeRecord(Buffer.alloc(v4.totalSize + 12), 0, v4, 0, 0, 1, parseHost('[::1]:1')!), (err: unknown) => err instanceof MessageError && err.code === 'INVALID_ARGUMENT')
})

test('hosts: IPv4 and bracketed IPv6 text forms parse and print in RFC 5952 form; anything else is refused', () => {
  const cases: [string, string][] = [
    ['127.0.0.1:10911', '127.0.0.1:10911'],
    ['[::1]:10911', '[::1]:10911'],
    ['[::]:0', '[::]:0'],
    ['[2001:DB8:0:0:1:0:0:1]:65535', '[2001:db8::1:0:0:1]:65535'],
    ['[2001:db8:0:0:0:0:2:1]:1', '[2001:db8::2:1]:1'],
    ['[1:0:0:2:0:0:0:3]:1', '[1:0:0:2::3]:1'],
    ['[1:2:3:4:5:6:7:8]:1', '[1:2:3:4:5:6:7:8]:1'],
    ['[1:0:2:3:4:5:6:7]:1', '[1:0:2:3:4:5:6:7]:1'],
    ['[::ffff:192.168.0.1]:80', '[::ffff:192.168.0.1]:80'],
    ['[64:ff9b::192.0.2.33]:80', '[64:ff9b::c000:221]:80'],
  ]
  for (const [text, printed] of cases) {
    const host = parseHost(text)
    assert.ok(host, text)
    const address = host.ipv6 ?? Buffer.from([host.ip >>> 24, (host.ip >>> 16) & 255, (host.ip >>> 8) & 255, host.ip & 255])
    assert.equal(formatHost(address, host.port), printed, text)
    assert.deepEqual(parseHost(printed), host, printed)
  }
  for (const bad of ['', ':1', '1.2.3.4', '1.2.3.4:', '1.2.3.4:65536', '1.2.3.4:-1', '1.2.3.4:0x10', '1.2.3.4: 5', '1.2.3.256:1', '1.2.3:1', 'host:1', '::1:10911', '[::1]', '[::1]:', '[1::2::3]:1', '[fe80::1%eth0]:1', '[1:2:3:4:5:6:7:8:9]:1', '[12345::]:1']) {
    assert.equal(parseHost(bad), undefined, JSON.stringify(bad))
  }
})

test('sysFlag: the bits accepted are RocketMQ 4.x\'s and the 5.x compression types; withHostFlags sets only the host bits', () => {
  assert.equal(SYSFLAG_ACCEPTED_MASK, 0x33f)
  const v4 = parseHost('1.2.3.4:5')!
  const v6 = parseHost('[::2]:5')!
  assert.equal(withHostFlags(0x3f, v4, v4), 0x0f)
  assert.equal(withHostFlags(0x0, v6, v4), 0x10)
  assert.equal(withHostFlags(0x1, v4, v6), 0x21)
  assert.equal(withHostFlags(0x301, v6, v6), 0x331)
})

test('a property named __proto__ (from JSON.parse) round-trips as a property, not a prototype', () => {
  const props = JSON.parse('{"__proto__":"x","a":"b"}') as Record<string, string>
  const decoded = decodeProperties(encodeProperties(props))
  assert.deepEqual(Object.keys(decoded), ['__proto__', 'a'])
  assert.equal(Object.getOwnPropertyDescriptor(decoded, '__proto__')?.value, 'x')
  assert.equal(Object.getPrototypeOf(decoded), Object.prototype)
})
