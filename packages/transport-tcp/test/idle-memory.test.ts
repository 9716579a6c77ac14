// Idle connections must cost a server little memory of any kind. Each accepted connection that
// holds a 256 KiB read buffer charges it to the process (arrayBuffers, external memory, address
// space and, with strict overcommit, commit charge) even when it never sends a byte: under an
// address-space limit a few thousand idle connections, RSS far below it, abort the process in V8's
// out-of-memory handler, and connection churn costs about 1.7 times the CPU (a major GC every few
// hundred connections). Reading as Node does allocates nothing for a connection that waits.
import assert from 'node:assert/strict'
import * as net from 'node:net'
import { test } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { RemotingCommand, ResponseCode, encodeFrame } from '@mqts/transport/internal'
import { TcpRemotingServer } from '../src/index.js'
import { quiet, sleep, until } from './helpers.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const CONNECTIONS = 300
/** What Node's default reading may hold for a connection between reads: at most one 64 KiB read. */
const MAX_IDLE_BYTES_PER_CONNECTION = 64 * 1024

async function arrayBuffersAfterGc(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc()
    await sleep(20)
  }
  return process.memoryUsage().arrayBuffers
}

test('idle connections, silent or after an answered request, hold no 256 KiB read buffer each', { timeout: 60_000 }, async () => {
  const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: quiet })
  server.registerProcessor(1, () => RemotingCommand.createResponse(ResponseCode.SUCCESS))
  await server.start()
  const sockets: net.Socket[] = []
  try {
    const before = await arrayBuffersAfterGc()
    for (let i = 0; i < CONNECTIONS; i++) {
      const socket = net.connect({ host: '127.0.0.1', port: server.address().port })
      socket.on('error', () => {})
      sockets.push(socket)
    }
    await until(() => server.channels().length === CONNECTIONS, 20_000)
    const silent = (await arrayBuffersAfterGc()) - before
    assert.ok(silent < CONNECTIONS * MAX_IDLE_BYTES_PER_CONNECTION, `${CONNECTIONS} connections that sent nothing hold ${(silent / CONNECTIONS / 1024).toFixed(0)} KiB each`)

    let answered = 0
    const request = encodeFrame(RemotingCommand.createRequest(1))
    for (const socket of sockets) {
      socket.once('data', () => answered++)
      socket.write(request)
    }
    await until(() => answered === CONNECTIONS, 20_000)
    const afterRequest = (await arrayBuffersAfterGc()) - before
    assert.ok(afterRequest < CONNECTIONS * MAX_IDLE_BYTES_PER_CONNECTION, `${CONNECTIONS} connections idle after one answered request hold ${(afterRequest / CONNECTIONS / 1024).toFixed(0)} KiB each`)
  } finally {
    for (const socket of sockets) socket.destroy()
    await server.stop()
  }
})
