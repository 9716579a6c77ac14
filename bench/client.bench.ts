/**
 * @mqts/client end to end over loopback TCP (a nameserver and a broker in this process, async
 * flush, 1 KiB messages), each row against the same request made with the raw transport in the
 * same run (as the broker bench makes it):
 * - send latency p50 and p99, one caller: Producer.send against a raw SEND_MESSAGE_V2 round trip;
 * - produce throughput, IN_FLIGHT sends at a time: Producer.send against raw SEND_MESSAGE_V2s;
 * - consume throughput: a PushConsumer taking everything produced against raw PULL_MESSAGEs of
 *   the same queues (32 per pull, one caller per queue).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { Broker } from '@mqts/broker'
import { Producer, PushConsumer } from '@mqts/client'
import { NameServer } from '@mqts/namesrv'
import { encodeProperties } from '@mqts/store'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { type BenchResult, compare, isMain, isQuick, percentile, printEnvironment, printResults, type RunOptions } from './lib/report.js'

const BODY_BYTES = 1024
const QUEUES = 4
const IN_FLIGHT = 16
const FILE_BYTES = 256 * 1024 * 1024
const WARMUP = 200

const QUICK = { sends: 1_000, produce: 4_000 }
const FULL = { sends: 10_000, produce: 40_000 }

const body = Buffer.alloc(BODY_BYTES, 0x61)
const props = encodeProperties({ TAGS: 'TagA', WAIT: 'true' })

function sendV2(topic: string, queueId: number): RemotingCommand {
  return RemotingCommand.createRequest(RequestCode.SEND_MESSAGE_V2, { a: 'PG', b: topic, c: 'TBW102', d: '4', e: String(queueId), f: '0', g: String(Date.now()), h: '0', i: props, j: '0', k: 'false' }, body)
}

async function timed(n: number, one: (i: number) => Promise<void>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n + WARMUP; i++) {
    const t = performance.now()
    await one(i)
    if (i >= WARMUP) out.push((performance.now() - t) * 1000)
  }
  return out.sort((a, b) => a - b)
}

async function throughput(n: number, one: (i: number) => Promise<void>): Promise<number> {
  let next = 0
  const worker = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) await one(i)
  }
  const begin = performance.now()
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  return n / ((performance.now() - begin) / 1000)
}

export async function run(opts: RunOptions): Promise<BenchResult[]> {
  const n = opts.quick ? QUICK : FULL
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-bench-client-'))
  const rows: BenchResult[] = []
  const ns = await NameServer.start({ port: 0, logger: silentLogger })
  const broker = await Broker.start({ listenPort: 0, namesrvAddr: [ns.address()], storePathRootDir: dir, logger: silentLogger, mappedFileSizeCommitLog: FILE_BYTES, messageIndexEnable: false })
  const raw = new TcpRemotingClient({ logger: silentLogger })
  const producer = await Producer.start({ namesrv: ns.address(), group: 'BenchPG' })
  try {
    const addr = broker.address
    for (const topic of ['Raw', 'Client']) {
      const res = await raw.invoke(addr, RemotingCommand.createRequest(RequestCode.UPDATE_AND_CREATE_TOPIC, { topic, defaultTopic: 'TBW102', readQueueNums: String(QUEUES), writeQueueNums: String(QUEUES), perm: '6', topicFilterType: 'SINGLE_TAG', order: 'false' }), 5000)
      if (res.code !== ResponseCode.SUCCESS) throw new Error(`topic ${topic}: ${res.code} ${res.remark}`)
    }
    await broker.registerAll()
    const rawSend = async (i: number): Promise<void> => {
      const r = await raw.invoke(addr, sendV2('Raw', i % QUEUES), 5000)
      if (r.code !== ResponseCode.SUCCESS) throw new Error(`raw send: ${r.code} ${r.remark}`)
    }
    const clientSend = async (): Promise<void> => {
      await producer.send({ topic: 'Client', body, tags: 'TagA' })
    }
    const rawLat = await timed(n.sends, rawSend)
    const lat = await timed(n.sends, clientSend)
    for (const p of [50, 99]) {
      const base = percentile(rawLat, p)
      rows.push({ name: `send p${p}, 1 caller`, value: Math.round(percentile(lat, p)), unit: 'µs', baseline: 'raw SEND_MESSAGE_V2', ratio: percentile(lat, p) / base, note: `baseline ${Math.round(base)} µs (lower ratio is better)` })
    }
    const rawRate = await throughput(n.produce, rawSend)
    const rate = await throughput(n.produce, clientSend)
    rows.push(compare({ name: `produce, ${IN_FLIGHT} sends in flight`, value: Math.round(rate), unit: 'msg/s', mbPerSec: (rate * BODY_BYTES) / 1e6 }, 'raw SEND_MESSAGE_V2', rawRate))

    // Consume everything each topic holds.
    const rawTotal = n.sends + WARMUP + n.produce
    let pulled = 0
    const pullQueue = async (q: number): Promise<void> => {
      let offset = 0
      for (;;) {
        const r = await raw.invoke(addr, RemotingCommand.createRequest(RequestCode.PULL_MESSAGE, { consumerGroup: 'RawCG', topic: 'Raw', queueId: String(q), queueOffset: String(offset), maxMsgNums: '32', sysFlag: '4', commitOffset: '0', suspendTimeoutMillis: '0', subscription: '*', subVersion: '0' }), 10_000)
        if (r.code !== ResponseCode.SUCCESS) return
        const next = Number(r.extFields.nextBeginOffset)
        pulled += next - offset
        offset = next
      }
    }
    const pullBegin = performance.now()
    await Promise.all(Array.from({ length: QUEUES }, (_, q) => pullQueue(q)))
    const rawPullRate = pulled / ((performance.now() - pullBegin) / 1000)
    if (pulled !== rawTotal) throw new Error(`raw pull got ${pulled} of ${rawTotal}`)

    let consumed = 0
    let allConsumed!: () => void
    const done = new Promise<void>((resolve) => (allConsumed = resolve))
    const consumer = new PushConsumer({ namesrv: ns.address(), group: 'BenchCG', consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET' })
    consumer.subscribe('Client', '*', () => {
      if (++consumed === rawTotal) allConsumed()
    })
    const consumeBegin = performance.now()
    await consumer.start()
    await done
    const consumeRate = consumed / ((performance.now() - consumeBegin) / 1000)
    await consumer.close()
    rows.push(compare({ name: 'consume all (push consumer)', value: Math.round(consumeRate), unit: 'msg/s', mbPerSec: (consumeRate * BODY_BYTES) / 1e6 }, 'raw PULL_MESSAGE, 32 per pull', rawPullRate))
  } finally {
    await producer.close()
    await raw.close()
    await broker.stop()
    await ns.stop()
    await rm(dir, { recursive: true, force: true })
  }
  return rows
}

if (isMain(import.meta.url)) {
  const quick = isQuick()
  printEnvironment('client benchmark', { mode: quick ? 'quick' : 'full' })
  printResults('client', await run({ quick }))
}
