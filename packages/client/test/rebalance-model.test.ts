// Seeded model tests of rebalancing. Pure: the average allocation strategy against a plain
// model of RocketMQ's AllocateMessageQueueAveragely over random queue sets and member ids
// (REBALANCE_ALLOC_CASES cases). Live: members of one clustering group join, leave, drop
// (connections destroyed, no unregister) and have their connection to the broker cut (they
// reconnect), alone or several at once, against an in-process nameserver and broker while a
// producer sends; after each change the group must settle on the model's allocation, and every
// message sent must be consumed, duplicates only across a change (REBALANCE_MODEL_STEPS steps).
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
import { startCluster, waitFor } from './cluster.js'

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

test(`live rebalance model: members join, leave, drop and get cut off while a producer sends (seed ${SEED}; SEED=<n> replays, REBALANCE_MODEL_STEPS=${LIVE_STEPS})`, { timeout: 60_000 + LIVE_STEPS * 15_000 }, () => runLive(false))

// Orderly: the broker's queue locks must keep a queue's handler on one member at a time, through
// every change. No drops: a killed member's locks stay on the broker for its 60 s expiry.
test(`live rebalance model, orderly: members join, leave and get cut off; one member at a time per queue, in order (seed ${SEED}; SEED=<n> replays, REBALANCE_MODEL_STEPS=${LIVE_STEPS})`, { timeout: 60_000 + LIVE_STEPS * 15_000 }, () => runLive(true))

