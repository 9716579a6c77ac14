/**
 * The broker benchmark's baselines, in a process of their own: the embedded store's putBatch of
 * the batches the load generator sends, single puts' latency, the store's raw get, and an echo
 * server for the transport's raw round trip.
 */
import * as path from 'node:path'
import { MessageStore, type PutMessage } from '@mqts/store'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingServer } from '@mqts/transport-tcp'
import { cpuMicros, mainThreadCpuMicros, serveParent, settleStore } from '../lib/child.js'
import type { Rate } from './load.js'

interface Open {
  dir: string
  fileBytes: number
  bodyBytes: number
}

let store: MessageStore | undefined
let echo: TcpRemotingServer | undefined
let body = Buffer.alloc(0)
let fileBytes = 0

function batchOf(queueId: number, messages: number): PutMessage[] {
  return Array.from({ length: messages }, () => ({ topic: 'Bench', queueId, body, tags: 'TagA', bornHost: '127.0.0.1:1' }))
}

serveParent({
  async open(arg: Open): Promise<void> {
    body = Buffer.alloc(arg.bodyBytes, 0x61)
    fileBytes = arg.fileBytes
    store = await MessageStore.open({ dir: arg.dir, commitLogFileSize: arg.fileBytes, messageIndexEnable: false })
  },
  /** Waits for the store's background work (see settleStore). */
  settle: () => settleStore(store!),
  /** putBatch of `count` batches of `messages`, queue by queue in turn, as an embedded caller makes them. */
  async putBatch(arg: { count: number; messages: number; queues: number }): Promise<Rate> {
    const s = store!
    const cpu = process.cpuUsage()
    const main = mainThreadCpuMicros()
    const begin = performance.now()
    for (let i = 0; i < arg.count; i++) await s.putBatch(batchOf(i % arg.queues, arg.messages))
    const n = arg.count * arg.messages
    const mainAfter = mainThreadCpuMicros()
    return { perSec: n / ((performance.now() - begin) / 1000), cpuUs: cpuMicros(cpu) / n, mainUs: main === undefined || mainAfter === undefined ? undefined : (mainAfter - main) / n }
  },
  /** Latencies (µs, sorted) of `n` single puts into a store of their own. */
  async putLatency(arg: { dir: string; n: number }): Promise<number[]> {
    const s = await MessageStore.open({ dir: path.join(arg.dir), commitLogFileSize: fileBytes, messageIndexEnable: false })
    try {
      const out: number[] = []
      for (let i = 0; i < arg.n; i++) {
        const t = performance.now()
        await s.put({ topic: 'Lat', queueId: 0, body, tags: 'TagA' })
        out.push((performance.now() - t) * 1000)
      }
      return out.sort((a, b) => a - b)
    } finally {
      await s.close()
    }
  },
  /** The store's raw get of every queue, 32 per call. */
  async rawGet(arg: { queues: number }): Promise<Rate & { got: number }> {
    const s = store!
    const cpu = process.cpuUsage()
    const begin = performance.now()
    let got = 0
    for (let q = 0; q < arg.queues; q++) {
      let offset = 0
      for (;;) {
        const r = await s.get({ topic: 'Bench', queueId: q, offset, maxMessages: 32, raw: true })
        if (r.status !== 'FOUND') break
        got += r.nextOffset - offset
        offset = r.nextOffset
      }
    }
    return { perSec: got / ((performance.now() - begin) / 1000), cpuUs: cpuMicros(cpu) / got, got }
  },
  /** A transport server answering SEND_MESSAGE_V2 as a broker would, without storing: the raw round trip. */
  async echo(): Promise<string> {
    echo = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: silentLogger })
    echo.registerProcessor(RequestCode.SEND_MESSAGE_V2, () => RemotingCommand.createResponse(ResponseCode.SUCCESS, null, { msgId: 'x', queueId: '0', queueOffset: '0' }))
    await echo.start()
    return `127.0.0.1:${echo.address().port}`
  },
  async stop(): Promise<void> {
    await echo?.stop({ timeoutMs: 1000 })
    await store?.close()
  },
})
