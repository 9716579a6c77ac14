// The route table alone: registration, replicas, eviction, deletion, write permission, and a
// seeded model test of random registrations, unregistrations, closes, promotions and clock
// jumps against a plain model (SEED replays, NAMESRV_MODEL_STEPS sets the length).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { countFromEnv, pick, randomInt, seedFromEnv, seededRandom } from '@mqts/common'
import { RouteInfoManager, type QueueData, type RegisterBrokerBody, type TopicConfig, type TopicRouteData } from '../src/index.js'

function body(topics: Array<Partial<TopicConfig> & { topicName: string }>, counter = 1): RegisterBrokerBody {
  const topicConfigTable: Record<string, TopicConfig> = {}
  for (const t of topics) topicConfigTable[t.topicName] = { readQueueNums: 4, writeQueueNums: 4, perm: 6, topicSysFlag: 0, ...t }
  return { topicConfigSerializeWrapper: { topicConfigTable, dataVersion: { timestamp: 1, counter } }, filterServerList: [] }
}

const EXPIRY = 120_000

test('a master registers its topics; a replica joins the route under its id and learns its master', () => {
  const r = new RouteInfoManager({ expiryMs: EXPIRY })
  const m = r.registerBroker({ clusterName: 'C', brokerAddr: '127.0.0.1:10911', brokerName: 'b1', brokerId: 0, haServerAddr: '127.0.0.1:10912', body: body([{ topicName: 'T', readQueueNums: 8, writeQueueNums: 4 }]) }, 0)
  assert.deepEqual(m, { masterAddr: '', haServerAddr: '' })
  const s = r.registerBroker({ clusterName: 'C', brokerAddr: '127.0.0.1:10921', brokerName: 'b1', brokerId: 1, haServerAddr: '127.0.0.1:10922', body: body([{ topicName: 'IGNORED' }]) }, 0)
  assert.deepEqual(s, { masterAddr: '127.0.0.1:10911', haServerAddr: '127.0.0.1:10912' })
  const route = r.pickupTopicRouteData('T')!
  assert.deepEqual(route.queueDatas, [{ brokerName: 'b1', readQueueNums: 8, writeQueueNums: 4, perm: 6, topicSysFlag: 0 }])
  assert.deepEqual(route.brokerDatas, [{ cluster: 'C', brokerName: 'b1', brokerAddrs: { '0': '127.0.0.1:10911', '1': '127.0.0.1:10921' } }])
  assert.equal(r.pickupTopicRouteData('IGNORED'), undefined, "a replica's topics are not routes")
  assert.deepEqual(r.clusterInfo().clusterAddrTable, { C: ['b1'] })
  // The master dies: the replica keeps the broker name and its routes (clients read from it).
  r.unregisterBroker('C', '127.0.0.1:10911', 'b1', 0)
  assert.deepEqual(r.pickupTopicRouteData('T')!.brokerDatas[0]!.brokerAddrs, { '1': '127.0.0.1:10921' })
  // The replica is promoted: it registers under id 0, its old id goes.
  r.registerBroker({ clusterName: 'C', brokerAddr: '127.0.0.1:10921', brokerName: 'b1', brokerId: 0, haServerAddr: '', body: body([{ topicName: 'T' }, { topicName: 'U' }], 2) }, 1)
  assert.deepEqual(r.pickupTopicRouteData('T')!.brokerDatas[0]!.brokerAddrs, { '0': '127.0.0.1:10921' })
  assert.ok(r.pickupTopicRouteData('U'))
})

test('a new data version replaces the topics of a master; the same version changes nothing', () => {
  const r = new RouteInfoManager({ expiryMs: EXPIRY })
  const reg = (topics: string[], counter: number): void => {
    r.registerBroker({ clusterName: 'C', brokerAddr: 'h:1', brokerName: 'b', brokerId: 0, haServerAddr: '', body: body(topics.map((topicName) => ({ topicName })), counter) }, 0)
  }
  reg(['A', 'B'], 1)
  assert.deepEqual(r.allTopics(), ['A', 'B'])
  reg(['A'], 1)
  assert.deepEqual(r.allTopics(), ['A', 'B'], 'same version: not read again')
  reg(['A', 'C'], 2)
  assert.deepEqual(r.allTopics(), ['A', 'C'])
})

