/**
 * Checks of MessageStore.open's options before anything is opened: every failure is an
 * INVALID_ARGUMENT StoreError naming the option and what was received. A value the store would
 * later trip over (a staging limit of 0 that stalls every sync put, a clock that is not a
 * function) is refused here instead.
 */
import { CQ_UNIT, parseDelayLevels } from './codec/index.js'
import { StoreError } from './errors.js'
import { DEFAULT_MAX_QUEUES_PER_TOPIC, describe } from './put-input.js'

const INT_MAX = 2 ** 31 - 1

/**
 * Back-pressure: appends waiting on the disk (queued behind a roll, a prefault or a full staging
 * area, and with sync flush those not yet durable) at most; past either bound a put fails at once
 * with BUSY. 10,000 is RocketMQ's sendThreadPoolQueueCapacity (sends a broker holds before it
 * answers "busy"); the bytes bound is twice the default sync-flush staging area.
 */
export const DEFAULT_MAX_PENDING_APPENDS = 10_000
export const DEFAULT_MAX_PENDING_APPEND_BYTES = 128 * 1024 * 1024

/** Options that are counts or sizes: [name, smallest allowed value, largest, how the largest reads]. */
const INTEGER_OPTIONS: ReadonlyArray<readonly [string, number, number, string]> = [
  // Sizes are C ints for the mmap binding.
  ['commitLogFileSize', 4096, INT_MAX, String(INT_MAX)],
  ['maxMessageSize', 1, INT_MAX, '2^31-1'],
  // Queue ids are Java ints: 2^31 queues at most.
  ['maxQueuesPerTopic', 1, INT_MAX + 1, '2^31'],
  ['flushIntervalMs', 1, INT_MAX, '2^31-1'],
  ['flushLeastPages', 0, INT_MAX, '2^31-1'],
  ['flushThoroughIntervalMs', 1, INT_MAX, '2^31-1'],
  ['syncFlushTimeoutMs', 1, INT_MAX, '2^31-1'],
  ['stagingLimitBytes', 1, INT_MAX, '2^31-1'],
  ['syncFlushConcurrency', 1, INT_MAX, '2^31-1'],
  ['maxPendingAppends', 1, INT_MAX, '2^31-1'],
  ['maxPendingAppendBytes', 1, Number.MAX_SAFE_INTEGER, '2^53-1'],
  // A ConsumeQueue file (20-byte units) is mapped whole: a C int of bytes.
  ['consumeQueueUnitsPerFile', 2, Math.floor(INT_MAX / CQ_UNIT.bytes), String(Math.floor(INT_MAX / CQ_UNIT.bytes))],
  ['maxOpenConsumeQueueFiles', 1, INT_MAX, '2^31-1'],
  ['flushConsumeQueueIntervalMs', 1, INT_MAX, '2^31-1'],
  ['persistConsumerOffsetIntervalMs', 1, INT_MAX, '2^31-1'],
  ['maxTransferBytes', 1, INT_MAX, '2^31-1'],
  ['maxHashSlotNum', 1, INT_MAX, '2^31-1'],
  ['maxIndexNum', 2, INT_MAX, '2^31-1'],
]

const BOOLEAN_OPTIONS = ['checkCrcOnRecover', 'verifyOnOpen', 'messageIndexEnable', 'confirmOffset'] as const

const RETENTION_NUMBERS: ReadonlyArray<readonly [string, number, number]> = [
  ['fileReservedTimeHours', 0, Number.MAX_SAFE_INTEGER],
  ['diskMaxUsedSpaceRatio', 0, 100],
  ['diskSpaceCleanForciblyRatio', 0, 100],
  ['cleanResourceIntervalMs', 1, 2 ** 31 - 1],
  ['deleteFileBatchMax', 1, 2 ** 31 - 1],
]

function invalid(message: string, received: unknown): never {
  throw new StoreError('INVALID_ARGUMENT', message, { details: { received } })
}

/** Throws INVALID_ARGUMENT for the first option that is present and wrong. */
export function checkStoreOptions(options: Record<string, unknown>): void {
  if (options.flush !== undefined && options.flush !== 'sync' && options.flush !== 'async') invalid(`flush must be 'sync' or 'async', got ${describe(options.flush)}`, options.flush)
  for (const [name, min, max, maxText] of INTEGER_OPTIONS) {
    const v = options[name]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) invalid(`${name} must be an integer from ${min} to ${maxText}, got ${describe(v)}`, v)
  }
  for (const name of BOOLEAN_OPTIONS) {
    const v = options[name]
    if (v !== undefined && typeof v !== 'boolean') invalid(`${name} must be true or false, got ${describe(v)}`, v)
  }
  if (options.role !== undefined && options.role !== 'master' && options.role !== 'replica') invalid(`role must be 'master' or 'replica', got ${describe(options.role)}`, options.role)
  if (options.onCorruption !== undefined && options.onCorruption !== 'fail' && options.onCorruption !== 'truncate') {
    invalid(`onCorruption must be 'fail' or 'truncate', got ${describe(options.onCorruption)}`, options.onCorruption)
  }
  if (options.now !== undefined) {
    if (typeof options.now !== 'function') invalid(`now must be a function returning ms since the epoch, got ${describe(options.now)}`, options.now)
    const t: unknown = (options.now as () => unknown)()
    if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0) invalid(`now() must return ms since the epoch (a non-negative integer), got ${describe(t)}`, t)
  }
  checkMessageDelayLevel(options)
  if (options.storeHost !== undefined && typeof options.storeHost !== 'string') invalid(`storeHost must be "a.b.c.d:port" or "[ipv6]:port", got ${describe(options.storeHost)}`, options.storeHost)
  const retention = options.retention
  if (retention === undefined) return
  if (retention === null || typeof retention !== 'object') invalid(`retention must be an object, got ${describe(retention)}`, retention)
  const r = retention as Record<string, unknown>
  for (const [name, min, max] of RETENTION_NUMBERS) {
    const v = r[name]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) invalid(`retention.${name} must be a number from ${min} to ${max}, got ${describe(v)}`, v)
  }
  if (r.deleteWhen !== undefined && (typeof r.deleteWhen !== 'string' || !/^\d{1,2}(;\d{1,2})*$/.test(r.deleteWhen))) {
    invalid(`retention.deleteWhen must be hours of the day separated by ';' ("04", "01;13"), got ${describe(r.deleteWhen)}`, r.deleteWhen)
  }
}

/**
 * messageDelayLevel: RocketMQ's string ("1s 5s 10s ..."; units s m h d). Level n is queue n - 1 of
 * SCHEDULE_TOPIC_XXXX, so there may be no more levels than a topic may have queues.
 */
function checkMessageDelayLevel(options: Record<string, unknown>): void {
  const v = options.messageDelayLevel
  if (v === undefined) return
  if (typeof v !== 'string') invalid(`messageDelayLevel must be a string of levels such as "1s 5s 10s 30s 1m", got ${describe(v)}`, v)
  const levels = parseDelayLevels(v)
  if (typeof levels === 'string') invalid(`messageDelayLevel ${JSON.stringify(v)} does not parse: ${levels}`, v)
  const maxQueues = typeof options.maxQueuesPerTopic === 'number' ? options.maxQueuesPerTopic : DEFAULT_MAX_QUEUES_PER_TOPIC
  if (levels.length > maxQueues) invalid(`messageDelayLevel has ${levels.length} levels, more than maxQueuesPerTopic (${maxQueues}): level n is queue n - 1 of the schedule topic`, v)
}
