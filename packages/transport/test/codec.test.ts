// The frame codec against hand-written golden frames (test/fixtures), both header serializations
// in both directions, seeded round-trip properties (SEED= replays), a stream split at every byte
// boundary, and typed errors for every kind of malformed frame.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import {
  BINARY_HEADER,
  FrameDecoder,
  LanguageCode,
  RemotingCommand,
  SerializeType,
  TransportError,
  decodeCanonicalJsonHeader,
  decodeCanonicalJsonHeaderAt,
  decodeFrame,
  decodeJsonHeader,
  decodeJsonHeaderGeneric,
  encodeJsonHeader,
  encodeBinaryHeader,
  encodeFrame,
  encodeFrameParts,
  encodeJsonHeaderText,
  FrameEncoder,
  INLINE_BODY_BYTES,
  isPlainJsonText,
  JSON_SHAPE_CACHE_SIZE,
  observable,
  randomCommand,
  randomInt,
  seedFromEnv,
  seededRandom,
  type TransportErrorCode,
} from '../src/internal.js'

const SEED = seedFromEnv()
console.log(`codec properties: SEED=${SEED}`)

/** Reads a fixture: `hex ..` and `utf8 ..` lines, `#` comments. */
function fixture(name: string): Buffer {
  const path = fileURLToPath(new URL(`../../test/fixtures/${name}`, import.meta.url))
  const parts: Buffer[] = []
  for (const raw of readFileSync(path, 'utf8').split('\n')) {
    if (raw.startsWith('utf8 ')) parts.push(Buffer.from(raw.slice(5), 'utf8'))
    else if (raw.startsWith('hex ')) parts.push(Buffer.from(raw.slice(4).replace(/#.*$/, '').replace(/\s+/g, ''), 'hex'))
  }
  return Buffer.concat(parts)
}

function expectCode(fn: () => unknown, code: TransportErrorCode): void {
  assert.throws(fn, (err: unknown) => err instanceof TransportError && err.code === code)
}

test('ROCKETMQ header offsets are contiguous', { timeout: 5_000 }, () => {
  const sizes = { code: 2, language: 1, version: 2, opaque: 4, flag: 4, remarkLength: 4 }
  let at = 0
  for (const [field, size] of Object.entries(sizes)) {
    assert.equal(BINARY_HEADER[field as keyof typeof sizes], at, field)
    at += size
  }
  assert.equal(at, BINARY_HEADER.fixedBytes)
})

test('golden JSON request frame: encode and decode', { timeout: 5_000 }, () => {
  const golden = fixture('json-request.frame.txt')
  const cmd = new RemotingCommand({ code: 10, opaque: 1, extFields: { a: 'b' }, body: 'hi', language: LanguageCode.JAVA, version: 479 })
  assert.equal(encodeFrame(cmd).toString('hex'), golden.toString('hex'))
  const decoded = decodeFrame(golden)
  assert.deepEqual(observable(decoded), observable(new RemotingCommand({ ...cmd, serializeType: SerializeType.JSON })))
  assert.equal(decoded.isResponse, false)
})

test('golden ROCKETMQ oneway frame: encode and decode', { timeout: 5_000 }, () => {
  const golden = fixture('rocketmq-oneway.frame.txt')
  const cmd = new RemotingCommand({
    code: 310, language: LanguageCode.NODE_JS, version: 479, opaque: 7, flag: 2, remark: 'é',
    extFields: { b: 'TopicTest' }, body: Buffer.from([1, 2, 3]), serializeType: SerializeType.ROCKETMQ,
  })
  assert.equal(encodeFrame(cmd).toString('hex'), golden.toString('hex'))
  const decoded = decodeFrame(golden)
  assert.deepEqual(observable(decoded), observable(cmd))
  assert.equal(decoded.isOneway, true)
})

test('golden ROCKETMQ response frame: null remark, no extFields, no body', { timeout: 5_000 }, () => {
  const golden = fixture('rocketmq-response.frame.txt')
  const decoded = decodeFrame(golden)
  assert.equal(decoded.code, 1)
  assert.equal(decoded.opaque, 42)
  assert.equal(decoded.version, 401)
  assert.equal(decoded.remark, null)
  assert.equal(decoded.isResponse, true)
  assert.deepEqual(decoded.extFields, {})
  assert.equal(decoded.body.length, 0)
  assert.equal(encodeFrame(decoded).toString('hex'), golden.toString('hex'))
})

test('JSON decoding: any key order, unknown keys, numeric or unknown language, missing optional keys', { timeout: 5_000 }, () => {
  const frame = (json: string) => {
    const h = Buffer.from(json)
    const b = Buffer.alloc(8 + h.length)
    b.writeInt32BE(4 + h.length, 0)
    b.writeInt32BE(h.length, 4)
    h.copy(b, 8)
    return b
  }
  const a = decodeFrame(frame('{"version":1,"extra":{"x":[1]},"opaque":5,"language":9,"code":3,"flag":1,"remark":"r","extFields":{"n":12,"t":true,"z":null}}'))
  assert.deepEqual([a.code, a.language, a.opaque, a.flag, a.remark, a.version], [3, LanguageCode.GO, 5, 1, 'r', 1])
  assert.deepEqual(a.extFields, { n: '12', t: 'true' })
  const b = decodeFrame(frame('{"code":7,"language":"COBOL"}'))
  assert.deepEqual([b.code, b.language, b.opaque, b.flag, b.remark], [7, LanguageCode.OTHER, 0, 0, null])
  for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
    assert.equal(decodeFrame(frame(`{"code":7,"language":"${name}"}`)).language, LanguageCode.OTHER, `language "${name}"`)
  }
  const c = decodeFrame(frame('{"code":7,"extFields":{"__proto__":"x"}}'))
  assert.equal(Object.getPrototypeOf(c.extFields), Object.prototype)
  assert.equal(c.extFields['__proto__'], 'x')
  expectCode(() => decodeFrame(frame('{"language":"JAVA"}')), 'BAD_FRAME')
  expectCode(() => decodeFrame(frame('{"code":"10"}')), 'BAD_FRAME')
  expectCode(() => decodeFrame(frame('{"code":1,"extFields":{"a":{}}}')), 'BAD_FRAME')
  expectCode(() => decodeFrame(frame('[1,2]')), 'BAD_FRAME')
  expectCode(() => decodeFrame(frame('{"code":1')), 'BAD_FRAME')
})

test('JSON carries codes beyond a short; ROCKETMQ refuses them with ENCODE_FAILED', { timeout: 5_000 }, () => {
  const pop = new RemotingCommand({ code: 200050 })
  assert.equal(decodeFrame(encodeFrame(pop)).code, 200050)
  expectCode(() => encodeBinaryHeader(pop), 'ENCODE_FAILED')
  expectCode(() => encodeFrame(pop, SerializeType.ROCKETMQ), 'ENCODE_FAILED')
})

test('ROCKETMQ: empty remark travels as null; empty extFields values stay empty strings', { timeout: 5_000 }, () => {
  const cmd = new RemotingCommand({ code: 1, remark: '', extFields: { k: '' }, serializeType: SerializeType.ROCKETMQ })
  const d = decodeFrame(encodeFrame(cmd))
  assert.equal(d.remark, null)
  assert.deepEqual(d.extFields, { k: '' })
})

test('large bodies are not copied into the header buffer; small ones are', { timeout: 5_000 }, () => {
  const small = encodeFrameParts(RemotingCommand.createRequest(1, {}, Buffer.alloc(INLINE_BODY_BYTES)))
  assert.equal(small.length, 1)
  const bigBody = Buffer.alloc(INLINE_BODY_BYTES + 1, 9)
  const big = encodeFrameParts(RemotingCommand.createRequest(1, {}, bigBody))
  assert.equal(big.length, 2)
  assert.equal(big[1], bigBody)
  assert.ok(decodeFrame(Buffer.concat(big)).body.equals(bigBody))
})

test('a body in parts encodes as the same bytes as the joined body: copied when small, written part by part when large', { timeout: 5_000 }, () => {
  for (const sizes of [[0], [3, 0, 5], [INLINE_BODY_BYTES - 10, 10], [INLINE_BODY_BYTES, 1], [4000, 9000, 7000]]) {
    const parts = sizes.map((n, i) => Buffer.alloc(n, i + 1))
    const joined = Buffer.concat(parts)
    for (const type of [SerializeType.JSON, SerializeType.ROCKETMQ]) {
      const cmd = RemotingCommand.createResponse(0, null, { k: 'v' }, parts)
      cmd.serializeType = type
      assert.equal(cmd.bodyLength, joined.length)
      assert.ok(cmd.bodyParts !== undefined)
      const encoded = encodeFrameParts(cmd)
      const plain = RemotingCommand.createResponse(0, null, { k: 'v' }, joined)
      plain.serializeType = type
      plain.opaque = cmd.opaque
      assert.ok(Buffer.concat(encoded).equals(encodeFrame(plain)), JSON.stringify(sizes))
      if (joined.length > INLINE_BODY_BYTES) {
        // Not copied: each part goes out as it is.
        assert.equal(encoded.length, 1 + parts.length)
        parts.forEach((p, i) => assert.equal(encoded[i + 1], p))
      } else {
        assert.equal(encoded.length, 1)
      }
      assert.ok(decodeFrame(Buffer.concat(encoded)).body.equals(joined))
    }
    // Reading `body` joins the parts once; the command is then a one-piece body.
    const cmd = RemotingCommand.createRequest(1, {}, parts)
    assert.ok(cmd.body.equals(joined))
    assert.equal(cmd.bodyParts, undefined)
    assert.equal(cmd.body, cmd.body)
    // A spread copy carries the body, as it does a one-piece one.
    assert.ok(new RemotingCommand({ ...RemotingCommand.createRequest(1, {}, parts) }).body.equals(joined))
  }
})

test('a body part that is not bytes is refused with ENCODE_FAILED', { timeout: 5_000 }, () => {
  for (const bad of ['text', 42, null, undefined, [Buffer.alloc(1)], {}]) {
    assert.throws(
      () => RemotingCommand.createResponse(0, null, {}, [Buffer.alloc(1), bad] as unknown as Buffer[]),
      (err: unknown) => err instanceof TransportError && err.code === 'ENCODE_FAILED' && /body part 1/.test(err.message),
      String(bad),
    )
  }
})

/** The frame built the plain way: header bytes from the header encoders, then length, word, header, body. */
function referenceFrame(cmd: RemotingCommand, type: SerializeType): Buffer {
  const header = type === SerializeType.ROCKETMQ ? encodeBinaryHeader(cmd) : Buffer.from(encodeJsonHeaderText(cmd), 'utf8')
  const prefix = Buffer.alloc(8)
  prefix.writeInt32BE(4 + header.length + cmd.body.length, 0)
  prefix.writeInt32BE((type << 24) | header.length, 4)
  return Buffer.concat([prefix, header, cmd.body])
}

/** The JSON header as JSON.stringify writes the whole object (fastjson's key order, remark left out when null). */
function stringifiedHeader(cmd: RemotingCommand, languageText: unknown): Buffer {
  const header: Record<string, unknown> = { code: cmd.code, extFields: cmd.extFields, flag: cmd.flag, language: languageText, opaque: cmd.opaque }
  if (cmd.remark !== null) header.remark = cmd.remark
  header.serializeTypeCurrentRPC = 'JSON'
  header.version = cmd.version
  return Buffer.from(JSON.stringify(header), 'utf8')
}

test('a JSON header written without JSON.stringify (plain extFields and remark) is JSON.stringify\'s text, tricky values included', { timeout: 20_000 }, () => {
  const msgIds = Array.from({ length: 32 }, (_, i) => `7F00000100002A9F${(i * 1100).toString(16).toUpperCase().padStart(16, '0')}`).join(',')
  const tricky = ['', 'plain', 'a"b', 'back\\slash', '\\"', 'tab\there', 'nl\n', '\u0000', '\u001f', '\u007f', 'caf\u00e9', '\u4e2d\u6587', '\ud83d\ude00', '\ud800', 'x\udfff', '</script>', '{"json":1}', '12', '-0', ' ', '~']
  const keys = ['msgId', 'queueId', '0', '10', '2', 'a"k', 'k\\', 'k\u00e9', '__proto__', ' ', 'TRACE_ON']
  const rng = seededRandom(SEED + 17)
  const encoder = new FrameEncoder()
  const target = Buffer.alloc(64 * 1024)
  const cases: RemotingCommand[] = [RemotingCommand.createResponse(0, null, { msgId: msgIds, queueId: '3', queueOffset: '123456', MSG_REGION: 'DefaultRegion', TRACE_ON: 'true' })]
  for (let i = 0; i < 3000; i++) {
    const extFields: Record<string, string> = {}
    const n = randomInt(rng, 0, 5)
    for (let j = 0; j < n; j++) {
      const key = keys[randomInt(rng, 0, keys.length - 1)]!
      const value = rng() < 0.6 ? tricky[randomInt(rng, 0, 1)]! + String(randomInt(rng, 0, 1e6)) : tricky[randomInt(rng, 0, tricky.length - 1)]!
      // An own "__proto__" key, as a decoder keeps it.
      Object.defineProperty(extFields, key, { value, enumerable: true, writable: true, configurable: true })
    }
    const remarkRoll = rng()
    const remark = remarkRoll < 0.4 ? null : remarkRoll < 0.7 ? `remark ${i}` : tricky[randomInt(rng, 0, tricky.length - 1)]!
    cases.push(
      new RemotingCommand({
        code: randomInt(rng, -2000, 300_000),
        language: rng() < 0.1 ? 200 : randomInt(rng, 0, LanguageCode.NODE_JS),
        version: randomInt(rng, 0, 100_000),
        opaque: randomInt(rng, -0x80000000, 0x7fffffff),
        flag: randomInt(rng, 0, 3),
        remark,
        extFields,
      }),
    )
  }
  for (const [i, cmd] of cases.entries()) {
    const name = LanguageCode.JAVA === cmd.language ? 'JAVA' : (Object.entries(LanguageCode).find(([, v]) => v === cmd.language)?.[0] ?? cmd.language)
    const expected = stringifiedHeader(cmd, name)
    cmd.serializeType = SerializeType.JSON
    encoder.prepare(cmd)
    encoder.writeHead(target, 5)
    const header = target.subarray(5 + 8, 5 + encoder.headBytes)
    assert.ok(header.equals(expected), `seed ${SEED} case ${i}: ${header.toString('utf8')} != ${expected.toString('utf8')}`)
    assert.equal(target.readUInt32BE(5 + 4) & 0xffffff, expected.length)
    assert.deepEqual(observable(decodeFrame(target.subarray(5, 5 + encoder.headBytes))), observable(cmd))
  }
})

test('FrameEncoder writes the reference bytes at any offset, through cached shapes and fixed binary headers', { timeout: 20_000 }, () => {
  const rng = seededRandom(SEED + 11)
  const encoder = new FrameEncoder()
  const target = Buffer.alloc(64 * 1024)
  const opaques = [0, 1, 9, 10, 99, 100, -1, -9, -10, 2147483647, -2147483648, 123456789]
  for (let i = 0; i < 4000; i++) {
    const type = i % 2 === 0 ? SerializeType.JSON : SerializeType.ROCKETMQ
    const cmd = randomCommand(rng, type, i % 50 === 0 ? INLINE_BODY_BYTES + 100 : 300)
    // Most commands get the shapes the fast paths take: no remark, no extFields, few codes.
    if (i % 4 !== 0) {
      cmd.remark = null
      cmd.extFields = {}
      cmd.code = i % (JSON_SHAPE_CACHE_SIZE + 3)
      cmd.opaque = opaques[i % opaques.length]!
    }
    const expected = referenceFrame(cmd, type)
    assert.equal(encoder.prepare(cmd), expected.length)
    assert.equal(encoder.frameBytes, expected.length)
    const at = randomInt(rng, 0, 100)
    const canary = randomInt(rng, 0, 255)
    target.fill(canary, 0, at + encoder.headBytes + 1)
    const separate = encoder.separateBody
    encoder.writeHead(target, at)
    const written = separate === undefined ? target.subarray(at, at + encoder.headBytes) : Buffer.concat([target.subarray(at, at + encoder.headBytes), separate])
    assert.ok(written.equals(expected), `seed ${SEED} case ${i}`)
    assert.equal(target[at + encoder.headBytes], canary, 'writes past its head')
    assert.equal(separate === undefined, cmd.body.length <= INLINE_BODY_BYTES)
    encoder.prepare(cmd)
    assert.ok(Buffer.concat(encoder.toParts()).equals(expected))
  }
})

test('FrameEncoder refuses what the header encoders refuse, before writing anything', { timeout: 5_000 }, () => {
  const encoder = new FrameEncoder()
  const bad = [
    new RemotingCommand({ code: 40000, serializeType: SerializeType.ROCKETMQ }),
    new RemotingCommand({ code: 1, version: -40000, serializeType: SerializeType.ROCKETMQ }),
    new RemotingCommand({ code: 1, opaque: 2 ** 31, serializeType: SerializeType.ROCKETMQ }),
    new RemotingCommand({ code: 1, flag: -(2 ** 31) - 1, serializeType: SerializeType.ROCKETMQ }),
  ]
  for (const cmd of bad) {
    let expected: unknown
    try {
      encodeBinaryHeader(cmd)
    } catch (err) {
      expected = err
    }
    assert.ok(expected !== undefined)
    assert.throws(() => encoder.prepare(cmd), (err: unknown) => (err as Error).constructor === (expected as Error).constructor && (err as TransportError).code === (expected as TransportError).code)
  }
  expectCode(() => encoder.prepare(RemotingCommand.createRequest(1, {}, Buffer.alloc(100)), SerializeType.JSON, 64), 'FRAME_TOO_LARGE')
})

test('round trip: random commands in both serializations decode to what was encoded', { timeout: 20_000 }, () => {
  const rng = seededRandom(SEED)
  for (let i = 0; i < 3000; i++) {
    const type = i % 2 === 0 ? SerializeType.JSON : SerializeType.ROCKETMQ
    const cmd = randomCommand(rng, type, i % 100 === 0 ? 200_000 : 512)
    const frame = encodeFrame(cmd)
    assert.equal(frame.readInt32BE(0), frame.length - 4)
    assert.equal(frame.readUInt8(4), type)
    assert.deepEqual(observable(decodeFrame(frame)), observable(cmd), `seed ${SEED} case ${i}`)
  }
})

test('a stream split at every byte boundary decodes identically', { timeout: 30_000 }, () => {
  const rng = seededRandom(SEED ^ 0x5eed)
  const commands = Array.from({ length: 12 }, (_, i) => randomCommand(rng, i % 2 === 0 ? SerializeType.JSON : SerializeType.ROCKETMQ, 300))
  const stream = Buffer.concat(commands.map((c) => encodeFrame(c)))
  const expected = commands.map(observable)
  const decodeChunks = (chunks: Buffer[]) => {
    const decoder = new FrameDecoder()
    const out: Record<string, unknown>[] = []
    for (const chunk of chunks) decoder.push(chunk, (cmd) => out.push(observable(cmd)))
    assert.equal(decoder.pendingBytes, 0)
    return out
  }
  for (let cut = 0; cut <= stream.length; cut++) {
    assert.deepEqual(decodeChunks([stream.subarray(0, cut), stream.subarray(cut)]), expected, `cut at ${cut}`)
  }
  const bytes = Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1))
  assert.deepEqual(decodeChunks(bytes), expected, 'one byte at a time')
  for (let round = 0; round < 200; round++) {
    const chunks: Buffer[] = []
    for (let at = 0; at < stream.length; ) {
      const n = Math.min(stream.length - at, 1 + Math.floor(rng() * 700))
      chunks.push(stream.subarray(at, at + n))
      at += n
    }
    assert.deepEqual(decodeChunks(chunks), expected, `random split round ${round}, seed ${SEED}`)
    // The same chunks as buffers of their own (as Node's reads are): joined by copying.
    assert.deepEqual(decodeChunks(chunks.map((c) => Buffer.from(c))), expected, `random split round ${round} (copies), seed ${SEED}`)
  }
})

