/**
 * Server and client logic every transport shares: processor registration, lifecycle, events,
 * the client's connection pool and the server's graceful stop. Transports implement listening
 * and connecting.
 */
import { EventEmitter } from 'node:events'
import type { RemotingCommand } from './command.js'
import { ProcessorTable, RemotingConnection, resolveConnectionOptions, type ConnectionOwner, type ResolvedConnectionOptions } from './connection.js'
import { TransportError } from './errors.js'
import type {
  Channel,
  ConnectionOptions,
  InvokeCallback,
  LifecycleStatus,
  RemotingAddress,
  RemotingClient,
  RemotingEvents,
  RemotingServer,
  RequestProcessor,
} from './remoting.js'

export const DEFAULT_STOP_TIMEOUT_MS = 5_000
export const DEFAULT_CONNECT_TIMEOUT_MS = 3_000

abstract class Endpoint extends EventEmitter<RemotingEvents> implements ConnectionOwner {
  readonly processors = new ProcessorTable()
  readonly options: ResolvedConnectionOptions
  protected readonly connections = new Set<RemotingConnection>()

  constructor(options: ConnectionOptions) {
    super()
    this.options = resolveConnectionOptions(options)
  }

  abstract acceptingRequests(): boolean

  registerProcessor(code: number, processor: RequestProcessor): void {
    this.processors.register(code, processor)
  }

  registerDefaultProcessor(processor: RequestProcessor): void {
    this.processors.defaultProcessor = processor
  }

  channels(): Channel[] {
    return [...this.connections]
  }

  connectionClosed(connection: RemotingConnection, reason: string): void {
    if (!this.connections.delete(connection)) return
    this.forget(connection)
    this.emit('close', connection, reason)
  }

  connectionIdle(connection: RemotingConnection): void {
    this.emit('idle', connection)
    connection.shutdown('idle', 'CONNECTION_LOST')
  }

  connectionError(connection: RemotingConnection | undefined, error: Error): void {
    // An 'error' event without a listener would throw and take the process down.
    if (this.listenerCount('error') > 0) this.emit('error', error, connection)
    else this.options.logger.warn(`connection error: ${error.message}`, { remote: connection?.remoteAddress, code: (error as TransportError).code })
  }

  /** Registers a new connection and announces it. */
  protected adopt(connection: RemotingConnection): void {
    this.connections.add(connection)
    this.emit('connect', connection)
  }

  protected forget(_connection: RemotingConnection): void {}
}

export abstract class AbstractRemotingServer extends Endpoint implements RemotingServer {
  private lifecycle: LifecycleStatus = 'new'
  private startPromise: Promise<void> | undefined
  private stopPromise: Promise<void> | undefined

  /** Starts listening. */
  protected abstract listen(): Promise<void>
  /** Stops accepting connections; resolves once the listener is released. */
  protected abstract closeListener(): Promise<void>
  abstract address(): RemotingAddress

  get status(): LifecycleStatus {
    return this.lifecycle
  }

  acceptingRequests(): boolean {
    return this.lifecycle === 'started'
  }

  start(): Promise<void> {
    if (this.lifecycle === 'stopping' || this.lifecycle === 'stopped') return Promise.reject(new TransportError('CLOSED', 'server is stopped'))
    this.startPromise ??= (async () => {
      this.lifecycle = 'starting'
      try {
        await this.listen()
      } catch (err) {
        this.lifecycle = 'stopped'
        throw err
      }
      // stop() may have run while listening.
      if (this.lifecycle === 'starting') this.lifecycle = 'started'
    })()
    return this.startPromise
  }

  stop(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.lifecycle === 'new') {
      this.lifecycle = 'stopped'
      return Promise.resolve()
    }
    this.stopPromise ??= this.stopGracefully(options.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS)
    return this.stopPromise
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop()
  }

  invoke(channel: Channel, request: RemotingCommand, timeoutMs: number): Promise<RemotingCommand> {
    if (this.lifecycle === 'stopped') return Promise.reject(new TransportError('CLOSED', 'server is stopped'))
    return channel.invoke(request, timeoutMs)
  }

  invokeOneway(channel: Channel, request: RemotingCommand): Promise<void> {
    if (this.lifecycle === 'stopped') return Promise.reject(new TransportError('CLOSED', 'server is stopped'))
    return channel.invokeOneway(request)
  }

  /** For subclasses: a connection was accepted. During stop it is closed at once. */
  protected accepted(connection: RemotingConnection): void {
    if (this.lifecycle !== 'started' && this.lifecycle !== 'starting') {
      connection.shutdown('server stopping', 'CLOSED')
      return
    }
    this.adopt(connection)
  }

  private async stopGracefully(timeoutMs: number): Promise<void> {
    const starting = this.startPromise
    // Set before any await so requests arriving from now on are refused.
    this.lifecycle = 'stopping'
    if (starting) await starting.catch(() => {})
    const listenerClosed = this.closeListener()
    const drained = Promise.all([...this.connections].map((c) => c.whenDrained()))
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs)
    })
    await Promise.race([drained, expired])
    clearTimeout(timer)
    for (const c of [...this.connections]) c.shutdown('server stopped', 'CLOSED')
    await listenerClosed
    this.lifecycle = 'stopped'
  }
}

