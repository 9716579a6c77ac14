// TCP specifics: the exact public API from the issue, the default in-flight limit (64 → SYSTEM_BUSY),
// oversize and malformed frames closing only the offending connection, frames written to the socket
// in odd chunks, write coalescing, frames of several connections interleaved in the shared write
// slab, back-pressure from a peer that stops reading, timeouts that leave nothing behind, and
// graceful stop with raw peers.
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { test } from 'node:test'
import { INLINE_BODY_BYTES, RemotingCommand, ResponseCode, SerializeType, TransportError, encodeFrame, randomBytes, randomInt, seededRandom, seedFromEnv } from '@mqts/transport/internal'
import { TcpRemotingClient, TcpRemotingServer } from '../src/index.js'
import { MAX_FLUSH_DELAY_MS, READ_ARENA_MIN_FRAME_BYTES, READ_ARENA_SLAB_BYTES, WRITE_SLAB_BYTES, type TcpConnection } from '../src/internal.js'
import { quiet, rawConnect, recordingLogger, sleep, stalledServer, until } from './helpers.js'

const T = { timeout: 20_000 }

async function startServer(options: ConstructorParameters<typeof TcpRemotingServer>[0] = {}): Promise<{ server: TcpRemotingServer; port: number; address: string }> {
  const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: quiet, ...options })
  server.registerProcessor(1, (request) => RemotingCommand.createResponse(ResponseCode.SUCCESS, 'ok', { id: request.extFields.id ?? '' }, request.body))
  server.registerProcessor(2, async (request) => {
    await sleep(Number(request.extFields.delayMs ?? 100))
    return RemotingCommand.createResponse(ResponseCode.SUCCESS)
  })
  await server.start()
  const { port } = server.address()
  return { server, port, address: `127.0.0.1:${port}` }
}

test('the documented API works end to end', T, async () => {
  const code = 310
  const extFields = { a: 'producerGroup', b: 'TopicTest' }
  const body = Buffer.from('payload')
  const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: quiet })
  server.registerProcessor(code, async (request, channel) => {
    assert.equal(channel.closed, false)
    return RemotingCommand.createResponse(0, 'ok', request.extFields, request.body)
  })
  await server.start()
  const { port } = server.address()
  const addr = `127.0.0.1:${port}`
  const client = new TcpRemotingClient({ logger: quiet })
  const response = await client.invoke(addr, RemotingCommand.createRequest(code, extFields, body), 3000)
  assert.equal(response.code, 0)
  assert.equal(response.remark, 'ok')
  assert.deepEqual(response.extFields, extFields)
  assert.ok(response.body.equals(body))
  await client.invokeOneway(addr, RemotingCommand.createRequest(code, extFields, body))
  await client.close()
  await server.stop()
})

test('default in-flight limit is 64 per connection: the rest get SYSTEM_BUSY', T, async () => {
  const { server, address } = await startServer()
  const client = new TcpRemotingClient({ logger: quiet })
  try {
    await client.channel(address)
    const responses = await Promise.all(Array.from({ length: 100 }, () => client.invoke(address, RemotingCommand.createRequest(2, { delayMs: '200' }), 5000)))
    const busy = responses.filter((r) => r.code === ResponseCode.SYSTEM_BUSY).length
    const ok = responses.filter((r) => r.code === ResponseCode.SUCCESS).length
    assert.equal(ok, 64)
    assert.equal(busy, 36)
  } finally {
    await client.close()
    await server.stop()
  }
})

test('an oversize length closes only that connection, with a logged reason; others keep working', T, async () => {
  const log = recordingLogger()
  const { server, port, address } = await startServer({ logger: log, maxFrameBytes: 64 * 1024 })
  const client = new TcpRemotingClient({ logger: quiet })
  try {
    assert.equal((await client.invoke(address, RemotingCommand.createRequest(1), 3000)).code, 0)
    const raw = await rawConnect(port)
    const header = Buffer.alloc(8)
    header.writeInt32BE(17 * 1024 * 1024, 0)
    raw.socket.write(header)
    await raw.closed
    assert.ok(log.lines.some((l) => /closing connection from .*exceeds/.test(l)), log.lines.join('\n'))
    assert.equal((await client.invoke(address, RemotingCommand.createRequest(1), 3000)).code, 0)
    await until(() => server.channels().length === 1)
  } finally {
    await client.close()
    await server.stop()
  }
})

