/**
 * Which nameserver to ask, as RocketMQ's NettyRemotingClient chooses: the first one at random
 * (a random number modulo the list's length), kept while it answers; when it fails, the next one
 * of the list, round-robin.
 */
import { ClientError } from './errors.js'

export class NamesrvSelector {
  readonly addresses: readonly string[]
  #index: number

  /** `random` returns [0, 1), like Math.random (tests pass their own). */
  constructor(addresses: readonly string[], random: () => number = Math.random) {
    if (addresses.length === 0) throw new ClientError('INVALID_OPTION', 'namesrv needs at least one "host:port", got an empty list')
    this.addresses = addresses
    this.#index = Math.floor(random() * 0x7fffffff) % addresses.length
  }

  /** The nameserver in use. */
  get current(): string {
    return this.addresses[this.#index]!
  }

  /** `address` failed: move on to the next one, unless another caller already did. */
  failed(address: string): void {
    if (this.current === address) this.#index = (this.#index + 1) % this.addresses.length
  }

  /** Every nameserver once, starting with the current one: the order a request tries them in. */
  order(): string[] {
    const n = this.addresses.length
    return Array.from({ length: n }, (_, i) => this.addresses[(this.#index + i) % n]!)
  }
}

/** A nameserver list as RocketMQ writes it ("a:9876;b:9876") or as an array (`mem:name` for the in-memory transport). */
export function parseNamesrvList(value: string | readonly string[]): string[] {
  if (typeof value !== 'string' && !(Array.isArray(value) && value.every((a) => typeof a === 'string'))) {
    throw new ClientError('INVALID_OPTION', `namesrv is "host:port;host:port" or an array of "host:port", got ${JSON.stringify(value) ?? typeof value}`)
  }
  const list = (typeof value === 'string' ? value.split(/[;,]/) : [...value]).map((a) => a.trim()).filter((a) => a.length > 0)
  for (const a of list) {
    if (!/^(.+:\d{1,5}|mem:.+)$/.test(a)) throw new ClientError('INVALID_OPTION', `a nameserver address is "host:port", got ${JSON.stringify(a)}`)
  }
  if (list.length === 0) throw new ClientError('INVALID_OPTION', `namesrv needs at least one "host:port", got ${JSON.stringify(value)}`)
  return list
}
