// Seeded model check of the store's public API. Random steps (puts of random topics, queues,
// tags, keys with colliding and repeated ones, properties, UNIQ_KEY and sysFlag values; batches;
// `get` with tag filters at random offsets; lookups; key queries with time windows; viewMessage;
// consumer offsets; invalid calls; close + reopen, possibly after deleting consumequeue/ or
// index/ and with the other flush mode; process kills; deleteTopic; truncate; a replica fed,
// killed and cut back with its master; each kind its share of the steps, see STEP_DECK) run against an in-memory model of what
// each call must answer, on tiny CommitLog, ConsumeQueue and index files. After every step: each
// queue's min and max offsets, and a sample of acknowledged messages readable by `lookup`,
// `get` at their queue offset, `viewMessage` and every key; after every reopen and at the end
// every acknowledged message. The CommitLog and ConsumeQueues live on the simulated disk
// (SimFileIO: a kill keeps what was written) and the index in a temp directory, or (one short
// run) all of it in a temp directory, a kill then being a copy taken while the store is open.
//
// The seed and disk of each run are in the test name; `SEED=<n>` replays that run alone (with
// STORE_MODEL_STEPS at least the step that failed, and STORE_MODEL_DISK=real for the real-disk
// run). STORE_MODEL_STEPS (default 2400) is the number of steps of the simulated runs together.
// Inputs that once broke the store are generated like any other: sysFlag host bits with IPv4 and
// IPv6 born hosts (the store sets those bits from the hosts) and bits RocketMQ does not define
// (refused), keys sharing one index hash, reopens after deleting consumequeue/ with more queue
// files than may stay open, and calls that must fail with a StoreError. Runs with an odd seed open
// with confirmOffset: true and move the confirm offset (see stepConfirm): the model's consumers
// see only the records ending at or below it.
import assert from 'node:assert/strict'
import { cpSync, renameSync, rmSync } from 'node:fs'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, javaStringHashCode, type EncodedBatch, type MessageStoreOptions, type PutMessage, type PutResult, type StoredMessage } from '../src/index.js'
import { seededRandom } from '@mqts/common'
import { encodeBatchBody, encodeProperties } from '@mqts/message'
import { PROPERTY, RECORD, SimFileIO } from '../src/internal.js'
import { isStoreError, assertNothingReal, simPath, tempDir } from './helpers.js'
import { chunkSize } from './fixtures/replica-feed.js'

type Disk = 'simulated' | 'real'
const STEPS = Number(process.env.STORE_MODEL_STEPS ?? 2400)
const BASE_SEED = process.env.SEED ? Number(process.env.SEED) : Date.now() % 1_000_000
/**
 * Four runs on the simulated disk share STEPS; one short run on real files (slower: real
 * fdatasyncs) where the open-file limits are real. SEED replays one run, on the disk
 * STORE_MODEL_DISK names (default simulated).
 */
const RUNS: { seed: number; disk: Disk; steps: number }[] = process.env.SEED
  ? [{ seed: BASE_SEED, disk: process.env.STORE_MODEL_DISK === 'real' ? 'real' : 'simulated', steps: STEPS }]
  : [
      ...[0, 1, 2, 3].map((i) => ({ seed: BASE_SEED + i, disk: 'simulated' as Disk, steps: Math.ceil(STEPS / 4) })),
      { seed: BASE_SEED + 4, disk: 'real', steps: Math.ceil(STEPS / 24) },
    ]

const TOPICS = ['orders', 'T', '%RETRY%g1']
const QUEUES = 5
const TAGS = ['TagA', 'TagB', 'Aa', 'BB', 'tag with space', 'ü']
const KEYS = ['Aa', 'BB', 'k1', 'k2', 'k3', 'order-7', 'key.é', 'x']
const GROUPS = ['g0', 'g1']
/** sysFlag values every store must take: compressed, multi-tags, the transaction types. */
const SYSFLAGS = [0, 0, 0, 0x1, 0x2, 0x3, 0x4, 0x8, 0xc, 0x9]
/** Host layout bits a caller may pass: the store replaces them with what its hosts need. */
const SYSFLAGS_HOST_BITS = [0x10, 0x20, 0x30, 0x13]
/** Bits RocketMQ 4.x does not define (and a compression type without COMPRESSED): refused. */
const SYSFLAGS_REFUSED = [0x40, 0x80, 0x100, 0x400]
const BORNHOST_V6 = 0x10
const HOST_V6_MASK = 0x30
const BORN_HOSTS_V6 = ['[::1]:4242', '[2001:db8::7]:10911']
const TRANSACTION_MASK = 0xc
const PREPARED = 0x4
const ROLLBACK = 0xc

/** One acknowledged message as the model knows it. */
interface Model {
  topic: string
  queueId: number
  /** -1 for prepared and rolled-back transaction messages: they take no queue offset. */
  queueOffset: number
  physicalOffset: number
  size: number
  msgId: string
  storeTimestamp: number
  body: Buffer
  tags: string | undefined
  keys: string[]
  uniqKey: string | undefined
  /** Properties other than KEYS and TAGS, as put. */
  extra: Record<string, string>
  sysFlag: number
  flag: number
  /** Its topic was deleted since: its record stays (lookup, keys), its queue is gone. */
  dequeued?: boolean
}

interface Run {
  seed: number
  rnd: () => number
  dir: string
  options: MessageStoreOptions
  /** The simulated disk of CommitLog and ConsumeQueues; undefined on the real one (STORE_MODEL_DISK=real). */
  io: SimFileIO | undefined
  store: MessageStore
  clock: number
  messages: Model[]
  /** Per "topic/queueId": the messages in queue-offset order. */
  queues: Map<string, Model[]>
  committed: Map<string, number>
  persisted: Map<string, number>
  log: string[]
  /** The kind of step under way. */
  doing: string
  /** The confirm offset of a run opened with confirmOffset: true (undefined without). */
  confirm: number | undefined
  /** The step kinds still to draw (indexes into STEP_KINDS), and how often each was drawn. */
  deck: number[]
  picked: number[]
}

const qkey = (topic: string, queueId: number): string => `${topic}/${queueId}`

function pick<T>(run: Run, xs: readonly T[]): T {
  return xs[Math.floor(run.rnd() * xs.length)]!
}

function chance(run: Run, p: number): boolean {
  return run.rnd() < p
}

function int(run: Run, lo: number, hi: number): number {
  return lo + Math.floor(run.rnd() * (hi - lo + 1))
}

// ---------------------------------------------------------------------------------------------
// Confirm offset (runs with odd seeds open with confirmOffset: true): consumers see the records
// ending at or below it; stepConfirm moves it (to a record's end, inside a record, the log's end)
// and tries what must be refused; a reopen keeps it, a kill may take it back, never forward.

/** Whether `x` is visible to consumers (`get`, key queries): it ends at or below the confirm offset. */
function visible(run: Run, x: Model): boolean {
  return run.confirm === undefined || x.physicalOffset + x.size <= run.confirm
}

/** The visible part of a queue: a prefix, since queue offsets follow the log. */
function visibleQueue(run: Run, topic: string, queueId: number): Model[] {
  const queue = run.queues.get(qkey(topic, queueId)) ?? []
  return run.confirm === undefined ? queue : queue.filter((x) => visible(run, x))
}

