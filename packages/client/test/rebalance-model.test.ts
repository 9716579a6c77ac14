// Seeded model tests of rebalancing. Pure: the average allocation strategy against a plain
// model of RocketMQ's AllocateMessageQueueAveragely over random queue sets and member ids
// (REBALANCE_ALLOC_CASES cases). Live: members of one clustering group join, leave, drop
// (connections destroyed, no unregister) and have their connection to the broker cut (they
// reconnect), alone or several at once, against an in-process nameserver and broker while a
// producer sends, in concurrent and in orderly mode; after each change the group must settle on
// the model's allocation, and every message sent must be consumed, duplicates only across a
// change, an orderly queue never consumed by two members at once (REBALANCE_MODEL_STEPS steps).
// The seed is in the test names; SEED=<n> replays. A duplicate is counted under the change
// during which it came (a member dropped right after it joined loses everything it consumed
// since its last commit; the next owner delivers it again, counted under that owner's join).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { countFromEnv, pick, randomInt, seedFromEnv, seededRandom } from '@mqts/common'
import { allocateAveragely } from '../src/allocate.js'
import type { MessageExt } from '../src/message.js'
import { Producer } from '../src/producer.js'
import { queryConsumerOffset, queueOffset } from '../src/pull-api.js'
import { PushConsumer } from '../src/push-consumer.js'
import { queueKey, type MessageQueue } from '../src/route.js'
import type { Channel } from '@mqts/transport'
import { startCluster, waitFor, type TestCluster } from './cluster.js'

const SEED = seedFromEnv()
const ALLOC_CASES = countFromEnv('REBALANCE_ALLOC_CASES', 3000)
const LIVE_STEPS = countFromEnv('REBALANCE_MODEL_STEPS', 8)
/** REBALANCE_MODEL_VERBOSE=1 prints the steps and every duplicate's deliveries. */
const VERBOSE = process.env.REBALANCE_MODEL_VERBOSE === '1'

// ---------------------------------------------------------------------------------------------
// The model of the strategy

/** Java's String.compareTo: UTF-16 code units, then length. */
function javaCompare(a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const d = a.charCodeAt(i) - b.charCodeAt(i)
    if (d !== 0) return d
  }
  return a.length - b.length
}

/** MessageQueue.compareTo: topic, then broker name, then queue id. */
function modelQueueOrder(a: MessageQueue, b: MessageQueue): number {
  return javaCompare(a.topic, b.topic) || javaCompare(a.brokerName, b.brokerName) || a.queueId - b.queueId
}

/**
 * RocketMQ's average rule, stated as blocks: the queues and the member ids are sorted (the
 * rebalance sorts both before allocating); member i of n takes the next contiguous block of
 * the queue list, floor(Q / n) long, one longer for the first Q mod n members. A member absent
 * from the list, or no queues, gets nothing.
 */
function modelAverage(queues: readonly MessageQueue[], ids: readonly string[], id: string): MessageQueue[] {
  const sortedQueues = [...queues].sort(modelQueueOrder)
  const sortedIds = [...ids].sort(javaCompare)
  const rank = sortedIds.indexOf(id)
  if (rank < 0) return []
  const n = sortedIds.length
  const size = (i: number): number => Math.floor(sortedQueues.length / n) + (i < sortedQueues.length % n ? 1 : 0)
  let start = 0
  for (let i = 0; i < rank; i++) start += size(i)
  return sortedQueues.slice(start, start + size(rank))
}

function shuffled<T>(rnd: () => number, items: readonly T[]): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomInt(rnd, 0, i)
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

// Characters chosen so that the code-unit order differs from a locale order ('#' < '.' < digits < '@' < upper < lower).
const ID_CHARS = ['1', '2', '9', '0', '.', '#', '@', 'A', 'a', 'Z', 'z', '-', '_']

function randomId(rnd: () => number): string {
  const ip = `${randomInt(rnd, 1, 12)}.0.0.${randomInt(rnd, 1, 3)}`
  let instance = String(randomInt(rnd, 1, 99999))
  if (rnd() < 0.4) instance += `#${randomInt(rnd, 0, 20)}`
  for (let i = randomInt(rnd, 0, 2); i > 0; i--) instance += pick(rnd, ID_CHARS)
  return `${ip}@${instance}`
}

