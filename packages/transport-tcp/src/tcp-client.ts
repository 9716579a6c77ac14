/** TcpRemotingClient: one pooled TCP connection per `host:port`, opened on demand. */
import * as net from 'node:net'
import { AbstractRemotingClient, TransportError, type ClientOptions, type RemotingConnection } from '@mqts/transport/internal'
import { DEFAULT_MAX_BUFFERED_WRITE_BYTES, TcpConnection } from './tcp-connection.js'

export interface TcpClientOptions extends ClientOptions {
  /** Bytes buffered per connection before senders wait. Default 1 MiB. */
  maxBufferedWriteBytes?: number
}

/** Splits `host:port` or `[v6]:port`. */
export function parseAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':')
  if (colon <= 0) throw new TransportError('BAD_ADDRESS', `address must be host:port, got ${JSON.stringify(address)}`)
  let host = address.slice(0, colon)
  const portText = address.slice(colon + 1)
  const port = Number(portText)
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw new TransportError('BAD_ADDRESS', `bad port in ${JSON.stringify(address)}`)
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1)
  return { host, port }
}

export class TcpRemotingClient extends AbstractRemotingClient {
  private readonly maxBufferedWriteBytes: number

  constructor(options: TcpClientOptions = {}) {
    super(options)
    this.maxBufferedWriteBytes = options.maxBufferedWriteBytes ?? DEFAULT_MAX_BUFFERED_WRITE_BYTES
  }

  protected openConnection(address: string, timeoutMs: number): Promise<RemotingConnection> {
    let target: { host: string; port: number }
    try {
      target = parseAddress(address)
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: target.host, port: target.port, noDelay: true })
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new TransportError('CONNECT_FAILED', `connecting to ${address} timed out after ${timeoutMs} ms`, { details: { address } }))
      }, timeoutMs)
      const onError = (err: Error) => {
        clearTimeout(timer)
        socket.destroy()
        reject(new TransportError('CONNECT_FAILED', `cannot connect to ${address}: ${err.message}`, { cause: err, details: { address } }))
      }
      socket.once('error', onError)
      socket.once('connect', () => {
        clearTimeout(timer)
        socket.off('error', onError)
        resolve(new TcpConnection(this, socket, this.maxBufferedWriteBytes))
      })
    })
  }
}
