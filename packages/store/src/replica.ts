/**
 * The replica side of replication (RocketMQ's HA slave) and the store's role.
 *
 * `appendReplicated(offset, bytes)` writes what a master's `readCommitLog` returned, at the
 * store's end, as it is: a replica never re-encodes, so its files are byte for byte the master's.
 * A chunk may cut a record anywhere. Only whole records, and the master's end-of-file BLANK,
 * reach the CommitLog; the bytes of a record cut by a chunk's end are held in memory (`pending`)
 * until the rest arrives. So a replica's log always ends at a record boundary, as a master's
 * does: the dispatcher, the flushers, the checkpoint and recovery treat it exactly as a master's
 * log, and a replica killed or promoted while it holds part of a record has nothing to cut from
 * its files (the master died mid-record: those bytes were never written).
 *
 * What arrives is checked before anything of it is written: each whole record structurally and
 * by body CRC at its own offset, the header of a cut record as far as it arrived, and the file
 * geometry (a BLANK must end at this store's file end, a record must leave room for one): a
 * master with another commitLogFileSize is FILE_SIZE_MISMATCH. Damage is CORRUPT_RECORD; either
 * way nothing of the chunk is written and the HA link resumes from the store's end.
 *
 * The queue rules (a queue grows densely, a unit its own record confirms stays) are the
 * ConsumeQueue's, met at dispatch, after the write. A record they refuse (a header damaged in
 * transit: the body CRC does not cover it; another master's stream) is cut back with everything
 * after it, and the chunks behind it are refused (#cutRefused): the replica's end never holds a
 * record it cannot serve.
 *
 * An empty replica takes its first chunk at any offset where a file starts: a master whose first
 * files retention deleted starts it there, and the log starts over at that offset (#seedable).
 *
 * Records are dispatched from the log (as recovery does), so ConsumeQueue units and index keys
 * are the master's; a dispatch listener keeps the CommitLog's next queue offsets following the
 * replicated records, so a promoted replica's puts continue each queue densely.
 */
import type { CommitLog } from './commit-log.js'
import { bodyCrcCheck, type BodyCrcCheck } from './crc.js'
import type { DispatchListener, Dispatcher } from './dispatcher.js'
import { StoreError } from './errors.js'
import {
  BLANK_MAGIC_CODE,
  END_FILE_MIN_BLANK_LENGTH,
  MESSAGE_MAGIC_CODE_V1,
  MESSAGE_MAGIC_CODE_V2,
  RECORD,
  RECORD_FIXED_BYTES_V1,
  layoutOf,
  readStoreTimestamp,
  takesQueueOffset,
  verifyRecord,
} from './codec/index.js'
import { checkOffset, describe } from './put-input.js'

export type StoreRole = 'master' | 'replica'

/**
 * Whole units of a chunk written with one copy: records back to back (they are in one file: a
 * record leaves room for the end-of-file BLANK), or a BLANK and its padding up to the file's end.
 */
interface Run {
  offset: number
  from: number
  to: number
  blank: boolean
  /** The newest store timestamp of the run's records (0 for a BLANK). */
  storeTimestamp: number
}

/** What a chunk (with the bytes held before it) holds: runs of whole units, then the start of a cut one. */
interface ChunkPlan {
  runs: Run[]
  /** Where the bytes of a unit the chunk cuts start (the data's length when none). */
  tailFrom: number
}

/**
 * With flush 'sync' a run of records is cut at this size, so that its copy fits the group
 * commit's staging chunk (STAGE_CHUNK_BYTES) as a put's would. With flush 'async' a run is one
 * pwrite: the records of a chunk in one file make one run.
 */
const SYNC_RUN_MAX_BYTES = 256 * 1024
/** Records whose body CRCs one native call checks (BodyCrcCheck). */
const CRC_RUN_RECORDS = 1024

const EMPTY = Buffer.alloc(0)

function corrupt(offset: number, reason: string): StoreError {
  return new StoreError('CORRUPT_RECORD', `replicated bytes at CommitLog offset ${offset} are not a record (${reason}); nothing of the chunk was written`, {
    details: { physicalOffset: offset, reason },
  })
}

