/**
 * The store's side of open after the CommitLog recovered (CommitLog.recover): the ConsumeQueues
 * and the index made to agree with the log, a torn record met on the way cut, the check that a
 * new store's index fits its disk, and the abort marker. MessageStore.open calls them in order:
 * lock, checkpoint, CommitLog recovery, checkIndexFits (new store), index recovery,
 * recoverConsumeQueues, consumer offsets, markOpen. docs/design/recovery.md.
 */
import { INDEX_DEFAULTS, indexFileSize, type IndexService } from '@mqts/index'
import type { StoreCheckpoint } from './checkpoint.js'
import type { CommitLog, RecoveryReport } from './commit-log.js'
import { CQ_RECOVERY_FLUSH_PARALLEL, isQueueMismatch, type ConsumeQueue, type ConsumeQueueSet } from './consume-queue.js'
import type { Dispatcher } from './dispatcher.js'
import { StoreError, ioError } from './errors.js'
import type { FileIO } from './file-io.js'
import { CQ_FILLER_SIZE, checkRecord, takesQueueOffset } from './codec/index.js'

/** An index entry's bytes (RocketMQ's IndexFile: hash, offset, time diff, previous). */
const INDEX_ENTRY_BYTES = 20
/** Entries the index reserves with a new file: 1 MiB of them (packages/index, RESERVE_AHEAD_BYTES). */
const INDEX_FIRST_ENTRIES_RESERVED_BYTES = 1024 * 1024
/** The index file being written and the spare made ahead of it. */
const INDEX_FILES_RESERVED_AT_ONCE = 2

/** The parts of an opening store that queue recovery reads and repairs. */
export interface RecoveringStore {
  readonly commitLog: CommitLog
  readonly consumeQueues: ConsumeQueueSet
  readonly dispatcher: Dispatcher
  readonly index: IndexService | undefined
  readonly checkpoint: StoreCheckpoint
  /** What CommitLog.recover found; a cut torn record is added to it. */
  readonly recovery: RecoveryReport
  readonly maxRecordBytes: number
  /** The re-dispatch starts here at the latest (a topic deletion a crash interrupted, topics.ts). */
  readonly redispatchFrom?: number
}

/**
 * Makes the ConsumeQueues agree with the recovered CommitLog: units past its end go, and every
 * record from the point the checkpoint says all queues were durable (or from the start, when
 * the queues are missing or damaged) is re-dispatched. Queue offsets for new appends then
 * continue from the queues. docs/design/consume-queue.md.
 *
 * Answers whether queue offsets are behind: a full disk stopped the re-dispatch, and appends
 * must wait until it is done (MessageStore.dispatchCaughtUp).
 */
