/**
 * Push consumer (RocketMQ's DefaultMQPushConsumerImpl with RebalancePushImpl,
 * ConsumeMessageConcurrentlyService and ConsumeMessageOrderlyService): subscribe topics with a
 * tag expression and a handler, and the consumer pulls the queues it owns and calls the handler.
 *
 * - Clustering: a group's members share the queues (average allocation over the sorted queues
 *   and the sorted member ids), rebalanced on the broker's NOTIFY_CONSUMER_IDS_CHANGED and every
 *   rebalanceIntervalMs; offsets are kept on the broker. Broadcasting: every member takes every
 *   queue; offsets are kept in a local file.
 * - One long-polling pull loop per queue, paused while the queue holds maxCachedMessagesPerQueue
 *   messages or maxCachedBytesPerQueue bytes not yet consumed.
 * - Offsets are committed every persistOffsetIntervalMs, when a queue goes away, and on close.
 * - A handler that throws or returns ConsumeResult.RETRY sends the message back
 *   (CONSUMER_SEND_MSG_BACK; the broker redelivers it through %RETRY%<group> with back-off, and
 *   to %DLQ%<group> after maxReconsumeTimes). A broker that does not take send-backs gets the
 *   message re-sent to the retry topic instead, as RocketMQ's client does when the send-back fails.
 * - Orderly: one message at a time per queue, in queue order; in clustering the queues are
 *   locked on the broker (LOCK_BATCH_MQ, renewed every lockRenewIntervalMs, UNLOCK_BATCH_MQ when
 *   given up); a failed message is retried in place after suspendOrderlyMs, reconsumeTimes
 *   counting up, and goes straight to the DLQ once it failed with reconsumeTimes = maxReconsumeTimes.
 */
import * as os from 'node:os'
import * as path from 'node:path'
import { RemotingCommand, RequestCode, ResponseCode, encodeRemotingJson, parseRemotingJson } from '@mqts/transport'
import { ClientInstance, checkResponse, type ClientMember, type ConsumerHeartbeat } from './client-instance.js'
import { CLIENT_DEFAULTS, PROPERTY, RETRY_GROUP_TOPIC_PREFIX, SEND_BACK_TO_DLQ, retryTopic } from './constants.js'
import { ClientError, isClientError } from './errors.js'
import { allocateAveragely } from './allocate.js'
import { parseSubscription, subscriptionData, type Subscription } from './expression.js'
import { SYSTEM_PROPERTIES, type InternalMessage, type MessageExt } from './message.js'
import { LocalOffsetStore, RemoteOffsetStore, type OffsetStore } from './offset-store.js'
import { ProcessQueue } from './process-queue.js'
import { Producer, type ProducerOptions } from './producer.js'
import { checkSuspendMs, pullMessages, queueOffset, searchOffset } from './pull-api.js'
import { masterAddresses, queueKey, subscribeQueues, type MessageQueue } from './route.js'
import type { ClientOptions } from './client-instance.js'
import { positiveCount, positiveMillis } from './option-checks.js'

/** What a handler answers; throwing counts as RETRY. */
export const ConsumeResult = {
  SUCCESS: 'SUCCESS',
  /** Redeliver later (clustering: sent back; orderly: retried in place after a pause). */
  RETRY: 'RETRY',
} as const
export type ConsumeResult = (typeof ConsumeResult)[keyof typeof ConsumeResult]

export type MessageHandler = (message: MessageExt) => Promise<ConsumeResult | void> | ConsumeResult | void

export type MessageModel = 'CLUSTERING' | 'BROADCASTING'
export type ConsumeFromWhere = 'CONSUME_FROM_LAST_OFFSET' | 'CONSUME_FROM_FIRST_OFFSET' | 'CONSUME_FROM_TIMESTAMP'
const CONSUME_FROM: readonly ConsumeFromWhere[] = ['CONSUME_FROM_LAST_OFFSET', 'CONSUME_FROM_FIRST_OFFSET', 'CONSUME_FROM_TIMESTAMP']

