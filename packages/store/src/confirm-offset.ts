/**
 * The confirm offset (open with `confirmOffset: true`; RocketMQ 5's controller mode, where reput
 * dispatches only up to confirmOffset): a CommitLog offset set from outside with setConfirmOffset,
 * what every in-sync replica holds. Dispatch, and so `get`, the ConsumeQueues, arrival events and
 * key queries, stop there, so nothing a consumer saw can vanish when a replica takes over. The
 * offset may fall inside a record (a replica acknowledges its byte end): only records ending at
 * or below it are dispatched (the dispatcher's partialTail).
 *
 * Rules:
 * - It never passes commitLogMaxOffset, and is lowered only down to what was dispatched (what a
 *   consumer may have seen): below that OFFSET_OUT_OF_RANGE. A cut of the log (truncate) lowers it
 *   itself.
 * - Appends do not wait for it: a put resolves when its flush mode says, and its message becomes
 *   readable once the confirm offset passes its end.
 * - It lives in the checkpoint (confirmPhyOffset, byte 32), written with every checkpoint write
 *   (after each CommitLog flush, each ConsumeQueue flush, close) and synced at least every
 *   flushConsumeQueueIntervalMs when it moved. The checkpoint may lag it: after a crash the store
 *   reopens at the confirm offset last synced, clamped to the recovered log's end, and consumers
 *   may see less than before until setConfirmOffset is called again, never more (ConsumeQueue
 *   units the killed process wrote past it are dropped; recovery re-dispatches up to it only).
 * - A store that runs without it records what it dispatched there, so opening it later with
 *   `confirmOffset: true` starts from what its consumers could see.
 * - Queue offsets of records past it are assigned at append time as always; at open they are read
 *   from those records (recoverPastConfirm), since the ConsumeQueues stop at the confirm offset.
 */
import type { StoreCheckpoint } from './checkpoint.js'
import type { IndexService } from '@mqts/index'
import type { CommitLog, RecoveryReport } from './commit-log.js'
import type { ConsumeQueueSet } from './consume-queue.js'
import { takesQueueOffset } from './codec/index.js'
import { Dispatcher } from './dispatcher.js'
import { StoreError } from './errors.js'
import { checkOffset, describe } from './put-input.js'
import type { DeletedTopics } from './topics.js'

export class ConfirmOffset {
  /** The value the last checkpoint write that was synced carried (see beforeCheckpoint). */
  #synced = -1

  constructor(
    /** Whether the store was opened with confirmOffset: true. */
    readonly enabled: boolean,
    private readonly log: CommitLog,
    private readonly dispatcher: Dispatcher,
    private readonly checkpoint: StoreCheckpoint,
  ) {}

  /**
   * At open, after the CommitLog recovered and before the ConsumeQueues do (and again after a cut
   * of the log at open): the persisted value, clamped to the recovered end, becomes the
   * dispatcher's limit. A clamped value is synced at once: appends past the new end must not find
   * the old value covering them after another crash.
   */
  async recovered(): Promise<void> {
    if (!this.enabled) return
    const cp = this.checkpoint.values
    const value = Math.min(Math.max(0, cp.confirmPhyOffset), this.log.committedOffset)
    this.dispatcher.confirmLimit = value
    this.dispatcher.partialTail = true
    if (value !== cp.confirmPhyOffset) {
      cp.confirmPhyOffset = value
      await this.checkpoint.flush()
    }
    this.#synced = value
  }

  /** The confirm offset; without confirmOffset: true everything committed counts as confirmed. */
  get value(): number {
    return this.enabled ? this.dispatcher.confirmLimit : this.log.committedOffset
  }

  /** Where readCommitLog stops: the confirm offset, or the committed end for replication. */
  readLimit(unconfirmed: boolean): number {
    const committed = this.log.committedOffset
    if (!this.enabled || unconfirmed) return committed
    return Math.min(committed, this.dispatcher.confirmLimit)
  }

  /** setConfirmOffset: checked, recorded for the checkpoint, and dispatch kicked up to it. */
  set(offset: number): void {
    if (!this.enabled) throw new StoreError('INVALID_ARGUMENT', 'setConfirmOffset needs a store opened with confirmOffset: true')
    checkOffset('offset', offset)
    const max = this.log.committedOffset
    if (offset > max) {
      throw new StoreError('OFFSET_OUT_OF_RANGE', `confirm offset ${offset} is past the committed end of the CommitLog, ${max} (commitLogMaxOffset)`, { details: { offset, maxOffset: max } })
    }
    const seen = this.dispatcher.dispatchedEnd
    if (offset < seen) {
      throw new StoreError('OFFSET_OUT_OF_RANGE', `confirm offset ${offset} is below ${seen}, the end of what was already dispatched to consumers (it is ${this.dispatcher.confirmLimit}); only a truncate lowers it further`, {
        details: { offset, minOffset: seen, confirmOffset: this.dispatcher.confirmLimit },
      })
    }
    this.checkpoint.values.confirmPhyOffset = offset
    this.dispatcher.confirmLimit = offset
    void this.dispatcher.kick()?.catch(() => undefined)
  }