export async function recoverConsumeQueues(store: RecoveringStore, clean: boolean): Promise<boolean> {
  const { consumeQueues: cqs, commitLog: log, dispatcher, index, checkpoint, recovery } = store
  const end = log.committedOffset
  const min = log.minOffset
  const intact = await cqs.load(clean, end, min)
  const any = !cqs.all().next().done
  // The confirm offset (confirm-offset.ts; +Infinity without one): units a killed process wrote
  // past the value the checkpoint kept go, and the re-dispatch stops there too.
  const confirm = dispatcher.confirmLimit
  if (confirm < end) for (const cq of cqs.all()) await dropUnitsPast(cq, confirm)
  let from = checkpoint.values.logicsFlushedOffset
  if (!intact || (!any && end > min) || from < min || from > end || from > confirm) from = min
  // The index may be further behind (deleted, or rebuilt after damage).
  if (index) from = Math.min(from, Math.max(min, index.indexedUpTo))
  if (store.redispatchFrom !== undefined) from = Math.min(from, Math.max(min, store.redispatchFrom))
  dispatcher.reputOffset = Math.min(from, end)
  // Which units the re-dispatch puts (again): those above are checked after it (dropUnitsOfOtherRecords).
  for (const cq of cqs.all()) cq.putFloor = cq.minOffset
  // Records the checkpoint vouched for may replace stale units; a later one must fit its queue.
  cqs.trustedBelow = recovery.durableOffset
  // After a crash the killed process may have left units unsynced: the re-dispatch syncs them.
  cqs.unsyncedUnits = !clean
  // Records below the durable offset were not read by the recovery scan: checked as they go.
  dispatcher.verify = { upTo: recovery.durableOffset, maxRecordBytes: store.maxRecordBytes, crc: log.options.checkCrcOnRecover }
  let cut = false
  let queueOffsetsBehind = false
  for (;;) {
    try {
      await dispatcher.drain()
    } catch (err) {
      if (err instanceof StoreError && err.code === 'CORRUPT_RECORD' && err.details.durableOffset !== undefined && log.options.onCorruption === 'truncate') {
        await cutTornRecord(store, err)
        cut = true
        continue
      }
      if (isQueueMismatch(err) && err.details.gap === true && dispatcher.reputOffset > min && from > min) {
        // A queue missing units may have lost ConsumeQueue files rather than met a torn
        // record: re-dispatch everything from the start once; a gap found then is the log's.
        from = min
        dispatcher.reputOffset = min
        dispatcher.clearError()
        continue
      }
      if (isQueueMismatch(err)) {
        await cutTornRecord(store, err)
        cut = true
        continue
      }
      // A full disk must not keep a store from opening: it opens readable, refuses appends until
      // the re-dispatch (retried every flushConsumeQueueIntervalMs) is done and queue offsets are
      // known again, and the checkpoint below records only what was dispatched.
      if (!(err instanceof StoreError && err.code === 'DISK_FULL')) throw err
      queueOffsetsBehind = true
    }
    break
  }
  cqs.unsyncedUnits = false
  dispatcher.verify = { upTo: 0, maxRecordBytes: 0, crc: false }
  if (!clean && (await dropUnitsOfOtherRecords(store, recovery.durableOffset))) cut = true
  syncQueueOffsets(log, cqs)
  // A clean open with nothing to re-dispatch has nothing to sync either.
  if (clean && intact && !cut && from === end && checkpoint.values.logicsFlushedOffset === end && !queueOffsetsBehind) return queueOffsetsBehind
  // After a crash the CommitLog's recovered bytes were synced in the background while the
  // re-dispatch ran: the queues and the index vouch for records only once those are durable.
  await checkpoint.writable()
  try {
    await cqs.flush(CQ_RECOVERY_FLUSH_PARALLEL)
    await index?.flush()
  } catch (err) {
    // On a full disk the index checkpoint cannot be replaced: the store checkpoint keeps its
    // older logicsFlushedOffset, so the next open re-dispatches from there.
    if (ioError('flushing the recovered ConsumeQueues and index', err).code !== 'DISK_FULL') throw err
    return queueOffsetsBehind
  }
  checkpoint.values.logicsFlushedOffset = dispatcher.reputOffset
  await checkpoint.flush()
  return queueOffsetsBehind
}

/**
 * The re-dispatch met a record past the durable offset that does not fit its queue (its queue
 * offset is neither the queue's next nor one whose unit, confirmed by its own record, already
 * points at it): the recovery scan accepted it, but a power loss tore a header, which the body
 * CRC does not cover. A torn record was never synced, nor was anything after it (syncs follow
 * the log's order), so the log ends there, as recovery's own cut would end it: the CommitLog is
 * cut (tail zeroed, later files deleted, checkpoint synced), then units and index entries at or
 * past the cut go, and the re-dispatch stands at the new end.
 */
async function cutTornRecord(store: RecoveringStore, err: StoreError): Promise<void> {
  const at = err.details.physicalOffset as number
  await store.commitLog.truncateRecovered(at, err.message, store.recovery)
  for (const cq of store.consumeQueues.all()) {
    // Units past the cut: dispatched before the crash (maxPhysicalEnd 0: not known, look).
    if (cq.maxPhysicalEnd > at || (cq.maxPhysicalEnd === 0 && cq.maxOffset > cq.minOffset)) await cq.truncatePhysical(at)
  }
  store.index?.recover(at, true)
  store.dispatcher.reputOffset = at
  store.dispatcher.clearError()
}

/**
 * Drops the units at the end of a queue that do not point at a record ending at or below
 * `confirm`: those past it, and holes (zero units a power loss left among units written after
 * the queue's last sync; only the last file of a queue is scanned at open). Holes below the last
 * unit kept are refilled by the re-dispatch, as after any crash.
 */
async function dropUnitsPast(cq: ConsumeQueue, confirm: number): Promise<void> {
  let unit = cq.maxOffset
  while (unit > cq.minOffset) {
    const u = await cq.unitAt(unit - 1)
    if (u && u.size > 0 && (u.size === CQ_FILLER_SIZE || u.physicalOffset + u.size <= confirm)) break
    unit--
  }
  if (unit < cq.maxOffset) await cq.truncateTo(unit)
}

/**
 * After a crash: units past the durable offset that the killed process wrote and the re-dispatch
 * did not rewrite must still point at a record that claims them. A power loss that tore a
 * record's queue id moves that record to another queue (the re-dispatch puts it there when it
 * fits), but its old queue keeps the unit the killed process wrote: `get` there would serve
 * another queue's message. Such a unit, and every unit after it in its queue, goes. Only units
 * past the durable offset that the re-dispatch did not put are read: a few at most.
 */
