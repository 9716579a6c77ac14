// deleteTopic and topics(): a deleted topic's queues and consumer offsets go, its next put takes
// queue offset 0, its records stay in the CommitLog; no reopen (clean, after a kill, after a
// power loss, with the queues rebuilt from the log's start) brings the deleted queues back; a
// deletion a crash interrupted is finished by the next open. On the simulated disk (SimFileIO),
// plus one store on real files.
import assert from 'node:assert/strict'
import { readdir, readFile, rm } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, type MessageStoreOptions, type PutResult } from '../src/index.js'
import { DELETED_TOPICS_FILE, SimFileIO } from '../src/internal.js'
import { SIM_INDEX, SMALL_FILE, simDir, tempDir } from './helpers.js'

function simOptions(dir: string, io: SimFileIO, flush: 'sync' | 'async' = 'async'): MessageStoreOptions {
  return { dir, fileIO: io, flush, commitLogFileSize: SMALL_FILE, consumeQueueUnitsPerFile: 64, ...SIM_INDEX }
}

/** Puts `n` messages to each of `queueIds` of `topic`. */
async function fill(store: MessageStore, topic: string, queueIds: number[], n: number): Promise<PutResult[]> {
  const out: PutResult[] = []
  for (let i = 0; i < n; i++) for (const queueId of queueIds) out.push(await store.put({ topic, queueId, body: `${topic}-${queueId}-${i}` }))
  return out
}

/** The bodies of a queue, in order. */
async function bodies(store: MessageStore, topic: string, queueId: number): Promise<string[]> {
  const r = await store.get({ topic, queueId, offset: 0, maxMessages: 1000 })
  return r.messages.map((m) => m.body.toString())
}

/** What a deleted queue must look like: unknown. */
async function assertUnknown(store: MessageStore, topic: string, queueId: number, what: string): Promise<void> {
  assert.equal((await store.get({ topic, queueId, offset: 0 })).status, 'NO_MESSAGE_IN_QUEUE', `${what}: get of ${topic}/${queueId}`)
  assert.equal(store.maxOffset(topic, queueId), 0, `${what}: maxOffset`)
  assert.equal(store.minOffset(topic, queueId), 0, `${what}: minOffset`)
  assert.equal(store.maxQueueOffset(topic, queueId), 0, `${what}: next queue offset`)
}

function simNames(io: SimFileIO, under: string): string[] {
  const prefix = under + path.sep
  return [...io.files.keys(), ...io.dirs].filter((p) => p.startsWith(prefix)).map((p) => p.slice(prefix.length))
}

