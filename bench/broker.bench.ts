/**
 * The broker over loopback TCP (async flush, 1 KiB messages), each row against a baseline
 * measured in the same run:
 * - batched produce: SEND_BATCH_MESSAGE of 32 messages from several connections, against the
 *   embedded store's own putBatch of the same batches (target >= 50%), the two in turns for a few
 *   rounds and the best round of each compared (a shared machine makes single rounds swing), with
 *   the CPU each costs per message;
 * - single send with reply: one caller, SEND_MESSAGE_V2, p50 and p99, against the transport's raw
 *   round trip (an echo processor) plus the store's put, both measured here;
 * - pull all: every message back with PULL_MESSAGE (32 per pull, one caller per queue), against
 *   the embedded store's raw get of the same queues.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { Broker } from '@mqts/broker'
import { NameServer } from '@mqts/namesrv'
import { MessageStore, encodeProperties, type PutMessage } from '@mqts/store'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient, TcpRemotingServer } from '@mqts/transport-tcp'
import { type BenchResult, compare, isMain, isQuick, percentile, printEnvironment, printResults, type RunOptions } from './lib/report.js'
import { batchBody } from './lib/batch.js'

const BODY_BYTES = 1024
const BATCH = 32
const QUEUES = 4
const CONNECTIONS = 4
const IN_FLIGHT_PER_CONNECTION = 4
const TARGET_PRODUCE_RATIO = 0.5
const FILE_BYTES = 256 * 1024 * 1024

interface Sizes {
  batches: number
  sends: number
}
const QUICK: Sizes = { batches: 400, sends: 1_000 }
const FULL: Sizes = { batches: 6_000, sends: 10_000 }
/** Batched produce and its baseline run in turns, this many rounds each (batches split between them). */
const PRODUCE_ROUNDS = 4

const body = Buffer.alloc(BODY_BYTES, 0x61)
const props = encodeProperties({ TAGS: 'TagA' })

/** A rate and its CPU cost: messages per second and CPU µs per message (user + system, this process). */
interface Rate {
  perSec: number
  cpuUs: number
}

async function measure(messages: number, fn: () => Promise<void>): Promise<Rate> {
  const cpu = process.cpuUsage()
  const begin = performance.now()
  await fn()
  const used = process.cpuUsage(cpu)
  return { perSec: messages / ((performance.now() - begin) / 1000), cpuUs: (used.user + used.system) / messages }
}

/** The best of several rounds (the machine may be shared: a slow round says little). */
function best(rates: Rate[]): Rate {
  return { perSec: Math.max(...rates.map((r) => r.perSec)), cpuUs: Math.min(...rates.map((r) => r.cpuUs)) }
}

/** The embedded store's putBatch of the same batches. */
async function embeddedPutBatch(store: MessageStore, batches: number): Promise<Rate> {
  const batch = (q: number): PutMessage[] => Array.from({ length: BATCH }, () => ({ topic: 'Bench', queueId: q, body, tags: 'TagA', bornHost: '127.0.0.1:1' }))
  return measure(batches * BATCH, async () => {
    for (let i = 0; i < batches; i++) await store.putBatch(batch(i % QUEUES))
  })
}

/** Store put latencies (µs, sorted) of single 1 KiB messages. */
async function embeddedPutLatency(dir: string, n: number): Promise<number[]> {
  const store = await MessageStore.open({ dir, commitLogFileSize: FILE_BYTES, messageIndexEnable: false })
  try {
    const out: number[] = []
    for (let i = 0; i < n; i++) {
      const t = performance.now()
      await store.put({ topic: 'Lat', queueId: 0, body, tags: 'TagA' })
      out.push((performance.now() - t) * 1000)
    }
    return out.sort((a, b) => a - b)
  } finally {
    await store.close()
  }
}

