// The replica's side of a link's failures: a master it cannot reach is not a master that refused
// its log, and a link that drops while the store holds the bytes of a cut record starts the next
// one at a record boundary (which the master checks) and skips what it already holds.
import assert from 'node:assert/strict'
import { readFile, readdir } from 'node:fs/promises'
import * as net from 'node:net'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore } from '@mqts/store'
import { withTempDir } from '@mqts/common/testing'
import { HAMaster, HAReplica, encodeHeader } from '../src/index.js'
import { recording, until } from './helpers.js'

/** These links reconnect and catch up: more time than the helper's default. */
const WAIT_MS = 20_000

const FILE = 256 * 1024

const open = (dir: string, role: 'master' | 'replica'): Promise<MessageStore> =>
  MessageStore.open({ dir, flush: 'async', role, commitLogFileSize: FILE, maxHashSlotNum: 1024, maxIndexNum: 8192 })

/** A loopback port nothing listens on (taken, then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))
  const port = (s.address() as net.AddressInfo).port
  await new Promise((r) => s.close(r))
  return port
}

test('a master that cannot be reached is logged once as unreachable (with the error code), not as one that refused this log; a port that takes the link and closes it is logged once, without advice to empty the store', { timeout: 30_000 }, async () => {
  await withTempDir('mqts-ha-links-', async (root) => {
    const store = await open(path.join(root, 'r'), 'replica')
    const log = recording()
    const port = await closedPort()
    const follower = HAReplica.start({ store, masterAddress: `127.0.0.1:${port}`, reconnectDelayMs: 20, logger: log })
    let server: net.Server | undefined
    try {
      await until('several attempts', () => /ECONNREFUSED/.test(follower.lastDropReason), WAIT_MS)
      await new Promise((r) => setTimeout(r, 300))
      assert.equal(log.lines.length, 1, log.lines.join('\n'))
      assert.match(log.lines[0]!, new RegExp(`cannot reach the master.*127\\.0\\.0\\.1:${port}.*ECONNREFUSED`))
      assert.ok(!log.lines.some((l) => /emptied|refused/.test(l)))
      assert.match(follower.lastDropReason, new RegExp(`cannot reach the master at 127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`))
      // A master that takes the connection and closes it before any frame is the other case.
      server = net.createServer((s) => s.destroy())
      await new Promise<void>((r) => server!.listen(port, '127.0.0.1', () => r()))
      const before = follower.linksDropped
      await until('refused three times', () => follower.linksDropped >= before + 3, WAIT_MS)
      assert.ok(log.lines.some((l) => /reachable again/.test(l)))
      const refusals = log.lines.filter((l) => /link to the master refused/.test(l))
      assert.equal(refusals.length, 1, `logged once: ${log.lines.join('\n')}`)
      // It cannot tell a master refusing its log from a port that is not an HA port: no advice to empty its store.
      assert.match(refusals[0]!, /closed the link before sending anything.*not a master's HA port/)
      assert.ok(!log.lines.some((l) => /emptied|empty its/.test(l)), log.lines.join('\n'))
    } finally {
      await follower.stop()
      server?.close()
      await store.close()
    }
  })
})

test('links that drop while the replica holds part of a cut record start again at a record boundary and skip what it holds; the replica ends byte-identical', { timeout: 90_000 }, async () => {
  await withTempDir('mqts-ha-links-', async (root) => {
    const master = await open(path.join(root, 'm'), 'master')
    const replica = await open(path.join(root, 'r'), 'replica')
    const log = recording()
    const ha = await HAMaster.start({ store: master, logger: log })
    const boundaries = new Set<number>([0])
    for (let i = 0; i < 200; i++) {
      const p = await master.put({ topic: 'T', queueId: i % 3, body: Buffer.alloc(300 + ((i * 211) % 2500), i % 256) })
      boundaries.add(p.physicalOffset + p.size)
    }
    // A stand-in master: from the offset a link reports, one frame of this log that ends inside a
    // record, then the link closes (as a master restarting would).
    const starts: number[] = []
    const fake = net.createServer((s) => {
      s.on('error', () => undefined)
      s.once('data', (d: Buffer) => {
        const from = Number(d.readBigInt64BE(0))
        starts.push(from)
        let length = 3000 + starts.length * 1234
        if (boundaries.has(from + length)) length++
        const bytes = master.readCommitLog(from, length, { unconfirmed: true })
        s.write(Buffer.concat([encodeHeader(from, bytes.length), bytes]))
        setTimeout(() => s.destroy(), 100)
      })
    })
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()))
    let addr = `127.0.0.1:${(fake.address() as net.AddressInfo).port}`
    const follower = HAReplica.start({ store: replica, masterAddress: () => addr, reconnectDelayMs: 20 })
    try {
      for (let link = 1, before = 0; link <= 3; link++, before = replica.replicaEndOffset) {
        await until(`the stand-in's link ${link} applied`, () => starts.length === link && replica.replicaEndOffset > before, WAIT_MS)
        await until(`the stand-in's link ${link} closed`, () => !follower.connected, WAIT_MS)
        assert.ok(replica.replicaEndOffset > replica.commitLogMaxOffset, `link ${link} left a cut record held`)
      }
      // Every link started at the end of the whole records (a record boundary), not inside the cut one.
      for (const s of starts) assert.ok(boundaries.has(s), `link started at ${s}`)
      addr = ha.address()
      await until('caught up', () => replica.commitLogMaxOffset === master.commitLogMaxOffset, WAIT_MS)
      assert.ok(!log.lines.some((l) => /refused/.test(l)), log.lines.join('\n'))
      assert.equal(replica.replicaEndOffset, replica.commitLogMaxOffset)
    } finally {
      await follower.stop()
      await ha.stop()
      fake.close()
    }
    await Promise.all([master.close(), replica.close()])
    const bytes = async (dir: string): Promise<Buffer> => {
      // Data files only: an open store may be preparing its next file under a temporary name.
      const names = (await readdir(path.join(dir, 'commitlog'))).filter((n) => /^\d{20}$/.test(n)).sort()
      return Buffer.concat(await Promise.all(names.map((n) => readFile(path.join(dir, 'commitlog', n)))))
    }
    assert.ok((await bytes(path.join(root, 'r'))).equals(await bytes(path.join(root, 'm'))), 'CommitLog files equal')
  })
})