test('chunks that continue each other in memory make a frame without a copy; others are joined', { timeout: 10_000 }, () => {
  const rng = seededRandom(SEED ^ 0xa7e4a)
  const commands = Array.from({ length: 40 }, (_, i) => RemotingCommand.createRequest(1, { i: String(i) }, Buffer.alloc(1 + Math.floor(rng() * 5000), i)))
  const stream = Buffer.concat(commands.map((c) => encodeFrame(c)))
  for (let round = 0; round < 50; round++) {
    // Cut the stream anywhere; some chunks stay views of it, others are copies.
    const chunks: Buffer[] = []
    for (let at = 0; at < stream.length; ) {
      const n = Math.min(stream.length - at, 1 + Math.floor(rng() * 3000))
      const view = stream.subarray(at, at + n)
      chunks.push(rng() < 0.3 ? Buffer.from(view) : view)
      at += n
    }
    const decoder = new FrameDecoder()
    const got: RemotingCommand[] = []
    for (const chunk of chunks) decoder.push(chunk, (cmd) => got.push(cmd))
    assert.equal(got.length, commands.length, `round ${round}, seed ${SEED}`)
    // Where each frame's bytes start and end in the stream, and which chunks brought them.
    let start = 0
    got.forEach((cmd, i) => {
      assert.equal(cmd.extFields.i, String(i))
      assert.ok(cmd.body.equals(commands[i]!.body), `round ${round} frame ${i}, seed ${SEED}`)
      const end = start + encodeFrame(commands[i]!).length
      let from = 0
      const covering: Buffer[] = []
      for (const c of chunks) {
        if (from + c.length > start && from < end) covering.push(c)
        from += c.length
      }
      // Every chunk of the frame a view of the stream: the body is a view of the stream too.
      if (covering.every((c) => c.buffer === stream.buffer)) assert.equal(cmd.body.buffer, stream.buffer, `round ${round} frame ${i} copied, seed ${SEED}`)
      start = end
    })
  }
})

