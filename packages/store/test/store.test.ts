// MessageStore on real files: put/lookup, rolling across many 64 KiB files with BLANK
// markers, putBatch contiguity, reopen after a clean close, typed errors, and the directory layout.
import assert from 'node:assert/strict'
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, StoreError, decodeMessageId, type MessageStoreOptions, type PutMessage, type PutResult } from '../src/index.js'
import { BLANK_MAGIC_CODE, SYSFLAG, parseHost, prepareRecord } from '../src/codec/index.js'
import { SMALL_FILE, reopen, tempDir } from './helpers.js'

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => err instanceof StoreError && err.code === code)
}

for (const flush of ['async', 'sync'] as const) {
  test(`${flush}: put then lookup returns the message; layout is RocketMQ's`, { timeout: 30_000 }, async () => {
    const { dir, cleanup } = await tempDir()
    const store = await MessageStore.open({ dir, flush, commitLogFileSize: SMALL_FILE })
    try {
      const r = await store.put({ topic: 'orders', queueId: 2, body: Buffer.from('order 4711'), tags: 'TagA', keys: ['4711', 'vip'], properties: { region: 'eu-west' } })
      assert.equal(r.status, 'PUT_OK')
      assert.equal(r.physicalOffset, 0)
      assert.equal(r.queueOffset, 0)
      assert.match(r.msgId, /^7F00000100002A9F0{16}$/)
      const m = await store.lookup(r.physicalOffset)
      assert.equal(m.topic, 'orders')
      assert.equal(m.queueId, 2)
      assert.equal(m.queueOffset, 0)
      assert.equal(m.body.toString(), 'order 4711')
      assert.equal(m.tags, 'TagA')
      assert.deepEqual(m.keys, ['4711', 'vip'])
      assert.equal(m.properties.region, 'eu-west')
      assert.equal(m.msgId, r.msgId)
      assert.equal(m.storeTimestamp, r.storeTimestamp)
      assert.deepEqual(await store.viewMessage(r.msgId), m)
      const names = await readdir(dir)
      for (const n of ['commitlog', 'consumequeue', 'index', 'config', 'checkpoint', 'abort', 'lock']) assert.ok(names.includes(n), n)
      assert.equal((await stat(path.join(dir, 'commitlog', '00000000000000000000'))).size, SMALL_FILE)
      assert.equal((await stat(path.join(dir, 'checkpoint'))).size, 4096)
    } finally {
      await store.close()
      await cleanup()
    }
    assert.equal(store.status, 'closed')
  })

  test(`${flush}: rolls across many small files, writes BLANK, queue offsets stay dense`, { timeout: 60_000 }, async () => {
    const { dir, cleanup } = await tempDir()
    const options = { dir, flush, commitLogFileSize: SMALL_FILE }
    let store = await MessageStore.open(options)
    try {
      const puts: { offset: number; queue: number; queueOffset: number; body: string }[] = []
      const next = [0, 0, 0]
      const pending: Promise<void>[] = []
      for (let i = 0; i < 1500; i++) {
        const queue = i % 3
        const body = `message-${i}-`.padEnd(100 + ((i * 37) % 700), 'x')
        pending.push(
          store.put({ topic: 'roll', queueId: queue, body }).then((r) => {
            puts.push({ offset: r.physicalOffset, queue, queueOffset: r.queueOffset, body })
          }),
        )
        if (pending.length >= 32) await Promise.all(pending.splice(0))
      }
      await Promise.all(pending)
      puts.sort((a, b) => a.offset - b.offset)
      for (const p of puts) assert.equal(p.queueOffset, next[p.queue]!++)
      assert.ok(store.maxPhysicalOffset > 10 * SMALL_FILE, 'rolled over at least 10 files')
      for (const p of puts) {
        // no record straddles a file
        assert.equal(Math.floor(p.offset / SMALL_FILE), Math.floor((p.offset + p.body.length + 100) / SMALL_FILE))
      }
      const files = (await readdir(path.join(dir, 'commitlog'))).filter((n) => /^\d{20}$/.test(n)).sort()
      assert.ok(files.length > 10)
      files.forEach((n, i) => assert.equal(Number(n), i * SMALL_FILE))
      store = await reopen(store, options)
      assert.equal(store.recovery.cleanShutdown, true)
      assert.equal(store.recovery.truncated, undefined)
      for (const p of puts) {
        const m = await store.lookup(p.offset)
        assert.equal(m.body.toString(), p.body)
        assert.equal(m.queueId, p.queue)
        assert.equal(m.queueOffset, p.queueOffset)
      }
      // A blank marker ends the first file.
      const firstEnd = puts.filter((p) => p.offset < SMALL_FILE).at(-1)!
      const raw = await readFile(path.join(dir, 'commitlog', files[0]!))
      const blankAt = firstEnd.offset + (await store.lookup(firstEnd.offset)).storeSize
      assert.equal(raw.readInt32BE(blankAt + 4), BLANK_MAGIC_CODE)
      assert.equal(raw.readInt32BE(blankAt), SMALL_FILE - blankAt)
      // Offsets continue after reopen.
      const after = await store.put({ topic: 'roll', queueId: 1, body: 'after' })
      assert.equal(after.queueOffset, next[1])
      assert.ok(after.physicalOffset >= puts.at(-1)!.offset)
    } finally {
      await store.close()
      await cleanup()
    }
  })

  test(`${flush}: putBatch is contiguous with consecutive queue offsets`, { timeout: 30_000 }, async () => {
    const { dir, cleanup } = await tempDir()
    const store = await MessageStore.open({ dir, flush, commitLogFileSize: SMALL_FILE })
    try {
      await store.put({ topic: 'b', queueId: 0, body: 'x'.repeat(63_000) })
      const batch = Array.from({ length: 32 }, (_, i) => ({ topic: 'b', queueId: 0, body: `batch-${i}`, keys: `k${i}` }))
      const rs = await store.putBatch(batch)
      assert.equal(rs.length, 32)
      rs.forEach((r, i) => {
        assert.equal(r.queueOffset, i + 1)
        if (i > 0) assert.equal(r.physicalOffset, rs[i - 1]!.physicalOffset + rs[i - 1]!.size)
      })
      // it did not fit after the 63 KB message, so the whole batch moved to the next file
      assert.equal(rs[0]!.physicalOffset, SMALL_FILE)
      for (let i = 0; i < 32; i++) assert.equal((await store.lookup(rs[i]!.physicalOffset)).body.toString(), `batch-${i}`)
      assert.deepEqual(await store.putBatch([]), [])
    } finally {
      await store.close()
      await cleanup()
    }
  })
}

