/**
 * Long polling (RocketMQ's PullRequestHoldService): a pull that finds nothing new is parked until
 * a message arrives for its queue (the store's arrival notification) or its suspend time ends,
 * then answered by running it again. Parked pulls are bounded per queue and in total; past the
 * bound a pull is answered at once (PULL_NOT_FOUND), never dropped.
 */
import type { Channel, RemotingCommand } from '@mqts/transport'

interface Held {
  channel: Channel
  request: RemotingCommand
  /** Queue offset the pull waits beyond. */
  offset: number
  deadline: number
  timer: NodeJS.Timeout
}

/** Runs a held pull again (without suspending) and answers it on its channel. */
export type Retry = (request: RemotingCommand, channel: Channel) => Promise<RemotingCommand>

export const MAX_HELD_PULLS = 10_000

export class PullHoldService {
  readonly #byQueue = new Map<string, Set<Held>>()
  #count = 0
  #stopped = false

  constructor(private readonly retry: Retry) {}

  /** Parks a pull; false when the bound is reached (answer it now). */
  hold(topic: string, queueId: number, offset: number, waitMs: number, request: RemotingCommand, channel: Channel): boolean {
    if (this.#stopped || this.#count >= MAX_HELD_PULLS) return false
    const key = `${topic}@${queueId}`
    let set = this.#byQueue.get(key)
    if (!set) {
      set = new Set()
      this.#byQueue.set(key, set)
    }
    const held: Held = {
      channel,
      request,
      offset,
      deadline: Date.now() + waitMs,
      timer: setTimeout(() => this.#wake(key, held), waitMs),
    }
    held.timer.unref()
    set.add(held)
    this.#count++
    return true
  }

  /** The store reports new messages in a queue: every pull waiting below `maxOffset` runs again. */
  arrived(topic: string, queueId: number, maxOffset: number): void {
    // Every stored batch reports here: with no pull parked, not even a key to build.
    if (this.#count === 0) return
    const key = `${topic}@${queueId}`
    const set = this.#byQueue.get(key)
    if (!set) return
    for (const h of [...set]) if (maxOffset > h.offset) this.#wake(key, h)
  }

  #wake(key: string, h: Held): void {
    const set = this.#byQueue.get(key)
    if (!set || !set.delete(h)) return
    if (set.size === 0) this.#byQueue.delete(key)
    this.#count--
    clearTimeout(h.timer)
    if (h.channel.closed) return
    this.retry(h.request, h.channel)
      .then((response) => h.channel.respond(h.request, response))
      .catch(() => undefined)
  }

  /** Answers every parked pull now (shutdown): each runs once more. */
  wakeAll(): void {
    for (const [key, set] of [...this.#byQueue]) for (const h of [...set]) this.#wake(key, h)
  }

  stop(): void {
    this.wakeAll()
    this.#stopped = true
  }

  get held(): number {
    return this.#count
  }
}
