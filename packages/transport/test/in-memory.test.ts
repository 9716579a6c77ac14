// Runs the shared transport conformance suite against InMemoryTransport, plus what is specific to
// it: addresses, name clashes, and back-pressure once a direction holds its byte bound.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { InMemoryTransport, RemotingCommand, ResponseCode, TransportError, silentLogger } from '../src/index.js'
import { remotingConformanceSuite } from '../src/conformance.js'

remotingConformanceSuite('in-memory', async ({ server, client }) => {
  const transport = new InMemoryTransport()
  const s = transport.createServer(server)
  await s.start()
  return { server: s, client: transport.createClient(client), address: s.address().address, deadAddress: 'mem:nobody-home' }
})

test('in-memory: names are addresses and clash while bound', { timeout: 10_000 }, async () => {
  const transport = new InMemoryTransport()
  const a = transport.createServer({ name: 'broker-a', logger: silentLogger })
  await a.start()
  assert.deepEqual(a.address(), { address: 'mem:broker-a', host: 'mem', port: 0 })
  const clash = transport.createServer({ name: 'broker-a', logger: silentLogger })
  await assert.rejects(clash.start(), (e: unknown) => e instanceof TransportError && e.code === 'BAD_ADDRESS')
  await a.stop()
  const again = transport.createServer({ name: 'broker-a', logger: silentLogger })
  await again.start()
  await again.stop()
})

test('in-memory: a bad address is BAD_ADDRESS, not retriable', { timeout: 10_000 }, async () => {
  const client = new InMemoryTransport().createClient({ logger: silentLogger })
  await assert.rejects(client.invoke('127.0.0.1:1', RemotingCommand.createRequest(1), 100), (e: unknown) => e instanceof TransportError && e.code === 'BAD_ADDRESS' && !e.retriable)
  await client.close()
})

test('in-memory: oneway senders wait once the peer holds highWaterBytes', { timeout: 10_000 }, async () => {
  const transport = new InMemoryTransport()
  const server = transport.createServer({ logger: silentLogger })
  let received = 0
  server.registerProcessor(1, () => {
    received++
  })
  await server.start()
  const client = transport.createClient({ logger: silentLogger, highWaterBytes: 64 * 1024 })
  const address = server.address().address
  await client.channel(address)
  const body = Buffer.alloc(16 * 1024)
  let resolvedSync = 0
  const sends: Promise<void>[] = []
  for (let i = 0; i < 10; i++) {
    let done = false
    const p = client.invokeOneway(address, RemotingCommand.createRequest(1, {}, body)).then(() => {
      done = true
    })
    await Promise.resolve()
    if (done) resolvedSync++
    sends.push(p)
  }
  assert.ok(resolvedSync < 10, 'some sends waited for space')
  await Promise.all(sends)
  const r = await client.invoke(address, RemotingCommand.createRequest(2), 1000)
  assert.equal(r.code, ResponseCode.REQUEST_CODE_NOT_SUPPORTED)
  assert.equal(received, 10)
  await client.close()
  await server.stop()
})