function fileSizeMismatch(offset: number, what: string, fileSize: number): StoreError {
  return new StoreError(
    'FILE_SIZE_MISMATCH',
    `replicated bytes at CommitLog offset ${offset}: ${what}, so the master's commitLogFileSize differs from this store's ${fileSize}; nothing of the chunk was written`,
    { details: { physicalOffset: offset, fileSize } },
  )
}

/**
 * The body CRCs of a chunk's records, checked many records per native call (the recovery
 * scan's BodyCrcCheck): `add` each verified record, `settle` throws CORRUPT_RECORD for the first
 * whose CRC differs (checked again in line, for verifyRecord's reason).
 */
export class ChunkCrcs {
  readonly #at: Float64Array
  private constructor(readonly crcs: BodyCrcCheck) {
    this.#at = new Float64Array(crcs.capacity)
  }

  /** Undefined without the native helper: verifyRecord then checks each CRC in line. */
  static make(): ChunkCrcs | undefined {
    const crcs = bodyCrcCheck(CRC_RUN_RECORDS)
    return crcs ? new ChunkCrcs(crcs) : undefined
  }

  /** The record at `data[at]` (verified but for its CRC). */
  add(data: Buffer, at: number, start: number, maxRecordBytes: number): void {
    if (this.crcs.full) this.settle(data, start, maxRecordBytes)
    const l = layoutOf(data.readInt32BE(at + RECORD.sysFlag))
    this.#at[this.crcs.count] = at
    this.crcs.add(at + l.body, data.readInt32BE(at + l.bodyLength), data.readInt32BE(at + RECORD.bodyCrc))
  }

  settle(data: Buffer, start: number, maxRecordBytes: number): void {
    const bad = this.crcs.check(data)
    if (bad < 0) return
    const at = this.#at[bad]!
    const v = verifyRecord(data, at, at + data.readInt32BE(at), start + at, maxRecordBytes, true)
    throw corrupt(start + at, typeof v === 'string' ? v : 'body CRC differs from the stored one')
  }
}

/**
 * Splits `data` (starting at CommitLog offset `start`, a record boundary) into runs of whole
 * units and a cut tail, checking each; throws CORRUPT_RECORD or FILE_SIZE_MISMATCH at the first
 * bad one. With `crcs` the body CRCs are checked many at a time (the first bad one is still the
 * one reported: the CRCs before a structural fault are settled before it is thrown).
 */
export function planChunk(data: Buffer, start: number, fileSize: number, maxRecordBytes: number, runMaxBytes: number, crcs?: ChunkCrcs): ChunkPlan {
  try {
    const plan = planUnits(data, start, fileSize, maxRecordBytes, runMaxBytes, crcs)
    crcs?.settle(data, start, maxRecordBytes)
    return plan
  } catch (err) {
    crcs?.settle(data, start, maxRecordBytes)
    throw err
  }
}

