// A broker group as real processes: a nameserver, a master (SYNC_MASTER, then ASYNC_MASTER) and
// two replicas (SLAVE, brokerId 1 and 2, same brokerName), sends over the remoting protocol. The
// replicas' CommitLog files end byte-identical to the master's and their ConsumeQueues equal; a
// replica killed with SIGKILL resumes from its offset; an empty replica started while producers
// run catches up; a SYNC_MASTER without replicas answers SLAVE_NOT_AVAILABLE and every message
// it acknowledged is on a replica; with the master stopped the route keeps the replica and the
// replica answers pulls. Garbage or a truncated frame from an HA peer closes that link only: raw
// sockets at the master's HA port (its replica goes on, its clients are served), a fake master
// feeding a replica process (it drops the link, writes nothing, then follows the real master).
// ali-ons consumers read from a replica while the master is stopped (a new group from the
// first offset, a known group from its offsets the replica copied from its master). Counts:
// HA_TEST_MESSAGES (per produce round).
import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import * as net from 'node:net'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { after, test } from 'node:test'
import { decodeMessages } from '@mqts/client'
import { countFromEnv } from '@mqts/common'
import { RemotingCommand, RequestCode, ResponseCode, encodeRemotingJson, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { onsClient, startMqts, stop, stopAll, type Server } from './processes.js'
import { waitUntil } from '@mqts/common/testing'

after(stopAll)

const MESSAGES = countFromEnv('HA_TEST_MESSAGES', 40)
const TOPIC = 'HaTopic'
const QUEUES = 4
const T = 5000

/** SEND_MESSAGE_V2 with its short header names; TAGS empty (properties left out). */
function sendRequest(queueId: number, body: string): RemotingCommand {
  return RemotingCommand.createRequest(RequestCode.SEND_MESSAGE_V2, { a: 'PG', b: TOPIC, c: 'TBW102', d: String(QUEUES), e: String(queueId), f: '0', g: String(Date.now()), h: '0', i: '', j: '0', k: 'false' }, body)
}

function pullRequest(queueId: number, offset: number): RemotingCommand {
  return RemotingCommand.createRequest(RequestCode.PULL_MESSAGE, { consumerGroup: 'HaG', topic: TOPIC, queueId: String(queueId), queueOffset: String(offset), maxMsgNums: '1000', sysFlag: '4', commitOffset: '0', suspendTimeoutMillis: '0', subscription: '*', subVersion: '0' })
}

const until = (what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> => waitUntil(what, cond, ms, 100)

interface Group {
  dir: string
  ns: Server
  client: TcpRemotingClient
  confs: string[]
  servers: Array<Server | undefined>
}

/** broker.conf of broker `id` (0 the master) of group `role`. */
async function writeConf(dir: string, ns: string, id: number, role: string): Promise<string> {
  const conf = path.join(dir, `broker-${id}.conf`)
  const lines = [
    'brokerClusterName=HaCluster',
    'brokerName=broker-ha',
    `brokerId=${id}`,
    `brokerRole=${id === 0 ? role : 'SLAVE'}`,
    `namesrvAddr=${ns}`,
    'registerBrokerInterval=500',
    'slaveSyncIntervalMs=300',
    'syncFlushTimeout=2000',
    'mappedFileSizeCommitLog=1048576',
    // Replicas serve reads (a consumer goes to one when the master is gone).
    'slaveReadEnable=true',
    `storePathRootDir=${path.join(dir, `b${id}`, 'store')}`,
  ]
  await writeFile(conf, lines.join('\n') + '\n')
  return conf
}

async function startBroker(g: Group, id: number): Promise<Server> {
  const s = await startMqts(['broker', '-c', g.confs[id]!, '--port', '0'])
  g.servers[id] = s
  return s
}

async function startGroup(role: string, replicas: number[]): Promise<Group> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-ha-'))
  const ns = await startMqts(['namesrv', '--port', '0', '--data', path.join(dir, 'ns'), '--broker-expiry', '3000', '--scan-interval', '200'])
  const g: Group = { dir, ns, client: new TcpRemotingClient({ logger: silentLogger }), confs: [], servers: [] }
  for (const id of [0, 1, 2]) g.confs.push(await writeConf(dir, ns.address, id, role))
  const master = await startBroker(g, 0)
  const created = await g.client.invoke(master.address, RemotingCommand.createRequest(RequestCode.UPDATE_AND_CREATE_TOPIC, { topic: TOPIC, defaultTopic: 'TBW102', readQueueNums: String(QUEUES), writeQueueNums: String(QUEUES), perm: '6', topicFilterType: 'SINGLE_TAG', order: 'false' }), T)
  assert.equal(created.code, ResponseCode.SUCCESS, created.remark ?? '')
  for (const id of replicas) await startBroker(g, id)
  return g
}

async function stopGroup(g: Group): Promise<void> {
  await g.client.close()
  for (const s of [...g.servers].reverse()) if (s) await stop(s)
  await stop(g.ns)
  await rm(g.dir, { recursive: true, force: true })
}

/** Each queue's max offset on one broker. */
async function maxOffsets(g: Group, address: string): Promise<number[]> {
  const out: number[] = []
  for (let q = 0; q < QUEUES; q++) {
    const r = await g.client.invoke(address, RemotingCommand.createRequest(RequestCode.GET_MAX_OFFSET, { topic: TOPIC, queueId: String(q) }), T)
    out.push(r.code === ResponseCode.SUCCESS ? Number(r.extFields.offset) : -1)
  }
  return out
}

async function caughtUp(g: Group, ids: number[]): Promise<void> {
  const want = (await maxOffsets(g, g.servers[0]!.address)).join()
  for (const id of ids) {
    await until(`replica ${id} caught up with ${want}`, async () => (await maxOffsets(g, g.servers[id]!.address).catch(() => [])).join() === want)
  }
}

/** Sends `count` messages round-robin; each body and the code it was answered with. */
async function produce(g: Group, prefix: string, count: number): Promise<Array<{ body: string; code: number }>> {
  const out: Array<{ body: string; code: number }> = []
  for (let i = 0; i < count; i++) {
    const body = `${prefix}-${i}-`.padEnd(100 + (i % 7) * 50, 'x')
    const r = await g.client.invoke(g.servers[0]!.address, sendRequest(i % QUEUES, body), T)
    out.push({ body, code: r.code })
  }
  return out
}

/** Every body a broker answers for the topic (pulls from offset 0 of each queue). */
async function bodiesOn(g: Group, address: string): Promise<Set<string>> {
  const out = new Set<string>()
  for (let q = 0; q < QUEUES; q++) {
    const r = await g.client.invoke(address, pullRequest(q, 0), T)
    if (r.code !== ResponseCode.SUCCESS) continue
    for (const m of decodeMessages(r.body, 'broker-ha')) out.add(m.body.toString())
  }
  return out
}

/** Every file under `dir` (relative path → content). */
async function filesUnder(dir: string, prefix = ''): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>()
  for (const name of (await readdir(dir)).sort()) {
    const p = path.join(dir, name)
    if ((await stat(p)).isDirectory()) for (const [k, v] of await filesUnder(p, `${prefix}${name}/`)) out.set(k, v)
    else out.set(`${prefix}${name}`, await readFile(p))
  }
  return out
}