export interface PushConsumerOptions extends ClientOptions {
  group: string
  /** CLUSTERING (default) or BROADCASTING. */
  messageModel?: MessageModel
  /** Where a group new to a queue starts (default CONSUME_FROM_LAST_OFFSET, as RocketMQ's). */
  consumeFromWhere?: ConsumeFromWhere
  /** For CONSUME_FROM_TIMESTAMP: ms since the epoch (default: 30 minutes ago). */
  consumeTimestamp?: number
  /** One message at a time per queue, in order; queues locked on the broker in clustering. */
  orderly?: boolean
  rebalanceIntervalMs?: number
  persistOffsetIntervalMs?: number
  lockRenewIntervalMs?: number
  /** Orderly: a queue lock not renewed for this long is taken as lost (default 30 s, as RocketMQ's). */
  lockMaxLiveMs?: number
  pullBatchSize?: number
  suspendMs?: number
  maxCachedMessagesPerQueue?: number
  maxCachedBytesPerQueue?: number
  /** Handlers running at once for the whole consumer (concurrent mode; default 20). */
  consumeConcurrency?: number
  /** Deliveries of a message before the broker puts it in the DLQ (default 16). */
  maxReconsumeTimes?: number
  pullDelayOnErrorMs?: number
  suspendOrderlyMs?: number
  /** Broadcasting: where offsets are kept (default ~/.rocketmq_offsets, as RocketMQ's). */
  offsetStoreDir?: string
}

/** How a failed message goes back: the send-back's delay level (0: the broker's next) and the fallback's reconsume count. */
interface SendBackMode {
  delayLevel: number
  reconsumeTimes: number
}

interface Subscribed {
  sub: Subscription
  handler: MessageHandler
}

/** A new retry topic's route is asked for this many times, this long apart, after a send-back. */
const RETRY_ROUTE_ATTEMPTS = 10
const RETRY_ROUTE_WAIT_MS = 500

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done(): void {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })

/**
 * The folder name a broadcasting consumer keeps its offsets under: RocketMQ's Java client names
 * broadcasting consumers `<ip>@DEFAULT` unless given an instance name, so a restarted process finds
 * its offsets again (the per-process default id would start a new folder each time).
 */
export function broadcastingStoreId(clientId: string, instanceName: string | undefined): string {
  return instanceName !== undefined ? clientId : `${clientId.split('@')[0]}@DEFAULT`
}

