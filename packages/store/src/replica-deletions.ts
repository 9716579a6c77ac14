/**
 * A replica follows its master's topic deletions (deleteTopic on the master: the topic's queues
 * and consumer offsets go, its next messages restart each queue at queue offset 0). Nothing of a
 * deletion is in the CommitLog, so a replica learns it two ways:
 *
 * - From the data (followQueueRestart): a record at queue offset 0 for a queue the replica holds
 *   units of, past all of them, can only be the master's first record of that queue after a
 *   deletion. The queue's units are the deleted ones: the queue is emptied (marked at the record's
 *   offset: that queue's records below it never reach it again), then the record is dispatched.
 *   Only that queue: which of the topic's other queues hold deleted units the data does not say
 *   (a queue the replica never had may already hold new records), so they go when they restart
 *   too, or with the next way.
 * - From its master's word (followTopicDeletion): the broker's metadata sync finds a topic the
 *   master no longer has, with the CommitLog offset of the master's deletion (every record of the
 *   topic below it is a deleted one, every one at or past it a new one). The deletion is marked
 *   at that offset for the whole topic, the queues holding only records below it go with the
 *   topic's consumer offsets; a queue holding records past it (the topic was made again since)
 *   stays. It runs between dispatch passes, so no record of the topic is dispatched meanwhile.
 *
 * Both write the deletion down (config/deletedTopics.json, topics.ts) before anything goes, so a
 * re-dispatch after a crash never brings the deleted units back; the log is durable up to the
 * mark first, so no crash cuts it below.
 */
import type { ConsumeQueue } from './consume-queue.js'
import { StoreError, ioError } from './errors.js'
import type { TopicStore } from './topics.js'

/**
 * Whether a record of (`topic`, `queueId`) at queue offset 0 and CommitLog offset `physicalOffset`
 * restarts the queue: the queue holds units, and the record lies past all of them (a re-dispatch
 * of the queue's own first record lies below its end).
 */
export function restartsQueue(s: Pick<TopicStore, 'consumeQueues'>, topic: string, queueId: number, physicalOffset: number): boolean {
  const cq = s.consumeQueues.find(topic, queueId)
  return cq !== undefined && cq.maxOffset > 0 && physicalOffset >= cq.maxPhysicalEnd
}

async function durableUpTo(s: TopicStore, offset: number): Promise<void> {
  if (offset > s.commitLog.flushedOffset) await s.commitLog.whenDurable(offset)
}

/** Saves the deletions after `change`; undoes it if they cannot be saved. */
async function record(s: TopicStore, change: () => () => void): Promise<void> {
  const undo = change()
  try {
    await s.deletedTopics.save()
  } catch (err) {
    undo()
    throw err
  }
}

/** The CommitLog's next queue offset of a queue whose units went: a promotion restarts it at 0. */
function forgetNextOffset(s: TopicStore, cq: ConsumeQueue): void {
  const st = s.commitLog.topics.get(cq.topic)
  if (st && st.queueOffsets.length > cq.queueId) st.queueOffsets[cq.queueId] = 0
}

/**
 * The dispatch met a record restarting (`topic`, `queueId`) at `offset` (restartsQueue): the
 * queue is emptied, marked at `offset`, before the record goes in. At open too (a kill between
 * writing the record and dispatching it): the mark is finished by finishDeletionsAfterLoad.
 */
export async function followQueueRestart(s: TopicStore, topic: string, queueId: number, offset: number): Promise<void> {
  await durableUpTo(s, offset)
  await record(s, () => {
    const before = s.deletedTopics.setQueue(topic, queueId, { offset, pending: true })
    return () => s.deletedTopics.setQueue(topic, queueId, before)
  })
  const cq = s.consumeQueues.find(topic, queueId)!
  try {
    await s.consumeQueues.resetQueue(cq)
  } catch (err) {
    // Left pending: the next open finishes it.
    throw ioError(`emptying ConsumeQueue ${topic}@${queueId}, deleted on the master`, err)
  }
  forgetNextOffset(s, cq)
  s.deletedTopics.setQueue(topic, queueId, { offset, pending: false })
  await s.deletedTopics.save()
}

/**
 * The master deleted `topic` at its CommitLog offset `offset` (see the module comment). Runs
 * between dispatch passes. Resolves false when this deletion (or a later one) was followed
 * already.
 */
export async function followTopicDeletion(s: TopicStore, topic: string, offset: number): Promise<boolean> {
  const known = s.deletedTopics.get(topic)
  if (known && known.offset >= offset) return false
  await durableUpTo(s, offset)
  await record(s, () => {
    const before = s.deletedTopics.set(topic, { offset, pending: true })
    return () => s.deletedTopics.set(topic, before)
  })
  const doomed = [...(s.consumeQueues.queues.get(topic)?.values() ?? [])].filter((cq) => cq.maxPhysicalEnd <= offset)
  try {
    for (const cq of doomed) {
      await s.consumeQueues.resetQueue(cq)
      forgetNextOffset(s, cq)
    }
  } catch (err) {
    throw ioError(`removing the ConsumeQueues of topic ${topic}, deleted on the master`, err)
  }
  await s.consumeQueues.forgetEmpty(topic)
  if (s.consumerOffsets.removeTopic(topic)) await s.consumerOffsets.persist()
  s.deletedTopics.set(topic, { offset, pending: false })
  await s.deletedTopics.save()
  return true
}

/** The error of a deletion-following call the store cannot take. */
export function notAReplica(role: string): StoreError {
  return new StoreError('WRONG_ROLE', `followTopicDeletion refused: this store is a ${role}; a master deletes topics with deleteTopic`, { details: { role } })
}
