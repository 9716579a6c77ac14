/**
 * Retention (RocketMQ's CleanCommitLogService and CleanConsumeQueueService). A pass:
 *
 * 1. Runs when the clock's local hour is one of `deleteWhen` ("04", or "01;13"), when the disk
 *    holding the store is fuller than `diskMaxUsedSpaceRatio`, or when asked (`manual`).
 * 2. Deletes CommitLog files oldest first while their last modification is older than
 *    `fileReservedTimeHours`, at most `deleteFileBatchMax` per pass; stops at the first one that
 *    is not. Over `diskSpaceCleanForciblyRatio` age does not matter: files go until usage is back
 *    under it. The file being written, and any file with bytes not yet flushed or dispatched, is
 *    never deleted.
 * 3. Deletes ConsumeQueue files that point only below the CommitLog's new minimum offset and
 *    moves each queue's minOffset; then the extra listeners (the index) get the same chance.
 *
 * The clock is injectable, so tests drive retention without sleeping.
 */
import type { CommitLog } from './commit-log.js'
import type { ConsumeQueueSet } from './consume-queue.js'
import type { Dispatcher } from './dispatcher.js'
import { StoreError } from './errors.js'
import type { DiskUsage, FileIO } from './file-io.js'

export interface RetentionOptions {
  /** Age after which a CommitLog file may be deleted (RocketMQ's fileReservedTime, 72 h). */
  fileReservedTimeHours: number
  /** Hours of the day (local time) when expired files are deleted, ';'-separated: "04". */
  deleteWhen: string
  /** Over this share of the disk used (percent), expired files are deleted at any hour (75). */
  diskMaxUsedSpaceRatio: number
  /** Over this share (percent), files are deleted whatever their age (85). */
  diskSpaceCleanForciblyRatio: number
  /** How often a pass runs (10 s). */
  cleanResourceIntervalMs: number
  /** CommitLog files deleted per pass at most (10). */
  deleteFileBatchMax: number
}

export const DEFAULT_RETENTION: RetentionOptions = {
  fileReservedTimeHours: 72,
  deleteWhen: '04',
  diskMaxUsedSpaceRatio: 75,
  diskSpaceCleanForciblyRatio: 85,
  cleanResourceIntervalMs: 10_000,
  deleteFileBatchMax: 10,
}

export interface RetentionResult {
  /** Why the pass deleted, or did not: 'time', 'space', 'forced', 'manual', or 'idle'. */
  trigger: 'time' | 'space' | 'forced' | 'manual' | 'idle'
  diskUsedRatio: number
  commitLogFilesDeleted: number
  consumeQueueFilesDeleted: number
  /** The CommitLog's minimum offset after the pass. */
  minPhysicalOffset: number
}

export interface RetentionContext {
  commitLog: CommitLog
  consumeQueues: ConsumeQueueSet
  dispatcher: Dispatcher
  io: FileIO
  dir: string
  now: () => number
  /** Further cleanups after the CommitLog's minimum moved (the index). */
  afterDelete: Array<(minPhysicalOffset: number) => Promise<unknown>>
}

/**
 * Percent of a file system in use, as `df` shows it: used / (used + available). Blocks reserved
 * for root (or held back by a quota) count neither as used nor as available, so a disk whose
 * reserve is large is not reported fuller than `df` says (total - available over total would).
 */
export function diskUsedRatio(usage: DiskUsage): number {
  const { usedBytes, freeBytes } = usage
  return usedBytes + freeBytes > 0 ? (usedBytes / (usedBytes + freeBytes)) * 100 : 0
}

export class RetentionService {
  readonly options: RetentionOptions
  private readonly hours: Set<number>
  private running: Promise<RetentionResult> | undefined