async function stepConfirm(run: Run): Promise<string> {
  const s = run.store
  const max = s.commitLogMaxOffset
  if (run.confirm === undefined) {
    assert.equal(s.confirmOffset, max, 'without confirmOffset: the committed end')
    assert.throws(() => s.setConfirmOffset(0), isStoreError('INVALID_ARGUMENT'))
    return 'confirm offset (off): refused'
  }
  assert.equal(s.confirmOffset, run.confirm, 'confirmOffset')
  const seenEnd = run.messages.reduce((e, x) => (visible(run, x) ? Math.max(e, x.physicalOffset + x.size) : e), 0)
  if (chance(run, 0.25)) {
    const below = seenEnd > 0 && chance(run, 0.5)
    const to = below ? seenEnd - int(run, 1, Math.min(seenEnd, 50)) : max + int(run, 1, 100)
    assert.throws(() => s.setConfirmOffset(to), isStoreError('OFFSET_OUT_OF_RANGE'), `setConfirmOffset ${to}`)
    assert.equal(s.confirmOffset, run.confirm, 'unchanged')
    return `setConfirmOffset ${to} refused (${below ? 'below what was seen' : 'past the end'})`
  }
  const pending = run.messages.filter((x) => !visible(run, x))
  let to = max
  if (pending.length > 0 && chance(run, 0.7)) {
    const x = pick(run, pending)
    to = chance(run, 0.5) || x.size < 2 ? x.physicalOffset + x.size : x.physicalOffset + int(run, 1, x.size - 1)
  }
  to = Math.max(to, run.confirm)
  s.setConfirmOffset(to)
  run.confirm = to
  await s.whenDispatched()
  // Raw reads stop at the confirm offset; replication reads past it.
  if (to > s.commitLogMinOffset) assert.equal(s.readCommitLog(to - 1, 1000).length, 1, 'readCommitLog stops at the confirm offset')
  if (to < max) assert.ok(s.readCommitLog(to, 1000, { unconfirmed: true }).length > 0, 'readCommitLog { unconfirmed: true } reads past it')
  return `setConfirmOffset ${to} (log ends at ${max})`
}

/** After a reopen: the confirm offset the store came back with (a kill may take it back). */
function reopenedConfirm(run: Run, how: 'close' | 'kill', what: string): void {
  if (run.confirm === undefined) return
  const now = run.store.confirmOffset
  if (how === 'close') assert.equal(now, run.confirm, `${what}: the confirm offset is kept`)
  else assert.ok(now <= run.confirm, `${what}: the confirm offset ${now} is at most the one before the kill, ${run.confirm}`)
  run.confirm = now
}

// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Generators

/** Keys and UNIQ_KEY of one message: repeated ones, ones sharing an index hash ('Aa', 'BB'). */
function keysFor(run: Run): { keys: string[]; uniqKey: string | undefined } {
  const keys: string[] = []
  for (let n = int(run, 0, 3); n > 0; n--) keys.push(pick(run, KEYS))
  const uniqKey: string | undefined = chance(run, 0.3) ? (chance(run, 0.2) ? pick(run, KEYS) : `U${Math.floor(run.rnd() * 1e9).toString(16)}`) : undefined
  return { keys, uniqKey }
}

function bodyFor(run: Run): Buffer {
  const n = chance(run, 0.1) ? 0 : chance(run, 0.1) ? int(run, 500, 1500) : int(run, 1, 120)
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = Math.floor(run.rnd() * 256)
  return b
}

/** A valid message and what the model expects of it (offsets filled in once acknowledged). */
function messageFor(run: Run): { put: PutMessage; model: Omit<Model, 'queueOffset' | 'physicalOffset' | 'size' | 'msgId' | 'storeTimestamp'> } {
  const topic = pick(run, TOPICS)
  const queueId = int(run, 0, QUEUES - 1)
  const body = bodyFor(run)
  const tags = chance(run, 0.7) ? pick(run, TAGS) : undefined
  const { keys, uniqKey } = keysFor(run)
  const extra: Record<string, string> = {}
  if (chance(run, 0.3)) extra[`p${int(run, 0, 3)}`] = pick(run, ['v', 'a value with spaces', 'ünï', '=:;,', 'x'.repeat(int(run, 1, 300))])
  if (uniqKey !== undefined) extra[PROPERTY.UNIQ_KEY] = uniqKey
  const askedSysFlag = chance(run, 0.1) ? pick(run, SYSFLAGS_HOST_BITS) : pick(run, SYSFLAGS)
  const bornHost = chance(run, 0.15) ? pick(run, BORN_HOSTS_V6) : undefined
  // The store's own host is IPv4 here: only the born host can set a layout bit.
  const sysFlag = (askedSysFlag & ~HOST_V6_MASK) | (bornHost ? BORNHOST_V6 : 0)
  const flag = chance(run, 0.2) ? int(run, 0, 0x7fffffff) : 0
  const put: PutMessage = { topic, queueId, body: chance(run, 0.5) ? body : new Uint8Array(body) }
  if (tags !== undefined) put.tags = tags
  if (keys.length > 0) put.keys = chance(run, 0.5) || keys.length > 1 ? keys : keys[0]!
  if (Object.keys(extra).length > 0) put.properties = { ...extra }
  if (askedSysFlag !== 0) put.sysFlag = askedSysFlag
  if (bornHost !== undefined) put.bornHost = bornHost
  if (flag !== 0) put.flag = flag
  return { put, model: { topic, queueId, body, tags, keys, uniqKey, extra, sysFlag, flag } }
}

// ---------------------------------------------------------------------------------------------
// Checks

/** The message as stored equals the model. */
function sameMessage(m: StoredMessage, x: Model, what: string): void {
  assert.equal(m.physicalOffset, x.physicalOffset, `${what}: physicalOffset`)
  assert.equal(m.topic, x.topic, `${what}: topic`)
  assert.equal(m.queueId, x.queueId, `${what}: queueId`)
  if (x.queueOffset >= 0) assert.equal(m.queueOffset, x.queueOffset, `${what}: queueOffset`)
  assert.ok(Buffer.from(m.body).equals(x.body), `${what}: body`)
  assert.equal(m.tags, x.tags, `${what}: tags`)
  assert.deepEqual(m.keys, x.keys, `${what}: keys`)
  for (const [k, v] of Object.entries(x.extra)) assert.equal(m.properties[k], v, `${what}: property ${k}`)
  assert.equal(m.sysFlag, x.sysFlag, `${what}: sysFlag`)
  assert.equal(m.flag, x.flag, `${what}: flag`)
  assert.equal(m.storeTimestamp, x.storeTimestamp, `${what}: storeTimestamp`)
  assert.equal(m.msgId, x.msgId, `${what}: msgId`)
}

/** Whether the index holds `x` (RocketMQ indexes every record but rolled-back transaction ones). */
function indexed(x: Model): boolean {
  return (x.sysFlag & TRANSACTION_MASK) !== ROLLBACK
}

/** Whether `x` has a queue offset (not a prepared or rolled-back transaction message). */
function queued(x: Model): boolean {
  const tx = x.sysFlag & TRANSACTION_MASK
  return tx !== PREPARED && tx !== ROLLBACK
}

/** `x` is readable every way the API offers. */
async function checkMessage(run: Run, x: Model, what: string): Promise<void> {
  const s = run.store
  sameMessage(await s.lookup(x.physicalOffset), x, `${what} lookup`)
  sameMessage(await s.viewMessage(x.msgId), x, `${what} viewMessage`)
  if (queued(x) && visible(run, x) && !x.dequeued) {
    const got = await s.get({ topic: x.topic, queueId: x.queueId, offset: x.queueOffset, maxMessages: 1 })
    assert.equal(got.status, 'FOUND', `${what} get at its queue offset`)
    sameMessage(got.messages[0]!, x, `${what} get`)
  }
  if (indexed(x) && visible(run, x)) {
    for (const key of new Set([...x.keys, ...(x.uniqKey !== undefined ? [x.uniqKey] : [])])) {
      const found = await s.queryByKey(x.topic, key, { maxNum: 10_000 })
      assert.ok(
        found.some((m) => m.physicalOffset === x.physicalOffset),
        `${what} queryByKey(${x.topic}, ${key}) finds it`,
      )
    }
  }
}