function assertSameFiles(a: Map<string, Buffer>, b: Map<string, Buffer>, what: string): void {
  assert.deepEqual([...b.keys()], [...a.keys()], `${what}: the same files`)
  for (const [name, bytes] of a) assert.ok(bytes.equals(b.get(name)!), `${what}: ${name} byte-identical`)
}

async function assertReplicasIdentical(g: Group, ids: number[]): Promise<void> {
  const store = (id: number): string => path.join(g.dir, `b${id}`, 'store')
  const log = await filesUnder(path.join(store(0), 'commitlog'))
  const cq = await filesUnder(path.join(store(0), 'consumequeue', TOPIC))
  assert.ok(log.size > 0 && cq.size > 0)
  for (const id of ids) {
    assertSameFiles(log, await filesUnder(path.join(store(id), 'commitlog')), `replica ${id} CommitLog`)
    assertSameFiles(cq, await filesUnder(path.join(store(id), 'consumequeue', TOPIC)), `replica ${id} ConsumeQueue`)
  }
}

test('SYNC_MASTER and two replicas as processes: catch-up, SIGKILL and restart, SLAVE_NOT_AVAILABLE, reads from a replica with the master stopped', { timeout: 120_000 }, async () => {
  const g = await startGroup('SYNC_MASTER', [1])
  try {
    // Sends succeed once replica 1 is in sync (before that SLAVE_NOT_AVAILABLE: stored, not replicated).
    await until('replica 1 in sync', async () => (await produce(g, 'warm', 1))[0]!.code === ResponseCode.SUCCESS)
    const acked: string[] = []
    const record = (rs: Array<{ body: string; code: number }>): void => {
      for (const r of rs) if (r.code === ResponseCode.SUCCESS) acked.push(r.body)
    }
    record(await produce(g, 'a', MESSAGES))
    // An empty replica 2 starts while a producer runs, and catches up.
    const running = produce(g, 'b', MESSAGES)
    await startBroker(g, 2)
    record(await running)
    await caughtUp(g, [1, 2])
    // Replica 2 killed mid-stream and restarted on its files: it resumes from its own offset.
    const during = produce(g, 'c', MESSAGES)
    await new Promise((r) => setTimeout(r, 50))
    await stop(g.servers[2]!, 'SIGKILL')
    record(await during)
    await startBroker(g, 2)
    record(await produce(g, 'd', MESSAGES))
    await caughtUp(g, [1, 2])
    assert.ok(acked.length >= 4 * MESSAGES - 2, `acknowledged ${acked.length} of ${4 * MESSAGES}`)

    // Master stopped: the route keeps the replicas under their ids, a pull to one answers the records.
    await stop(g.servers[0]!)
    const route = async (): Promise<string[]> => {
      const r = await g.client.invoke(g.ns.address, RemotingCommand.createRequest(RequestCode.GET_ROUTEINFO_BY_TOPIC, { topic: TOPIC }), T)
      if (r.code !== ResponseCode.SUCCESS) return []
      const data = JSON.parse(r.body.toString()) as { brokerDatas: Array<{ brokerAddrs: Record<string, string> }> }
      return Object.keys(data.brokerDatas[0]?.brokerAddrs ?? {}).sort()
    }
    await until('the master gone from the route, the replicas kept', async () => (await route()).join() === '1,2')
    const onReplica = await bodiesOn(g, g.servers[1]!.address)
    for (const body of acked) assert.ok(onReplica.has(body), `acknowledged ${body.slice(0, 12)} is on the replica`)

    // Everything stopped and flushed: the replicas' files are the master's.
    await stop(g.servers[1]!)
    await stop(g.servers[2]!)
    await assertReplicasIdentical(g, [1, 2])

    // The master alone (no replica in sync) answers SLAVE_NOT_AVAILABLE; back with replica 1,
    // its acknowledged sends are on the replica.
    await startBroker(g, 0)
    const alone = await produce(g, 'alone', 1)
    assert.equal(alone[0]!.code, ResponseCode.SLAVE_NOT_AVAILABLE)
    await startBroker(g, 1)
    await until('replica 1 back in sync', async () => (await produce(g, 'back', 1))[0]!.code === ResponseCode.SUCCESS)
    const later = await produce(g, 'e', MESSAGES)
    // Sends answered SUCCESS are held by the replica at that moment: stop the master first.
    await stop(g.servers[0]!, 'SIGKILL')
    const held = await bodiesOn(g, g.servers[1]!.address)
    for (const r of later) if (r.code === ResponseCode.SUCCESS) assert.ok(held.has(r.body), `acknowledged ${r.body.slice(0, 12)} is on the replica`)
  } finally {
    await stopGroup(g)
  }
})