test('bad input gets typed errors and changes nothing', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, maxMessageSize: 1024 })
  try {
    await expectCode(store.put({ topic: 'bad topic', queueId: 0, body: 'x' }), 'TOPIC_INVALID')
    await expectCode(store.put({ topic: '', queueId: 0, body: 'x' }), 'TOPIC_INVALID')
    await expectCode(store.put({ topic: 't'.repeat(128), queueId: 0, body: 'x' }), 'TOPIC_INVALID')
    await expectCode(store.put({ topic: 't', queueId: -1, body: 'x' }), 'INVALID_ARGUMENT')
    await expectCode(store.put({ topic: 't', queueId: 1.5, body: 'x' }), 'INVALID_ARGUMENT')
    await expectCode(store.put({ topic: 't', queueId: 0, body: Buffer.alloc(1025) }), 'MESSAGE_TOO_LARGE')
    await expectCode(store.put({ topic: 't', queueId: 0, body: 'x', properties: { a: 'b\u0001c' } }), 'INVALID_PROPERTY')
    await expectCode(store.put({ topic: 't', queueId: 0, body: 'x', properties: { a: '' } }), 'INVALID_PROPERTY')
    await expectCode(store.put({ topic: 't', queueId: 0, body: 'x', keys: ['a b'] }), 'INVALID_PROPERTY')
    await expectCode(store.put({ topic: 't', queueId: 0, body: 'x', properties: { big: 'v'.repeat(40_000) } }), 'PROPERTIES_TOO_LONG')
    await expectCode(store.putBatch([{ topic: 't', queueId: 0, body: 'ok' }, { topic: 'no way', queueId: 0, body: 'x' }]), 'TOPIC_INVALID')
    await expectCode(store.lookup(12345), 'INVALID_ARGUMENT')
    await expectCode(store.viewMessage('nothex'), 'INVALID_ARGUMENT')
    assert.equal(store.maxPhysicalOffset, 0, 'nothing was written')
    const ok = await store.put({ topic: 't', queueId: 0, body: Buffer.alloc(1024) })
    assert.equal(ok.queueOffset, 0)
    await expectCode(store.lookup(ok.physicalOffset + 1), 'INVALID_ARGUMENT')
    await expectCode(MessageStore.open({ dir }), 'LOCKED')
  } finally {
    await store.close()
    await cleanup()
  }
  await expectCode(store.put({ topic: 't', queueId: 0, body: 'x' }), 'NOT_OPEN')
  await expectCode(store.lookup(0), 'NOT_OPEN')
  await store.close() // idempotent
})

test('a retry topic of 200 characters is stored with the V2 magic and read back', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const options = { dir, commitLogFileSize: SMALL_FILE }
  let store = await MessageStore.open(options)
  try {
    const topic = '%RETRY%' + 'g'.repeat(193)
    const r = await store.put({ topic, queueId: 0, body: 'retry me' })
    store = await reopen(store, options)
    assert.equal((await store.lookup(r.physicalOffset)).topic, topic)
    assert.equal(store.maxQueueOffset(topic, 0), 1)
  } finally {
    await store.close()
    await cleanup()
  }
})

