// A replica follows its master's topic deletions. From the data: after deleteTopic on the master
// the topic's next record of a queue comes at queue offset 0 while the replica still holds that
// queue's units; the replica takes it as the deletion of that queue (emptied, marked at that
// record's offset), then dispatches it, so the stream never stalls. A queue the replica never had
// takes the new records as they are. From its master's word: followTopicDeletion with the
// master's deletion offset removes the topic's queues holding only older records (and its
// consumer offsets). Then the replica answers as its master, also across a reopen, a kill
// (simulated disk), and a kill between writing the record that restarts a queue and dispatching
// it (the next open empties the queue). SEED replays the chunk sizes.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import * as path from 'node:path'
import { test } from 'node:test'
import { seededRandom, seedFromEnv } from '@mqts/common'
import { MessageStore, StoreError, type FlushMode, type MessageStoreOptions } from '../src/index.js'
import { SimFileIO } from '../src/internal.js'
import { SIM_INDEX, SMALL_FILE, assertNothingReal, simPath, tempDir } from './helpers.js'
import { REPLICA_INDEX, assertSameAnswers, feed, getAll } from './replica-helpers.js'

const SEED = seedFromEnv()

function storeOptions(dir: string, flush: FlushMode, extra: Partial<MessageStoreOptions> = {}): MessageStoreOptions {
  return { dir, flush, commitLogFileSize: SMALL_FILE, ...REPLICA_INDEX, maxTransferBytes: 64 * 1024 * 1024, ...extra }
}

async function put(master: MessageStore, topic: string, queueId: number, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) await master.put({ topic, queueId, body: `${tag} ${topic}/${queueId} #${i} `.padEnd(300, '.'), tags: tag, keys: [`${tag}-${i}`, tag] })
}

const KEYS: Array<[string, string]> = [
  ['T', 'old'],
  ['T', 'new'],
  ['U', 'old'],
  ['U', 'new'],
]

/**
 * Old messages of T (queues 0-2) and U; the master deletes T; new messages of T (queue 3, which
 * the replica never had, then 1 and 0) and U. T's queue 2 gets nothing new. Returns the master's
 * deletion offset of T.
 */
async function deleteAndRecreate(master: MessageStore): Promise<number> {
  for (const q of [0, 1, 2]) await put(master, 'T', q, 5, 'old')
  await put(master, 'U', 0, 3, 'old')
  assert.equal(await master.deleteTopic('T'), true)
  await put(master, 'T', 3, 2, 'new')
  await put(master, 'T', 1, 2, 'new')
  await put(master, 'U', 0, 2, 'new')
  await put(master, 'T', 0, 3, 'new')
  const [d] = master.deletedTopics()
  assert.equal(d?.topic, 'T')
  return d!.offset
}

for (const flush of ['async', 'sync'] as const) {
  test(`a replica empties the queues its master's records restart at 0 and followTopicDeletion removes the rest; it then answers as the master (${flush}, seed ${SEED})`, async () => {
    const m = await tempDir('mqts-del-master-')
    const r = await tempDir('mqts-del-replica-')
    const rnd = seededRandom(SEED)
    const master = await MessageStore.open(storeOptions(m.dir, flush))
    let replica = await MessageStore.open(storeOptions(r.dir, flush, { role: 'replica' }))
    try {
      await put(master, 'T', 0, 1, 'first')
      await feed(master, replica, rnd)
      replica.commitOffset('g', 'T', 0, 1)
      replica.commitOffset('g', 'U', 0, 1)
      const deletedAt = await deleteAndRecreate(master)
      await feed(master, replica, rnd)
      // From the data: the queues that restarted, and the new one, are the master's.
      for (const q of [0, 1, 3]) assert.deepEqual((await getAll(replica, 'T', q)).map((x) => `${x.queueOffset}@${x.physicalOffset}`), (await getAll(master, 'T', q)).map((x) => `${x.queueOffset}@${x.physicalOffset}`), `T@${q}`)
      assert.deepEqual((await getAll(replica, 'T', 0)).map((x) => x.tags), ['new', 'new', 'new'])
      assert.equal(replica.maxOffset('T', 2), 5, 'a queue that did not restart is kept until the master says')
      // From the master's word.
      assert.equal(await replica.followTopicDeletion('T', replica.commitLogMaxOffset + 1), false, 'not reached yet')
      assert.equal(await replica.followTopicDeletion('T', deletedAt), true)
      assert.equal(await replica.followTopicDeletion('T', deletedAt), false, 'followed already')
      await assert.rejects(master.followTopicDeletion('T', deletedAt), (e: unknown) => e instanceof StoreError && e.code === 'WRONG_ROLE')
      await assertSameAnswers(master, replica, KEYS, 'after the deletion')
      assert.deepEqual(replica.topics(), master.topics())
      assert.equal(replica.maxOffset('T', 2), 0)
      assert.equal(replica.committedOffset('g', 'T', 0), -1, "the topic's consumer offsets went")
      assert.equal(replica.committedOffset('g', 'U', 0), 1)
      replica = await (async () => {
        await replica.close()
        return MessageStore.open(storeOptions(r.dir, flush, { role: 'replica' }))
      })()
      await assertSameAnswers(master, replica, KEYS, 'after a reopen')
      // Promoted, its puts continue the new queues.
      await replica.setRole('master')
      assert.equal((await replica.put({ topic: 'T', queueId: 0, body: 'x' })).queueOffset, 3)
      assert.equal((await replica.put({ topic: 'T', queueId: 2, body: 'x' })).queueOffset, 0)
    } finally {
      await master.close()
      await replica.close()
      await m.cleanup()
      await r.cleanup()
    }
  })
}