test('a silent broker is evicted after its timeout; a closed channel removes its broker at once', () => {
  const r = new RouteInfoManager({ expiryMs: 1000 })
  r.registerBroker({ clusterName: 'C', brokerAddr: 'h:1', brokerName: 'b1', brokerId: 0, haServerAddr: '', body: body([{ topicName: 'T' }]), channelId: 'ch1' }, 0)
  r.registerBroker({ clusterName: 'C', brokerAddr: 'h:2', brokerName: 'b2', brokerId: 0, haServerAddr: '', body: body([{ topicName: 'T' }]), channelId: 'ch2', timeoutMs: 5000 }, 0)
  assert.deepEqual(r.scanNotActiveBrokers(1000), [])
  assert.deepEqual(r.scanNotActiveBrokers(1001), [{ brokerAddr: 'h:1', channelId: 'ch1' }])
  assert.deepEqual(r.pickupTopicRouteData('T')!.queueDatas.map((q) => q.brokerName), ['b2'])
  assert.equal(r.onChannelClosed('ch2'), 'h:2')
  assert.equal(r.pickupTopicRouteData('T'), undefined)
  assert.deepEqual(r.clusterInfo(), { brokerAddrTable: {}, clusterAddrTable: {} })
})

test('delete a topic everywhere or in one cluster; wipe and add the write permission', () => {
  const r = new RouteInfoManager({ expiryMs: EXPIRY })
  r.registerBroker({ clusterName: 'C1', brokerAddr: 'h:1', brokerName: 'b1', brokerId: 0, haServerAddr: '', body: body([{ topicName: 'T' }, { topicName: 'U' }]) }, 0)
  r.registerBroker({ clusterName: 'C2', brokerAddr: 'h:2', brokerName: 'b2', brokerId: 0, haServerAddr: '', body: body([{ topicName: 'T' }]) }, 0)
  r.deleteTopic('T', 'C1')
  assert.deepEqual(r.pickupTopicRouteData('T')!.queueDatas.map((q) => q.brokerName), ['b2'])
  assert.deepEqual(r.topicsOfCluster('C1'), ['U'])
  r.deleteTopic('T')
  assert.equal(r.pickupTopicRouteData('T'), undefined)
  assert.equal(r.setWritePerm('b1', false), 1)
  assert.equal(r.pickupTopicRouteData('U')!.queueDatas[0]!.perm, 4)
  assert.equal(r.setWritePerm('b1', true), 1)
  assert.equal(r.pickupTopicRouteData('U')!.queueDatas[0]!.perm, 6)
  assert.deepEqual(r.systemTopics().topics, ['C1', 'C2', 'b1', 'b2'])
})

// ---------------------------------------------------------------------------------------------
// Model test

interface ModelBroker {
  addr: string
  name: string
  cluster: string
  id: number
  lastUpdate: number
  channel: string
  /** The topic config version it last registered. */
  version: number
}

class Model {
  readonly live = new Map<string, ModelBroker>()
  /** Topics of a broker name, as its master last registered them. */
  readonly topics = new Map<string, Map<string, QueueData>>()

  names(): Set<string> {
    return new Set([...this.live.values()].map((b) => b.name))
  }

  dropDeadNames(): void {
    const alive = this.names()
    for (const name of [...this.topics.keys()]) if (!alive.has(name)) this.topics.delete(name)
  }

  route(topic: string): TopicRouteData | undefined {
    const queueDatas: QueueData[] = []
    for (const name of [...this.topics.keys()].sort()) {
      const qd = this.topics.get(name)!.get(topic)
      if (qd && this.names().has(name)) queueDatas.push(qd)
    }
    if (queueDatas.length === 0) return undefined
    const brokerDatas = queueDatas.map((qd) => {
      const members = [...this.live.values()].filter((b) => b.name === qd.brokerName).sort((a, b) => a.id - b.id)
      return { cluster: members[0]!.cluster, brokerName: qd.brokerName, brokerAddrs: Object.fromEntries(members.map((b) => [String(b.id), b.addr])) }
    })
    return { queueDatas, brokerDatas, filterServerTable: {} }
  }

  allTopics(): string[] {
    const out = new Set<string>()
    for (const [name, ts] of this.topics) if (this.names().has(name)) for (const t of ts.keys()) out.add(t)
    return [...out].sort()
  }
}

const STEPS = countFromEnv('NAMESRV_MODEL_STEPS', 3000)

