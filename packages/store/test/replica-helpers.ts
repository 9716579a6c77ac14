// Shared by the replication tests: feeding a replica from its master's readCommitLog in chunks of
// seeded random sizes, and comparing what a replica answers with its master.
import assert from 'node:assert/strict'
import type { MessageStore, StoredMessage } from '../src/index.js'
import { queueUnits } from './helpers.js'
import { chunkSize } from './fixtures/replica-feed.js'

export { REPLICA_INDEX, chunkSize } from './fixtures/replica-feed.js'

/**
 * Appends the master's committed log to the replica from the replica's end, in chunks of seeded
 * sizes, up to `until` (the master's end by default; any offset, a record may be cut there).
 * Returns the number of chunks.
 */
export async function feed(master: MessageStore, replica: MessageStore, rnd: () => number, until = master.commitLogMaxOffset): Promise<number> {
  let chunks = 0
  for (;;) {
    const at = replica.replicaEndOffset
    if (at >= until) return chunks
    const bytes = master.readCommitLog(at, Math.min(chunkSize(rnd), until - at))
    if (bytes.length === 0) return chunks
    await replica.appendReplicated(at, bytes)
    chunks++
  }
}

/** Every message of a queue, through get (several reads when maxTransferBytes stops one). */
export async function getAll(store: MessageStore, topic: string, queueId: number): Promise<StoredMessage[]> {
  const out: StoredMessage[] = []
  for (let offset = 0; ; ) {
    const r = await store.get({ topic, queueId, offset, maxMessages: 10_000 })
    out.push(...r.messages)
    if (r.messages.length === 0 || r.nextOffset >= r.maxOffset) return out
    offset = r.nextOffset
  }
}

/** The (topic, queueId) pairs holding a ConsumeQueue in `store`, as "topic@queueId", sorted. */
export function queuesOf(store: MessageStore): string[] {
  return [...store.consumeQueues.all()]
    .map((cq) => `${cq.topic}@${cq.queueId}`)
    .sort()
}

/**
 * The replica answers as its master for everything below the replica's end: ConsumeQueue units,
 * get (every message of every queue the master has), maxQueueOffset, and queryByKey for `keys`.
 */
export async function assertSameAnswers(master: MessageStore, replica: MessageStore, keys: ReadonlyArray<readonly [string, string]>, what: string): Promise<void> {
  const end = replica.commitLogMaxOffset
  assert.equal(replica.dispatcher.reputOffset >= end, true, `${what}: the replica dispatched its log`)
  const full = end === master.commitLogMaxOffset
  for (const q of queuesOf(master)) {
    const at = q.lastIndexOf('@')
    const topic = q.slice(0, at)
    const queueId = Number(q.slice(at + 1))
    const below = (await getAll(master, topic, queueId)).filter((x) => x.physicalOffset + x.storeSize <= end)
    const r = { messages: await getAll(replica, topic, queueId) }
    const describe = (xs: StoredMessage[]): string[] => xs.map((x) => `${x.queueOffset}@${x.physicalOffset}/${x.storeSize} ${x.tags ?? ''} ${x.keys.join(',')} ${x.body.toString('base64')}`)
    assert.deepEqual(describe(r.messages), describe(below), `${what}: get of ${q}`)
    assert.equal(replica.maxQueueOffset(topic, queueId), below.length === 0 ? 0 : below[below.length - 1]!.queueOffset + 1, `${what}: maxQueueOffset of ${q}`)
    if (full) {
      assert.deepEqual(await queueUnits(replica, topic, queueId), await queueUnits(master, topic, queueId), `${what}: ConsumeQueue units of ${q}`)
    }
  }
  if (full) assert.deepEqual(queuesOf(replica), queuesOf(master), `${what}: the same queues`)
  if (master.index && replica.index) {
    for (const [topic, key] of keys) {
      const m = (await master.queryByKey(topic, key, { maxNum: 5000 })).filter((x) => x.physicalOffset + x.storeSize <= end)
      const r = await replica.queryByKey(topic, key, { maxNum: 5000 })
      assert.deepEqual(
        r.map((x) => x.physicalOffset),
        m.map((x) => x.physicalOffset),
        `${what}: queryByKey ${topic} ${key}`,
      )
    }
  }
}