for (const flush of ['async', 'sync'] as const) {
  test(`deleteTopic (${flush}): queues, offsets and next queue offsets go, records stay, a put restarts at 0, other topics untouched`, { timeout: 30_000 }, async (t) => {
    const dir = simDir(t)
    const io = new SimFileIO()
    const options = simOptions(dir, io, flush)
    const store = await MessageStore.open(options)
    try {
      const old = await fill(store, 'gone', [0, 3], 80) // several ConsumeQueue files each
      await fill(store, 'kept', [1], 5)
      store.commitOffset('g1', 'gone', 0, 7)
      store.commitOffset('g2', 'gone', 3, 2)
      store.commitOffset('g1', 'kept', 1, 4)
      assert.deepEqual(store.topics(), [
        { topic: 'gone', queueIds: [0, 3] },
        { topic: 'kept', queueIds: [1] },
      ])
      assert.equal(await store.deleteTopic('gone'), true)
      assert.deepEqual(store.topics(), [{ topic: 'kept', queueIds: [1] }])
      for (const q of [0, 3]) await assertUnknown(store, 'gone', q, 'after delete')
      assert.equal(store.committedOffset('g1', 'gone', 0), -1)
      assert.equal(store.committedOffset('g2', 'gone', 3), -1)
      assert.equal(store.committedOffset('g1', 'kept', 1), 4)
      assert.deepEqual(simNames(io, path.join(dir, 'consumequeue')).filter((n) => n.startsWith('gone')), [], 'no file or folder of the topic is left')
      const offsets = JSON.parse((await io.readFile(path.join(dir, 'config', 'consumerOffset.json')))!.toString())
      assert.deepEqual(Object.keys(offsets.offsetTable), ['kept@g1'], 'the deletion is persisted')
      // The records stay in the CommitLog until retention.
      assert.equal((await store.lookup(old[5]!.physicalOffset)).body.toString(), 'gone-3-2')
      assert.deepEqual(await bodies(store, 'kept', 1), ['kept-1-0', 'kept-1-1', 'kept-1-2', 'kept-1-3', 'kept-1-4'])
      const again = await store.put({ topic: 'gone', queueId: 3, body: 'again' })
      assert.equal(again.queueOffset, 0)
      assert.deepEqual(await bodies(store, 'gone', 3), ['again'])
      await assertUnknown(store, 'gone', 0, 'a queue not put to again')
      assert.deepEqual(store.topics(), [
        { topic: 'gone', queueIds: [3] },
        { topic: 'kept', queueIds: [1] },
      ])
      // Unknown topics: nothing to do; names are checked as a put's.
      assert.equal(await store.deleteTopic('never'), false)
      await assert.rejects(store.deleteTopic('bad topic'), { code: 'TOPIC_INVALID' })
      await assert.rejects(store.deleteTopic(''), { code: 'TOPIC_INVALID' })
    } finally {
      await store.close()
    }
    await assert.rejects(store.deleteTopic('gone'), { code: 'NOT_OPEN' })
    assert.throws(() => store.topics(), { code: 'NOT_OPEN' })
  })
}

test('deleteTopic: puts of the topic made while it runs wait for it and start the new queue at 0', { timeout: 30_000 }, async (t) => {
  const dir = simDir(t)
  const io = new SimFileIO()
  const store = await MessageStore.open(simOptions(dir, io, 'sync'))
  try {
    await fill(store, 'busy', [0], 10)
    const before = store.put({ topic: 'busy', queueId: 0, body: 'before' })
    const deleting = store.deleteTopic('busy')
    const after = store.put({ topic: 'busy', queueId: 0, body: 'after' })
    const batch = store.putBatch([
      { topic: 'other', queueId: 0, body: 'o' },
      { topic: 'busy', queueId: 1, body: 'b' },
    ])
    assert.equal((await before).queueOffset, 10, 'a put made before the delete belongs to the old queue')
    assert.equal(await deleting, true)
    assert.equal((await after).queueOffset, 0)
    assert.deepEqual((await batch).map((r) => r.queueOffset), [0, 0])
    assert.deepEqual(await bodies(store, 'busy', 0), ['after'])
    assert.deepEqual(await bodies(store, 'busy', 1), ['b'])
  } finally {
    await store.close()
  }
})

test('deleteTopic on a stalled disk: puts of the topic waiting for it are bounded by maxPendingAppends, the next is BUSY', { timeout: 30_000 }, async (t) => {
  const dir = simDir(t)
  const io = new SimFileIO()
  const store = await MessageStore.open({ ...simOptions(dir, io, 'sync'), maxPendingAppends: 3 })
  let release = (): void => {}
  try {
    await fill(store, 'slow', [0], 4)
    release = io.stall()
    const deleting = store.deleteTopic('slow')
    const waiting = [0, 1, 2].map((i) => store.put({ topic: 'slow', queueId: 0, body: `w${i}` }))
    await assert.rejects(store.put({ topic: 'slow', queueId: 0, body: 'refused' }), { code: 'BUSY' })
    await assert.rejects(store.putBatch([{ topic: 'slow', queueId: 0, body: 'refused' }]), { code: 'BUSY' })
    release()
    assert.equal(await deleting, true)
    assert.deepEqual((await Promise.all(waiting)).map((r) => r.queueOffset), [0, 1, 2])
    assert.deepEqual(await bodies(store, 'slow', 0), ['w0', 'w1', 'w2'])
  } finally {
    release()
    await store.close()
  }
})

/** How a test leaves the store after the delete, and how it is opened again. */
type Ending = 'close' | 'kill' | 'power loss' | 'close, queues lost'