test(`route table model test (seed ${seedFromEnv()}; SEED=<n> replays)`, () => {
  const seed = seedFromEnv()
  const rnd = seededRandom(seed)
  const expiry = 1000
  const r = new RouteInfoManager({ expiryMs: expiry })
  const model = new Model()
  const TOPICS = ['T0', 'T1', 'T2', 'T3']
  // Fixed roles: broker name b<i> in cluster C<i % 2>; addresses h<i>:<j>, j = 0 master, 1-2 replicas.
  const roles: Array<{ addr: string; name: string; cluster: string; id: number }> = []
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) roles.push({ addr: `h${i}:${j}`, name: `b${i}`, cluster: `C${i % 2}`, id: j })
  let now = 0
  let channelSeq = 0
  let version = 0
  const log: string[] = []
  for (let step = 0; step < STEPS; step++) {
    const op = randomInt(rnd, 0, 9)
    const role = pick(rnd, roles)
    const live = model.live.get(role.addr)
    const id = live?.id ?? role.id
    if (op <= 3) {
      // Register (a master's topics: a random subset with random counts); sometimes again with
      // the version it last sent, which the table must not read again.
      const idTaken = [...model.live.values()].some((b) => b.name === role.name && b.id === id && b.addr !== role.addr)
      if (idTaken) continue
      const sameVersion = live !== undefined && rnd() < 0.2
      const sent = sameVersion ? live.version : ++version
      const chosen = TOPICS.filter(() => rnd() < 0.5).map((topicName) => ({ topicName, readQueueNums: randomInt(rnd, 1, 8), writeQueueNums: randomInt(rnd, 1, 8), perm: pick(rnd, [2, 4, 6]) }))
      const channel = live?.channel ?? `ch${++channelSeq}`
      r.registerBroker({ clusterName: role.cluster, brokerAddr: role.addr, brokerName: role.name, brokerId: id, haServerAddr: '', body: body(chosen, sent), channelId: channel }, now)
      log.push(`${step}: register ${role.addr} id ${id} v${sent} [${chosen.map((c) => c.topicName).join(',')}]`)
      model.live.set(role.addr, { ...role, id, lastUpdate: now, channel, version: sent })
      if (id === 0 && !sameVersion) {
        const m = new Map<string, QueueData>()
        for (const c of chosen) m.set(c.topicName, { brokerName: role.name, readQueueNums: c.readQueueNums, writeQueueNums: c.writeQueueNums, perm: c.perm, topicSysFlag: 0 })
        model.topics.set(role.name, m)
      }
    } else if (op === 4 && live) {
      r.unregisterBroker(role.cluster, role.addr, role.name, live.id)
      model.live.delete(role.addr)
      model.dropDeadNames()
      log.push(`${step}: unregister ${role.addr}`)
    } else if (op === 5 && live) {
      r.onChannelClosed(live.channel)
      model.live.delete(role.addr)
      model.dropDeadNames()
      log.push(`${step}: close ${role.addr}`)
    } else if (op === 6) {
      now += randomInt(rnd, 0, expiry)
      r.scanNotActiveBrokers(now)
      for (const b of [...model.live.values()]) if (b.lastUpdate + expiry < now) model.live.delete(b.addr)
      model.dropDeadNames()
      log.push(`${step}: time ${now}`)
    } else if (op === 7 && live && live.id !== 0 && ![...model.live.values()].some((b) => b.name === role.name && b.id === 0)) {
      // Promotion: the replica registers as master (new topics version).
      version++
      const chosen = TOPICS.filter(() => rnd() < 0.5).map((topicName) => ({ topicName }))
      r.registerBroker({ clusterName: role.cluster, brokerAddr: role.addr, brokerName: role.name, brokerId: 0, haServerAddr: '', body: body(chosen, version), channelId: live.channel }, now)
      live.id = 0
      live.lastUpdate = now
      live.version = version
      const m = new Map<string, QueueData>()
      for (const c of chosen) m.set(c.topicName, { brokerName: role.name, readQueueNums: 4, writeQueueNums: 4, perm: 6, topicSysFlag: 0 })
      model.topics.set(role.name, m)
      log.push(`${step}: promote ${role.addr}`)
    } else if (op === 8) {
      const topic = pick(rnd, TOPICS)
      r.deleteTopic(topic)
      for (const m of model.topics.values()) m.delete(topic)
      log.push(`${step}: delete ${topic}`)
    }
    const where = (): string => `seed ${seed} step ${step}; last steps:\n${log.slice(-8).join('\n')}`
    assert.deepEqual(r.allTopics(), model.allTopics(), where())
    for (const topic of TOPICS) assert.deepEqual(r.pickupTopicRouteData(topic), model.route(topic), `${topic}: ${where()}`)
  }
})

test('an address taking a broker name and id from one still registering says which (displaced); one expired is not', () => {
  const r = new RouteInfoManager({ expiryMs: EXPIRY })
  const reg = (addr: string, now: number) => r.registerBroker({ clusterName: 'C', brokerAddr: addr, brokerName: 'b1', brokerId: 0, haServerAddr: '', body: body([{ topicName: 'T' }]) }, now)
  assert.equal(reg('h:1', 0).displaced, undefined)
  assert.equal(reg('h:1', 10).displaced, undefined, 'the same address again')
  assert.equal(reg('h:2', 20).displaced, 'h:1')
  assert.equal(reg('h:1', 30).displaced, 'h:2', 'they take it from each other at every registration')
  assert.equal(reg('h:2', 30 + EXPIRY + 1).displaced, undefined, 'h:1 expired meanwhile: a replacement, not a twin')
})
