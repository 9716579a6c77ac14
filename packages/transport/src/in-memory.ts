/**
 * InMemoryTransport: servers and clients in one process without sockets, addressed `mem:<name>`.
 * Every command still goes through the frame codec, so limits, serialization and copying behave
 * as over TCP and the two sides never share a mutable object. Delivery is asynchronous and in
 * order; each direction buffers at most `highWaterBytes` before senders wait.
 */
import { decodeFrame } from './codec.js'
import { RemotingConnection, type ConnectionOwner } from './connection.js'
import { AbstractRemotingClient, AbstractRemotingServer, type ClientOptions } from './endpoint.js'
import { TransportError } from './errors.js'
import type { ConnectionOptions, RemotingAddress } from './remoting.js'

export const MEM_ADDRESS_PREFIX = 'mem:'
/** Bytes one direction of an in-memory connection holds before senders wait. */
export const DEFAULT_MEM_HIGH_WATER_BYTES = 4 * 1024 * 1024

class MemConnection extends RemotingConnection {
  peer!: MemConnection
  private inbox: Buffer[] = []
  private inboxBytes = 0
  private deliveryScheduled = false
  private spaceWaiters: (() => void)[] = []

  constructor(owner: ConnectionOwner, localAddress: string, remoteAddress: string, private readonly highWaterBytes: number) {
    super(owner, localAddress, remoteAddress)
  }

  protected writeFrame(parts: Buffer[]): void | Promise<void> {
    if (this.closed) throw new TransportError('SEND_FAILED', 'connection closed')
    // Copy so the receiver owns its bytes, as it would after a socket.
    const frame = parts.length === 1 ? Buffer.from(parts[0]!) : Buffer.concat(parts)
    this.touch()
    this.peer.enqueue(frame)
    if (this.peer.inboxBytes > this.highWaterBytes) return new Promise((resolve) => this.peer.spaceWaiters.push(resolve))
  }

  /** What the peer has not taken yet: its inbox, delivered on the next turn of the event loop. */
  override unsentBytes(): number {
    return this.peer.inboxBytes
  }

  protected closeTransport(): void {
    // Frames already handed over still arrive, as a socket's end() flushes; then the peer closes.
    const peer = this.peer
    if (!peer.closed) {
      peer.deliver()
      peer.shutdown('peer closed', 'CONNECTION_LOST')
    }
    this.releaseWaiters()
    peer.releaseWaiters()
  }

  private enqueue(frame: Buffer): void {
    this.inbox.push(frame)
    this.inboxBytes += frame.length
    if (!this.deliveryScheduled) {
      this.deliveryScheduled = true
      setImmediate(() => this.deliver())
    }
  }

  private deliver(): void {
    this.deliveryScheduled = false
    const frames = this.inbox
    this.inbox = []
    this.inboxBytes = 0
    if (frames.length > 0 && !this.closed) this.touch()
    for (const frame of frames) {
      if (this.closed) break
      let cmd
      try {
        cmd = decodeFrame(frame, this.owner.options.maxFrameBytes)
      } catch (err) {
        this.owner.options.logger.warn(`closing in-memory connection: ${(err as Error).message}`, { remote: this.remoteAddress })
        this.shutdown(`bad frame: ${(err as Error).message}`, 'CONNECTION_LOST')
        break
      }
      this.handleCommand(cmd)
    }
    this.releaseWaiters()
  }

  private releaseWaiters(): void {
    const waiters = this.spaceWaiters
    this.spaceWaiters = []
    for (const w of waiters) w()
  }
}

export interface InMemoryServerOptions extends ConnectionOptions {
  /** The server answers at `mem:<name>`; default a fresh unique name. */
  name?: string
  highWaterBytes?: number
}

export class InMemoryRemotingServer extends AbstractRemotingServer {
  readonly name: string
  readonly highWaterBytes: number

  constructor(private readonly transport: InMemoryTransport, options: InMemoryServerOptions = {}) {
    super(options)
    this.name = options.name ?? `server-${++serverCounter}`
    this.highWaterBytes = options.highWaterBytes ?? DEFAULT_MEM_HIGH_WATER_BYTES
  }

  address(): RemotingAddress {
    return { address: MEM_ADDRESS_PREFIX + this.name, host: 'mem', port: 0 }
  }

  protected async listen(): Promise<void> {
    this.transport.bind(this)
  }

  protected async closeListener(): Promise<void> {
    this.transport.unbind(this)
  }

  /** Called by a client: creates the server's end of a new connection. */
  acceptFrom(clientOwner: ConnectionOwner, clientName: string, highWaterBytes: number): RemotingConnection {
    const serverEnd = new MemConnection(this, this.address().address, clientName, this.highWaterBytes)
    const clientEnd = new MemConnection(clientOwner, clientName, this.address().address, highWaterBytes)
    serverEnd.peer = clientEnd
    clientEnd.peer = serverEnd
    this.accepted(serverEnd)
    return clientEnd
  }
}

export interface InMemoryClientOptions extends ClientOptions {
  highWaterBytes?: number
}

let serverCounter = 0
let clientCounter = 0

export class InMemoryRemotingClient extends AbstractRemotingClient {
  private readonly name = `${MEM_ADDRESS_PREFIX}client-${++clientCounter}`
  private readonly highWaterBytes: number

  constructor(private readonly transport: InMemoryTransport, options: InMemoryClientOptions = {}) {
    super(options)
    this.highWaterBytes = options.highWaterBytes ?? DEFAULT_MEM_HIGH_WATER_BYTES
  }

  protected async openConnection(address: string): Promise<RemotingConnection> {
    if (!address.startsWith(MEM_ADDRESS_PREFIX)) throw new TransportError('BAD_ADDRESS', `in-memory address must start with ${MEM_ADDRESS_PREFIX}: ${address}`)
    // Connecting is asynchronous over a socket; keep it so here too.
    await new Promise((resolve) => setImmediate(resolve))
    const server = this.transport.lookup(address)
    if (!server || server.status !== 'started') {
      throw new TransportError('CONNECT_FAILED', `nothing listening at ${address}`, { details: { address } })
    }
    return server.acceptFrom(this, this.name, this.highWaterBytes)
  }
}

/** A namespace of in-memory servers. Clients of one transport reach servers of the same one. */
export class InMemoryTransport {
  /** A process-wide namespace for embedding. */
  static readonly shared = new InMemoryTransport()
  private readonly servers = new Map<string, InMemoryRemotingServer>()

  createServer(options: InMemoryServerOptions = {}): InMemoryRemotingServer {
    return new InMemoryRemotingServer(this, options)
  }

  createClient(options: InMemoryClientOptions = {}): InMemoryRemotingClient {
    return new InMemoryRemotingClient(this, options)
  }

  lookup(address: string): InMemoryRemotingServer | undefined {
    return this.servers.get(address)
  }

  bind(server: InMemoryRemotingServer): void {
    const address = server.address().address
    if (this.servers.has(address)) throw new TransportError('BAD_ADDRESS', `${address} is already bound`, { details: { address } })
    this.servers.set(address, server)
  }

  unbind(server: InMemoryRemotingServer): void {
    const address = server.address().address
    if (this.servers.get(address) === server) this.servers.delete(address)
  }
}
