// Seeded, mutated requests against a broker and a nameserver over TCP: every request code they
// serve, headers with fields missing, of the wrong type, huge, negative or garbage, random
// bodies. Each request must get an answer (never a timeout or a dropped connection), and both
// servers must still work afterwards. FUZZ_REQUESTS sets the count, SEED replays.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { countFromEnv, pick, randomInt, seedFromEnv, seededRandom } from '@mqts/common'
import { NameServer } from '@mqts/namesrv'
import { encodeProperties } from '@mqts/store'
import { RemotingCommand, RequestCode, ResponseCode, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { Broker } from '../src/index.js'

const REQUESTS = countFromEnv('FUZZ_REQUESTS', 3000)

/** Plausible header fields of every code, which the fuzzer then mutates. */
const FIELDS: Record<number, Record<string, string>> = {
  [RequestCode.SEND_MESSAGE]: { producerGroup: 'PG', topic: 'FuzzTopic', defaultTopic: 'TBW102', defaultTopicQueueNums: '4', queueId: '0', sysFlag: '0', bornTimestamp: '1', flag: '0', properties: encodeProperties({ TAGS: 'A', KEYS: 'k' }) },
  [RequestCode.SEND_MESSAGE_V2]: { a: 'PG', b: 'FuzzTopic', c: 'TBW102', d: '4', e: '1', f: '0', g: '1', h: '0', i: encodeProperties({ TAGS: 'B' }), j: '0', k: 'false' },
  [RequestCode.SEND_BATCH_MESSAGE]: { a: 'PG', b: 'FuzzTopic', c: 'TBW102', d: '4', e: '2', f: '0', g: '1', h: '0', m: 'true' },
  [RequestCode.PULL_MESSAGE]: { consumerGroup: 'CG', topic: 'FuzzTopic', queueId: '0', queueOffset: '0', maxMsgNums: '32', sysFlag: '7', commitOffset: '0', suspendTimeoutMillis: '0', subscription: '*', subVersion: '0' },
  [RequestCode.QUERY_MESSAGE]: { topic: 'FuzzTopic', key: 'k', maxNum: '4', beginTimestamp: '0', endTimestamp: '9999999999999' },
  [RequestCode.VIEW_MESSAGE_BY_ID]: { offset: '0' },
  [RequestCode.QUERY_CONSUMER_OFFSET]: { consumerGroup: 'CG', topic: 'FuzzTopic', queueId: '0' },
  [RequestCode.UPDATE_CONSUMER_OFFSET]: { consumerGroup: 'CG', topic: 'FuzzTopic', queueId: '0', commitOffset: '1' },
  [RequestCode.UPDATE_AND_CREATE_TOPIC]: { topic: 'FuzzTopic', defaultTopic: 'TBW102', readQueueNums: '4', writeQueueNums: '4', perm: '6', topicFilterType: 'SINGLE_TAG', order: 'false' },
  [RequestCode.GET_MAX_OFFSET]: { topic: 'FuzzTopic', queueId: '0' },
  [RequestCode.GET_MIN_OFFSET]: { topic: 'FuzzTopic', queueId: '0' },
  [RequestCode.SEARCH_OFFSET_BY_TIMESTAMP]: { topic: 'FuzzTopic', queueId: '0', timestamp: '0' },
  [RequestCode.GET_EARLIEST_MSG_STORETIME]: { topic: 'FuzzTopic', queueId: '0' },
  [RequestCode.HEART_BEAT]: {},
  [RequestCode.UNREGISTER_CLIENT]: { clientID: 'c', consumerGroup: 'CG' },
  [RequestCode.GET_CONSUMER_LIST_BY_GROUP]: { consumerGroup: 'CG' },
  [RequestCode.LOCK_BATCH_MQ]: {},
  [RequestCode.UNLOCK_BATCH_MQ]: {},
  [RequestCode.GET_ALL_TOPIC_CONFIG]: {},
  [RequestCode.DELETE_TOPIC_IN_BROKER]: { topic: 'FuzzOther' },
}

const NAMESRV_FIELDS: Record<number, Record<string, string>> = {
  [RequestCode.REGISTER_BROKER]: { brokerName: 'b', brokerAddr: '127.0.0.1:1', clusterName: 'C', haServerAddr: '', brokerId: '0', bodyCrc32: '0' },
  [RequestCode.UNREGISTER_BROKER]: { brokerName: 'b', brokerAddr: '127.0.0.1:1', clusterName: 'C', brokerId: '0' },
  [RequestCode.GET_ROUTEINFO_BY_TOPIC]: { topic: 'FuzzTopic' },
  [RequestCode.GET_BROKER_CLUSTER_INFO]: {},
  [RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER]: {},
  [RequestCode.DELETE_TOPIC_IN_NAMESRV]: { topic: 'FuzzTopic' },
  [RequestCode.PUT_KV_CONFIG]: { namespace: 'N', key: 'k', value: 'v' },
  [RequestCode.GET_KV_CONFIG]: { namespace: 'N', key: 'k' },
  [RequestCode.GET_KVLIST_BY_NAMESPACE]: { namespace: 'N' },
  [RequestCode.WIPE_WRITE_PERM_OF_BROKER]: { brokerName: 'b' },
  [RequestCode.QUERY_DATA_VERSION]: { brokerAddr: '127.0.0.1:1' },
  [RequestCode.REGISTER_TOPIC_IN_NAMESRV]: { topic: 'FuzzTopic' },
}

const BODIES = [
  '',
  '{}',
  '{"clientID":"c","consumerDataSet":[{"groupName":"CG","subscriptionDataSet":[{"topic":"FuzzTopic","subString":"*"}]}]}',
  '{"consumerGroup":"CG","clientId":"c","mqSet":[{"topic":"FuzzTopic","brokerName":"broker-a","queueId":0}]}',
  '{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"topicName":"T","readQueueNums":"x"}}}}',
  '{"queueDatas":[{"brokerName":"b"}]}',
  'not json',
  '[1,2,3]',
  'null',
]

const WEIRD = ['', '-1', '0', '2147483648', '-9223372036854775808', '99999999999999999999', '1.5', 'NaN', 'true', '\u0000', 'x'.repeat(300), '%RETRY%', '../../etc', 'Tag||*', '\u{1F600}']

function mutate(rnd: () => number, fields: Record<string, string>): Record<string, string> {
  const out = { ...fields }
  const keys = Object.keys(out)
  const n = randomInt(rnd, 0, 3)
  for (let i = 0; i < n; i++) {
    const op = randomInt(rnd, 0, 3)
    const k = keys.length > 0 ? pick(rnd, keys) : 'x'
    if (op === 0) delete out[k]
    else if (op === 1) out[k] = pick(rnd, WEIRD)
    else if (op === 2) out[pick(rnd, ['zz', 'AccessKey', 'Signature', '__proto__', 'constructor'])] = pick(rnd, WEIRD)
    else out[k] = String(randomInt(rnd, -5, 40))
  }
  return out
}

function body(rnd: () => number): Buffer {
  if (rnd() < 0.6) return Buffer.from(pick(rnd, BODIES))
  const b = Buffer.alloc(randomInt(rnd, 0, 64))
  for (let i = 0; i < b.length; i++) b[i] = randomInt(rnd, 0, 255)
  return b
}

test(`fuzzed requests to a broker and a nameserver are all answered and harm nothing (seed ${seedFromEnv()}; SEED=<n> replays)`, { timeout: 240_000 }, async () => {
  const seed = seedFromEnv()
  const rnd = seededRandom(seed)
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-fuzz-'))
  const ns = await NameServer.start({ port: 0, logger: silentLogger })
  const broker = await Broker.start({ listenPort: 0, namesrvAddr: [ns.address()], storePathRootDir: dir, logger: silentLogger, store: { commitLogFileSize: 4 * 1024 * 1024, maxHashSlotNum: 1024, maxIndexNum: 4096 } })
  const client = new TcpRemotingClient({ logger: silentLogger })
  try {
    const codes = Object.keys(FIELDS).map(Number)
    const nsCodes = Object.keys(NAMESRV_FIELDS).map(Number)
    for (let i = 0; i < REQUESTS; i++) {
      const toNamesrv = rnd() < 0.3
      const code = toNamesrv ? pick(rnd, nsCodes) : pick(rnd, codes)
      const fields = mutate(rnd, (toNamesrv ? NAMESRV_FIELDS : FIELDS)[code]!)
      const req = new RemotingCommand({ code, opaque: 0, extFields: fields, body: body(rnd) })
      req.opaque = (i + 1) * 7
      const addr = toNamesrv ? ns.address() : broker.address
      let r: RemotingCommand
      try {
        // A pull may be held up to 25 s (MAX_SUSPEND_MS): an answer is due within that.
        r = await client.invoke(addr, req, 30_000)
      } catch (err) {
        assert.fail(`seed ${seed} request ${i} (code ${code}, ${JSON.stringify(fields)}) got no answer: ${(err as Error).message}`)
      }
      assert.ok(r.isResponse, `seed ${seed} request ${i}: an answer`)
    }
    // Both still serve real requests.
    await client.invoke(broker.address, RemotingCommand.createRequest(RequestCode.UPDATE_AND_CREATE_TOPIC, { ...FIELDS[RequestCode.UPDATE_AND_CREATE_TOPIC]!, topic: 'AfterFuzz' }), 5000)
    const sent = await client.invoke(broker.address, RemotingCommand.createRequest(RequestCode.SEND_MESSAGE_V2, { ...FIELDS[RequestCode.SEND_MESSAGE_V2]!, b: 'AfterFuzz', e: '0' }, 'still here'), 5000)
    assert.equal(sent.code, ResponseCode.SUCCESS, sent.remark ?? '')
    const route = await client.invoke(ns.address(), RemotingCommand.createRequest(RequestCode.GET_ROUTEINFO_BY_TOPIC, { topic: 'TBW102' }), 5000)
    assert.equal(route.code, ResponseCode.SUCCESS)
  } finally {
    await client.close()
    await broker.stop()
    await ns.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
