/**
 * Replication (the HA stream between brokers of one group) over loopback TCP, 1 KiB messages,
 * async flush; each row against a baseline measured in the same run:
 * - throughput, deployment-like: a master store with an HAMaster in one process and an empty
 *   replica store with an HAReplica in another (bench/lib/ha-peer.ts), timed by the master from
 *   the replica's first report to the report that says it holds everything, against a raw TCP
 *   stream between two processes moving the same bytes (the master process sends its CommitLog
 *   in 32 KiB views; the receiving process counts them and answers once it has them all)
 *   (target >= 80%); in rounds, raw stream then HA copy into a new empty replica, the round of
 *   median ratio reported. Also shown: the same raw stream with a receiver that appends each read to a
 *   file, each side's CPU seconds per GB, and the replica store's appendReplicated of the same
 *   bytes in one process without a network, in 1 MiB groups as an HAReplica hands them;
 * - lag during produce (brokers in this process): the broker benchmark's batched produce into an
 *   ASYNC_MASTER with one replica; in bytes (the master's CommitLog end minus the replica's,
 *   sampled every 5 ms) and in ms (from a byte being committed on the master to the replica
 *   committing it);
 * - what SYNC_MASTER adds to a send (brokers in this process): one caller's SEND_MESSAGE_V2 p50
 *   and p99 against an ASYNC_MASTER with a replica, sends alternating between the two.
 * HA_BENCH_ONLY=throughput runs the throughput rows alone; HA_BENCH_PROF=<dir> writes a CPU
 * profile of each process of them there.
 */
import { type ChildProcess, fork, type Serializable } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Broker, type BrokerOptions } from '@mqts/broker'
import { NameServer } from '@mqts/namesrv'
import { MessageStore, encodeProperties, type PutMessage } from '@mqts/store'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { type BenchResult, compare, isMain, isQuick, percentile, printEnvironment, printResults, type RunOptions } from './lib/report.js'
import { batchBody } from './lib/batch.js'
import { type PeerAnswer, type SinkCommand } from './lib/ha-peer.js'
import { warmPageCache } from './lib/memory.js'
import { BATCH, BODY_BYTES, CONNECTIONS, FILE_BYTES, LAG_IN_FLIGHT_PER_CONNECTION, QUEUES, WARMUP_SENDS } from './lib/produce-load.js'

const TARGET_THROUGHPUT_RATIO = 0.8
const LAG_SAMPLE_MS = 5

interface Sizes {
  /** CommitLog bytes the replica copies for the throughput rows. */
  copyBytes: number
  /** Rounds of the raw stream and the HA copy, in turns (each HA round copies into a new empty replica). */
  rounds: number
  /** Batches produced while the lag is measured. */
  batches: number
  /** Single sends per role. */
  sends: number
}
const QUICK: Sizes = { copyBytes: 64 * 1024 * 1024, rounds: 1, batches: 400, sends: 1_000 }
const FULL: Sizes = { copyBytes: Number(process.env.HA_BENCH_COPY_MB ?? 512) * 1024 * 1024, rounds: Number(process.env.HA_BENCH_ROUNDS ?? 3), batches: 6_000, sends: 5_000 }

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

/** Waits until `master` has a replica in sync (it reported its offset and holds the master's end). */
async function replicaConnected(master: Broker): Promise<void> {
  await until('a replica in sync', () => (master.ha.master?.replicas() ?? []).some((r) => r.inSync))
}

/** A forked ha-peer process: its answers in order, and a stop. */
class Peer {
  readonly #child: ChildProcess
  readonly #answers: PeerAnswer[] = []
  #wake: () => void = () => {}
  #exited = false

