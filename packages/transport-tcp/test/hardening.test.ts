// Peers that misbehave on purpose: a client that sends requests and never reads the answers (the
// server stops reading it, keeps its memory bounded, keeps serving others, closes it once it stays
// stuck, and logs a bounded number of lines), a server that never reads (the client's queued bytes
// are bounded and a timed-out request's frame is dropped), and the wire details RocketMQ clients
// depend on (response flag, the request's serialization, lenient extFields).
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { test } from 'node:test'
import { COMMAND_FLAG, RemotingCommand, ResponseCode, SerializeType, TransportError, encodeFrame } from '@mqts/transport/internal'
import { TcpRemotingClient, TcpRemotingServer } from '../src/index.js'
import type { TcpConnection } from '../src/internal.js'
import { quiet, rawConnect, recordingLogger, sleep, stalledServer, until } from './helpers.js'

const T = { timeout: 30_000 }
const ANSWER_BYTES = 16 * 1024
const BIG = 1
const ECHO = 2
/** Answers large enough that the kernel's socket buffers fill after a few dozen. */
const HUGE = 4
const HUGE_ANSWER_BYTES = 256 * 1024

async function startServer(options: ConstructorParameters<typeof TcpRemotingServer>[0] = {}): Promise<{ server: TcpRemotingServer; port: number; address: string; processed: () => number }> {
  let processed = 0
  const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: quiet, ...options })
  const answer = Buffer.alloc(ANSWER_BYTES, 1)
  server.registerProcessor(BIG, () => {
    processed++
    return RemotingCommand.createResponse(ResponseCode.SUCCESS, null, {}, answer)
  })
  const huge = Buffer.alloc(HUGE_ANSWER_BYTES, 2)
  server.registerProcessor(HUGE, () => RemotingCommand.createResponse(ResponseCode.SUCCESS, null, {}, huge))
  server.registerProcessor(ECHO, (request) => RemotingCommand.createResponse(ResponseCode.SUCCESS, 'ok', { ...request.extFields }, request.body))
  await server.start()
  const { port } = server.address()
  return { server, port, address: `127.0.0.1:${port}`, processed: () => processed }
}

/** A raw socket that writes `count` requests and never reads a byte. */
async function floodWithoutReading(port: number, count: number, code = BIG): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, noDelay: true })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.pause()
  socket.on('error', () => {})
  const frames: Buffer[] = []
  for (let i = 0; i < count; i++) frames.push(encodeFrame(RemotingCommand.createRequest(code, { i: String(i) })))
  socket.write(Buffer.concat(frames))
  return socket
}

/** Waits until `value()` has not changed for `quietMs` (or `limitMs` passed), and returns it. */
async function settled(value: () => number, quietMs = 300, limitMs = 10_000): Promise<number> {
  const deadline = Date.now() + limitMs
  let last = value()
  let since = Date.now()
  while (Date.now() < deadline) {
    await sleep(25)
    const now = value()
    if (now !== last) {
      last = now
      since = Date.now()
    } else if (Date.now() - since >= quietMs) break
  }
  return last
}


test('a peer that never reads: the server stops reading it, its queued bytes stay bounded, others are served, stop() logs a bounded number of lines', T, async () => {
  const log = recordingLogger()
  const bound = 512 * 1024
  const { server, address, processed } = await startServer({ logger: log, maxBufferedWriteBytes: 128 * 1024, maxUnsentBytesPerConnection: bound })
  const client = new TcpRemotingClient({ logger: quiet })
  let flood: net.Socket | undefined
  try {
    // 20,000 requests of about 100 bytes each ask for 320 MB of answers.
    flood = await floodWithoutReading(server.address().port, 20_000)
    await until(() => server.channels().length === 1)
    const connection = server.channels()[0] as unknown as TcpConnection
    let maxHeld = 0
    const sample = setInterval(() => (maxHeld = Math.max(maxHeld, connection.unsentBytes())), 5)
    await settled(processed)
    clearInterval(sample)
    maxHeld = Math.max(maxHeld, connection.unsentBytes())
    // Answers the kernel took are gone from this process; what is held here stays near the bound
    // (one read chunk of requests may be decoded after it is passed).
    assert.ok(maxHeld <= bound + 128 * 1024 + 64 * ANSWER_BYTES, `held ${maxHeld} bytes for a peer that reads nothing (bound ${bound})`)
    assert.ok(processed() < 20_000, 'the server stopped taking requests from it')
    assert.ok(connection.inFlight <= 64, `${connection.inFlight} in flight`)
    // Another client is served meanwhile.
    const r = await client.invoke(address, RemotingCommand.createRequest(ECHO, { who: 'other' }), 3000)
    assert.equal(r.extFields.who, 'other')
  } finally {
    await client.close()
    await server.stop({ timeoutMs: 200 })
    flood?.destroy()
  }
  assert.ok(log.lines.length <= 3, `stop() logged ${log.lines.length} lines:\n${log.lines.slice(0, 5).join('\n')}`)
})