test('ASYNC_MASTER and two replicas as processes: the replicas\' CommitLog and ConsumeQueue files are the master\'s', { timeout: 60_000 }, async () => {
  const g = await startGroup('ASYNC_MASTER', [1, 2])
  try {
    const sent = await produce(g, 'async', 2 * MESSAGES)
    assert.ok(sent.every((s) => s.code === ResponseCode.SUCCESS))
    await caughtUp(g, [1, 2])
    for (const id of [0, 1, 2]) await stop(g.servers[id]!)
    await assertReplicasIdentical(g, [1, 2])
  } finally {
    await stopGroup(g)
  }
})

/** The HA address a master broker printed at start ("HA on <address>"). */
function haAddressOf(server: Server): { host: string; port: number } {
  const m = /HA on (\S+):(\d+)/.exec(server.output.join(''))
  assert.ok(m, `the master printed its HA address: ${server.output.join('')}`)
  return { host: m[1]!, port: Number(m[2]) }
}

/** An HA frame header (RocketMQ's classic protocol): [physical offset: long][body size: int]. */
function frameHeader(offset: bigint, size: number): Buffer {
  const b = Buffer.alloc(12)
  b.writeBigInt64BE(offset, 0)
  b.writeInt32BE(size, 8)
  return b
}

function report(offset: bigint): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigInt64BE(offset, 0)
  return b
}