async function runLive(orderly: boolean): Promise<void> {
  const rnd = seededRandom((SEED ^ 0x5eed) + (orderly ? 1 : 0))
  // Handler durations (their own stream: handlers run in an order the seed does not fix).
  const handlerRnd = seededRandom(SEED + 7)
  const cluster = await startCluster({ brokers: 1 })
  const producer = await Producer.start({ namesrv: cluster.namesrv, group: 'RBM_PG', clientIP: '127.0.0.1' })
  const members: Member[] = []
  const sent = new Set<string>()
  const deliveries = new Map<string, Delivery[]>()
  const log: string[] = []
  let epoch = 0
  let settled = true
  /** The kind of each change by epoch (epoch 0: before the first). */
  const kinds: string[] = ['start']
  let seq = 0
  /** Every delivery in the order the handlers were called. */
  const inOrder: Delivery[] = []
  /** Orderly: the member whose handler runs on each queue now, and any overlap seen. */
  const running = new Map<number, string>()
  const overlaps: string[] = []
  const live = (): Member[] => members.filter((m) => m.state === 'live')
  try {
    const queueCount = randomInt(rnd, 1, 10)
    await cluster.createTopic(TOPIC, queueCount)
    const allQueues: MessageQueue[] = []
    for (let q = 0; q < queueCount; q++) allQueues.push({ topic: TOPIC, brokerName: 'broker-a', queueId: q })
    log.push(`topic ${TOPIC} with ${queueCount} queues`)

    const held = (m: Member): MessageQueue[] => m.consumer.assignedQueues().filter((q) => q.topic === TOPIC)
    const settledOnModel = (): boolean => {
      const ids = live().map((m) => m.consumer.instance.clientId)
      return live().every((m) => JSON.stringify([...held(m)].sort(modelQueueOrder)) === JSON.stringify(modelAverage(allQueues, ids, m.consumer.instance.clientId)))
    }
    const checkDisjointCover = (): void => {
      if (live().length === 0) return
      const owner = new Map<string, string>()
      for (const m of live()) {
        for (const q of held(m)) {
          const k = queueKey(q)
          assert.equal(owner.get(k), undefined, `${k} held by ${owner.get(k)} and ${m.name} (SEED=${SEED})\n${log.join('\n')}`)
          owner.set(k, m.name)
        }
      }
      assert.deepEqual([...owner.keys()].sort(), allQueues.map(queueKey).sort(), `live members cover every queue (SEED=${SEED})\n${log.join('\n')}`)
    }
    const settle = async (what: string): Promise<void> => {
      try {
        await waitFor(settledOnModel, SETTLE_MS, `the group to settle after ${what}`)
      } catch (err) {
        const state = live().map((m) => `${m.name}=${m.consumer.instance.clientId}: ${held(m).map((q) => q.queueId).join(',')}`)
        throw new Error(`${(err as Error).message} (SEED=${SEED}); holding: ${state.join('; ')}\n${log.join('\n')}`)
      }
      // A rebalance that read the members before the change may still be applying them: one more
      // round for everyone (a member asked while rebalancing runs again with a fresh list) must
      // leave the allocation as it is.
      await Promise.all(live().map((m) => m.consumer.rebalance()))
      assert.ok(settledOnModel(), `the allocation moved after the group settled on ${what} (SEED=${SEED})\n${log.join('\n')}`)
      settled = true
      checkDisjointCover()
    }
    const changeBegins = (kind: string): void => {
      kinds.push(kind)
      epoch++
      settled = false
    }

    // A change only begins here; the caller waits for the group to settle (several changes
    // may be under way at once).
    const join = async (): Promise<void> => {
      const name = `m${members.length}`
      const member: Member = { name, consumer: new PushConsumer({ namesrv: cluster.namesrv, group: GROUP, consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET', instanceName: name, orderly, ...FAST }), state: 'live' }
      member.consumer.subscribe(TOPIC, '*', async (m: MessageExt) => {
        // A dropped member stands for a killed process: what it does afterwards is not seen.
        if (member.state === 'dropped') return
        const body = m.body.toString()
        const list = deliveries.get(body) ?? []
        const owner = member.consumer.assignedQueues().some((q) => q.topic === m.topic && q.queueId === m.queueId)
        const delivery = { member: name, queueId: m.queueId, queueOffset: m.queueOffset, owner, epoch, settled }
        list.push(delivery)
        deliveries.set(body, list)
        inOrder.push(delivery)
        const other = running.get(m.queueId)
        if (orderly && other !== undefined && other !== name) overlaps.push(`${name} and ${other} consumed queue ${m.queueId} at once (${body})`)
        running.set(m.queueId, name)
        // A handler that takes a little while, so a change can come while it runs.
        await new Promise((r) => setTimeout(r, randomInt(handlerRnd, 0, 4)))
        if (running.get(m.queueId) === name) running.delete(m.queueId)
      })
      members.push(member)
      changeBegins('join')
      log.push(`join ${name}`)
      await member.consumer.start()
    }
    const leave = async (m: Member): Promise<void> => {
      changeBegins('leave')
      log.push(`leave ${m.name}`)
      m.state = 'left'
      await m.consumer.close()
    }
    const drop = async (m: Member): Promise<void> => {
      changeBegins('drop')
      log.push(`drop ${m.name}`)
      m.state = 'dropped'
      // Its connections close with no UNREGISTER_CLIENT and no offset commit, as when the
      // process is killed: the broker forgets it when the channel closes.
      await m.consumer.instance.remoting.close()
    }
    const cut = async (m: Member): Promise<void> => {
      changeBegins('cut')
      log.push(`cut ${m.name}`)
      // Its connection to the broker closes under it (a network fault): the broker forgets the
      // member at once, the member reconnects and is back in the group with its next heartbeat.
      // The change is over only when both happened, else the group could look settled before it.
      const broker = cluster.brokers[0]!
      const id = m.consumer.instance.clientId
      const channel = await m.consumer.instance.remoting.channel(broker.address)
      let onClose: ((ch: Channel) => void) | undefined
      const closedAtBroker = new Promise<void>((resolve) => {
        onClose = (ch) => {
          if (ch.remoteAddress === channel.localAddress) resolve()
        }
        broker.server.on('close', onClose)
      })
      channel.close('cut by the test')
      let forgotten = false
      void closedAtBroker.then(() => (forgotten = true))
      try {
        await waitFor(() => forgotten, SETTLE_MS, `the broker to see ${m.name}'s connection close`)
      } finally {
        broker.server.off('close', onClose!)
      }
      await waitFor(() => broker.clients.consumerGroup(GROUP)?.clientIds().includes(id) ?? false, SETTLE_MS, `${m.name} back in the group`)
    }
    const send = async (): Promise<void> => {
      const n = randomInt(rnd, 10, 60)
      log.push(`send ${n}`)
      const bodies: string[] = []
      for (let i = 0; i < n; i++) bodies.push(`r${seq++}`)
      const sizes: number[] = []
      for (let left = n; left > 0; left -= sizes[sizes.length - 1]!) sizes.push(Math.min(left, randomInt(rnd, 1, 16)))
      // Batches of random sizes, and single sends.
      for (const size of sizes) {
        const batch = bodies.splice(0, size)
        if (batch.length === 1) await producer.send({ topic: TOPIC, body: batch[0]! })
        else await producer.sendBatch(batch.map((body) => ({ topic: TOPIC, body })))
        for (const b of batch) sent.add(b)
      }
    }
    /**
     * One change drawn at random among those possible after the changes already drawn for this
     * step (`plan` counts the joins and holds the members already leaving or dropped).
     */
    const someChange = (plan: { joins: number; taken: Set<Member> }): (() => Promise<void>) | undefined => {
      const candidates = live().filter((m) => !plan.taken.has(m))
      const kinds: Array<'join' | 'leave' | 'drop' | 'cut'> = []
      if (candidates.length + plan.joins < MAX_LIVE) kinds.push('join')
      if (candidates.length > 0) kinds.push(...(orderly ? (['leave', 'cut'] as const) : (['leave', 'drop', 'cut'] as const)))
      if (kinds.length === 0) return undefined
      const kind = pick(rnd, kinds)
      if (kind === 'join') {
        plan.joins++
        return join
      }
      const m = pick(rnd, candidates)
      plan.taken.add(m)
      return kind === 'leave' ? () => leave(m) : kind === 'drop' ? () => drop(m) : () => cut(m)
    }

    await join()
    await settle('the first join')
    for (let step = 0; step < LIVE_STEPS; step++) {
      const kind = pick(rnd, ['send', 'send', 'change', 'change', 'change-while-sending', 'burst'] as const)
      if (kind === 'send') {
        await send()
        continue
      }
      // Draw every change of the step before running any (each draw sees the members the
      // earlier draws of the step left live).
      const changes: Array<() => Promise<void>> = []
      const plan = { joins: 0, taken: new Set<Member>() }
      for (let i = kind === 'burst' ? randomInt(rnd, 2, 3) : 1; i > 0; i--) {
        const c = someChange(plan)
        if (c) changes.push(c)
      }
      const running = changes.map((c) => c())
      if (kind === 'change-while-sending') running.push(send())
      await Promise.all(running)
      await settle(`step ${step} (${kind})`)
    }
    if (live().length === 0) {
      await join()
      await settle('the last join')
    }
    await send()

    const consumed = (): boolean => [...sent].every((b) => deliveries.has(b))
    try {
      await waitFor(consumed, 30_000, 'every message sent to be consumed')
    } catch (err) {
      const missing = [...sent].filter((b) => !deliveries.has(b))
      throw new Error(`${(err as Error).message} (SEED=${SEED}): ${missing.length} missing, first ${missing.slice(0, 10).join(',')}\n${log.join('\n')}`)
    }
    // Let late redeliveries show up before they are judged.
    await new Promise((r) => setTimeout(r, 500))

    const duplicates = new Map<string, number>()
    for (const [body, list] of deliveries) {
      assert.ok(sent.has(body), `consumed ${body}, never sent (SEED=${SEED})`)
      // Once the group settled, a member consumes only the queues it holds (a queue given up
      // keeps no handler running on what it had cached).
      const stray = list.find((d) => d.settled && !d.owner)
      assert.equal(stray, undefined, `${body} consumed by ${stray?.member}, which did not hold queue ${stray?.queueId} after the group settled (SEED=${SEED})\n${log.join('\n')}`)
      for (let i = 1; i < list.length; i++) {
        const kind = kinds[list[i]!.epoch]!
        if (VERBOSE) console.log(`${body} ${JSON.stringify(list)}`)
        duplicates.set(kind, (duplicates.get(kind) ?? 0) + 1)
        const before = list[i - 1]!
        const again = list[i]!
        // At least once: a message comes again only when ownership may have moved between the
        // two deliveries (a change began, or one came while the group had not settled).
        const aroundChange = again.epoch > before.epoch || !before.settled || !again.settled
        assert.ok(aroundChange, `${body} delivered again with no membership change between: ${JSON.stringify(list)} (SEED=${SEED})\n${log.join('\n')}`)
      }
    }
    if (VERBOSE) console.log(log.join('\n'))
    if (orderly) {
      assert.deepEqual(overlaps, [], `one member at a time per queue (SEED=${SEED})\n${log.join('\n')}`)
      // Per queue, offsets only go up, except when a change moved the queue (its new owner
      // starts from the committed offset).
      const last = new Map<number, Delivery>()
      for (const d of inOrder) {
        const before = last.get(d.queueId)
        if (before && d.queueOffset <= before.queueOffset) {
          const aroundChange = d.epoch > before.epoch || !before.settled || !d.settled
          assert.ok(aroundChange, `queue ${d.queueId} went from offset ${before.queueOffset} (${before.member}) back to ${d.queueOffset} (${d.member}) with no change between (SEED=${SEED})\n${log.join('\n')}`)
        }
        last.set(d.queueId, d)
      }
    }
    // Everything consumed is committed: the group's offset of every queue reaches the queue's end.
    const probe = live()[0]!.consumer.instance
    const ends = await Promise.all(allQueues.map((q) => queueOffset(probe, q, 'max')))
    const committedAll = async (): Promise<boolean> => (await Promise.all(allQueues.map((q) => queryConsumerOffset(probe, GROUP, q)))).every((o, i) => o === ends[i])
    await waitFor(committedAll, 10_000, `the group's offsets to reach the queue ends ${ends.join(',')} (SEED=${SEED})`)
    console.log(`# rebalance model${orderly ? ', orderly' : ''} (seed ${SEED}): ${queueCount} queues, ${members.length} members, ${epoch} changes, ${sent.size} messages, duplicate deliveries after ${JSON.stringify(Object.fromEntries(duplicates))}`)
  } finally {
    for (const m of members) await m.consumer.close().catch(() => undefined)
    await producer.close()
    await cluster.stop()
  }
}
