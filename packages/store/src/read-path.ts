/**
 * The read path of MessageStore.get: its argument checks, the walk over a ConsumeQueue's mapped
 * windows, the tag filter (hash first, then the real tag), and the check of each record against
 * the unit that points at it, as RocketMQ's DefaultMessageStore.getMessage.
 */
import type { CommitLog } from './commit-log.js'
import type { ConsumeQueue, ConsumeQueueSet } from './consume-queue.js'
import { StoreError } from './errors.js'
import { CQ_FILLER_SIZE, CQ_UNIT, cqUnitPhysicalOffset, cqUnitSize, cqUnitTagsCode, decodeRecord, javaStringHashCode, verifyRecord, type StoredMessage } from './codec/index.js'
import { checkOffset, checkQueueId, checkTopicText, describe } from './put-input.js'

/** RocketMQ's GetMessageStatus values that a read can answer. */
export type GetMessageStatus =
  | 'FOUND'
  | 'NO_MATCHED_MESSAGE'
  | 'NO_MESSAGE_IN_QUEUE'
  | 'OFFSET_TOO_SMALL'
  | 'OFFSET_OVERFLOW_ONE'
  | 'OFFSET_OVERFLOW_BADLY'
  | 'OFFSET_FOUND_NULL'
  | 'MESSAGE_WAS_REMOVING'

export interface GetMessageRequest {
  /** Consumer group, for the caller's bookkeeping (offsets are committed separately). */
  group?: string
  topic: string
  queueId: number
  /** Queue offset to read from. */
  offset: number
  /** At most this many messages (default 32). */
  maxMessages?: number
  /** Only messages with one of these tags; undefined, [] or ['*'] for all. */
  tags?: readonly string[]
  /** Overrides the store's maxTransferBytes for this read. */
  maxBytes?: number
  /**
   * The raw form: `records` holds each message's stored bytes (views, with their offsets and
   * sizes) instead of decoded `messages`, for writing to a socket as they are (a pull answer is
   * these bytes concatenated). Tags are then filtered by their hash only, as RocketMQ's broker
   * does (its clients check the real tag); the decoded form checks the real tag too.
   */
  raw?: boolean
}

/** One stored message as its CommitLog bytes (the raw form of `get`). */
export interface RawRecord {
  /** The record's bytes, a view of the CommitLog's mapping (read-only; see GetMessageResult). */
  data: Buffer
  physicalOffset: number
  queueOffset: number
  size: number
  /** The ConsumeQueue unit's tags code (the tags' hash; the delivery time for scheduled messages). */
  tagsCode: number
}

export interface GetMessageResult {
  status: GetMessageStatus
  /**
   * Decoded messages. Each `body` is a view into the CommitLog's mapping, not a copy: treat it as
   * read-only. It stays valid for as long as you hold it, even after the store is closed or the
   * file deleted (the mapping lives until the last view is collected), so holding many views
   * pins memory and, for deleted files, disk space: copy what you keep for long.
   */
  messages: StoredMessage[]
  /** The raw form (request.raw): the messages as stored bytes; empty otherwise. */
  records: RawRecord[]
  /** Where the next read of this queue should start. */
  nextOffset: number
  minOffset: number
  maxOffset: number
}

/** What a read needs of the store; `status` is looked at again after each wait for a file. */
export interface ReadSource {
  readonly status: string
  readonly commitLog: CommitLog
  readonly consumeQueues: ConsumeQueueSet
  readonly maxRecordBytes: number
}

const NO_RECORDS = Object.freeze([]) as unknown as RawRecord[]

/** Units a read scans at most beyond maxMessages (RocketMQ: max(16000 bytes, 20 x maxMsgNums)). */
const MIN_UNITS_SCANNED = 800

/** A queue named by a read: a non-empty topic and a queue id (unknown queues read as empty). */
export function checkQueueArgs(topic: unknown, queueId: unknown): void {
  checkTopicText(topic)
  checkQueueId(queueId)
}

/** The tags a read keeps, as their hash codes and themselves; undefined keeps every message. */
interface TagFilter {
  codes: Set<number>
  tags: Set<string>
}

function tagFilter(requested: unknown): TagFilter | undefined {
  if (requested === undefined || requested === null) return undefined
  if (!Array.isArray(requested)) throw new StoreError('INVALID_ARGUMENT', `tags must be an array of strings, got ${describe(requested)}`)
  const bad = requested.findIndex((t) => typeof t !== 'string')
  if (bad >= 0) throw new StoreError('INVALID_ARGUMENT', `tags[${bad}] must be a string, got ${describe(requested[bad])}`)
  const tags = (requested as string[]).map((t) => t.trim()).filter((t) => t.length > 0)
  if (tags.length === 0 || tags.includes('*')) return undefined
  return { tags: new Set(tags), codes: new Set(tags.map(javaStringHashCode)) }
}

/**
 * Reads up to `maxMessages` messages of one queue from `offset`, as RocketMQ's getMessage:
 * filtered by tag (hash first, then the real tag), stopping at `maxTransferBytes` (the first
 * message always goes), never past the end of the ConsumeQueue file holding `offset`. The caller
 * has checked that the store is open.
 */
