/**
 * Topics: the listing of the queues a store holds, and deleteTopic (RocketMQ's
 * DefaultMessageStore.deleteTopics): a topic's ConsumeQueues and consumer offsets go, its next
 * queue offsets restart at 0, and its records stay in the CommitLog until retention.
 *
 * What keeps a deleted topic deleted: the CommitLog still holds its records, and an open may
 * dispatch them again (after a crash, from the checkpoint's logicsFlushedOffset; from the log's
 * start when a queue was lost or damaged). So every deletion is written down first, in
 * `config/deletedTopics.json`, with the CommitLog offset it was made at: records of the topic
 * below it never reach a ConsumeQueue again. An entry goes once retention has deleted every
 * file below its offset. A deletion interrupted by a crash is `pending` in the file: the next
 * open finishes it (folders and offsets of the topic removed) before it recovers the queues.
 *
 *   {"version":1,"topics":[{"topic":"<topic>","offset":<CommitLog offset>,"pending":<bool>},...]}
 *
 * A replica also deletes single queues (replica-deletions.ts): such an entry has a "queueId" and
 * drops only that queue's records below its offset.
 *
 * (An array, not an object keyed by topic: a topic named `__proto__` is legal.)
 */
import * as path from 'node:path'
import type { StoreCheckpoint } from './checkpoint.js'
import type { CommitLog, FlushMode } from './commit-log.js'
import type { ConsumeQueueSet } from './consume-queue.js'
import type { ConsumerOffsetManager } from './consumer-offsets.js'
import type { Dispatcher } from './dispatcher.js'
import { StoreError, ioError } from './errors.js'
import type { FileIO } from './file-io.js'

export const DELETED_TOPICS_FILE = 'deletedTopics.json'
export const DELETED_TOPICS_VERSION = 1

/** A topic and the ids of its queues, as `MessageStore.topics()` lists them. */
export interface TopicQueues {
  topic: string
  /** Ascending. */
  queueIds: number[]
}

export interface Deletion {
  /** CommitLog offset the deletion was made at: the topic's records below it are the deleted ones. */
  offset: number
  /** Written before the files go; cleared once they are gone. */
  pending: boolean
}

/** The deletions whose records are still in the CommitLog (config/deletedTopics.json). */
export class DeletedTopics {
  readonly #io: FileIO
  readonly #file: string
  readonly #byTopic = new Map<string, Deletion>()
  /** A replica's deletions of single queues, by topic then queue id. */
  readonly #byQueue = new Map<string, Map<number, Deletion>>()
  #saving: Promise<void> | undefined

  constructor(io: FileIO, file: string) {
    this.#io = io
    this.#file = file
  }

  /** No deletion is remembered (the dispatch check then costs one comparison). */
  get empty(): boolean {
    return this.#byTopic.size === 0 && this.#byQueue.size === 0
  }

  /** Whether the record of `topic` (queue `queueId`) at `physicalOffset` belongs to a deleted queue. */
  drops(topic: string, queueId: number, physicalOffset: number): boolean {
    const d = this.#byTopic.get(topic)
    if (d !== undefined && physicalOffset < d.offset) return true
    const q = this.#byQueue.size === 0 ? undefined : this.#byQueue.get(topic)?.get(queueId)
    return q !== undefined && physicalOffset < q.offset
  }

  /** The deletion of the whole `topic` remembered, if any. */
  get(topic: string): Deletion | undefined {
    return this.#byTopic.get(topic)
  }