/** Connects to `to`, writes `bytes` (then ends the socket when `end`), resolves with who closed it. */
function peer(to: { host: string; port: number }, bytes: Buffer, end: boolean, ms = 10_000): Promise<'closed by the other side' | 'still open'> {
  return new Promise((resolve, reject) => {
    const s = net.connect(to.port, to.host)
    const timer = setTimeout(() => {
      s.destroy()
      resolve('still open')
    }, ms)
    s.on('error', () => undefined)
    s.on('data', () => undefined)
    s.once('connect', () => (end ? s.end(bytes) : s.write(bytes)))
    s.once('close', () => {
      clearTimeout(timer)
      resolve('closed by the other side')
    })
    s.once('timeout', reject)
  })
}

test("garbage and truncated reports at a master's HA port close that connection only: its replica goes on, its clients are served", { timeout: 90_000 }, async () => {
  const g = await startGroup('ASYNC_MASTER', [1])
  try {
    assert.ok((await produce(g, 'before', MESSAGES)).every((r) => r.code === ResponseCode.SUCCESS))
    await caughtUp(g, [1])
    const ha = haAddressOf(g.servers[0]!)
    // A report that is not an offset (negative), one past the master's end: closed by the master.
    assert.equal(await peer(ha, Buffer.alloc(8, 0xff), false), 'closed by the other side')
    assert.equal(await peer(ha, report(1n << 40n), false), 'closed by the other side')
    // Half a report, then the end of the stream: the master lets the connection go.
    assert.equal(await peer(ha, Buffer.from([0, 0, 0, 0, 1]), true), 'closed by the other side')
    // Garbage and a truncated report at once, and a long stream of garbage.
    assert.equal(await peer(ha, Buffer.concat([Buffer.alloc(8, 0x80), Buffer.from([1, 2, 3])]), false), 'closed by the other side')
    assert.equal(await peer(ha, Buffer.alloc(64 * 1024, 0xa5), false), 'closed by the other side')
    // The master still replicates to its replica and serves its clients.
    assert.ok((await produce(g, 'after', MESSAGES)).every((r) => r.code === ResponseCode.SUCCESS))
    await caughtUp(g, [1])
    const onReplica = await bodiesOn(g, g.servers[1]!.address)
    assert.equal(onReplica.size, 2 * MESSAGES)
    assert.match(g.servers[0]!.output.join(''), /replica link (closed|refused)/)
    for (const id of [0, 1]) await stop(g.servers[id]!)
    await assertReplicasIdentical(g, [1])
  } finally {
    await stopGroup(g)
  }
})