export async function readQueue(source: ReadSource, request: GetMessageRequest, maxTransferBytes: number): Promise<GetMessageResult> {
  if (request === null || typeof request !== 'object') throw new StoreError('INVALID_ARGUMENT', `get takes a request object, got ${describe(request)}`)
  const { topic, queueId, offset } = request
  checkQueueArgs(topic, queueId)
  checkOffset('offset', offset)
  const maxMessages = request.maxMessages ?? 32
  if (!Number.isInteger(maxMessages) || maxMessages < 1) throw new StoreError('INVALID_ARGUMENT', `maxMessages must be a positive integer, got ${describe(maxMessages)}`)
  const maxBytes = request.maxBytes ?? maxTransferBytes
  if (!Number.isInteger(maxBytes) || maxBytes < 1) throw new StoreError('INVALID_ARGUMENT', `maxBytes must be a positive integer, got ${describe(maxBytes)}`)
  if (request.group !== undefined && typeof request.group !== 'string') throw new StoreError('INVALID_ARGUMENT', `group must be a string, got ${describe(request.group)}`)
  const filter = tagFilter(request.tags)
  const codes = filter?.codes
  const tagSet = filter?.tags
  const cq = source.consumeQueues.find(topic, queueId)
  const minOffset = cq?.minOffset ?? 0
  const maxOffset = cq?.maxOffset ?? 0
  if (request.raw !== undefined && typeof request.raw !== 'boolean') throw new StoreError('INVALID_ARGUMENT', `raw must be a boolean, got ${describe(request.raw)}`)
  const raw = request.raw === true
  // The decoded form answers a shared, frozen empty list: one allocation less per read.
  const records: RawRecord[] = raw ? [] : NO_RECORDS
  const result = (status: GetMessageStatus, nextOffset: number, messages: StoredMessage[] = []): GetMessageResult => ({ status, messages, records, nextOffset, minOffset, maxOffset })
  if (!cq || maxOffset === 0) return result('NO_MESSAGE_IN_QUEUE', 0)
  if (offset < minOffset) return result('OFFSET_TOO_SMALL', minOffset)
  if (offset === maxOffset) return result('OFFSET_OVERFLOW_ONE', offset)
  if (offset > maxOffset) return result('OFFSET_OVERFLOW_BADLY', minOffset === 0 ? 0 : maxOffset)
  let seg: Awaited<ReturnType<ConsumeQueue['segmentFor']>>
  try {
    const s = cq.segmentFor(offset, false)
    seg = s instanceof Promise ? await s : s
  } catch {
    // The file holding `offset` cannot be opened (removed underneath us): skip to the next.
    seg = undefined
  }
  if (!seg || source.status !== 'open') return result('OFFSET_FOUND_NULL', cq.rollNextFile(offset))
  const fileEnd = cq.rollNextFile(offset)
  const stop = Math.min(cq.maxOffset, fileEnd, offset + Math.max(MIN_UNITS_SCANNED, maxMessages))
  const log = source.commitLog
  const logMin = log.minOffset
  const maxRecordBytes = source.maxRecordBytes
  const messages: StoredMessage[] = []
  let status: GetMessageStatus = 'NO_MATCHED_MESSAGE'
  let bytes = 0
  let unit = offset
  // A file is mapped in windows; a read goes on into the next window of the same file.
  scan: for (;;) {
    const dv = seg.dv
    const windowEnd = Math.min(stop, (seg.start + seg.view.length) / CQ_UNIT.bytes)
    for (; unit < windowEnd; unit++) {
      const at = unit * CQ_UNIT.bytes - seg.start
      const size = cqUnitSize(dv, at)
      if (size === CQ_FILLER_SIZE) continue
      const physicalOffset = cqUnitPhysicalOffset(dv, at)
      if (codes !== undefined && !codes.has(cqUnitTagsCode(dv, at))) continue
      const found = raw ? records.length : messages.length
      if (found > 0 && (found >= maxMessages || bytes + size > maxBytes)) break scan
      if (physicalOffset < logMin) {
        if (messages.length + records.length === 0) status = 'MESSAGE_WAS_REMOVING'
        continue
      }
      const where = log.recordAt(physicalOffset)
      if (!where) {
        if (messages.length + records.length === 0) status = 'MESSAGE_WAS_REMOVING'
        continue
      }
      // The record must be what its unit says (a damaged length would decode as another
      // body): structure only, no CRC, as cheap as the decode that follows.
      const checked = verifyRecord(where.buf, where.at, where.limit, physicalOffset, maxRecordBytes, false)
      if (checked !== size) {
        throw new StoreError('CORRUPT_RECORD', `message ${topic}@${queueId}:${unit} at CommitLog offset ${physicalOffset} is damaged (${typeof checked === 'string' ? checked : `its unit says ${size} bytes, the record ${checked}`})`, {
          details: { topic, queueId, queueOffset: unit, physicalOffset },
        })
      }
      if (raw) {
        records.push({ data: where.buf.subarray(where.at, where.at + size), physicalOffset, queueOffset: unit, size, tagsCode: cqUnitTagsCode(dv, at) })
        bytes += size
        status = 'FOUND'
        continue
      }
      const m = decodeRecord(where.buf, where.at, false, where.dv)
      if (tagSet !== undefined && (m.tags === undefined || !tagSet.has(m.tags))) continue
      messages.push(m)
      bytes += size
      status = 'FOUND'
    }
    if (unit >= stop) break
    try {
      const next = cq.segmentFor(unit, false)
      const s = next instanceof Promise ? await next : next
      if (!s || source.status !== 'open') break
      seg = s
    } catch {
      break
    }
  }
  return result(status, unit, messages)
}
