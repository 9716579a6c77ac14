/**
 * Replication (the HA stream between brokers of one group) over loopback TCP, 1 KiB messages,
 * async flush, every broker in this process; each row against a baseline measured in the same
 * run:
 * - throughput: a replica started empty copies a master's CommitLog, against a raw TCP stream
 *   moving the same bytes (the master's CommitLog read in 32 KiB views, counted on arrival)
 *   (target >= 80%); and, to show where the time goes, the replica store's appendReplicated of
 *   the same bytes without a network;
 * - lag during produce: the broker benchmark's batched produce into an ASYNC_MASTER with one
 *   replica; in bytes (the master's CommitLog end minus the replica's, sampled every 5 ms) and
 *   in ms (from a byte being committed on the master to the replica committing it);
 * - what SYNC_MASTER adds to a send: one caller's SEND_MESSAGE_V2 p50 and p99 against an
 *   ASYNC_MASTER with a replica, sends alternating between the two.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { Broker, type BrokerOptions } from '@mqts/broker'
import { NameServer } from '@mqts/namesrv'
import { MessageStore, encodeProperties, type PutMessage } from '@mqts/store'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { type BenchResult, compare, isMain, isQuick, percentile, printEnvironment, printResults, type RunOptions } from './lib/report.js'
import { batchBody } from './lib/batch.js'

const BODY_BYTES = 1024
const BATCH = 32
const QUEUES = 4
const CONNECTIONS = 4
const IN_FLIGHT_PER_CONNECTION = 4
const CHUNK_BYTES = 32 * 1024
const TARGET_THROUGHPUT_RATIO = 0.8
const FILE_BYTES = 256 * 1024 * 1024
const LAG_SAMPLE_MS = 5
const WARMUP_SENDS = 200

interface Sizes {
  /** CommitLog bytes the replica copies for the throughput rows. */
  copyBytes: number
  /** Batches produced while the lag is measured. */
  batches: number
  /** Single sends per role. */
  sends: number
}
const QUICK: Sizes = { copyBytes: 64 * 1024 * 1024, batches: 400, sends: 1_000 }
const FULL: Sizes = { copyBytes: 512 * 1024 * 1024, batches: 6_000, sends: 5_000 }

const body = Buffer.alloc(BODY_BYTES, 0x61)
const props = encodeProperties({ TAGS: 'TagA' })

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

async function until(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(1)
  }
}

/** A nameserver and the brokers of one group, started and stopped together. */
class Group {
  readonly brokers: Broker[] = []
  private constructor(
    readonly dir: string,
    readonly ns: NameServer,
  ) {}

  static async start(dir: string): Promise<Group> {
    return new Group(dir, await NameServer.start({ port: 0, logger: silentLogger }))
  }

  async broker(name: string, options: BrokerOptions): Promise<Broker> {
    const b = await Broker.start({
      listenPort: 0,
      namesrvAddr: [this.ns.address()],
      storePathRootDir: path.join(this.dir, name),
      logger: silentLogger,
      mappedFileSizeCommitLog: FILE_BYTES,
      messageIndexEnable: false,
      slaveSyncIntervalMs: 1000,
      ...options,
    })
    this.brokers.push(b)
    return b
  }

  async stop(): Promise<void> {
    for (const b of this.brokers.reverse()) await b.stop()
    await this.ns.stop()
  }
}

/** Waits until `master` has a replica that reported its offset. */
async function replicaConnected(master: Broker): Promise<void> {
  await until('a replica connected', () => (master.ha.master?.replicas() ?? []).some((r) => r.ackOffset >= 0))
}

