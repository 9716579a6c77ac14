/**
 * The messages pulled from one queue and not yet consumed (RocketMQ's ProcessQueue): kept by
 * queue offset so the offset to commit is the lowest one still held (everything before it is
 * done), and counted in messages and bytes for flow control.
 */
import type { MessageExt } from './message.js'
import type { MessageQueue } from './route.js'

export class ProcessQueue {
  readonly #messages = new Map<number, MessageExt>()
  #bytes = 0
  /** Highest queue offset ever put, -1 before the first. */
  #maxOffset = -1
  /** Set when the queue is no longer this consumer's (rebalance, close): its pull loop stops. */
  dropped = false
  /** Orderly clustering: the broker's lock is held (renewed every lockRenewIntervalMs). */
  locked = false
  /** When the broker last granted (or renewed) the lock. */
  lockedAt = 0
  /** When this consumer last asked for the lock (relocking is paced). */
  lockTriedAt = 0
  /** Orderly: the queue's consume loop runs. */
  consuming = false
  readonly abort = new AbortController()
  /** Handlers running for this queue. */
  inFlight = 0

  constructor(readonly queue: MessageQueue) {}

  /**
   * Whether the lock may be used to consume: granted, and renewed within `maxLiveMs`. A lock
   * whose renewals fail (broker unreachable, refusing) may have expired on the broker, which
   * then gives the queue to another member: consuming on would break the order (ProcessQueue's
   * isLockExpired).
   */
  holdsLock(now: number, maxLiveMs: number): boolean {
    return this.locked && now - this.lockedAt <= maxLiveMs
  }

  get count(): number {
    return this.#messages.size
  }

  get bytes(): number {
    return this.#bytes
  }

  put(messages: readonly MessageExt[]): void {
    for (const m of messages) {
      if (this.#messages.has(m.queueOffset)) continue
      this.#messages.set(m.queueOffset, m)
      this.#bytes += m.body.length
      if (m.queueOffset > this.#maxOffset) this.#maxOffset = m.queueOffset
    }
  }

  /** The held message with the lowest offset (orderly consumption takes them in this order). */
  first(): MessageExt | undefined {
    let best: MessageExt | undefined
    for (const m of this.#messages.values()) if (best === undefined || m.queueOffset < best.queueOffset) best = m
    return best
  }

  /**
   * Removes consumed messages; answers the offset to commit: the lowest offset still held, or
   * one past the highest ever put when none is (-1 if nothing was ever put).
   */
  remove(messages: readonly MessageExt[]): number {
    for (const m of messages) {
      if (this.#messages.delete(m.queueOffset)) this.#bytes -= m.body.length
    }
    if (this.#messages.size === 0) return this.#maxOffset + 1
    let low = Infinity
    for (const k of this.#messages.keys()) if (k < low) low = k
    return low
  }

  drop(): void {
    this.dropped = true
    this.abort.abort()
  }
}