export interface ClientOptions extends ConnectionOptions {
  /** Bound on opening one connection; default 3 s. */
  connectTimeoutMs?: number
}

export abstract class AbstractRemotingClient extends Endpoint implements RemotingClient {
  private lifecycle: LifecycleStatus = 'started'
  private readonly pool = new Map<string, RemotingConnection>()
  private readonly connecting = new Map<string, Promise<RemotingConnection>>()
  protected readonly connectTimeoutMs: number

  constructor(options: ClientOptions = {}) {
    super(options)
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
  }

  /** Opens a connection to `address`; rejects with CONNECT_FAILED or BAD_ADDRESS. */
  protected abstract openConnection(address: string, timeoutMs: number): Promise<RemotingConnection>

  get status(): LifecycleStatus {
    return this.lifecycle
  }

  acceptingRequests(): boolean {
    return this.lifecycle === 'started'
  }

  channel(address: string): Promise<RemotingConnection> {
    if (this.lifecycle !== 'started') return Promise.reject(new TransportError('CLOSED', 'client is closed'))
    const existing = this.pool.get(address)
    if (existing && !existing.closed) return Promise.resolve(existing)
    let opening = this.connecting.get(address)
    if (!opening) {
      opening = this.openConnection(address, this.connectTimeoutMs).then((connection) => {
        this.connecting.delete(address)
        if (this.lifecycle !== 'started') {
          connection.shutdown('client closed', 'CLOSED')
          throw new TransportError('CLOSED', 'client is closed')
        }
        if (connection.closed) throw new TransportError('CONNECT_FAILED', `connection to ${address} closed while opening`, { details: { address } })
        this.pool.set(address, connection)
        this.adopt(connection)
        return connection
      }, (err) => {
        this.connecting.delete(address)
        throw err
      })
      this.connecting.set(address, opening)
    }
    return opening
  }

  invoke(address: string, request: RemotingCommand, timeoutMs: number): Promise<RemotingCommand> {
    const existing = this.pool.get(address)
    if (existing && !existing.closed && this.lifecycle === 'started') return existing.invoke(request, timeoutMs)
    const begin = Date.now()
    // The caller may reuse its objects once invoke returns; snapshot them while connecting.
    const snapshot = request.clone()
    return this.channel(address).then((connection) => {
      const remainingMs = timeoutMs - (Date.now() - begin)
      if (remainingMs <= 0) throw new TransportError('TIMEOUT', `connecting to ${address} used up the ${timeoutMs} ms timeout`, { details: { address, timeoutMs } })
      return connection.invoke(snapshot, remainingMs)
    })
  }

  invokeOneway(address: string, request: RemotingCommand): Promise<void> {
    const existing = this.pool.get(address)
    if (existing && !existing.closed && this.lifecycle === 'started') return existing.invokeOneway(request)
    const snapshot = request.clone()
    return this.channel(address).then((connection) => connection.invokeOneway(snapshot))
  }

  invokeCallback(address: string, request: RemotingCommand, timeoutMs: number, callback: InvokeCallback): void {
    this.invoke(address, request, timeoutMs).then(
      (response) => callback(null, response),
      (err) =>
        callback(err instanceof TransportError ? err : new TransportError('SEND_FAILED', String((err as Error)?.message ?? err), { cause: err }), null),
    )
  }

  async close(): Promise<void> {
    if (this.lifecycle === 'stopped') return
    this.lifecycle = 'stopping'
    await Promise.allSettled([...this.connecting.values()])
    for (const c of [...this.connections]) c.shutdown('client closed', 'CLOSED')
    this.lifecycle = 'stopped'
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  protected override forget(connection: RemotingConnection): void {
    for (const [address, c] of this.pool) if (c === connection) this.pool.delete(address)
  }
}
