/**
 * Producer (RocketMQ's DefaultMQProducerImpl): sends to the topic's writable queues round-robin,
 * avoids brokers that failed recently, and retries a failed send on another queue (another
 * broker when there is one) up to `retries` times. Ordered messages take the queue a selector
 * picks from a key, delayed messages carry the DELAY level, batches go as SEND_BATCH_MESSAGE.
 *
 * ```ts
 * const producer = await Producer.start({ namesrv: '127.0.0.1:9876', group: 'PG' })
 * const r = await producer.send({ topic: 'Orders', body: 'hello', tags: 'TagA', keys: ['order-1'] })
 * await producer.close()
 * ```
 */
import { RemotingCommand, RequestCode, ResponseCode, encodeBatchBody } from '@mqts/transport'
import { ClientInstance, checkResponse, type ClientMember, type ClientOptions } from './client-instance.js'
import { AUTO_CREATE_TOPIC, CLIENT_DEFAULTS, DEFAULT_TOPIC_QUEUE_NUMS, PROPERTY, RETRY_GROUP_TOPIC_PREFIX, isSystemTopic } from './constants.js'
import { ClientError, isClientError } from './errors.js'
import { UniqueIdGenerator, messageOf } from '@mqts/common'
import { bodyOf, encodeProperties, flagOf, messageProperties, type Message } from './message.js'
import { QueueChooser, publishQueues, type MessageQueue } from './route.js'
import { selectByHash, type QueueSelector } from './selector.js'

export interface ProducerOptions extends ClientOptions {
  /** The producer group (RocketMQ's producerGroup). */
  group: string
  /** Attempts after a failed send (default 2: three in all). */
  retries?: number
  /** Timeout of one send (default requestTimeoutMs). */
  sendTimeoutMs?: number
}

export type SendStatus = 'SEND_OK' | 'FLUSH_DISK_TIMEOUT' | 'FLUSH_SLAVE_TIMEOUT' | 'SLAVE_NOT_AVAILABLE'

export interface SendResult {
  status: SendStatus
  /** The message's unique id (UNIQ_KEY); for a batch, the ids joined by commas. */
  msgId: string
  /** The stored record's id from the broker (comma-joined for a batch). */
  offsetMsgId: string
  queue: MessageQueue
  /** The queue offset of the (first) message. */
  queueOffset: number
}

export interface SendOptions {
  /** Pick the queue from this key: one key, one queue (ordered messages). */
  shardingKey?: string
  /** A selector of your own; gets `arg`. Selected sends are not retried on another queue. */
  selector?: QueueSelector
  arg?: unknown
  signal?: AbortSignal
}

/** Response codes after which a send is tried again elsewhere (DefaultMQProducerImpl). */
const RETRY_CODES: ReadonlySet<number> = new Set([
  ResponseCode.TOPIC_NOT_EXIST,
  ResponseCode.SERVICE_NOT_AVAILABLE,
  ResponseCode.SYSTEM_ERROR,
  ResponseCode.SYSTEM_BUSY,
  ResponseCode.NO_PERMISSION,
])

const STATUS_BY_CODE: Record<number, SendStatus> = {
  [ResponseCode.SUCCESS]: 'SEND_OK',
  [ResponseCode.FLUSH_DISK_TIMEOUT]: 'FLUSH_DISK_TIMEOUT',
  [ResponseCode.FLUSH_SLAVE_TIMEOUT]: 'FLUSH_SLAVE_TIMEOUT',
  [ResponseCode.SLAVE_NOT_AVAILABLE]: 'SLAVE_NOT_AVAILABLE',
}

function checkTopic(topic: unknown): string {
  if (typeof topic !== 'string' || !/^[%|a-zA-Z0-9_-]{1,127}$/.test(topic)) throw new ClientError('INVALID_OPTION', `a topic is 1-127 characters of [%|a-zA-Z0-9_-], got ${JSON.stringify(topic)}`)
  if (isSystemTopic(topic)) throw new ClientError('INVALID_OPTION', `${topic} is a system topic of the broker, which a producer does not send to (as RocketMQ's TopicValidator)`)
  return topic
}