  constructor(name: string) {
    const prof = process.env.HA_BENCH_PROF
    const execArgv = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`, `--cpu-prof-name=${name}.cpuprofile`] : []
    this.#child = fork(fileURLToPath(new URL('./lib/ha-peer.js', import.meta.url)), [], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    this.#child.on('message', (m: PeerAnswer) => {
      this.#answers.push(m)
      this.#wake()
    })
    this.#child.on('exit', () => {
      this.#exited = true
      this.#wake()
    })
  }

  tell(m: unknown): void {
    this.#child.send(m as Serializable)
  }

  /** The next answer (an error answer throws). */
  async next(ms = 600_000): Promise<PeerAnswer> {
    const end = Date.now() + ms
    while (this.#answers.length === 0) {
      if (this.#exited) throw new Error('an ha-peer process exited before answering')
      if (Date.now() > end) throw new Error('an ha-peer process did not answer in time')
      await new Promise<void>((r) => {
        this.#wake = r
        setTimeout(r, 1000)
      })
    }
    const a = this.#answers.shift()!
    if ('error' in a) throw new Error(`ha-peer: ${a.error}`)
    return a
  }

  async rate(): Promise<{ mbPerSec: number; cpu: number }> {
    const a = await this.next()
    if (!('mbPerSec' in a)) throw new Error(`ha-peer answered ${JSON.stringify(a)} where a rate was due`)
    return a
  }

  /** Its CPU seconds since it was ready. */
  async cpu(): Promise<number> {
    this.tell({ cmd: 'cpu' })
    const a = await this.next()
    if (!('cpu' in a) || 'mbPerSec' in a) throw new Error(`ha-peer answered ${JSON.stringify(a)} where its CPU time was due`)
    return a.cpu
  }

  async ready(): Promise<{ total?: number; port?: number }> {
    const a = await this.next()
    if (!('ready' in a)) throw new Error(`ha-peer answered ${JSON.stringify(a)} where ready was due`)
    return a
  }

  /** Asks it to stop; kills it when it does not within 30 s. */
  async stop(): Promise<void> {
    if (this.#exited) return
    this.tell({ cmd: 'stop' })
    const t = setTimeout(() => this.#child.kill('SIGKILL'), 30_000)
    while (!this.#exited) await new Promise<void>((r) => ((this.#wake = r), setTimeout(r, 100)))
    clearTimeout(t)
  }
}

/** MB/s, and the CPU seconds the sending and the receiving process spent meanwhile. */
interface Rate {
  mbPerSec: number
  senderCpu: number
  receiverCpu: number
}

/** The raw baseline between two processes: the master peer sends its CommitLog to a sink peer. */
async function rawStream(master: Peer, total: number, file?: string): Promise<Rate> {
  const sink = new Peer(file ? 'sink-file' : 'sink')
  try {
    sink.tell({ cmd: 'sink', total, file } satisfies SinkCommand)
    const { port } = await sink.ready()
    master.tell({ cmd: 'raw', port })
    const r = await master.rate()
    return { mbPerSec: r.mbPerSec, senderCpu: r.cpu, receiverCpu: await sink.cpu() }
  } finally {
    await sink.stop()
  }
}

/**
 * Each row that writes files starts on page-cache pages the machine already backs (see
 * warmPageCache): this much more than the CommitLog bytes it copies (its ConsumeQueues, the
 * slack of a file begun).
 */
const PAGE_CACHE_WARM_FACTOR = 1.25

/** Bytes per appendReplicated call in the embedded row: an HAReplica's group (its MAX_GROUP_BYTES). */
const GROUP_BYTES = 1024 * 1024
/** Groups in flight at once in the embedded row (an HAReplica's default maxInFlightBytes / GROUP_BYTES). */
const GROUPS_IN_FLIGHT = 16

/**
 * The same bytes handed to a replica store's appendReplicated in this process, without a
 * network, as an HAReplica hands them: 1 MiB groups copied into reused heap slabs, up to 16 in
 * flight (handing the master's mapped pages themselves would make the store's pwrite fault them
 * in, which a replica never does). What the replica's store alone can take. MB/s.
 */
async function embeddedAppend(master: MessageStore, dir: string, total: number): Promise<{ mbPerSec: number; cpu: number }> {
  const replica = await MessageStore.open({ dir, commitLogFileSize: FILE_BYTES, messageIndexEnable: false, role: 'replica' })
  try {
    const slabs = Array.from({ length: GROUPS_IN_FLIGHT }, () => Buffer.allocUnsafeSlow(GROUP_BYTES))
    const inFlight: Array<Promise<void> | undefined> = slabs.map(() => undefined)
    const cpu = process.cpuUsage()
    const begin = performance.now()
    for (let at = 0, i = 0; at < total; i = (i + 1) % GROUPS_IN_FLIGHT) {
      await inFlight[i]
      let n = 0
      while (n < GROUP_BYTES && at + n < total) {
        const got = master.readCommitLog(at + n, GROUP_BYTES - n).copy(slabs[i]!, n)
        if (got === 0) throw new Error(`the master's log reads nothing at ${at + n} below its end ${total}`)
        n += got
      }
      inFlight[i] = replica.appendReplicated(at, slabs[i]!.subarray(0, n))
      at += n
    }
    await Promise.all(inFlight)
    const seconds = (performance.now() - begin) / 1000
    const used = process.cpuUsage(cpu)
    return { mbPerSec: total / 1e6 / seconds, cpu: (used.user + used.system) / 1e6 }
  } finally {
    await replica.close()
  }
}

interface Throughput {
  /** Each round's HA copy and the raw stream just before it. */
  ha: Rate[]
  raw: Rate[]
  rawToFile: Rate
  /** The replica store alone: MB/s and this process's CPU seconds. */
  append: { mbPerSec: number; cpu: number }
  total: number
}

/**
 * A master store filled with `bytes` of 1 KiB messages (here), then, each side its own process:
 * the raw baselines (master process to a sink process), and an empty replica process copying it
 * from a master process over the HA stream. MB/s.
 */