export class PushConsumer implements ClientMember {
  readonly group: string
  readonly instance: ClientInstance
  readonly messageModel: MessageModel
  readonly orderly: boolean
  readonly #options: PushConsumerOptions
  readonly #subs = new Map<string, Subscribed>()
  readonly #queues = new Map<string, ProcessQueue>()
  readonly #offsets: OffsetStore
  readonly #timers: NodeJS.Timeout[] = []
  readonly #closing = new AbortController()
  readonly #limits: {
    rebalanceMs: number
    persistMs: number
    lockMs: number
    lockMaxLiveMs: number
    batch: number
    suspendMs: number
    maxMsgs: number
    maxBytes: number
    concurrency: number
    maxReconsume: number
    errorDelayMs: number
    suspendOrderlyMs: number
  }
  #running = 0
  readonly #waiting: Array<() => void> = []
  #rebalancing: Promise<void> | undefined
  #rebalanceAgain = false
  /** The last rebalance found no route for the group's retry topic (a new group: no send-back yet). */
  #retryRouteMissing = false
  #watchingRetryRoute = false
  #fallbackProducer: Producer | undefined
  #started = false
  #closed: Promise<void> | undefined
  /** Errors the consumer met and went on (a failed pull, a failed send-back): for observers. */
  onError: ((err: Error) => void) | undefined

  constructor(options: PushConsumerOptions) {
    if (typeof options?.group !== 'string' || options.group === '') throw new ClientError('INVALID_OPTION', `a consumer needs a group name, got ${JSON.stringify(options?.group)}`)
    const model = options.messageModel ?? 'CLUSTERING'
    if (model !== 'CLUSTERING' && model !== 'BROADCASTING') throw new ClientError('INVALID_OPTION', `messageModel is CLUSTERING or BROADCASTING, got ${JSON.stringify(model)}`)
    const from = options.consumeFromWhere
    if (from !== undefined && !CONSUME_FROM.includes(from)) throw new ClientError('INVALID_OPTION', `consumeFromWhere is one of ${CONSUME_FROM.join(', ')}, got ${JSON.stringify(from)}`)
    this.group = options.group
    this.messageModel = model
    this.orderly = options.orderly ?? false
    this.#options = options
    const d = CLIENT_DEFAULTS
    this.#limits = {
      rebalanceMs: positiveMillis('rebalanceIntervalMs', options.rebalanceIntervalMs, d.rebalanceIntervalMs),
      persistMs: positiveMillis('persistOffsetIntervalMs', options.persistOffsetIntervalMs, d.persistOffsetIntervalMs),
      lockMs: positiveMillis('lockRenewIntervalMs', options.lockRenewIntervalMs, d.lockRenewIntervalMs),
      lockMaxLiveMs: positiveMillis('lockMaxLiveMs', options.lockMaxLiveMs, d.lockMaxLiveMs),
      batch: positiveCount('pullBatchSize', options.pullBatchSize, d.pullBatchSize),
      suspendMs: checkSuspendMs(options.suspendMs),
      maxMsgs: positiveCount('maxCachedMessagesPerQueue', options.maxCachedMessagesPerQueue, d.maxCachedMessagesPerQueue),
      maxBytes: positiveCount('maxCachedBytesPerQueue', options.maxCachedBytesPerQueue, d.maxCachedBytesPerQueue),
      concurrency: positiveCount('consumeConcurrency', options.consumeConcurrency, d.consumeConcurrency),
      maxReconsume: positiveCount('maxReconsumeTimes', options.maxReconsumeTimes, d.maxReconsumeTimes),
      errorDelayMs: positiveMillis('pullDelayOnErrorMs', options.pullDelayOnErrorMs, d.pullDelayOnErrorMs),
      suspendOrderlyMs: positiveMillis('suspendOrderlyMs', options.suspendOrderlyMs, d.suspendOrderlyMs),
    }
    // A lock must outlive the interval of its renewals, or it is lost between two of them.
    if (this.#limits.lockMaxLiveMs <= this.#limits.lockMs) throw new ClientError('INVALID_OPTION', `lockMaxLiveMs must be longer than lockRenewIntervalMs (${this.#limits.lockMs}), got ${this.#limits.lockMaxLiveMs}`)
    this.instance = new ClientInstance(options)
    this.#offsets =
      model === 'BROADCASTING'
        ? new LocalOffsetStore(options.offsetStoreDir ?? path.join(os.homedir(), '.rocketmq_offsets'), broadcastingStoreId(this.instance.clientId, options.instanceName), this.group)
        : new RemoteOffsetStore(this.instance, this.group)
  }

  /** Subscribes `topic` with a tag expression (`*`, `TagA || TagB`); call before start(). */
  subscribe(topic: string, expression: string, handler: MessageHandler): this {
    if (this.#started) throw new ClientError('INVALID_OPTION', `subscribe ${topic} before start()`)
    if (typeof handler !== 'function') throw new ClientError('INVALID_OPTION', `subscribe needs a handler function, got ${typeof handler}`)
    this.#subs.set(topic, { sub: parseSubscription(topic, expression), handler })
    return this
  }

  /** Messages and bytes pulled and not yet consumed, per queue this member owns (flow control). */
  cached(): Array<{ queue: MessageQueue; messages: number; bytes: number }> {
    return [...this.#queues.values()].map((pq) => ({ queue: pq.queue, messages: pq.count, bytes: pq.bytes }))
  }

  /** The queues this member owns now. */
  assignedQueues(): MessageQueue[] {
    return [...this.#queues.values()].map((pq) => pq.queue)
  }

  async start(): Promise<void> {
    if (this.#closed) throw new ClientError('CLOSED', 'the consumer is closed')
    if (this.#started) return
    if (this.#subs.size === 0) throw new ClientError('INVALID_OPTION', 'subscribe at least one topic before start()')
    this.#started = true
    if (this.messageModel === 'CLUSTERING' && !this.#subs.has(retryTopic(this.group))) {
      // Messages sent back come through the group's retry topic (RocketMQ's copySubscription).
      const first = [...this.#subs.values()][0]!
      this.#subs.set(retryTopic(this.group), { sub: parseSubscription(retryTopic(this.group), '*'), handler: first.handler })
    }
    await this.#offsets.load()
    this.instance.addMember(this)
    for (const topic of this.#subs.keys()) await this.instance.route(topic, true).catch(() => undefined)
    await this.instance.sendHeartbeats()
    await this.rebalance()
    this.#every(this.#limits.rebalanceMs, () => this.rebalance())
    this.#every(this.#limits.persistMs, () => this.#persistAll())
    if (this.#lockedMode()) this.#every(this.#limits.lockMs, () => this.#lockAll())
  }

  #lockedMode(): boolean {
    return this.orderly && this.messageModel === 'CLUSTERING'
  }

  #every(ms: number, fn: () => Promise<unknown>): void {
    const t = setInterval(() => void fn().catch((err: unknown) => this.#error(err)), ms)
    t.unref()
    this.#timers.push(t)
  }

  #error(err: unknown): void {
    if (this.#closing.signal.aborted) return
    const e = err instanceof Error ? err : new Error(String(err))
    this.instance.logger.warn(`consumer ${this.group}: ${e.message}`)
    this.onError?.(e)
  }

  heartbeat(): { consumer: ConsumerHeartbeat } {
    return {
      consumer: {
        groupName: this.group,
        consumeType: 'CONSUME_PASSIVELY',
        messageModel: this.messageModel,
        consumeFromWhere: this.#options.consumeFromWhere ?? 'CONSUME_FROM_LAST_OFFSET',
        unitMode: false,
        subscriptionDataSet: [...this.#subs.values()].map((s) => subscriptionData(s.sub)),
      },
    }
  }

  topics(): Iterable<string> {
    return this.#subs.keys()
  }

  membershipChanged(group: string): void {
    if (group === this.group && this.#started && !this.#closing.signal.aborted) void this.rebalance().catch((err: unknown) => this.#error(err))
  }

  /** Recomputes the queues this member owns, for every subscribed topic (also runs on a timer). */
  rebalance(): Promise<void> {
    if (this.#closing.signal.aborted) return Promise.resolve()
    if (this.#rebalancing) {
      this.#rebalanceAgain = true
      return this.#rebalancing
    }
    this.#rebalancing = (async () => {
      try {
        do {
          this.#rebalanceAgain = false
          for (const topic of this.#subs.keys()) {
            try {
              await this.#rebalanceTopic(topic)
            } catch (err) {
              this.#error(err)
            }
          }
        } while (this.#rebalanceAgain && !this.#closing.signal.aborted)
      } finally {
        this.#rebalancing = undefined
      }
    })()
    return this.#rebalancing
  }

  async #rebalanceTopic(topic: string): Promise<void> {
    const route = await this.instance.route(topic)
    if (topic === retryTopic(this.group)) this.#retryRouteMissing = !route
    if (!route) {
      // Not there yet (a retry topic before its first registration): asked again next time.
      void this.instance.route(topic, true).catch(() => undefined)
      return
    }
    const all = subscribeQueues(topic, route)
    let mine: MessageQueue[]
    if (this.messageModel === 'BROADCASTING') mine = all
    else {
      const ids = await this.#consumerIds(topic, [...masterAddresses(route).values()])
      if (!ids) return
      mine = allocateAveragely(all, ids, this.instance.clientId)
    }
    const keep = new Set(mine.map(queueKey))
    for (const [key, pq] of this.#queues) {
      if (pq.queue.topic === topic && !keep.has(key)) await this.#giveUp(pq)
    }
    for (const q of mine) {
      if (this.#closing.signal.aborted) return
      if (!this.#queues.has(queueKey(q))) await this.#take(q)
    }
  }

  /** The group's members as a broker of the topic knows them (GET_CONSUMER_LIST_BY_GROUP). */
  async #consumerIds(topic: string, addrs: string[]): Promise<string[] | undefined> {
    for (const addr of addrs) {
      try {
        const res = await this.instance.invokeBroker(addr, RemotingCommand.createRequest(RequestCode.GET_CONSUMER_LIST_BY_GROUP, { consumerGroup: this.group }))
        if (res.code !== ResponseCode.SUCCESS) continue
        const list = (parseRemotingJson(res.body) as { consumerIdList?: unknown } | null)?.consumerIdList
        if (Array.isArray(list) && list.every((x) => typeof x === 'string') && list.length > 0) return list as string[]
      } catch (err) {
        this.#error(err)
      }
    }
    this.instance.logger.warn(`consumer ${this.group}: no broker of ${topic} listed the group's members`)
    return undefined
  }

  async #take(q: MessageQueue): Promise<void> {
    const pq = new ProcessQueue(q)
    if (this.#lockedMode() && !(await this.#lock([pq]))) return
    let offset: number
    try {
      offset = await this.#startOffset(q)
    } catch (err) {
      this.#error(err)
      if (pq.locked) await this.#unlock([pq])
      return
    }
    if (this.#closing.signal.aborted) return
    this.#offsets.update(q, offset, false)
    this.#queues.set(queueKey(q), pq)
    void this.#pullLoop(pq, offset)
  }

  /** Where a queue's consumption starts (RebalancePushImpl.computePullFromWhere). */
  async #startOffset(q: MessageQueue): Promise<number> {
    const stored = await this.#offsets.readStore(q)
    if (stored >= 0) return stored
    const retry = q.topic.startsWith(RETRY_GROUP_TOPIC_PREFIX)
    switch (this.#options.consumeFromWhere ?? 'CONSUME_FROM_LAST_OFFSET') {
      case 'CONSUME_FROM_FIRST_OFFSET':
        return 0
      case 'CONSUME_FROM_TIMESTAMP':
        if (retry) return queueOffset(this.instance, q, 'max')
        return searchOffset(this.instance, q, this.#options.consumeTimestamp ?? Date.now() - 30 * 60_000)
      default:
        return retry ? 0 : queueOffset(this.instance, q, 'max')
    }
  }

  async #giveUp(pq: ProcessQueue): Promise<void> {
    pq.drop()
    this.#queues.delete(queueKey(pq.queue))
    // Let a handler that is running finish, so its offset is the one committed.
    const until = Date.now() + 2_000
    while (pq.inFlight > 0 && Date.now() < until) await sleep(10)
    await this.#offsets.persist([pq.queue])
    this.#offsets.remove(pq.queue)
    if (pq.locked) await this.#unlock([pq])
  }

  async #pullLoop(pq: ProcessQueue, from: number): Promise<void> {
    const sub = this.#subs.get(pq.queue.topic)!.sub
    let offset = from
    const { maxMsgs, maxBytes } = this.#limits
    while (!pq.dropped && !this.#closing.signal.aborted) {
      if (pq.count >= maxMsgs || pq.bytes >= maxBytes) {
        // Flow control: the handlers are behind; pull again once they caught up a little.
        await sleep(50, pq.abort.signal)
        continue
      }
      if (this.#lockedMode() && !pq.holdsLock(Date.now(), this.#limits.lockMaxLiveMs)) {
        await this.#relock(pq)
        continue
      }
      try {
        const committed = this.messageModel === 'CLUSTERING' ? this.#offsets.readMemory(pq.queue) : -1
        const r = await pullMessages(this.instance, {
          group: this.group,
          queue: pq.queue,
          offset,
          subscription: sub,
          maxMessages: this.#limits.batch,
          suspendMs: this.#limits.suspendMs,
          commitOffset: committed > 0 ? committed : -1,
          signal: pq.abort.signal,
        })
        if (pq.dropped) return
        switch (r.status) {
          case 'FOUND':
            pq.put(r.messages)
            this.#dispatch(pq, r.messages)
            break
          case 'OFFSET_ILLEGAL':
            this.instance.logger.warn(`consumer ${this.group}: offset ${offset} of ${queueKey(pq.queue)} is illegal, moving to ${r.nextOffset}`)
            this.#offsets.update(pq.queue, r.nextOffset, false)
            await this.#offsets.persist([pq.queue])
            break
          default:
            // Nothing held: what was skipped (filtered out) counts as consumed.
            if (pq.count === 0) this.#offsets.update(pq.queue, r.nextOffset, true)
        }
        offset = r.nextOffset
      } catch (err) {
        if (pq.dropped || this.#closing.signal.aborted) return
        this.#error(err)
        await sleep(this.#limits.errorDelayMs, pq.abort.signal)
      }
    }
  }

  #dispatch(pq: ProcessQueue, messages: MessageExt[]): void {
    if (this.orderly) {
      if (!pq.consuming) void this.#consumeOrderly(pq)
      return
    }
    for (const m of messages) void this.#consumeOne(pq, m)
  }

  async #acquire(): Promise<void> {
    if (this.#running < this.#limits.concurrency) {
      this.#running++
      return
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve))
  }

  #release(): void {
    const next = this.#waiting.shift()
    if (next) next()
    else this.#running--
  }

  async #handle(m: MessageExt): Promise<boolean> {
    const s = this.#subs.get(m.topic) ?? this.#subs.get(retryTopic(this.group))
    if (!s) return true
    try {
      const r = await s.handler(m)
      return r !== ConsumeResult.RETRY
    } catch (err) {
      this.instance.logger.warn(`consumer ${this.group}: handler failed on ${m.msgId}: ${(err as Error)?.message ?? String(err)}`)
      return false
    }
  }

  async #consumeOne(pq: ProcessQueue, m: MessageExt): Promise<void> {
    await this.#acquire()
    pq.inFlight++
    try {
      for (;;) {
        if (pq.dropped) return
        if (await this.#handle(m)) break
        if (this.messageModel === 'BROADCASTING') break // RocketMQ drops a failed broadcast message
        if (await this.#sendBack(m, pq.queue)) break
        // Neither send-back nor the retry topic took it: try it here again a little later.
        await sleep(this.#limits.errorDelayMs, pq.abort.signal)
      }
      const offset = pq.remove([m])
      // A queue given up in a rebalance keeps the offset it had (its new owner may have begun);
      // on close the work done still counts.
      if ((!pq.dropped || this.#closing.signal.aborted) && offset >= 0) this.#offsets.update(pq.queue, offset, true)
    } finally {
      pq.inFlight--
      this.#release()
    }
  }

  async #consumeOrderly(pq: ProcessQueue): Promise<void> {
    pq.consuming = true
    try {
      while (!pq.dropped && !this.#closing.signal.aborted) {
        // No lock, or one not renewed in time: wait until the pull loop gets it again.
        if (this.#lockedMode() && !pq.holdsLock(Date.now(), this.#limits.lockMaxLiveMs)) {
          await sleep(100, pq.abort.signal)
          continue
        }
        const m = pq.first()
        if (!m) return
        pq.inFlight++
        let done: boolean
        try {
          done = (await this.#handle(m)) || (await this.#orderlyFailed(m, pq.queue))
        } finally {
          pq.inFlight--
        }
        if (done) {
          const offset = pq.remove([m])
          if (!pq.dropped || this.#closing.signal.aborted) this.#offsets.update(pq.queue, offset, true)
        } else await sleep(this.#limits.suspendOrderlyMs, pq.abort.signal)
      }
    } finally {
      pq.consuming = false
    }
    // Messages may have arrived while the loop was ending.
    if (!pq.dropped && pq.count > 0 && !this.#closing.signal.aborted) void this.#consumeOrderly(pq)
  }

  /**
   * A send-back may have just created the group's retry topic (the first of a new group): its
   * route is asked for until the nameservers have it (the broker registers it at once), then the
   * member rebalances, so the retry comes after its delay and not after the next periodic
   * rebalance (20 s).
   */
  #watchRetryRoute(): void {
    if (!this.#retryRouteMissing || this.#watchingRetryRoute) return
    this.#watchingRetryRoute = true
    const topic = retryTopic(this.group)
    void (async () => {
      try {
        for (let i = 0; i < RETRY_ROUTE_ATTEMPTS && !this.#closing.signal.aborted; i++) {
          if (await this.instance.route(topic, true).catch(() => undefined)) return await this.rebalance()
          await sleep(RETRY_ROUTE_WAIT_MS, this.#closing.signal)
        }
      } finally {
        this.#watchingRetryRoute = false
      }
    })().catch((err: unknown) => this.#error(err))
  }

  /**
   * An orderly message failed (RocketMQ's checkReconsumeTimes): it is retried in place, its
   * reconsumeTimes counting up, until it has failed with reconsumeTimes = maxReconsumeTimes; then
   * it goes to the DLQ at once (clustering; it does not come back through the retry topic, which
   * would break the order and deliver it again) or is dropped (broadcasting). Answers whether the
   * queue may move on.
   */
  async #orderlyFailed(m: MessageExt, q: MessageQueue): Promise<boolean> {
    if (m.reconsumeTimes >= this.#limits.maxReconsume) {
      if (this.messageModel === 'BROADCASTING') return true
      if (await this.#sendBack(m, q, { delayLevel: SEND_BACK_TO_DLQ, reconsumeTimes: m.reconsumeTimes })) return true
    }
    m.reconsumeTimes++
    return false
  }

  /**
   * Hands a failed message to the broker for redelivery (CONSUMER_SEND_MSG_BACK). When the
   * broker does not take it, re-sends it to the group's retry topic, as RocketMQ's client does.
   * Answers whether one of the two worked.
   */
  async #sendBack(m: MessageExt, q: MessageQueue, how: SendBackMode = { delayLevel: 0, reconsumeTimes: m.reconsumeTimes + 1 }): Promise<boolean> {
    try {
      const addr = await this.instance.brokerAddress(q.brokerName, q.topic)
      const req = RemotingCommand.createRequest(RequestCode.CONSUMER_SEND_MSG_BACK, {
        offset: String(m.commitLogOffset),
        group: this.group,
        delayLevel: String(how.delayLevel),
        originMsgId: m.msgId,
        originTopic: m.topic,
        unitMode: 'false',
        maxReconsumeTimes: String(this.#limits.maxReconsume),
      })
      checkResponse(await this.instance.invokeBroker(addr, req), `send-back of ${m.msgId} to ${q.brokerName}`)
      if (how.delayLevel !== SEND_BACK_TO_DLQ) this.#watchRetryRoute()
      return true
    } catch (err) {
      if (!(isClientError(err, 'BROKER_ERROR') && err.responseCode === ResponseCode.REQUEST_CODE_NOT_SUPPORTED)) this.#error(err)
    }
    try {
      await this.#resendToRetryTopic(m, how.reconsumeTimes)
      if (how.delayLevel !== SEND_BACK_TO_DLQ) this.#watchRetryRoute()
      return true
    } catch (err) {
      this.#error(err)
      return false
    }
  }

  async #resendToRetryTopic(m: MessageExt, reconsumeTimes: number): Promise<void> {
    this.#fallbackProducer ??= await Producer.start({ ...(this.#options as ProducerOptions), group: `CLIENT_INNER_PRODUCER`, instanceName: `${this.instance.clientId.split('@')[1]}-retry` })
    const properties: Record<string, string> = { ...m.properties }
    for (const k of [PROPERTY.MIN_OFFSET, PROPERTY.MAX_OFFSET, PROPERTY.CLUSTER, PROPERTY.UNIQ_KEY, PROPERTY.DELAY]) delete properties[k]
    properties[PROPERTY.RETRY_TOPIC] ??= m.topic
    properties[PROPERTY.ORIGIN_MESSAGE_ID] ??= m.msgId
    // The broker puts it in the DLQ once RECONSUME_TIME reaches MAX_RECONSUME_TIMES.
    properties[PROPERTY.RECONSUME_TIME] = String(reconsumeTimes)
    properties[PROPERTY.MAX_RECONSUME_TIMES] = String(this.#limits.maxReconsume)
    const resent: InternalMessage = {
      topic: retryTopic(this.group),
      body: m.body,
      flag: m.flag,
      // RocketMQ's fallback delays by 3 + reconsumeTimes levels.
      delayLevel: 3 + m.reconsumeTimes,
      [SYSTEM_PROPERTIES]: properties,
    }
    await this.#fallbackProducer.send(resent)
  }

  /** LOCK_BATCH_MQ for these queues, broker by broker; answers whether all were locked. */
  async #lock(pqs: ProcessQueue[]): Promise<boolean> {
    const byBroker = new Map<string, ProcessQueue[]>()
    for (const pq of pqs) byBroker.set(pq.queue.brokerName, [...(byBroker.get(pq.queue.brokerName) ?? []), pq])
    let all = true
    for (const [brokerName, list] of byBroker) {
      for (const pq of list) pq.lockTriedAt = Date.now()
      try {
        const addr = await this.instance.brokerAddress(brokerName, list[0]!.queue.topic)
        const body = encodeRemotingJson({ consumerGroup: this.group, clientId: this.instance.clientId, onlyThisBroker: false, mqSet: list.map((p) => p.queue) })
        const res = checkResponse(await this.instance.invokeBroker(addr, RemotingCommand.createRequest(RequestCode.LOCK_BATCH_MQ, {}, body)), `lock of ${list.length} queue(s) on ${brokerName}`)
        const ok = new Set(((parseRemotingJson(res.body) as { lockOKMQSet?: MessageQueue[] } | null)?.lockOKMQSet ?? []).map((q) => queueKey({ ...q, queueId: Number(q.queueId) })))
        const now = Date.now()
        for (const pq of list) {
          pq.locked = ok.has(queueKey(pq.queue))
          if (pq.locked) pq.lockedAt = now
          else all = false
        }
      } catch (err) {
        this.#error(err)
        all = false
      }
    }
    return all
  }

  /**
   * Orderly: asks again for the lock of a queue this member owns but may not consume (refused,
   * or expired without renewal), at most every relockIntervalMs, instead of waiting for the next
   * renewal round (RocketMQ's tryLockLaterAndReconsume).
   */
  async #relock(pq: ProcessQueue): Promise<void> {
    const wait = pq.lockTriedAt + CLIENT_DEFAULTS.relockIntervalMs - Date.now()
    if (wait > 0) return sleep(Math.min(wait, 200), pq.abort.signal)
    if (pq.locked) {
      this.instance.logger.warn(`consumer ${this.group}: the lock of ${queueKey(pq.queue)} was not renewed for ${this.#limits.lockMaxLiveMs} ms: taken as lost, consuming stops until it is locked again`)
      pq.locked = false
    }
    await this.#lock([pq])
  }

  async #lockAll(): Promise<void> {
    const pqs = [...this.#queues.values()]
    if (pqs.length > 0) await this.#lock(pqs)
  }

  async #unlock(pqs: ProcessQueue[]): Promise<void> {
    for (const pq of pqs) {
      try {
        const addr = await this.instance.brokerAddress(pq.queue.brokerName, pq.queue.topic)
        const body = encodeRemotingJson({ consumerGroup: this.group, clientId: this.instance.clientId, onlyThisBroker: false, mqSet: [pq.queue] })
        checkResponse(await this.instance.invokeBroker(addr, RemotingCommand.createRequest(RequestCode.UNLOCK_BATCH_MQ, {}, body)), `unlock of ${queueKey(pq.queue)}`)
        pq.locked = false
      } catch (err) {
        this.#error(err)
      }
    }
  }

  async #persistAll(): Promise<void> {
    await this.#offsets.persist(this.assignedQueues())
  }

  /**
   * Stops pulling, lets running handlers finish (up to 5 s), commits the offsets, unlocks
   * orderly queues and unregisters from the brokers (the other members then rebalance).
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#closing.abort()
      for (const t of this.#timers) clearInterval(t)
      await this.#rebalancing?.catch(() => undefined)
      const pqs = [...this.#queues.values()]
      for (const pq of pqs) pq.drop()
      const until = Date.now() + 5_000
      while (pqs.some((pq) => pq.inFlight > 0) && Date.now() < until) await sleep(10)
      if (this.#started) {
        await this.#offsets.persist(pqs.map((pq) => pq.queue))
        if (this.#lockedMode()) await this.#unlock(pqs.filter((pq) => pq.locked))
        this.instance.removeMember(this)
        await this.instance.unregister({ consumerGroup: this.group })
      }
      this.#queues.clear()
      await this.#fallbackProducer?.close()
      await this.instance.close()
    })()
    return this.#closed
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}