function planUnits(data: Buffer, start: number, fileSize: number, maxRecordBytes: number, runMaxBytes: number, crcs: ChunkCrcs | undefined): ChunkPlan {
  const runs: Run[] = []
  let run: Run | undefined
  let at = 0
  while (at < data.length) {
    const offset = start + at
    const room = fileSize - (offset % fileSize)
    const left = data.length - at
    if (left < 8) {
      // Only the size may have arrived: it must be a record's that fits, or the BLANK's.
      if (left >= 4) {
        const size = data.readInt32BE(at)
        const record = size >= RECORD_FIXED_BYTES_V1 && size <= maxRecordBytes && size + END_FILE_MIN_BLANK_LENGTH <= room
        if (!record && size !== room) throw corrupt(offset, `size ${size} fits neither a record nor the end-of-file BLANK (${room} bytes left in the file)`)
      }
      break
    }
    const size = data.readInt32BE(at)
    const magic = data.readInt32BE(at + 4)
    if (magic === BLANK_MAGIC_CODE) {
      if (size !== room) {
        if (size >= END_FILE_MIN_BLANK_LENGTH && size <= fileSize * 2) throw fileSizeMismatch(offset, `the master's end-of-file BLANK of ${size} bytes does not end where this store's file does (${room} bytes left)`, fileSize)
        throw corrupt(offset, `BLANK of ${size} bytes, ${room} bytes left in the file`)
      }
      if (left < size) break
      runs.push({ offset, from: at, to: at + size, blank: true, storeTimestamp: 0 })
      run = undefined
      at += size
      continue
    }
    if (magic !== MESSAGE_MAGIC_CODE_V1 && magic !== MESSAGE_MAGIC_CODE_V2) throw corrupt(offset, `bad magic code 0x${(magic >>> 0).toString(16)}`)
    if (size < RECORD_FIXED_BYTES_V1 || size > maxRecordBytes) throw corrupt(offset, `bad total size ${size} (at most ${maxRecordBytes})`)
    // A master ends a file with a BLANK of at least END_FILE_MIN_BLANK_LENGTH bytes.
    if (size + END_FILE_MIN_BLANK_LENGTH > room) throw fileSizeMismatch(offset, `a record of ${size} bytes leaves no room for the end-of-file BLANK in the ${room} bytes left of the file`, fileSize)
    if (left < size) {
      // A cut record: its stored offset, when it arrived, must be its own.
      if (left >= RECORD.physicalOffset + 8) {
        const stored = data.readBigInt64BE(at + RECORD.physicalOffset)
        if (stored !== BigInt(offset)) throw corrupt(offset, `record says physical offset ${stored}`)
      }
      break
    }
    const v = verifyRecord(data, at, at + size, offset, maxRecordBytes, crcs === undefined)
    if (v !== size) throw corrupt(offset, typeof v === 'string' ? v : `record of ${v} bytes where its header says ${size}`)
    const fault = queueFieldsFault(data, at)
    if (fault) throw corrupt(offset, fault)
    crcs?.add(data, at, start, maxRecordBytes)
    const storeTimestamp = readStoreTimestamp(data, at)
    if (run && run.to - run.from + size <= runMaxBytes) {
      run.to += size
      if (storeTimestamp > run.storeTimestamp) run.storeTimestamp = storeTimestamp
    } else {
      run = { offset, from: at, to: at + size, blank: false, storeTimestamp }
      runs.push(run)
    }
    at += size
  }
  return { runs, tailFrom: at }
}

/**
 * What no master writes in a record that takes a queue offset: a negative queue id or queue
 * offset (a sign bit flipped in transit; the body CRC does not cover the header). The
 * ConsumeQueue would make a queue of the one and pass over the unit of the other, so they are
 * refused before writing. Every other rule of the queues (continuity, a unit its own record
 * confirms) is the ConsumeQueue's alone, met at dispatch (see Replication.#cutRefused).
 */
function queueFieldsFault(data: Buffer, at: number): string | undefined {
  if (!takesQueueOffset(data.readInt32BE(at + RECORD.sysFlag))) return undefined
  const queueId = data.readInt32BE(at + RECORD.queueId)
  if (queueId < 0) return `negative queue id ${queueId}`
  if (data.readInt32BE(at + RECORD.queueOffset) < 0) return `negative queue offset ${data.readBigInt64BE(at + RECORD.queueOffset)}`
  return undefined
}

/**
 * How many bytes of `bytes` complete the unit whose first bytes are `held` (a record or BLANK cut
 * by the last chunk): its size less what is held, all of `bytes` at most. A size that is not one
 * takes a header's worth, enough for planChunk to refuse it.
 */
function stitchLength(held: Buffer, bytes: Buffer): number {
  if (held.length + bytes.length < 8) return bytes.length
  const head = held.length >= 4 ? held : Buffer.concat([held, bytes.subarray(0, 4 - held.length)])
  const size = head.readInt32BE(0)
  return Math.max(0, Math.min(bytes.length, Math.max(size - held.length, 8 - held.length)))
}

/** True when `buf[from, to)` holds only zeros. */
function allZero(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] !== 0) return false
  return true
}

/**
 * Keeps the CommitLog's next queue offset of every queue just past the replicated records' (a
 * replica takes queue offsets from the records, never gives them), so a promotion continues
 * each queue densely and maxQueueOffset answers on a replica as on its master.
 */
function queueOffsetFollower(log: CommitLog): DispatchListener {
  return {
    name: 'QueueOffsets',
    wantsKeys: false,
    dispatch: (req) => {
      if (!takesQueueOffset(req.sysFlag)) return
      const st = log.topics.get(req.topic) ?? log.topicState(req.topic, Buffer.from(req.topic, 'latin1'))
      if ((st.queueOffsets[req.queueId] ?? 0) <= req.queueOffset) st.queueOffsets[req.queueId] = req.queueOffset + 1
    },
  }
}