/** Raw transport round trips (µs, sorted): an echo processor answering a 1 KiB request. */
async function rawRoundTrips(n: number): Promise<number[]> {
  const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: silentLogger })
  server.registerProcessor(1, () => RemotingCommand.createResponse(ResponseCode.SUCCESS, null, { msgId: 'x', queueId: '0', queueOffset: '0' }))
  await server.start()
  const client = new TcpRemotingClient({ logger: silentLogger })
  const addr = `127.0.0.1:${server.address().port}`
  try {
    const out: number[] = []
    for (let i = 0; i < n + 200; i++) {
      const t = performance.now()
      await client.invoke(addr, RemotingCommand.createRequest(1, { a: 'PG', b: 'Lat', e: '0' }, body), 5000)
      if (i >= 200) out.push((performance.now() - t) * 1000)
    }
    return out.sort((a, b) => a - b)
  } finally {
    await client.close()
    await server.stop({ timeoutMs: 1000 })
  }
}

function sendV2(topic: string, queueId: number): RemotingCommand {
  return RemotingCommand.createRequest(RequestCode.SEND_MESSAGE_V2, { a: 'PG', b: topic, c: 'TBW102', d: '4', e: String(queueId), f: '0', g: '1', h: '0', i: props, j: '0', k: 'false' }, body)
}