/** Queue bounds of every queue the model knows, and of one it does not. */
function checkQueues(run: Run, what: string): void {
  for (const topic of TOPICS) {
    for (let q = 0; q < QUEUES; q++) {
      const n = run.queues.get(qkey(topic, q))?.length ?? 0
      assert.equal(run.store.minOffset(topic, q), 0, `${what}: minOffset ${topic}/${q}`)
      assert.equal(run.store.maxOffset(topic, q), visibleQueue(run, topic, q).length, `${what}: maxOffset ${topic}/${q}`)
      assert.equal(run.store.maxQueueOffset(topic, q), n, `${what}: maxQueueOffset ${topic}/${q}`)
    }
  }
  const last = run.messages.reduce((end, x) => Math.max(end, x.physicalOffset + x.size), 0)
  assert.ok(run.store.maxPhysicalOffset >= last, `${what}: maxPhysicalOffset ${run.store.maxPhysicalOffset} covers the last acknowledged message (ends at ${last})`)
}

/** The messages of `topic` under `key` the index must find, newest first. */
function keyed(run: Run, topic: string, key: string): Model[] {
  return run.messages.filter((x) => x.topic === topic && indexed(x) && visible(run, x) && (x.keys.includes(key) || x.uniqKey === key)).reverse()
}