export class Producer implements ClientMember {
  readonly group: string
  readonly instance: ClientInstance
  readonly retries: number
  readonly sendTimeoutMs: number
  readonly #ids: UniqueIdGenerator
  readonly #choosers = new Map<string, QueueChooser>()
  readonly #topics = new Set<string>()
  #started = false
  #closed = false

  constructor(options: ProducerOptions) {
    if (typeof options?.group !== 'string' || options.group === '') throw new ClientError('INVALID_OPTION', `a producer needs a group name, got ${JSON.stringify(options?.group)}`)
    const retries = options.retries ?? CLIENT_DEFAULTS.sendRetries
    if (!Number.isInteger(retries) || retries < 0) throw new ClientError('INVALID_OPTION', `retries must be an integer >= 0, got ${retries}`)
    this.group = options.group
    this.retries = retries
    this.instance = new ClientInstance(options)
    this.sendTimeoutMs = options.sendTimeoutMs ?? this.instance.requestTimeoutMs
    this.#ids = new UniqueIdGenerator(this.instance.clientId.split('@')[0], this.instance.random)
  }

  /** A started producer. */
  static async start(options: ProducerOptions): Promise<Producer> {
    const p = new Producer(options)
    await p.start()
    return p
  }

  async start(): Promise<void> {
    if (this.#closed) throw new ClientError('CLOSED', 'the producer is closed')
    this.#started = true
    this.instance.addMember(this)
  }

  heartbeat(): { producer: { groupName: string } } {
    return { producer: { groupName: this.group } }
  }

  topics(): Iterable<string> {
    return this.#topics
  }

  #check(): void {
    if (this.#closed) throw new ClientError('CLOSED', 'the producer is closed')
    if (!this.#started) throw new ClientError('NOT_STARTED', 'call start() before sending')
  }

  /** The topic's writable queues (refreshed with its route). */
  async publishQueues(topic: string): Promise<MessageQueue[]> {
    return (await this.#chooser(topic)).queues.slice()
  }

  async #chooser(topic: string): Promise<QueueChooser> {
    const route = (await this.instance.route(topic)) ?? (await this.instance.autoCreateRoute())
    if (!route) throw new ClientError('NO_ROUTE', `no route for topic ${topic}, and no ${AUTO_CREATE_TOPIC} route to create it from`)
    const queues = publishQueues(topic, route)
    let chooser = this.#choosers.get(topic)
    if (!chooser || !sameQueues(chooser.queues, queues)) {
      chooser = new QueueChooser(queues, this.instance.random)
      this.#choosers.set(topic, chooser)
    }
    // Its route is refreshed with the others from now on (a broker met in it gets a heartbeat).
    this.#topics.add(topic)
    if (queues.length === 0) throw new ClientError('NO_ROUTE', `topic ${topic} has no writable queue (every broker of its route is read-only or has no master)`)
    return chooser
  }

  /** Sends one message and waits for the broker's answer. */
  async send(message: Message, options: SendOptions = {}): Promise<SendResult> {
    this.#check()
    const topic = checkTopic(message?.topic)
    const body = bodyOf(message)
    const uniq = this.#ids.next()
    const properties = messageProperties(message, uniq)
    if (options.selector !== undefined && typeof options.selector !== 'function') throw new ClientError('INVALID_OPTION', `a queue selector is a function, got ${typeof options.selector}`)
    if (options.selector || options.shardingKey !== undefined) {
      const chooser = await this.#chooser(topic)
      const queue = selectQueue(chooser.queues, options.selector ?? selectByHash, message, options.selector ? options.arg : options.shardingKey)
      return this.#sendTo(queue, body, properties, flagOf(message), uniq, options.signal)
    }
    return this.#sendWithRetries(topic, (queue) => this.#sendTo(queue, body, properties, flagOf(message), uniq, options.signal), options.signal)
  }

  /** Sends several messages of one topic to one queue in one request (SEND_BATCH_MESSAGE). */
  async sendBatch(messages: readonly Message[], options: { signal?: AbortSignal } = {}): Promise<SendResult> {
    this.#check()
    if (!Array.isArray(messages) || messages.length === 0) throw new ClientError('INVALID_OPTION', `sendBatch needs a non-empty array of messages, got ${Array.isArray(messages) ? 'an empty array' : typeof messages}`)
    const topic = checkTopic(messages[0]!.topic)
    const ids: string[] = []
    const entries = messages.map((m) => {
      if (m.topic !== topic) throw new ClientError('INVALID_OPTION', `the messages of a batch share one topic: ${topic} and ${m.topic}`)
      if ((m.delayLevel ?? 0) > 0) throw new ClientError('INVALID_OPTION', 'a batch cannot hold delayed messages')
      const id = this.#ids.next()
      ids.push(id)
      return { body: bodyOf(m), flag: flagOf(m), properties: encodeProperties(messageProperties(m, id)) }
    })
    const body = encodeBatchBody(entries)
    return this.#sendWithRetries(topic, (queue) => this.#invokeSend(queue, RequestCode.SEND_BATCH_MESSAGE, body, '', 0, ids.join(','), options.signal), options.signal)
  }

  /** Sends without waiting for an answer (no retries, no result). */
  async sendOneway(message: Message): Promise<void> {
    this.#check()
    const topic = checkTopic(message?.topic)
    const chooser = await this.#chooser(topic)
    const queue = chooser.choose(undefined, this.instance.faults)!
    const addr = await this.instance.brokerAddress(queue.brokerName, topic)
    const req = this.#request(queue, RequestCode.SEND_MESSAGE_V2, encodeProperties(messageProperties(message, this.#ids.next())), flagOf(message), bodyOf(message))
    await this.instance.invokeBrokerOneway(addr, req)
  }

  async #sendWithRetries(topic: string, attempt: (queue: MessageQueue) => Promise<SendResult>, signal: AbortSignal | undefined): Promise<SendResult> {
    let last: unknown
    let lastBroker: string | undefined
    for (let i = 0; i <= this.retries; i++) {
      if (signal?.aborted) throw new ClientError('ABORTED', `the send to ${topic} was aborted`, { cause: signal.reason })
      let chooser: QueueChooser
      try {
        chooser = await this.#chooser(topic)
      } catch (err) {
        last = err
        if (isClientError(err, 'NO_ROUTE') || isClientError(err, 'CLOSED')) throw err
        continue
      }
      const queue = chooser.choose(lastBroker, this.instance.faults)!
      lastBroker = queue.brokerName
      const began = Date.now()
      try {
        const r = await attempt(queue)
        this.instance.faults?.update(queue.brokerName, Date.now() - began)
        return r
      } catch (err) {
        last = err
        if (!isRetriable(err)) throw err
        this.instance.faults?.update(queue.brokerName, Date.now() - began, true)
        this.instance.logger.warn(`producer ${this.group}: send to ${queue.brokerName}/${queue.queueId} failed (${(err as Error).message}), ${this.retries - i} attempt(s) left`)
      }
    }
    throw new ClientError('SEND_FAILED', `sending to ${topic} failed ${this.retries + 1} time(s): ${(last as Error)?.message}`, { cause: last })
  }

  #request(queue: MessageQueue, code: number, properties: string, flag: number, body: Buffer): RemotingCommand {
    // SendMessageRequestHeaderV2: the V1 fields under one-letter keys.
    const ext: Record<string, string> = {
      a: this.group,
      b: queue.topic,
      c: AUTO_CREATE_TOPIC,
      d: String(DEFAULT_TOPIC_QUEUE_NUMS),
      e: String(queue.queueId),
      f: '0',
      g: String(Date.now()),
      h: String(flag),
      i: properties,
      j: '0',
      k: 'false',
      n: queue.brokerName,
    }
    if (code === RequestCode.SEND_BATCH_MESSAGE) ext.m = 'true'
    if (queue.topic.startsWith(RETRY_GROUP_TOPIC_PREFIX)) {
      const p = decodeRetryProps(properties)
      if (p.reconsume !== undefined) ext.j = p.reconsume
      if (p.max !== undefined) ext.l = p.max
    }
    return RemotingCommand.createRequest(code, ext, body)
  }

