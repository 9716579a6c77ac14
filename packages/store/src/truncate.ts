/**
 * Truncate (MessageStore.truncate): cuts the CommitLog back to a record boundary while the store
 * is open, and the ConsumeQueues, the key index and the queue offsets of later appends with it.
 * A rejoining old master drops what the new master never had (RocketMQ's truncateFiles).
 *
 * Appends are held meanwhile (CommitLog.holdAppends): those made before go first and are
 * flushed and dispatched, those made during it wait and go at the cut. The durable steps come in
 * an order that leaves, after a kill or a power loss at any point and the recovery of the next
 * open, either the log as it was or the log cut (docs/design/recovery.md, "Truncate"):
 *
 * 1. The log ends at the cut in memory (no flush raises the checkpoint past it any more), the
 *    dispatcher stands there, and the checkpoint's offsets are lowered to it and synced: a crash
 *    from here on scans the log from the cut and re-dispatches the queues from it.
 * 2. The commit point: the record header at the cut zeroed and synced (CommitLog.cutBack).
 * 3. What recovery would do after it anyway: the file's tail zeroed, later files deleted, the
 *    last first; units and index entries at or past the cut removed and synced.
 */
import type { IndexService } from '@mqts/index'
import type { StoreCheckpoint } from './checkpoint.js'
import type { CommitLog } from './commit-log.js'
import type { ConsumeQueueSet } from './consume-queue.js'
import type { Dispatcher } from './dispatcher.js'
import { StoreError, ioError } from './errors.js'
import { BLANK_MAGIC_CODE } from './codec/index.js'
import { checkOffset } from './put-input.js'

/** The parts of an open store that a truncate cuts. */
export interface TruncatingStore {
  readonly commitLog: CommitLog
  readonly consumeQueues: ConsumeQueueSet
  readonly dispatcher: Dispatcher
  readonly index: IndexService | undefined
  readonly checkpoint: StoreCheckpoint
  /** Settles a ConsumeQueue flush under way: it would raise logicsFlushedOffset past the cut. */
  consumeQueueFlushSettled(): Promise<void>
  /**
   * After the cut, before appends go on: what else follows the log's end (the confirm offset's
   * bookkeeping, topic deletions recorded past the new end) does so durably.
   */
  afterCut?(offset: number): Promise<void>
  /** A cut at the log's end changes no byte; what is held past the end (a replica's part of a cut record) goes. */
  atEnd?(): void
}

/** Cuts the store back to `offset`; see the module comment. */
export function truncateStore(store: TruncatingStore, offset: number): Promise<void> {
  checkOffset('offset', offset)
  const log = store.commitLog
  return log.holdAppends(async () => {
    if (log.failed) throw log.failed
    checkInLog(log, offset)
    if (offset === log.wroteOffset) return store.atEnd?.()
    // What was appended before is durable and dispatched: the old state, whole, is on disk.
    await log.flush()
    const dispatchStopped = await drainAbove(store.dispatcher, offset)
    checkBoundary(log, offset)
    await store.consumeQueueFlushSettled()
    // Retention would shift the files under the cut's positions: it waits.
    log.truncating = true
    try {
      lowerOffsets(store, offset)
      // Listeners of the committed offset (replication) learn that it went back.
      if (log.committedListeners.size > 0) log.announceCommitted()
      await syncCheckpoint(store.checkpoint)
      await log.cutBack(offset)
      // The record dispatch stopped on is gone: dispatch goes on from the cut.
      if (dispatchStopped) store.dispatcher.clearError()
      await truncateConsumeQueues(store.consumeQueues, offset)
      if (store.index) {
        store.index.recover(offset, true)
        await store.index.flush()
      }
      resetQueueOffsets(store)
      await store.afterCut?.(offset)
    } catch (err) {
      // Memory says the log ends at the cut, the disk may not yet: the next open decides.
      const cause = ioError(`truncating the store at CommitLog offset ${offset}`, err)
      throw log.failWith(cause.message.includes(`${offset}`) ? cause : new StoreError(cause.code, `truncating the store at CommitLog offset ${offset}: ${cause.message}`, { cause, details: { ...cause.details, offset } }))
    } finally {
      log.truncating = false
    }
  })
}

/**
 * Dispatches everything appended before. Dispatch stopped on an error (a record it refuses, a
 * full disk) at or past `offset` does not stop the cut, which removes that record: returns true
 * then. Stopped below `offset`, the error is thrown (nothing changed).
 */