test('a peer that stays over the bound is closed after unsentStallCloseMs, with one log line; a peer that reads again is resumed', T, async () => {
  const log = recordingLogger()
  const { server, port } = await startServer({ logger: log, maxBufferedWriteBytes: 64 * 1024, maxUnsentBytesPerConnection: 256 * 1024, unsentStallCloseMs: 300 })
  const sockets: net.Socket[] = []
  try {
    const closed: string[] = []
    server.on('close', (_channel, reason) => closed.push(reason))
    sockets.push(await floodWithoutReading(port, 5_000))
    // A peer that floods, then reads: it gets every answer.
    const reader = await rawConnect(port)
    sockets.push(reader.socket)
    reader.socket.pause()
    const frames: Buffer[] = []
    for (let i = 0; i < 1000; i++) frames.push(encodeFrame(RemotingCommand.createRequest(ECHO, { i: String(i) }, Buffer.alloc(2048))))
    reader.socket.write(Buffer.concat(frames))
    await sleep(100)
    reader.socket.resume()
    await until(() => reader.received.length === 1000, 10_000)
    assert.ok(reader.received.every((r) => r.code === ResponseCode.SUCCESS || r.code === ResponseCode.SYSTEM_BUSY))
    // The stuck peer is closed by the server; the reader is not.
    await until(() => closed.length === 1, 10_000)
    assert.equal(closed[0], 'peer does not read its answers')
    assert.equal(server.channels().length, 1)
    const closing = log.lines.filter((l) => l.includes('unsent'))
    assert.equal(closing.length, 1, log.lines.join('\n'))
  } finally {
    for (const s of sockets) s.destroy()
    await server.stop({ timeoutMs: 200 })
  }
})

test('answers not yet written count against the in-flight limit', T, async () => {
  // 64 answers of 256 KiB in flight: more than the kernel's socket buffers take, so some must park
  // (the requests read in one turn of the loop are answered before any of it is written).
  const { server, port } = await startServer({ maxBufferedWriteBytes: 64 * 1024, maxInFlightPerConnection: 64, maxUnsentBytesPerConnection: 64 * 1024 * 1024 })
  let flood: net.Socket | undefined
  try {
    flood = await floodWithoutReading(port, 3_000, HUGE)
    await until(() => server.channels().length === 1)
    const connection = server.channels()[0] as unknown as TcpConnection
    await until(() => connection.waitingFrames > 0)
    await settled(() => connection.waitingFrames)
    // Answers parked for room are requests still in flight; the ones past the limit got SYSTEM_BUSY.
    assert.ok(connection.inFlight > 0 && connection.inFlight <= 64, `in flight ${connection.inFlight}`)
  } finally {
    await server.stop({ timeoutMs: 200 })
    flood?.destroy()
  }
})

test('a server that never reads: the client bounds its queued bytes (TOO_MANY_REQUESTS at once) and drops frames of timed-out requests', T, async () => {
  const { address, close: closeStalled } = await stalledServer()
  const bound = 1024 * 1024
  const client = new TcpRemotingClient({ logger: quiet, maxBufferedWriteBytes: 256 * 1024, maxUnsentBytesPerConnection: bound })
  try {
    const connection = (await client.channel(address)) as unknown as TcpConnection
    const body = Buffer.alloc(16 * 1024)
    const calls: Promise<unknown>[] = []
    let tooMany = 0
    let maxHeld = 0
    // Up to 64 MB: far more than the kernel's socket buffers take, so the client must queue.
    for (let i = 0; i < 4000 && tooMany === 0; i++) {
      const call = client.invoke(address, RemotingCommand.createRequest(ECHO, {}, body), 400).catch((err: unknown) => {
        if (err instanceof TransportError && err.code === 'TOO_MANY_REQUESTS') tooMany++
        else if (!(err instanceof TransportError && err.code === 'TIMEOUT')) throw err
      })
      calls.push(call)
      if (i % 16 === 15) {
        await new Promise((resolve) => setImmediate(resolve))
        maxHeld = Math.max(maxHeld, connection.unsentBytes())
      }
    }
    assert.ok(tooMany > 0, 'invoke failed with TOO_MANY_REQUESTS once the bound was passed')
    assert.ok(maxHeld <= bound + 2 * body.length + 4096, `held ${maxHeld} bytes (bound ${bound})`)
    await Promise.all(calls)
    assert.equal(connection.waitingFrames, 0, 'frames of timed-out requests are dropped')
    assert.equal(connection.pendingCount, 0)
  } finally {
    await client.close()
    await closeStalled()
  }
})