async function dropUnitsOfOtherRecords(store: RecoveringStore, durableOffset: number): Promise<boolean> {
  let dropped = false
  for (const cq of store.consumeQueues.all()) {
    let firstBad = -1
    // Units the re-dispatch put are its records' own; only those above were left as found.
    for (let unit = cq.maxOffset - 1; unit >= Math.max(cq.minOffset, cq.putFloor); unit--) {
      const u = await cq.unitAt(unit)
      if (!u || u.size === CQ_FILLER_SIZE || u.physicalOffset < durableOffset) break
      if (!recordClaims(store.commitLog, store.maxRecordBytes, u.physicalOffset, cq.topic, cq.queueId, unit)) firstBad = unit
    }
    if (firstBad >= 0) {
      await cq.truncateTo(firstBad)
      dropped = true
    }
  }
  return dropped
}

/**
 * Whether a sound record at `physicalOffset` claims queue offset `unit` of (`topic`, `queueId`):
 * a ConsumeQueue unit pointing there is then the record's own (ConsumeQueue.put).
 */
export function recordClaims(log: CommitLog, maxRecordBytes: number, physicalOffset: number, topic: string, queueId: number, unit: number): boolean {
  const r = log.recordAt(physicalOffset)
  if (!r) return false
  const c = checkRecord(r.buf, r.at, r.limit, physicalOffset, maxRecordBytes, true)
  return c.kind === 'record' && c.topic === topic && c.queueId === queueId && c.queueOffset === unit && takesQueueOffset(c.sysFlag)
}

/** New appends continue each queue from its ConsumeQueue (recovery may not have read its records). */
export function syncQueueOffsets(log: CommitLog, cqs: ConsumeQueueSet): void {
  for (const cq of cqs.all()) {
    const st = log.topics.get(cq.topic) ?? log.topicState(cq.topic, Buffer.from(cq.topic, 'utf8'))
    if ((st.queueOffsets[cq.queueId] ?? 0) < cq.maxOffset) st.queueOffsets[cq.queueId] = cq.maxOffset
  }
}

/**
 * Before the index makes its first file: the header and hash slot table of a file are reserved
 * whole when it is made (20 MB with the default 5,000,000 slots), with its first entries, and a
 * spare file like it is made ahead. When two such reservations do not fit in the space the disk
 * has free, puts would soon be stored but not indexed: refuse to open and say which options
 * size the index instead. Only checked for a new store (no CommitLog file), so a store that
 * opened once reopens however full its disk has become.
 */
export async function checkIndexFits(io: FileIO, indexDir: string, options: { maxHashSlotNum?: number; maxIndexNum?: number }): Promise<void> {
  const slots = options.maxHashSlotNum ?? INDEX_DEFAULTS.maxHashSlotNum
  const entries = options.maxIndexNum ?? INDEX_DEFAULTS.maxIndexNum
  const perFile = indexFileSize(slots, 0) + Math.min(entries * INDEX_ENTRY_BYTES, INDEX_FIRST_ENTRIES_RESERVED_BYTES)
  const needed = INDEX_FILES_RESERVED_AT_ONCE * perFile
  let free: number
  try {
    free = (await io.diskUsage(indexDir)).freeBytes
  } catch {
    return
  }
  if (needed <= free) return
  throw new StoreError(
    'DISK_FULL',
    `the key index needs ${needed} bytes (${INDEX_FILES_RESERVED_AT_ONCE} files of ${slots} hash slots and their first entries) and the disk holding ${indexDir} has ${free} bytes free: ` +
      `lower maxHashSlotNum (and maxIndexNum), or open with messageIndexEnable: false`,
    { details: { neededBytes: needed, freeBytes: free, maxHashSlotNum: slots, maxIndexNum: entries } },
  )
}

/**
 * Writes the abort marker (removed by a clean close). One left by an unclean close is kept as
 * it is. On a full disk the marker is made empty: an empty file takes no data block, and only
 * its existence matters (the pid in it is for people).
 */
export async function markOpen(io: FileIO, abortFile: string, cleanShutdown: boolean): Promise<void> {
  if (!cleanShutdown) return
  try {
    await io.writeFileAtomic(abortFile, Buffer.from(String(process.pid)))
  } catch (err) {
    if (ioError('writing the abort marker', err).code !== 'DISK_FULL') throw err
    await io.writeFileAtomic(abortFile, Buffer.alloc(0))
  }
}
