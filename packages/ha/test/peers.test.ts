// Peers on a master's HA port that are not honest replicas: what they report never makes a
// sync send succeed for bytes no replica holds, and never holds sends back for long. Also what the
// master logs about its links: the peer's address, and accept errors on the HA port.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore } from '@mqts/store'
import { HAMaster, HAReplica, encodeReport } from '../src/index.js'
import { recording, until } from './helpers.js'

const FILE = 256 * 1024

async function withStores(fn: (master: MessageStore, replica: MessageStore) => Promise<void>): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), 'mqts-ha-peers-'))
  const open = (name: string, role: 'master' | 'replica'): Promise<MessageStore> =>
    MessageStore.open({ dir: path.join(root, name), flush: 'async', role, commitLogFileSize: FILE, maxHashSlotNum: 1024, maxIndexNum: 8192 })
  const master = await open('m', 'master')
  const replica = await open('r', 'replica')
  try {
    await fn(master, replica)
  } finally {
    await Promise.all([master.close(), replica.close()])
    await rm(root, { recursive: true, force: true })
  }
}

async function produce(store: MessageStore, n: number): Promise<{ end: number; starts: number[] }> {
  const starts: number[] = []
  let end = 0
  for (let i = 0; i < n; i++) {
    const p = await store.put({ topic: 'T', queueId: i % 2, body: Buffer.alloc(200 + ((i * 97) % 900), i % 256) })
    starts.push(p.physicalOffset)
    end = p.physicalOffset + p.size
  }
  return { end, starts }
}

/** A raw connection to the HA port that counts what it receives. */
async function rawPeer(port: number): Promise<{ socket: net.Socket; received: () => number; closed: Promise<void>; first: Promise<Buffer> }> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => undefined)
  await new Promise((r) => socket.once('connect', r))
  let got = 0
  const first = new Promise<Buffer>((r) => socket.once('data', (d: Buffer) => r(d)))
  socket.on('data', (d: Buffer) => void (got += d.length))
  const closed = new Promise<void>((r) => socket.once('close', () => r()))
  return { socket, received: () => got, closed, first }
}

/** Runs `fn` while a raw peer reports `offset` at once and again every 100 ms, whatever it is sent. */
async function withRepeatingPeer(port: number, offset: number, fn: () => Promise<void>): Promise<void> {
  const peer = await rawPeer(port)
  peer.socket.write(encodeReport(offset))
  const keep = setInterval(() => peer.socket.write(encodeReport(offset)), 100)
  try {
    await fn()
  } finally {
    clearInterval(keep)
    peer.socket.destroy()
  }
}

interface InSyncSetup {
  master: MessageStore
  replicaStore: MessageStore
  ha: HAMaster
  follower: HAReplica
  log: ReturnType<typeof recording>
}

/**
 * A master whose links leave the in-sync set after 300 ms without catching up (heartbeats every
 * 100 ms), an honest replica following it, and 50 messages put on the master.
 */
async function withInSyncRule(fn: (s: InSyncSetup) => Promise<void>): Promise<void> {
  await withStores(async (master, replicaStore) => {
    const log = recording()
    const ha = await HAMaster.start({ store: master, logger: log, maxTimeNotCaughtUpMs: 300, heartbeatMs: 100 })
    const follower = HAReplica.start({ store: replicaStore, masterAddress: ha.address(), reconnectDelayMs: 50 })
    try {
      await produce(master, 50)
      await fn({ master, replicaStore, ha, follower, log })
    } finally {
      await follower.stop()
      await ha.stop()
    }
  })
}

test('a peer that acknowledges more than the master sent it is dropped (logged) and its report never counts', { timeout: 30_000 }, async () => {
  await withStores(async (master) => {
    const log = recording()
    const ha = await HAMaster.start({ store: master, logger: log })
    try {
      await produce(master, 20)
      const peer = await rawPeer(ha.port)
      peer.socket.write(encodeReport(0))
      await until('the first frames', () => peer.received() > 0)
      peer.socket.write(encodeReport(2 ** 30))
      await peer.closed
      const p = await master.put({ topic: 'T', queueId: 0, body: 'no replica holds this' })
      assert.equal(await ha.waitForReplicas(p.physicalOffset + p.size, 200), 'SLAVE_NOT_AVAILABLE')
      assert.equal(ha.replicas().length, 0)
      assert.ok(log.lines.some((l) => /acknowledged bytes it was not sent/.test(l) && /"acknowledged":1073741824/.test(l)), log.lines.join('\n'))
    } finally {
      await ha.stop()
    }
  })
})

test("a first report that is not where a record starts in the master's log is refused (logged); record starts and the end are taken", { timeout: 30_000 }, async () => {
  await withStores(async (master) => {
    const log = recording()
    const ha = await HAMaster.start({ store: master, logger: log })
    try {
      const { end, starts } = await produce(master, 20)
      for (const bad of [7, starts[5]! + 1, end - 1]) {
        const peer = await rawPeer(ha.port)
        peer.socket.write(encodeReport(bad))
        await peer.closed
        assert.equal(peer.received(), 0, `nothing streamed from ${bad}`)
        assert.ok(log.lines.some((l) => /replica link refused: .*not where a record starts/.test(l) && l.includes(`"offset":${bad}`)), log.lines.join('\n'))
      }
      for (const good of [starts[5]!, end, 0]) {
        const peer = await rawPeer(ha.port)
        peer.socket.write(encodeReport(good))
        if (good !== end) {
          const frame = await peer.first
          assert.equal(Number(frame.readBigInt64BE(0)), good, `streamed from ${good}`)
        } else {
          await new Promise((r) => setTimeout(r, 100))
        }
        assert.equal(peer.socket.destroyed, false, `a start at ${good} is taken`)
        peer.socket.destroy()
        await peer.closed
      }
    } finally {
      await ha.stop()
    }
  })
})