async function drainAbove(dispatcher: Dispatcher, offset: number): Promise<boolean> {
  try {
    await dispatcher.drain()
    return false
  } catch (err) {
    if (dispatcher.lastError !== undefined && offset <= dispatcher.reputOffset) return true
    throw err
  }
}

/** The log must hold `offset`: from its first byte to its end, both included. */
function checkInLog(log: CommitLog, offset: number): void {
  const min = log.minOffset
  const end = log.wroteOffset
  if (offset < min || offset > end) {
    throw new StoreError('INVALID_ARGUMENT', `cannot truncate at CommitLog offset ${offset}: the log holds ${min} to ${end}`, { details: { offset, minOffset: min, maxOffset: end } })
  }
}

/**
 * `offset` must start a record (or the blank that ends a file) or a file: the records of its file
 * are walked from the file's start by their sizes, so a position inside a record's body that
 * happens to look like one is refused too.
 */
function checkBoundary(log: CommitLog, offset: number): void {
  const file = log.queue.findFile(offset)!
  const pos = offset - file.fileFromOffset
  const view = file.view
  let at = 0
  let last = 0
  while (at < pos && at + 8 <= file.committedPosition) {
    const size = view.readInt32BE(at)
    if (view.readInt32BE(at + 4) === BLANK_MAGIC_CODE || size <= 0) break
    last = at
    at += size
  }
  if (at !== pos) {
    throw new StoreError('INVALID_ARGUMENT', `cannot truncate at CommitLog offset ${offset}: no record starts there (it is inside the record at ${file.fileFromOffset + last})`, {
      details: { offset, recordOffset: file.fileFromOffset + last },
    })
  }
}

/**
 * Step 1 in memory: the log ends at `offset`, the dispatcher stands there, and the checkpoint's
 * offsets are no higher (the caller syncs it). Synchronous, so no flush runs in between.
 */
function lowerOffsets(store: TruncatingStore, offset: number): void {
  store.commitLog.lowerTo(offset)
  store.dispatcher.reputOffset = Math.min(store.dispatcher.reputOffset, offset)
  // A confirm offset (when the store has one) is no higher than the log's new end either.
  if (Number.isFinite(store.dispatcher.confirmLimit)) store.dispatcher.confirmLimit = Math.min(store.dispatcher.confirmLimit, offset)
  // Records written past the cut are new: they must fit their queues, never replace a unit as a
  // trusted (durable at open) record may.
  store.consumeQueues.trustedBelow = Math.min(store.consumeQueues.trustedBelow, offset)
  const cp = store.checkpoint.values
  cp.physicalFlushedOffset = Math.min(cp.physicalFlushedOffset, offset)
  cp.logicsFlushedOffset = Math.min(cp.logicsFlushedOffset, offset)
  cp.confirmPhyOffset = Math.min(cp.confirmPhyOffset, offset)
}

/** Step 1 made durable: a failure to is FLUSH_FAILED, as the store's other syncs (DISK_FULL for ENOSPC). */
async function syncCheckpoint(checkpoint: StoreCheckpoint): Promise<void> {
  try {
    await checkpoint.flush()
  } catch (err) {
    const e = ioError('writing the checkpoint', err)
    if (e.code === 'DISK_FULL') throw e
    throw new StoreError('FLUSH_FAILED', `writing or syncing the checkpoint failed: ${e.message}`, { cause: err })
  }
}

/** Units pointing at or past `offset` go (files wholly past the new end too), then all is synced. */
async function truncateConsumeQueues(cqs: ConsumeQueueSet, offset: number): Promise<void> {
  for (const cq of cqs.all()) {
    // maxPhysicalEnd 0: not known (the last unit is a filler), look.
    if (cq.maxPhysicalEnd <= offset && !(cq.maxPhysicalEnd === 0 && cq.maxOffset > cq.minOffset)) continue
    await cq.truncatePhysical(offset)
    cqs.syncDirsOf(cq)
  }
  await cqs.flush()
}

/** Appends continue each queue densely from its ConsumeQueue's new end. */
function resetQueueOffsets(store: TruncatingStore): void {
  for (const st of store.commitLog.topics.values()) {
    for (let queueId = 0; queueId < st.queueOffsets.length; queueId++) {
      if (st.queueOffsets[queueId] === undefined) continue
      st.queueOffsets[queueId] = store.consumeQueues.find(st.topic, queueId)?.maxOffset ?? 0
    }
  }
}