test('malformed frames (negative length, bad header length, unknown type, bad JSON) each close their connection', T, async () => {
  const log = recordingLogger()
  const { server, port, address } = await startServer({ logger: log })
  const client = new TcpRemotingClient({ logger: quiet })
  const word = (n: number) => {
    const b = Buffer.alloc(4)
    b.writeInt32BE(n)
    return b
  }
  const bad = [
    word(-7),
    Buffer.concat([word(8), word(50), word(0)]),
    Buffer.concat([word(6), word((9 << 24) | 2), Buffer.from('{}')]),
    Buffer.concat([word(9), word(5), Buffer.from('{"co:')]),
  ]
  try {
    for (const frame of bad) {
      const raw = await rawConnect(port)
      // A good frame first: it is answered before the bad one closes the connection.
      raw.socket.write(Buffer.concat([encodeFrame(RemotingCommand.createRequest(1, { id: 'before' })), frame]))
      await raw.closed
      assert.equal(raw.received.length, 1)
      assert.equal(raw.received[0]!.extFields.id, 'before')
    }
    assert.equal(log.lines.length, bad.length)
    assert.equal((await client.invoke(address, RemotingCommand.createRequest(1), 3000)).code, 0)
  } finally {
    await client.close()
    await server.stop()
  }
})

test('frames written in random chunks (down to single bytes) are all answered in order', T, async () => {
  const seed = seedFromEnv()
  const rng = seededRandom(seed)
  const { server, port } = await startServer()
  try {
    const raw = await rawConnect(port)
    const requests = Array.from({ length: 30 }, (_, i) =>
      Object.assign(RemotingCommand.createRequest(1, { id: String(i) }, Buffer.alloc(i * 37, i)), { serializeType: i % 2 ? SerializeType.ROCKETMQ : SerializeType.JSON }),
    )
    const stream = Buffer.concat(requests.map((r) => encodeFrame(r)))
    for (let at = 0; at < stream.length; ) {
      const n = Math.min(stream.length - at, rng() < 0.3 ? 1 : 1 + Math.floor(rng() * 300))
      raw.socket.write(stream.subarray(at, at + n))
      at += n
      if (rng() < 0.05) await sleep(1)
    }
    await until(() => raw.received.length === requests.length)
    raw.received.forEach((r, i) => {
      assert.equal(r.opaque, requests[i]!.opaque, `seed ${seed}`)
      assert.equal(r.serializeType, requests[i]!.serializeType)
      assert.equal(r.body.length, i * 37)
    })
    raw.socket.destroy()
  } finally {
    await server.stop()
  }
})

test('in a long turn of the loop, answers already queued leave before the next read is processed', T, async () => {
  const events: string[] = []
  const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: quiet })
  server.registerProcessor(1, (request) => {
    events.push(`process ${request.extFields.who}`)
    // Longer than MAX_FLUSH_DELAY_MS.
    const until = performance.now() + 4 * MAX_FLUSH_DELAY_MS + 1
    while (performance.now() < until);
    return RemotingCommand.createResponse(ResponseCode.SUCCESS, undefined, { who: request.extFields.who! })
  })
  await server.start()
  const { port } = server.address()
  const a = await rawConnect(port)
  const b = await rawConnect(port)
  const proto = net.Socket.prototype as unknown as { write: (...args: unknown[]) => boolean }
  const original = proto.write
  proto.write = function (this: net.Socket, ...args: unknown[]) {
    if (this.localPort === port) events.push(`write to ${this.remotePort === a.socket.localPort ? 'a' : 'b'}`)
    return original.apply(this, args)
  }
  try {
    a.socket.write(encodeFrame(RemotingCommand.createRequest(1, { who: 'a' })))
    b.socket.write(encodeFrame(RemotingCommand.createRequest(1, { who: 'b' })))
    // Both requests wait in the kernel, so that one turn of the loop reads the two.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50)
    await until(() => a.received.length === 1 && b.received.length === 1)
    assert.deepEqual(events, ['process a', 'write to a', 'process b', 'write to b'])
  } finally {
    proto.write = original
    a.socket.destroy()
    b.socket.destroy()
    await server.stop()
  }
})