test('a put with sysFlag 0x10 or 0x20 and IPv4 hosts is readable with lookup and get, and the store reopens', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const options = { dir, commitLogFileSize: SMALL_FILE }
  let store = await MessageStore.open(options)
  try {
    const rs = [await store.put({ topic: 't', queueId: 0, body: 'a', sysFlag: 0x10 }), await store.put({ topic: 't', queueId: 0, body: 'b', sysFlag: 0x20 })]
    rs.push(await store.put({ topic: 't', queueId: 0, body: 'c' }))
    const read = async (): Promise<void> => {
      for (const [i, r] of rs.entries()) {
        const m = await store.lookup(r.physicalOffset)
        assert.equal(m.body.toString(), 'abc'[i])
        assert.equal(m.sysFlag, 0, 'the host bits say what is encoded: IPv4')
      }
      const got = await store.get({ topic: 't', queueId: 0, offset: 0 })
      assert.deepEqual(got.messages.map((m) => m.body.toString()), ['a', 'b', 'c'])
    }
    await read()
    store = await reopen(store, options)
    await read()
  } finally {
    await store.close()
    await cleanup()
  }
})

/** What a put of `input` must read back as: sysFlag as stored, hosts as formatted. */
interface HostCase {
  input: { sysFlag?: number; bornHost?: string; queueId: number }
  sysFlag: number
  bornHost: string
}

for (const flush of ['async', 'sync'] as const) {
  for (const storeHost of ['127.0.0.1:10911', '[2001:db8::7]:10911']) {
    const v6Store = storeHost.startsWith('[')
    test(`${flush}, store host ${storeHost}: sysFlag host bits follow the hosts encoded; IPv6 records read back after reopen and crash recovery`, { timeout: 60_000 }, async () => {
      const { dir, cleanup } = await tempDir()
      const options = { dir, flush, commitLogFileSize: SMALL_FILE, storeHost }
      const storeBit = v6Store ? 0x20 : 0
      const cases: HostCase[] = [
        // The caller's 0x10/0x20 say nothing about what is encoded: replaced by the real layout.
        { input: { sysFlag: 0x10, queueId: 0 }, sysFlag: storeBit, bornHost: '127.0.0.1:0' },
        { input: { sysFlag: 0x20, queueId: 0 }, sysFlag: storeBit, bornHost: '127.0.0.1:0' },
        { input: { sysFlag: 0x30 | 0x2, queueId: 1 }, sysFlag: storeBit | 0x2, bornHost: '127.0.0.1:0' },
        { input: { bornHost: '[::1]:5000', queueId: 0 }, sysFlag: storeBit | 0x10, bornHost: '[::1]:5000' },
        { input: { bornHost: '[FE80:0:0:0:1:0:0:2]:65535', sysFlag: 0x1, queueId: 1 }, sysFlag: storeBit | 0x10 | 0x1, bornHost: '[fe80::1:0:0:2]:65535' },
        { input: { bornHost: '[::ffff:10.0.0.1]:7', sysFlag: 0x8, queueId: 0 }, sysFlag: storeBit | 0x10 | 0x8, bornHost: '[::ffff:10.0.0.1]:7' },
        { input: { bornHost: '10.1.2.3:45678', sysFlag: 0x10, queueId: 1 }, sysFlag: storeBit, bornHost: '10.1.2.3:45678' },
        // The same host again, then another: each message keeps its own (the store remembers the last one parsed).
        { input: { bornHost: '10.1.2.3:45678', queueId: 0 }, sysFlag: storeBit, bornHost: '10.1.2.3:45678' },
        { input: { bornHost: '[::1]:5000', queueId: 1 }, sysFlag: storeBit | 0x10, bornHost: '[::1]:5000' },
        { input: { queueId: 1 }, sysFlag: storeBit, bornHost: '127.0.0.1:0' },
      ]
      let store = await MessageStore.open(options)
      try {
        const written: { offset: number; msgId: string; body: string; c: HostCase }[] = []
        for (const [i, c] of cases.entries()) {
          const body = `host case ${i}`
          const r = await store.put({ topic: 'hosts', body, tags: 'T', keys: [`k${i}`], ...c.input })
          assert.equal(r.status, 'PUT_OK')
          written.push({ offset: r.physicalOffset, msgId: r.msgId, body, c })
        }
        const batch = await store.putBatch(cases.map((c, i) => ({ topic: 'hosts', body: `batch case ${i}`, tags: 'T', ...c.input })))
        batch.forEach((r, i) => written.push({ offset: r.physicalOffset, msgId: r.msgId, body: `batch case ${i}`, c: cases[i]! }))
        const check = async (when: string): Promise<void> => {
          for (const w of written) {
            assert.equal(w.msgId.length, v6Store ? 56 : 32, `${when}: offset message id of ${w.body}`)
            const m = await store.lookup(w.offset)
            assert.equal(m.body.toString(), w.body, when)
            assert.equal(m.sysFlag, w.c.sysFlag, `${when}: sysFlag of ${w.body}`)
            assert.equal(m.bornHost, w.c.bornHost, `${when}: bornHost of ${w.body}`)
            assert.equal(m.storeHost, v6Store ? '[2001:db8::7]:10911' : storeHost, when)
            assert.equal(m.msgId, w.msgId, when)
            assert.equal((await store.viewMessage(w.msgId)).body.toString(), w.body, when)
            assert.deepEqual(decodeMessageId(w.msgId), { host: m.storeHost, physicalOffset: w.offset })
          }
          for (const queueId of [0, 1]) {
            const got = await store.get({ topic: 'hosts', queueId, offset: 0, tags: ['T'] })
            const expected = written.filter((w) => w.c.input.queueId === queueId)
            assert.equal(got.status, 'FOUND', when)
            assert.deepEqual(got.messages.map((m) => m.body.toString()), expected.map((w) => w.body), `${when}: queue ${queueId}`)
            assert.deepEqual(got.messages.map((m) => m.bornHost), expected.map((w) => w.c.bornHost), when)
          }
          assert.equal((await store.queryByKey('hosts', 'k3')).length, 1, when)
        }
        await check('written')
        store = await reopen(store, options)
        assert.equal(store.recovery.cleanShutdown, true)
        await check('after a clean reopen')
        // As after a crash: recovery checks every record (CRC included) and re-dispatches them all.
        await store.close()
        await writeFile(path.join(dir, 'abort'), '1')
        await rm(path.join(dir, 'consumequeue'), { recursive: true })
        await rm(path.join(dir, 'index'), { recursive: true })
        store = await MessageStore.open(options)
        assert.equal(store.recovery.cleanShutdown, false)
        await check('after crash recovery')
      } finally {
        await store.close()
        await cleanup()
      }
    })
  }
}