/** The raw baseline: the master's CommitLog bytes, in 32 KiB views, over one TCP connection. MB/s. */
async function rawStream(master: Broker, total: number): Promise<number> {
  let received = 0
  let done: () => void = () => {}
  const finished = new Promise<void>((r) => (done = r))
  const server = net.createServer((s) => {
    s.on('data', (c: Buffer) => {
      received += c.length
      if (received >= total) done()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  const socket = net.connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  await new Promise<void>((r) => socket.once('connect', r))
  try {
    const begin = performance.now()
    for (let at = 0; at < total; ) {
      const view = master.store.readCommitLog(at, Math.min(CHUNK_BYTES, total - at))
      at += view.length
      if (!socket.write(view)) await new Promise((r) => socket.once('drain', r))
    }
    await finished
    return total / 1e6 / ((performance.now() - begin) / 1000)
  } finally {
    socket.destroy()
    await new Promise((r) => server.close(r))
  }
}

/**
 * The same bytes handed to a replica store's appendReplicated in this process, 32 KiB at a time,
 * without a network: what the replica's store alone can take. MB/s.
 */
async function embeddedAppend(master: Broker, dir: string, total: number): Promise<number> {
  const replica = await MessageStore.open({ dir, commitLogFileSize: FILE_BYTES, messageIndexEnable: false, role: 'replica' })
  try {
    const begin = performance.now()
    const pending: Promise<void>[] = []
    for (let at = 0; at < total; ) {
      const view = master.store.readCommitLog(at, CHUNK_BYTES)
      pending.push(replica.appendReplicated(at, view))
      at += view.length
    }
    await Promise.all(pending)
    return total / 1e6 / ((performance.now() - begin) / 1000)
  } finally {
    await replica.close()
  }
}

/** A master filled with `bytes` of 1 KiB messages; an empty replica copies it. MB/s both ways. */
async function throughput(dir: string, bytes: number): Promise<{ ha: number; raw: number; append: number; total: number }> {
  const g = await Group.start(dir)
  try {
    const master = await g.broker('tp-master', { brokerRole: 'ASYNC_MASTER' })
    const batch = (q: number): PutMessage[] => Array.from({ length: BATCH }, () => ({ topic: 'Copy', queueId: q, body, tags: 'TagA', bornHost: '127.0.0.1:1' }))
    for (let i = 0; master.store.commitLogMaxOffset < bytes; i++) await master.store.putBatch(batch(i % QUEUES))
    const total = master.store.commitLogMaxOffset
    const raw = await rawStream(master, total)
    const append = await embeddedAppend(master, path.join(dir, 'embedded-replica'), total)
    // The replica learns the master's HA address when it registers and connects on its next
    // attempt (up to a second later): the clock starts once its link is up, it copies from 0.
    const replica = await g.broker('tp-replica', { brokerRole: 'SLAVE', brokerId: 1 })
    await until('the replica connected', () => replica.ha.replica?.connected === true)
    const begin = performance.now()
    await until('the replica caught up', () => replica.store.commitLogMaxOffset >= total, 600_000)
    const ha = total / 1e6 / ((performance.now() - begin) / 1000)
    return { ha, raw, append, total }
  } finally {
    await g.stop()
  }
}

/** Batched produce (the broker benchmark's) into `master` from CONNECTIONS connections. */
async function produce(master: Broker, clients: TcpRemotingClient[], batches: number): Promise<void> {
  const batch = batchBody(body, props, BATCH)
  let next = 0
  const worker = async (client: TcpRemotingClient): Promise<void> => {
    for (;;) {
      const i = next++
      if (i >= batches) return
      const req = RemotingCommand.createRequest(RequestCode.SEND_BATCH_MESSAGE, { a: 'PG', b: 'Bench', c: 'TBW102', d: '4', e: String(i % QUEUES), f: '0', g: '1', h: '0', m: 'true' }, batch)
      const r = await client.invoke(master.address, req, 10_000)
      if (r.code !== ResponseCode.SUCCESS) throw new Error(`batch send failed: ${r.code} ${r.remark}`)
    }
  }
  await Promise.all(clients.flatMap((c) => Array.from({ length: IN_FLIGHT_PER_CONNECTION }, () => worker(c))))
}

/** Replication lag while `master` takes batched produce: bytes (sampled) and ms (per commit), sorted. */
async function lagDuringProduce(master: Broker, replica: Broker, clients: TcpRemotingClient[], batches: number): Promise<{ bytes: number[]; ms: number[] }> {
  // Each commit on the master (time, end); the replica's commits settle them in order.
  const pending: Array<{ t: number; end: number }> = []
  let head = 0
  const ms: number[] = []
  const offMaster = master.store.onCommitted((end) => pending.push({ t: performance.now(), end }))
  const offReplica = replica.store.onCommitted((end) => {
    const now = performance.now()
    while (head < pending.length && pending[head]!.end <= end) ms.push(now - pending[head++]!.t)
  })
  const bytes: number[] = []
  const sampler = setInterval(() => bytes.push(Math.max(0, master.store.commitLogMaxOffset - replica.store.commitLogMaxOffset)), LAG_SAMPLE_MS)
  try {
    await produce(master, clients, batches)
    await until('the replica caught up', () => replica.store.commitLogMaxOffset >= master.store.commitLogMaxOffset)
  } finally {
    clearInterval(sampler)
    offMaster()
    offReplica()
  }
  return { bytes: bytes.sort((a, b) => a - b), ms: ms.sort((a, b) => a - b) }
}

function sendV2(queueId: number): RemotingCommand {
  return RemotingCommand.createRequest(RequestCode.SEND_MESSAGE_V2, { a: 'PG', b: 'Bench', c: 'TBW102', d: '4', e: String(queueId), f: '0', g: '1', h: '0', i: props, j: '0', k: 'false' }, body)
}

/**
 * One caller's send latencies (µs, sorted) to each master, sends alternating between them so that
 * both see the same machine load.
 */
async function sendLatencies(masters: Broker[], client: TcpRemotingClient, n: number): Promise<number[][]> {
  const out: number[][] = masters.map(() => [])
  for (let i = 0; i < n + WARMUP_SENDS; i++) {
    for (let m = 0; m < masters.length; m++) {
      const t = performance.now()
      const r = await client.invoke(masters[m]!.address, sendV2(i % QUEUES), 5000)
      if (r.code !== ResponseCode.SUCCESS) throw new Error(`send failed: ${r.code} ${r.remark}`)
      if (i >= WARMUP_SENDS) out[m]!.push((performance.now() - t) * 1000)
    }
  }
  return out.map((l) => l.sort((a, b) => a - b))
}

/** A master of `role` with one replica, the topic created and the replica connected. */
async function pair(g: Group, name: string, role: 'ASYNC_MASTER' | 'SYNC_MASTER', client: TcpRemotingClient): Promise<{ master: Broker; replica: Broker }> {
  const master = await g.broker(`${name}-master`, { brokerRole: role, brokerName: name })
  const replica = await g.broker(`${name}-replica`, { brokerRole: 'SLAVE', brokerId: 1, brokerName: name })
  const created = await client.invoke(master.address, RemotingCommand.createRequest(RequestCode.UPDATE_AND_CREATE_TOPIC, { topic: 'Bench', defaultTopic: 'TBW102', readQueueNums: String(QUEUES), writeQueueNums: String(QUEUES), perm: '6', topicFilterType: 'SINGLE_TAG', order: 'false' }), 5000)
  if (created.code !== ResponseCode.SUCCESS) throw new Error(`topic not created: ${created.remark}`)
  await replicaConnected(master)
  return { master, replica }
}

export async function run(opts: RunOptions): Promise<BenchResult[]> {
  const n = opts.quick ? QUICK : FULL
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-bench-ha-'))
  const rows: BenchResult[] = []
  try {
    const tp = await throughput(path.join(dir, 'copy'), n.copyBytes)
    rows.push(compare({ name: `replication throughput (empty replica, ${Math.round(tp.total / 1e6)} MB)`, value: Math.round(tp.ha), unit: 'MB/s', mbPerSec: tp.ha }, 'raw TCP stream, same bytes', tp.raw, TARGET_THROUGHPUT_RATIO))
    rows.push(compare({ name: 'replica store appendReplicated alone, same bytes', value: Math.round(tp.append), unit: 'MB/s', mbPerSec: tp.append, note: 'no network: the ceiling the replica side sets' }, 'raw TCP stream, same bytes', tp.raw))

    const g = await Group.start(path.join(dir, 'groups'))
    const clients = Array.from({ length: CONNECTIONS }, () => new TcpRemotingClient({ logger: silentLogger }))
    try {
      const a = await pair(g, 'broker-async', 'ASYNC_MASTER', clients[0]!)
      const lag = await lagDuringProduce(a.master, a.replica, clients, n.batches)
      for (const p of [50, 99]) {
        rows.push({ name: `lag p${p} during batched produce (${CONNECTIONS} connections)`, value: Math.round(percentile(lag.bytes, p) / 1024), unit: 'KiB', note: `${lag.bytes.length} samples every ${LAG_SAMPLE_MS} ms` })
        rows.push({ name: `lag p${p} during batched produce, time`, value: Number(percentile(lag.ms, p).toFixed(2)), unit: 'ms', note: `${lag.ms.length} master commits` })
      }
      const s = await pair(g, 'broker-sync', 'SYNC_MASTER', clients[0]!)
      const [asyncLat, syncLat] = (await sendLatencies([a.master, s.master], clients[1]!, n.sends)) as [number[], number[]]
      for (const p of [50, 99]) {
        const base = percentile(asyncLat, p)
        const v = percentile(syncLat, p)
        rows.push({ name: `SYNC_MASTER send p${p}, 1 caller`, value: Math.round(v), unit: 'µs', baseline: 'ASYNC_MASTER send', ratio: v / base, note: `ASYNC_MASTER ${Math.round(base)} µs, +${Math.round(v - base)} µs (lower ratio is better)` })
      }
    } finally {
      await Promise.all(clients.map((c) => c.close()))
      await g.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  return rows
}

if (isMain(import.meta.url)) {
  const quick = isQuick()
  printEnvironment('HA benchmark', { mode: quick ? 'quick' : 'full' })
  printResults('ha', await run({ quick }))
}
