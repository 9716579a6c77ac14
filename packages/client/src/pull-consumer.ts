/**
 * Pull consumer: the application names the queue and the offset; `messages()` is an
 * AsyncIterable that long-polls the queue from an offset until its AbortSignal fires or the
 * consumer closes. Offsets are the application's; `commitOffset` keeps one on the broker.
 *
 * ```ts
 * const consumer = await PullConsumer.start({ namesrv, group: 'G' })
 * const [queue] = await consumer.queues('Orders')
 * for await (const m of consumer.messages({ queue, offset: 0, signal })) console.log(m.body.toString())
 * ```
 */
import { ClientInstance, type ClientMember, type ClientOptions } from './client-instance.js'
import { ClientError, isClientError } from './errors.js'
import { parseSubscription } from './expression.js'
import type { MessageExt } from './message.js'
import { checkSuspendMs, pullMessages, queryConsumerOffset, queueOffset, updateConsumerOffset, type PullResult } from './pull-api.js'
import { subscribeQueues, type MessageQueue } from './route.js'

export interface PullConsumerOptions extends ClientOptions {
  group: string
}

export interface PullOptions {
  /** Tag expression: `*` (default) or `TagA || TagB`. */
  expression?: string
  maxMessages?: number
  /** How long the broker may hold a pull that finds nothing (default 15 s; 0 answers at once). */
  suspendMs?: number
  signal?: AbortSignal
}

export interface MessagesOptions extends PullOptions {
  queue: MessageQueue
  offset: number
}

export class PullConsumer implements ClientMember {
  readonly group: string
  readonly instance: ClientInstance
  readonly #topics = new Set<string>()
  readonly #closing = new AbortController()
  #started = false

  constructor(options: PullConsumerOptions) {
    if (typeof options?.group !== 'string' || options.group === '') throw new ClientError('INVALID_OPTION', `a consumer needs a group name, got ${JSON.stringify(options?.group)}`)
    this.group = options.group
    this.instance = new ClientInstance(options)
  }

  static async start(options: PullConsumerOptions): Promise<PullConsumer> {
    const c = new PullConsumer(options)
    await c.start()
    return c
  }

  async start(): Promise<void> {
    if (this.#closing.signal.aborted) throw new ClientError('CLOSED', 'the consumer is closed')
    this.#started = true
    this.instance.addMember(this)
  }

  heartbeat(): Record<string, never> {
    // RocketMQ's pull consumer heartbeats as CONSUME_ACTIVELY; the broker needs nothing of it
    // here since every pull carries its subscription.
    return {}
  }

  topics(): Iterable<string> {
    return this.#topics
  }

  #check(): void {
    if (this.#closing.signal.aborted) throw new ClientError('CLOSED', 'the consumer is closed')
    if (!this.#started) throw new ClientError('NOT_STARTED', 'call start() first')
  }

  /** The topic's readable queues, sorted. */
  async queues(topic: string): Promise<MessageQueue[]> {
    this.#check()
    this.#topics.add(topic)
    const route = await this.instance.route(topic, true)
    if (!route) throw new ClientError('NO_ROUTE', `no route for topic ${topic}`)
    return subscribeQueues(topic, route)
  }

  /** One pull of `queue` from `offset`. */
  async pull(queue: MessageQueue, offset: number, options: PullOptions = {}): Promise<PullResult> {
    this.#check()
    if (!Number.isInteger(offset) || offset < 0) throw new ClientError('INVALID_OPTION', `a pull offset is an integer >= 0, got ${offset}`)
    this.#topics.add(queue.topic)
    const suspendMs = checkSuspendMs(options.suspendMs)
    const signal = options.signal ? AbortSignal.any([options.signal, this.#closing.signal]) : this.#closing.signal
    try {
      return await pullMessages(this.instance, {
        group: this.group,
        queue,
        offset,
        subscription: parseSubscription(queue.topic, options.expression),
        maxMessages: options.maxMessages,
        suspendMs,
        signal,
      })
    } catch (err) {
      // Ended by close(), not by the caller's signal: the consumer is closed.
      if (this.#closing.signal.aborted && !options.signal?.aborted) throw new ClientError('CLOSED', `the consumer was closed while pulling ${queue.topic}/${queue.queueId}`, { cause: err })
      throw err
    }
  }

  /**
   * The queue's messages from `offset` on, waiting for new ones (long polling), until `signal`
   * fires or the consumer closes (the iteration then ends without an error).
   */
  async *messages(options: MessagesOptions): AsyncGenerator<MessageExt, void, undefined> {
    // Closed (or not started) before the first pull: an error, as pull() gives, not an empty iteration.
    this.#check()
    let offset = options.offset
    const stop = options.signal ? AbortSignal.any([options.signal, this.#closing.signal]) : this.#closing.signal
    while (!stop.aborted) {
      let r: PullResult
      try {
        r = await this.pull(options.queue, offset, { ...options, signal: stop })
      } catch (err) {
        if (stop.aborted && (isClientError(err, 'ABORTED') || isClientError(err, 'CLOSED'))) return
        throw err
      }
      for (const m of r.messages) {
        if (stop.aborted) return
        yield m
      }
      offset = r.nextOffset
    }
  }

  /**
   * The group's committed offset of `queue`, or -1 when the group never committed one there
   * (RocketMQ's QUERY_NOT_FOUND; the request asks the broker not to answer 0 for it).
   */
  async committedOffset(queue: MessageQueue): Promise<number> {
    this.#check()
    return queryConsumerOffset(this.instance, this.group, queue, { zeroIfNotFound: false })
  }

  /** Keeps `offset` as the group's committed offset of `queue` (a queue of the topic's route). */
  async commitOffset(queue: MessageQueue, offset: number): Promise<void> {
    this.#check()
    if (!Number.isSafeInteger(offset) || offset < 0) throw new ClientError('INVALID_OPTION', `a committed offset is an integer >= 0, got ${offset}`)
    await this.#checkQueue(queue)
    return updateConsumerOffset(this.instance, this.group, queue, offset)
  }

  /** `queue` must be a readable queue of its topic's route (asked again once when it is not). */
  async #checkQueue(queue: MessageQueue): Promise<void> {
    const known = async (refresh: boolean): Promise<boolean> => {
      const route = await this.instance.route(queue.topic, refresh)
      return route !== undefined && subscribeQueues(queue.topic, route).some((q) => q.brokerName === queue.brokerName && q.queueId === queue.queueId)
    }
    if (typeof queue?.topic !== 'string') throw new ClientError('INVALID_OPTION', `a queue is { topic, brokerName, queueId }, got ${JSON.stringify(queue)}`)
    if ((await known(false)) || (await known(true))) return
    throw new ClientError('INVALID_OPTION', `${queue.topic} has no readable queue ${queue.queueId} on broker ${queue.brokerName}: got ${JSON.stringify(queue)}`)
  }

  minOffset(queue: MessageQueue): Promise<number> {
    return queueOffset(this.instance, queue, 'min')
  }

  maxOffset(queue: MessageQueue): Promise<number> {
    return queueOffset(this.instance, queue, 'max')
  }

  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return
    this.#closing.abort(new ClientError('CLOSED', 'the consumer is closed'))
    this.instance.removeMember(this)
    await this.instance.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}
