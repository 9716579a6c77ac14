/** TcpRemotingServer: accepts TCP connections and serves registered processors. */
import * as net from 'node:net'
import { AbstractRemotingServer, TransportError, type ConnectionOptions, type RemotingAddress } from '@mqts/transport/internal'
import { DEFAULT_MAX_BUFFERED_WRITE_BYTES, TcpConnection, formatAddress } from './tcp-connection.js'
import { DEFAULT_READ_ARENA_CONNECTIONS } from './read-arena.js'

export interface TcpServerOptions extends ConnectionOptions {
  /** Default 0.0.0.0. */
  host?: string
  /** 0 picks a free port; see address(). Default 0. */
  port?: number
  /** Bytes buffered per connection before response writers wait. Default 1 MiB. */
  maxBufferedWriteBytes?: number
  backlog?: number
  /**
   * Let connections that send large requests read into an arena of their own (read-arena.ts): a
   * request split by reads is not copied and reads allocate once per 256 KiB. Default true; false
   * reads every connection as Node does by default.
   */
  readArena?: boolean
  /** How many connections may read into arenas at once (256 KiB each). Default 256. */
  readArenaConnections?: number
}

export class TcpRemotingServer extends AbstractRemotingServer {
  private readonly server: net.Server
  private readonly host: string
  private readonly port: number
  private readonly backlog: number | undefined
  private readonly maxBufferedWriteBytes: number
  /** Arenas left for connections (see read-arena.ts); undefined: none. */
  private readonly arenas: { left: number } | undefined

  constructor(options: TcpServerOptions = {}) {
    super(options)
    this.host = options.host ?? '0.0.0.0'
    this.port = options.port ?? 0
    this.backlog = options.backlog
    this.maxBufferedWriteBytes = options.maxBufferedWriteBytes ?? DEFAULT_MAX_BUFFERED_WRITE_BYTES
    this.arenas = options.readArena === false ? undefined : { left: options.readArenaConnections ?? DEFAULT_READ_ARENA_CONNECTIONS }
    this.server = net.createServer((socket) => this.onSocket(socket))
    this.server.on('error', (err) => this.connectionError(undefined, err))
  }

  address(): RemotingAddress {
    const info = this.server.address()
    if (info === null || typeof info === 'string') throw new TransportError('CLOSED', 'server is not listening')
    return { address: formatAddress(info.address, info.port), host: info.address, port: info.port }
  }

  protected listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        this.server.off('listening', onListening)
        reject(new TransportError('CONNECT_FAILED', `cannot listen on ${formatAddress(this.host, this.port)}: ${err.message}`, { cause: err }))
      }
      const onListening = () => {
        this.server.off('error', onError)
        resolve()
      }
      this.server.once('error', onError)
      this.server.once('listening', onListening)
      this.server.listen({ host: this.host, port: this.port, backlog: this.backlog })
    })
  }

  protected closeListener(): Promise<void> {
    if (!this.server.listening) return Promise.resolve()
    // Resolves once every accepted socket is gone; shut-down connections destroy theirs within CLOSE_FLUSH_MS.
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private onSocket(socket: net.Socket): void {
    const connection = new TcpConnection(this, socket, this.maxBufferedWriteBytes, this.arenas, true)
    this.accepted(connection)
  }
}