  constructor(
    private readonly ctx: RetentionContext,
    options: Partial<RetentionOptions>,
  ) {
    this.options = { ...DEFAULT_RETENTION, ...options }
    const o = this.options
    if (!(o.fileReservedTimeHours >= 0)) throw new StoreError('INVALID_ARGUMENT', `fileReservedTimeHours must be >= 0, got ${o.fileReservedTimeHours}`)
    for (const name of ['diskMaxUsedSpaceRatio', 'diskSpaceCleanForciblyRatio'] as const) {
      if (!(o[name] > 0 && o[name] <= 100)) throw new StoreError('INVALID_ARGUMENT', `${name} must be a percentage in (0, 100], got ${o[name]}`)
    }
    if (!(o.cleanResourceIntervalMs > 0)) throw new StoreError('INVALID_ARGUMENT', `cleanResourceIntervalMs must be > 0`)
    if (!(Number.isInteger(o.deleteFileBatchMax) && o.deleteFileBatchMax > 0)) throw new StoreError('INVALID_ARGUMENT', `deleteFileBatchMax must be a positive integer`)
    this.hours = new Set(
      String(o.deleteWhen)
        .split(';')
        .map((h) => h.trim())
        .filter((h) => h.length > 0)
        .map((h) => {
          const n = Number(h)
          if (!Number.isInteger(n) || n < 0 || n > 23) throw new StoreError('INVALID_ARGUMENT', `deleteWhen must be ';'-separated hours 00-23, got ${JSON.stringify(o.deleteWhen)}`)
          return n
        }),
    )
  }

  addAfterDelete(fn: (minPhysicalOffset: number) => Promise<unknown>): void {
    this.ctx.afterDelete.push(fn)
  }

  /** One pass; concurrent calls share it. */
  run(manual = false): Promise<RetentionResult> {
    if (this.running) return this.running
    this.running = this.pass(manual).finally(() => {
      this.running = undefined
    })
    return this.running
  }

  /** Percent of the disk in use, as `df` computes it (see diskUsedRatio). */
  private async usedRatio(): Promise<number> {
    try {
      return diskUsedRatio(await this.ctx.io.diskUsage(this.ctx.dir))
    } catch {
      return 0
    }
  }

  private async pass(manual: boolean): Promise<RetentionResult> {
    const { commitLog, consumeQueues, dispatcher, io, now } = this.ctx
    const o = this.options
    const t = now()
    let ratio = await this.usedRatio()
    const forced = ratio > o.diskSpaceCleanForciblyRatio
    const trigger: RetentionResult['trigger'] = forced ? 'forced' : ratio > o.diskMaxUsedSpaceRatio ? 'space' : manual ? 'manual' : this.hours.has(new Date(t).getHours()) ? 'time' : 'idle'
    const result: RetentionResult = { trigger, diskUsedRatio: ratio, commitLogFilesDeleted: 0, consumeQueueFilesDeleted: 0, minPhysicalOffset: commitLog.minOffset }
    if (trigger === 'idle') return result
    const reservedMs = o.fileReservedTimeHours * 3600 * 1000
    while (result.commitLogFilesDeleted < o.deleteFileBatchMax) {
      const first = commitLog.queue.first
      if (!first || commitLog.queue.files.length < 2) break
      const modified = (await io.modifiedMs(first.path)) ?? 0
      const expired = modified + reservedMs <= t
      const force = ratio > o.diskSpaceCleanForciblyRatio
      if (!expired && !force) break
      if (!(await commitLog.deleteFirstFile(dispatcher.reputOffset))) break
      result.commitLogFilesDeleted++
      if (force && !expired) ratio = await this.usedRatio()
    }
    result.minPhysicalOffset = commitLog.minOffset
    if (result.commitLogFilesDeleted > 0 || manual) {
      for (const cq of consumeQueues.all()) result.consumeQueueFilesDeleted += await cq.deleteBelow(commitLog.minOffset)
      for (const after of this.ctx.afterDelete) await after(commitLog.minOffset)
    }
    result.diskUsedRatio = await this.usedRatio()
    return result
  }
}