  #sendTo(queue: MessageQueue, body: Buffer, properties: Record<string, string>, flag: number, uniq: string, signal: AbortSignal | undefined): Promise<SendResult> {
    return this.#invokeSend(queue, RequestCode.SEND_MESSAGE_V2, body, encodeProperties(properties), flag, uniq, signal)
  }

  async #invokeSend(queue: MessageQueue, code: number, body: Buffer, properties: string, flag: number, uniq: string, signal: AbortSignal | undefined): Promise<SendResult> {
    const addr = await this.instance.brokerAddress(queue.brokerName, queue.topic)
    const req = code === RequestCode.SEND_BATCH_MESSAGE ? this.#request(queue, code, '', 0, body) : this.#request(queue, code, properties, flag, body)
    const res = await withSignal(this.instance.invokeBroker(addr, req, this.sendTimeoutMs), signal, `send to ${queue.topic}`)
    const status = STATUS_BY_CODE[res.code]
    if (status === undefined) checkResponse(res, `send to ${queue.brokerName} (${addr}) queue ${queue.topic}/${queue.queueId}`)
    return {
      status: status!,
      msgId: uniq,
      offsetMsgId: res.extFields.msgId ?? '',
      queue: { topic: queue.topic, brokerName: queue.brokerName, queueId: Number(res.extFields.queueId ?? queue.queueId) },
      queueOffset: Number(res.extFields.queueOffset ?? -1),
    }
  }

  /** Closes: unregisters the group from the brokers, then the connections. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.instance.removeMember(this)
    await this.instance.unregister({ producerGroup: this.group })
    await this.instance.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}

/**
 * The queue a selector picks, which must be one of the queues it was given (or an equal copy):
 * anything else, or a selector that throws, is the caller's mistake (INVALID_OPTION), never a
 * send to a queue the route does not have. The selector gets a copy, so it cannot change ours.
 */
