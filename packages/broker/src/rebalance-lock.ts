/**
 * Queue locks for orderly consumption (RocketMQ's RebalanceLockManager): a consumer group's
 * client locks the queues it consumes in order (LOCK_BATCH_MQ) and renews the locks; a lock
 * not renewed within `expiryMs` (60 s) may be taken by another client of the group.
 */

export interface MessageQueue {
  topic: string
  brokerName: string
  queueId: number
}

interface Lock {
  clientId: string
  lastUpdate: number
}

export const REBALANCE_LOCK_EXPIRY_MS = 60_000

function key(mq: MessageQueue): string {
  return `${mq.topic}\u0001${mq.brokerName}\u0001${mq.queueId}`
}

export class RebalanceLockManager {
  readonly #groups = new Map<string, Map<string, Lock>>()

  constructor(
    private readonly now: () => number,
    private readonly expiryMs = REBALANCE_LOCK_EXPIRY_MS,
  ) {}

  /** Locks (or renews) each queue for `clientId` unless another client holds a live lock; returns those it holds now. */
  tryLock(group: string, clientId: string, mqs: MessageQueue[]): MessageQueue[] {
    let locks = this.#groups.get(group)
    if (!locks) {
      locks = new Map()
      this.#groups.set(group, locks)
    }
    const now = this.now()
    const ok: MessageQueue[] = []
    for (const mq of mqs) {
      const k = key(mq)
      const l = locks.get(k)
      if (!l || l.clientId === clientId || l.lastUpdate + this.expiryMs < now) {
        locks.set(k, { clientId, lastUpdate: now })
        ok.push(mq)
      }
    }
    return ok
  }

  /** Releases the queues `clientId` holds among `mqs`. */
  unlock(group: string, clientId: string, mqs: MessageQueue[]): void {
    const locks = this.#groups.get(group)
    if (!locks) return
    for (const mq of mqs) {
      const k = key(mq)
      if (locks.get(k)?.clientId === clientId) locks.delete(k)
    }
    if (locks.size === 0) this.#groups.delete(group)
  }

  /** The client holding a live lock on `mq`, if any. */
  holder(group: string, mq: MessageQueue): string | undefined {
    const l = this.#groups.get(group)?.get(key(mq))
    return l && l.lastUpdate + this.expiryMs >= this.now() ? l.clientId : undefined
  }
}