/** Rejects with a StoreError of `code` whose message matches `message`. */
async function expectError(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof StoreError, `a StoreError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    assert.match(err.message, message)
    return true
  })
}

test('put input errors are StoreErrors that say what is wrong and show what was received', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE })
  // The compiler would refuse most of these; JavaScript callers and the wire do not.
  const put = (m: Record<string, unknown>): Promise<unknown> => store.put({ topic: 't', queueId: 0, body: 'x', ...m } as never)
  try {
    await expectError(put({ properties: null }), 'INVALID_ARGUMENT', /properties must be a plain object of string values, got null/)
    await expectError(put({ properties: ['a'] }), 'INVALID_ARGUMENT', /got an array of 1/)
    await expectError(put({ properties: new Map([['a', 'b']]) }), 'INVALID_ARGUMENT', /got a Map/)
    await expectError(put({ properties: 'a=b' }), 'INVALID_ARGUMENT', /got the string "a=b"/)
    await expectError(put({ properties: { a: 1 } }), 'INVALID_PROPERTY', /property "a" must be a non-empty string, got 1/)
    await expectError(put({ properties: { a: undefined } }), 'INVALID_PROPERTY', /property "a" must be a non-empty string, got undefined/)
    await expectError(put({ properties: { a: null } }), 'INVALID_PROPERTY', /got null/)
    await expectError(put({ tags: 5 }), 'INVALID_PROPERTY', /property "TAGS" must be a non-empty string, got 5/)
    await expectError(put({ keys: 7 }), 'INVALID_PROPERTY', /keys must be a string \(space-separated keys\) or an array of strings, got 7/)
    await expectError(put({ keys: '   ' }), 'INVALID_PROPERTY', /keys must hold at least one key, got the string " {3}"/)
    await expectError(put({ keys: ['ok', 'a b'] }), 'INVALID_PROPERTY', /keys\[1\] must be a non-empty string without spaces .*got the string "a b"/)
    await expectError(put({ keys: ['ok', null] }), 'INVALID_PROPERTY', /keys\[1\] .*got null/)
    await expectError(put({ queueId: '0' }), 'INVALID_ARGUMENT', /queueId must be an integer from 0 to 1023, got the string "0"/)
    await expectError(put({ queueId: 1e9 }), 'INVALID_ARGUMENT', /queueId 1000000000 is not below maxQueuesPerTopic \(1024\)/)
    await expectError(put({ queueId: 1024 }), 'INVALID_ARGUMENT', /not below maxQueuesPerTopic/)
    await expectError(put({ queueId: NaN }), 'INVALID_ARGUMENT', /got NaN/)
    await expectError(put({ topic: 5 }), 'TOPIC_INVALID', /topic must be a non-empty string, got 5/)
    await expectError(put({ body: 12 }), 'INVALID_ARGUMENT', /body must be a Buffer, Uint8Array or string, got 12/)
    await expectError(put({ body: null }), 'INVALID_ARGUMENT', /got null/)
    await expectError(put({ bornHost: '::1:80' }), 'INVALID_ARGUMENT', /bornHost must be "a.b.c.d:port" or "\[ipv6\]:port", got the string "::1:80"/)
    await expectError(put({ bornHost: 80 }), 'INVALID_ARGUMENT', /bornHost .* got 80/)
    await expectError(put({ bornHost: '' }), 'INVALID_ARGUMENT', /bornHost .* got the string ""/)
    await expectError(put({ flag: 'x' }), 'INVALID_ARGUMENT', /flag must be an int \(-2\^31 to 2\^31-1\), got the string "x"/)
    await expectError(put({ flag: 2 ** 31 }), 'INVALID_ARGUMENT', /flag must be an int/)
    await expectError(put({ reconsumeTimes: -1 }), 'INVALID_ARGUMENT', /reconsumeTimes must be an integer from 0 to 2\^31-1, got -1/)
    await expectError(put({ bornTimestamp: NaN }), 'INVALID_ARGUMENT', /bornTimestamp must be an integer, got NaN/)
    await expectError(put({ bornTimestamp: '1' }), 'INVALID_ARGUMENT', /bornTimestamp must be a number, got the string "1"/)
    await expectError(put({ preparedTransactionOffset: 2 ** 60 }), 'INVALID_ARGUMENT', /preparedTransactionOffset 1152921504606847000 is beyond 2\^53-1/)
    await expectError(store.putBatch(null as never), 'INVALID_ARGUMENT', /putBatch takes an array of messages, got null/)
    await expectError(store.putBatch([null] as never), 'INVALID_ARGUMENT', /a message must be an object, got null/)
    // sysFlag: bits RocketMQ 4.x does not define are refused; 0x10 / 0x20 are the store's to set.
    await expectError(put({ sysFlag: 0x40 }), 'INVALID_ARGUMENT', /sysFlag 0x40 has RocketMQ 5.x bits/)
    await expectError(put({ sysFlag: 0x81 }), 'INVALID_ARGUMENT', /INNER_BATCH/)
    await expectError(put({ sysFlag: 0x401 }), 'INVALID_ARGUMENT', /sysFlag 0x401 has unknown bits 0x400/)
    await expectError(put({ sysFlag: 1 << 20 }), 'INVALID_ARGUMENT', /unknown bits 0x100000/)
    await expectError(put({ sysFlag: -1 }), 'INVALID_ARGUMENT', /sysFlag 0xffffffff has/)
    await expectError(put({ sysFlag: 0x100 }), 'INVALID_ARGUMENT', /compression type \(bits 8-9\) without COMPRESSED/)
    await expectError(put({ sysFlag: 1.5 }), 'INVALID_ARGUMENT', /sysFlag must be an int .*got 1.5/)
    await expectError(put({ sysFlag: '1' }), 'INVALID_ARGUMENT', /got the string "1"/)
    assert.equal(store.maxPhysicalOffset, 0, 'nothing was written')
    assert.deepEqual(await readdir(path.join(dir, 'consumequeue')), [], 'no queue directory was made')
    const zlib = await store.put({ topic: 't', queueId: 0, body: 'x', sysFlag: 0x301 | 0x10 })
    assert.equal((await store.lookup(zlib.physicalOffset)).sysFlag, 0x301)
    assert.equal((await store.put({ topic: 't', queueId: 1023, body: 'x' })).queueOffset, 0)
  } finally {
    await store.close()
    await cleanup()
  }
})

test('get, lookup and viewMessage argument errors say what is wrong', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE })
  const get = (r: Record<string, unknown>): Promise<unknown> => store.get({ topic: 't', queueId: 0, offset: 0, ...r } as never)
  try {
    await store.put({ topic: 't', queueId: 0, body: 'x' })
    await expectError(get({ offset: 1e18 }), 'INVALID_ARGUMENT', /offset 1000000000000000000 is beyond 2\^53-1 \(Number.MAX_SAFE_INTEGER\)/)
    await expectError(get({ offset: -1 }), 'INVALID_ARGUMENT', /offset must not be negative, got -1/)
    await expectError(get({ offset: 1.5 }), 'INVALID_ARGUMENT', /offset must be an integer, got 1.5/)
    await expectError(get({ offset: '0' }), 'INVALID_ARGUMENT', /offset must be a number, got the string "0"/)
    await expectError(get({ offset: undefined }), 'INVALID_ARGUMENT', /offset must be a number, got undefined/)
    await expectError(get({ queueId: '0' }), 'INVALID_ARGUMENT', /queueId must be an integer from 0 to 2\^31-1, got the string "0"/)
    await expectError(get({ topic: null }), 'TOPIC_INVALID', /got null/)
    await expectError(get({ maxMessages: '3' }), 'INVALID_ARGUMENT', /maxMessages must be a positive integer, got the string "3"/)
    await expectError(get({ maxBytes: 'x' }), 'INVALID_ARGUMENT', /maxBytes must be a positive integer, got the string "x"/)
    await expectError(get({ tags: 'TagA' }), 'INVALID_ARGUMENT', /tags must be an array of strings, got the string "TagA"/)
    await expectError(get({ tags: ['a', 5] }), 'INVALID_ARGUMENT', /tags\[1\] must be a string, got 5/)
    await expectError(get({ group: 5 }), 'INVALID_ARGUMENT', /group must be a string, got 5/)
    await expectError(store.get(null as never), 'INVALID_ARGUMENT', /get takes a request object, got null/)
    await expectError(store.lookup(1e18), 'INVALID_ARGUMENT', /physicalOffset 1000000000000000000 is beyond 2\^53-1/)
    await expectError(store.lookup('0' as never), 'INVALID_ARGUMENT', /physicalOffset must be a number, got the string "0"/)
    await expectError(store.lookup(1), 'INVALID_ARGUMENT', /no message starts at physical offset 1 \(/)
    await expectError(store.lookup(1 << 20), 'INVALID_ARGUMENT', /no message at physical offset 1048576/)
    await expectError(store.viewMessage(undefined as never), 'INVALID_ARGUMENT', /msgId must be an offset message id .*got undefined/)
    await expectError(store.viewMessage('zz'), 'INVALID_ARGUMENT', /got the string "zz"/)
    // A read of a queue no put may create answers as an unknown queue.
    assert.equal((await get({ queueId: 5000 }) as { status: string }).status, 'NO_MESSAGE_IN_QUEUE')
  } finally {
    await store.close()
    await cleanup()
  }
})

test('keys as one string are RocketMQ\'s space-separated KEYS; maxQueuesPerTopic bounds queue ids', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const options = { dir, commitLogFileSize: SMALL_FILE, maxQueuesPerTopic: 4 }
  let store = await MessageStore.open(options)
  try {
    const r = await store.put({ topic: 't', queueId: 3, body: 'x', keys: 'k1 k2' })
    const spaced = await store.put({ topic: 't', queueId: 3, body: 'y', keys: ' k3  k4 ' })
    assert.deepEqual((await store.lookup(r.physicalOffset)).keys, ['k1', 'k2'])
    assert.equal((await store.lookup(spaced.physicalOffset)).properties.KEYS, 'k3 k4', 'runs of spaces separate, as one')
    for (const key of ['k1', 'k2']) assert.deepEqual((await store.queryByKey('t', key)).map((m) => m.body.toString()), ['x'], key)
    assert.deepEqual((await store.queryByKey('t', 'k4')).map((m) => m.body.toString()), ['y'])
    await expectError(store.put({ topic: 't', queueId: 4, body: 'x' }), 'INVALID_ARGUMENT', /queueId 4 is not below maxQueuesPerTopic \(4\)/)
    store = await reopen(store, options)
    assert.deepEqual((await store.queryByKey('t', 'k2')).map((m) => m.body.toString()), ['x'])
  } finally {
    await store.close()
    await cleanup()
  }
  for (const bad of [0, 1.5, 2 ** 31 + 1, '8']) {
    await expectError(MessageStore.open({ dir, maxQueuesPerTopic: bad as number }), 'INVALID_ARGUMENT', /maxQueuesPerTopic must be an integer from 1 to 2\^31/)
  }
  await expectError(MessageStore.open({ dir, storeHost: 'localhost:1' }), 'INVALID_ARGUMENT', /storeHost must be "a.b.c.d:port" or "\[ipv6\]:port", got the string "localhost:1"/)
  await cleanup()
})

test('open refuses an option out of range with INVALID_ARGUMENT naming it, before anything is created', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const bad: Array<[string, Record<string, unknown>]> = [
      ['stagingLimitBytes', { flush: 'sync', stagingLimitBytes: 0 }],
      ['stagingLimitBytes', { stagingLimitBytes: -1 }],
      ['now', { now: 'x' }],
      ['now()', { now: () => NaN }],
      ['maxHashSlotNum', { maxHashSlotNum: 0 }],
      ['maxIndexNum', { maxIndexNum: 1 }],
      ['onCorruption', { onCorruption: 'x' }],
      ['maxMessageSize', { maxMessageSize: 0 }],
      ['syncFlushTimeoutMs', { syncFlushTimeoutMs: -5 }],
      ['maxOpenConsumeQueueFiles', { maxOpenConsumeQueueFiles: 0 }],
      ['maxTransferBytes', { maxTransferBytes: 0 }],
      ['verifyOnOpen', { verifyOnOpen: 'yes' }],
      ['retention.deleteWhen', { retention: { deleteWhen: 'noon' } }],
      ['retention.diskMaxUsedSpaceRatio', { retention: { diskMaxUsedSpaceRatio: 120 } }],
    ]
    for (const [name, extra] of bad) {
      const store = path.join(dir, `s-${name}`)
      await assert.rejects(
        MessageStore.open({ dir: store, ...extra } as unknown as MessageStoreOptions),
        (err: unknown) => err instanceof StoreError && err.code === 'INVALID_ARGUMENT' && err.message.startsWith(name),
        `${name}: ${JSON.stringify(extra)}`,
      )
      await assert.rejects(stat(store), 'nothing created')
    }
  } finally {
    await cleanup()
  }
})

test('a key, tag or property holding a lone UTF-16 surrogate is refused: UTF-8 cannot store it, so it could never be found', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, messageIndexEnable: false })
  try {
    const bad: Array<Partial<PutMessage>> = [{ keys: ['\ud800x'] }, { keys: 'a \udc00' }, { tags: '\udc00' }, { properties: { p: 'v\ud83d' } }, { properties: { ['\ud800']: 'v' } }]
    for (const extra of bad) {
      await assert.rejects(store.put({ topic: 't', queueId: 0, body: 'x', ...extra }), (err: unknown) => err instanceof StoreError && err.code === 'INVALID_PROPERTY', JSON.stringify(extra))
    }
    assert.equal(store.maxPhysicalOffset, 0)
    const ok = await store.put({ topic: 't', queueId: 0, body: 'x', keys: ['ключ😀'], tags: '✓' })
    assert.deepEqual((await store.lookup(ok.physicalOffset)).keys, ['ключ😀'])
  } finally {
    await store.close()
    await cleanup()
  }
})

test('consumer offsets take only what a put could make: a valid topic, a queue id below maxQueuesPerTopic, a non-negative offset (also when loaded)', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    let store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, messageIndexEnable: false, maxQueuesPerTopic: 8 })
    assert.throws(() => store.commitOffset('g', 't t', 0, 1), (e: unknown) => e instanceof StoreError && e.code === 'TOPIC_INVALID')
    assert.throws(() => store.commitOffset('g', 't', 8, 1), (e: unknown) => e instanceof StoreError && e.code === 'INVALID_ARGUMENT' && /maxQueuesPerTopic/.test(e.message))
    assert.throws(() => store.commitOffset('g', 't', 0, -1), (e: unknown) => e instanceof StoreError && e.code === 'INVALID_ARGUMENT')
    assert.throws(() => store.maxOffset('t', 'x' as unknown as number), (e: unknown) => e instanceof StoreError && e.code === 'INVALID_ARGUMENT')
    assert.throws(() => store.minOffset('t', -1), (e: unknown) => e instanceof StoreError && e.code === 'INVALID_ARGUMENT')
    store.commitOffset('g', 't', 1, 5)
    await store.close()
    const file = path.join(dir, 'config', 'consumerOffset.json')
    const json = JSON.parse(await readFile(file, 'utf8'))
    json.offsetTable['t@g'] = { '0': -5, '1': 5, '-2': 3 }
    await writeFile(file, JSON.stringify(json))
    store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE, messageIndexEnable: false, maxQueuesPerTopic: 8 })
    assert.equal(store.committedOffset('g', 't', 0), -1, 'a negative offset on disk is damage: never committed')
    assert.equal(store.committedOffset('g', 't', 1), 5)
    await store.close()
  } finally {
    await cleanup()
  }
})

test('get refuses a damaged record with CORRUPT_RECORD instead of serving another body', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const options = { dir, commitLogFileSize: SMALL_FILE, messageIndexEnable: false }
    let store = await MessageStore.open(options)
    const puts: PutResult[] = []
    for (let i = 0; i < 5; i++) puts.push(await store.put({ topic: 'T', queueId: 0, body: `body-${i}-`.repeat(3) }))
    await store.close()
    // One bit of the last record's body length (offset 84 of an IPv4 record): a clean open does not look.
    const log = path.join(dir, 'commitlog', '00000000000000000000')
    const bytes = await readFile(log)
    bytes[puts[4]!.physicalOffset + 87]! ^= 1
    await writeFile(log, bytes)
    store = await MessageStore.open(options)
    try {
      const fine = await store.get({ topic: 'T', queueId: 0, offset: 0, maxMessages: 4 })
      assert.equal(fine.messages.length, 4)
      await assert.rejects(store.get({ topic: 'T', queueId: 0, offset: 4 }), (e: unknown) => e instanceof StoreError && e.code === 'CORRUPT_RECORD' && e.details.physicalOffset === puts[4]!.physicalOffset)
      await assert.rejects(store.lookup(puts[4]!.physicalOffset), (e: unknown) => e instanceof StoreError && /no message starts/.test(e.message))
    } finally {
      await store.close()
    }
  } finally {
    await cleanup()
  }
})

for (const flush of ['async', 'sync'] as const) {
  test(`an append that fails while encoding takes no queue offset and stages nothing (${flush} flush)`, { timeout: 30_000 }, async () => {
    const { dir, cleanup } = await tempDir()
    const store = await MessageStore.open({ dir, flush, commitLogFileSize: SMALL_FILE })
    try {
      await store.put({ topic: 'T', queueId: 0, body: 'first' })
      const host = parseHost('127.0.0.1:1')!
      const st = store.commitLog.topicState('T', Buffer.from('T'))
      const fields = { topic: 'T', topicBytes: Buffer.from('T'), queueId: 0, flag: 0, bornTimestamp: 1, bornHost: host, reconsumeTimes: 0, preparedTransactionOffset: 0, body: Buffer.from('x'), properties: '' }
      const good = prepareRecord({ ...fields, sysFlag: 0 })
      // Host bits that do not match the IPv4 born host: the encode refuses the second record.
      const bad = prepareRecord({ ...fields, sysFlag: SYSFLAG.BORNHOST_V6 })
      const end = store.commitLogMaxOffset
      assert.throws(() => store.commitLog.append([good, good, bad], [st, st, st], good.totalSize * 2 + bad.totalSize), /does not match its hosts/)
      if (flush === 'async') {
        // The two records encoded before the failure are in the map; the first one's size is 0.
        const last = store.commitLog.queue.last!
        assert.equal(last.view.readInt32BE(end - last.fileFromOffset), 0, 'no size at the failed append')
      }
      const r = await store.put({ topic: 'T', queueId: 0, body: 'second' })
      assert.equal(r.queueOffset, 1, 'no offset was taken by the failed append')
      const got = await store.get({ topic: 'T', queueId: 0, offset: 0, maxMessages: 8 })
      assert.deepEqual(got.messages!.map((m) => Buffer.from(m.body).toString()), ['first', 'second'])
      await store.close()
      const again = await MessageStore.open({ dir, flush, commitLogFileSize: SMALL_FILE })
      assert.deepEqual((await again.get({ topic: 'T', queueId: 0, offset: 0, maxMessages: 8 })).messages!.map((m) => Buffer.from(m.body).toString()), ['first', 'second'])
      await again.close()
    } finally {
      await store.close().catch(() => undefined)
      await cleanup()
    }
  })
}

for (const flush of ['async', 'sync'] as const) {
  test(`put and putBatch read the caller's bytes before they return, also when the append waits for a roll (${flush} flush)`, { timeout: 30_000 }, async () => {
    const { dir, cleanup } = await tempDir()
    const store = await MessageStore.open({ dir, flush, commitLogFileSize: SMALL_FILE })
    try {
      // Nearly a whole file: the next appends wait for the next one.
      await store.put({ topic: 'T', queueId: 0, body: Buffer.alloc(SMALL_FILE - 1_200, 0x61) })
      const body = Buffer.alloc(1_000, 0x41)
      const props = Buffer.from('TAGS\u0001tagA\u0002')
      const one = store.put({ topic: 'T', queueId: 0, body, propertiesBytes: props })
      const bodies = [Buffer.alloc(900, 0x42), Buffer.alloc(900, 0x43)]
      const batch = store.putBatch(bodies.map((b) => ({ topic: 'T', queueId: 0, body: b, propertiesBytes: props })))
      // The caller reuses its buffers at once.
      body.fill(0x5a)
      props.fill(0x01)
      for (const b of bodies) b.fill(0x5a)
      const stored = [await one, ...(await batch)]
      assert.ok(stored[0]!.physicalOffset >= SMALL_FILE, 'the put waited for the next file')
      const want = [Buffer.alloc(1_000, 0x41), Buffer.alloc(900, 0x42), Buffer.alloc(900, 0x43)]
      for (let i = 0; i < stored.length; i++) {
        const m = await store.lookup(stored[i]!.physicalOffset)
        assert.deepEqual(Buffer.from(m.body), want[i], `message ${i}`)
        assert.equal(m.tags, 'tagA', `message ${i}`)
      }
    } finally {
      await store.close()
      await cleanup()
    }
  })
}

