// The HA stream between real stores over loopback TCP: replicas byte-identical to their master
// (files compared) with the same queue answers, catching up while producers run, resuming after
// a restart, sync replication's answers, and garbage from either side dropping that link only.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { seededRandom, seedFromEnv } from '@mqts/common'
import { MessageStore, type FlushMode, type MessageStoreOptions } from '@mqts/store'
import { HAMaster, HAReplica, encodeHeader, encodeReport } from '../src/index.js'

const FILE = 256 * 1024
const SEED = seedFromEnv()
const INDEX = { maxHashSlotNum: 1024, maxIndexNum: 8192 }

async function withDirs(n: number, fn: (dirs: string[]) => Promise<void>): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), 'mqts-ha-'))
  try {
    await fn(Array.from({ length: n }, (_, i) => path.join(root, `s${i}`)))
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

function options(dir: string, flush: FlushMode, role: 'master' | 'replica'): MessageStoreOptions {
  return { dir, flush, role, commitLogFileSize: FILE, ...INDEX }
}

async function produce(store: MessageStore, n: number, from = 0): Promise<void> {
  for (let i = from; i < from + n; i++) {
    await store.put({ topic: `T${i % 3}`, queueId: i % 4, body: Buffer.alloc(100 + ((i * 131) % 3000), i % 256), tags: `tag${i % 5}`, keys: `key-${i}` })
  }
}

async function caughtUp(master: MessageStore, replicas: MessageStore[], ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (replicas.some((r) => r.commitLogMaxOffset !== master.commitLogMaxOffset)) {
    if (Date.now() > end) assert.fail(`replicas at ${replicas.map((r) => r.commitLogMaxOffset).join(', ')}, master at ${master.commitLogMaxOffset}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function inSync(ha: HAMaster, n: number, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (ha.replicas().filter((r) => r.inSync).length < n) {
    if (Date.now() > end) assert.fail(`in sync: ${JSON.stringify(ha.replicas())}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The end of the last whole record at or below `offset` (records from 0, one file). */
function recordEndAtOrBelow(store: MessageStore, offset: number): number {
  let at = 0
  for (;;) {
    const size = store.readCommitLog(at, 4).readInt32BE(0)
    if (at + size > offset) return at
    at += size
  }
}

/**
 * The CommitLog files' bytes; with `end` (stores still open) only the files holding bytes below
 * it: an open store may have made its next file ahead, or be making it under a temporary name.
 */
async function logBytes(dir: string, end = Number.POSITIVE_INFINITY): Promise<Buffer> {
  const names = (await readdir(path.join(dir, 'commitlog'))).filter((n) => /^\d{20}$/.test(n) && Number(n) < end).sort()
  return Buffer.concat(await Promise.all(names.map((n) => readFile(path.join(dir, 'commitlog', n)))))
}

/** Every queue's messages, as "topic/queue: offsets and bodies' sizes and keys". */
async function queues(store: MessageStore): Promise<string[]> {
  const out: string[] = []
  for (let t = 0; t < 3; t++) {
    for (let q = 0; q < 4; q++) {
      const r = await store.get({ topic: `T${t}`, queueId: q, offset: 0, maxMessages: 10_000, maxBytes: 64 * 1024 * 1024 })
      out.push(`T${t}/${q}: ${r.messages.map((m) => `${m.queueOffset}:${m.physicalOffset}:${m.body.length}:${m.keys.join()}`).join(' ')}`)
    }
  }
  return out
}

for (const flush of ['async', 'sync'] as const) {
  test(`two replicas follow a master byte for byte, with the same queues and keys (${flush})`, { timeout: 90_000 }, async () => {
    await withDirs(3, async ([md, r1d, r2d]) => {
      const master = await MessageStore.open(options(md!, flush, 'master'))
      const r1 = await MessageStore.open(options(r1d!, flush, 'replica'))
      const r2 = await MessageStore.open(options(r2d!, flush, 'replica'))
      const ha = await HAMaster.start({ store: master })
      const f1 = HAReplica.start({ store: r1, masterAddress: ha.address() })
      await produce(master, 300)
      // The second replica starts empty while producers run.
      const f2 = HAReplica.start({ store: r2, masterAddress: ha.address() })
      await produce(master, 300, 300)
      await caughtUp(master, [r1, r2])
      assert.ok(master.commitLogMaxOffset > 2 * FILE, 'several files')
      await master.flush()
      await Promise.all([f1.stop(), f2.stop()])
      await ha.stop()
      const want = await queues(master)
      for (const r of [r1, r2]) {
        assert.deepEqual(await queues(r), want)
        assert.deepEqual((await r.queryByKey('T1', 'key-4')).map((m) => m.physicalOffset), (await master.queryByKey('T1', 'key-4')).map((m) => m.physicalOffset))
      }
      await Promise.all([master.close(), r1.close(), r2.close()])
      const bytes = await logBytes(md!)
      for (const d of [r1d!, r2d!]) assert.ok((await logBytes(d)).equals(bytes), `${d}'s CommitLog files equal the master's`)
    })
  })
}

test('a replica restarted resumes from its own end; sync replication answers OK, FLUSH_SLAVE_TIMEOUT, SLAVE_NOT_AVAILABLE', { timeout: 90_000 }, async () => {
  await withDirs(2, async ([md, rd]) => {
    const master = await MessageStore.open(options(md!, 'sync', 'master'))
    const ha = await HAMaster.start({ store: master, heartbeatMs: 200 })
    try {
      assert.equal(await ha.waitForReplicas(1, 100), 'SLAVE_NOT_AVAILABLE', 'no replica')
      let replica = await MessageStore.open(options(rd!, 'sync', 'replica'))
      let follower = HAReplica.start({ store: replica, masterAddress: ha.address() })
      await produce(master, 50)
      // A replica counts for sync sends once it caught up (not while it copies what it lacks).
      await caughtUp(master, [replica])
      await inSync(ha, 1)
      for (let i = 0; i < 20; i++) {
        const p = await master.put({ topic: 'S', queueId: 0, body: `sync ${i}` })
        assert.equal(await ha.waitForReplicas(p.physicalOffset + p.size, 5000), 'OK')
        // Acknowledged: the replica holds it.
        assert.ok(replica.commitLogMaxOffset >= p.physicalOffset + p.size)
      }
      await follower.stop()
      await replica.close()
      await produce(master, 50, 50)
      replica = await MessageStore.open(options(rd!, 'sync', 'replica'))
      const before = replica.commitLogMaxOffset
      assert.ok(before > 0)
      follower = HAReplica.start({ store: replica, masterAddress: ha.address() })
      await caughtUp(master, [replica])
      assert.equal(follower.linksDropped, 0, 'resumed without a mismatch')
      await follower.stop()
      await replica.close()
      // A replica that is connected but stops acknowledging: the send times out.
      const stuck = net.connect(ha.port, '127.0.0.1')
      await new Promise((r) => stuck.once('connect', r))
      stuck.write(encodeReport(master.commitLogMaxOffset))
      stuck.on('data', () => undefined)
      await new Promise((r) => setTimeout(r, 100))
      const p = await master.put({ topic: 'S', queueId: 0, body: 'never acknowledged' })
      assert.equal(await ha.waitForReplicas(p.physicalOffset + p.size, 300), 'FLUSH_SLAVE_TIMEOUT')
      stuck.destroy()
      await new Promise((r) => setTimeout(r, 100))
      assert.equal(await ha.waitForReplicas(p.physicalOffset + p.size, 300), 'SLAVE_NOT_AVAILABLE')
    } finally {
      await ha.stop()
      await master.close()
    }
  })
})

test('garbage from a peer drops that link only: a bad report at the master, bad frames at the replica', { timeout: 60_000 }, async () => {
  await withDirs(2, async ([md, rd]) => {
    const master = await MessageStore.open(options(md!, 'async', 'master'))
    const replica = await MessageStore.open(options(rd!, 'async', 'replica'))
    const ha = await HAMaster.start({ store: master })
    // Fake masters: a frame for another offset; garbage bytes in a frame at the right offset.
    const fake = (frame: Buffer): Promise<net.Server> =>
      new Promise((resolve) => {
        const server = net.createServer((s) => s.write(frame))
        server.listen(0, '127.0.0.1', () => resolve(server))
      })
    const wrongOffset = await fake(Buffer.concat([encodeHeader(12345, 3), Buffer.from('abc')]))
    const garbage = await fake(Buffer.concat([encodeHeader(0, 64), Buffer.alloc(64, 0x5a)]))
    let addr = `127.0.0.1:${(wrongOffset.address() as net.AddressInfo).port}`
    const follower = HAReplica.start({ store: replica, masterAddress: () => addr, reconnectDelayMs: 50 })
    const dropped = async (re: RegExp): Promise<void> => {
      const until = Date.now() + 10_000
      while (!re.test(follower.lastDropReason) && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
      assert.match(follower.lastDropReason, re)
    }
    try {
      await produce(master, 30)
      await dropped(/offset 12345/)
      addr = `127.0.0.1:${(garbage.address() as net.AddressInfo).port}`
      await dropped(/refused a chunk/)
      assert.equal(replica.commitLogMaxOffset, 0, 'nothing of either was written')
      // A report that is not an offset closes that connection at the master, no other.
      const bad = net.connect(ha.port, '127.0.0.1')
      await new Promise((r) => bad.once('connect', r))
      bad.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))
      await new Promise((r) => bad.once('close', r))
      addr = ha.address()
      await caughtUp(master, [replica])
      assert.equal(ha.replicas().length, 1)
    } finally {
      await follower.stop()
      wrongOffset.close()
      garbage.close()
      await ha.stop()
      await Promise.all([master.close(), replica.close()])
    }
  })
})

test(`frames cut anywhere by the stream (headers and bodies split across reads, frames of every size) make a byte-identical replica (seed ${SEED})`, { timeout: 60_000 }, async () => {
  await withDirs(2, async ([md, rd]) => {
    const master = await MessageStore.open(options(md!, 'async', 'master'))
    const replica = await MessageStore.open(options(rd!, 'async', 'replica'))
    const rnd = seededRandom(SEED)
    await produce(master, 300)
    const end = master.commitLogMaxOffset
    // A fake master: after the replica's first report, the whole log in frames of seeded sizes
    // (heartbeats between some), written in seeded pieces of 1 byte to 3 frames' worth.
    const frames: Buffer[] = []
    for (let at = 0; at < end; ) {
      const view = master.readCommitLog(at, 1 + Math.floor(rnd() * rnd() * 40_000))
      frames.push(encodeHeader(at, view.length), view)
      if (rnd() < 0.1) frames.push(encodeHeader(at + view.length, 0))
      at += view.length
    }
    const stream = Buffer.concat(frames)
    const reports: number[] = []
    const server = net.createServer((s) => {
      s.on('data', (d: Buffer) => {
        for (let i = 0; i + 8 <= d.length; i += 8) reports.push(Number(d.readBigInt64BE(i)))
      })
      void (async () => {
        for (let at = 0; at < stream.length && !s.destroyed; ) {
          const n = Math.min(stream.length - at, rnd() < 0.5 ? 1 + Math.floor(rnd() * 16) : 1 + Math.floor(rnd() * 100_000))
          s.write(stream.subarray(at, at + n))
          at += n
          await new Promise((r) => setImmediate(r))
        }
      })()
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const follower = HAReplica.start({ store: replica, masterAddress: `127.0.0.1:${(server.address() as net.AddressInfo).port}` })
    try {
      await caughtUp(master, [replica])
      assert.equal(follower.linksDropped, 0, follower.lastDropReason)
      const until = Date.now() + 10_000
      while (reports[reports.length - 1] !== end && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
      assert.equal(reports[reports.length - 1], end, 'the last report says the replica holds everything')
      assert.ok((await logBytes(rd!, master.commitLogMaxOffset)).equals(await logBytes(md!, master.commitLogMaxOffset)), 'CommitLog files byte-identical')
      assert.deepEqual(await queues(replica), await queues(master))
    } finally {
      await follower.stop()
      server.close()
      await Promise.all([master.close(), replica.close()])
    }
  })
})

test('a link that drops while groups are still being applied: the next link starts where they end, not where the store ended at the reconnect', { timeout: 60_000 }, async () => {
  await withDirs(2, async ([md, rd]) => {
    const master = await MessageStore.open(options(md!, 'async', 'master'))
    const replica = await MessageStore.open(options(rd!, 'async', 'replica'))
    await produce(master, 200)
    const end = master.commitLogMaxOffset
    const half = master.readCommitLog(0, Math.floor(end / 2)).length
    // The groups handed to the store wait, in order, until the second link is up.
    let handed!: () => void
    const groupHanded = new Promise<void>((r) => (handed = r))
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const append = replica.appendReplicated.bind(replica)
    replica.appendReplicated = (offset: number, bytes: Buffer): Promise<void> => {
      handed()
      return gate.then(() => append(offset, bytes))
    }
    // A fake master. Link 1: the first half of the log, dropped once it is handed to the store.
    // Link 2: its first report is where it starts; it gets the rest from there.
    const firstReports: number[] = []
    let links = 0
    const server = net.createServer((s) => {
      const link = ++links
      let got = Buffer.alloc(0)
      s.on('error', () => undefined)
      s.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d])
        if (got.length < 8 || firstReports.length >= link) return
        const from = Number(got.readBigInt64BE(0))
        firstReports.push(from)
        if (link === 1) {
          s.write(Buffer.concat([encodeHeader(0, half), master.readCommitLog(0, half)]))
          void groupHanded.then(() => s.destroy())
          return
        }
        release()
        for (let at = from; at < end; ) {
          const view = master.readCommitLog(at, 32 * 1024)
          s.write(Buffer.concat([encodeHeader(at, view.length), view]))
          at += view.length
        }
      })
      // Link 2 without a report yet: the group goes on after a while all the same.
      if (link === 2) setTimeout(release, 300)
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const follower = HAReplica.start({ store: replica, masterAddress: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, reconnectDelayMs: 10 })
    try {
      await caughtUp(master, [replica])
      // Where link 1's group ends: the end of its whole records (the store holds the cut one's
      // first bytes and skips them when they come again).
      assert.deepEqual(firstReports.slice(0, 2), [0, recordEndAtOrBelow(master, half)], 'link 2 starts after the group of link 1')
      assert.equal(follower.linksDropped, 0, follower.lastDropReason)
      assert.ok((await logBytes(rd!, master.commitLogMaxOffset)).equals(await logBytes(md!, master.commitLogMaxOffset)), 'CommitLog files byte-identical')
    } finally {
      release()
      await follower.stop()
      server.close()
      await Promise.all([master.close(), replica.close()])
    }
  })
})

test('a master whose log is cut back drops its replica links: what they acknowledged past the cut never counts', { timeout: 60_000 }, async () => {
  await withDirs(2, async ([md, rd]) => {
    const master = await MessageStore.open(options(md!, 'sync', 'master'))
    const replica = await MessageStore.open(options(rd!, 'sync', 'replica'))
    const ha = await HAMaster.start({ store: master })
    const follower = HAReplica.start({ store: replica, masterAddress: ha.address(), reconnectDelayMs: 50 })
    try {
      const p = []
      for (let i = 0; i < 5; i++) p.push(await master.put({ topic: 'T', queueId: 0, body: `old-${i}` }))
      assert.equal(await ha.waitForReplicas(p[4]!.physicalOffset + p[4]!.size, 5000), 'OK')
      await master.truncate(p[2]!.physicalOffset)
      const n = await master.put({ topic: 'T', queueId: 0, body: 'NEW-2' })
      // The replica holds old-2..old-4 past the cut: it is refused, so never in sync.
      assert.equal(await ha.waitForReplicas(n.physicalOffset + n.size, 500), 'SLAVE_NOT_AVAILABLE')
      assert.equal(ha.replicas().filter((r) => r.inSync).length, 0)
    } finally {
      await follower.stop()
      await ha.stop()
      await Promise.all([master.close(), replica.close()])
    }
  })
})

test('HA arguments and options are checked: typed INVALID_ARGUMENT', { timeout: 30_000 }, async () => {
  await withDirs(2, async ([md, rd]) => {
    const master = await MessageStore.open(options(md!, 'async', 'master'))
    const replica = await MessageStore.open(options(rd!, 'async', 'replica'))
    const invalid = (e: unknown): boolean => (e as { code?: string }).code === 'INVALID_ARGUMENT'
    try {
      for (const bad of [{ transferBatchBytes: 0 }, { transferBatchBytes: -1 }, { heartbeatMs: 0 }, { maxGapNotInSync: -5 }, { maxTimeNotCaughtUpMs: 0 }, { maxTimeNotCaughtUpMs: 1.5 }, { port: 70000 }, { host: 'not a host!' }]) {
        await assert.rejects(HAMaster.start({ store: master, ...bad }), invalid, JSON.stringify(bad))
      }
      await assert.rejects(HAMaster.start({ store: replica }), invalid, 'a replica store cannot serve')
      for (const addr of ['nope', '127.0.0.1', '', '127.0.0.1:99999']) assert.throws(() => HAReplica.start({ store: replica, masterAddress: addr }), invalid, addr)
      assert.throws(() => HAReplica.start({ store: master, masterAddress: '127.0.0.1:1' }), invalid, 'a master store cannot follow')
      const ha = await HAMaster.start({ store: master })
      try {
        for (const [end, t] of [[-1, 100], ['5', 100], [1.5, 100], [Number.NaN, 100], [Number.POSITIVE_INFINITY, 100], [5, Number.NaN], [5, -1]] as const) {
          await assert.rejects(ha.waitForReplicas(end as number, t as number), invalid, `${String(end)}, ${String(t)}`)
        }
      } finally {
        await ha.stop()
      }
    } finally {
      await Promise.all([master.close(), replica.close()])
    }
  })
})

test('a replica that stops reading: the master writes nothing more until its socket drains (one drain listener, not one per commit)', { timeout: 60_000 }, async () => {
  await withDirs(1, async ([dir]) => {
    const store = await MessageStore.open(options(dir!, 'async', 'master'))
    const master = await HAMaster.start({ store, port: 0 })
    const warnings: string[] = []
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`)
    process.on('warning', onWarning)
    const peer = net.connect(master.port, '127.0.0.1')
    try {
      await new Promise<void>((r) => peer.once('connect', r))
      peer.pause()
      peer.write(encodeReport(0))
      // Each put is a commit that wakes the link: with the socket full it must not write again.
      for (let i = 0; i < 1000; i++) await store.put({ topic: 'T', queueId: 0, body: Buffer.alloc(30_000, i % 256) })
      await new Promise((r) => setTimeout(r, 50))
      assert.deepEqual(warnings.filter((w) => w.includes('drain')), [])
    } finally {
      process.off('warning', onWarning)
      peer.destroy()
      await master.stop()
      await store.close()
    }
  })
})
