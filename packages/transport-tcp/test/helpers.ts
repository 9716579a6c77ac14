import * as net from 'node:net'
import { FrameDecoder, silentLogger, type Logger, type RemotingCommand } from '@mqts/transport/internal'

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  return { lines, warn: (m) => lines.push(m) }
}

export const quiet = silentLogger

/** A raw socket to `port` that decodes whatever frames come back. */
export async function rawConnect(port: number): Promise<{ socket: net.Socket; received: RemotingCommand[]; closed: Promise<void> }> {
  const socket = net.connect({ host: '127.0.0.1', port, noDelay: true })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const received: RemotingCommand[] = []
  const decoder = new FrameDecoder()
  let broken = false
  socket.on('data', (chunk: Buffer) => {
    if (broken) return
    try {
      decoder.push(chunk, (cmd) => received.push(cmd))
    } catch {
      broken = true
    }
  })
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return { socket, received, closed }
}

export async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(5)
  }
}

/** A server on a free loopback port that accepts connections and never reads from them. */
export async function stalledServer(): Promise<{ address: string; sockets: net.Socket[]; close: () => Promise<void> }> {
  const sockets: net.Socket[] = []
  const server = net.createServer((s) => {
    s.pause()
    sockets.push(s)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`
  const close = async (): Promise<void> => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return { address, sockets, close }
}
