// Kill, reopen, then power loss, on the simulated disk: what the first recovery accepted and served
// must be durable before the checkpoint says so, and a power loss during or after that recovery
// must neither lose an acknowledged message nor make the store refuse to open.
// POWER_LOSS_SEEDS (default 20) runs per flush mode; SEED=<n> replays from that base seed.
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { test } from 'node:test'
import { NodeFileIO } from '../src/file-io.js'
import { MessageStore, type MessageStoreOptions } from '../src/index.js'
import { SimFileIO } from '../src/sim-file-io.js'
import { seededRandom } from '@mqts/common'
import { SIM_INDEX, forEachRecord, tempDir } from './helpers.js'

const BASE_SEED = process.env.SEED ? Number(process.env.SEED) : Date.now() % 1_000_000
const SEEDS = process.env.POWER_LOSS_SEEDS ? Number(process.env.POWER_LOSS_SEEDS) : 20
const SIM_DIR = '/sim/power-loss'

interface Seen {
  physicalOffset: number
  body: string
}

/** Puts random messages until `count` are acknowledged (sync: PUT_OK; async: covered by a flush). */
async function putUntil(store: MessageStore, io: SimFileIO, rnd: () => number, count: number, flush: 'sync' | 'async', tag: string): Promise<{ acked: Seen[]; killed: SimFileIO }> {
  const acked: Seen[] = []
  const written: Seen[] = []
  let killed: SimFileIO | undefined
  let killing = false
  await new Promise<void>((resolve) => {
    let inFlight = 0
    let issued = 0
    const pump = (): void => {
      while (!killed && inFlight < 8) {
        const i = issued++
        const body = `${tag}${i}-`.padEnd(40 + Math.floor(rnd() * 700), String.fromCharCode(97 + (i % 26)))
        inFlight++
        const put = store.put({ topic: `t${i % 3}`, queueId: i % 2, body })
        void put.then(
          async (r) => {
            inFlight--
            if (killing) return
            written.push({ physicalOffset: r.physicalOffset, body })
            if (flush === 'sync') acked.push({ physicalOffset: r.physicalOffset, body })
            else if (rnd() < 0.1) {
              // An explicit flush acknowledges everything written before it.
              const upTo = written.length
              await store.flush()
              if (!killing) acked.push(...written.slice(acked.length, upTo))
            }
            if (!killing && acked.length >= count) {
              // The kill, a few turns of the event loop later (while writes are under way):
              // whatever was written is kept, whatever was not synced stays unsynced.
              killing = true
              pump()
              for (let hops = Math.floor(rnd() * 4); hops > 0; hops--) await new Promise((r) => setImmediate(r))
              killed = io.processCrash()
              resolve()
            } else pump()
          },
          () => {
            inFlight--
          },
        )
      }
    }
    pump()
  })
  return { acked, killed: killed! }
}

/** Every message of the log, in order. */
async function allMessages(store: MessageStore): Promise<Seen[]> {
  const out: Seen[] = []
  await forEachRecord(store, store.minPhysicalOffset, (offset, m) => out.push({ physicalOffset: offset, body: m.body.toString() }))
  return out
}

async function assertHolds(store: MessageStore, messages: Seen[], what: string): Promise<void> {
  for (const s of messages) {
    let body: string | undefined
    try {
      body = (await store.lookup(s.physicalOffset)).body.toString()
    } catch (err) {
      assert.fail(`${what}: message at ${s.physicalOffset} is gone (${String(err)})`)
    }
    assert.equal(body, s.body, `${what}: message at ${s.physicalOffset}`)
  }
}

for (const flush of ['sync', 'async'] as const) {
  test(`kill, reopen, power loss, reopen (${flush} flush, ${SEEDS} seeds from ${BASE_SEED}): nothing acknowledged or served is lost, the store opens`, { timeout: 120_000 }, async () => {
    for (let round = 0; round < SEEDS; round++) {
      const seed = BASE_SEED + round
      const rnd = seededRandom(seed)
      const io = new SimFileIO()
      // Long flush intervals: in async mode only explicit flushes sync, so a kill leaves written,
      // unsynced bytes behind.
      const options: MessageStoreOptions = { dir: SIM_DIR, flush, commitLogFileSize: 16 * 1024, ...SIM_INDEX, flushIntervalMs: 60_000, flushThoroughIntervalMs: 60_000 }
      const first = await MessageStore.open({ ...options, fileIO: io })
      const before = await putUntil(first, io, rnd, 5 + Math.floor(rnd() * 120), flush, 'a')
      await first.close().catch(() => undefined)

      const second = await MessageStore.open({ ...options, fileIO: before.killed })
      let served: Seen[]
      let lost: SimFileIO
      try {
        await assertHolds(second, before.acked, `seed ${seed}, after the kill`)
        // What the reopened store serves may be consumed and acted on: it must stay.
        served = await allMessages(second)
        // A few more acknowledged puts, then the power goes.
        const after = await putUntil(second, before.killed, rnd, Math.floor(rnd() * 20), flush, 'b')
        served.push(...after.acked)
        lost = before.killed.crash(seed)
      } finally {
        await second.close().catch(() => undefined)
      }

      let third: MessageStore
      try {
        third = await MessageStore.open({ ...options, fileIO: lost })
      } catch (err) {
        assert.fail(`seed ${seed}: the store refused to open after kill, reopen, power loss: ${String(err)}`)
      }
      try {
        await assertHolds(third, served, `seed ${seed}, after the power loss`)
      } finally {
        await third.close()
      }
    }
  })
}

