/**
 * Delayed delivery (RocketMQ's ScheduleMessageService): a message sent with a delay level is
 * stored under SCHEDULE_TOPIC_XXXX, queue level - 1, and its ConsumeQueue unit's tags code is its
 * delivery time. One loop per level reads its queue in order from the level's offset; each message
 * that is due is stored again under its real topic and queue (REAL_TOPIC, REAL_QID; DELAY
 * cleared), then the offset moves past it. The offsets are persisted in
 * `config/delayOffset.json` (RocketMQ's shape) after every delivery, so a restart neither loses
 * nor repeats a delivered message (a kill between the put and the offset's write may repeat one).
 */
import { writeConfigFile, type FileIO } from '@mqts/common'
import { PROPERTY, decodeRecord } from '@mqts/message'
import { SCHEDULE_TOPIC, StoreError, type MessageStore, type PutMessage } from '@mqts/store'
import { readBrokerConfigFile } from './config-files.js'

export const DELAY_OFFSET_FILE = 'delayOffset.json'
/** How long a level's loop sleeps when its queue has nothing due (RocketMQ: 100 ms). */
export const SCHEDULE_IDLE_MS = 100
/** After a failed read or put, the level waits this long before trying again. */
export const SCHEDULE_RETRY_MS = 1000

interface OffsetFile {
  offsetTable: Record<string, number>
}