function randomQueues(rnd: () => number): MessageQueue[] {
  const topic = pick(rnd, ['T', 'Orders', '%RETRY%CG', 'topic-b'])
  const names = new Set<string>()
  for (let i = randomInt(rnd, 1, 5); i > 0; i--) names.add(pick(rnd, ['broker-a', 'broker-b', 'Broker-C', 'broker-a2', 'b', 'broker_10', 'broker-9']))
  const out: MessageQueue[] = []
  for (const brokerName of names) for (let q = randomInt(rnd, 0, 16); q > 0; q--) out.push({ topic, brokerName, queueId: q - 1 })
  return out
}

test(`allocateAveragely matches RocketMQ's average rule on random queues and members (seed ${SEED}; SEED=<n> replays, REBALANCE_ALLOC_CASES=${ALLOC_CASES})`, () => {
  for (let c = 0; c < ALLOC_CASES; c++) {
    const rnd = seededRandom((SEED + c) >>> 0)
    const queues = randomQueues(rnd)
    const ids = new Set<string>()
    for (let i = randomInt(rnd, 1, 12); i > 0; i--) ids.add(randomId(rnd))
    const members = [...ids]
    const where = `case ${c} (SEED=${SEED}): ${queues.length} queues, members ${JSON.stringify(members)}`
    const owner = new Map<string, string>()
    const shares: number[] = []
    for (const id of members) {
      const got = allocateAveragely(shuffled(rnd, queues), shuffled(rnd, members), id)
      // The order queues and ids come in does not matter.
      assert.deepEqual(allocateAveragely(shuffled(rnd, queues), shuffled(rnd, members), id), got, `${where}: order changed the share of ${id}`)
      assert.deepEqual(got, modelAverage(queues, members, id), `${where}: share of ${id}`)
      for (const q of got) {
        const k = queueKey(q)
        assert.equal(owner.get(k), undefined, `${where}: ${k} given to ${owner.get(k)} and ${id}`)
        owner.set(k, id)
      }
      shares.push(got.length)
    }
    assert.equal(owner.size, queues.length, `${where}: every queue has an owner`)
    assert.ok(Math.max(...shares) - Math.min(...shares) <= 1, `${where}: shares ${shares.join(',')} differ by more than one`)
    // A member the broker does not list gets nothing.
    assert.deepEqual(allocateAveragely(queues, members, '127.0.0.1@not-listed'), [], where)
  }
})

// ---------------------------------------------------------------------------------------------
// Live: a group over a real nameserver and broker

const TOPIC = 'RBM'
const GROUP = 'RBM_CG'
// A short heartbeat brings a member whose connection was cut back into the group soon.
const FAST = { rebalanceIntervalMs: 300, persistOffsetIntervalMs: 200, heartbeatIntervalMs: 500, suspendMs: 1000, pullDelayOnErrorMs: 100, clientIP: '127.0.0.1' }
const SETTLE_MS = 20_000
const MAX_LIVE = 4

type ChangeKind = 'join' | 'leave' | 'drop' | 'cut'
type StepKind = 'send' | 'change' | 'change-while-sending' | 'burst'
const STEP_KINDS: readonly StepKind[] = ['send', 'send', 'change', 'change', 'change-while-sending', 'burst']

interface Member {
  name: string
  consumer: PushConsumer
  state: 'live' | 'left' | 'dropped'
}

interface Delivery {
  member: string
  queueId: number
  queueOffset: number
  /** Whether the member held the message's queue when its handler was called. */
  owner: boolean
  /** Membership changes begun before this delivery. */
  epoch: number
  /** Whether the group had settled on the change of `epoch` when this delivery came. */
  settled: boolean
}

/** Whether two deliveries (of one message, or of one queue going back) have a change between them. */
function aroundChange(before: Delivery, after: Delivery): boolean {
  return after.epoch > before.epoch || !before.settled || !after.settled
}

test(`live rebalance model: members join, leave, drop and get cut off while a producer sends (seed ${SEED}; SEED=<n> replays, REBALANCE_MODEL_STEPS=${LIVE_STEPS})`, { timeout: 60_000 + LIVE_STEPS * 15_000 }, () => runLive(false))

// Orderly: the broker's queue locks must keep a queue's handler on one member at a time, through
// every change. No drops: a killed member's locks stay on the broker for its 60 s expiry.
test(`live rebalance model, orderly: members join, leave and get cut off; one member at a time per queue, in order (seed ${SEED}; SEED=<n> replays, REBALANCE_MODEL_STEPS=${LIVE_STEPS})`, { timeout: 60_000 + LIVE_STEPS * 15_000 }, () => runLive(true))