test('in sync only once caught up: a peer that never acknowledges what it is sent is not waited for (RocketMQ 5 haMaxTimeSlaveNotCatchup)', { timeout: 60_000 }, async () => {
  await withInSyncRule(async ({ master, ha, follower }) => {
    // Only a peer that reports an empty log and then nothing more: never caught up, never in sync.
    await follower.stop()
    await withRepeatingPeer(ha.port, 0, async () => {
      await until('the rogue link', () => ha.replicas().length === 1 && ha.replicas()[0]!.ackOffset === 0)
      const p = await master.put({ topic: 'T', queueId: 0, body: 'only a rogue' })
      assert.equal(await ha.waitForReplicas(p.physicalOffset + p.size, 300), 'SLAVE_NOT_AVAILABLE')
      assert.equal(ha.replicas()[0]!.inSync, false)
    })
  })
})

test('a peer that caught up once and then stops acknowledging leaves the in-sync set: sends wait for the real replica only', { timeout: 60_000 }, async () => {
  await withInSyncRule(async ({ master, replicaStore, ha, log }) => {
    await until('the replica caught up', () => replicaStore.commitLogMaxOffset === master.commitLogMaxOffset && ha.replicas().every((r) => r.inSync))
    // The peer reports the master's end (a real start: it joins at once), then the same forever.
    const at = master.commitLogMaxOffset
    await withRepeatingPeer(ha.port, at, async () => {
      await until('the rogue in sync', () => ha.replicas().length === 2 && ha.replicas().every((r) => r.inSync))
      for (let i = 0; i < 5; i++) {
        const p = await master.put({ topic: 'T', queueId: 0, body: `sync ${i}` })
        assert.equal(await ha.waitForReplicas(p.physicalOffset + p.size, 10_000), 'OK', `send ${i}`)
        assert.ok(replicaStore.commitLogMaxOffset >= p.physicalOffset + p.size, 'the real replica holds it')
      }
      const rogueInfo = ha.replicas().find((r) => r.ackOffset === at)
      assert.equal(rogueInfo?.inSync, false, 'the rogue left the in-sync set')
      assert.ok(log.lines.some((l) => /replica left the in-sync set/.test(l) && /has not caught up/.test(l)), log.lines.join('\n'))
    })
  })
})

test("the master's log lines about a link name the replica's address, also once the socket is gone", { timeout: 30_000 }, async () => {
  await withStores(async (master, replicaStore) => {
    const log = recording()
    const ha = await HAMaster.start({ store: master, logger: log })
    const follower = HAReplica.start({ store: replicaStore, masterAddress: ha.address() })
    try {
      await produce(master, 5)
      await until('the replica caught up', () => replicaStore.commitLogMaxOffset === master.commitLogMaxOffset)
      await follower.stop()
      await until('the link closed', () => log.fields.some((f) => f['message'] === 'replica link closed'))
      const closed = log.fields.find((f) => f['message'] === 'replica link closed')!
      assert.match(String(closed['replica']), /^127\.0\.0\.1:\d+$/)
    } finally {
      await follower.stop()
      await ha.stop()
    }
  })
})

/**
 * libuv answers most EMFILE accepts itself (it accepts and closes them with a reserved
 * descriptor); the ones it cannot (that reserve taken by another open meanwhile) reach the server
 * as 'error' events, which are emitted here as node does (net's onconnection).
 */
test('accept errors on the HA port (out of descriptors) are logged at a limited rate and never stop the master', { timeout: 30_000 }, async () => {
  await withStores(async (master, replicaStore) => {
    const log = recording()
    const servers: net.Server[] = []
    const listen = net.Server.prototype.listen
    net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
      servers.push(this)
      return (listen as (...a: unknown[]) => net.Server).apply(this, args)
    } as typeof listen
    let ha: HAMaster
    try {
      ha = await HAMaster.start({ store: master, logger: log })
    } finally {
      net.Server.prototype.listen = listen
    }
    const follower = HAReplica.start({ store: replicaStore, masterAddress: ha.address() })
    try {
      assert.equal(servers.length, 1)
      for (let i = 0; i < 50; i++) servers[0]!.emit('error', Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', errno: -24, syscall: 'accept' }))
      const lines = log.lines.filter((l) => /failed to accept/.test(l))
      assert.equal(lines.length, 1, 'one line for the burst')
      assert.match(lines[0]!, /EMFILE/)
      // Still serving.
      await produce(master, 5)
      await until('the replica caught up', () => replicaStore.commitLogMaxOffset === master.commitLogMaxOffset)
    } finally {
      await follower.stop()
      await ha.stop()
    }
  })
})