test('a 4 MiB frame arriving in 1 KiB chunks is joined once', { timeout: 10_000 }, () => {
  const body = Buffer.alloc(4 * 1024 * 1024, 3)
  const frame = encodeFrame(RemotingCommand.createRequest(1, {}, body))
  const decoder = new FrameDecoder()
  let got: RemotingCommand | undefined
  const begin = performance.now()
  for (let at = 0; at < frame.length; at += 1024) decoder.push(frame.subarray(at, at + 1024), (c) => (got = c))
  assert.ok(got?.body.equals(body))
  assert.ok(performance.now() - begin < 2000, 'linear, not quadratic')
})

test('malformed frames fail with typed errors', { timeout: 5_000 }, () => {
  const word = (n: number) => {
    const b = Buffer.alloc(4)
    b.writeInt32BE(n)
    return b
  }
  const decode = (buf: Buffer, max?: number) => new FrameDecoder(max).push(buf, () => {})
  expectCode(() => decode(word(-1)), 'BAD_FRAME')
  expectCode(() => decode(word(3)), 'BAD_FRAME')
  expectCode(() => decode(word(16 * 1024 * 1024)), 'FRAME_TOO_LARGE')
  expectCode(() => decode(word(1000), 512), 'FRAME_TOO_LARGE')
  // header length larger than the frame
  expectCode(() => decode(Buffer.concat([word(8), word(100), word(0)])), 'BAD_FRAME')
  // unknown serialize type 2
  expectCode(() => decode(Buffer.concat([word(6), word((2 << 24) | 2), Buffer.from('{}')])), 'BAD_FRAME')
  // invalid JSON
  expectCode(() => decode(Buffer.concat([word(7), word(3), Buffer.from('{x}')])), 'BAD_FRAME')
  // ROCKETMQ header shorter than its fixed part
  expectCode(() => decode(Buffer.concat([word(8), word((1 << 24) | 4), word(0)])), 'BAD_FRAME')
  // ROCKETMQ remark length past the header
  const bin = encodeBinaryHeader(new RemotingCommand({ code: 1, remark: 'abc' }))
  bin.writeInt32BE(1000, BINARY_HEADER.remarkLength)
  expectCode(() => decode(Buffer.concat([word(4 + bin.length), word((1 << 24) | bin.length), bin])), 'BAD_FRAME')
  // a failed decoder stays failed
  const d = new FrameDecoder()
  expectCode(() => d.push(word(-5), () => {}), 'BAD_FRAME')
  expectCode(() => d.push(encodeFrame(RemotingCommand.createRequest(1)), () => {}), 'BAD_FRAME')
})

