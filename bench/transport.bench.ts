/**
 * Remoting over loopback TCP against a raw `net` baseline doing the same work with the least
 * framing possible (4-byte length prefix, in-order replies, no header):
 * - request/response round trips per second, 1 caller (sequential) and 16 concurrent callers
 *   sharing one connection;
 * - one-way throughput with 1 KiB and 64 KiB bodies, counted when the server has them all.
 * `ratio` = mqts / raw; the target is >= 0.7. Headers are JSON (RocketMQ's default) unless a row
 * names ROCKETMQ.
 */
import * as net from 'node:net'
import * as os from 'node:os'
import { pathToFileURL } from 'node:url'
import { RemotingCommand, ResponseCode, SerializeType, silentLogger } from '@mqts/transport'
import { TcpRemotingClient, TcpRemotingServer } from '@mqts/transport-tcp'

export interface TransportBenchRow {
  name: string
  value: number
  unit: string
  baseline?: number
  ratio?: number
}

const TARGET_RATIO = 0.7
const ECHO = 1
const SINK = 2

interface Sizes {
  sequential: number
  concurrent: number
  oneway1k: number
  oneway64k: number
}

const QUICK: Sizes = { sequential: 2_000, concurrent: 10_000, oneway1k: 20_000, oneway64k: 1_000 }
const FULL: Sizes = { sequential: 20_000, concurrent: 200_000, oneway1k: 300_000, oneway64k: 20_000 }

// ---------------------------------------------------------------------------------------------
// mqts

async function mqtsSetup(serializeType: SerializeType): Promise<{ client: TcpRemotingClient; server: TcpRemotingServer; address: string; received: () => number; close: () => Promise<void> }> {
  const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: silentLogger, maxInFlightPerConnection: 1024 })
  let received = 0
  server.registerProcessor(ECHO, (request) => RemotingCommand.createResponse(ResponseCode.SUCCESS, null, undefined, request.body))
  server.registerProcessor(SINK, () => {
    received++
  })
  await server.start()
  const client = new TcpRemotingClient({ logger: silentLogger, serializeType })
  const address = `127.0.0.1:${server.address().port}`
  await client.channel(address)
  return {
    client,
    server,
    address,
    received: () => received,
    close: async () => {
      await client.close()
      await server.stop({ timeoutMs: 1000 })
    },
  }
}

async function mqtsRoundTrips(callers: number, total: number, serializeType: SerializeType = SerializeType.JSON): Promise<number> {
  const m = await mqtsSetup(serializeType)
  const body = Buffer.from('ping')
  const loop = async (n: number) => {
    for (let i = 0; i < n; i++) await m.client.invoke(m.address, RemotingCommand.createRequest(ECHO, undefined, body), 5000)
  }
  await Promise.all(Array.from({ length: callers }, () => loop(Math.min(500, total / callers))))
  const begin = performance.now()
  await Promise.all(Array.from({ length: callers }, () => loop(Math.floor(total / callers))))
  const seconds = (performance.now() - begin) / 1000
  await m.close()
  return (Math.floor(total / callers) * callers) / seconds
}

async function mqtsOneway(bodyBytes: number, total: number, serializeType: SerializeType = SerializeType.JSON): Promise<number> {
  const m = await mqtsSetup(serializeType)
  const body = Buffer.alloc(bodyBytes, 1)
  const send = async (n: number) => {
    for (let i = 0; i < n; i++) await m.client.invokeOneway(m.address, RemotingCommand.createRequest(SINK, undefined, body))
  }
  const warm = Math.min(1000, total / 10)
  await send(warm)
  await waitFor(() => m.received() >= warm)
  const begin = performance.now()
  await send(total)
  await waitFor(() => m.received() >= warm + total)
  const seconds = (performance.now() - begin) / 1000
  await m.close()
  return total / seconds
}

// ---------------------------------------------------------------------------------------------
// raw net baseline

/** Length-prefixed frames; calls `onFrame` with each payload. Keeps leftovers by concatenation, which is fine for small frames. */
function rawParser(onFrame: (payload: Buffer) => void): (chunk: Buffer) => void {
  let pending: Buffer | null = null
  return (chunk) => {
    const buf = pending ? Buffer.concat([pending, chunk]) : chunk
    let at = 0
    while (buf.length - at >= 4) {
      const len = buf.readUInt32BE(at)
      if (buf.length - at - 4 < len) break
      onFrame(buf.subarray(at + 4, at + 4 + len))
      at += 4 + len
    }
    pending = at < buf.length ? buf.subarray(at) : null
  }
}

function rawFrame(payload: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(4 + payload.length)
  frame.writeUInt32BE(payload.length, 0)
  payload.copy(frame, 4)
  return frame
}

