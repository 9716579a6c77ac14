// A seeded model test of the broker over TCP: random topic updates (growing and shrinking queue
// counts, perms 2/4/6, configs it refuses), deletions (also with sends to the topic under way),
// single, V1 and batch sends (to refused queues and topics too, and to deleted topics, which
// auto-creation brings back), bursts of concurrent sends, pulls at random offsets with random tag
// subscriptions, pulls held at a queue's end until a send (long polling), consumer offsets
// (committed directly and through pulls), queries by key, unique key and id, and restarts on the
// same directory, each answer checked against a plain in-memory model; every few steps and after
// each restart the whole state (every queue's records, max and min offsets, consumer offsets,
// topics) is compared. SEED=<n> replays a run, BROKER_MODEL_STEPS sets its length; a failure
// names the seed, the step and the last steps. Odd seeds run the store with SYNC_FLUSH.
// Restarts are graceful (stop() then start on the same directory); with SYNC_FLUSH some are
// crashes instead: the broker runs in a child process (model-child.ts), takes a few sends, and is
// SIGKILLed while more sends are under way, then starts here again (what of those was stored
// depends on timing, so a replay may differ after such a step; every acknowledged one must be
// there, and none unanswered may come back torn: a kill once cut a write inside a record's
// properties and recovery kept it).
// Not modelled: delayed messages, retries and the DLQ (broker.test.ts covers them by example).
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { countFromEnv, pick, randomInt, seedFromEnv, seededRandom } from '@mqts/common'
import { encodeProperties } from '@mqts/store'
import { RemotingCommand, RequestCode, ResponseCode, encodeBatchBody, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { Broker } from '../src/index.js'
import { T, createTopicRequest, pull, records, sendV2 } from './helpers.js'
import { modelBrokerOptions } from './model-child.js'

const STEPS = countFromEnv('BROKER_MODEL_STEPS', 300)
/** Full comparisons every this many steps (each reads every queue). */
const CHECK_EVERY = 10

/** The crash steps' child process: a SYNC_FLUSH broker on a directory until it is killed. */
const CHILD = fileURLToPath(new URL('./model-child.js', import.meta.url))

const TOPICS = ['MT0', 'MT1', 'MT2']
const GROUPS = ['G0', 'G1']
const TAGS = [undefined, 'TagA', 'TagB', 'TagC'] as const
const SUBSCRIPTIONS = ['*', 'TagA', 'TagA || TagB', 'TagC']
const KEYS = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7']
/** TBW102's queue counts: what a send to an unknown topic creates it with. */
const AUTO_QUEUES = 4
/** What QUERY_MESSAGE answers at most for a key (the broker's default maxNum here). */
const QUERY_MAX = 32

interface ModelMessage {
  body: string
  tags: string | undefined
  keys: string[]
  queueOffset: number
  physicalOffset: number
  /** The UNIQ_KEY the broker gave a single send (its answer's transactionId). */
  uniqKey?: string
}

interface ModelTopic {
  read: number
  write: number
  perm: number
}

/** The broker as a client sees it: topics, every queue's messages, committed consumer offsets. */
class Model {
  readonly topics = new Map<string, ModelTopic>()
  /** "topic@queueId" -> its messages in queue order. */
  readonly queues = new Map<string, ModelMessage[]>()
  /** "group@topic@queueId" -> committed offset. */
  readonly offsets = new Map<string, number>()
  /**
   * Messages of deleted topics, by CommitLog offset: they stay in the CommitLog and its key index
   * until retention, so a query by key may still answer them (RocketMQ's queryMessage does too).
   */
  readonly deleted = new Map<number, { topic: string; queueId: number; m: ModelMessage }>()

  queue(topic: string, queueId: number): ModelMessage[] {
    const k = `${topic}@${queueId}`
    let q = this.queues.get(k)
    if (!q) this.queues.set(k, (q = []))
    return q
  }

  /** Queue ids worth reading for a topic: those with messages and those its counts name. */
  queueIds(topic: string): number[] {
    const t = this.topics.get(topic)
    const ids = new Set<number>()
    for (let q = 0; q < Math.max(t?.read ?? 0, t?.write ?? 0); q++) ids.add(q)
    for (const k of this.queues.keys()) if (k.startsWith(`${topic}@`)) ids.add(Number(k.slice(topic.length + 1)))
    return [...ids].sort((a, b) => a - b)
  }

  deleteTopic(topic: string): void {
    this.topics.delete(topic)
    for (const [k, ms] of [...this.queues]) {
      if (!k.startsWith(`${topic}@`)) continue
      for (const m of ms) this.deleted.set(m.physicalOffset, { topic, queueId: Number(k.slice(topic.length + 1)), m })
      this.queues.delete(k)
    }
    for (const k of [...this.offsets.keys()]) if (k.split('@')[1] === topic) this.offsets.delete(k)
  }

  committed(group: string, topic: string, queueId: number): number | undefined {
    return this.offsets.get(`${group}@${topic}@${queueId}`)
  }
}

/** The CommitLog offset in an offset msgId (16 bytes: IPv4, port, offset). */
function physicalOffsetOf(msgId: string): number {
  return Number.parseInt(msgId.slice(16), 16)
}

function matches(m: ModelMessage, sub: string): boolean {
  if (sub === '*') return true
  return m.tags !== undefined && sub.split('||').map((s) => s.trim()).includes(m.tags)
}

function describe(m: { body: Buffer | string; tags: string | undefined; keys: string[]; queueOffset: number }): string {
  return JSON.stringify([m.body.toString(), m.tags ?? null, [...m.keys].sort(), m.queueOffset])
}

function properties(tags: string | undefined, keys: string[]): Record<string, string> {
  const p: Record<string, string> = {}
  if (tags !== undefined) p.TAGS = tags
  if (keys.length > 0) p.KEYS = keys.join(' ')
  return p
}

const SEED = seedFromEnv()

/** The child's "ready <address>" line (it failing to start rejects with its stderr). */
function readyAddress(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    const guard = setTimeout(() => reject(new Error(`the child broker did not start within 20 s: ${err}`)), 20_000)
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /^ready (\S+)\n/m.exec(out)
      if (m) {
        clearTimeout(guard)
        resolve(m[1]!)
      }
    })
    child.on('exit', (code, signal) => {
      clearTimeout(guard)
      reject(new Error(`the child broker exited with ${code ?? signal} before it was ready: ${err}`))
    })
  })
}