export async function run(opts: RunOptions): Promise<BenchResult[]> {
  const n = opts.quick ? QUICK : FULL
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-bench-broker-'))
  const rows: BenchResult[] = []
  try {
    const roundBatches = Math.ceil(n.batches / PRODUCE_ROUNDS)
    const batches = roundBatches * PRODUCE_ROUNDS
    const embedded = await MessageStore.open({ dir: path.join(dir, 'embedded'), commitLogFileSize: FILE_BYTES, messageIndexEnable: false })
    const putLat = await embeddedPutLatency(path.join(dir, 'embedded-lat'), n.sends)
    const rtt = await rawRoundTrips(n.sends)

    const ns = await NameServer.start({ port: 0, logger: silentLogger })
    const broker = await Broker.start({ listenPort: 0, namesrvAddr: [ns.address()], storePathRootDir: path.join(dir, 'broker'), logger: silentLogger, mappedFileSizeCommitLog: FILE_BYTES, messageIndexEnable: false })
    const clients = Array.from({ length: CONNECTIONS }, () => new TcpRemotingClient({ logger: silentLogger }))
    try {
      const addr = broker.address
      await clients[0]!.invoke(addr, RemotingCommand.createRequest(RequestCode.UPDATE_AND_CREATE_TOPIC, { topic: 'Bench', defaultTopic: 'TBW102', readQueueNums: String(QUEUES), writeQueueNums: String(QUEUES), perm: '6', topicFilterType: 'SINGLE_TAG', order: 'false' }), 5000)
      // Batched produce: CONNECTIONS connections, IN_FLIGHT_PER_CONNECTION batches in flight on each.
      const batch = batchBody(body, props, BATCH)
      const produce = (count: number): Promise<Rate> => {
        let next = 0
        const worker = async (client: TcpRemotingClient): Promise<void> => {
          for (;;) {
            const i = next++
            if (i >= count) return
            const req = RemotingCommand.createRequest(RequestCode.SEND_BATCH_MESSAGE, { a: 'PG', b: 'Bench', c: 'TBW102', d: '4', e: String(i % QUEUES), f: '0', g: '1', h: '0', m: 'true' }, batch)
            const r = await client.invoke(addr, req, 10_000)
            if (r.code !== ResponseCode.SUCCESS) throw new Error(`batch send failed: ${r.code} ${r.remark}`)
          }
        }
        return measure(count * BATCH, async () => {
          await Promise.all(clients.flatMap((c) => Array.from({ length: IN_FLIGHT_PER_CONNECTION }, () => worker(c))))
        })
      }
      const produceRates: Rate[] = []
      const baselineRates: Rate[] = []
      for (let round = 0; round < PRODUCE_ROUNDS; round++) {
        baselineRates.push(await embeddedPutBatch(embedded, roundBatches))
        produceRates.push(await produce(roundBatches))
      }
      await embedded.close()
      const produced = best(produceRates)
      const produceBaseline = best(baselineRates)
      rows.push({
        ...compare({ name: `batched produce (${BATCH} x 1 KiB, ${CONNECTIONS} connections)`, value: Math.round(produced.perSec), unit: 'msg/s', mbPerSec: (produced.perSec * BODY_BYTES) / 1e6 }, 'embedded putBatch', produceBaseline.perSec, TARGET_PRODUCE_RATIO),
        note: `best of ${PRODUCE_ROUNDS} rounds each; CPU ${produced.cpuUs.toFixed(1)} µs/msg (client + broker) vs ${produceBaseline.cpuUs.toFixed(1)}`,
      })

      // Single send with reply, one caller.
      const lat: number[] = []
      for (let i = 0; i < n.sends + 200; i++) {
        const t = performance.now()
        const r = await clients[0]!.invoke(addr, sendV2('Bench', i % QUEUES), 5000)
        if (r.code !== ResponseCode.SUCCESS) throw new Error(`send failed: ${r.code} ${r.remark}`)
        if (i >= 200) lat.push((performance.now() - t) * 1000)
      }
      lat.sort((a, b) => a - b)
      for (const p of [50, 99]) {
        const base = percentile(rtt, p) + percentile(putLat, p)
        const row: BenchResult = { name: `send p${p}, 1 caller`, value: Math.round(percentile(lat, p)), unit: 'µs', baseline: 'raw round trip + store put', ratio: percentile(lat, p) / base, note: `baseline ${Math.round(base)} µs (lower ratio is better)` }
        rows.push(row)
      }

      // Pull everything back, one caller per queue.
      const total = batches * BATCH + n.sends + 200
      let pulled = 0
      const pullQueue = async (q: number): Promise<void> => {
        let offset = 0
        for (;;) {
          const r = await clients[q % CONNECTIONS]!.invoke(
            addr,
            RemotingCommand.createRequest(RequestCode.PULL_MESSAGE, { consumerGroup: 'CG', topic: 'Bench', queueId: String(q), queueOffset: String(offset), maxMsgNums: '32', sysFlag: '4', commitOffset: '0', suspendTimeoutMillis: '0', subscription: '*', subVersion: '0' }),
            10_000,
          )
          if (r.code !== ResponseCode.SUCCESS) return
          const next = Number(r.extFields.nextBeginOffset)
          pulled += next - offset
          offset = next
        }
      }
      const pullRate = await measure(total, async () => {
        await Promise.all(Array.from({ length: QUEUES }, (_, q) => pullQueue(q)))
      })
      if (pulled !== total) throw new Error(`pulled ${pulled} messages, produced ${total}`)
      // Baseline: the broker's own store read raw, same queues, same batch size.
      const cpu = process.cpuUsage()
      const getBegin = performance.now()
      let got = 0
      for (let q = 0; q < QUEUES; q++) {
        let offset = 0
        for (;;) {
          const r = await broker.store.get({ topic: 'Bench', queueId: q, offset, maxMessages: 32, raw: true })
          if (r.status !== 'FOUND') break
          got += r.nextOffset - offset
          offset = r.nextOffset
        }
      }
      const getRate = got / ((performance.now() - getBegin) / 1000)
      const getCpu = process.cpuUsage(cpu)
      rows.push({
        ...compare({ name: 'pull all (32 per pull, 1 caller per queue)', value: Math.round(pullRate.perSec), unit: 'msg/s', mbPerSec: (pullRate.perSec * BODY_BYTES) / 1e6 }, 'embedded raw get', getRate),
        note: `CPU ${pullRate.cpuUs.toFixed(1)} µs/msg (client + broker) vs ${((getCpu.user + getCpu.system) / got).toFixed(2)}`,
      })
    } finally {
      await Promise.all(clients.map((c) => c.close()))
      await broker.stop()
      await ns.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  return rows
}

if (isMain(import.meta.url)) {
  const quick = isQuick()
  printEnvironment('broker benchmark', { mode: quick ? 'quick' : 'full' })
  printResults('broker', await run({ quick }))
}