export interface ReplicationParts {
  commitLog: CommitLog
  dispatcher: Dispatcher
  maxRecordBytes: number
  /**
   * Cuts the store back to `offset`, crash-safe (MessageStore.truncate), and forgets the queues
   * of `topic` that hold nothing (those a refused record made).
   */
  cutBack(offset: number, topic: string | undefined): Promise<void>
  /**
   * At a promotion, once everything replicated is dispatched and before puts are taken: records
   * the dispatcher has not reached (past a confirm offset) must count in the next queue offsets.
   */
  beforePromotion?(): void
}

/** A chunk written and not yet settled (durable and dispatched): a cut below its end refuses it. */
interface Written {
  end: number
  cut?: StoreError
}

/**
 * Whether a dispatch error means the record is bad (a header the ConsumeQueue refuses, a stream
 * from another master), not that the disk could not take it (DISK_FULL, IO_ERROR: the record is
 * kept and dispatched once space returns).
 */
function refusesRecord(err: StoreError | undefined): err is StoreError {
  return err?.code === 'CORRUPT_RECORD'
}

/** The store's role, and the replica's appends (MessageStore.appendReplicated and setRole). */
export class Replication {
  #role: StoreRole
  /** setRole('replica') was called: puts are refused from then on, while those under way finish. */
  #demoting = false
  /** Bytes of a unit cut by the last chunk's end, not written yet (a copy: the chunk may be a view). */
  #pending: Buffer = EMPTY
  /** Chunk writes and role changes, one at a time, in call order. */
  #chain: Promise<unknown> = Promise.resolve()
  /** Body CRCs checked many records per native call (undefined without the native helper). */
  readonly #crcs = ChunkCrcs.make()
  readonly #follower: DispatchListener
  /** Chunks written, not yet settled (see Written). */
  readonly #unsettled = new Set<Written>()

  constructor(
    private readonly parts: ReplicationParts,
    role: StoreRole,
  ) {
    this.#role = role
    this.#follower = queueOffsetFollower(parts.commitLog)
    if (role === 'replica') parts.dispatcher.addListener(this.#follower)
  }

  get role(): StoreRole {
    return this.#role
  }

  /** Whether puts are taken: on a master that is not being demoted. */
  get takesPuts(): boolean {
    return this.#role === 'master' && !this.#demoting
  }

  /** Where the next chunk must start: the end of the written log plus the bytes held of a cut record. */
  get endOffset(): number {
    return this.parts.commitLog.wroteOffset + this.#pending.length
  }

  /** Forgets the bytes held of a cut record (a truncate cut the log below them). */
  dropHeld(): void {
    this.#pending = EMPTY
  }

  wrongRole(what: string): StoreError {
    const role = this.#demoting ? 'replica' : this.#role
    return new StoreError('WRONG_ROLE', `${what} refused: this store is a ${role}${this.#demoting ? ' (being demoted)' : ''}`, { details: { role } })
  }

  /** Runs `step` after every chunk write and role change called before it. */
  #serial<T>(step: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(step, step)
    this.#chain = run.catch(() => undefined)
    return run
  }

