// The record codec without a store: a record encoded from a prepared message decodes back to
// it (IPv4 and IPv6 hosts), properties and offset ids round-trip, encoding refuses what cannot
// be written, and a client's production dependencies hold neither the store nor native code.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { crc32 } from 'node:zlib'
import { seedFromEnv, seededRandom } from '@mqts/common'
import {
  BODY_CRC_PENDING,
  MessageError,
  MAX_PROPERTIES_BYTES,
  encodeBatchBody,
  RECORD,
  SYSFLAG,
  createMessageId,
  decodeMessageId,
  decodeProperties,
  decodeRecord,
  encodeProperties,
  encodeRecord,
  joinOffsetMessageIds,
  parseHost,
  prepareRecordOf,
  withHostFlags,
  type Host,
  type PreparedMessage,
} from '../src/index.js'

const bodyCrc = (b: Uint8Array): number => crc32(b) & 0x7fffffff

function prepare(body: Buffer, bornHost: Host, storeHost: Host, crc = bodyCrc(body)): PreparedMessage {
  const properties = encodeProperties({ TAGS: 'TagA', KEYS: 'k1 k2', UNIQ_KEY: 'U1' })
  return prepareRecordOf('Orders', Buffer.from('Orders'), 2, 7, withHostFlags(SYSFLAG.MULTI_TAGS, bornHost, storeHost), 1_700_000_000_123, bornHost, 1, 0, body, properties, 0, 'k1 k2', 'U1', crc)
}

for (const [name, born, store] of [
  ['IPv4 hosts', '10.1.2.3:45678', '192.168.0.1:10911'],
  ['IPv6 hosts', '[2001:db8::1]:45678', '[::1]:10911'],
] as const) {
  test(`a record encoded from a prepared message decodes back to it (${name})`, () => {
    const bornHost = parseHost(born)!
    const storeHost = parseHost(store)!
    const body = Buffer.from('hello world')
    const m = prepare(body, bornHost, storeHost)
    const buf = Buffer.alloc(m.totalSize + 5)
    encodeRecord(buf, 5, m, 42, 1_234_567, 1_700_000_000_999, storeHost)
    const r = decodeRecord(buf, 5)
    assert.equal(r.storeSize, m.totalSize)
    assert.equal(r.topic, 'Orders')
    assert.equal(r.queueId, 2)
    assert.equal(r.queueOffset, 42)
    assert.equal(r.physicalOffset, 1_234_567)
    assert.equal(r.flag, 7)
    assert.equal(r.sysFlag & SYSFLAG.MULTI_TAGS, SYSFLAG.MULTI_TAGS)
    assert.equal(r.bodyCrc, bodyCrc(body))
    assert.deepEqual(r.body, body)
    assert.equal(r.bornHost, born)
    assert.equal(r.storeHost, store)
    assert.equal(r.storeTimestamp, 1_700_000_000_999)
    assert.equal(r.reconsumeTimes, 1)
    assert.equal(r.tags, 'TagA')
    assert.deepEqual(r.keys, ['k1', 'k2'])
    assert.equal(r.properties.UNIQ_KEY, 'U1')
    assert.deepEqual(decodeMessageId(r.msgId), { host: store, physicalOffset: 1_234_567 })
  })
}

test('a pending body CRC is written by the PendingBodyCrcs given, and refused without one', () => {
  const host = parseHost('127.0.0.1:1')!
  const body = Buffer.from('pending')
  const m = prepare(body, host, host, BODY_CRC_PENDING)
  const buf = Buffer.alloc(m.totalSize)
  assert.throws(() => encodeRecord(buf, 0, m, 0, 0, 1, host), (e: unknown) => e instanceof MessageError && e.code === 'INVALID_ARGUMENT')
  const ranges: number[][] = []
  encodeRecord(buf, 0, m, 0, 0, 1, host, undefined, undefined, { add: (_t, crcAt, bodyAt, length) => void ranges.push([crcAt, bodyAt, length]) })
  assert.deepEqual(ranges, [[RECORD.bodyCrc, m.totalSize - body.length - 1 - 'Orders'.length - 2 - m.propertiesBytes, body.length]])
  assert.deepEqual(buf.subarray(ranges[0]![1]!, ranges[0]![1]! + body.length), body)
})

test('host bits that disagree with the hosts are refused', () => {
  const v4 = parseHost('127.0.0.1:1')!
  const m = prepare(Buffer.from('x'), v4, v4)
  assert.throws(() => encodeRecord(Buffer.alloc(m.totalSize + 12), 0, m, 0, 0, 1, parseHost('[::1]:1')!), (e: unknown) => e instanceof MessageError && e.code === 'INVALID_ARGUMENT')
})

test('properties text round-trips as RocketMQ writes it (name 0x01 value 0x02)', () => {
  const text = encodeProperties({ a: '1', TAGS: 'T' })
  assert.equal(text, 'a\u00011\u0002TAGS\u0001T\u0002')
  assert.deepEqual(decodeProperties(text), { a: '1', TAGS: 'T' })
})

