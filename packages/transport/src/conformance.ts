/**
 * The behaviour every transport must show, as a node:test suite. A transport's test file calls
 * `remotingConformanceSuite('tcp', factory)`; the factory starts a server with the given options and
 * returns it with a client and the address to reach it.
 *
 * Checks: round trips in both serializations, system responses (3, 1, 2), malformed processor
 * results answered SYSTEM_ERROR, fresh opaques, rate-limited warnings for unmatched answers,
 * oneway silence, correlation under reordering, timeouts that clean up, server-to-client requests, events,
 * deferred responses, copy semantics, idle close, frame limits, reconnects, graceful stop, and
 * calls on closing and closed objects.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { suite, test } from 'node:test'
import { ResponseCode } from './codes.js'
import { RemotingCommand, SerializeType } from './command.js'
import type { ClientOptions } from './endpoint.js'
import { TransportError, type TransportErrorCode } from './errors.js'
import { silentLogger, type Channel, type ConnectionOptions, type Logger, type RemotingClient, type RemotingServer } from './remoting.js'

export interface ConformanceHarness {
  server: RemotingServer
  client: RemotingClient
  /** Where `client` reaches `server`. */
  address: string
  /** An address where nothing listens. */
  deadAddress: string
}

export type ConformanceFactory = (options: { server?: ConnectionOptions; client?: ClientOptions }) => Promise<ConformanceHarness>

const TIMEOUT = { timeout: 20_000 }
const ECHO = 100
const SLOW = 101
const THROWS = 102
const NEVER = 103
const DEFERRED = 104
const ONEWAY_SINK = 105
const MALFORMED = 106

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  return { lines, warn: (m) => lines.push(m) }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function rejectsWith(p: Promise<unknown>, code: TransportErrorCode): Promise<TransportError> {
  let caught: unknown
  await assert.rejects(p, (err: unknown) => {
    caught = err
    return err instanceof TransportError && err.code === code
  })
  return caught as TransportError
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(5)
  }
}

/** Registers the processors the suite uses. */
function installProcessors(server: RemotingServer, seen: RemotingCommand[]): void {
  server.registerProcessor(ECHO, (request) => {
    seen.push(request)
    return RemotingCommand.createResponse(ResponseCode.SUCCESS, request.remark ?? 'ok', { ...request.extFields, echoed: 'true' }, request.body)
  })
  server.registerProcessor(SLOW, async (request) => {
    await sleep(Number(request.extFields.delayMs ?? '50'))
    return RemotingCommand.createResponse(ResponseCode.SUCCESS, null, { id: request.extFields.id ?? '' })
  })
  server.registerProcessor(THROWS, () => {
    throw new Error('disk on fire')
  })
  server.registerProcessor(NEVER, () => new Promise<void>(() => {}))
  server.registerProcessor(DEFERRED, (request, channel) => {
    setTimeout(() => void channel.respond(request, RemotingCommand.createResponse(ResponseCode.SUCCESS, 'later')), 20)
  })
  // Results a processor should not give; each must become SYSTEM_ERROR for that request only.
  server.registerProcessor(MALFORMED, (request) => {
    const kind = request.extFields.kind
    const response = RemotingCommand.createResponse(ResponseCode.SUCCESS)
    if (kind === 'then-throws') {
      return {
        then() {
          throw new Error('then exploded')
        },
      } as unknown as Promise<RemotingCommand>
    }
    if (kind === 'remark') (response as unknown as { remark: unknown }).remark = 42
    if (kind === 'ext') (response.extFields as Record<string, unknown>).nested = { a: 1 }
    if (kind === 'body') (response as unknown as { body: unknown }).body = 'not a buffer'
    if (kind === 'code') response.code = 1.5
    if (kind === 'object') return { code: 0, remark: 'looks like a command' } as unknown as RemotingCommand
    if (kind === 'async-remark') return Promise.resolve(Object.assign(response, { remark: { text: 'x' } as unknown as string }))
    return response
  })
  server.registerProcessor(ONEWAY_SINK, (request) => {
    seen.push(request)
    return RemotingCommand.createResponse(ResponseCode.SUCCESS, 'must not be sent')
  })
}