async function rawSetup(mode: 'echo' | 'sink'): Promise<{ socket: net.Socket; received: () => number; close: () => Promise<void> }> {
  let received = 0
  const server = net.createServer((s) => {
    s.setNoDelay(true)
    s.on(
      'data',
      rawParser((payload) => {
        received++
        if (mode === 'echo') s.write(rawFrame(payload))
      }),
    )
    s.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const socket = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, noDelay: true })
  await new Promise<void>((resolve) => socket.once('connect', resolve))
  return {
    socket,
    received: () => received,
    close: async () => {
      socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

async function rawRoundTrips(callers: number, total: number): Promise<number> {
  const r = await rawSetup('echo')
  // Replies come back in order, so a FIFO of waiters replaces correlation ids.
  const waiters: (() => void)[] = []
  let head = 0
  r.socket.on('data', rawParser(() => waiters[head++]!()))
  const frame = rawFrame(Buffer.from('ping'))
  const call = () =>
    new Promise<void>((resolve) => {
      waiters.push(resolve)
      r.socket.write(frame)
    })
  const loop = async (n: number) => {
    for (let i = 0; i < n; i++) await call()
  }
  await Promise.all(Array.from({ length: callers }, () => loop(Math.min(500, total / callers))))
  const begin = performance.now()
  await Promise.all(Array.from({ length: callers }, () => loop(Math.floor(total / callers))))
  const seconds = (performance.now() - begin) / 1000
  await r.close()
  return (Math.floor(total / callers) * callers) / seconds
}

async function rawOneway(bodyBytes: number, total: number): Promise<number> {
  const r = await rawSetup('sink')
  const frame = rawFrame(Buffer.alloc(bodyBytes, 1))
  const send = async (n: number) => {
    for (let i = 0; i < n; i++) {
      if (!r.socket.write(frame)) await new Promise((resolve) => r.socket.once('drain', resolve))
    }
  }
  const warm = Math.min(1000, total / 10)
  await send(warm)
  await waitFor(() => r.received() >= warm)
  const begin = performance.now()
  await send(total)
  await waitFor(() => r.received() >= warm + total)
  const seconds = (performance.now() - begin) / 1000
  await r.close()
  return total / seconds
}

// ---------------------------------------------------------------------------------------------

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve))
}

function row(name: string, unit: string, value: number, baseline: number): TransportBenchRow {
  return { name, value: Math.round(value), unit, baseline: Math.round(baseline), ratio: Number((value / baseline).toFixed(3)) }
}

export async function run(opts: { quick: boolean }): Promise<TransportBenchRow[]> {
  const n = opts.quick ? QUICK : FULL
  const rows: TransportBenchRow[] = []
  rows.push(row('round trips, 1 caller', 'req/s', await mqtsRoundTrips(1, n.sequential), await rawRoundTrips(1, n.sequential)))
  rows.push(row('round trips, 16 callers', 'req/s', await mqtsRoundTrips(16, n.concurrent), await rawRoundTrips(16, n.concurrent)))
  rows.push(row('oneway 1 KiB', 'msg/s', await mqtsOneway(1024, n.oneway1k), await rawOneway(1024, n.oneway1k)))
  rows.push(row('oneway 64 KiB', 'msg/s', await mqtsOneway(64 * 1024, n.oneway64k), await rawOneway(64 * 1024, n.oneway64k)))
  // The same cases with the binary ROCKETMQ header, which skips JSON on both ends.
  rows.push(row('round trips, 1 caller, ROCKETMQ', 'req/s', await mqtsRoundTrips(1, n.sequential, SerializeType.ROCKETMQ), await rawRoundTrips(1, n.sequential)))
  rows.push(row('oneway 1 KiB, ROCKETMQ', 'msg/s', await mqtsOneway(1024, n.oneway1k, SerializeType.ROCKETMQ), await rawOneway(1024, n.oneway1k)))
  return rows
}

function print(rows: TransportBenchRow[], quick: boolean): void {
  console.log(`transport bench (${quick ? 'quick' : 'full'}): node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'} x${os.cpus().length}`)
  console.log(`${'case'.padEnd(34)}${'mqts'.padStart(12)}${'raw net'.padStart(12)}  unit    ratio  (target >= ${TARGET_RATIO})`)
  for (const r of rows) {
    const ok = (r.ratio ?? 0) >= TARGET_RATIO ? 'ok' : 'BELOW'
    console.log(`${r.name.padEnd(34)}${String(r.value).padStart(12)}${String(r.baseline).padStart(12)}  ${r.unit.padEnd(6)}  ${(r.ratio ?? 0).toFixed(2).padStart(5)}  ${ok}`)
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.env.BENCH_QUICK === '1' || process.argv.includes('--quick')
  const begin = performance.now()
  run({ quick })
    .then((rows) => {
      print(rows, quick)
      console.log(`took ${((performance.now() - begin) / 1000).toFixed(1)} s`)
    })
    .catch((err) => {
      console.error(err)
      process.exitCode = 1
    })
}