test('a client\'s request leaves after the tick it was made in, not after the rest of the loop\'s turn', T, async () => {
  const { server, address, port } = await startServer()
  const client = new TcpRemotingClient({ logger: quiet })
  const events: string[] = []
  const proto = net.Socket.prototype as unknown as { write: (...args: unknown[]) => boolean }
  const original = proto.write
  try {
    await client.invoke(address, RemotingCommand.createRequest(1, { id: 'warm' }), 3000)
    proto.write = function (this: net.Socket, ...args: unknown[]) {
      if (this.remotePort === port) events.push('request written')
      return original.apply(this, args)
    }
    // Two timers of one timers phase: the first invokes, the second works synchronously.
    let call: Promise<unknown> | undefined
    await new Promise<void>((resolve) => {
      setTimeout(() => {
        call = client.invoke(address, RemotingCommand.createRequest(1, { id: 'x' }), 3000)
      }, 1)
      setTimeout(() => {
        events.push('other timer')
        resolve()
      }, 1)
    })
    await call
    assert.deepEqual(events, ['request written', 'other timer'])
  } finally {
    proto.write = original
    await client.close()
    await server.stop()
  }
})

test('a connection whose large request a read cuts reads into an arena from then on: the next such request is a view of it, not a copy (readArena: false, small requests and connections past readArenaConnections read as Node does)', T, async () => {
  const isArenaView = (b: Buffer) => b.buffer.byteLength === READ_ARENA_SLAB_BYTES
  for (const readArena of [true, false]) {
    const bodies: Buffer[] = []
    const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: quiet, readArena, readArenaConnections: 1 })
    server.registerProcessor(1, (request) => {
      bodies.push(request.body)
      return RemotingCommand.createResponse(ResponseCode.SUCCESS)
    })
    await server.start()
    const first = await rawConnect(server.address().port)
    const second = await rawConnect(server.address().port)
    try {
      const rng = seededRandom(7)
      const send = async (raw: Awaited<ReturnType<typeof rawConnect>>, size: number): Promise<Buffer> => {
        const body = randomBytes(rng, size)
        const frame = encodeFrame(RemotingCommand.createRequest(1, {}, body))
        const n = raw.received.length
        raw.socket.write(frame.subarray(0, Math.min(5_000, frame.length - 1)))
        await sleep(30)
        raw.socket.write(frame.subarray(Math.min(5_000, frame.length - 1)))
        await until(() => raw.received.length === n + 1)
        const got = bodies[bodies.length - 1]!
        assert.ok(got.equals(body))
        return got
      }
      // Small requests, even cut by a read, leave the connection reading as Node does.
      assert.equal(isArenaView(await send(first, 8_000)), false)
      // The first large one cut by a read is joined as before, and switches the connection.
      assert.equal(isArenaView(await send(first, READ_ARENA_MIN_FRAME_BYTES + 5_000)), false)
      assert.equal(isArenaView(await send(first, 20_000)), readArena, 'the next large request views the arena')
      assert.equal(isArenaView(await send(first, 3_000)), readArena, 'and so does a small one after it')
      // readArenaConnections: 1, taken by the first connection.
      await send(second, READ_ARENA_MIN_FRAME_BYTES + 5_000)
      assert.equal(isArenaView(await send(second, 20_000)), false, 'no arena left for a second connection')
    } finally {
      first.socket.destroy()
      second.socket.destroy()
      await server.stop()
    }
  }
})

