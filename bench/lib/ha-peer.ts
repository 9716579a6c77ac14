/**
 * One side of the HA throughput benchmark, run as its own process (forked by ha.bench.ts), as a
 * master broker and a replica broker run in a deployment. It takes one command over the IPC
 * channel and answers with one message:
 * - `master`: opens the store filled by the parent (role master) and waits for `raw` (send its
 *   CommitLog to a `sink` over plain TCP) or `ha` (serve it with an HAMaster and time an empty
 *   replica's copy from its reported offsets);
 * - `replica`: opens an empty store (role replica) and follows the master with an HAReplica;
 * - `sink`: the raw baseline's receiver: counts the bytes (or writes them to a file, see
 *   SinkCommand) and answers 8 bytes once it has them all.
 * `node --cpu-prof` (HA_BENCH_PROF=<dir> on the parent) profiles each side.
 */
import * as fs from 'node:fs'
import * as net from 'node:net'
import { HAMaster, HAReplica } from '@mqts/ha'
import { MessageStore } from '@mqts/store'
import { isMain } from './report.js'

export const CHUNK_BYTES = 32 * 1024
/** How often the master looks for its replica's first report. */
const POLL_MS = 1
/** How often the master looks whether its replica is in sync yet (see serveHA). */
const IN_SYNC_POLL_MS = 10

export interface StoreSpec {
  dir: string
  fileBytes: number
}
export type PeerCommand =
  | { cmd: 'raw'; port: number }
  | { cmd: 'ha' }
  | { cmd: 'cpu' }
  | { cmd: 'stop' }
/** The sink: `file` set, it also appends what it receives to that file (sequential writes). */
export interface SinkCommand {
  cmd: 'sink'
  total: number
  file?: string
}
/** `cpu`: this process's CPU seconds (user + system) over the run measured, or since ready. */
export type PeerAnswer = { ready: true; total?: number; port?: number } | { mbPerSec: number; seconds: number; cpu: number } | { cpu: number } | { error: string }

function send(m: PeerAnswer): void {
  process.send!(m)
}

/** CPU seconds of this process since `from` (a process.cpuUsage()). */
function cpuSince(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from)
  return (d.user + d.system) / 1e6
}

/** Answers `cpu` with the CPU seconds since now. */
function answerCpu(): void {
  const from = process.cpuUsage()
  process.on('message', (m: PeerCommand) => {
    if (m.cmd === 'cpu') send({ cpu: cpuSince(from) })
  })
}

function openStore(spec: StoreSpec, role: 'master' | 'replica'): Promise<MessageStore> {
  return MessageStore.open({ dir: spec.dir, commitLogFileSize: spec.fileBytes, messageIndexEnable: false, role })
}

/** The raw baseline's sender: the CommitLog in CHUNK_BYTES views, one socket write each. */
async function sendRaw(store: MessageStore, port: number): Promise<void> {
  const total = store.commitLogMaxOffset
  const socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
  await new Promise<void>((r) => socket.once('connect', r))
  const acked = new Promise<void>((r) => socket.once('data', () => r()))
  const cpu = process.cpuUsage()
  const begin = performance.now()
  for (let at = 0; at < total; ) {
    const view = store.readCommitLog(at, Math.min(CHUNK_BYTES, total - at))
    at += view.length
    if (!socket.write(view)) await new Promise((r) => socket.once('drain', r))
  }
  await acked
  const seconds = (performance.now() - begin) / 1000
  socket.destroy()
  send({ mbPerSec: total / 1e6 / seconds, seconds, cpu: cpuSince(cpu) })
}

/**
 * Serves the store to one replica; times it from its first report to the one that says it holds
 * everything. An empty replica joins the in-sync set only once it holds what the master had when
 * it connected (here: everything), so waitForReplicas is asked every IN_SYNC_POLL_MS until then.
 */
async function serveHA(store: MessageStore): Promise<void> {
  const total = store.commitLogMaxOffset
  const ha = await HAMaster.start({ store, port: 0 })
  send({ ready: true, port: ha.port })
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
  while (!ha.replicas().some((r) => r.ackOffset >= 0)) await sleep(POLL_MS)
  const cpu = process.cpuUsage()
  const begin = performance.now()
  while ((await ha.waitForReplicas(total, 600_000)) !== 'OK') await sleep(IN_SYNC_POLL_MS)
  const seconds = (performance.now() - begin) / 1000
  send({ mbPerSec: total / 1e6 / seconds, seconds, cpu: cpuSince(cpu) })
  await ha.stop()
}

async function master(spec: StoreSpec): Promise<void> {
  const store = await openStore(spec, 'master')
  send({ ready: true, total: store.commitLogMaxOffset })
  process.on('message', (m: PeerCommand) => {
    const step = m.cmd === 'raw' ? sendRaw(store, m.port) : m.cmd === 'ha' ? serveHA(store) : store.close().then(() => process.exit(0))
    step.catch((err: Error) => send({ error: err.stack ?? err.message }))
  })
}

async function replica(spec: StoreSpec & { masterAddress: string }): Promise<void> {
  const store = await openStore(spec, 'replica')
  const follower = HAReplica.start({ store, masterAddress: spec.masterAddress })
  answerCpu()
  send({ ready: true })
  process.on('message', (m: PeerCommand) => {
    if (m.cmd !== 'stop') return
    void follower
      .stop()
      .then(() => store.close())
      .then(() => process.exit(0))
  })
}

function sink(c: SinkCommand): void {
  const fd = c.file === undefined ? undefined : fs.openSync(c.file, 'w')
  let received = 0
  const server = net.createServer((s) => {
    s.on('data', (d: Buffer) => {
      if (fd !== undefined) fs.writeSync(fd, d)
      received += d.length
      if (received >= c.total) s.write(Buffer.alloc(8))
    })
  })
  server.listen(0, '127.0.0.1', () => {
    answerCpu()
    send({ ready: true, port: (server.address() as net.AddressInfo).port })
  })
  process.on('message', (m: PeerCommand) => {
    if (m.cmd !== 'stop') return
    if (fd !== undefined) fs.closeSync(fd)
    process.exit(0)
  })
}

if (isMain(import.meta.url)) process.once('message', (m: ({ cmd: 'master' } & StoreSpec) | ({ cmd: 'replica'; masterAddress: string } & StoreSpec) | SinkCommand) => {
  const started = m.cmd === 'master' ? master(m) : m.cmd === 'replica' ? replica(m) : Promise.resolve(sink(m))
  started.catch((err: Error) => {
    send({ error: err.stack ?? err.message })
    process.exit(1)
  })
})