test('a fake master sending garbage or a truncated frame to a replica process: the replica drops that link, writes nothing, serves its clients, then follows the real master', { timeout: 90_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-ha-fake-'))
  const ns = await startMqts(['namesrv', '--port', '0', '--data', path.join(dir, 'ns'), '--broker-expiry', '3000', '--scan-interval', '200'])
  const g: Group = { dir, ns, client: new TcpRemotingClient({ logger: silentLogger }), confs: [], servers: [] }
  // What the fake sends once the replica reported its offset (0): a body that is no record; a
  // header that is none (negative offset); a frame cut short, then the end of the stream.
  const answers: Array<{ bytes: Buffer; end: boolean }> = [
    { bytes: Buffer.concat([frameHeader(0n, 64), Buffer.alloc(64, 0x5a)]), end: false },
    { bytes: frameHeader(-1n, 10), end: false },
    { bytes: Buffer.concat([frameHeader(0n, 100), Buffer.alloc(30, 0x11)]), end: true },
  ]
  let connections = 0
  const fakeHa = net.createServer((socket) => {
    const answer = answers[connections++ % answers.length]!
    socket.on('error', () => undefined)
    socket.once('data', () => (answer.end ? socket.end(answer.bytes) : socket.write(answer.bytes)))
  })
  // The fake master's broker port: accepts and closes (the replica's metadata copy fails).
  const fakeBroker = net.createServer((socket) => socket.destroy())
  const listen = (server: net.Server): Promise<string> => new Promise((r) => server.listen(0, '127.0.0.1', () => r(`127.0.0.1:${(server.address() as net.AddressInfo).port}`)))
  const haAddr = await listen(fakeHa)
  const brokerAddr = await listen(fakeBroker)
  try {
    for (const id of [0, 1]) g.confs.push(await writeConf(dir, ns.address, id, 'ASYNC_MASTER'))
    const body = encodeRemotingJson({ topicConfigSerializeWrapper: { topicConfigTable: {}, dataVersion: { stateVersion: 0, timestamp: 0, counter: 0 } }, filterServerList: [] })
    const registered = await g.client.invoke(
      ns.address,
      RemotingCommand.createRequest(RequestCode.REGISTER_BROKER, { brokerAddr, brokerId: '0', brokerName: 'broker-ha', clusterName: 'HaCluster', haServerAddr: haAddr, compressed: 'false', bodyCrc32: '0' }, body),
      T,
    )
    assert.equal(registered.code, ResponseCode.SUCCESS, registered.remark ?? '')
    const replica = await startBroker(g, 1)
    await until('the replica came back after each answer', () => connections > answers.length)
    const out = replica.output.join('')
    assert.match(out, /refused a chunk/, 'garbage body: the store refused it')
    assert.match(out, /frame header that is not one/, 'garbage header')
    // The replica serves its clients meanwhile, and holds nothing.
    const asked = await g.client.invoke(replica.address, RemotingCommand.createRequest(RequestCode.GET_MAX_OFFSET, { topic: TOPIC, queueId: '0' }), T)
    assert.ok(asked.code === ResponseCode.SUCCESS || asked.code === ResponseCode.TOPIC_NOT_EXIST, `answered ${asked.code}`)
    const log = await filesUnder(path.join(dir, 'b1', 'store', 'commitlog'))
    for (const [name, bytes] of log) assert.ok(bytes.every((b) => b === 0), `${name}: nothing of the fake's bytes was written`)
    // The real master comes; the fake goes: the replica follows the master and holds its files.
    fakeHa.close()
    for (const c of [fakeHa, fakeBroker]) c.close()
    const master = await startBroker(g, 0)
    const created = await g.client.invoke(master.address, RemotingCommand.createRequest(RequestCode.UPDATE_AND_CREATE_TOPIC, { topic: TOPIC, defaultTopic: 'TBW102', readQueueNums: String(QUEUES), writeQueueNums: String(QUEUES), perm: '6', topicFilterType: 'SINGLE_TAG', order: 'false' }), T)
    assert.equal(created.code, ResponseCode.SUCCESS, created.remark ?? '')
    assert.ok((await produce(g, 'real', MESSAGES)).every((r) => r.code === ResponseCode.SUCCESS))
    await caughtUp(g, [1])
    for (const id of [0, 1]) await stop(g.servers[id]!)
    await assertReplicasIdentical(g, [1])
  } finally {
    fakeHa.close()
    fakeBroker.close()
    await stopGroup(g)
  }
})