test("put and putBatch made while their topic is being deleted are stored from copies of the caller's bytes", { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const store = await MessageStore.open({ dir, commitLogFileSize: SMALL_FILE })
  try {
    await store.put({ topic: 'D', queueId: 0, body: 'old' })
    const deleting = store.deleteTopic('D')
    const body = Buffer.alloc(100, 0x41)
    const props = Buffer.from('TAGS\u0001tagA\u0002')
    const keys = ['k1']
    const one = store.put({ topic: 'D', queueId: 0, body, propertiesBytes: props })
    const batchBody = Buffer.alloc(100, 0x42)
    const batch = store.putBatch([{ topic: 'D', queueId: 0, body: batchBody, keys }])
    body.fill(0x5a)
    props.fill(0x01)
    batchBody.fill(0x5a)
    keys[0] = 'changed'
    await deleting
    const [a, b] = [await one, (await batch)[0]!]
    assert.equal(a.queueOffset, 0, 'the topic starts over')
    const ma = await store.lookup(a.physicalOffset)
    assert.deepEqual(Buffer.from(ma.body), Buffer.alloc(100, 0x41))
    assert.equal(ma.tags, 'tagA')
    const mb = await store.lookup(b.physicalOffset)
    assert.deepEqual(Buffer.from(mb.body), Buffer.alloc(100, 0x42))
    assert.deepEqual(mb.keys, ['k1'])
  } finally {
    await store.close()
    await cleanup()
  }
})
