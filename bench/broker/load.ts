/**
 * The broker benchmark's load generator, a process of its own: requests are encoded once and sent
 * again and again with only their opaque changed (as redis-benchmark does), over plain sockets,
 * and answers are read no further than their code and opaque, so this side costs little next to
 * the server. Pulls, whose offsets change, go through the TCP transport's client.
 */
import * as net from 'node:net'
import { RemotingCommand, RequestCode, ResponseCode, encodeFrame, silentLogger } from '@mqts/transport'
import { TcpRemotingClient } from '@mqts/transport-tcp'
import { cpuMicros, serveParent } from '../lib/child.js'

/** Opaques of pre-encoded frames: always 7 digits, so one is patched in place of another. */
const OPAQUE_BASE = 1_000_000
const OPAQUE_SPAN = 8_388_608
const OPAQUE_KEY = Buffer.from('"opaque":')
const CODE_KEY = Buffer.from('{"code":')

/** A request frame encoded once; `withOpaque` rewrites its opaque's digits in place. */
export class FrameTemplate {
  private constructor(
    readonly frame: Buffer,
    private readonly digitsAt: number,
  ) {}

  static of(cmd: RemotingCommand): FrameTemplate {
    cmd.opaque = OPAQUE_BASE
    const frame = encodeFrame(cmd)
    const at = frame.indexOf(`"opaque":${OPAQUE_BASE},`)
    if (at < 0) throw new Error('encoded frame has no JSON opaque')
    return new FrameTemplate(frame, at + OPAQUE_KEY.length)
  }

  /** A copy of its own: a frame may be rewritten only once the peer has answered it. */
  copy(): FrameTemplate {
    return new FrameTemplate(Buffer.from(this.frame), this.digitsAt)
  }

  withOpaque(opaque: number): Buffer {
    writeDigits(this.frame, this.digitsAt, opaque)
    return this.frame
  }
}

function writeDigits(buf: Buffer, at: number, v: number): void {
  for (let i = 6; i >= 0; i--) {
    buf[at + i] = 0x30 + (v % 10)
    v = Math.floor(v / 10)
  }
}

/** Reads a decimal integer at `at` (a leading '-' allowed). */
function readInt(buf: Buffer, at: number): number {
  let sign = 1
  if (buf[at] === 0x2d) {
    sign = -1
    at++
  }
  let v = 0
  for (;;) {
    const c = buf[at++]!
    if (c < 0x30 || c > 0x39) return sign * v
    v = v * 10 + c - 0x30
  }
}

/**
 * A socket that writes whole frames and calls back with each answer's code and opaque. Answers
 * come as JSON headers (the requests are JSON): the code is the header's first field.
 */
class FrameSocket {
  readonly #socket: net.Socket
  #pending: Buffer | undefined
  onAnswer: (code: number, opaque: number) => void = () => undefined

  private constructor(socket: net.Socket) {
    this.#socket = socket
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
  }

  static connect(addr: string): Promise<FrameSocket> {
    const i = addr.lastIndexOf(':')
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)) }, () => {
        s.off('error', reject)
        resolve(new FrameSocket(s))
      })
      s.once('error', reject)
    })
  }

  write(frame: Buffer): void {
    this.#socket.write(frame)
  }

  close(): void {
    this.#socket.destroy()
  }

  #onData(chunk: Buffer): void {
    let buf = chunk
    if (this.#pending !== undefined) {
      buf = Buffer.concat([this.#pending, chunk])
      this.#pending = undefined
    }
    let at = 0
    while (buf.length - at >= 4) {
      const length = buf.readInt32BE(at)
      if (buf.length - at - 4 < length) break
      const header = at + 8
      if (buf.compare(CODE_KEY, 0, CODE_KEY.length, header, header + CODE_KEY.length) !== 0) throw new Error('answer without a JSON header')
      const code = readInt(buf, header + CODE_KEY.length)
      const o = buf.indexOf(OPAQUE_KEY, header)
      if (o < 0 || o >= at + 4 + length) throw new Error('answer without an opaque in its header')
      this.onAnswer(code, readInt(buf, o + OPAQUE_KEY.length))
      at += 4 + length
    }
    if (at < buf.length) this.#pending = buf.subarray(at)
  }
}

export interface Rate {
  perSec: number
  /** CPU µs per message of this process. */
  cpuUs: number
  /** CPU µs per message of its main thread, where known. */
  mainUs?: number
}

const BATCH_QUEUES = 4
let sockets: FrameSocket[] = []
let batchFrames: FrameTemplate[] = []
let client: TcpRemotingClient | undefined

interface ProduceSetup {
  addr: string
  connections: number
  inFlight: number
  queues: number
  /** The SEND_BATCH_MESSAGE body. */
  bodyBase64: string
}

function batchRequest(queueId: number, body: Buffer): RemotingCommand {
  return RemotingCommand.createRequest(RequestCode.SEND_BATCH_MESSAGE, { a: 'PG', b: 'Bench', c: 'TBW102', d: String(BATCH_QUEUES), e: String(queueId), f: '0', g: '1', h: '0', m: 'true' }, body)
}