test('opaque counter increases per request and responses copy nothing by themselves', { timeout: 5_000 }, () => {
  const a = RemotingCommand.createRequest(1)
  const b = RemotingCommand.createRequest(1)
  assert.equal(b.opaque, (a.opaque + 1) | 0)
  const r = RemotingCommand.createResponse(0, 'ok')
  assert.equal(r.isResponse, true)
  assert.equal(r.isOneway, false)
  assert.equal(a.isResponse, false)
  assert.equal(a.markOneway().isOneway, true)
})

test('canonical JSON fast path decodes exactly what JSON.parse does, and defers everything else', { timeout: 20_000 }, () => {
  const rng = seededRandom(SEED + 7)
  const same = (text: string, expectFast: boolean) => {
    const header = Buffer.from(text, 'utf8')
    const fast = decodeCanonicalJsonHeader(header)
    assert.equal(fast !== undefined, expectFast, text)
    let generic: RemotingCommand | undefined
    let genericError: unknown
    try {
      generic = decodeJsonHeaderGeneric(header)
    } catch (err) {
      genericError = err
    }
    if (fast !== undefined) {
      assert.equal(genericError, undefined, text)
      assert.deepEqual(observable(fast), observable(generic!), text)
      assert.deepEqual(Object.keys(fast.extFields), Object.keys(generic!.extFields), text)
      assert.equal(Object.getPrototypeOf(fast.extFields), Object.getPrototypeOf(generic!.extFields), text)
      assert.equal(fast.serializeType, SerializeType.JSON)
    }
    // The public entry point behaves like JSON.parse either way.
    if (genericError !== undefined) assert.throws(() => decodeJsonHeader(header), (err: unknown) => err instanceof TransportError && err.code === (genericError as TransportError).code)
    else assert.deepEqual(observable(decodeJsonHeader(header)), observable(generic!), text)
  }
  let fastCount = 0
  for (let i = 0; i < 2000; i++) {
    const cmd = randomCommand(rng, SerializeType.JSON, 0)
    const text = encodeJsonHeader(cmd).toString('utf8')
    // Encoder output takes the fast path exactly when every string is plain printable ASCII.
    const plain = /^[\x20-\x7e]*$/.test(text) && !text.includes('\\') && !text.includes('"__proto__"')
    if (plain) fastCount++
    same(text, plain)
  }
  assert.ok(fastCount > 100, `only ${fastCount} plain headers generated`)
  const base = (ext: string, extra = '') => `{"code":10,"extFields":${ext},"flag":0,"language":"JAVA","opaque":5,${extra}"serializeTypeCurrentRPC":"JSON","version":475}`
  same(base('{}'), true)
  same(base('{"a":"1","a":"2","2":"x","1":"y","":""}'), true)
  same(base('{"k":"v"}', '"remark":"",'), true)
  same(base('{"k":"v"}', '"remark":"ok / fine",'), true)
  same(base('{"__proto__":"x"}'), false)
  // One-character keys and values (SEND_MESSAGE_V2's) come from a table: every printable ASCII one.
  for (let c = 0x20; c < 0x7f; c++) {
    const ch = String.fromCharCode(c)
    const plain = ch !== '"' && ch !== '\\'
    same(base(`{${JSON.stringify(ch)}:${JSON.stringify(ch)},${JSON.stringify(`k${ch}`)}:"",${JSON.stringify(`${ch}v`)}:${JSON.stringify(ch)}}`), plain)
  }
  same(base('{"k":"caf\u00e9"}'), false)
  same(base('{"k":"café"}'), false)
  same(base('{"k":"a\\"b"}'), false)
  same(base('{"k":1}'), false)
  same(base('{"k":null}'), false)
  same(base('{ "k":"v"}'), false)
  same(base('{}', '"remark":null,'), false)
  same(base('{}', '"remark":"tab\there",'), false)
  same(base('{}') + ' ', false)
  same(base('{}').replace('"language":"JAVA"', '"language":0'), true)
  same(base('{}').replace('"language":"JAVA"', '"language":"NOT_A_LANGUAGE"'), true)
  same(base('{}').replace('"language":"JAVA"', '"language":300'), false)
  same(base('{}').replace('"language":"JAVA"', '"language":null'), false)
  same(base('{}').replace('"code":10', '"code":-0'), false)
  same(base('{}').replace('"code":10', '"code":-2147483648'), true)
  same(base('{}').replace('"code":10', '"code":2147483647'), true)
  same(base('{}').replace('"code":10', '"code":2147483648'), false)
  same(base('{}').replace('"code":10', '"code":10.0'), false)
  same(base('{}').replace('"code":10', '"code":1e1'), false)
  same(base('{}').replace('"code":10', '"code":010'), false)
  same(base('{}').replace('"code":10', '"code":-'), false)
  same(base('{}').replace('"version":475', '"version":475,"extra":1'), false)
  same(base('{}').replace('"flag":0,', ''), false)
  same('{"extFields":{},"code":10,"flag":0,"language":"JAVA","opaque":5,"serializeTypeCurrentRPC":"JSON","version":475}', false)
  same(base('{}').slice(0, -1), false)
  for (let cut = 0; cut < base('{"k":"v"}').length; cut++) same(base('{"k":"v"}').slice(0, cut), false)
  // Within a larger buffer the decoder stops at the header's end, even where the bytes after it
  // would complete a header.
  for (const text of [base('{"k":"v"}', '"remark":"r",'), base('{}')]) {
    const whole = Buffer.from(`xx${text}yy`, 'latin1')
    assert.deepEqual(observable(decodeCanonicalJsonHeaderAt(whole, 2, 2 + text.length)!), observable(decodeJsonHeaderGeneric(Buffer.from(text))))
    for (let cut = 0; cut < text.length; cut++) assert.equal(decodeCanonicalJsonHeaderAt(whole, 2, 2 + cut), undefined, `cut at ${cut}`)
  }
})