async function endAndReopen(store: MessageStore, io: SimFileIO, options: MessageStoreOptions, ending: Ending, seed: number): Promise<[MessageStore, SimFileIO]> {
  let next: SimFileIO
  if (ending === 'kill') next = io.processCrash()
  else if (ending === 'power loss') next = io.crash(seed)
  else next = io
  await store.close()
  if (ending === 'close, queues lost') {
    // Another topic's queue lost its files: the open rebuilds every queue from the log's start.
    for (const p of [...next.files.keys()]) if (p.includes(`${path.sep}consumequeue${path.sep}kept${path.sep}`)) next.removeSync(p)
  }
  return [await MessageStore.open({ ...options, fileIO: next }), next]
}

for (const ending of ['close', 'kill', 'power loss', 'close, queues lost'] as const) {
  for (const only of [false, true]) {
    test(`deleteTopic then ${ending}${only ? ' (the only topic)' : ''}: the open does not rebuild the deleted queues, a put restarts at 0`, { timeout: 30_000 }, async (t) => {
      for (let seed = 1; seed <= (ending === 'power loss' ? 6 : 1); seed++) {
        const dir = simDir(t)
        let io = new SimFileIO()
        // Nothing flushed in the background: the records of the topic stay past the durable offset.
        const options = { ...simOptions(dir, io), flushIntervalMs: 1_000_000, flushThoroughIntervalMs: 1_000_000, flushConsumeQueueIntervalMs: 1_000_000 }
        let store = await MessageStore.open(options)
        try {
          if (!only) await fill(store, 'kept', [0], 3)
          await fill(store, 'gone', [0, 1], 40)
          store.commitOffset('g', 'gone', 0, 5)
          if (!only) await store.flush()
          await store.persistConsumerOffsets()
          await store.deleteTopic('gone')
          ;[store, io] = await endAndReopen(store, io, options, ending, seed)
          const what = `seed ${seed}`
          for (const q of [0, 1]) await assertUnknown(store, 'gone', q, what)
          assert.equal(store.committedOffset('g', 'gone', 0), -1, what)
          assert.deepEqual(store.topics(), only ? [] : [{ topic: 'kept', queueIds: [0] }], what)
          if (!only) assert.deepEqual(await bodies(store, 'kept', 0), ['kept-0-0', 'kept-0-1', 'kept-0-2'], what)
          assert.equal((await store.put({ topic: 'gone', queueId: 1, body: 'new' })).queueOffset, 0, what)
          assert.deepEqual(await bodies(store, 'gone', 1), ['new'], what)
          // And once more: the new queue survives a reopen, the old records stay out.
          ;[store, io] = await endAndReopen(store, io, options, 'close', seed)
          assert.deepEqual(await bodies(store, 'gone', 1), ['new'], what)
          await assertUnknown(store, 'gone', 0, what)
        } finally {
          await store.close()
        }
      }
    })
  }
}

test('deleteTopic: a deletion interrupted by a kill while its files go is finished by the next open', { timeout: 30_000 }, async (t) => {
  for (const at of [1, 3, 6]) {
    const dir = simDir(t)
    const io = new SimFileIO()
    const options = simOptions(dir, io)
    let store = await MessageStore.open(options)
    let killed: SimFileIO | undefined
    try {
      await fill(store, 'kept', [0], 2)
      await fill(store, 'gone', [0, 1], 70)
      store.commitOffset('g', 'gone', 1, 9)
      await store.persistConsumerOffsets()
      // Kill at the at-th removal of a file or folder of the topic.
      let removals = 0
      io.onDirectoryOp = (kind, p) => {
        if ((kind === 'remove' || kind === 'rmdir') && p.includes(`${path.sep}gone`) && ++removals === at) killed ??= io.processCrash()
      }
      await store.deleteTopic('gone')
      io.onDirectoryOp = undefined
      assert.ok(killed, `the kill at removal ${at} happened`)
      await store.close()
      store = await MessageStore.open({ ...options, fileIO: killed })
      const what = `killed at removal ${at}`
      for (const q of [0, 1]) await assertUnknown(store, 'gone', q, what)
      assert.equal(store.committedOffset('g', 'gone', 1), -1, what)
      assert.deepEqual(simNames(killed, path.join(dir, 'consumequeue')).filter((n) => n.startsWith('gone')), [], what)
      assert.deepEqual(await bodies(store, 'kept', 0), ['kept-0-0', 'kept-0-1'], what)
      assert.equal((await store.put({ topic: 'gone', queueId: 0, body: 'new' })).queueOffset, 0, what)
      const file = JSON.parse((await killed.readFile(path.join(dir, 'config', DELETED_TOPICS_FILE)))!.toString())
      assert.deepEqual(file.topics.map((e: { topic: string; pending: boolean }) => [e.topic, e.pending]), [['gone', false]], `${what}: the deletion is marked finished`)
    } finally {
      await store.close()
    }
  }
})