test('seeded: frames of random sizes in random chunks and pauses, across many arena slabs, all arrive intact (both read modes)', T, async () => {
  const seed = seedFromEnv()
  for (const readArena of [true, false]) {
    const rng = seededRandom(seed)
    const bodies: Buffer[] = []
    const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: quiet, readArena, maxInFlightPerConnection: 5000 })
    server.registerProcessor(1, (request) => {
      bodies.push(Buffer.from(request.body))
      return RemotingCommand.createResponse(ResponseCode.SUCCESS)
    })
    await server.start()
    const raw = await rawConnect(server.address().port)
    try {
      const sent = Array.from({ length: 150 }, () => randomBytes(rng, rng() < 0.1 ? randomInt(rng, 100_000, 300_000) : randomInt(rng, 0, 30_000)))
      const stream = Buffer.concat(sent.map((b) => encodeFrame(RemotingCommand.createRequest(1, {}, b))))
      for (let at = 0; at < stream.length; ) {
        const n = Math.min(stream.length - at, randomInt(rng, 1, 90_000))
        raw.socket.write(stream.subarray(at, at + n))
        at += n
        if (rng() < 0.2) await sleep(2)
      }
      await until(() => raw.received.length === sent.length, 15_000)
      sent.forEach((b, i) => assert.ok(bodies[i]!.equals(b), `frame ${i} (readArena ${readArena}), seed ${seed}`))
    } finally {
      raw.socket.destroy()
      await server.stop()
    }
  }
})

test('frames queued in one tick leave in one socket write', T, async () => {
  const { server, address } = await startServer()
  const client = new TcpRemotingClient({ logger: quiet })
  try {
    const connection = (await client.channel(address)) as unknown as TcpConnection & { socket: net.Socket }
    const socket = (connection as unknown as { socket: net.Socket }).socket
    let writes = 0
    const original = socket.write.bind(socket) as (...args: unknown[]) => boolean
    ;(socket as unknown as { write: (...args: unknown[]) => boolean }).write = (...args: unknown[]) => {
      writes++
      return original(...args)
    }
    const calls = Array.from({ length: 50 }, (_, i) => client.invoke(address, RemotingCommand.createRequest(1, { id: String(i) }), 3000))
    const responses = await Promise.all(calls)
    responses.forEach((r, i) => assert.equal(r.extFields.id, String(i)))
    assert.equal(writes, 1)
  } finally {
    await client.close()
    await server.stop()
  }
})