async function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
}

test(`broker model test (seed ${SEED}; SEED=<n> replays, BROKER_MODEL_STEPS=${STEPS})`, { timeout: 600_000 }, async () => {
  const seed = SEED
  const rnd = seededRandom(seed)
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-broker-model-'))
  const options = modelBrokerOptions(dir, seed % 2 === 1 ? 'SYNC_FLUSH' : 'ASYNC_FLUSH')
  const client = new TcpRemotingClient({ logger: silentLogger })
  let broker = await Broker.start(options)
  /** Where requests go: the broker here, or the child process during a crash step. */
  let address = broker.address
  let child: ChildProcess | undefined
  const model = new Model()
  const log: string[] = []
  const invoke = (req: RemotingCommand): Promise<RemotingCommand> => client.invoke(address, req, T)

  /** A single SEND_MESSAGE_V2, or a SEND_BATCH_MESSAGE of 1-4 messages, to a random queue. */
  const send = async (step: number): Promise<void> => {
    const topic = pick(rnd, TOPICS)
    const known = model.topics.get(topic)
    const queueId = rnd() < 0.1 ? -1 : randomInt(rnd, 0, (known?.write ?? AUTO_QUEUES) + 1)
    const count = rnd() < 0.3 ? randomInt(rnd, 1, 4) : 0
    const messages = Array.from({ length: Math.max(1, count) }, (_, i) => ({
      body: `s${step}.${i}:${'x'.repeat(randomInt(rnd, 0, 40))}`,
      tags: pick(rnd, TAGS),
      keys: KEYS.filter(() => rnd() < 0.15),
    }))
    let req: RemotingCommand
    const v1 = count === 0 && rnd() < 0.2
    if (count === 0) {
      const m = messages[0]!
      req = sendV2(topic, queueId, m.body, properties(m.tags, m.keys))
      // SEND_MESSAGE: the same header under V1's field names.
      if (v1) req = RemotingCommand.createRequest(RequestCode.SEND_MESSAGE, { producerGroup: 'PG', topic, defaultTopic: 'TBW102', defaultTopicQueueNums: String(AUTO_QUEUES), queueId: String(queueId), sysFlag: '0', bornTimestamp: String(Date.now()), flag: '0', properties: encodeProperties(properties(m.tags, m.keys)) }, m.body)
    } else {
      const body = encodeBatchBody(messages.map((m) => ({ body: Buffer.from(m.body), flag: 0, properties: encodeProperties(properties(m.tags, m.keys)) })))
      req = RemotingCommand.createRequest(RequestCode.SEND_BATCH_MESSAGE, { a: 'PG', b: topic, c: 'TBW102', d: String(AUTO_QUEUES), e: String(queueId), f: '0', g: String(Date.now()), h: '0', i: '', m: 'true' }, body)
    }
    log.push(`${step}: ${count === 0 ? (v1 ? 'send v1' : 'send') : `batch of ${count}`} ${topic}@${queueId} ${JSON.stringify(messages.map((m) => [m.tags ?? null, m.keys.join(' ')]))}`)
    const r = await invoke(req)
    // RocketMQ's order: the topic (auto-created from TBW102 when unknown), its write perm, the queue.
    const tc = model.topics.get(topic) ?? { read: AUTO_QUEUES, write: AUTO_QUEUES, perm: 6 }
    model.topics.set(topic, tc)
    if ((tc.perm & 2) === 0) return assert.equal(r.code, ResponseCode.NO_PERMISSION, r.remark ?? '')
    if (queueId >= tc.write || (queueId < 0 && tc.write === 0)) return assert.equal(r.code, ResponseCode.SYSTEM_ERROR, r.remark ?? '')
    assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
    const q = Number(r.extFields.queueId)
    if (queueId >= 0) assert.equal(q, queueId)
    else assert.ok(q >= 0 && q < tc.write, `a send to queue -1 picks a write queue, got ${q}`)
    const queue = model.queue(topic, q)
    assert.equal(r.extFields.queueOffset, String(queue.length), 'queueOffset: the queue\'s next offset')
    const ids = r.extFields.msgId!.split(',')
    assert.equal(ids.length, messages.length)
    messages.forEach((m, i) => queue.push({ ...m, queueOffset: queue.length, physicalOffset: physicalOffsetOf(ids[i]!), uniqKey: r.extFields.transactionId }))
    log[log.length - 1] += ` -> ${q}:${r.extFields.queueOffset}`
  }

  const pullStep = async (step: number): Promise<void> => {
    const topic = pick(rnd, TOPICS)
    const tc = model.topics.get(topic)
    const queueId = randomInt(rnd, 0, (tc?.read ?? 2) + 1)
    const queue = model.queues.get(`${topic}@${queueId}`) ?? []
    const offset = rnd() < 0.1 ? randomInt(rnd, queue.length + 1, queue.length + 5) : randomInt(rnd, 0, queue.length)
    const sub = pick(rnd, SUBSCRIPTIONS)
    const max = randomInt(rnd, 1, 8)
    const group = pick(rnd, GROUPS)
    const commit = rnd() < 0.3 ? randomInt(rnd, 0, queue.length) : undefined
    const req = pull(topic, queueId, offset, { sub, max, commit })
    req.extFields.consumerGroup = group
    log.push(`${step}: pull ${group} ${topic}@${queueId} from ${offset} max ${max} sub ${sub}${commit !== undefined ? ` commit ${commit}` : ''}`)
    const r = await invoke(req)
    log[log.length - 1] += ` -> ${r.code} next ${r.extFields.nextBeginOffset}`
    if (!tc) return assert.equal(r.code, ResponseCode.TOPIC_NOT_EXIST, r.remark ?? '')
    if ((tc.perm & 4) === 0) return assert.equal(r.code, ResponseCode.NO_PERMISSION, r.remark ?? '')
    if (queueId >= tc.read) return assert.equal(r.code, ResponseCode.SYSTEM_ERROR, r.remark ?? '')
    if (commit !== undefined) model.offsets.set(`${group}@${topic}@${queueId}`, commit)
    assert.equal(r.extFields.minOffset, '0')
    assert.equal(r.extFields.maxOffset, String(queue.length))
    const next = Number(r.extFields.nextBeginOffset)
    if (queue.length === 0 || offset > queue.length) {
      assert.equal(r.code, offset === 0 ? ResponseCode.PULL_NOT_FOUND : ResponseCode.PULL_OFFSET_MOVED, r.remark ?? '')
      return assert.equal(next, 0, 'past the end of a queue starting at 0: back to 0')
    }
    if (offset === queue.length) {
      assert.equal(r.code, ResponseCode.PULL_NOT_FOUND, r.remark ?? '')
      return assert.equal(next, offset)
    }
    // From inside the queue: the matching messages of [offset, next), in order, at most `max`.
    assert.ok(next > offset && next <= queue.length, `nextBeginOffset ${next} must be in (${offset}, ${queue.length}]`)
    const got = r.code === ResponseCode.SUCCESS ? records(r.body).map(describe) : []
    const expected = queue.slice(offset, next).filter((m) => matches(m, sub)).map(describe)
    assert.deepEqual(got, expected, 'the records of a pull: the matching ones of [offset, nextBeginOffset)')
    assert.ok(got.length <= max, `at most maxMsgNums (${max}) records, got ${got.length}`)
    assert.equal(r.code, expected.length > 0 ? ResponseCode.SUCCESS : ResponseCode.PULL_RETRY_IMMEDIATELY, r.remark ?? '')
    if (sub === '*') assert.ok(got.length > 0, 'a queue with messages from the offset answers some')
  }

  const updateTopic = async (step: number): Promise<void> => {
    const topic = pick(rnd, TOPICS)
    let read = randomInt(rnd, 0, 6)
    let write = randomInt(rnd, 0, 6)
    if (rnd() < 0.6) [read, write] = [Math.max(1, read), Math.max(1, write)]
    let perm = pick(rnd, [2, 4, 6])
    // Now and then a config the broker refuses, changing nothing: counts past the most queues, a perm past 7.
    if (rnd() < 0.1) [read, write, perm] = pick(rnd, [[1025, 1, perm], [1, -1, perm], [1, 1, 8]] as const)
    log.push(`${step}: update ${topic} read ${read} write ${write} perm ${perm}`)
    const r = await invoke(createTopicRequest(topic, read, write, perm))
    if (perm > 7) return assert.equal(r.code, ResponseCode.NO_PERMISSION, r.remark ?? '')
    if (read + write === 0 || read > 1024 || write < 0) return assert.equal(r.code, ResponseCode.SYSTEM_ERROR, r.remark ?? '')
    assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
    model.topics.set(topic, { read, write, perm })
  }

  /**
   * A pull at a queue's end with the suspend flag is held; a send to that queue answers it with
   * the message (long polling).
   */
  const longPoll = async (step: number): Promise<void> => {
    const both = TOPICS.filter((t) => model.topics.get(t)?.perm === 6 && Math.min(model.topics.get(t)!.read, model.topics.get(t)!.write) > 0)
    if (both.length === 0) return
    const topic = pick(rnd, both)
    const tc = model.topics.get(topic)!
    const queueId = randomInt(rnd, 0, Math.min(tc.read, tc.write) - 1)
    const queue = model.queue(topic, queueId)
    const m = { body: `p${step}`, tags: pick(rnd, TAGS), keys: [] }
    log.push(`${step}: long poll ${topic}@${queueId} at ${queue.length}, then send ${m.tags ?? ''}`)
    const held = client.invoke(address, pull(topic, queueId, queue.length, { suspend: 10_000, sub: m.tags ?? '*' }), 15_000)
    // The pull is held or not yet read: either way it must come back with the message.
    await new Promise((r) => setTimeout(r, randomInt(rnd, 0, 20)))
    const sent = await invoke(sendV2(topic, queueId, m.body, properties(m.tags, m.keys)))
    assert.equal(sent.code, ResponseCode.SUCCESS, sent.remark ?? '')
    queue.push({ ...m, queueOffset: queue.length, physicalOffset: physicalOffsetOf(sent.extFields.msgId!) })
    const r = await held
    assert.equal(r.code, ResponseCode.SUCCESS, `the held pull: ${r.code} ${r.remark ?? ''}`)
    assert.deepEqual(records(r.body).map(describe), [describe(queue[queue.length - 1]!)])
    assert.equal(r.extFields.nextBeginOffset, String(queue.length))
  }

  const deleteTopic = async (step: number): Promise<void> => {
    const topic = pick(rnd, TOPICS)
    log.push(`${step}: delete ${topic}`)
    const r = await invoke(RemotingCommand.createRequest(RequestCode.DELETE_TOPIC_IN_BROKER, { topic }))
    assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
    model.deleteTopic(topic)
  }

  /**
   * DELETE_TOPIC_IN_BROKER with sends to the topic at the same time. Each send lands before the
   * deletion (and goes with it) or after it (auto-creating the topic again from TBW102, its
   * message at the new queues' first offsets); those sent after the deletion's request all land
   * after it; every send kept answered SUCCESS at the offset it is stored at.
   */
  const deleteWhileSending = async (step: number): Promise<void> => {
    const topic = pick(rnd, TOPICS)
    const tc = model.topics.get(topic)
    // Sends every config of the topic takes (the current one and TBW102's) without refusing.
    const queues = Math.min(tc?.write ?? AUTO_QUEUES, AUTO_QUEUES)
    if (tc === undefined || (tc.perm & 2) === 0 || queues === 0) return deleteTopic(step)
    const sends = Array.from({ length: randomInt(rnd, 1, 4) }, (_, i) => ({ queueId: randomInt(rnd, 0, queues - 1), body: `d${step}.${i}`, tags: pick(rnd, TAGS), keys: KEYS.filter(() => rnd() < 0.15) }))
    log.push(`${step}: delete ${topic} while sending to ${sends.map((x) => x.queueId).join(',')}`)
    const at = log.length - 1
    // Some sends go out before the deletion's request, the others after it (on one connection, so in that order).
    const first = randomInt(rnd, 0, sends.length)
    const send = (x: (typeof sends)[number]): Promise<RemotingCommand> => invoke(sendV2(topic, x.queueId, x.body, properties(x.tags, x.keys)))
    const answers = sends.slice(0, first).map(send)
    const deleting = invoke(RemotingCommand.createRequest(RequestCode.DELETE_TOPIC_IN_BROKER, { topic }))
    answers.push(...sends.slice(first).map(send))
    const del = await deleting
    const sent = await Promise.all(answers)
    assert.equal(del.code, ResponseCode.SUCCESS, del.remark ?? '')
    model.deleteTopic(topic)
    for (const r of sent) assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
    const all = await invoke(RemotingCommand.createRequest(RequestCode.GET_ALL_TOPIC_CONFIG))
    const now = (JSON.parse(all.body.toString()) as { topicConfigTable: Record<string, { readQueueNums: number; writeQueueNums: number; perm: number }> }).topicConfigTable[topic]
    if (now) {
      assert.deepEqual([now.readQueueNums, now.writeQueueNums, now.perm], [AUTO_QUEUES, AUTO_QUEUES, 6], 'made again by a send after the deletion')
      model.topics.set(topic, { read: AUTO_QUEUES, write: AUTO_QUEUES, perm: 6 })
    }
    const kept: string[] = []
    for (let q = 0; q < Math.max(tc.read, tc.write, AUTO_QUEUES); q++) {
      const r = await broker.store.get({ topic, queueId: q, offset: 0, maxMessages: 64 })
      const stored = r.status === 'FOUND' ? r.messages : []
      if (!now) assert.equal(stored.length, 0, `${topic}@${q}: the topic is deleted, its queue must be empty`)
      const queue = model.queue(topic, q)
      for (const m of stored) {
        const i = sends.findIndex((x) => x.body === m.body.toString())
        assert.ok(i >= 0, `${topic}@${q}:${m.queueOffset} (${describe(m)}) is no send made after the deletion`)
        const x = sends[i]!
        assert.equal(x.queueId, q)
        assert.equal(describe(m), describe({ ...x, queueOffset: queue.length }), 'kept whole, at the next offset')
        assert.equal(sent[i]!.extFields.queueOffset, String(m.queueOffset), 'at the offset its answer said')
        queue.push({ ...x, queueOffset: queue.length, physicalOffset: m.physicalOffset, uniqKey: sent[i]!.extFields.transactionId })
        kept.push(x.body)
      }
      if (queue.length === 0) model.queues.delete(`${topic}@${q}`)
    }
    // Those sent after the deletion's request (one connection: read after it) are all kept.
    for (const x of sends.slice(first)) assert.ok(kept.includes(x.body), `${x.body}, sent after the deletion, is lost`)
    // The others went with the deletion: only a query by key may still find them.
    sends.forEach((x, i) => {
      if (kept.includes(x.body)) return
      const physicalOffset = physicalOffsetOf(sent[i]!.extFields.msgId!)
      model.deleted.set(physicalOffset, { topic, queueId: x.queueId, m: { ...x, queueOffset: Number(sent[i]!.extFields.queueOffset), physicalOffset } })
    })
    log[at] += ` (${first} before) -> ${now ? `made again, kept ${kept.join(' ') || 'none'}` : 'deleted'}`
  }

  const commitOffset = async (step: number): Promise<void> => {
    const group = pick(rnd, GROUPS)
    const topic = pick(rnd, TOPICS)
    const queueId = randomInt(rnd, 0, 5)
    const offset = randomInt(rnd, 0, 20)
    log.push(`${step}: commit ${group} ${topic}@${queueId} ${offset}`)
    const r = await invoke(RemotingCommand.createRequest(RequestCode.UPDATE_CONSUMER_OFFSET, { consumerGroup: group, topic, queueId: String(queueId), commitOffset: String(offset) }))
    assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
    model.offsets.set(`${group}@${topic}@${queueId}`, offset)
  }

  const queryByKey = async (step: number): Promise<void> => {
    const topic = pick(rnd, TOPICS)
    const key = pick(rnd, KEYS)
    log.push(`${step}: query ${topic} key ${key}`)
    const r = await invoke(RemotingCommand.createRequest(RequestCode.QUERY_MESSAGE, { topic, key, maxNum: String(QUERY_MAX), beginTimestamp: '0', endTimestamp: String(Date.now() + 60_000) }))
    // By CommitLog offset: the live messages with the key must all come back; those of a deleted
    // generation of the topic may.
    const live = new Map<number, string>()
    for (const q of model.queueIds(topic)) for (const m of model.queues.get(`${topic}@${q}`) ?? []) if (m.keys.includes(key)) live.set(m.physicalOffset, `${q}:${describe(m)}`)
    const ghosts = new Map<number, string>()
    for (const [at, d] of model.deleted) if (d.topic === topic && d.m.keys.includes(key)) ghosts.set(at, `${d.queueId}:${describe(d.m)}`)
    const got = r.code === ResponseCode.SUCCESS ? records(r.body) : []
    if (live.size + ghosts.size === 0) return assert.equal(r.code, ResponseCode.QUERY_NOT_FOUND, `nothing has key ${key}; got code ${r.code} with ${got.length} records`)
    if (live.size > 0) assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
    for (const m of got) {
      assert.equal(m.topic, topic)
      assert.equal(live.get(m.physicalOffset) ?? ghosts.get(m.physicalOffset), `${m.queueId}:${describe(m)}`, `a record the query answered (${m.queueId}:${m.queueOffset} at ${m.physicalOffset}) is in the model`)
    }
    const answered = new Set(got.map((m) => m.physicalOffset))
    assert.equal(answered.size, got.length, 'each record once')
    if (live.size + ghosts.size <= QUERY_MAX) for (const at of live.keys()) assert.ok(answered.has(at), `the message at ${at} (${live.get(at)}) has key ${key} and was not answered`)
    else assert.equal(got.length, QUERY_MAX)
  }

  /** QUERY_MESSAGE with _UNIQUE_KEY_QUERY: a single send's UNIQ_KEY finds it. */
  const queryByUniqueKey = async (step: number): Promise<void> => {
    const all = [...model.queues.entries()].flatMap(([k, ms]) => ms.filter((m) => m.uniqKey !== undefined).map((m) => ({ k, m })))
    if (all.length === 0) return
    const { k, m } = pick(rnd, all)
    const topic = k.slice(0, k.lastIndexOf('@'))
    log.push(`${step}: query ${k}:${m.queueOffset} by unique key ${m.uniqKey}`)
    const r = await invoke(RemotingCommand.createRequest(RequestCode.QUERY_MESSAGE, { topic, key: m.uniqKey!, maxNum: String(QUERY_MAX), beginTimestamp: '0', endTimestamp: String(Date.now() + 60_000), _UNIQUE_KEY_QUERY: 'true' }))
    assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
    const got = records(r.body).filter((x) => x.physicalOffset === m.physicalOffset)
    assert.equal(got.length, 1, `the message at ${m.physicalOffset} is answered once`)
    assert.equal(`${got[0]!.topic}@${got[0]!.queueId}`, k)
    assert.equal(describe(got[0]!), describe(m))
  }

  /**
   * Sends at once (singles and batches to writable queues, several connections' worth on one):
   * every answer SUCCESS, and per queue their offsets tile the queue's next ones exactly.
   */
  const burst = async (step: number): Promise<void> => {
    const writable = TOPICS.filter((t) => ((model.topics.get(t)?.perm ?? 0) & 2) !== 0 && model.topics.get(t)!.write > 0)
    if (writable.length === 0) return
    const sends = Array.from({ length: randomInt(rnd, 2, 12) }, (_, i) => {
      const topic = pick(rnd, writable)
      const queueId = randomInt(rnd, 0, model.topics.get(topic)!.write - 1)
      const messages = Array.from({ length: rnd() < 0.3 ? randomInt(rnd, 2, 4) : 1 }, (_, j) => ({ body: `b${step}.${i}.${j}`, tags: pick(rnd, TAGS), keys: KEYS.filter(() => rnd() < 0.15) }))
      const req =
        messages.length === 1
          ? sendV2(topic, queueId, messages[0]!.body, properties(messages[0]!.tags, messages[0]!.keys))
          : RemotingCommand.createRequest(RequestCode.SEND_BATCH_MESSAGE, { a: 'PG', b: topic, c: 'TBW102', d: String(AUTO_QUEUES), e: String(queueId), f: '0', g: String(Date.now()), h: '0', i: '', m: 'true' }, encodeBatchBody(messages.map((m) => ({ body: Buffer.from(m.body), flag: 0, properties: encodeProperties(properties(m.tags, m.keys)) }))))
      return { topic, queueId, messages, req }
    })
    log.push(`${step}: burst of ${sends.length}: ${sends.map((x) => `${x.topic}@${x.queueId}x${x.messages.length}`).join(' ')}`)
    const answers = await Promise.all(sends.map((x) => invoke(x.req)))
    const placed = new Map<string, Array<{ offset: number; msgIds: string[]; messages: (typeof sends)[number]['messages']; uniqKey?: string }>>()
    answers.forEach((r, i) => {
      assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
      const x = sends[i]!
      const k = `${x.topic}@${x.queueId}`
      if (!placed.has(k)) placed.set(k, [])
      placed.get(k)!.push({ offset: Number(r.extFields.queueOffset), msgIds: r.extFields.msgId!.split(','), messages: x.messages, uniqKey: r.extFields.transactionId })
    })
    for (const [k, sent] of placed) {
      const queue = model.queue(k.slice(0, k.lastIndexOf('@')), Number(k.slice(k.lastIndexOf('@') + 1)))
      for (const x of sent.sort((a, b) => a.offset - b.offset)) {
        assert.equal(x.offset, queue.length, `${k}: the burst's sends take the queue's next offsets, each its own`)
        x.messages.forEach((m, j) => queue.push({ ...m, queueOffset: queue.length, physicalOffset: physicalOffsetOf(x.msgIds[j]!), uniqKey: x.uniqKey }))
      }
    }
  }

  const viewById = async (step: number): Promise<void> => {
    const all = [...model.queues.entries()].flatMap(([k, ms]) => ms.map((m) => ({ k, m })))
    if (all.length === 0) return
    const { k, m } = pick(rnd, all)
    log.push(`${step}: view ${k}:${m.queueOffset} at ${m.physicalOffset}`)
    const r = await invoke(RemotingCommand.createRequest(RequestCode.VIEW_MESSAGE_BY_ID, { topic: k.split('@')[0]!, offset: String(m.physicalOffset) }))
    assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
    const [got] = records(r.body)
    assert.equal(`${got!.topic}@${got!.queueId}`, k)
    assert.equal(describe(got!), describe(m))
  }

  const restart = async (step: number): Promise<void> => {
    log.push(`${step}: restart`)
    await broker.stop()
    broker = await Broker.start(options)
    address = broker.address
  }

  /** SYNC_FLUSH only: a child broker takes a few acknowledged sends and is SIGKILLed; they must all be there after. */
  const crash = async (step: number): Promise<void> => {
    if (options.flushDiskType !== 'SYNC_FLUSH') return restart(step)
    log.push(`${step}: crash: the broker in a child process`)
    await broker.stop()
    child = spawn(process.execPath, [CHILD, dir], { stdio: ['ignore', 'pipe', 'pipe'] })
    address = await readyAddress(child)
    for (let i = randomInt(rnd, 0, 5); i > 0; i--) await send(step)
    const pending = sendsUnderWay(step)
    await new Promise((r) => setTimeout(r, randomInt(rnd, 0, 3)))
    await killed(child)
    child = undefined
    await Promise.allSettled(pending.map((p) => p.answered))
    log.push(`${step}: SIGKILL with ${pending.length} sends under way (${pending.filter((p) => p.answer?.code === ResponseCode.SUCCESS).length} answered), start again`)
    broker = await Broker.start(options)
    address = broker.address
    await settle(pending)
  }

  interface UnderWay {
    topic: string
    queueId: number
    m: Omit<ModelMessage, 'queueOffset' | 'physicalOffset'>
    answered: Promise<unknown>
    answer?: RemotingCommand
  }

  /** Sends to writable queues, not awaited: the kill comes while they are under way. */
  const sendsUnderWay = (step: number): UnderWay[] => {
    const writable = TOPICS.filter((t) => ((model.topics.get(t)?.perm ?? 0) & 2) !== 0 && model.topics.get(t)!.write > 0)
    if (writable.length === 0) return []
    return Array.from({ length: randomInt(rnd, 1, 8) }, (_, i) => {
      const topic = pick(rnd, writable)
      const queueId = randomInt(rnd, 0, model.topics.get(topic)!.write - 1)
      const m = { body: `u${step}.${i}:${'y'.repeat(randomInt(rnd, 0, 40))}`, tags: pick(rnd, TAGS), keys: KEYS.filter(() => rnd() < 0.15) }
      const u: UnderWay = { topic, queueId, m, answered: Promise.resolve() }
      u.answered = invoke(sendV2(topic, queueId, m.body, properties(m.tags, m.keys))).then(
        (r) => (u.answer = r),
        () => undefined,
      )
      log.push(`${step}: under way ${topic}@${queueId} ${m.body.slice(0, 12)}`)
      return u
    })
  }

  /**
   * After the kill: each queue the sends went to holds, past what the model has, some of them,
   * whole and with dense offsets; every send answered SUCCESS is there, at the offset answered.
   */
  const settle = async (pending: UnderWay[]): Promise<void> => {
    for (const k of new Set(pending.map((p) => `${p.topic}@${p.queueId}`))) {
      const [topic, q] = [k.slice(0, k.lastIndexOf('@')), Number(k.slice(k.lastIndexOf('@') + 1))]
      const queue = model.queue(topic, q)
      const candidates = pending.filter((p) => p.topic === topic && p.queueId === q)
      const r = await broker.store.get({ topic, queueId: q, offset: queue.length, maxMessages: 64 })
      for (const stored of r.status === 'FOUND' ? r.messages : []) {
        const at = candidates.findIndex((p) => p.m.body === stored.body.toString())
        assert.ok(at >= 0, `${k}:${stored.queueOffset} (${describe(stored)}) is no send of the crash step`)
        const [p] = candidates.splice(at, 1)
        assert.equal(describe(stored), describe({ ...p!.m, queueOffset: queue.length }), `${k}: a send under way at the kill is stored whole, at the next offset`)
        if (p!.answer?.code === ResponseCode.SUCCESS) assert.equal(p!.answer.extFields.queueOffset, String(stored.queueOffset))
        queue.push({ ...p!.m, queueOffset: queue.length, physicalOffset: stored.physicalOffset })
      }
      for (const p of candidates) assert.notEqual(p.answer?.code, ResponseCode.SUCCESS, `${k}: ${p.m.body} was acknowledged under SYNC_FLUSH and is lost after a SIGKILL`)
    }
  }

  /** Everything the model knows against the broker: topics, queues, offsets. */
  const checkAll = async (): Promise<void> => {
    const all = await invoke(RemotingCommand.createRequest(RequestCode.GET_ALL_TOPIC_CONFIG))
    const table = (JSON.parse(all.body.toString()) as { topicConfigTable: Record<string, { readQueueNums: number; writeQueueNums: number; perm: number }> }).topicConfigTable
    for (const topic of TOPICS) {
      const t = table[topic]
      const m = model.topics.get(topic)
      assert.deepEqual(t && { read: t.readQueueNums, write: t.writeQueueNums, perm: t.perm }, m, `topic ${topic}`)
      for (const q of model.queueIds(topic)) {
        const expected = (model.queues.get(`${topic}@${q}`) ?? []).map(describe)
        const max = await invoke(RemotingCommand.createRequest(RequestCode.GET_MAX_OFFSET, { topic, queueId: String(q) }))
        assert.equal(max.extFields.offset, String(expected.length), `max offset of ${topic}@${q}`)
        const min = await invoke(RemotingCommand.createRequest(RequestCode.GET_MIN_OFFSET, { topic, queueId: String(q) }))
        assert.equal(min.extFields.offset, '0', `min offset of ${topic}@${q}`)
        const got: string[] = []
        for (let offset = 0; offset < expected.length; ) {
          const r = await broker.store.get({ topic, queueId: q, offset, maxMessages: 64 })
          assert.equal(r.status, 'FOUND', `${topic}@${q} from ${offset}`)
          got.push(...r.messages.map(describe))
          offset = r.nextOffset
        }
        assert.deepEqual(got, expected, `the records of ${topic}@${q}`)
        for (const group of GROUPS) {
          const r = await invoke(RemotingCommand.createRequest(RequestCode.QUERY_CONSUMER_OFFSET, { consumerGroup: group, topic, queueId: String(q) }))
          assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
          assert.equal(r.extFields.offset, String(model.committed(group, topic, q) ?? 0), `offset of ${group} on ${topic}@${q}`)
        }
      }
    }
    // A deleted topic's queues are gone (their offsets restart at 0).
    for (const topic of TOPICS.filter((t) => !model.topics.has(t))) {
      for (let q = 0; q < 6; q++) assert.equal(broker.store.maxOffset(topic, q), 0, `max offset of deleted ${topic}@${q}`)
    }
    // Offsets committed for queues no topic names (UPDATE_CONSUMER_OFFSET takes any) are kept too.
    for (const [k, offset] of model.offsets) {
      const [group, topic, q] = k.split('@') as [string, string, string]
      assert.equal(broker.store.committedOffset(group, topic, Number(q)), offset, `offset of ${k}`)
    }
  }

  const ops: Array<[number, (step: number) => Promise<void>]> = [
    [30, send],
    [25, pullStep],
    [8, updateTopic],
    [3, longPoll],
    [3, deleteTopic],
    [2, deleteWhileSending],
    [8, commitOffset],
    [6, queryByKey],
    [6, viewById],
    [3, queryByUniqueKey],
    [4, burst],
    [2, restart],
    [2, crash],
  ]
  const total = ops.reduce((s, [w]) => s + w, 0)
  let step = 0
  try {
    for (; step < STEPS; step++) {
      let x = rnd() * total
      const op = ops.find(([w]) => (x -= w) < 0)![1]
      await op(step)
      if (op === restart || op === crash || step % CHECK_EVERY === CHECK_EVERY - 1) await checkAll()
    }
    await checkAll()
  } catch (err) {
    const e = err as Error
    e.message = `seed ${seed} (SEED=${seed} replays) failed at step ${step}: ${e.message}\nlast steps:\n${log.slice(-25).join('\n')}`
    throw e
  } finally {
    if (child) await killed(child)
    await client.close()
    await broker.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