export function remotingConformanceSuite(name: string, factory: ConformanceFactory): void {
  async function withHarness(
    options: { server?: ConnectionOptions; client?: ClientOptions },
    body: (h: ConformanceHarness & { seen: RemotingCommand[] }) => Promise<void>,
  ): Promise<void> {
    const h = await factory({
      server: { logger: silentLogger, ...options.server },
      client: { logger: silentLogger, ...options.client },
    })
    const seen: RemotingCommand[] = []
    installProcessors(h.server, seen)
    try {
      await body({ ...h, seen })
    } finally {
      await h.client.close()
      await h.server.stop({ timeoutMs: 500 })
    }
  }

  suite(`${name} conformance`, () => {
    for (const [typeName, type] of [['JSON', SerializeType.JSON], ['ROCKETMQ', SerializeType.ROCKETMQ]] as const) {
      test(`${typeName}: request/response round trip keeps fields and mirrors the serialization`, TIMEOUT, async () => {
        await withHarness({ client: { serializeType: type } }, async ({ client, address, seen }) => {
          const body = Buffer.from('héllo wörld ✓')
          const request = RemotingCommand.createRequest(ECHO, { topic: 'TopicTest', 'ключ': 'значение ✓', empty: '' }, body)
          request.remark = 'remark ✓'
          const response = await client.invoke(address, request, 3000)
          assert.equal(response.code, ResponseCode.SUCCESS)
          assert.equal(response.isResponse, true)
          assert.equal(response.opaque, request.opaque)
          assert.equal(response.remark, 'remark ✓')
          assert.equal(response.extFields.topic, 'TopicTest')
          assert.equal(response.extFields['ключ'], 'значение ✓')
          assert.equal(response.extFields.empty, '')
          assert.equal(response.extFields.echoed, 'true')
          assert.deepEqual(response.body, body)
          assert.equal(response.serializeType, type)
          assert.equal(seen[0]!.serializeType, type)
          assert.equal(seen[0]!.isOneway, false)
        })
      })
    }

    test('empty and 1 MiB bodies round trip', TIMEOUT, async () => {
      await withHarness({}, async ({ client, address }) => {
        const empty = await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)
        assert.equal(empty.body.length, 0)
        const big = Buffer.alloc(1024 * 1024, 7)
        big[12345] = 1
        const r = await client.invoke(address, RemotingCommand.createRequest(ECHO, {}, big), 5000)
        assert.ok(r.body.equals(big))
      })
    })

    test('unknown code gets REQUEST_CODE_NOT_SUPPORTED with RocketMQ remark', TIMEOUT, async () => {
      await withHarness({}, async ({ client, address }) => {
        const r = await client.invoke(address, RemotingCommand.createRequest(9999), 3000)
        assert.equal(r.code, ResponseCode.REQUEST_CODE_NOT_SUPPORTED)
        assert.equal(r.remark, ' request type 9999 not supported')
      })
    })

    test('default processor takes unknown codes', TIMEOUT, async () => {
      await withHarness({}, async ({ server, client, address }) => {
        server.registerDefaultProcessor((request) => RemotingCommand.createResponse(ResponseCode.SUCCESS, `default ${request.code}`))
        const r = await client.invoke(address, RemotingCommand.createRequest(4242), 3000)
        assert.equal(r.code, ResponseCode.SUCCESS)
        assert.equal(r.remark, 'default 4242')
      })
    })

    test('a throwing processor gets SYSTEM_ERROR with its message and the connection stays usable', TIMEOUT, async () => {
      await withHarness({}, async ({ client, address }) => {
        const r = await client.invoke(address, RemotingCommand.createRequest(THROWS), 3000)
        assert.equal(r.code, ResponseCode.SYSTEM_ERROR)
        assert.equal(r.remark, 'disk on fire')
        const ok = await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)
        assert.equal(ok.code, ResponseCode.SUCCESS)
      })
    })

    test('a malformed processor result gets SYSTEM_ERROR for that request; the connection stays open', TIMEOUT, async () => {
      await withHarness({}, async ({ server, client, address }) => {
        let closes = 0
        server.on('close', () => closes++)
        const before = await client.channel(address)
        for (const kind of ['then-throws', 'remark', 'ext', 'body', 'code', 'object', 'async-remark']) {
          const r = await client.invoke(address, RemotingCommand.createRequest(MALFORMED, { kind }), 3000)
          assert.equal(r.code, ResponseCode.SYSTEM_ERROR, kind)
          assert.equal(typeof r.remark, 'string', kind)
          assert.equal((await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)).code, ResponseCode.SUCCESS, kind)
        }
        assert.equal(await client.channel(address), before, 'same connection throughout')
        assert.equal(before.closed, false)
        assert.equal(closes, 0)
      })
    })

    test('a request built with new RemotingCommand({ code }) gets a fresh opaque; a late answer to an earlier one is not taken for its answer', TIMEOUT, async () => {
      await withHarness({}, async ({ client, address }) => {
        const a = new RemotingCommand({ code: SLOW, extFields: { id: 'first', delayMs: '150' } })
        const b = new RemotingCommand({ code: SLOW, extFields: { id: 'second', delayMs: '400' } })
        assert.notEqual(a.opaque, b.opaque)
        await rejectsWith(client.invoke(address, a, 30), 'TIMEOUT')
        const r = await client.invoke(address, b, 5000)
        assert.equal(r.extFields.id, 'second')
        assert.equal(r.opaque, b.opaque)
        const explicit = new RemotingCommand({ code: ECHO, opaque: 0 })
        assert.equal(explicit.opaque, 0, 'an explicit opaque is kept')
      })
    })

    test('answers nobody waits for are logged once, then counted, not once per frame', TIMEOUT, async () => {
      const serverLog = recordingLogger()
      await withHarness({ server: { logger: serverLog } }, async ({ client, address }) => {
        const channel = await client.channel(address)
        const frames = 3000
        for (let i = 0; i < frames; i++) {
          const stray = new RemotingCommand({ code: ECHO, opaque: 1_000_000 + i })
          await channel.respond(stray, RemotingCommand.createResponse(ResponseCode.SUCCESS, 'nobody asked'))
        }
        // Frames arrive in order: once this is answered, every stray answer has been seen.
        assert.equal((await client.invoke(address, RemotingCommand.createRequest(ECHO), 5000)).code, ResponseCode.SUCCESS)
        const lines = serverLog.lines.filter((l) => l.includes('without a waiting request'))
        assert.ok(lines.length >= 1, 'the first one is logged')
        assert.ok(lines.length <= 3, `${lines.length} lines for ${frames} unmatched answers`)
      })
    })

    test('oneway requests are processed and never answered, even on error or unknown code', TIMEOUT, async () => {
      const clientLog = recordingLogger()
      await withHarness({ client: { logger: clientLog } }, async ({ client, address, seen }) => {
        await client.invokeOneway(address, RemotingCommand.createRequest(ONEWAY_SINK, { n: '1' }))
        await client.invokeOneway(address, RemotingCommand.createRequest(THROWS))
        await client.invokeOneway(address, RemotingCommand.createRequest(9998))
        // A later request/response proves the oneways were read first (same connection, in order).
        await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)
        await sleep(30)
        assert.equal(seen[0]!.isOneway, true)
        assert.equal(seen[0]!.extFields.n, '1')
        assert.deepEqual(clientLog.lines, [], 'no unmatched responses arrived')
      })
    })

    test('concurrent requests answered out of order are matched by opaque', TIMEOUT, async () => {
      await withHarness({}, async ({ client, address }) => {
        const calls = Array.from({ length: 40 }, (_, i) =>
          client.invoke(address, RemotingCommand.createRequest(SLOW, { id: String(i), delayMs: String((40 - i) * 2) }), 5000),
        )
        const responses = await Promise.all(calls)
        responses.forEach((r, i) => assert.equal(r.extFields.id, String(i)))
      })
    })

    test('invokeCallback calls back once with the response or the error', TIMEOUT, async () => {
      await withHarness({}, async ({ client, address, deadAddress }) => {
        const ok = await new Promise<[unknown, RemotingCommand | null]>((resolve) =>
          client.invokeCallback(address, RemotingCommand.createRequest(ECHO), 3000, (e, r) => resolve([e, r])),
        )
        assert.equal(ok[0], null)
        assert.equal(ok[1]!.code, ResponseCode.SUCCESS)
        const bad = await new Promise<[TransportError | null, RemotingCommand | null]>((resolve) =>
          client.invokeCallback(deadAddress, RemotingCommand.createRequest(ECHO), 3000, (e, r) => resolve([e, r])),
        )
        assert.equal(bad[0]?.code, 'CONNECT_FAILED')
        assert.equal(bad[1], null)
      })
    })

    test('timeout rejects with TIMEOUT, cleans up, and a late response is dropped', TIMEOUT, async () => {
      const clientLog = recordingLogger()
      await withHarness({ client: { logger: clientLog } }, async ({ client, address }) => {
        const err = await rejectsWith(client.invoke(address, RemotingCommand.createRequest(NEVER), 50), 'TIMEOUT')
        assert.equal(err.retriable, true)
        const late = RemotingCommand.createRequest(SLOW, { delayMs: '150' })
        await rejectsWith(client.invoke(address, late, 30), 'TIMEOUT')
        const channel = (await client.channel(address)) as Channel & { pendingCount?: number }
        if (channel.pendingCount !== undefined) assert.equal(channel.pendingCount, 0)
        await sleep(250)
        assert.ok(clientLog.lines.some((l) => l.includes('without a waiting request')), 'late response logged')
        const ok = await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)
        assert.equal(ok.code, ResponseCode.SUCCESS)
      })
    })

    test('beyond maxInFlightPerConnection the server answers SYSTEM_BUSY and recovers', TIMEOUT, async () => {
      await withHarness({ server: { maxInFlightPerConnection: 3 } }, async ({ client, address }) => {
        const slow = Array.from({ length: 3 }, () => client.invoke(address, RemotingCommand.createRequest(SLOW, { delayMs: '200' }), 5000))
        await sleep(50)
        const busy = await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)
        assert.equal(busy.code, ResponseCode.SYSTEM_BUSY)
        for (const r of await Promise.all(slow)) assert.equal(r.code, ResponseCode.SUCCESS)
        const ok = await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)
        assert.equal(ok.code, ResponseCode.SUCCESS)
      })
    })

    test('a processor may answer later through channel.respond', TIMEOUT, async () => {
      await withHarness({}, async ({ client, address }) => {
        const r = await client.invoke(address, RemotingCommand.createRequest(DEFERRED), 3000)
        assert.equal(r.remark, 'later')
      })
    })

    test('the server can invoke a connected client, and both sides see connect and close', TIMEOUT, async () => {
      await withHarness({}, async ({ server, client, address }) => {
        const serverConnects: Channel[] = []
        const serverCloses: string[] = []
        const clientCloses: string[] = []
        server.on('connect', (c) => serverConnects.push(c))
        server.on('close', (_c, reason) => serverCloses.push(reason))
        client.on('close', (_c, reason) => clientCloses.push(reason))
        client.registerProcessor(ECHO, (request) => RemotingCommand.createResponse(ResponseCode.SUCCESS, `client got ${request.extFields.q}`))
        await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)
        await until(() => serverConnects.length === 1)
        const channel = serverConnects[0]!
        assert.equal(server.channels().length, 1)
        const r = await server.invoke(channel, RemotingCommand.createRequest(ECHO, { q: 'ping' }), 3000)
        assert.equal(r.remark, 'client got ping')
        await server.invokeOneway(channel, RemotingCommand.createRequest(ECHO, { q: 'oneway' }))
        channel.close('kicked')
        await until(() => clientCloses.length === 1 && serverCloses.length === 1)
        assert.deepEqual(serverCloses, ['kicked'])
        // The pool reconnects on demand.
        const again = await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)
        assert.equal(again.code, ResponseCode.SUCCESS)
        await until(() => serverConnects.length === 2)
      })
    })

    test('the client keeps one pooled connection per address', TIMEOUT, async () => {
      await withHarness({}, async ({ server, client, address }) => {
        await Promise.all(Array.from({ length: 10 }, () => client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)))
        await until(() => server.channels().length === 1)
        assert.equal(await client.channel(address), await client.channel(address))
      })
    })

    test('commands are copied: mutating after send does not change what the server saw', TIMEOUT, async () => {
      await withHarness({}, async ({ client, address, seen }) => {
        const body = Buffer.from('original')
        const request = RemotingCommand.createRequest(ECHO, { k: 'v' }, body)
        const pending = client.invoke(address, request, 3000)
        body.write('mutated!')
        request.extFields.k = 'changed'
        const response = await pending
        assert.equal(seen[0]!.body.toString(), 'original')
        assert.equal(seen[0]!.extFields.k, 'v')
        assert.notEqual(response.body, seen[0]!.body)
      })
    })

    test('an oversize request fails with FRAME_TOO_LARGE before it is sent', TIMEOUT, async () => {
      await withHarness({ client: { maxFrameBytes: 4096 } }, async ({ client, address }) => {
        const err = await rejectsWith(client.invoke(address, RemotingCommand.createRequest(ECHO, {}, Buffer.alloc(5000)), 3000), 'FRAME_TOO_LARGE')
        assert.equal(err.retriable, false)
        const ok = await client.invoke(address, RemotingCommand.createRequest(ECHO, {}, Buffer.alloc(100)), 3000)
        assert.equal(ok.code, ResponseCode.SUCCESS)
      })
    })

    test('a frame over the server limit closes that connection; the client sees CONNECTION_LOST', TIMEOUT, async () => {
      await withHarness({ server: { maxFrameBytes: 4096 } }, async ({ client, address }) => {
        await rejectsWith(client.invoke(address, RemotingCommand.createRequest(ECHO, {}, Buffer.alloc(8000)), 3000), 'CONNECTION_LOST')
        const ok = await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)
        assert.equal(ok.code, ResponseCode.SUCCESS)
      })
    })

    test('an idle connection emits idle and is closed', TIMEOUT, async () => {
      await withHarness({ server: { idleMs: 100 } }, async ({ server, client, address }) => {
        // Idle timers do not hold the process open; this interval does, for the test.
        const keepAlive = setInterval(() => {}, 20)
        try {
          const idle = once(server, 'idle')
          await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)
          await idle
          await until(() => server.channels().length === 0)
        } finally {
          clearInterval(keepAlive)
        }
      })
    })

    test('traffic keeps a connection from going idle; once quiet it goes idle after about idleMs', TIMEOUT, async () => {
      await withHarness({ server: { idleMs: 100 } }, async ({ server, client, address }) => {
        let idleAt = 0
        server.on('idle', () => (idleAt = Date.now()))
        // Requests every 30 ms for 400 ms: never 100 ms without traffic.
        for (let i = 0; i < 13; i++) {
          await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)
          await sleep(30)
        }
        assert.equal(idleAt, 0, 'went idle while in use')
        const quietFrom = Date.now()
        await until(() => idleAt !== 0, 3000)
        const quietMs = idleAt - quietFrom
        // The last response arrived up to 30 ms before quietFrom; allow timer slack above.
        assert.ok(quietMs >= 100 - 30 - 5, `idle after only ${quietMs} ms`)
        assert.ok(quietMs < 250, `idle only after ${quietMs} ms`)
      })
    })

    test('connecting to a dead address fails with retriable CONNECT_FAILED', TIMEOUT, async () => {
      await withHarness({}, async ({ client, deadAddress }) => {
        const err = await rejectsWith(client.invoke(deadAddress, RemotingCommand.createRequest(ECHO), 3000), 'CONNECT_FAILED')
        assert.equal(err.retriable, true)
      })
    })

    test('graceful stop lets requests in progress finish, refuses new work, and is idempotent', TIMEOUT, async () => {
      await withHarness({}, async ({ server, client, address }) => {
        await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000)
        const inProgress = client.invoke(address, RemotingCommand.createRequest(SLOW, { delayMs: '150' }), 5000)
        await sleep(30)
        const stopping = server.stop({ timeoutMs: 3000 })
        assert.equal(server.status, 'stopping')
        const during = await client.invoke(address, RemotingCommand.createRequest(ECHO), 3000).catch((e: unknown) => e)
        if (during instanceof RemotingCommand) assert.equal(during.code, ResponseCode.SYSTEM_BUSY)
        else assert.ok(during instanceof TransportError, String(during))
        const r = await inProgress
        assert.equal(r.code, ResponseCode.SUCCESS)
        await Promise.all([stopping, server.stop()])
        assert.equal(server.status, 'stopped')
        await assert.rejects(client.invoke(address, RemotingCommand.createRequest(ECHO), 1000), (e: unknown) => e instanceof TransportError && e.retriable)
        await assert.rejects(server.start(), (e: unknown) => e instanceof TransportError && e.code === 'CLOSED')
      })
    })

    test('graceful stop gives up on stuck requests after its timeout', TIMEOUT, async () => {
      await withHarness({}, async ({ server, client, address }) => {
        const stuck = rejectsWith(client.invoke(address, RemotingCommand.createRequest(NEVER), 10_000), 'CONNECTION_LOST')
        // Stop only once the request is being processed: on a loaded machine connecting can take a while.
        await until(() => server.channels().some((c) => c.inFlight === 1))
        const begin = Date.now()
        await server.stop({ timeoutMs: 100 })
        assert.ok(Date.now() - begin < 2000)
        await stuck
      })
    })

    test('closing the client fails outstanding requests with CLOSED; calls after close fail with CLOSED', TIMEOUT, async () => {
      await withHarness({}, async ({ client, address }) => {
        const stuck = rejectsWith(client.invoke(address, RemotingCommand.createRequest(NEVER), 10_000), 'CLOSED')
        await sleep(30)
        const closing = client.close()
        assert.notEqual(client.status, 'started')
        await rejectsWith(client.invoke(address, RemotingCommand.createRequest(ECHO), 1000), 'CLOSED')
        await closing
        await stuck
        assert.equal(client.status, 'stopped')
        await rejectsWith(client.invoke(address, RemotingCommand.createRequest(ECHO), 1000), 'CLOSED')
        await rejectsWith(client.invokeOneway(address, RemotingCommand.createRequest(ECHO)), 'CLOSED')
        await rejectsWith(client.channel(address), 'CLOSED')
        await client.close()
      })
    })
  })
}