test("a client's production dependencies hold neither @mqts/store nor a native module", () => {
  const packages = new URL('../../../', import.meta.url)
  const manifest = (name: string): { dependencies?: Record<string, string>; gypfile?: boolean } =>
    JSON.parse(readFileSync(new URL(`${name.replace('@mqts/', '')}/package.json`, packages), 'utf8')) as { dependencies?: Record<string, string>; gypfile?: boolean }
  const seen = new Set<string>()
  const visit = (name: string): void => {
    if (seen.has(name)) return
    seen.add(name)
    const m = manifest(name)
    assert.ok(!m.gypfile, `${name} builds native code`)
    for (const dep of Object.keys(m.dependencies ?? {})) {
      assert.ok(dep.startsWith('@mqts/'), `${name} depends on ${dep}, outside the workspace: check it is pure JavaScript before allowing it here`)
      visit(dep)
    }
  }
  visit('@mqts/client')
  assert.ok(!seen.has('@mqts/store'))
  assert.ok(seen.has('@mqts/message'))
})

test('joinOffsetMessageIds equals the ids joined with commas (IPv4 and IPv6 hosts, offsets past 2^32, long lists)', () => {
  const rng = seededRandom(seedFromEnv())
  for (const text of ['10.1.2.3:10911', '[2001:db8::7]:10911', '255.255.255.255:65535']) {
    const host = parseHost(text)!
    for (let round = 0; round < 50; round++) {
      const n = round === 0 ? 1 : 1 + Math.floor(rng() * 300)
      const base = [0, 2 ** 32 - 5, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER - 10_000][round % 4]!
      const stored = Array.from({ length: n }, (_, i) => {
        const physicalOffset = base + i * 1000 + Math.floor(rng() * 1000)
        return { msgId: createMessageId(host, physicalOffset), physicalOffset }
      })
      assert.equal(joinOffsetMessageIds(stored), stored.map((s) => s.msgId).join(','), `${text} round ${round}`)
    }
  }
  assert.equal(joinOffsetMessageIds([]), '')
})

// A kill in the middle of an encode into the CommitLog's map leaves what was written in the page
// cache: TOTALSIZE must be the last field written, so an encode cut short reads as the log's end.
test('encodeRecord writes TOTALSIZE last: an encode stopped early leaves it 0', () => {
  const host = parseHost('127.0.0.1:1')!
  const body = Buffer.from('torn?')
  const m = prepare(body, host, host)
  const stopped = Buffer.alloc(m.totalSize + 3)
  const stop = new Error('killed while copying the body')
  const copier = (target: Buffer): void => {
    assert.equal(target.readInt32BE(3), 0, 'TOTALSIZE not yet written when the body is copied')
    throw stop
  }
  assert.throws(() => encodeRecord(stopped, 3, m, 0, 0, 1, host, undefined, copier), (e: unknown) => e === stop)
  assert.equal(stopped.readInt32BE(3), 0)
  assert.notEqual(stopped.readInt32BE(3 + RECORD.magicCode), 0, 'the fields before the body were written')

  // The properties are the last bytes of the record: TOTALSIZE is still 0 when they are written.
  const raw = prepareRecordOf('Orders', Buffer.from('Orders'), 2, 7, withHostFlags(0, host, host), 1, host, 0, 0, body, Buffer.from('KEYS\u0001k1\u0002'), 0, 'k1', undefined, bodyCrc(body))
  const buf = Buffer.alloc(raw.totalSize)
  const seen: number[] = []
  buf.set = function (this: Buffer, source: ArrayLike<number>, offset?: number): void {
    seen.push(this.readInt32BE(0))
    Uint8Array.prototype.set.call(this, source, offset)
  }
  encodeRecord(buf, 0, raw, 0, 0, 1, host)
  assert.deepEqual(seen, [0, 0], 'body and properties copied while TOTALSIZE is 0')
  assert.equal(buf.readInt32BE(0), raw.totalSize)
  assert.deepEqual(decodeRecord(buf, 0).keys, ['k1'])
})

test('encodeBatchBody refuses what the batch format cannot hold: a flag that is not a Java int, properties past 32,767 bytes', () => {
  const ok = { body: Buffer.from('x'), flag: 0, properties: '' }
  for (const flag of [2 ** 31, -(2 ** 31) - 1, 1.5, Number.NaN]) {
    assert.throws(() => encodeBatchBody([ok, { ...ok, flag }]), (err: unknown) => err instanceof MessageError && err.code === 'INVALID_ARGUMENT', String(flag))
  }
  assert.throws(() => encodeBatchBody([{ ...ok, properties: `a\u0001${'v'.repeat(MAX_PROPERTIES_BYTES)}\u0002` }]), (err: unknown) => err instanceof MessageError && /32767/.test((err as Error).message))
  const edge = `a\u0001${'v'.repeat(MAX_PROPERTIES_BYTES - 3)}\u0002`
  assert.equal(encodeBatchBody([{ ...ok, flag: -(2 ** 31), properties: edge }]).length, 22 + 1 + MAX_PROPERTIES_BYTES)
})
