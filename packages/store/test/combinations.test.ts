// The newer calls combined, where an adversarial review found defects: a confirm offset with
// truncate, deleteTopic and a promotion (records past the confirm offset hold queue offsets
// too); a truncate on a replica holding part of a record; a corrupt cut record held by a
// replica; toScheduledMessage of a scheduled message; calls on a closed store.
import assert from 'node:assert/strict'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, SCHEDULE_TOPIC, StoreError, toScheduledMessage, type MessageStoreOptions } from '../src/index.js'
import { tempDir } from './helpers.js'

const OPTS = { commitLogFileSize: 64 * 1024, maxHashSlotNum: 64, maxIndexNum: 256, flush: 'sync' as const }

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir('mqts-combo-')
  try {
    await fn(dir)
  } finally {
    await cleanup()
  }
}

async function queue(store: MessageStore, topic: string): Promise<string[]> {
  const r = await store.get({ topic, queueId: 0, offset: 0, maxMessages: 64 })
  return r.messages.map((m) => `${m.queueOffset}:${m.body.toString()}`)
}

/** Confirms everything, dispatches, and checks dispatch did not stop. */
async function confirmAll(store: MessageStore): Promise<void> {
  store.setConfirmOffset(store.commitLogMaxOffset)
  await store.whenDispatched()
}

test('confirm offset + truncate: records kept below the cut but not yet confirmed keep their queue offsets', async () => {
  await withDir(async (dir) => {
    const options: MessageStoreOptions = { ...OPTS, dir, confirmOffset: true }
    const store = await MessageStore.open(options)
    const p = []
    for (let i = 0; i < 5; i++) p.push(await store.put({ topic: 'A', queueId: 0, body: `b${i}` }))
    store.setConfirmOffset(p[1]!.physicalOffset + p[1]!.size)
    await store.whenDispatched()
    await store.truncate(p[4]!.physicalOffset)
    const n = await store.put({ topic: 'A', queueId: 0, body: 'new' })
    assert.equal(n.queueOffset, 4, 'b2 and b3 stay: the next offset is 4')
    await confirmAll(store)
    assert.deepEqual(await queue(store, 'A'), ['0:b0', '1:b1', '2:b2', '3:b3', '4:new'])
    assert.equal((await store.put({ topic: 'B', queueId: 0, body: 'x' })).status, 'PUT_OK', 'dispatch goes on')
    await store.close()
    const again = await MessageStore.open(options)
    await confirmAll(again)
    assert.deepEqual(await queue(again, 'A'), ['0:b0', '1:b1', '2:b2', '3:b3', '4:new'])
    await again.close()
  })
})

test('confirm offset + deleteTopic: the topic\'s records not yet confirmed stay out of its new queues', async () => {
  await withDir(async (dir) => {
    const options: MessageStoreOptions = { ...OPTS, dir, confirmOffset: true }
    const store = await MessageStore.open(options)
    const p = []
    for (let i = 0; i < 4; i++) p.push(await store.put({ topic: 'X', queueId: 0, body: `old${i}` }))
    store.setConfirmOffset(p[0]!.physicalOffset + p[0]!.size)
    await store.whenDispatched()
    assert.equal(await store.deleteTopic('X'), true)
    assert.equal((await store.put({ topic: 'X', queueId: 0, body: 'new0' })).queueOffset, 0)
    await confirmAll(store)
    assert.deepEqual(await queue(store, 'X'), ['0:new0'])
    assert.equal((await store.put({ topic: 'Y', queueId: 0, body: 'y' })).status, 'PUT_OK')
    await store.close()
    const again = await MessageStore.open(options)
    await confirmAll(again)
    assert.deepEqual(await queue(again, 'X'), ['0:new0'])
    await again.close()
  })
})

