// Fuzz: a running TCP server is fed thousands of random and mutated frames over many raw
// connections, written in random chunk sizes.
//
// Invariants:
// - the process never crashes and the server never emits an unhandled error;
// - every connection ends (the server closes it on bad input, or after the peer ends);
// - whatever the server sends back is a well-formed response frame;
// - afterwards the server holds no connections and answers a well-formed request correctly.
//
// The seed is printed; SEED=<n> replays a run.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  RemotingCommand,
  ResponseCode,
  SerializeType,
  encodeFrame,
  randomBytes,
  randomCommand,
  randomInt,
  seedFromEnv,
  seededRandom,
} from '@mqts/transport/internal'
import { TcpRemotingClient, TcpRemotingServer } from '../src/index.js'
import { rawConnect, recordingLogger, until } from './helpers.js'

const SEED = seedFromEnv()
const CONNECTIONS = 200
const FRAMES_PER_CONNECTION = 20

/** One frame, valid or damaged in one of several ways. */
function fuzzFrame(rng: () => number): Buffer {
  const type = rng() < 0.5 ? SerializeType.JSON : SerializeType.ROCKETMQ
  const cmd = randomCommand(rng, type, 600)
  // Keep most codes in the range where processors exist, so valid frames reach handlers.
  if (rng() < 0.7) cmd.code = randomInt(rng, 1, 4)
  if (rng() < 0.6) cmd.flag &= ~1
  const frame = encodeFrame(cmd)
  const roll = rng()
  if (roll < 0.35) return frame
  if (roll < 0.5) {
    for (let i = randomInt(rng, 1, 4); i > 0; i--) frame[randomInt(rng, 0, frame.length - 1)] = randomInt(rng, 0, 255)
    return frame
  }
  if (roll < 0.6) {
    frame.writeInt32BE(randomInt(rng, -0x80000000, 0x7fffffff), 0)
    return frame
  }
  if (roll < 0.7) {
    frame.writeUInt32BE(((randomInt(rng, 0, 3) << 24) | randomInt(rng, 0, 0xffffff)) >>> 0, 4)
    return frame
  }
  if (roll < 0.8) return frame.subarray(0, randomInt(rng, 0, frame.length))
  if (roll < 0.9) {
    const garbage = randomBytes(rng, randomInt(rng, 1, 64))
    return Buffer.concat([frame, garbage])
  }
  return randomBytes(rng, randomInt(rng, 1, 200))
}

test(`fuzz: ${CONNECTIONS * FRAMES_PER_CONNECTION} random and mutated frames never break the server (SEED=${SEED})`, { timeout: 60_000 }, async () => {
  console.log(`tcp fuzz: SEED=${SEED}`)
  const rng = seededRandom(SEED)
  const log = recordingLogger()
  const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: log, maxFrameBytes: 256 * 1024 })
  const serverErrors: Error[] = []
  server.on('error', (err) => serverErrors.push(err))
  server.registerProcessor(1, (request) => RemotingCommand.createResponse(ResponseCode.SUCCESS, 'ok', request.extFields, request.body))
  server.registerProcessor(2, async () => {
    await new Promise((resolve) => setImmediate(resolve))
    throw new Error('processor failure')
  })
  server.registerProcessor(3, () => undefined)
  await server.start()
  const { port } = server.address()
  try {
    let responses = 0
    const runConnection = async (index: number) => {
      const raw = await rawConnect(port)
      const stream = Buffer.concat(Array.from({ length: FRAMES_PER_CONNECTION }, () => fuzzFrame(rng)))
      for (let at = 0; at < stream.length && !raw.socket.destroyed; ) {
        const n = Math.min(stream.length - at, randomInt(rng, 1, 512))
        raw.socket.write(stream.subarray(at, at + n))
        at += n
      }
      raw.socket.end()
      await raw.closed
      for (const r of raw.received) {
        assert.equal(r.isResponse, true, `seed ${SEED} connection ${index}`)
        assert.ok([0, 1, 2, 3].includes(r.code), `unexpected response code ${r.code}, seed ${SEED}`)
      }
      responses += raw.received.length
    }
    for (let i = 0; i < CONNECTIONS; i += 10) {
      await Promise.all(Array.from({ length: Math.min(10, CONNECTIONS - i) }, (_, j) => runConnection(i + j)))
    }
    assert.ok(responses > 0, 'some valid frames were answered')
    assert.ok(log.lines.length > 0, 'bad frames were logged')
    assert.deepEqual(serverErrors, [])
    await until(() => server.channels().length === 0)

    const client = new TcpRemotingClient({ logger: log })
    const r = await client.invoke(`127.0.0.1:${port}`, RemotingCommand.createRequest(1, { after: 'fuzz' }, 'still alive'), 3000)
    assert.equal(r.code, ResponseCode.SUCCESS)
    assert.equal(r.extFields.after, 'fuzz')
    assert.equal(r.body.toString(), 'still alive')
    await client.close()
  } finally {
    await server.stop({ timeoutMs: 1000 })
  }
})
