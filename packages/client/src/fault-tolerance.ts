/**
 * Latency fault tolerance (RocketMQ's LatencyFaultToleranceImpl and MQFaultStrategy): a broker
 * whose send took long, or failed, is not chosen for a while. The longer the latency, the longer
 * the pause; a failure counts as the worst latency.
 */

/** Latency thresholds (ms) and how long a broker past each is avoided (ms): RocketMQ's tables. */
export const LATENCY_MAX_MS = [50, 100, 550, 1000, 2000, 3000, 15000] as const
export const NOT_AVAILABLE_MS = [0, 0, 30_000, 60_000, 120_000, 180_000, 600_000] as const
/** The latency a failed send counts as (MQFaultStrategy's isolation: 30 s, the last row). */
export const ISOLATION_LATENCY_MS = 30_000

export interface FaultToleranceOptions {
  latencyMaxMs?: readonly number[]
  notAvailableMs?: readonly number[]
  now?: () => number
}

interface FaultItem {
  latencyMs: number
  availableFrom: number
}

export class LatencyFaultTolerance {
  readonly #items = new Map<string, FaultItem>()
  readonly #latencyMax: readonly number[]
  readonly #notAvailable: readonly number[]
  readonly #now: () => number

  constructor(options: FaultToleranceOptions = {}) {
    this.#latencyMax = options.latencyMaxMs ?? LATENCY_MAX_MS
    this.#notAvailable = options.notAvailableMs ?? NOT_AVAILABLE_MS
    this.#now = options.now ?? Date.now
  }

  /** How long a broker is avoided after a send of `latencyMs`. */
  notAvailableFor(latencyMs: number): number {
    for (let i = this.#latencyMax.length - 1; i >= 0; i--) if (latencyMs >= this.#latencyMax[i]!) return this.#notAvailable[i]!
    return 0
  }

  /** Records a send to `brokerName`: its latency, or a failure (`isolation`). */
  update(brokerName: string, latencyMs: number, isolation = false): void {
    const latency = isolation ? ISOLATION_LATENCY_MS : latencyMs
    this.#items.set(brokerName, { latencyMs: latency, availableFrom: this.#now() + this.notAvailableFor(latency) })
  }

  isAvailable(brokerName: string): boolean {
    const item = this.#items.get(brokerName)
    return item === undefined || this.#now() >= item.availableFrom
  }

  /** Forgets a broker's record (it answered well again). */
  remove(brokerName: string): void {
    this.#items.delete(brokerName)
  }

  /** Of the avoided brokers among `names`, the one that becomes available first (the least bad). */
  leastBad(names: Iterable<string>): string | undefined {
    let best: string | undefined
    let bestAt = Infinity
    for (const n of names) {
      const at = this.#items.get(n)?.availableFrom ?? 0
      if (at < bestAt) {
        best = n
        bestAt = at
      }
    }
    return best
  }
}
