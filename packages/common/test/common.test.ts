import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  CodedError,
  NodeFileIO,
  readConfigFile,
  isDiskFull,
  javaHashContinue,
  javaStringHashCode,
  readI64,
  readI64View,
  seededRandom,
  writeI64,
  writeU64,
  writeU64View,
} from '../src/index.js'

test('javaStringHashCode equals Java String.hashCode on known values', () => {
  // Values from java.lang.String#hashCode.
  assert.equal(javaStringHashCode(''), 0)
  assert.equal(javaStringHashCode('a'), 97)
  assert.equal(javaStringHashCode('TagA'), 2598919)
  assert.equal(javaStringHashCode('Aa'), javaStringHashCode('BB'))
  assert.equal(javaStringHashCode('hello world'), 1794106052)
  assert.equal(javaStringHashCode('ключ😀'), javaHashContinue(javaStringHashCode('клю'), 'ч😀'))
  let slow = 0
  const s = 'orders#customer-7 with an odd length!'
  for (let i = 0; i < s.length; i++) slow = (Math.imul(31, slow) + s.charCodeAt(i)) | 0
  assert.equal(javaStringHashCode(s), slow)
})

test('64-bit fields round-trip in Buffer and DataView forms, big-endian', () => {
  const b = Buffer.alloc(8)
  for (const v of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 1_016_888_890]) {
    writeU64(b, 0, v)
    assert.equal(readI64(b, 0), v)
    assert.equal(b.readBigUInt64BE(0), BigInt(v))
    const view = new DataView(new ArrayBuffer(8))
    writeU64View(view, 0, v)
    assert.equal(readI64View(view, 0), v)
    assert.deepEqual(Buffer.from(view.buffer), b)
  }
  for (const v of [-1, -(2 ** 40), -(2 ** 53 - 1)]) {
    writeI64(b, 0, v)
    assert.equal(b.readBigInt64BE(0), BigInt(v))
    assert.equal(readI64(b, 0), v)
  }
})

test('seededRandom replays a sequence from its seed', () => {
  const a = seededRandom(42)
  const b = seededRandom(42)
  const xs = Array.from({ length: 5 }, () => a())
  assert.deepEqual(xs, Array.from({ length: 5 }, () => b()))
  assert.ok(xs.every((x) => x >= 0 && x < 1))
  assert.notDeepEqual(xs, Array.from({ length: 5 }, seededRandom(43)))
})

test('CodedError keeps code, details, cause and the subclass name', () => {
  class DemoError extends CodedError<'A' | 'B'> {}
  const cause = Object.assign(new Error('no space'), { code: 'ENOSPC' })
  const e = new DemoError('A', 'it failed', { cause, details: { at: 7 } })
  assert.equal(e.name, 'DemoError')
  assert.equal(e.code, 'A')
  assert.deepEqual(e.details, { at: 7 })
  assert.equal(e.cause, cause)
  assert.ok(e instanceof Error)
  assert.ok(isDiskFull(cause))
  assert.ok(!isDiskFull(new Error('x')))
})

test('readConfigFile: the file, else its .bak; nothing there is undefined; neither parsing is CONFIG_CORRUPT, not a silent empty config', async () => {
  const { mkdtemp, rm, writeFile } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const dir = await mkdtemp(join(tmpdir(), 'mqts-config-'))
  try {
    const io = new NodeFileIO()
    const file = join(dir, 'topics.json')
    const parse = (text: string): { v: number } => {
      const v = JSON.parse(text) as { v?: unknown }
      if (typeof v.v !== 'number') throw new Error('no v')
      return { v: v.v }
    }
    assert.equal(await readConfigFile(io, file, parse), undefined, 'neither file exists')
    await writeFile(`${file}.bak`, '{"v":1}')
    assert.deepEqual(await readConfigFile(io, file, parse), { v: 1 }, 'the backup when the file is missing')
    await writeFile(file, '{"v":2}')
    assert.deepEqual(await readConfigFile(io, file, parse), { v: 2 })
    await writeFile(file, 'garbage{')
    assert.deepEqual(await readConfigFile(io, file, parse), { v: 1 }, 'the backup when the file is corrupt')
    await writeFile(`${file}.bak`, '{"x":0}')
    await assert.rejects(readConfigFile(io, file, parse), (err: unknown) => {
      assert.ok(err instanceof CodedError)
      assert.equal(err.code, 'CONFIG_CORRUPT')
      assert.match(err.message, /topics\.json/)
      assert.match(err.message, /JSON|garbage|Unexpected/)
      return true
    })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