  /**
   * Before the periodic ConsumeQueue flush writes the checkpoint: `dispatched` is how far the
   * queues it flushes go. Answers whether the checkpoint must be synced for the confirm offset.
   * Without confirmOffset: true the value recorded is what consumers could see.
   */
  beforeCheckpoint(dispatched: number): boolean {
    const cp = this.checkpoint.values
    if (!this.enabled) {
      cp.confirmPhyOffset = dispatched
      return false
    }
    return cp.confirmPhyOffset !== this.#synced
  }

  /** After the checkpoint carrying `value` was synced. */
  synced(value: number): void {
    this.#synced = value
  }
}

/**
 * At open, after recoverConsumeQueues, which re-dispatched up to the confirm offset only: the
 * records past where dispatch stopped, which the ConsumeQueues do not hold, are read once. Each
 * queue's next offset for appends is raised past them (RocketMQ's topic queue table would hold
 * them), and each must continue its queue densely: one past the durable offset that does not had
 * its header torn by a power loss (the body CRC does not cover it), which the re-dispatch would
 * have found had it gone that far. The log is cut there, as recovery cuts a torn record: the
 * CommitLog (tail zeroed, checkpoint synced), index entries and units at or past it, and the
 * confirm offset clamped to the new end. Below the durable offset records are trusted as written.
 */
export async function recoverPastConfirm(
  store: { commitLog: CommitLog; consumeQueues: ConsumeQueueSet; dispatcher: Dispatcher; index: IndexService | undefined; recovery: RecoveryReport },
  confirm: ConfirmOffset,
  deleted: DeletedTopics,
): Promise<void> {
  const { commitLog: log, dispatcher } = store
  const torn = raiseQueueOffsetsPast(log, dispatcher.reputOffset, store.recovery.durableOffset, deleted)
  if (torn === undefined) return
  const reason = `the record at ${torn.physicalOffset} has queue offset ${torn.queueOffset} where ${torn.topic}/${torn.queueId} continues at ${torn.expected}: its header was torn`
  await log.truncateRecovered(torn.physicalOffset, reason, store.recovery)
  for (const cq of store.consumeQueues.all()) {
    if (cq.maxPhysicalEnd > torn.physicalOffset || (cq.maxPhysicalEnd === 0 && cq.maxOffset > cq.minOffset)) await cq.truncatePhysical(torn.physicalOffset)
  }
  store.index?.recover(torn.physicalOffset, true)
  await confirm.recovered()
}

/** A record past the durable offset whose queue offset does not continue its queue. */
interface TornQueueOffset {
  physicalOffset: number
  topic: string
  queueId: number
  queueOffset: number
  expected: number
}

/**
 * Raises each queue's next offset past the records from `from` (a record boundary) to the end of
 * the log; stops at the first record at or past `durableOffset` that does not continue its queue
 * and returns it. Records of a deleted queue (`deleted`) are skipped: they belong to the queue
 * before its deletion, whose next offset restarted at 0.
 */
export function raiseQueueOffsetsPast(log: CommitLog, from: number, durableOffset: number, deleted: DeletedTopics): TornQueueOffset | undefined {
  let torn: TornQueueOffset | undefined
  const follower = new Dispatcher(
    log,
    [
      {
        name: 'queue offsets past the confirm offset',
        wantsKeys: false,
        dispatch: (req) => {
          if (!takesQueueOffset(req.sysFlag)) return
          if (!deleted.empty && deleted.drops(req.topic, req.queueId, req.physicalOffset)) return
          const st = log.topics.get(req.topic) ?? log.topicState(req.topic, Buffer.from(req.topic, 'utf8'))
          const next = st.queueOffsets[req.queueId] ?? 0
          if (req.queueOffset !== next && req.physicalOffset >= durableOffset) {
            torn = { physicalOffset: req.physicalOffset, topic: req.topic, queueId: req.queueId, queueOffset: req.queueOffset, expected: next }
            // Stops the pass at this record (a StoreError is kept as the pass's error).
            throw new StoreError('CORRUPT_RECORD', 'torn queue offset')
          }
          if (req.queueOffset >= next) st.queueOffsets[req.queueId] = req.queueOffset + 1
        },
      },
    ],
    () => undefined,
  )
  follower.reputOffset = from
  follower.partialTail = true
  // Every listener is synchronous: the pass ends before kick returns.
  void follower.kick(true)
  if (torn) return torn
  if (follower.lastError) throw follower.lastError
  return undefined
}

/** The third argument of readCommitLog, checked. */
export function unconfirmedOption(options: unknown): boolean {
  if (options === undefined) return false
  if (options === null || typeof options !== 'object') throw new StoreError('INVALID_ARGUMENT', `readCommitLog options must be an object, got ${describe(options)}`)
  const v = (options as { unconfirmed?: unknown }).unconfirmed
  if (v !== undefined && typeof v !== 'boolean') throw new StoreError('INVALID_ARGUMENT', `unconfirmed must be a boolean, got ${describe(v)}`)
  return v === true
}