/** Batched produce: `count` batches, `inFlight` per connection, each slot sending to one queue. */
async function produce(arg: { count: number; messagesPerBatch: number; inFlight: number; queues: number }): Promise<Rate> {
  const cpu = process.cpuUsage()
  const begin = performance.now()
  let sent = 0
  let answered = 0
  const slots = sockets.length * arg.inFlight
  if (OPAQUE_SPAN % slots !== 0) throw new Error(`${slots} frames in flight do not divide the opaque span ${OPAQUE_SPAN}`)
  await new Promise<void>((resolve, reject) => {
    // Slot s = connection c's k-th frame; opaque - OPAQUE_BASE ≡ s (mod slots) names its frame.
    const frames = Array.from({ length: slots }, (_, s) => batchFrames[s % arg.queues]!.copy())
    const sendFrom = (s: number, seq: number): void => {
      sent++
      sockets[s % sockets.length]!.write(frames[s]!.withOpaque(OPAQUE_BASE + ((seq * slots + s) % OPAQUE_SPAN)))
    }
    let seq = 0
    sockets.forEach((sock) => {
      sock.onAnswer = (code, opaque) => {
        if (code !== ResponseCode.SUCCESS) return reject(new Error(`batch send answered code ${code}`))
        answered++
        if (answered === arg.count) return resolve()
        if (sent < arg.count) sendFrom((opaque - OPAQUE_BASE) % slots, ++seq)
      }
    })
    for (let s = 0; s < slots && sent < arg.count; s++) sendFrom(s, 0)
  })
  const seconds = (performance.now() - begin) / 1000
  return { perSec: (arg.count * arg.messagesPerBatch) / seconds, cpuUs: cpuMicros(cpu) / (arg.count * arg.messagesPerBatch) }
}

/** Round trips (µs, sorted) of one caller sending `frame` `n` times after `warmup` unmeasured. */
async function roundTrips(addr: string, template: FrameTemplate, n: number, warmup: number): Promise<number[]> {
  const sock = await FrameSocket.connect(addr)
  try {
    const out: number[] = []
    for (let i = 0; i < n + warmup; i++) {
      const t = performance.now()
      const code = await new Promise<number>((resolve) => {
        sock.onAnswer = (c) => resolve(c)
        sock.write(template.withOpaque(OPAQUE_BASE + (i % OPAQUE_SPAN)))
      })
      if (code !== ResponseCode.SUCCESS) throw new Error(`send answered code ${code}`)
      if (i >= warmup) out.push((performance.now() - t) * 1000)
    }
    return out.sort((a, b) => a - b)
  } finally {
    sock.close()
  }
}

serveParent({
  async connect(arg: ProduceSetup): Promise<void> {
    const body = Buffer.from(arg.bodyBase64, 'base64')
    sockets = await Promise.all(Array.from({ length: arg.connections }, () => FrameSocket.connect(arg.addr)))
    batchFrames = Array.from({ length: arg.queues }, (_, q) => FrameTemplate.of(batchRequest(q, body)))
    client = new TcpRemotingClient({ logger: silentLogger })
    const r = await client.invoke(
      arg.addr,
      RemotingCommand.createRequest(RequestCode.UPDATE_AND_CREATE_TOPIC, { topic: 'Bench', defaultTopic: 'TBW102', readQueueNums: String(arg.queues), writeQueueNums: String(arg.queues), perm: '6', topicFilterType: 'SINGLE_TAG', order: 'false' }),
      5000,
    )
    if (r.code !== ResponseCode.SUCCESS) throw new Error(`topic creation answered ${r.code} ${r.remark}`)
  },
  produce,
  /** One caller's SEND_MESSAGE_V2 round trips (µs, sorted) to `addr`: a broker, or an echo server. */
  async sends(arg: { addr: string; n: number; warmup: number; bodyBase64: string; properties: string }): Promise<number[]> {
    const body = Buffer.from(arg.bodyBase64, 'base64')
    const cmd = RemotingCommand.createRequest(RequestCode.SEND_MESSAGE_V2, { a: 'PG', b: 'Bench', c: 'TBW102', d: '4', e: '0', f: '0', g: '1', h: '0', i: arg.properties, j: '0', k: 'false' }, body)
    return roundTrips(arg.addr, FrameTemplate.of(cmd), arg.n, arg.warmup)
  },
  /** Pulls every message back, 32 per pull, one caller per queue; the messages pulled and the rate. */
  async pullAll(arg: { addr: string; queues: number; total: number }): Promise<Rate & { pulled: number }> {
    const c = client!
    let pulled = 0
    const pullQueue = async (q: number): Promise<void> => {
      let offset = 0
      for (;;) {
        const r = await c.invoke(
          arg.addr,
          RemotingCommand.createRequest(RequestCode.PULL_MESSAGE, { consumerGroup: 'CG', topic: 'Bench', queueId: String(q), queueOffset: String(offset), maxMsgNums: '32', sysFlag: '4', commitOffset: '0', suspendTimeoutMillis: '0', subscription: '*', subVersion: '0' }),
          10_000,
        )
        if (r.code !== ResponseCode.SUCCESS) return
        const next = Number(r.extFields.nextBeginOffset)
        pulled += next - offset
        offset = next
      }
    }
    const cpu = process.cpuUsage()
    const begin = performance.now()
    await Promise.all(Array.from({ length: arg.queues }, (_, q) => pullQueue(q)))
    const seconds = (performance.now() - begin) / 1000
    return { perSec: pulled / seconds, cpuUs: cpuMicros(cpu) / pulled, pulled }
  },
  cpu: () => cpuMicros(),
  async stop(): Promise<void> {
    for (const s of sockets) s.close()
    sockets = []
    await client?.close()
  },
})