test('deleteTopic: the record of a deletion goes once retention removed the records it covers', { timeout: 30_000 }, async (t) => {
  const dir = simDir(t)
  let now = Date.UTC(2026, 0, 1, 4)
  const io = new SimFileIO({ clock: () => now })
  const options = { ...simOptions(dir, io), now: () => now, retention: { fileReservedTimeHours: 1 } }
  const store = await MessageStore.open(options)
  const file = path.join(dir, 'config', DELETED_TOPICS_FILE)
  try {
    await fill(store, 'gone', [0], 100) // past the first CommitLog file
    await store.deleteTopic('gone')
    assert.ok(await io.exists(file))
    now += 2 * 3600 * 1000
    for (let i = 0; i < 200; i++) await store.put({ topic: 'kept', queueId: 0, body: `filler ${i} ${'x'.repeat(300)}` })
    await store.deleteExpiredFiles({ manual: true })
    assert.ok(store.minPhysicalOffset > 0, 'retention deleted files')
    assert.equal(await io.exists(file), false, 'nothing is left to keep out of the queues')
  } finally {
    await store.close()
  }
})

/** A simulated disk whose atomic file replacements of the deletion record fail with ENOSPC while `full`. */
class NoRoomForDeletions extends SimFileIO {
  full = false
  override async writeFileAtomic(file: string, data: Buffer, options?: { mayReplace?: () => boolean }): Promise<boolean> {
    if (this.full && file.endsWith(DELETED_TOPICS_FILE)) throw Object.assign(new Error(`ENOSPC: ${file}`), { code: 'ENOSPC' })
    return super.writeFileAtomic(file, data, options)
  }
}

test('deleteTopic that cannot write its deletion record fails with DISK_FULL and changes nothing', { timeout: 30_000 }, async (t) => {
  const dir = simDir(t)
  const io = new NoRoomForDeletions()
  const options = simOptions(dir, io)
  let store = await MessageStore.open(options)
  try {
    await fill(store, 'gone', [0], 5)
    store.commitOffset('g', 'gone', 0, 3)
    io.full = true
    await assert.rejects(store.deleteTopic('gone'), { code: 'DISK_FULL' })
    assert.deepEqual(store.topics(), [{ topic: 'gone', queueIds: [0] }])
    assert.equal(store.committedOffset('g', 'gone', 0), 3)
    assert.equal((await store.put({ topic: 'gone', queueId: 0, body: 'gone-0-5' })).queueOffset, 5, 'the queue goes on')
    assert.deepEqual(await bodies(store, 'gone', 0), ['gone-0-0', 'gone-0-1', 'gone-0-2', 'gone-0-3', 'gone-0-4', 'gone-0-5'])
    ;[store] = await endAndReopen(store, io, options, 'close', 0)
    assert.equal(store.maxOffset('gone', 0), 6, 'and stays after a reopen')
    io.full = false
    assert.equal(await store.deleteTopic('gone'), true)
    await assertUnknown(store, 'gone', 0, 'deleted once there is room')
  } finally {
    await store.close()
  }
})