/** A JSON header written by hand, as a lenient client would: numbers and booleans in extFields. */
function jsonFrame(header: string): Buffer {
  const h = Buffer.from(header, 'utf8')
  const frame = Buffer.alloc(8 + h.length)
  frame.writeInt32BE(4 + h.length, 0)
  frame.writeInt32BE(h.length, 4)
  h.copy(frame, 8)
  return frame
}

test('wire: every answer has the response flag and its request\'s serialization; extFields may be numbers or booleans, unknown ones are ignored', T, async () => {
  const { server, port } = await startServer({ maxInFlightPerConnection: 1 })
  server.registerProcessor(3, () => new Promise(() => {}))
  let raw: Awaited<ReturnType<typeof rawConnect>> | undefined
  try {
    const conn = await rawConnect(port)
    raw = conn
    conn.socket.write(
      jsonFrame('{"code":2,"extFields":{"queueId":3,"sysFlag":true,"unitMode":false,"AccessKey":"ak","Signature":"s="},"flag":0,"language":"JAVA","opaque":11,"serializeTypeCurrentRPC":"JSON","version":373,"unknownTopLevel":{"x":[1]}}'),
    )
    await until(() => conn.received.length === 1)
    const first = conn.received[0]!
    assert.equal(first.opaque, 11)
    assert.equal(first.flag & COMMAND_FLAG.RESPONSE, COMMAND_FLAG.RESPONSE)
    assert.equal(first.serializeType, SerializeType.JSON)
    assert.deepEqual(first.extFields, { queueId: '3', sysFlag: 'true', unitMode: 'false', AccessKey: 'ak', Signature: 's=' })
    // System answers too: not supported, busy (the one in-flight slot is held by code 3).
    const frames = [
      new RemotingCommand({ code: 9999, opaque: 21, serializeType: SerializeType.ROCKETMQ }),
      new RemotingCommand({ code: 3, opaque: 22 }),
      new RemotingCommand({ code: ECHO, opaque: 23, serializeType: SerializeType.ROCKETMQ }),
      new RemotingCommand({ code: ECHO, opaque: 24, serializeType: SerializeType.JSON }),
    ]
    conn.socket.write(Buffer.concat(frames.map((f) => encodeFrame(f))))
    await until(() => conn.received.length === 4)
    const byOpaque = new Map(conn.received.map((r) => [r.opaque, r]))
    assert.equal(byOpaque.get(21)!.code, ResponseCode.REQUEST_CODE_NOT_SUPPORTED)
    assert.equal(byOpaque.get(21)!.serializeType, SerializeType.ROCKETMQ)
    assert.equal(byOpaque.get(23)!.code, ResponseCode.SYSTEM_BUSY)
    assert.equal(byOpaque.get(23)!.serializeType, SerializeType.ROCKETMQ)
    assert.equal(byOpaque.get(24)!.code, ResponseCode.SYSTEM_BUSY)
    assert.equal(byOpaque.get(24)!.serializeType, SerializeType.JSON)
    for (const r of conn.received) assert.equal(r.flag & COMMAND_FLAG.RESPONSE, COMMAND_FLAG.RESPONSE, `opaque ${r.opaque}`)
  } finally {
    raw?.socket.destroy()
    await server.stop({ timeoutMs: 200 })
  }
})

test('wire: a malformed header closes that connection only, with one log line', T, async () => {
  const log = recordingLogger()
  const { server, port, address } = await startServer({ logger: log })
  const client = new TcpRemotingClient({ logger: quiet })
  try {
    assert.equal((await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)).code, 0)
    for (const header of ['{"code":"two","opaque":1}', '{"code":2,"extFields":{"a":{"b":1}}}', '[1,2]', '{"code":2,"remark":7}']) {
      const raw = await rawConnect(port)
      raw.socket.write(jsonFrame(header))
      await raw.closed
    }
    assert.equal(log.lines.length, 4, log.lines.join('\n'))
    assert.equal((await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)).code, 0)
  } finally {
    await client.close()
    await server.stop()
  }
})