  /** Every whole-topic deletion remembered, with its offset. */
  list(): Array<{ topic: string; offset: number }> {
    return [...this.#byTopic].map(([topic, d]) => ({ topic, offset: d.offset }))
  }

  /** Deletions that did not finish, with the offset each was made at (`queueId` for one queue's). */
  pending(): Array<{ topic: string; queueId?: number; offset: number }> {
    const out: Array<{ topic: string; queueId?: number; offset: number }> = []
    for (const [topic, d] of this.#byTopic) if (d.pending) out.push({ topic, offset: d.offset })
    for (const [topic, byId] of this.#byQueue) for (const [queueId, d] of byId) if (d.pending) out.push({ topic, queueId, offset: d.offset })
    return out
  }

  /** Every entry, whole topics' and single queues'. */
  *#all(): IterableIterator<Deletion> {
    yield* this.#byTopic.values()
    for (const byId of this.#byQueue.values()) yield* byId.values()
  }

  /** Reads the file; a missing file is no deletion, one that cannot be parsed is CORRUPT_FILE. */
  async load(): Promise<void> {
    const raw = await this.#io.readFile(this.#file)
    if (!raw) return
    const bad = (why: string): never => {
      throw new StoreError(
        'CORRUPT_FILE',
        `${this.#file} is damaged (${why}): it names the deleted topics whose records must not reach a ConsumeQueue again; removing it lets the store open, and a later rebuild of the queues may then bring those topics back`,
        { details: { file: this.#file } },
      )
    }
    let body: { version?: unknown; topics?: unknown }
    try {
      body = JSON.parse(raw.toString('utf8'))
    } catch (err) {
      return bad(`not JSON: ${(err as Error).message}`)
    }
    if (body === null || typeof body !== 'object' || body.version !== DELETED_TOPICS_VERSION || !Array.isArray(body.topics)) return bad(`expected version ${DELETED_TOPICS_VERSION} and a topics array`)
    for (const e of body.topics as unknown[]) {
      const { topic, queueId, offset, pending } = (e ?? {}) as { topic?: unknown; queueId?: unknown; offset?: unknown; pending?: unknown }
      if (typeof topic !== 'string' || !Number.isSafeInteger(offset) || (offset as number) < 0 || typeof pending !== 'boolean') return bad(`entry ${JSON.stringify(e)}`)
      if (queueId !== undefined && !(Number.isSafeInteger(queueId) && (queueId as number) >= 0)) return bad(`entry ${JSON.stringify(e)}`)
      if (queueId === undefined) this.#byTopic.set(topic, { offset: offset as number, pending })
      else this.setQueue(topic, queueId as number, { offset: offset as number, pending })
    }
  }

  /** Writes the file (atomic replace, synced) as it is when its turn comes; removes it when nothing is left. */
  save(): Promise<void> {
    // One write at a time (retention prunes while a deletion may write).
    const run = (): Promise<void> => this.#write()
    const p = (this.#saving ?? Promise.resolve()).then(run, run)
    this.#saving = p
    return p
  }

  async #write(): Promise<void> {
    try {
      if (this.empty) {
        await this.#io.remove(this.#file)
        await this.#io.syncDir(path.dirname(this.#file))
        return
      }
      const topics: Array<{ topic: string; queueId?: number; offset: number; pending: boolean }> = [...this.#byTopic].map(([topic, d]) => ({ topic, offset: d.offset, pending: d.pending }))
      for (const [topic, byId] of this.#byQueue) for (const [queueId, d] of byId) topics.push({ topic, queueId, offset: d.offset, pending: d.pending })
      await this.#io.writeFileAtomic(this.#file, Buffer.from(JSON.stringify({ version: DELETED_TOPICS_VERSION, topics })))
    } catch (err) {
      throw ioError(`writing ${this.#file}`, err)
    }
  }

  /** Sets `topic`'s entry; returns what it replaced, for undo. */
  set(topic: string, deletion: Deletion | undefined): Deletion | undefined {
    const before = this.#byTopic.get(topic)
    if (deletion) this.#byTopic.set(topic, deletion)
    else this.#byTopic.delete(topic)
    return before
  }

  /** Sets the entry of one queue of `topic`; returns what it replaced, for undo. */
  setQueue(topic: string, queueId: number, deletion: Deletion | undefined): Deletion | undefined {
    let byId = this.#byQueue.get(topic)
    const before = byId?.get(queueId)
    if (deletion) {
      if (!byId) this.#byQueue.set(topic, (byId = new Map()))
      byId.set(queueId, deletion)
    } else if (byId) {
      byId.delete(queueId)
      if (byId.size === 0) this.#byQueue.delete(topic)
    }
    return before
  }

  /** Marks every deletion finished; true if one was pending. */
  finishAll(): boolean {
    let changed = false
    for (const d of this.#all()) {
      changed ||= d.pending
      d.pending = false
    }
    return changed
  }

  /**
   * The CommitLog ends at `end` (cut below a deletion's offset: damage truncated at open, or a
   * truncate): records stored from there on are new, so no deletion may reach past it.
   */
  clamp(end: number): boolean {
    let changed = false
    for (const d of this.#all()) {
      if (d.offset <= end) continue
      d.offset = end
      changed = true
    }
    return changed
  }

  /** Forgets finished deletions whose records retention removed (all below `commitLogMin`); true if any. */
  prune(commitLogMin: number): boolean {
    let changed = false
    for (const [topic, d] of this.#byTopic) {
      if (d.pending || d.offset > commitLogMin) continue
      this.#byTopic.delete(topic)
      changed = true
    }
    for (const [topic, byId] of this.#byQueue) {
      for (const [queueId, d] of byId) {
        if (d.pending || d.offset > commitLogMin) continue
        this.setQueue(topic, queueId, undefined)
        changed = true
      }
    }
    return changed
  }
}

/** The queues of the store, by topic, both sorted (topics by UTF-16 code units, queue ids ascending). */
export function listTopics(cqs: ConsumeQueueSet): TopicQueues[] {
  const out: TopicQueues[] = []
  for (const [topic, byId] of cqs.queues) {
    if (byId.size === 0) continue
    out.push({ topic, queueIds: [...byId.keys()].sort((a, b) => a - b) })
  }
  return out.sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0))
}

/** The parts of an open store a deletion touches. */
export interface TopicStore {
  readonly commitLog: CommitLog
  readonly consumeQueues: ConsumeQueueSet
  readonly dispatcher: Dispatcher
  readonly consumerOffsets: ConsumerOffsetManager
  readonly checkpoint: StoreCheckpoint
  readonly deletedTopics: DeletedTopics
  readonly flushMode: FlushMode
  /** Syncs the ConsumeQueues and the index, then sets logicsFlushedOffset to what they hold. */
  flushConsumeQueues(): Promise<void>
}

/** Whether the store knows `topic`: queues, queue offsets or committed consumer offsets. */
export function knowsTopic(s: TopicStore, topic: string): boolean {
  return s.consumeQueues.queues.has(topic) || s.commitLog.topics.has(topic) || s.consumerOffsets.hasTopic(topic)
}

/**
 * Deletes `topic`'s queues and consumer offsets. The caller keeps new puts of the topic waiting
 * until this settles (MessageStore.deleteTopic): puts of it already under way finish first.
 *
 * Order, so that a crash at any point leaves the old state or the deleted one after the next
 * open: (1) every record of the topic durable and dispatched; (2) the checkpoint's logicsFlushedOffset made
 * to cover them, so a crash recovery starts past them; (3) the deletion written, pending, with
 * that offset: from here on an open finishes it; (4) the topic forgotten in memory (queues, next
 * queue offsets, consumer offsets); (5) its files and folders removed, offsets persisted;
 * (6) the deletion marked finished. A failure before (3) changes nothing.
 */
export async function deleteTopicData(s: TopicStore, topic: string): Promise<void> {
  await s.commitLog.appendsSettled()
  // Durable, so no crash can cut the log below the deletion's offset: a record stored after the
  // deletion must never sit below it (it would be taken for one of the deleted queues').
  await s.commitLog.flush()
  await s.dispatcher.drain()
  const dispatched = s.dispatcher.reputOffset
  while (s.checkpoint.values.logicsFlushedOffset < dispatched) await s.flushConsumeQueues()
  // Past a confirm offset the topic may have records not dispatched yet: the deletion covers
  // every record in the log (the durable end), so none of them joins the new queues later.
  const offset = Math.max(dispatched, s.commitLog.committedOffset)
  const before = s.deletedTopics.set(topic, { offset, pending: true })
  try {
    await s.deletedTopics.save()
  } catch (err) {
    s.deletedTopics.set(topic, before)
    throw err
  }
  const forgotten = s.consumeQueues.forgetTopic(topic)
  s.commitLog.topics.delete(topic)
  s.consumerOffsets.removeTopic(topic)
  try {
    await s.consumeQueues.removeTopicFiles(topic, forgotten)
  } catch (err) {
    // Left pending: the next open finishes it.
    throw ioError(`removing the ConsumeQueues of topic ${topic}`, err)
  }
  await s.consumerOffsets.persist()
  s.deletedTopics.set(topic, { offset, pending: false })
  await s.deletedTopics.save()
}

/**
 * At open, before the ConsumeQueues are loaded: the folders of topics whose deletion a crash
 * interrupted go. Returns the lowest offset of such a deletion (the re-dispatch starts there at
 * the latest, so records of the topic stored after it, if any, are put back), or undefined.
 */
export async function finishDeletionsBeforeLoad(io: FileIO, cqDir: string, deleted: DeletedTopics): Promise<number | undefined> {
  let from: number | undefined
  for (const { topic, queueId, offset } of deleted.pending()) {
    const topicDir = path.join(cqDir, topic)
    if (queueId !== undefined) {
      // One queue of a replica (replica-deletions.ts).
      const queueDir = path.join(topicDir, String(queueId))
      for (const name of await io.list(queueDir)) await io.remove(path.join(queueDir, name))
      from = Math.min(from ?? offset, offset)
      continue
    }
    for (const id of await io.list(topicDir)) {
      const queueDir = path.join(topicDir, id)
      for (const name of await io.list(queueDir)) await io.remove(path.join(queueDir, name))
      await io.removeDir(queueDir)
    }
    await io.removeDir(topicDir)
    from = Math.min(from ?? offset, offset)
  }
  if (from !== undefined) await io.syncDir(cqDir)
  return from
}

/**
 * At open, after the queues are recovered and consumer offsets loaded: the interrupted
 * deletions' offsets go, every deletion is finished, none reaches past the log's end.
 */
export async function finishDeletionsAfterLoad(deleted: DeletedTopics, offsets: ConsumerOffsetManager, commitLog: CommitLog): Promise<void> {
  const pending = deleted.pending()
  for (const { topic, queueId } of pending) if (queueId === undefined) offsets.removeTopic(topic)
  if (pending.length > 0) await offsets.persist()
  const finished = deleted.finishAll()
  const clamped = deleted.clamp(commitLog.wroteOffset)
  if (deleted.prune(commitLog.minOffset) || finished || clamped) await deleted.save()
}