/** Every acknowledged message by offset, id and queue offset; every key's query in full. */
async function checkAll(run: Run, what: string): Promise<void> {
  checkQueues(run, what)
  const s = run.store
  for (const [i, x] of run.messages.entries()) {
    sameMessage(await s.lookup(x.physicalOffset), x, `${what}, message ${i} lookup`)
    assert.equal((await s.viewMessage(x.msgId)).physicalOffset, x.physicalOffset, `${what}, message ${i} viewMessage`)
  }
  for (const name of run.queues.keys()) {
    const [topic, queueId] = [name.slice(0, name.lastIndexOf('/')), Number(name.slice(name.lastIndexOf('/') + 1))]
    const queue = visibleQueue(run, topic, queueId)
    for (let offset = 0; offset < queue.length; ) {
      const got = await s.get({ topic, queueId, offset, maxMessages: 64 })
      assert.equal(got.status, 'FOUND', `${what}: get ${name} at ${offset}`)
      got.messages.forEach((m, k) => sameMessage(m, queue[offset + k]!, `${what}: get ${name} at ${offset}, message ${k}`))
      assert.equal(got.nextOffset, offset + got.messages.length, `${what}: get ${name} at ${offset} reads on to the next file`)
      offset = got.nextOffset
    }
  }
  const uniqKeys = run.messages.flatMap((x) => (x.uniqKey !== undefined && !KEYS.includes(x.uniqKey) ? [x.uniqKey] : []))
  for (const topic of TOPICS) {
    for (const key of [...KEYS, ...uniqKeys.slice(-10)]) {
      const found = await s.queryByKey(topic, key, { maxNum: 100_000 })
      assert.deepEqual(
        found.map((m) => m.physicalOffset),
        keyed(run, topic, key).map((x) => x.physicalOffset),
        `${what}: queryByKey(${topic}, ${key}) finds every message of the key, newest first`,
      )
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Replica steps (appendReplicated): a replica store fed from the model's store in random chunks,
// killed and reopened; its log must stay a prefix of the master's, ending at a record boundary,
// and answer as the model for every message below its end.

interface ReplicaRun {
  store: MessageStore
  /** Its own simulated disk (a kill of the replica is not one of the master), or undefined on the real one. */
  io: SimFileIO | undefined
  options: MessageStoreOptions
  /** The log was compared with the master's up to here. */
  comparedUpTo: number
  /** The master's log was cut below the replica's end: where the replica must cut its own. */
  cutTo?: number
  /** Per topic: the master's deletion (its CommitLog offset) this replica followed (followTopicDeletion). */
  followed: Map<string, number>
  /** Per "topic/queueId": the offset of the last record restarting the queue at 0 the replica dispatched. */
  restarts: Map<string, number>
  /** Its records below here were looked at for restarts. */
  seenTo: number
  cleanup: () => Promise<void>
}

const replicas = new WeakMap<Run, ReplicaRun>()

/**
 * The replica of the run, cut back first where its master's log was cut below its end. The
 * stream offers nothing past the master's end, and the bytes the master writes at the cut are
 * new ones: a replica that kept the old bytes past it would never match its master again
 * (packages/ha's master drops its links on a cut and refuses a replica past its end). As
 * RocketMQ's replicas do (the controller mode's slave truncates to where its log and its new
 * master's agree), the replica truncates to the cut, or to its written end when the cut falls in
 * the record it holds part of (the held bytes go with any truncate), then follows again.
 */
async function replicaOf(run: Run): Promise<ReplicaRun> {
  let r = replicas.get(run)
  if (r?.cutTo !== undefined) {
    const to = Math.min(r.cutTo, r.store.commitLogMaxOffset)
    await r.store.truncate(to)
    assert.equal(r.store.replicaEndOffset, to, `the replica cut back to ${to} after its master's cut to ${r.cutTo}`)
    replicaCut(r, to)
    r.cutTo = undefined
  }
  if (r) return r
  const simulated = run.io ? simPath('model-replica') : undefined
  const { dir, cleanup } = simulated ? { dir: simulated, cleanup: async () => assertNothingReal(simulated) } : await tempDir('mqts-store-model-replica-')
  const io = simulated ? new SimFileIO() : undefined
  // The replica shows what it holds: no confirm offset of its own (its master's bounds consumers).
  const options: MessageStoreOptions = { ...run.options, dir, role: 'replica', flush: chance(run, 0.5) ? 'sync' : 'async', confirmOffset: false }
  const store = await MessageStore.open(io ? { ...options, fileIO: io } : options)
  r = { store, io, options, comparedUpTo: 0, followed: new Map(), restarts: new Map(), seenTo: 0, cleanup }
  replicas.set(run, r)
  return r
}

/**
 * The replica's log now ends at `to`: the deletions it made past it are clamped to it, as the
 * store clamps them (a record past the new end is a new one); those below stay deleted.
 */
function replicaCut(r: ReplicaRun, to: number): void {
  r.comparedUpTo = Math.min(r.comparedUpTo, to)
  r.seenTo = Math.min(r.seenTo, to)
  for (const [topic, d] of r.followed) if (d > to) r.followed.set(topic, to)
  for (const [k, d] of r.restarts) if (d > to) r.restarts.set(k, to)
}

async function closeReplica(run: Run): Promise<void> {
  const r = replicas.get(run)
  if (!r) return
  replicas.delete(run)
  if (r.store.status !== 'closed') await r.store.close()
  await r.cleanup()
}

/** The replica's log is the master's up to its end, a record boundary; it answers as the model below it. */
async function checkReplica(run: Run, r: ReplicaRun, what: string): Promise<void> {
  const end = r.store.commitLogMaxOffset
  const fileSize = run.options.commitLogFileSize!
  assert.ok(end <= run.store.commitLogMaxOffset, `${what}: the replica (${end}) is not past its master (${run.store.commitLogMaxOffset})`)
  assert.ok(r.store.replicaEndOffset >= end, `${what}: replicaEndOffset covers the committed end`)
  assert.ok(end === 0 || end % fileSize === 0 || run.messages.some((x) => x.physicalOffset + x.size === end), `${what}: the replica ends at ${end}, a record boundary`)
  for (let at = r.comparedUpTo; at < end; ) {
    const mine = r.store.readCommitLog(at, end - at)
    const theirs = run.store.readCommitLog(at, mine.length, { unconfirmed: true })
    assert.ok(mine.length > 0 && mine.equals(theirs), `${what}: the replica's bytes at ${at} are the master's`)
    at += mine.length
  }
  r.comparedUpTo = end
  const below = run.messages.filter((x) => x.physicalOffset + x.size <= end)
  if (end < r.seenTo) replicaCut(r, end)
  for (const x of below) if (x.physicalOffset >= r.seenTo && queued(x) && x.queueOffset === 0) r.restarts.set(qkey(x.topic, x.queueId), x.physicalOffset)
  r.seenTo = end
  const inQueue = new Set<Model>()
  for (const topic of TOPICS) {
    for (let q = 0; q < QUEUES; q++) {
      const queue = replicaQueue(r, below, topic, q)
      for (const x of queue) inQueue.add(x)
      const n = queue.length === 0 ? 0 : queue.at(-1)!.queueOffset + 1
      assert.equal(r.store.maxOffset(topic, q), n, `${what}: replica maxOffset ${topic}/${q}`)
      assert.equal(r.store.maxQueueOffset(topic, q), n, `${what}: replica maxQueueOffset ${topic}/${q}`)
    }
  }
  for (let k = 0; k < 3 && below.length > 0; k++) {
    const x = k === 0 ? below.at(-1)! : pick(run, below)
    sameMessage(await r.store.lookup(x.physicalOffset), x, `${what}: replica lookup`)
    if (inQueue.has(x)) {
      const got = await r.store.get({ topic: x.topic, queueId: x.queueId, offset: x.queueOffset, maxMessages: 1 })
      assert.equal(got.status, 'FOUND', `${what}: replica get at its queue offset`)
      sameMessage(got.messages[0]!, x, `${what}: replica get`)
    }
    const key = indexed(x) ? (x.keys[0] ?? x.uniqKey) : undefined
    if (key !== undefined) {
      const found = await r.store.queryByKey(x.topic, key, { maxNum: 10_000 })
      assert.ok(found.some((m) => m.physicalOffset === x.physicalOffset), `${what}: replica queryByKey(${x.topic}, ${key})`)
    }
  }
}

/**
 * The queue `topic`/`queueId` as the replica holds it, of the records `below` its end. The
 * master's deleteTopic is not in the bytes; the replica follows it two ways (README, "For a
 * broker and for replication"; docs/design/replication.md): from the data, a record restarting a
 * queue at queue offset 0 empties that queue first (r.restarts), and from the master's word
 * (followTopicDeletion, run by the broker's metadata sync; here by stepReplicate), every record
 * of the topic below the deletion's offset goes (r.followed). Until one of them, a deleted queue
 * stays on the replica as it was. Either stays made when a truncate later cuts the log below it
 * (clamped to the cut, replicaCut), as on the master.
 */
function replicaQueue(r: ReplicaRun, below: Model[], topic: string, queueId: number): Model[] {
  const deletedBelow = Math.max(r.followed.get(topic) ?? 0, r.restarts.get(qkey(topic, queueId)) ?? 0)
  return below.filter((x) => queued(x) && x.topic === topic && x.queueId === queueId && x.physicalOffset >= deletedBelow)
}

/** The broker's metadata sync: the replica follows each deletion its master names. */
async function followDeletions(run: Run, r: ReplicaRun): Promise<string[]> {
  const followed: string[] = []
  for (const { topic, offset } of run.store.deletedTopics()) {
    if (await r.store.followTopicDeletion(topic, offset)) {
      r.followed.set(topic, offset)
      followed.push(`${topic}@${offset}`)
    }
  }
  return followed
}

/**
 * Feeds the replica in random chunks, to the master's end or to a random offset (maybe inside a
 * record), and sometimes follows the master's deletions then.
 */
async function stepReplicate(run: Run): Promise<string> {
  const r = await replicaOf(run)
  const from = r.store.replicaEndOffset
  const masterEnd = run.store.commitLogMaxOffset
  const until = chance(run, 0.5) ? masterEnd : int(run, from, masterEnd)
  let chunks = 0
  for (let at = from; at < until; at = r.store.replicaEndOffset, chunks++) {
    // Replication reads past the master's confirm offset (its replicas make it move).
    const bytes = run.store.readCommitLog(at, Math.min(chunkSize(run.rnd), until - at), { unconfirmed: true })
    if (bytes.length === 0) break
    await r.store.appendReplicated(at, bytes)
  }
  const followed = chance(run, 0.5) ? await followDeletions(run, r) : []
  const what = `replicate ${from}..${r.store.replicaEndOffset} in ${chunks} chunks${followed.length > 0 ? `, followed the deletion of ${followed.join(' ')}` : ''}`
  await checkReplica(run, r, what)
  return what
}

/**
 * Feeds the replica up to a record whose queue offset is damaged in transit (bit 0 of an odd one
 * from 3 on: the unit before, which its own record holds; the body CRC does not cover it. A unit
 * 0 would read as the master's deletion of the queue, replica-deletions.ts), then that record:
 * its dispatch refuses it, the log is cut back to it and the call fails; a later replicate step
 * sends it again undamaged.
 */
async function stepReplicateDamaged(run: Run): Promise<string> {
  const r = await replicaOf(run)
  const from = r.store.replicaEndOffset
  const x = run.messages.find((m) => m.physicalOffset >= from && queued(m) && m.queueOffset % 2 === 1 && m.queueOffset >= 3 && r.store.minOffset(m.topic, m.queueId) < m.queueOffset)
  if (x === undefined) return 'replicate a damaged record: none past the replica'
  for (let at = from; at < x.physicalOffset; at = r.store.replicaEndOffset) {
    const bytes = run.store.readCommitLog(at, Math.min(chunkSize(run.rnd), x.physicalOffset - at), { unconfirmed: true })
    if (bytes.length === 0) break
    await r.store.appendReplicated(at, bytes)
  }
  assert.equal(r.store.replicaEndOffset, x.physicalOffset, 'replicated up to the record to damage')
  const chunk = Buffer.from(run.store.readCommitLog(x.physicalOffset, x.size + int(run, 0, 2000), { unconfirmed: true }))
  chunk[RECORD.queueOffset + 7]! ^= 0x01
  const what = `replicate up to ${x.physicalOffset}, then its record with queue offset ${x.queueOffset} damaged`
  await assert.rejects(r.store.appendReplicated(x.physicalOffset, chunk), isStoreError('CORRUPT_RECORD'), what)
  assert.equal(r.store.replicaEndOffset, x.physicalOffset, `${what}: cut back to it`)
  await checkReplica(run, r, what)
  return what
}

/** Kills the replica (its disk as a killed process leaves it) and reopens it, maybe with the other flush mode. */
async function stepReplicaKill(run: Run): Promise<string> {
  const r = await replicaOf(run)
  const held = r.store.replicaEndOffset
  if (r.io) {
    const io = r.io.processCrash()
    await r.store.close()
    r.io = io
  } else {
    const killed = `${r.options.dir}.killed`
    copyAsKilled(r.options.dir, killed)
    await r.store.close()
    rmSync(r.options.dir, { recursive: true, force: true })
    renameSync(killed, r.options.dir)
  }
  if (chance(run, 0.3)) r.options = { ...r.options, flush: r.options.flush === 'sync' ? 'async' : 'sync' }
  r.store = await MessageStore.open(r.io ? { ...r.options, fileIO: r.io } : r.options)
  assert.equal(r.store.recovery.cleanShutdown, false, 'replica kill: cleanShutdown')
  assert.equal(r.store.replicaEndOffset, r.store.commitLogMaxOffset, 'replica kill: nothing held after a reopen')
  r.comparedUpTo = 0
  const what = `kill the replica (held ${held}, reopened at ${r.store.commitLogMaxOffset}, ${r.options.flush})`
  await checkReplica(run, r, what)
  return what
}

// ---------------------------------------------------------------------------------------------
// Steps

function acknowledged(run: Run, r: PutResult, m: ReturnType<typeof messageFor>['model'], what: string): void {
  assert.equal(r.status, 'PUT_OK', `${what}: status`)
  const x: Model = { ...m, queueOffset: -1, physicalOffset: r.physicalOffset, size: r.size, msgId: r.msgId, storeTimestamp: r.storeTimestamp }
  if (queued(x)) {
    const queue = run.queues.get(qkey(x.topic, x.queueId)) ?? []
    run.queues.set(qkey(x.topic, x.queueId), queue)
    assert.equal(r.queueOffset, queue.length, `${what}: the next queue offset of ${x.topic}/${x.queueId}`)
    x.queueOffset = r.queueOffset
    queue.push(x)
  }
  const prev = run.messages.at(-1)
  if (prev) assert.ok(r.physicalOffset >= prev.physicalOffset + prev.size, `${what}: appended after the previous message`)
  assert.equal(r.storeTimestamp, run.clock, `${what}: store time is the clock's`)
  run.messages.push(x)
}

async function stepPut(run: Run): Promise<string> {
  const n = chance(run, 0.2) ? int(run, 2, 6) : 1
  const ms = Array.from({ length: n }, () => messageFor(run))
  // Several puts made together resolve in the order they were made.
  const rs = await Promise.all(ms.map((m) => run.store.put(m.put)))
  rs.forEach((r, i) => acknowledged(run, r, ms[i]!.model, `put ${i} of ${n}`))
  return `put x${n}`
}

/** A putBatch, or (40%) the same messages encoded as a RocketMQ client's batch body: putEncodedBatch. */
async function stepBatch(run: Run): Promise<string> {
  const n = int(run, 1, 5)
  const ms = Array.from({ length: n }, () => messageFor(run))
  for (const m of ms) if (m.model.body.length > 200) m.put.body = m.model.body = m.model.body.subarray(0, 200)
  const encoded = chance(run, 0.4)
  const how = encoded ? 'putEncodedBatch' : 'putBatch'
  const rs = encoded ? await run.store.putEncodedBatch(encodedBatchOf(run, ms)) : await run.store.putBatch(ms.map((m) => m.put))
  assert.equal(rs.length, n)
  rs.forEach((r, i) => acknowledged(run, r, ms[i]!.model, `${how} ${i} of ${n}`))
  for (let i = 1; i < n; i++) assert.equal(rs[i]!.physicalOffset, rs[i - 1]!.physicalOffset + rs[i - 1]!.size, 'a batch is contiguous')
  return `${how} x${n}`
}

/**
 * The messages as one encoded batch: they take the first one's topic, queue, sysFlag and born
 * host (what a batch's messages share), and go in the middle of a larger buffer, as a request's
 * body sits in its frame; their properties are encoded as the store encodes an object's.
 */
function encodedBatchOf(run: Run, ms: ReturnType<typeof messageFor>[]): EncodedBatch {
  const first = ms[0]!
  // A batch is never transactional (RocketMQ's putMessages; stepInvalid asks for one).
  const sysFlag = first.model.sysFlag & ~TRANSACTION_MASK
  for (const m of ms) {
    m.put.topic = m.model.topic = first.model.topic
    m.put.queueId = m.model.queueId = first.model.queueId
    m.model.sysFlag = sysFlag
  }
  const entries = ms.map(({ model: x }) => {
    const props: Record<string, string> = {}
    if (x.tags !== undefined) props[PROPERTY.TAGS] = x.tags
    if (x.keys.length > 0) props[PROPERTY.KEYS] = x.keys.join(' ')
    Object.assign(props, x.extra)
    return { body: Buffer.from(x.body), flag: x.flag, properties: encodeProperties(props) }
  })
  const pad = int(run, 0, 8)
  const body = Buffer.concat([Buffer.alloc(pad, 0xee), encodeBatchBody(entries), Buffer.alloc(3, 0xee)]).subarray(pad, -3)
  const batch: EncodedBatch = { topic: first.model.topic, queueId: first.model.queueId, body }
  if (first.put.sysFlag !== undefined) batch.sysFlag = first.put.sysFlag & ~TRANSACTION_MASK
  if (first.put.bornHost !== undefined) batch.bornHost = first.put.bornHost
  return batch
}

/** What `get` must answer, from the model (tiny ConsumeQueue files bound every read). */
async function stepGet(run: Run): Promise<string> {
  const topic = pick(run, TOPICS)
  const queueId = int(run, 0, QUEUES - 1)
  const queue = visibleQueue(run, topic, queueId)
  const offset = Math.max(0, int(run, -1, queue.length + 2))
  const maxMessages = int(run, 1, 12)
  const tags = chance(run, 0.5) ? undefined : chance(run, 0.1) ? ['*'] : Array.from({ length: int(run, 1, 2) }, () => pick(run, TAGS))
  const r = await run.store.get({ topic, queueId, offset, maxMessages, ...(tags ? { tags } : {}) })
  const what = `get ${topic}/${queueId} at ${offset} max ${maxMessages} tags ${JSON.stringify(tags)}`
  assert.equal(r.minOffset, 0, what)
  assert.equal(r.maxOffset, queue.length, what)
  if (queue.length === 0) {
    assert.equal(r.status, 'NO_MESSAGE_IN_QUEUE', what)
    return what
  }
  if (offset >= queue.length) {
    assert.equal(r.status, offset === queue.length ? 'OFFSET_OVERFLOW_ONE' : 'OFFSET_OVERFLOW_BADLY', what)
    assert.equal(r.nextOffset, offset === queue.length ? offset : 0, what)
    return what
  }
  const units = run.options.consumeQueueUnitsPerFile!
  const stop = Math.min(queue.length, (Math.floor(offset / units) + 1) * units)
  const filter = tags && !tags.includes('*') ? new Set(tags) : undefined
  const codes = filter ? new Set([...filter].map(javaStringHashCode)) : undefined
  const expected: Model[] = []
  let next = offset
  // As RocketMQ: the unit's tag hash filters first, then the read stops when full, then the
  // message's real tag filters (so a unit whose tag only collides can end a full read).
  for (; next < stop; next++) {
    const x = queue[next]!
    if (codes && !codes.has(x.tags === undefined ? 0 : javaStringHashCode(x.tags))) continue
    if (expected.length >= maxMessages) break
    if (filter && (x.tags === undefined || !filter.has(x.tags))) continue
    expected.push(x)
  }
  assert.equal(r.status, expected.length > 0 ? 'FOUND' : 'NO_MATCHED_MESSAGE', what)
  assert.equal(r.messages.length, expected.length, what)
  r.messages.forEach((m, i) => sameMessage(m, expected[i]!, `${what}, message ${i}`))
  assert.equal(r.nextOffset, next, `${what}: nextOffset`)
  return what
}

/** What `queryByKey` must answer: the key's messages in the window, newest first, each once. */
async function stepQuery(run: Run): Promise<string> {
  const topic = pick(run, TOPICS)
  const key = pick(run, [...KEYS, ...run.messages.slice(-20).flatMap((x) => (x.uniqKey ? [x.uniqKey] : []))])
  const times = run.messages.map((x) => x.storeTimestamp)
  const options: { maxNum?: number; begin?: number; end?: number } = {}
  if (chance(run, 0.4)) options.maxNum = int(run, 1, 4)
  if (times.length > 0 && chance(run, 0.5)) {
    const a = pick(run, times) + int(run, -1500, 1500)
    const b = pick(run, times) + int(run, -1500, 1500)
    options.begin = Math.min(a, b)
    options.end = Math.max(a, b)
  }
  const what = `queryByKey(${topic}, ${key}, ${JSON.stringify(options)})`
  const found = await run.store.queryByKey(topic, key, options)
  const begin = options.begin ?? 0
  const end = options.end ?? run.clock
  const expected = run.messages
    .filter((x) => x.topic === topic && indexed(x) && visible(run, x) && (x.keys.includes(key) || x.uniqKey === key) && x.storeTimestamp >= begin && x.storeTimestamp <= end)
    .reverse()
  const got = found.map((m) => m.physicalOffset)
  assert.equal(new Set(got).size, got.length, `${what}: each message once, got ${got.join(' ')}`)
  assert.ok(got.length <= (options.maxNum ?? 32), `${what}: at most maxNum`)
  // Newest first; the index keeps times in whole seconds, so messages stored within a second
  // after `begin` may be missed (the oldest ones, at the end of the list), nothing else.
  assert.deepEqual(got, expected.slice(0, got.length).map((x) => x.physicalOffset), `${what}: the newest matching messages in order`)
  const sure = expected.filter((x) => options.begin === undefined || x.storeTimestamp >= begin + 1000)
  assert.ok(got.length >= Math.min(options.maxNum ?? 32, sure.length), `${what}: found ${got.length}, expected at least ${Math.min(options.maxNum ?? 32, sure.length)} of ${expected.length}`)
  found.forEach((m, i) => sameMessage(m, expected[i]!, `${what}, message ${i}`))
  return what
}

async function stepTimes(run: Run): Promise<string> {
  const topic = pick(run, TOPICS)
  const queueId = int(run, 0, QUEUES - 1)
  const queue = visibleQueue(run, topic, queueId)
  assert.equal(await run.store.earliestMessageTime(topic, queueId), queue[0]?.storeTimestamp ?? -1, `earliestMessageTime ${topic}/${queueId}`)
  const at = queue.length > 0 && chance(run, 0.8) ? pick(run, queue).storeTimestamp + int(run, -1, 1) : run.clock + int(run, -5000, 5000)
  const expected = queue.findIndex((x) => x.storeTimestamp >= at)
  assert.equal(await run.store.offsetByTime(topic, queueId, at), expected < 0 ? queue.length : expected, `offsetByTime ${topic}/${queueId} ${at}`)
  return `times ${topic}/${queueId}`
}

function stepOffsets(run: Run): string {
  const group = pick(run, GROUPS)
  const topic = pick(run, TOPICS)
  const queueId = int(run, 0, QUEUES - 1)
  const k = `${group}@${topic}@${queueId}`
  if (chance(run, 0.5)) {
    const offset = int(run, 0, 50)
    run.store.commitOffset(group, topic, queueId, offset)
    run.committed.set(k, offset)
    return `commitOffset ${k} ${offset}`
  }
  assert.equal(run.store.committedOffset(group, topic, queueId), run.committed.get(k) ?? -1, `committedOffset ${k}`)
  return `committedOffset ${k}`
}

async function stepPersist(run: Run): Promise<string> {
  await run.store.persistConsumerOffsets()
  run.persisted = new Map(run.committed)
  return 'persistConsumerOffsets'
}

/** Calls the store must refuse with a StoreError of a given code, changing nothing. */
async function stepInvalid(run: Run): Promise<string> {
  const s = run.store
  const before = s.maxPhysicalOffset
  const fileSize = run.options.commitLogFileSize!
  const cases: [string, () => Promise<unknown>, string][] = [
    ['empty topic', () => s.put({ topic: '', queueId: 0, body: 'x' }), 'TOPIC_INVALID'],
    ['topic with a space', () => s.put({ topic: 'a b', queueId: 0, body: 'x' }), 'TOPIC_INVALID'],
    ['negative queueId', () => s.put({ topic: 'orders', queueId: -1, body: 'x' }), 'INVALID_ARGUMENT'],
    ['fractional queueId', () => s.put({ topic: 'orders', queueId: 1.5, body: 'x' }), 'INVALID_ARGUMENT'],
    ['separator in a property', () => s.put({ topic: 'orders', queueId: 0, body: 'x', properties: { p: 'a\u0001b' } }), 'INVALID_PROPERTY'],
    ['empty property value', () => s.put({ topic: 'orders', queueId: 0, body: 'x', properties: { p: '' } }), 'INVALID_PROPERTY'],
    ['body larger than a file', () => s.put({ topic: 'orders', queueId: 0, body: Buffer.alloc(fileSize) }), 'MESSAGE_TOO_LARGE'],
    ['batch with one bad message', () => s.putBatch([{ topic: 'orders', queueId: 0, body: 'fine' }, { topic: '', queueId: 0, body: 'x' }]), 'TOPIC_INVALID'],
    ['batch larger than a file', () => s.putBatch(Array.from({ length: 8 }, () => ({ topic: 'orders', queueId: 0, body: Buffer.alloc(fileSize / 8) }))), 'MESSAGE_TOO_LARGE'],
    ['encoded batch cut short', () => s.putEncodedBatch({ topic: 'orders', queueId: 0, body: encodeBatchBody([{ body: Buffer.from('fine'), flag: 0, properties: '' }, { body: Buffer.from('x'), flag: 0, properties: '' }]).subarray(0, -1) }), 'INVALID_ARGUMENT'],
    ['transactional encoded batch', () => s.putEncodedBatch({ topic: 'orders', queueId: 0, sysFlag: 0x8, body: encodeBatchBody([{ body: Buffer.from('fine'), flag: 0, properties: '' }]) }), 'INVALID_ARGUMENT'],
    ['encoded batch with one bad message', () => s.putEncodedBatch({ topic: 'orders', queueId: 0, body: encodeBatchBody([{ body: Buffer.from('fine'), flag: 0, properties: '' }, { body: Buffer.from('x'), flag: 0, properties: 'p\u0001\u0002' }]) }), 'INVALID_PROPERTY'],
    ['get with maxMessages 0', () => s.get({ topic: 'orders', queueId: 0, offset: 0, maxMessages: 0 }), 'INVALID_ARGUMENT'],
    ['get at a negative offset', () => s.get({ topic: 'orders', queueId: 0, offset: -1 }), 'INVALID_ARGUMENT'],
    ['lookup of a negative offset', () => s.lookup(-1), 'INVALID_ARGUMENT'],
    ['lookup past the end', () => s.lookup(s.maxPhysicalOffset + 1), 'INVALID_ARGUMENT'],
    ['viewMessage of no id', () => s.viewMessage('not an id'), 'INVALID_ARGUMENT'],
    ['queryByKey with maxNum 0', () => s.queryByKey('orders', 'k1', { maxNum: 0 }), 'INVALID_ARGUMENT'],
    ['queryByKey with an empty key', () => s.queryByKey('orders', ''), 'INVALID_ARGUMENT'],
  ]
  if (run.messages.length > 0) {
    const x = pick(run, run.messages)
    cases.push(['lookup inside a record', () => s.lookup(x.physicalOffset + 1), 'INVALID_ARGUMENT'])
  }
  {
    const refused = pick(run, SYSFLAGS_REFUSED)
    cases.push([`sysFlag 0x${refused.toString(16)}`, () => s.put({ topic: 'orders', queueId: 0, body: 'x', sysFlag: refused }), 'INVALID_ARGUMENT'])
    cases.push(['properties: null', () => s.put({ topic: 'orders', queueId: 0, body: 'x', properties: null as unknown as Record<string, string> }), 'INVALID_ARGUMENT'])
    cases.push(['queryByKey begin NaN', () => s.queryByKey('orders', 'k1', { begin: NaN }), 'INVALID_ARGUMENT'])
    cases.push(["queryByKey end 'x'", () => s.queryByKey('orders', 'k1', { end: 'x' as unknown as number }), 'INVALID_ARGUMENT'])
  }
  const [name, call, code] = pick(run, cases)
  await assert.rejects(
    (async () => call())(),
    isStoreError(code),
    name,
  )
  assert.equal(s.maxPhysicalOffset, before, `${name}: nothing appended`)
  return `invalid: ${name}`
}

// ---- Topics: deleteTopic and a put after it (topics.ts) -------------------------------------

/**
 * deleteTopic of a random topic: its queues and every group's consumer offsets of it go (the
 * deletion persists the whole offset table), its records stay; sometimes a put of it follows,
 * which must take queue offset 0. topics() lists what the model holds.
 */
async function stepDeleteTopic(run: Run): Promise<string> {
  const topic = pick(run, TOPICS)
  // A queue a truncate emptied does not make its topic known: a reopen forgets it.
  const known = [...run.queues].some(([k, queue]) => k.startsWith(`${topic}/`) && queue.length > 0) || [...run.committed.keys()].some((k) => k.split('@')[1] === topic)
  const deleted = await run.store.deleteTopic(topic)
  // A topic with no queue and no offset may still be known to the store (transaction messages
  // only, or queues a truncate emptied).
  if (known) assert.equal(deleted, true, `deleteTopic ${topic}: a known topic`)
  for (const [k, queue] of [...run.queues]) {
    if (!k.startsWith(`${topic}/`)) continue
    for (const x of queue) x.dequeued = true
    run.queues.delete(k)
  }
  if (deleted) {
    for (const k of [...run.committed.keys()]) if (k.split('@')[1] === topic) run.committed.delete(k)
    run.persisted = new Map(run.committed)
  }
  checkTopics(run, `topics() after deleteTopic ${topic}`)
  if (!chance(run, 0.5)) return `deleteTopic ${topic} (${deleted})`
  const m = messageFor(run)
  m.put.topic = m.model.topic = topic
  acknowledged(run, await run.store.put(m.put), m.model, `put after deleteTopic ${topic}`)
  return `deleteTopic ${topic} (${deleted}), put`
}

/**
 * topics() lists the queues that have ConsumeQueues: every queue with a record consumers see, and
 * no queue the model does not know. A queue whose records are all past the confirm offset has no
 * ConsumeQueue yet (dispatch has not reached them); one a truncate emptied keeps its ConsumeQueue
 * until a reopen rebuilds without it: both may be listed or not.
 */
function checkTopics(run: Run, what: string): void {
  const listed = new Set(run.store.topics().flatMap(({ topic, queueIds }) => queueIds.map((q) => qkey(topic, q))))
  for (const k of run.queues.keys()) {
    const [t, q] = [k.slice(0, k.lastIndexOf('/')), Number(k.slice(k.lastIndexOf('/') + 1))]
    if (visibleQueue(run, t, q).length > 0) assert.ok(listed.has(k), `${what}: ${k} holds visible messages, so it is listed`)
  }
  for (const k of listed) assert.ok(run.queues.has(k), `${what}: ${k} is listed, but the model holds no such queue`)
  const order = run.store.topics().map(({ topic }) => topic)
  assert.deepEqual(order, [...order].sort(), `${what}: sorted by topic`)
}

// ---- end of topics ----------------------------------------------------------------------------

/** The run's options with its disk: simulated, or the real one (the store's default). */
function withDisk(run: Run): MessageStoreOptions {
  return run.io ? { ...run.options, fileIO: run.io } : run.options
}

function deleteFromSim(io: SimFileIO, prefix: string): void {
  for (const p of [...io.files.keys()]) if (p.startsWith(prefix)) io.files.delete(p)
  for (const d of [...io.dirs]) if (d.startsWith(prefix)) io.dirs.delete(d)
}

/**
 * Copies `from` as a killed process leaves it: what was written, read through the page cache.
 * Temp files (a spare being made, a file being replaced) may vanish under the copy; open removes
 * them anyway.
 */
function copyAsKilled(from: string, to: string): void {
  cpSync(from, to, { recursive: true, filter: (p) => !p.endsWith('.tmp') })
}

async function reopen(run: Run, how: 'close' | 'kill'): Promise<string> {
  const parts: string[] = [how]
  if (how === 'kill') {
    // The disk as a killed process leaves it: everything written, nothing more.
    if (run.io) {
      const io = run.io.processCrash()
      await run.store.close() // the old instance writes to what is thrown away next
      run.io = io
    } else {
      const killed = `${run.dir}.killed`
      copyAsKilled(run.dir, killed)
      await run.store.close()
      rmSync(run.dir, { recursive: true, force: true })
      renameSync(killed, run.dir)
    }
    run.committed = new Map(run.persisted)
  } else {
    await run.store.close()
    run.persisted = new Map(run.committed)
  }
  if (chance(run, 0.25)) {
    if (run.io) deleteFromSim(run.io, path.join(run.dir, 'consumequeue') + path.sep)
    else rmSync(path.join(run.dir, 'consumequeue'), { recursive: true, force: true })
    parts.push('consumequeue/ deleted')
  }
  if (chance(run, 0.2)) {
    if (run.io) deleteFromSim(run.io, path.join(run.dir, 'index') + path.sep)
    else rmSync(path.join(run.dir, 'index'), { recursive: true, force: true })
    parts.push('index/ deleted')
  }
  if (chance(run, 0.3)) {
    run.options = { ...run.options, flush: run.options.flush === 'sync' ? 'async' : 'sync' }
    parts.push(`now ${run.options.flush}`)
  }
  run.store = await MessageStore.open(withDisk(run))
  assert.equal(run.store.recovery.cleanShutdown, how === 'close', `${parts.join(', ')}: cleanShutdown`)
  reopenedConfirm(run, how, parts.join(', '))
  for (const [k, v] of run.persisted) {
    const [group, topic, queueId] = k.split('@') as [string, string, string]
    assert.equal(run.store.committedOffset(group, topic, Number(queueId)), v, `${parts.join(', ')}: committed offset ${k} persisted`)
  }
  await checkAll(run, `after ${parts.join(', ')}`)
  return parts.join(', ')
}

/** The steps, each with the share of the runs it takes (adding up to 1.0, see STEP_DECK). */
const STEP_KINDS: [number, string, (run: Run) => Promise<string> | string][] = [
  [0.27, 'put', stepPut],
  [0.12, 'putBatch', stepBatch],
  [0.14, 'get', stepGet],
  [0.12, 'queryByKey', stepQuery],
  [0.04, 'offsetByTime', stepTimes],
  [0.07, 'consumer offsets', stepOffsets],
  [0.01, 'persistConsumerOffsets', stepPersist],
  [0.075, 'an invalid call', stepInvalid],
  [0.015, 'close and reopen', (run) => reopen(run, 'close')],
  [0.01, 'kill and reopen', (run) => reopen(run, 'kill')],
  [0.06, 'confirm offset', stepConfirm],
  [0.05, 'replicate', stepReplicate],
  [0.01, 'kill the replica', stepReplicaKill],
  [0.01, 'deleteTopic', stepDeleteTopic],
]

// ---------------------------------------------------------------------------------------------
// truncate (issue 13): the model drops the messages at and after the cut, and the queues continue
// from what is left.

/** Share of the steps that truncate, taken from the puts' share. */
const TRUNCATE_SHARE = 0.02

/**
 * Cuts at the start or the end of one of the last messages (a file's start, an end-of-file
 * blank's start or the end of the log among them), or, refused, inside one.
 */
async function stepTruncate(run: Run): Promise<string> {
  const recent = run.messages.slice(-12)
  if (recent.length > 0 && chance(run, 0.15)) {
    const x = pick(run, recent)
    const inside = x.physicalOffset + int(run, 1, x.size - 1)
    const before = run.store.maxPhysicalOffset
    await assert.rejects(run.store.truncate(inside), isStoreError('INVALID_ARGUMENT'), `truncate inside the message at ${x.physicalOffset}`)
    assert.equal(run.store.maxPhysicalOffset, before, 'a refused truncate changes nothing')
    return `truncate(${inside}) refused`
  }
  const x = recent.length > 0 ? pick(run, recent) : undefined
  const cut = x === undefined ? run.store.maxPhysicalOffset : chance(run, 0.5) ? x.physicalOffset : x.physicalOffset + x.size
  await run.store.truncate(cut)
  assert.equal(run.store.maxPhysicalOffset, cut, `truncate(${cut}): the log ends at the cut`)
  const dropped = run.messages.filter((m) => m.physicalOffset >= cut).length
  run.messages = run.messages.filter((m) => m.physicalOffset < cut)
  for (const [k, queue] of run.queues) run.queues.set(k, queue.filter((m) => m.physicalOffset < cut))
  // The confirm offset is lowered with the log (MessageStore.truncate, truncate.ts).
  if (run.confirm !== undefined && run.confirm > cut) run.confirm = cut
  assert.equal(run.store.confirmOffset, run.confirm ?? cut, `truncate(${cut}): the confirm offset`)
  // A replica holding bytes past the cut (written or held of a cut record) no longer follows
  // this log: it is cut back too before its next step (replicaOf).
  const r = replicas.get(run)
  if (r && r.store.replicaEndOffset > cut) r.cutTo = Math.min(r.cutTo ?? cut, cut)
  return `truncate(${cut}) dropped ${dropped}`
}

STEP_KINDS[0]![0] -= TRUNCATE_SHARE
STEP_KINDS.push([TRUNCATE_SHARE, 'truncate', stepTruncate])

/** Share of the steps that replicate a damaged record, taken from the puts' share. */
const DAMAGED_REPLICATE_SHARE = 0.01
STEP_KINDS[0]![0] -= DAMAGED_REPLICATE_SHARE
STEP_KINDS.push([DAMAGED_REPLICATE_SHARE, 'replicate a damaged record', stepReplicateDamaged])

// ---------------------------------------------------------------------------------------------

// Step kinds are drawn from a shuffled deck of STEP_DECK cards, each kind holding its share of
// them: every STEP_DECK steps take each kind exactly its share (the shares once added up to 1.06
// and were walked as a running sum, so the kinds past its first 1.0 never ran). The deck is
// checked when the module loads: each share a whole number of cards, at least one, all of them
// adding up to 1.0.
const STEP_DECK = 200

function stepDeck(): number[] {
  const cards: number[] = []
  STEP_KINDS.forEach(([share, name], kind) => {
    const n = Math.round(share * STEP_DECK)
    assert.ok(n >= 1 && Math.abs(n - share * STEP_DECK) < 1e-9, `step kind ${name}: share ${share} is not a whole number of the ${STEP_DECK} cards, at least one`)
    for (let i = 0; i < n; i++) cards.push(kind)
  })
  assert.equal(cards.length, STEP_DECK, `the step kinds' shares add up to ${cards.length / STEP_DECK}, not 1.0`)
  return cards
}
const STEP_CARDS = stepDeck()

/** The next step kind: the next card of the run's deck, shuffled anew (seeded) when it runs out. */
function nextKind(run: Run): number {
  if (run.deck.length === 0) {
    run.deck = [...STEP_CARDS]
    for (let i = run.deck.length - 1; i > 0; i--) {
      const j = Math.floor(run.rnd() * (i + 1))
      ;[run.deck[i], run.deck[j]] = [run.deck[j]!, run.deck[i]!]
    }
  }
  return run.deck.pop()!
}

/** Runs one random step; `run.doing` names it until it returns its description. */
async function step(run: Run): Promise<string> {
  run.clock += chance(run, 0.3) ? 0 : int(run, 1, 1500)
  const kind = nextKind(run)
  const [, name, fn] = STEP_KINDS[kind]!
  run.doing = name
  run.picked[kind]!++
  return fn(run)
}

async function modelRun(seed: number, disk: Disk, steps: number): Promise<{ messages: number; reopens: number; picked: string }> {
  const rnd = seededRandom(seed)
  // On the simulated disk the store's whole directory, index included, is simulated.
  const simulated = disk === 'real' ? undefined : simPath('model')
  const { dir, cleanup } = simulated ? { dir: simulated, cleanup: async () => assertNothingReal(simulated) } : await tempDir('mqts-store-model-')
  const io = disk === 'real' ? undefined : new SimFileIO()
  const run: Run = {
    seed,
    rnd,
    dir,
    io,
    clock: 1_700_000_000_000 + Math.floor(rnd() * 1e9),
    messages: [],
    queues: new Map(),
    committed: new Map(),
    persisted: new Map(),
    log: [],
    doing: '',
    confirm: seed % 2 === 1 ? 0 : undefined,
    deck: [],
    picked: STEP_KINDS.map(() => 0),
    options: undefined as unknown as MessageStoreOptions,
    store: undefined as unknown as MessageStore,
  }
  run.options = {
    dir,
    flush: chance(run, 0.5) ? 'sync' : 'async',
    commitLogFileSize: pick(run, [4096, 8192, 16384]),
    consumeQueueUnitsPerFile: pick(run, [2, 3, 5, 8]),
    // Few enough that a rebuild after deleting consumequeue/ evicts files while it flushes them,
    // or more than the run makes.
    maxOpenConsumeQueueFiles: pick(run, [4, 16, steps + 1024]),
    maxHashSlotNum: pick(run, [16, 64]),
    maxIndexNum: pick(run, [256, 1024]),
    now: () => run.clock,
    persistConsumerOffsetIntervalMs: 1e9,
    flushConsumeQueueIntervalMs: 5,
    retention: { cleanResourceIntervalMs: 1e9 },
    ...(run.confirm !== undefined ? { confirmOffset: true } : {}),
  }
  run.store = await MessageStore.open(withDisk(run))
  let reopens = 0
  try {
    for (let i = 0; i < steps; i++) {
      let what = ''
      try {
        what = await step(run)
        if (what.startsWith('close') || what.startsWith('kill')) reopens++
        checkQueues(run, what)
        // A sample of what was acknowledged: the newest and two at random.
        if (run.messages.length > 0) {
          await checkMessage(run, run.messages.at(-1)!, `newest message after ${what}`)
          for (let k = 0; k < 2; k++) await checkMessage(run, pick(run, run.messages), `a message after ${what}`)
        }
      } catch (err) {
        what ||= `${run.doing}, before it finished`
        run.log.push(`${i}: ${what} FAILED`)
        const config = JSON.stringify({ ...run.options, now: undefined, dir: undefined })
        throw new Error(`seed ${seed}, step ${i} (${what}), config ${config}\nlast steps:\n  ${run.log.slice(-15).join('\n  ')}\n${(err as Error)?.stack ?? String(err)}`)
      }
      run.log.push(`${i}: ${what}`)
    }
    await checkAll(run, 'at the end')
    const picked = STEP_KINDS.map(([, name], kind) => `${name} ${run.picked[kind]}`).join(', ')
    // A whole deck takes every kind; a shorter run (the real disk's) only prints its counts.
    if (steps >= STEP_DECK) {
      const never = STEP_KINDS.filter((_, kind) => run.picked[kind] === 0).map(([, name]) => name)
      assert.deepEqual(never, [], `seed ${seed}: step kinds never picked in ${steps} steps (${picked})`)
    }
    return { messages: run.messages.length, reopens, picked }
  } finally {
    await closeReplica(run).catch(() => undefined)
    if (run.store.status !== 'closed') await run.store.close()
    await cleanup()
  }
}

for (const { seed, disk, steps } of RUNS) {
  test(`model check of the store's API: random puts, batches, gets, key queries, reopens and kills (seed ${seed}, ${steps} steps, ${disk} disk${seed % 2 === 1 ? ', confirm offset' : ''})`, { timeout: 60_000 + steps * 200 }, async (t) => {
    const { messages, reopens, picked } = await modelRun(seed, disk, steps)
    t.diagnostic(`seed ${seed}: ${messages} messages acknowledged, ${reopens} reopens; steps picked: ${picked}`)
  })
}