async function throughput(dir: string, bytes: number, rounds: number): Promise<Throughput> {
  const spec = { dir: path.join(dir, 'master'), fileBytes: FILE_BYTES }
  const store = await MessageStore.open({ dir: spec.dir, commitLogFileSize: FILE_BYTES, messageIndexEnable: false })
  let append: Throughput['append']
  try {
    const batch = (q: number): PutMessage[] => Array.from({ length: BATCH }, () => ({ topic: 'Copy', queueId: q, body, tags: 'TagA', bornHost: '127.0.0.1:1' }))
    for (let i = 0; store.commitLogMaxOffset < bytes; i++) await store.putBatch(batch(i % QUEUES))
    await store.flush()
    await warmPageCache(dir, store.commitLogMaxOffset * PAGE_CACHE_WARM_FACTOR)
    append = await embeddedAppend(store, path.join(dir, 'embedded-replica'), store.commitLogMaxOffset)
    // Its pages freed, for the rows after it (see warmPageCache).
    await rm(path.join(dir, 'embedded-replica'), { recursive: true, force: true })
  } finally {
    await store.close()
  }
  const master = new Peer('master')
  let replica: Peer | undefined
  try {
    master.tell({ cmd: 'master', ...spec })
    const total = (await master.ready()).total!
    await warmPageCache(dir, total * PAGE_CACHE_WARM_FACTOR)
    const rawToFile = await rawStream(master, total, path.join(dir, 'sink-file'))
    await rm(path.join(dir, 'sink-file'), { force: true })
    const ha: Rate[] = []
    const raw: Rate[] = []
    for (let round = 0; round < rounds; round++) {
      raw.push(await rawStream(master, total))
      await warmPageCache(dir, total * PAGE_CACHE_WARM_FACTOR)
      master.tell({ cmd: 'ha' })
      const { port } = await master.ready()
      const replicaDir = path.join(dir, `replica-${round}`)
      replica = new Peer('replica')
      replica.tell({ cmd: 'replica', dir: replicaDir, fileBytes: FILE_BYTES, masterAddress: `127.0.0.1:${port}` })
      await replica.ready()
      const r = await master.rate()
      ha.push({ mbPerSec: r.mbPerSec, senderCpu: r.cpu, receiverCpu: await replica.cpu() })
      await replica.stop()
      replica = undefined
      // Its pages freed, for the next round (see warmPageCache).
      await rm(replicaDir, { recursive: true, force: true })
    }
    return { ha, raw, rawToFile, append, total }
  } finally {
    await replica?.stop()
    await master.stop()
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
  await Promise.all(clients.flatMap((c) => Array.from({ length: LAG_IN_FLIGHT_PER_CONNECTION }, () => worker(c))))
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
    const tp = await throughput(path.join(dir, 'copy'), n.copyBytes, n.rounds)
    const rawName = 'raw TCP stream, same bytes, process to process (receiver counts)'
    const cpu = (r: Rate): string => `CPU s per GB: sender ${((r.senderCpu * 1e9) / tp.total).toFixed(2)}, receiver ${((r.receiverCpu * 1e9) / tp.total).toFixed(2)}`
    // The round whose ratio is the median stands for the run; every round's ratio is in the note.
    const ratios = tp.ha.map((h, i) => h.mbPerSec / tp.raw[i]!.mbPerSec)
    const m = ratios.indexOf([...ratios].sort((a, b) => a - b)[Math.floor(ratios.length / 2)]!)
    const ha = tp.ha[m]!
    const raw = tp.raw[m]!
    const rounds = tp.ha.length > 1 ? `median of ${tp.ha.length} rounds (${ratios.map((r) => `${(r * 100).toFixed(1)}%`).join(', ')}); ` : ''
    rows.push(compare({ name: `replication throughput, master and empty replica processes (${Math.round(tp.total / 1e6)} MB)`, value: Math.round(ha.mbPerSec), unit: 'MB/s', mbPerSec: ha.mbPerSec, note: `${rounds}${cpu(ha)}` }, rawName, raw.mbPerSec, TARGET_THROUGHPUT_RATIO))
    rows.push({ name: 'raw TCP stream, receiver counts', value: Math.round(raw.mbPerSec), unit: 'MB/s', mbPerSec: raw.mbPerSec, note: `the baseline (the same round); ${cpu(raw)}; all rounds ${tp.raw.map((r) => Math.round(r.mbPerSec)).join(', ')} MB/s` })
    rows.push(compare({ name: 'raw TCP stream, receiver appends to a file', value: Math.round(tp.rawToFile.mbPerSec), unit: 'MB/s', mbPerSec: tp.rawToFile.mbPerSec, note: `writeSync of each read; ${cpu(tp.rawToFile)}` }, rawName, raw.mbPerSec))
    rows.push(compare({ name: 'replication throughput against the file-writing raw stream', value: Math.round(ha.mbPerSec), unit: 'MB/s', mbPerSec: ha.mbPerSec }, 'raw TCP stream, receiver appends to a file', tp.rawToFile.mbPerSec))
    rows.push(compare({ name: 'replica store appendReplicated alone, same bytes', value: Math.round(tp.append.mbPerSec), unit: 'MB/s', mbPerSec: tp.append.mbPerSec, note: `one process, no network, 1 MiB groups: what the replica store alone takes; CPU s per GB ${((tp.append.cpu * 1e9) / tp.total).toFixed(2)}` }, rawName, raw.mbPerSec))

    // HA_BENCH_ONLY=throughput: the throughput rows alone (with HA_BENCH_PROF, to profile them).
    if (process.env.HA_BENCH_ONLY === 'throughput') return rows
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