test('ali-ons consumers read from a replica while the master is stopped: a new group from the first offset, a known group from its offsets copied from the master', { timeout: 150_000 }, async () => {
  const g = await startGroup('ASYNC_MASTER', [1])
  try {
    const first = await onsClient<{ sent: string }>(g.ns.address, ['produce', TOPIC, String(MESSAGES), 'ons'])
    assert.equal(first.length, MESSAGES)
    // A group consumes everything from the master; its offsets reach the replica.
    const early = await onsClient<{ got: string }>(g.ns.address, ['consume', TOPIC, 'OnsKnownG', '*', String(MESSAGES)])
    assert.equal(new Set(early.map((m) => m.got)).size, MESSAGES)
    const later = await onsClient<{ sent: string }>(g.ns.address, ['produce', TOPIC, String(MESSAGES), 'later'])
    await caughtUp(g, [1])
    const offsets = async (address: string): Promise<string> => {
      const out: string[] = []
      for (let q = 0; q < QUEUES; q++) {
        const r = await g.client.invoke(address, RemotingCommand.createRequest(RequestCode.QUERY_CONSUMER_OFFSET, { consumerGroup: 'OnsKnownG', topic: TOPIC, queueId: String(q) }), T)
        out.push(`${r.code}:${r.extFields.offset}`)
      }
      return out.join()
    }
    const want = await offsets(g.servers[0]!.address)
    await until(`the group's offsets ${want} copied to the replica`, async () => (await offsets(g.servers[1]!.address)) === want)
    await stop(g.servers[0]!)
    const route = async (): Promise<string> => {
      const r = await g.client.invoke(g.ns.address, RemotingCommand.createRequest(RequestCode.GET_ROUTEINFO_BY_TOPIC, { topic: TOPIC }), T)
      if (r.code !== ResponseCode.SUCCESS) return ''
      const data = JSON.parse(r.body.toString()) as { brokerDatas: Array<{ brokerAddrs: Record<string, string> }> }
      return Object.keys(data.brokerDatas[0]?.brokerAddrs ?? {}).join()
    }
    await until('the master gone from the route, the replica kept', async () => (await route()) === '1')
    // ali-ons pulls from the master, or from any broker of the group when the route has none; its
    // consumer list and stored offsets come from that broker too.
    const all = await onsClient<{ got: string }>(g.ns.address, ['consume', TOPIC, 'OnsReplicaG', '*', String(2 * MESSAGES)])
    assert.deepEqual([...new Set(all.map((m) => m.got))].sort(), [...first, ...later].map((s) => s.sent).sort())
    const rest = await onsClient<{ got: string }>(g.ns.address, ['consume', TOPIC, 'OnsKnownG', '*', String(MESSAGES)])
    assert.deepEqual([...new Set(rest.map((m) => m.got))].sort(), later.map((s) => s.sent).sort(), 'the known group resumes where it was on the master')
  } finally {
    await stopGroup(g)
  }
})