test(`a replica killed after following a deletion (simulated disk) does not bring the old queues back (seed ${SEED})`, async () => {
  const mdir = simPath('del-master')
  const rdir = simPath('del-replica')
  const rnd = seededRandom(SEED + 1)
  let rio = new SimFileIO()
  // No periodic ConsumeQueue flush: the reopen re-dispatches everything past the old checkpoint.
  const base = { ...SIM_INDEX, flushConsumeQueueIntervalMs: 1e9 }
  const master = await MessageStore.open(storeOptions(mdir, 'async', { ...base, fileIO: new SimFileIO() }))
  let replica = await MessageStore.open(storeOptions(rdir, 'async', { ...base, fileIO: rio, role: 'replica' }))
  try {
    const deletedAt = await deleteAndRecreate(master)
    await feed(master, replica, rnd)
    assert.equal(await replica.followTopicDeletion('T', deletedAt), true)
    await replica.flush()
    const killed = rio.processCrash()
    await replica.close()
    rio = killed
    replica = await MessageStore.open(storeOptions(rdir, 'async', { ...base, fileIO: rio, role: 'replica' }))
    assert.equal(replica.recovery.cleanShutdown, false)
    await assertSameAnswers(master, replica, KEYS, 'after the kill')
  } finally {
    await master.close()
    await replica.close()
    assertNothingReal(mdir)
    assertNothingReal(rdir)
  }
})

test(`a replica killed between writing the record that restarts a queue and dispatching it follows the deletion at the next open (seed ${SEED})`, async () => {
  const m = await tempDir('mqts-del-master-')
  const r = await tempDir('mqts-del-replica-')
  const rnd = seededRandom(SEED + 2)
  const options = storeOptions(r.dir, 'async', { role: 'replica' })
  const master = await MessageStore.open(storeOptions(m.dir, 'async'))
  let replica = await MessageStore.open(options)
  try {
    const deletedAt = await deleteAndRecreate(master)
    await feed(master, replica, rnd, deletedAt)
    await replica.close()
    // What a killed replica leaves: the records written to its file, not dispatched, and no clean close.
    const rest = master.readCommitLog(deletedAt, master.commitLogMaxOffset - deletedAt)
    assert.equal(rest.length, master.commitLogMaxOffset - deletedAt, 'one file holds the rest')
    const { open } = await import('node:fs/promises')
    const file = await open(path.join(r.dir, 'commitlog', '0'.repeat(20)), 'r+')
    await file.write(rest, 0, rest.length, deletedAt)
    await file.close()
    await writeFile(path.join(r.dir, 'abort'), '')
    replica = await MessageStore.open(options)
    assert.equal(replica.recovery.cleanShutdown, false)
    assert.equal(replica.commitLogMaxOffset, master.commitLogMaxOffset)
    assert.equal(await replica.followTopicDeletion('T', deletedAt), true)
    await assertSameAnswers(master, replica, KEYS, 'after the reopen')
    replica = await (async () => {
      await replica.close()
      return MessageStore.open(options)
    })()
    await assertSameAnswers(master, replica, KEYS, 'after another reopen')
  } finally {
    await master.close()
    await replica.close()
    await m.cleanup()
    await r.cleanup()
  }
})

test('a queue deletion a kill interrupted (written down, pending) is finished by the next open; the queue stays empty', async () => {
  const m = await tempDir('mqts-del-master-')
  const r = await tempDir('mqts-del-replica-')
  const rnd = seededRandom(SEED + 3)
  const options = storeOptions(r.dir, 'async', { role: 'replica' })
  const master = await MessageStore.open(storeOptions(m.dir, 'async'))
  let replica = await MessageStore.open(options)
  try {
    for (const q of [0, 1]) await put(master, 'T', q, 4, 'old')
    await feed(master, replica, rnd)
    const end = replica.commitLogMaxOffset
    await replica.close()
    // What a kill right after writing the deletion down leaves: the entry pending, the files there.
    await writeFile(path.join(r.dir, 'config', 'deletedTopics.json'), JSON.stringify({ version: 1, topics: [{ topic: 'T', queueId: 1, offset: end, pending: true }] }))
    await writeFile(path.join(r.dir, 'abort'), '')
    replica = await MessageStore.open(options)
    assert.equal(replica.maxOffset('T', 1), 0, 'the queue is empty')
    assert.equal(replica.maxOffset('T', 0), 4, 'the other queue is kept')
    const saved = JSON.parse((await readFile(path.join(r.dir, 'config', 'deletedTopics.json'))).toString()) as { topics: Array<{ pending: boolean; queueId?: number }> }
    assert.deepEqual(saved.topics.map((e) => [e.queueId, e.pending]), [[1, false]], 'finished')
    replica = await (async () => {
      await replica.close()
      return MessageStore.open(options)
    })()
    assert.equal(replica.maxOffset('T', 1), 0, 'still empty after another reopen')
  } finally {
    await master.close()
    await replica.close()
    await m.cleanup()
    await r.cleanup()
  }
})
