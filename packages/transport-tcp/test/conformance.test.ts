// Runs the shared transport conformance suite over real loopback sockets.
import * as net from 'node:net'
import { remotingConformanceSuite } from '@mqts/transport/internal'
import { TcpRemotingClient, TcpRemotingServer } from '../src/index.js'

/** A port nothing listens on: bind, note it, release. */
async function deadPort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

remotingConformanceSuite('tcp', async ({ server, client }) => {
  const s = new TcpRemotingServer({ host: '127.0.0.1', port: 0, ...server })
  await s.start()
  return {
    server: s,
    client: new TcpRemotingClient(client),
    address: `127.0.0.1:${s.address().port}`,
    deadAddress: `127.0.0.1:${await deadPort()}`,
  }
})