test('answers to a read that filled its buffer wait for the connection\'s next read and leave with its answers in one write; a lone read\'s answers leave after their tick', T, async () => {
  const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: quiet })
  // Each answer settles `depth` process.nextTick turns and as many microtasks after its request.
  server.registerProcessor(3, async (request) => {
    for (let i = 0; i < Number(request.extFields.depth); i++) {
      await new Promise<void>((resolve) => process.nextTick(resolve))
      await Promise.resolve()
    }
    return RemotingCommand.createResponse(ResponseCode.SUCCESS, undefined, { idx: request.extFields.idx! })
  })
  await server.start()
  const raw = await rawConnect(server.address().port)
  // Answers settle at once or a tick later, as a store's put does.
  const frames = (from: number, to: number) => Buffer.concat(Array.from({ length: to - from }, (_, i) => encodeFrame(RemotingCommand.createRequest(3, { depth: String((from + i) % 2), idx: String(from + i) }))))
  try {
    await until(() => server.channels().length === 1)
    const connection = server.channels()[0] as unknown as { socket: net.Socket; onData(chunk: Buffer, full: boolean): void }
    let writes = 0
    const original = connection.socket.write.bind(connection.socket) as (...args: unknown[]) => boolean
    ;(connection.socket as unknown as { write: (...args: unknown[]) => boolean }).write = (...args: unknown[]) => {
      writes++
      return original(...args)
    }
    // As the loop delivers a burst: reads that filled their buffer, then the rest, in one turn
    // (each read's answers settled before the next read, as between two I/O callbacks).
    const settle = async (): Promise<void> => {
      for (let k = 0; k < 4; k++) {
        await new Promise<void>((resolve) => process.nextTick(resolve))
        await Promise.resolve()
      }
    }
    setImmediate(async () => {
      connection.onData(frames(0, 4), true)
      await settle()
      connection.onData(frames(4, 8), true)
      await settle()
      connection.onData(frames(8, 10), false)
    })
    await until(() => raw.received.length === 10)
    assert.deepEqual(raw.received.map((r) => Number(r.extFields.idx)).sort((a, b) => a - b), Array.from({ length: 10 }, (_, i) => i))
    // Reads 1 and 2 wait for read 3, whose answers settle in two ticks: two writes, one more if a
    // loaded machine made read 2 come MAX_FLUSH_DELAY_MS after read 1 (a write per tick: six).
    assert.ok(writes <= 3, `${writes} writes for the burst`)
    // A lone read: its answer leaves after its tick, not at the end of the turn.
    writes = 0
    let written = -1
    setImmediate(async () => {
      connection.onData(frames(0, 1), false)
      // Ticks and microtasks only: the turn cannot end meanwhile.
      await settle()
      written = writes
    })
    await until(() => raw.received.length === 11)
    assert.equal(written, 1, 'the lone answer was written before the turn ended')
  } finally {
    raw.socket.destroy()
    await server.stop()
  }
})

test('frames of several connections interleaved in the write slab, with large bodies and slab roll-overs, all arrive intact', T, async () => {
  const { server, address } = await startServer({ maxInFlightPerConnection: 5000 })
  const clients = Array.from({ length: 3 }, (_, i) => new TcpRemotingClient({ logger: quiet, serializeType: i === 1 ? SerializeType.ROCKETMQ : SerializeType.JSON }))
  const seed = seedFromEnv()
  const rng = seededRandom(seed)
  try {
    for (let round = 0; round < 20; round++) {
      // Each round queues frames of every client in one tick; a few bodies are large (written
      // beside the slab) and together they overrun a slab more than once.
      const calls: Promise<void>[] = []
      let bytes = 0
      for (let i = 0; bytes < 3 * WRITE_SLAB_BYTES; i++) {
        const client = clients[randomInt(rng, 0, clients.length - 1)]!
        const size = rng() < 0.05 ? INLINE_BODY_BYTES + randomInt(rng, 1, 4096) : randomInt(rng, 0, 2048)
        bytes += size
        const body = randomBytes(rng, size)
        const id = `${round}-${i}`
        calls.push(
          client.invoke(address, RemotingCommand.createRequest(1, { id }, body), 5000).then((response) => {
            assert.equal(response.extFields.id, id, `seed ${seed}`)
            assert.ok(response.body.equals(body), `seed ${seed}: body of ${id}`)
          }),
        )
      }
      await Promise.all(calls)
    }
  } finally {
    for (const c of clients) await c.close()
    await server.stop()
  }
})

test('a peer that stops reading makes senders wait; the buffer stays bounded; reading resumes them', T, async () => {
  const { address, sockets, close: closeStalled } = await stalledServer()
  const bound = 256 * 1024
  const client = new TcpRemotingClient({ logger: quiet, maxBufferedWriteBytes: bound, maxUnsentBytesPerConnection: 64 * 1024 * 1024 })
  try {
    const connection = (await client.channel(address)) as unknown as TcpConnection
    const body = Buffer.alloc(64 * 1024)
    let resolved = 0
    const sends = Array.from({ length: 300 }, () => client.invokeOneway(address, RemotingCommand.createRequest(1, {}, body)).then(() => void resolved++))
    await sleep(300)
    assert.ok(resolved < 300, `all ${resolved} sends resolved although the peer reads nothing`)
    assert.ok(connection.waitingFrames > 0)
    assert.ok(connection.bufferedBytes() <= bound + body.length + 1024, `buffered ${connection.bufferedBytes()}`)
    await until(() => sockets.length === 1)
    sockets[0]!.resume()
    await Promise.all(sends)
    assert.equal(resolved, 300)
  } finally {
    await client.close()
    await closeStalled()
  }
})