async function runLive(orderly: boolean): Promise<void> {
  const cluster = await startCluster({ brokers: 1 })
  const producer = await Producer.start({ namesrv: cluster.namesrv, group: 'RBM_PG', clientIP: '127.0.0.1' })
  const run = new LiveRun(cluster, producer, orderly)
  try {
    await run.play()
  } finally {
    await run.closeMembers()
    await producer.close()
    await cluster.stop()
  }
}

/** One seeded run: the steps, the state the checks need, and the checks. */
class LiveRun {
  readonly rnd: () => number
  /** Handler durations (their own stream: handlers run in an order the seed does not fix). */
  readonly handlerRnd = seededRandom(SEED + 7)
  readonly members: Member[] = []
  readonly sent = new Set<string>()
  readonly deliveries = new Map<string, Delivery[]>()
  /** Every delivery in the order the handlers were called. */
  readonly inOrder: Delivery[] = []
  /** Orderly: the member whose handler runs on each queue now, and any overlap seen. */
  readonly running = new Map<number, string>()
  readonly overlaps: string[] = []
  readonly log: string[] = []
  /** The kind of each change by epoch (epoch 0: before the first). */
  readonly kinds: string[] = ['start']
  readonly queues: MessageQueue[] = []
  epoch = 0
  settled = true
  seq = 0

  constructor(
    readonly cluster: TestCluster,
    readonly producer: Producer,
    readonly orderly: boolean,
  ) {
    this.rnd = seededRandom((SEED ^ 0x5eed) + (orderly ? 1 : 0))
  }

  async play(): Promise<void> {
    const queueCount = randomInt(this.rnd, 1, 10)
    await this.cluster.createTopic(TOPIC, queueCount)
    for (let q = 0; q < queueCount; q++) this.queues.push({ topic: TOPIC, brokerName: 'broker-a', queueId: q })
    this.log.push(`topic ${TOPIC} with ${queueCount} queues`)
    await this.join()
    await this.settle('the first join')
    for (let step = 0; step < LIVE_STEPS; step++) await this.step(step)
    if (this.live().length === 0) {
      await this.join()
      await this.settle('the last join')
    }
    await this.send()
    await this.checkEnd()
  }

  async step(step: number): Promise<void> {
    const kind = pick(this.rnd, STEP_KINDS)
    if (kind === 'send') return this.send()
    // Draw every change of the step before running any (each draw sees the members the
    // earlier draws of the step left live).
    const changes: Array<() => Promise<void>> = []
    const plan = { joins: 0, taken: new Set<Member>() }
    for (let i = kind === 'burst' ? randomInt(this.rnd, 2, 3) : 1; i > 0; i--) {
      const c = this.someChange(plan)
      if (c) changes.push(c)
    }
    const running = changes.map((c) => c())
    if (kind === 'change-while-sending') running.push(this.send())
    await Promise.all(running)
    await this.settle(`step ${step} (${kind})`)
  }

  /**
   * One change drawn at random among those possible after the changes already drawn for this
   * step (`plan` counts the joins and holds the members already taken by a change).
   */
  someChange(plan: { joins: number; taken: Set<Member> }): (() => Promise<void>) | undefined {
    const candidates = this.live().filter((m) => !plan.taken.has(m))
    const kinds: ChangeKind[] = []
    if (candidates.length + plan.joins < MAX_LIVE) kinds.push('join')
    if (candidates.length > 0) kinds.push(...(this.orderly ? (['leave', 'cut'] as const) : (['leave', 'drop', 'cut'] as const)))
    if (kinds.length === 0) return undefined
    const kind = pick(this.rnd, kinds)
    if (kind === 'join') {
      plan.joins++
      return () => this.join()
    }
    const m = pick(this.rnd, candidates)
    plan.taken.add(m)
    return () => this[kind](m)
  }

  live(): Member[] {
    return this.members.filter((m) => m.state === 'live')
  }

  held(m: Member): MessageQueue[] {
    return m.consumer.assignedQueues().filter((q) => q.topic === TOPIC)
  }

  fail(message: string): Error {
    return new Error(`${message} (SEED=${SEED})\n${this.log.join('\n')}`)
  }

  changeBegins(kind: ChangeKind, name: string): void {
    this.kinds.push(kind)
    this.log.push(`${kind} ${name}`)
    this.epoch++
    this.settled = false
  }

  // --- changes: each only begins the change; the step waits for the group to settle ---------

