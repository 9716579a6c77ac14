/**
 * What every transport offers: a server that answers requests by code, a client that sends
 * requests to addresses, and channels (one per connection) usable in both directions.
 */
import type { EventEmitter } from 'node:events'
import type { RemotingCommand, SerializeType } from './command.js'
import type { TransportError } from './errors.js'

/** One connection seen from this side. A server can send requests to a client through it. */
export interface Channel {
  /** Unique within the process. */
  readonly id: string
  readonly localAddress: string
  readonly remoteAddress: string
  readonly closed: boolean
  /** Requests received on this channel whose handler has not finished yet. */
  readonly inFlight: number
  invoke(request: RemotingCommand, timeoutMs: number): Promise<RemotingCommand>
  invokeOneway(request: RemotingCommand): Promise<void>
  /**
   * Sends the response to `request` later, for a handler that returned nothing (long polling).
   * Does nothing for a oneway request.
   */
  respond(request: RemotingCommand, response: RemotingCommand): Promise<void>
  close(reason?: string): void
}

/**
 * Answers a request: the returned command is sent back (opaque, flag and serialization filled
 * in); returning nothing sends nothing now. A throw becomes SYSTEM_ERROR with the message as remark.
 */
export type RequestProcessor = (request: RemotingCommand, channel: Channel) => Promise<RemotingCommand | void> | RemotingCommand | void

/** Events of servers and clients. `error` is only emitted when someone listens; otherwise logged. */
export interface RemotingEvents {
  connect: [channel: Channel]
  close: [channel: Channel, reason: string]
  idle: [channel: Channel]
  error: [error: Error, channel: Channel | undefined]
}

export interface Logger {
  warn(message: string, fields?: Record<string, unknown>): void
  debug?(message: string, fields?: Record<string, unknown>): void
}

export const consoleLogger: Logger = { warn: (message, fields) => console.warn(`[mqts/transport] ${message}`, fields ?? '') }
export const silentLogger: Logger = { warn: () => {} }

export type LifecycleStatus = 'new' | 'starting' | 'started' | 'stopping' | 'stopped'

export interface RemotingAddress {
  /** What a client passes to invoke: `host:port` or `mem:name`. */
  address: string
  host: string
  port: number
}

/** Limits shared by both sides of a connection. Every queue has a bound. */
export interface ConnectionOptions {
  /** Largest frame sent or accepted, length field included; default 16 MiB. */
  maxFrameBytes?: number
  /** Requests (expecting a response) processed at once per connection; beyond it SYSTEM_BUSY. Default 64. */
  maxInFlightPerConnection?: number
  /** Oneway requests processed at once per connection; beyond it they are dropped. Default 256. */
  maxOnewayInFlightPerConnection?: number
  /** Requests this side may have outstanding per connection; beyond it TOO_MANY_REQUESTS. Default 65535. */
  maxPendingPerConnection?: number
  /**
   * A connection without traffic for this long emits `idle` and is closed, at most idleMs / 8 later
   * (it is checked eight times per idleMs); 0 disables. Default 120 s.
   */
  idleMs?: number
  /**
   * Bytes queued on a connection but not yet taken by the peer (the transport's buffers plus
   * frames waiting for room). Past it, invoke and invokeOneway fail at once with
   * TOO_MANY_REQUESTS, and a connection whose answers must wait stops reading requests until
   * half of it is written. Default 4 MiB.
   */
  maxUnsentBytesPerConnection?: number
  /**
   * A connection that stopped reading because its peer does not take its answers is closed once
   * it stays that way this long; 0 never closes it. Default 30 s.
   */
  unsentStallCloseMs?: number
  /** Header serialization for requests that name none. Default JSON. */
  serializeType?: SerializeType
  logger?: Logger
}

export interface RemotingService extends EventEmitter<RemotingEvents> {
  registerProcessor(code: number, processor: RequestProcessor): void
  /** Used for codes without a processor; without it they get REQUEST_CODE_NOT_SUPPORTED. */
  registerDefaultProcessor(processor: RequestProcessor): void
}

export interface RemotingServer extends RemotingService {
  readonly status: LifecycleStatus
  start(): Promise<void>
  /** Stops accepting, lets requests in progress finish for up to `timeoutMs`, then closes every connection. */
  stop(options?: { timeoutMs?: number }): Promise<void>
  address(): RemotingAddress
  channels(): Channel[]
  invoke(channel: Channel, request: RemotingCommand, timeoutMs: number): Promise<RemotingCommand>
  invokeOneway(channel: Channel, request: RemotingCommand): Promise<void>
}

export type InvokeCallback = (error: TransportError | null, response: RemotingCommand | null) => void

export interface RemotingClient extends RemotingService {
  readonly status: LifecycleStatus
  /** Sends `request` and resolves with the response; rejects with a TransportError. */
  invoke(address: string, request: RemotingCommand, timeoutMs: number): Promise<RemotingCommand>
  /** Resolves once the request is handed to the connection; no response is expected. */
  invokeOneway(address: string, request: RemotingCommand): Promise<void>
  /** Calls `callback` exactly once with the response or the error. */
  invokeCallback(address: string, request: RemotingCommand, timeoutMs: number, callback: InvokeCallback): void
  /** The pooled channel to `address`, connecting if needed. */
  channel(address: string): Promise<Channel>
  /** Closes every connection; outstanding requests fail with CLOSED. Idempotent. */
  close(): Promise<void>
}

export const DEFAULT_CONNECTION_LIMITS = {
  maxInFlightPerConnection: 64,
  maxOnewayInFlightPerConnection: 256,
  maxPendingPerConnection: 65535,
  idleMs: 120_000,
  maxUnsentBytesPerConnection: 4 * 1024 * 1024,
  unsentStallCloseMs: 30_000,
} as const