test('thousands of timed-out requests leave no pending entries and the connection keeps working', T, async () => {
  const { server, address } = await startServer({ maxInFlightPerConnection: 5000 })
  const client = new TcpRemotingClient({ logger: quiet })
  try {
    const connection = (await client.channel(address)) as unknown as TcpConnection
    const results = await Promise.allSettled(Array.from({ length: 2000 }, () => client.invoke(address, RemotingCommand.createRequest(2, { delayMs: '300' }), 20)))
    assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof TransportError && r.reason.code === 'TIMEOUT'))
    assert.equal(connection.pendingCount, 0)
    assert.equal((await client.invoke(address, RemotingCommand.createRequest(1), 3000)).code, 0)
  } finally {
    await client.close()
    await server.stop()
  }
})

test('graceful stop answers in-flight requests of raw peers, then closes them', T, async () => {
  const { server, port } = await startServer()
  const raw = await rawConnect(port)
  raw.socket.write(encodeFrame(RemotingCommand.createRequest(2, { delayMs: '150' })))
  await until(() => server.channels().some((c) => c.inFlight === 1))
  const begin = Date.now()
  await server.stop({ timeoutMs: 2000 })
  await raw.closed
  assert.equal(raw.received.length, 1)
  assert.equal(raw.received[0]!.code, ResponseCode.SUCCESS)
  assert.ok(Date.now() - begin < 1500)
  await assert.rejects(new TcpRemotingClient({ logger: quiet }).invoke(`127.0.0.1:${port}`, RemotingCommand.createRequest(1), 500), (e: unknown) => e instanceof TransportError && e.code === 'CONNECT_FAILED')
})

test('addresses that are not host:port fail with BAD_ADDRESS', T, async () => {
  const client = new TcpRemotingClient({ logger: quiet, connectTimeoutMs: 200 })
  await assert.rejects(client.invoke('nonsense', RemotingCommand.createRequest(1), 100), (e: unknown) => e instanceof TransportError && e.code === 'BAD_ADDRESS')
  await assert.rejects(client.invoke('127.0.0.1:99999', RemotingCommand.createRequest(1), 100), (e: unknown) => e instanceof TransportError && e.code === 'BAD_ADDRESS')
  await client.close()
})

test('a response body in parts arrives whole, small (copied) or large (written part by part)', T, async () => {
  const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: quiet })
  const sizes = (n: string): number[] => n.split(',').map(Number)
  server.registerProcessor(7, (request) => {
    const parts = sizes(request.extFields.sizes!).map((n, i) => Buffer.alloc(n, i + 1))
    return RemotingCommand.createResponse(ResponseCode.SUCCESS, null, {}, parts)
  })
  await server.start()
  const client = new TcpRemotingClient({ logger: quiet })
  try {
    const address = `127.0.0.1:${server.address().port}`
    const cases = ['1,2,3', `${INLINE_BODY_BYTES},1`, '40000,1,70000,0,5', '0']
    // Several at once, so small and large answers share the connection's writes.
    const answers = await Promise.all(cases.map((c) => client.invoke(address, RemotingCommand.createRequest(7, { sizes: c }), 10_000)))
    answers.forEach((r, k) => {
      const want = Buffer.concat(sizes(cases[k]!).map((n, i) => Buffer.alloc(n, i + 1)))
      assert.equal(r.code, ResponseCode.SUCCESS)
      assert.ok(r.body.equals(want), cases[k])
    })
  } finally {
    await client.close()
    await server.stop({ timeoutMs: 1000 })
  }
})