test('confirm offset + promotion: a promoted replica\'s puts continue after the records it holds past its confirm offset', async () => {
  await withDir(async (dir) => {
    const master = await MessageStore.open({ ...OPTS, dir: path.join(dir, 'm'), confirmOffset: true })
    const replica = await MessageStore.open({ ...OPTS, dir: path.join(dir, 'r'), role: 'replica', confirmOffset: true })
    const p = []
    for (let i = 0; i < 5; i++) p.push(await master.put({ topic: 'A', queueId: 0, body: `b${i}` }))
    await replica.appendReplicated(0, master.readCommitLog(0, 1 << 16, { unconfirmed: true }))
    replica.setConfirmOffset(p[2]!.physicalOffset + p[2]!.size)
    await replica.whenDispatched()
    await replica.setRole('master')
    assert.equal((await replica.put({ topic: 'A', queueId: 0, body: 'new' })).queueOffset, 5)
    await confirmAll(replica)
    assert.deepEqual(await queue(replica, 'A'), ['0:b0', '1:b1', '2:b2', '3:b3', '4:b4', '5:new'])
    await master.close()
    await replica.close()
  })
})

test('a truncate on a replica drops the bytes it held of a record past the cut; replication resumes at the cut', async () => {
  await withDir(async (dir) => {
    const master = await MessageStore.open({ ...OPTS, dir: path.join(dir, 'm') })
    const replica = await MessageStore.open({ ...OPTS, dir: path.join(dir, 'r'), role: 'replica' })
    const p = []
    for (let i = 0; i < 6; i++) p.push(await master.put({ topic: 'A', queueId: 0, body: `b${i}`.padEnd(50, '.') }))
    await replica.appendReplicated(0, master.readCommitLog(0, p[5]!.physicalOffset + 10))
    assert.equal(replica.replicaEndOffset, p[5]!.physicalOffset + 10)
    await replica.truncate(p[3]!.physicalOffset)
    assert.equal(replica.replicaEndOffset, p[3]!.physicalOffset)
    assert.equal(replica.commitLogMaxOffset, p[3]!.physicalOffset)
    await replica.appendReplicated(p[3]!.physicalOffset, master.readCommitLog(p[3]!.physicalOffset, 1 << 16))
    assert.equal(replica.commitLogMaxOffset, master.commitLogMaxOffset)
    assert.deepEqual(await queue(replica, 'A'), await queue(master, 'A'))
    await master.close()
    await replica.close()
  })
})

test('a replica holding a corrupt part of a record drops it when the record completes wrong; it resumes at its last whole record', async () => {
  await withDir(async (dir) => {
    const master = await MessageStore.open({ ...OPTS, dir: path.join(dir, 'm') })
    const replica = await MessageStore.open({ ...OPTS, dir: path.join(dir, 'r'), role: 'replica' })
    const p = []
    for (let i = 0; i < 3; i++) p.push(await master.put({ topic: 'A', queueId: 0, body: Buffer.alloc(600, 97 + i) }))
    const cutAt = p[2]!.physicalOffset + 300
    const first = Buffer.from(master.readCommitLog(0, cutAt))
    first[p[2]!.physicalOffset + 250] ^= 0xff // inside the third record's body: not checkable yet
    await replica.appendReplicated(0, first)
    await assert.rejects(replica.appendReplicated(cutAt, master.readCommitLog(cutAt, 1 << 16)), (e: unknown) => e instanceof StoreError && e.code === 'CORRUPT_RECORD' && /were dropped/.test(e.message))
    assert.equal(replica.replicaEndOffset, p[2]!.physicalOffset, 'back at the last whole record')
    await replica.appendReplicated(replica.replicaEndOffset, master.readCommitLog(replica.replicaEndOffset, 1 << 16))
    assert.equal(replica.commitLogMaxOffset, master.commitLogMaxOffset)
    await master.close()
    await replica.close()
  })
})

test('toScheduledMessage leaves a scheduled message as it is; onCommitted on a closed store is NOT_OPEN', async () => {
  const scheduled = toScheduledMessage({ topic: 'T', queueId: 2, body: 'x' }, 3)
  assert.equal(scheduled.topic, SCHEDULE_TOPIC)
  assert.equal(toScheduledMessage(scheduled, 5), scheduled, 'its REAL_TOPIC is kept')
  await withDir(async (dir) => {
    const store = await MessageStore.open({ ...OPTS, dir })
    await store.close()
    assert.throws(() => store.onCommitted(() => undefined), (e: unknown) => e instanceof StoreError && e.code === 'NOT_OPEN')
  })
})