test('isPlainJsonText answers as the plain-text class for short and long texts alike; an answer of long plain values encodes as JSON.stringify would', () => {
  const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/
  const rnd = seededRandom(SEED + 61)
  const alphabet = ['a', 'Z', '0', ',', ' ', '~', '!', '#', '[', ']', '"', '\\', '\u0000', '\u001f', '\u007f', 'é', '\u00ff', '\u0100', '€', '\ud800', '😀']
  for (let i = 0; i < 3000; i++) {
    const length = randomInt(rnd, 0, 200)
    // Mostly plain, so that long plain texts with one odd character late are common.
    const odd = rnd() < 0.5 ? randomInt(rnd, 0, Math.max(0, length - 1)) : -1
    let text = ''
    for (let k = 0; k < length; k++) text += k === odd ? alphabet[randomInt(rnd, 0, alphabet.length - 1)]! : alphabet[randomInt(rnd, 0, 9)]!
    assert.equal(isPlainJsonText(text), PLAIN.test(text), `SEED=${SEED}: ${JSON.stringify(text)}`)
  }
  for (const value of ['A'.repeat(100) + '"', 'A'.repeat(100) + '\\', 'A'.repeat(100) + '\u0001', 'A'.repeat(100) + 'é', 'A,'.repeat(500)]) {
    const cmd = RemotingCommand.createResponse(0, null, { msgId: value, queueId: '1' })
    cmd.opaque = 7
    const frame = encodeFrame(cmd)
    assert.equal(decodeFrame(frame).extFields.msgId, value, JSON.stringify(value.slice(-3)))
    // The header bytes are JSON.stringify's, on the plain path and off it.
    assert.equal(frame.toString('utf8', 8, 8 + frame.readInt32BE(4)), encodeJsonHeaderText(cmd))
  }
})