test('a damaged deletion record: the open fails with CORRUPT_FILE naming it', { timeout: 30_000 }, async (t) => {
  const dir = simDir(t)
  const io = new SimFileIO()
  const options = simOptions(dir, io)
  const store = await MessageStore.open(options)
  await fill(store, 'gone', [0], 2)
  await store.deleteTopic('gone')
  await store.close()
  const file = path.join(dir, 'config', DELETED_TOPICS_FILE)
  for (const damage of ['{"version":1,"topics":[{"topic":"gone"', '{"version":2,"topics":[]}', '{"version":1,"topics":[{"topic":"gone","offset":-1,"pending":false}]}']) {
    io.writeFileAtomicSync(file, Buffer.from(damage))
    await assert.rejects(MessageStore.open(options), (err: { code?: string; message?: string }) => err.code === 'CORRUPT_FILE' && err.message!.includes(DELETED_TOPICS_FILE), damage)
  }
})

test('deleteTopic on real files: folders gone, a reopen keeps it deleted', { timeout: 30_000 }, async () => {
  const { dir, cleanup } = await tempDir()
  const options: MessageStoreOptions = { dir, commitLogFileSize: SMALL_FILE, messageIndexEnable: false }
  try {
    let store = await MessageStore.open(options)
    await fill(store, 'gone', [0, 2], 20)
    await fill(store, 'kept', [0], 1)
    assert.equal(await store.deleteTopic('gone'), true)
    assert.deepEqual((await readdir(path.join(dir, 'consumequeue'))).filter((n) => !n.startsWith('.')), ['kept'])
    await store.close()
    store = await MessageStore.open(options)
    try {
      await assertUnknown(store, 'gone', 0, 'reopened')
      assert.deepEqual(store.topics(), [{ topic: 'kept', queueIds: [0] }])
      const recorded = JSON.parse(await readFile(path.join(dir, 'config', DELETED_TOPICS_FILE), 'utf8'))
      assert.deepEqual(recorded.topics.map((e: { topic: string }) => e.topic), ['gone'])
    } finally {
      await store.close()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
    await cleanup()
  }
})

// With confirmOffset: true the records past the confirm offset are not dispatched; a truncate, a
// reopen and a kill raise each queue's next offset past them (confirm-offset.ts). A deleted
// topic's records among them are not its queues' any more: they must not raise anything.
for (const how of ['truncate', 'close', 'kill'] as const) {
  test(`deleteTopic of records past the confirm offset: a ${how} does not bring their queue offsets back`, { timeout: 30_000 }, async (t) => {
    const dir = simDir(t)
    let io = new SimFileIO()
    const options = (): MessageStoreOptions => ({ ...simOptions(dir, io, 'sync'), confirmOffset: true })
    let store = await MessageStore.open(options())
    try {
      await fill(store, 'gone', [3], 2) // past the confirm offset (0): never dispatched
      assert.equal(store.maxQueueOffset('gone', 3), 2)
      assert.equal(await store.deleteTopic('gone'), true)
      assert.equal(store.maxQueueOffset('gone', 3), 0, 'after delete')
      const other = await store.put({ topic: 'kept', queueId: 0, body: 'k' })
      if (how === 'truncate') await store.truncate(other.physicalOffset)
      else if (how === 'close') {
        await store.close()
        store = await MessageStore.open(options())
      } else {
        const killed = io.processCrash()
        await store.close()
        io = killed
        store = await MessageStore.open(options())
      }
      assert.equal(store.maxQueueOffset('gone', 3), 0, `after the ${how}: next queue offset`)
      assert.equal(store.maxQueueOffset('kept', 0), how === 'truncate' ? 0 : 1, `after the ${how}: another topic's next queue offset`)
      const again = await store.put({ topic: 'gone', queueId: 3, body: 'again' })
      assert.equal(again.queueOffset, 0, `after the ${how}: the deleted topic's next put restarts at 0`)
      store.setConfirmOffset(store.commitLogMaxOffset)
      await store.whenDispatched()
      assert.deepEqual(await bodies(store, 'gone', 3), ['again'])
    } finally {
      await store.close()
    }
  })
}