function parseOffsets(text: string): Map<number, number> {
  const json = JSON.parse(text.replace(/([{,]\s*)(\d+)(\s*:)/g, '$1"$2"$3')) as Partial<OffsetFile>
  if (typeof json?.offsetTable !== 'object' || json.offsetTable === null) throw new Error('no offsetTable')
  const m = new Map<number, number>()
  for (const [k, v] of Object.entries(json.offsetTable)) {
    const level = Number(k)
    if (Number.isInteger(level) && level > 0 && Number.isSafeInteger(v) && v >= 0) m.set(level, v)
  }
  return m
}

export class ScheduleService {
  /** Level -> next queue offset of its schedule queue. */
  readonly #offsets = new Map<number, number>()
  readonly #timers = new Map<number, NodeJS.Timeout>()
  readonly #running = new Set<number>()
  #stopped = true
  #writing: Promise<void> = Promise.resolve()
  #dirty = false
  #offArrivals: (() => void) | undefined

  constructor(
    private readonly store: MessageStore,
    private readonly io: FileIO,
    readonly file: string,
    /** Delay of each level in ms, level 1 first. */
    readonly levelsMs: readonly number[],
    private readonly now: () => number = Date.now,
  ) {}

  async load(): Promise<void> {
    const m = await readBrokerConfigFile(this.io, this.file, parseOffsets)
    if (m) for (const [level, offset] of m) this.#offsets.set(level, offset)
  }

  /** The next queue offset of each level (GET_ALL_DELAY_OFFSET, and what a replica copies). */
  toJSON(): OffsetFile & { dataVersion: { timestamp: number; counter: number } } {
    const offsetTable: Record<string, number> = {}
    for (const level of [...this.#offsets.keys()].sort((a, b) => a - b)) offsetTable[String(level)] = this.#offsets.get(level)!
    return { offsetTable, dataVersion: { timestamp: this.now(), counter: 0 } }
  }

  /** A replica takes its master's delay offsets (they count on its copy of the schedule queues). */
  async replaceOffsets(table: Record<string, number>): Promise<void> {
    for (const [k, v] of Object.entries(table)) {
      const level = Number(k)
      if (Number.isInteger(level) && level > 0 && Number.isSafeInteger(v) && v >= 0 && this.#offsets.get(level) !== v) this.#setOffset(level, v)
    }
    if (this.#dirty) await this.persist()
  }

  offset(level: number): number {
    return this.#offsets.get(level) ?? 0
  }

  start(): void {
    this.#stopped = false
    for (let level = 1; level <= this.levelsMs.length; level++) this.#schedule(level, 0)
    // A message stored in a level's queue may be due before the loop's next look.
    this.#offArrivals = this.store.onMessageArrived((topic, queueId) => {
      if (topic === SCHEDULE_TOPIC && !this.#running.has(queueId + 1)) this.#schedule(queueId + 1, 0)
    })
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#offArrivals?.()
    for (const t of this.#timers.values()) clearTimeout(t)
    this.#timers.clear()
    while (this.#running.size > 0) await new Promise((r) => setTimeout(r, 5))
    await this.persist()
  }

  #schedule(level: number, delayMs: number): void {
    if (this.#stopped) return
    const old = this.#timers.get(level)
    if (old) clearTimeout(old)
    const t = setTimeout(() => {
      this.#timers.delete(level)
      void this.#deliver(level)
    }, delayMs)
    t.unref()
    this.#timers.set(level, t)
  }

  /** Delivers what is due in one level's queue, then sleeps until the next one is due. */
  async #deliver(level: number): Promise<void> {
    if (this.#stopped || this.#running.has(level)) return
    this.#running.add(level)
    let next = SCHEDULE_IDLE_MS
    try {
      next = await this.#deliverDue(level)
    } catch {
      next = SCHEDULE_RETRY_MS
    } finally {
      this.#running.delete(level)
    }
    if (this.#dirty) await this.persist().catch(() => undefined)
    this.#schedule(level, next)
  }

  /** Returns how long to wait before looking again. */
  async #deliverDue(level: number): Promise<number> {
    const queueId = level - 1
    const delay = this.levelsMs[level - 1]!
    for (;;) {
      if (this.#stopped) return SCHEDULE_IDLE_MS
      let offset = this.offset(level)
      const r = await this.store.get({ topic: SCHEDULE_TOPIC, queueId, offset, maxMessages: 32, raw: true })
      if (r.status === 'OFFSET_TOO_SMALL' || (r.status === 'OFFSET_OVERFLOW_BADLY' && r.nextOffset < offset)) {
        // Retention removed the units the offset pointed at, or the queue restarted: go on from where it is.
        this.#setOffset(level, r.nextOffset)
        continue
      }
      if (r.status !== 'FOUND') {
        if (r.nextOffset > offset && (r.status === 'NO_MATCHED_MESSAGE' || r.status === 'MESSAGE_WAS_REMOVING' || r.status === 'OFFSET_FOUND_NULL')) {
          this.#setOffset(level, r.nextOffset)
          continue
        }
        return SCHEDULE_IDLE_MS
      }
      for (const rec of r.records) {
        const now = this.now()
        // A delivery time further ahead than the level's delay: the clock went back; deliver now.
        const due = rec.tagsCode > now + delay ? now : rec.tagsCode
        if (due > now) return Math.min(due - now, SCHEDULE_RETRY_MS * 10)
        await this.#redeliver(rec.data)
        offset = rec.queueOffset + 1
        this.#setOffset(level, offset)
      }
      if (r.nextOffset > offset) this.#setOffset(level, r.nextOffset)
    }
  }

  /** Stores a due message again under its real topic and queue. */
  async #redeliver(data: Buffer): Promise<void> {
    const m = decodeRecord(data, 0, true)
    const properties = { ...m.properties }
    const topic = properties[PROPERTY.REAL_TOPIC]
    const queueId = Number(properties[PROPERTY.REAL_QID])
    delete properties[PROPERTY.DELAY]
    if (topic === undefined || !Number.isInteger(queueId) || queueId < 0) return // not a scheduled message: skipped, as RocketMQ does
    const message: PutMessage = {
      topic,
      queueId,
      body: m.body,
      properties,
      flag: m.flag,
      sysFlag: m.sysFlag,
      bornTimestamp: m.bornTimestamp,
      bornHost: m.bornHost,
      reconsumeTimes: m.reconsumeTimes,
      preparedTransactionOffset: m.preparedTransactionOffset,
    }
    try {
      await this.store.put(message)
    } catch (err) {
      // A message the store refuses as such (its real topic is not a valid one) would block the
      // level forever: it is skipped. Anything else (a full disk, a closed store) is retried.
      if (err instanceof StoreError && (err.code === 'TOPIC_INVALID' || err.code === 'INVALID_ARGUMENT' || err.code === 'MESSAGE_TOO_LARGE')) return
      throw err
    }
  }

  #setOffset(level: number, offset: number): void {
    this.#offsets.set(level, offset)
    this.#dirty = true
  }

  persist(): Promise<void> {
    const run = async (): Promise<void> => {
      if (!this.#dirty) return
      this.#dirty = false
      try {
        await writeConfigFile(this.io, this.file, JSON.stringify(this.toJSON(), null, 2), (t) => {
          try {
            parseOffsets(t)
            return true
          } catch {
            return false
          }
        })
      } catch (err) {
        this.#dirty = true
        throw err
      }
    }
    const p = this.#writing.then(run, run)
    this.#writing = p.catch(() => undefined)
    return p
  }
}