test('a power loss while recovery deletes later files leaves them contiguous: the store opens', { timeout: 30_000 }, async () => {
  const io = new SimFileIO()
  const fileSize = 16 * 1024
  const options: MessageStoreOptions = { dir: SIM_DIR, flush: 'sync', commitLogFileSize: fileSize, ...SIM_INDEX, onCorruption: 'truncate' }
  const store = await MessageStore.open({ ...options, fileIO: io })
  const puts = []
  while (puts.length === 0 || puts.at(-1)!.physicalOffset < 4 * fileSize) puts.push(await store.put({ topic: 't', queueId: 0, body: Buffer.alloc(900, 7) }))
  await store.close()
  // Garbage in a record of the first file, and a zeroed checkpoint (nothing vouched durable): the
  // open cuts there and deletes the later files (at least four).
  const first = io.files.get(`${SIM_DIR}/commitlog/${'0'.padStart(20, '0')}`)!
  const at = puts[3]!.physicalOffset + 300
  for (const image of [first.volatile, first.durable]) image.fill(0x5a, at, at + 16)
  const checkpoint = io.files.get(`${SIM_DIR}/checkpoint`)!
  for (const image of [checkpoint.volatile, checkpoint.durable]) image.fill(0)
  for (let seed = 0; seed < 16; seed++) {
    const disk = io.processCrash()
    let lost: SimFileIO | undefined
    let removes = 0
    disk.onDirectoryOp = (kind, p) => {
      if (kind === 'remove' && p.includes('commitlog') && ++removes === 3) lost = disk.crash(seed)
    }
    const cut = await MessageStore.open({ ...options, fileIO: disk })
    assert.equal(cut.recovery.truncated?.atOffset, puts[3]!.physicalOffset)
    await cut.close()
    assert.ok(lost, 'the power loss was taken during the deletions')
    const again = await MessageStore.open({ ...options, fileIO: lost })
    try {
      assert.equal(again.maxPhysicalOffset, puts[3]!.physicalOffset, `seed ${seed}`)
    } finally {
      await again.close()
    }
  }
})

test('mkdirp syncs the parent of every directory it creates, unless told durable: false', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  try {
    const synced: string[] = []
    const io = new (class extends NodeFileIO {
      override async syncDir(d: string): Promise<void> {
        synced.push(path.relative(dir, d) || '.')
        await super.syncDir(d)
      }
    })()
    await io.mkdirp(path.join(dir, 'a', 'b', 'c'))
    assert.deepEqual(synced.sort(), ['.', 'a', path.join('a', 'b')])
    synced.length = 0
    await io.mkdirp(path.join(dir, 'a', 'b', 'c'))
    await io.mkdirp(path.join(dir, 'x', 'y'), { durable: false })
    assert.deepEqual(synced, [], 'nothing new, or not asked')
  } finally {
    await cleanup()
  }
})

test(`kill, reopen, power loss: the ConsumeQueue units the killed run left unsynced survive (${SEEDS * 2} seeds from ${BASE_SEED})`, { timeout: 60_000 }, async () => {
  for (let round = 0; round < SEEDS * 2; round++) {
    const seed = BASE_SEED + round
    const { dir, cleanup } = await tempDir()
    try {
      const io = new SimFileIO()
      // The CommitLog is flushed before the kill; the ConsumeQueues are not.
      const options: MessageStoreOptions = { dir, commitLogFileSize: 16 * 1024, fileIO: io, messageIndexEnable: false, flushIntervalMs: 60_000, flushThoroughIntervalMs: 60_000 }
      const first = await MessageStore.open(options)
      for (let i = 0; i < 24; i++) await first.put({ topic: 'a', queueId: i % 3, body: `m${i}` })
      await first.flush()
      const killed = io.processCrash()
      await first.close()
      // The recovering open finds the units in place, and its checkpoint then says the queues
      // hold them: they must be on disk before that.
      const second = await MessageStore.open({ ...options, fileIO: killed })
      const lost = killed.crash(seed)
      await second.close()
      const third = await MessageStore.open({ ...options, fileIO: lost })
      try {
        for (let q = 0; q < 3; q++) {
          assert.equal(third.maxQueueOffset('a', q), 8, `seed ${seed}: a@${q} keeps its 8 units`)
          const r = await third.get({ topic: 'a', queueId: q, offset: 0, maxMessages: 8 })
          assert.deepEqual(r.messages.map((m) => m.queueOffset), [0, 1, 2, 3, 4, 5, 6, 7], `seed ${seed}: a@${q}`)
        }
      } finally {
        await third.close()
      }
    } finally {
      await cleanup()
    }
  }
})