  /**
   * Writes the chunk (after those called before it), then waits: flush 'sync' until what it wrote
   * is on disk, either mode until its whole records are dispatched.
   */
  async append(offset: number, bytes: Buffer): Promise<void> {
    checkOffset('offset', offset)
    if (!Buffer.isBuffer(bytes)) throw new StoreError('INVALID_ARGUMENT', `bytes must be a Buffer, got ${describe(bytes)}`)
    const written = await this.#serial(async () => {
      const end = await this.#write(offset, bytes)
      const w: Written = { end }
      this.#unsettled.add(w)
      return w
    })
    try {
      await this.#settle(written)
    } finally {
      this.#unsettled.delete(written)
    }
  }

  /** Checks the chunk and writes its whole units; returns the end of what was written. */
  async #write(offset: number, bytes: Buffer): Promise<number> {
    if (this.#role !== 'replica') throw this.wrongRole('appendReplicated')
    const log = this.parts.commitLog
    if (log.failed) throw log.failed
    // A record written before was refused by dispatch: nothing more goes after it.
    if (refusesRecord(this.parts.dispatcher.lastError)) {
      const cut = await this.#cutRefused()
      if (cut) throw cut
    }
    const expected = this.endOffset
    if (offset !== expected) {
      if (!this.#seedable(offset)) throw this.#mismatch(offset, expected)
      await log.restartAt(offset)
      this.parts.dispatcher.reputOffset = offset
    }
    if (bytes.length === 0) return log.wroteOffset
    // Chunks sent without waiting stage at most stagingLimitBytes ahead of the disk, as puts do:
    // this one may pass it by the rest of the held record and its own records (a BLANK stages
    // its first bytes only, though the end moves past its padding).
    while (log.stagingFull) {
      await log.whenDurable(log.wroteOffset)
      if (log.failed) throw log.failed
    }
    // The bytes held of a cut unit are joined with only the rest of that unit; the chunk's
    // other bytes are planned and copied where they are (a view of the HA frame).
    const pending = this.#pending
    const take = pending.length === 0 ? 0 : stitchLength(pending, bytes)
    const parts: Array<{ data: Buffer; plan: ChunkPlan }> = []
    const runMaxBytes = log.options.flush === 'sync' ? SYNC_RUN_MAX_BYTES : Number.POSITIVE_INFINITY
    let at = log.wroteOffset
    const start = at
    for (const data of pending.length === 0 ? [bytes] : [Buffer.concat([pending, bytes.subarray(0, take)]), bytes.subarray(take)]) {
      let plan: ChunkPlan
      try {
        plan = planChunk(data, at, log.fileSizeBytes, this.parts.maxRecordBytes, runMaxBytes, this.#crcs)
      } catch (err) {
        // The bytes held of a cut record may be the bad ones (a record's CRC is known only once it
        // is whole): they go too, so the link resumes at the last whole record (commitLogMaxOffset).
        if (pending.length > 0 && err instanceof StoreError && err.code === 'CORRUPT_RECORD' && err.details.physicalOffset === start) {
          this.#pending = EMPTY
          throw new StoreError(err.code, `${err.message}; the ${pending.length} bytes held of the record at ${start} were dropped: resume at ${start}`, { cause: err, details: err.details })
        }
        throw err
      }
      parts.push({ data, plan })
      // A unit still cut: nothing follows it in this chunk (stitchLength took all of it).
      if (plan.tailFrom < data.length) break
      at += data.length
    }
    let wrote = false
    try {
      for (const { data, plan } of parts) {
        for (const r of plan.runs) {
          if (!this.#inLastFile(r.offset)) await log.queue.createNext()
          // A BLANK's padding is zeros on a master; the file already reads zeros there.
          const to = r.blank && allZero(data, r.from + END_FILE_MIN_BLANK_LENGTH, r.to) ? r.from + END_FILE_MIN_BLANK_LENGTH : r.to
          log.appendReplicatedBytes(data.subarray(r.from, to), r.blank, r.storeTimestamp)
          wrote = true
        }
      }
    } catch (err) {
      // Part of the chunk may be written (a full disk): the store's end is what was, and what
      // was staged is on disk (and committed) before the error is told.
      this.#pending = EMPTY
      log.replicatedCommitted()
      if (log.options.flush === 'sync') await log.whenDurable(log.wroteOffset).catch(() => undefined)
      throw err
    }
    const last = parts[parts.length - 1]!
    this.#pending = last.plan.tailFrom < last.data.length ? Buffer.from(last.data.subarray(last.plan.tailFrom)) : EMPTY
    if (wrote) log.replicatedCommitted()
    return log.wroteOffset
  }

  /** Whether a unit at `offset` goes to the last file (else to a new one: the last is full). */
  #inLastFile(offset: number): boolean {
    const last = this.parts.commitLog.queue.last
    return last !== undefined && offset < last.fileFromOffset + last.fileSize
  }

  /**
   * Whether the log may start over at `offset`: it holds nothing (no byte written, none held) and
   * `offset` starts a file. A new replica's master may have deleted its first files (retention):
   * the replica then starts where the master's log does, as a store whose early files are gone.
   */
  #seedable(offset: number): boolean {
    const log = this.parts.commitLog
    return this.#pending.length === 0 && log.wroteOffset === log.minOffset && offset % log.fileSizeBytes === 0
  }

  #mismatch(offset: number, expected: number): StoreError {
    const log = this.parts.commitLog
    const why =
      log.wroteOffset !== log.minOffset || this.#pending.length > 0
        ? ''
        : ` (an empty replica starts at another offset only where a file starts, a multiple of ${log.fileSizeBytes})`
    return new StoreError('OFFSET_MISMATCH', `appendReplicated at CommitLog offset ${offset}, but the store ends at ${expected}${why}; nothing was written`, {
      details: { offset, expected },
    })
  }

  /**
   * Flush 'sync': durable up to the chunk's end; then dispatched up to it, or the dispatch's
   * error. A record dispatch refused (see #cutRefused) is cut with everything after it, and the
   * chunks that wrote past the cut fail with the cut's error.
   */
  async #settle(w: Written): Promise<void> {
    const { commitLog, dispatcher } = this.parts
    if (commitLog.options.flush === 'sync' && !w.cut) await commitLog.whenDurable(w.end)
    if (w.cut) throw w.cut
    if (commitLog.failed) throw commitLog.failed
    await dispatcher.waitFor(w.end)
    if (w.cut) throw w.cut
    if (dispatcher.reputOffset >= w.end) return
    const err = dispatcher.lastError
    if (refusesRecord(err)) {
      await this.#serial(() => this.#cutRefused())
      throw w.cut ?? err
    }
    if (err) throw err
  }

  /**
   * When dispatch stopped on a replicated record it refuses (CORRUPT_RECORD: a header damaged in
   * transit, which the body CRC does not cover, or another master's stream), the log is cut back
   * to where dispatch stopped (every record below it is dispatched), crash-safe, and the error
   * is returned (undefined when there is nothing to cut). Run in the chain: no chunk is written
   * meanwhile. Kept, the record would wedge the replica: every later chunk written and never
   * dispatched, and its end, which the replica reports to its master, past what it can serve.
   * The link resumes at the cut, so the master sends the record again: a transit error heals, a
   * record really bad is refused each time.
   */
  async #cutRefused(): Promise<StoreError | undefined> {
    const { commitLog, dispatcher } = this.parts
    await dispatcher.drain().catch(() => undefined)
    const err = dispatcher.lastError
    if (!refusesRecord(err) || dispatcher.reputOffset >= commitLog.wroteOffset) return undefined
    const at = dispatcher.reputOffset
    const cut = new StoreError('CORRUPT_RECORD', `${err.message}; the replica cut its log back to ${at} (the record and everything after it), the link resumes at ${at}`, {
      cause: err,
      details: { ...err.details, cutAt: at },
    })
    for (const w of this.#unsettled) if (w.end > at) w.cut ??= cut
    this.#pending = EMPTY
    await this.parts.cutBack(at, typeof err.details.topic === 'string' ? err.details.topic : undefined)
    return cut
  }

  /**
   * Replica to master: after the chunks under way, the bytes held of a cut record are dropped (the
   * master died mid-record; they were never written), the log is made durable and dispatched,
   * then puts continue after the last replicated record. Master to replica: puts are refused at
   * once, those under way are written, durable and dispatched, and appendReplicated continues at
   * the store's end.
   */
  setRole(role: StoreRole): Promise<void> {
    if (role !== 'master' && role !== 'replica') return Promise.reject(new StoreError('INVALID_ARGUMENT', `role must be 'master' or 'replica', got ${describe(role)}`))
    if (role === 'replica' && this.#role === 'master') this.#demoting = true
    return this.#serial(async () => {
      if (role === this.#role) return
      const { commitLog, dispatcher } = this.parts
      if (role === 'replica') {
        this.#role = 'replica'
        this.#demoting = false
        await commitLog.appendsSettled()
      }
      this.#pending = EMPTY
      if (commitLog.options.flush === 'sync') await commitLog.whenDurable(commitLog.wroteOffset)
      await dispatcher.drain()
      commitLog.setReplicaWrites(role === 'replica')
      if (role === 'replica') {
        dispatcher.addListener(this.#follower)
      } else {
        dispatcher.removeListener(this.#follower)
        this.parts.beforePromotion?.()
        this.#role = 'master'
      }
    })
  }
}
