// An answer that is ready must not wait for another connection's processor. A peer in a worker
// thread writes a quick request on connection X and then a slow one on connection Y while the
// server's loop is held in a timer, so the server reads both in its next turn, X's first
// (epoll reports sockets in the order they became readable). The slow processor runs
// synchronously until the peer has X's answer (the worker sets a shared flag), for at most
// SPIN_MS. When answers are held to the end of the turn, X's answer is still queued behind the
// spinning processor, the flag never comes, and a lone quick request waits for all the turn's
// work (with a 20 ms processor its p50 went from 0.2 ms to 20 ms). Ordering, not timing, decides.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Worker } from 'node:worker_threads'
import { RemotingCommand, ResponseCode } from '@mqts/transport/internal'
import { TcpRemotingServer } from '../src/index.js'
import { quiet } from './helpers.js'

const QUICK = 1
const SLOW = 2
const GATE = 3
const ROUNDS = 20
/** Shared flags: the round whose quick answer the peer has, the round the gate holds, the round whose X and Y are written. */
const ANSWERED = 0
const GATE_HELD = 1
const WRITTEN = 2
/** How long the slow processor waits for the peer to have the quick answer before giving up. */
const SPIN_MS = 500

const PEER = `
const { workerData, parentPort } = require('node:worker_threads')
const net = require('node:net')
;(async () => {
  const { encodeFrame, RemotingCommand, FrameDecoder } = await import(workerData.transportUrl)
  const flag = new Int32Array(workerData.flag)
  const connect = () => new Promise((resolve) => { const s = net.connect(workerData.port, '127.0.0.1'); s.setNoDelay(true); s.once('connect', () => resolve(s)) })
  const x = await connect()
  const y = await connect()
  let onX, onY
  const dx = new FrameDecoder()
  const dy = new FrameDecoder()
  x.on('data', (c) => dx.push(c, (cmd) => { Atomics.store(flag, ${ANSWERED}, Number(cmd.extFields.r)); onX() }))
  y.on('data', (c) => dy.push(c, () => onY(++yAnswers)))
  let yAnswers = 0
  for (let r = 1; r <= workerData.rounds; r++) {
    const answered = Promise.all([new Promise((resolve) => (onX = resolve)), new Promise((resolve) => (onY = (n) => n === 2 && resolve()))])
    yAnswers = 0
    y.write(encodeFrame(RemotingCommand.createRequest(${GATE}, { r: String(r) })))
    Atomics.wait(flag, ${GATE_HELD}, r - 1, 5000)
    x.write(encodeFrame(RemotingCommand.createRequest(${QUICK}, { r: String(r) })))
    y.write(encodeFrame(RemotingCommand.createRequest(${SLOW}, { r: String(r) })))
    Atomics.store(flag, ${WRITTEN}, r)
    await answered
  }
  x.destroy()
  y.destroy()
  parentPort.postMessage('done')
})().catch((e) => parentPort.postMessage(String(e)))
`

test('a quick answer read in the same turn as another connection\'s slow request is written before the slow processor runs', { timeout: 60_000 }, async () => {
  const flag = new Int32Array(new SharedArrayBuffer(12))
  const quickDone = new Set<number>()
  let held = 0
  let written = 0
  const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0, logger: quiet })
  server.registerProcessor(QUICK, (request) => {
    quickDone.add(Number(request.extFields.r))
    return RemotingCommand.createResponse(ResponseCode.SUCCESS, null, { r: request.extFields.r! })
  })
  server.registerProcessor(SLOW, (request) => {
    const r = Number(request.extFields.r)
    if (quickDone.has(r)) {
      const giveUp = Date.now() + SPIN_MS
      while (Atomics.load(flag, ANSWERED) < r && Date.now() < giveUp) {
        // spins as a processor doing synchronous work would
      }
      if (Atomics.load(flag, ANSWERED) < r) held++
      else written++
    }
    return RemotingCommand.createResponse(ResponseCode.SUCCESS)
  })
  server.registerProcessor(GATE, (request) => {
    // Holds the loop in a timer (not a read) until the peer has written X's and Y's requests, so
    // the next poll reads both in one turn.
    const r = Number(request.extFields.r)
    setTimeout(() => {
      Atomics.store(flag, GATE_HELD, r)
      Atomics.notify(flag, GATE_HELD)
      const giveUp = Date.now() + 5_000
      while (Atomics.load(flag, WRITTEN) < r && Date.now() < giveUp) {
        // waits for the peer
      }
    }, 0)
    return RemotingCommand.createResponse(ResponseCode.SUCCESS)
  })
  await server.start()
  try {
    const worker = new Worker(PEER, { eval: true, workerData: { port: server.address().port, flag: flag.buffer, rounds: ROUNDS, transportUrl: import.meta.resolve('@mqts/transport/internal') } })
    const outcome = await new Promise<string>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    })
    await worker.terminate()
    assert.equal(outcome, 'done')
    assert.equal(held, 0, `in ${held} of ${held + written} rounds where the quick request was processed first, its answer waited for the slow processor`)
  } finally {
    await server.stop()
  }
})
