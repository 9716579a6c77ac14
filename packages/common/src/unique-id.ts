/**
 * Who this host is on the wire: its first IPv4 address (RocketMQ's clients and brokers name
 * themselves by it), and unique message ids as RocketMQ's MessageClientIDSetter makes them (the
 * UNIQ_KEY property), which clients set and brokers add to a message that came without one.
 */
import { networkInterfaces } from 'node:os'

/** The first non-internal IPv4 address, or 127.0.0.1. */
export function firstIPv4(): string {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  return '127.0.0.1'
}

/**
 * Unique message ids as RocketMQ's MessageClientIDSetter makes them: 16 bytes in uppercase hex,
 * | ip (4) | pid (2) | a per-process random int (4; Java: the class loader's hash) |
 * | ms since the start of this month, local time (4) | counter (2) |.
 */
export class UniqueIdGenerator {
  readonly #prefix: string
  #monthStart = 0
  #nextMonthStart = 0
  #counter: number

  constructor(ip: string = firstIPv4(), random: () => number = Math.random) {
    const fixed = Buffer.alloc(10)
    const parts = ip.split('.').map(Number)
    if (parts.length === 4 && parts.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)) Buffer.from(parts).copy(fixed, 0)
    fixed.writeUInt16BE(process.pid & 0xffff, 4)
    fixed.writeInt32BE(Math.floor(random() * 0x7fffffff), 6)
    this.#prefix = fixed.toString('hex').toUpperCase()
    this.#counter = Math.floor(random() * 0xffff)
  }

  next(now = Date.now()): string {
    if (now >= this.#nextMonthStart) this.#setMonth(now)
    const tail = Buffer.alloc(6)
    tail.writeInt32BE((now - this.#monthStart) | 0, 0)
    tail.writeUInt16BE(this.#counter, 4)
    this.#counter = (this.#counter + 1) & 0xffff
    return this.#prefix + tail.toString('hex').toUpperCase()
  }

  #setMonth(now: number): void {
    const d = new Date(now)
    this.#monthStart = new Date(d.getFullYear(), d.getMonth(), 1).getTime()
    this.#nextMonthStart = new Date(d.getFullYear(), d.getMonth() + 1, 1).getTime()
  }
}