function selectQueue(queues: readonly MessageQueue[], selector: QueueSelector, message: Message, arg: unknown): MessageQueue {
  let picked: unknown
  try {
    picked = selector(queues.map((q) => ({ ...q })), message, arg)
  } catch (err) {
    throw new ClientError('INVALID_OPTION', `the queue selector threw: ${messageOf(err)}`, { cause: err })
  }
  const p = picked as Partial<MessageQueue> | null | undefined
  const queue = typeof p === 'object' && p !== null ? queues.find((q) => q.topic === p.topic && q.brokerName === p.brokerName && q.queueId === p.queueId) : undefined
  if (!queue) throw new ClientError('INVALID_OPTION', `the queue selector must answer one of the ${queues.length} queue(s) of ${queues[0]?.topic} it was given, got ${describe(picked)}`)
  return queue
}

function describe(value: unknown): string {
  if (typeof value === 'object' && value !== null) {
    try {
      return JSON.stringify(value)
    } catch {
      return String(value)
    }
  }
  return typeof value === 'string' ? JSON.stringify(value) : `${String(value)} (${typeof value})`
}

function isRetriable(err: unknown): boolean {
  if (!isClientError(err)) return false
  if (err.code === 'REMOTING_FAILED' || err.code === 'NO_BROKER') return true
  return err.code === 'BROKER_ERROR' && err.responseCode !== undefined && RETRY_CODES.has(err.responseCode)
}

function sameQueues(a: readonly MessageQueue[], b: readonly MessageQueue[]): boolean {
  return a.length === b.length && a.every((q, i) => q.brokerName === b[i]!.brokerName && q.queueId === b[i]!.queueId)
}

function decodeRetryProps(properties: string): { reconsume?: string; max?: string } {
  const get = (name: string): string | undefined => {
    const m = new RegExp(`(?:^|\u0002)${name}\u0001([^\u0002]*)`).exec(properties)
    return m?.[1]
  }
  return { reconsume: get(PROPERTY.RECONSUME_TIME), max: get(PROPERTY.MAX_RECONSUME_TIMES) }
}

/** `p`, or a ClientError ABORTED as soon as `signal` fires (the request itself is not recalled). */
export function withSignal<T>(p: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return p
  // The request goes on after an abort: its answer or failure is nobody's, and must not become
  // an unhandled rejection.
  p.catch(() => undefined)
  if (signal.aborted) return Promise.reject(new ClientError('ABORTED', `${what} was aborted`, { cause: signal.reason }))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new ClientError('ABORTED', `${what} was aborted`, { cause: signal.reason }))
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(e)
      },
    )
  })
}