  async join(): Promise<void> {
    const name = `m${this.members.length}`
    const consumer = new PushConsumer({ namesrv: this.cluster.namesrv, group: GROUP, consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET', instanceName: name, orderly: this.orderly, ...FAST })
    const member: Member = { name, consumer, state: 'live' }
    consumer.subscribe(TOPIC, '*', (m: MessageExt) => this.consume(member, m))
    this.members.push(member)
    this.changeBegins('join', name)
    await consumer.start()
  }

  async leave(m: Member): Promise<void> {
    this.changeBegins('leave', m.name)
    m.state = 'left'
    await m.consumer.close()
  }

  async drop(m: Member): Promise<void> {
    this.changeBegins('drop', m.name)
    m.state = 'dropped'
    // Its connections close with no UNREGISTER_CLIENT and no offset commit, as when the
    // process is killed: the broker forgets it when the channel closes.
    await m.consumer.instance.remoting.close()
  }

  /**
   * Its connection to the broker closes under it (a network fault): the broker forgets the
   * member at once, the member reconnects and is back in the group with its next heartbeat. The
   * change is over only when both happened, else the group could look settled before it.
   */
  async cut(m: Member): Promise<void> {
    this.changeBegins('cut', m.name)
    const broker = this.cluster.brokers[0]!
    const channel = await m.consumer.instance.remoting.channel(broker.address)
    let forgotten = false
    const onClose = (ch: Channel): void => {
      if (ch.remoteAddress === channel.localAddress) forgotten = true
    }
    broker.server.on('close', onClose)
    try {
      channel.close('cut by the test')
      await waitFor(() => forgotten, SETTLE_MS, `the broker to see ${m.name}'s connection close`)
    } finally {
      broker.server.off('close', onClose)
    }
    const id = m.consumer.instance.clientId
    await waitFor(() => broker.clients.consumerGroup(GROUP)?.clientIds().includes(id) ?? false, SETTLE_MS, `${m.name} back in the group`)
  }

  async send(): Promise<void> {
    const n = randomInt(this.rnd, 10, 60)
    this.log.push(`send ${n}`)
    const bodies: string[] = []
    for (let i = 0; i < n; i++) bodies.push(`r${this.seq++}`)
    const sizes: number[] = []
    for (let left = n; left > 0; left -= sizes[sizes.length - 1]!) sizes.push(Math.min(left, randomInt(this.rnd, 1, 16)))
    // Batches of random sizes, and single sends.
    for (const size of sizes) {
      const batch = bodies.splice(0, size)
      if (batch.length === 1) await this.producer.send({ topic: TOPIC, body: batch[0]! })
      else await this.producer.sendBatch(batch.map((body) => ({ topic: TOPIC, body })))
      for (const b of batch) this.sent.add(b)
    }
  }

  /** Every member's handler: records the delivery, and in orderly mode any overlap on its queue. */
  async consume(member: Member, m: MessageExt): Promise<void> {
    // A dropped member stands for a killed process: what it does afterwards is not seen.
    if (member.state === 'dropped') return
    const body = m.body.toString()
    const owner = this.held(member).some((q) => q.queueId === m.queueId)
    const delivery: Delivery = { member: member.name, queueId: m.queueId, queueOffset: m.queueOffset, owner, epoch: this.epoch, settled: this.settled }
    this.deliveries.set(body, [...(this.deliveries.get(body) ?? []), delivery])
    this.inOrder.push(delivery)
    const other = this.running.get(m.queueId)
    if (this.orderly && other !== undefined && other !== member.name) this.overlaps.push(`${member.name} and ${other} consumed queue ${m.queueId} at once (${body})`)
    this.running.set(m.queueId, member.name)
    // A handler that takes a little while, so a change can come while it runs.
    await new Promise((r) => setTimeout(r, randomInt(this.handlerRnd, 0, 4)))
    if (this.running.get(m.queueId) === member.name) this.running.delete(m.queueId)
  }

  // --- checks --------------------------------------------------------------------------------

  /** Whether every live member holds exactly its share by the model, with the live members' ids. */
  onModel(): boolean {
    const ids = this.live().map((m) => m.consumer.instance.clientId)
    return this.live().every((m) => JSON.stringify([...this.held(m)].sort(modelQueueOrder)) === JSON.stringify(modelAverage(this.queues, ids, m.consumer.instance.clientId)))
  }

  async settle(what: string): Promise<void> {
    try {
      await waitFor(() => this.onModel(), SETTLE_MS, `the group to settle after ${what}`)
    } catch (err) {
      const state = this.live().map((m) => `${m.name}=${m.consumer.instance.clientId}: ${this.held(m).map((q) => q.queueId).join(',')}`)
      throw this.fail(`${(err as Error).message}; holding: ${state.join('; ')}`)
    }
    // A rebalance that read the members before the change may still be applying them: one more
    // round for everyone (a member asked while rebalancing runs again with a fresh list) must
    // leave the allocation as it is.
    await Promise.all(this.live().map((m) => m.consumer.rebalance()))
    if (!this.onModel()) throw this.fail(`the allocation moved after the group settled on ${what}`)
    this.settled = true
    this.checkDisjointCover()
  }

  checkDisjointCover(): void {
    if (this.live().length === 0) return
    const owner = new Map<string, string>()
    for (const m of this.live()) {
      for (const q of this.held(m)) {
        const k = queueKey(q)
        if (owner.has(k)) throw this.fail(`${k} held by ${owner.get(k)} and ${m.name}`)
        owner.set(k, m.name)
      }
    }
    assert.deepEqual([...owner.keys()].sort(), this.queues.map(queueKey).sort(), this.fail('live members cover every queue').message)
  }

  async checkEnd(): Promise<void> {
    try {
      await waitFor(() => [...this.sent].every((b) => this.deliveries.has(b)), 30_000, 'every message sent to be consumed')
    } catch (err) {
      const missing = [...this.sent].filter((b) => !this.deliveries.has(b))
      throw this.fail(`${(err as Error).message}: ${missing.length} missing, first ${missing.slice(0, 10).join(',')}`)
    }
    // Let late redeliveries show up before they are judged.
    await new Promise((r) => setTimeout(r, 500))
    const duplicates = this.checkDeliveries()
    if (this.orderly) this.checkOrderly()
    if (VERBOSE) console.log(this.log.join('\n'))
    await this.checkCommitted()
    const mode = this.orderly ? ', orderly' : ''
    console.log(`# rebalance model${mode} (seed ${SEED}): ${this.queues.length} queues, ${this.members.length} members, ${this.epoch} changes, ${this.sent.size} messages, duplicate deliveries after ${JSON.stringify(Object.fromEntries(duplicates))}`)
  }

  /** Nothing consumed that was not sent; once settled only owners consume; duplicates only across a change. Answers the duplicates by change kind. */
  checkDeliveries(): Map<string, number> {
    const duplicates = new Map<string, number>()
    for (const [body, list] of this.deliveries) {
      if (!this.sent.has(body)) throw this.fail(`consumed ${body}, never sent`)
      // Once the group settled, a member consumes only the queues it holds (a queue given up
      // keeps no handler running on what it had cached).
      const stray = list.find((d) => d.settled && !d.owner)
      if (stray) throw this.fail(`${body} consumed by ${stray.member}, which did not hold queue ${stray.queueId} after the group settled`)
      for (let i = 1; i < list.length; i++) {
        if (VERBOSE) console.log(`${body} ${JSON.stringify(list)}`)
        const kind = this.kinds[list[i]!.epoch]!
        duplicates.set(kind, (duplicates.get(kind) ?? 0) + 1)
        // At least once: a message comes again only when ownership may have moved between the
        // two deliveries (a change began, or one came while the group had not settled).
        if (!aroundChange(list[i - 1]!, list[i]!)) throw this.fail(`${body} delivered again with no membership change between: ${JSON.stringify(list)}`)
      }
    }
    return duplicates
  }

  /** One member at a time per queue; per queue, offsets go back only across a change (its new owner starts from the committed offset). */
  checkOrderly(): void {
    if (this.overlaps.length > 0) throw this.fail(`one member at a time per queue: ${this.overlaps.join('; ')}`)
    const last = new Map<number, Delivery>()
    for (const d of this.inOrder) {
      const before = last.get(d.queueId)
      if (before && d.queueOffset <= before.queueOffset && !aroundChange(before, d)) {
        throw this.fail(`queue ${d.queueId} went from offset ${before.queueOffset} (${before.member}) back to ${d.queueOffset} (${d.member}) with no change between`)
      }
      last.set(d.queueId, d)
    }
  }

  /** Everything consumed is committed: the group's offset of every queue reaches the queue's end. */
  async checkCommitted(): Promise<void> {
    const probe = this.live()[0]!.consumer.instance
    const ends = await Promise.all(this.queues.map((q) => queueOffset(probe, q, 'max')))
    const committed = async (): Promise<boolean> => (await Promise.all(this.queues.map((q) => queryConsumerOffset(probe, GROUP, q)))).every((o, i) => o === ends[i])
    await waitFor(committed, 10_000, `the group's offsets to reach the queue ends ${ends.join(',')} (SEED=${SEED})`)
  }

  async closeMembers(): Promise<void> {
    for (const m of this.members) await m.consumer.close().catch(() => undefined)
  }
}
