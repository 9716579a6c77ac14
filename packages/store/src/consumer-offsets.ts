/**
 * Consumer offsets: the next queue offset each consumer group will read, per (topic, queueId),
 * kept in memory and persisted to `config/consumerOffset.json` in RocketMQ's shape:
 *
 *   {"offsetTable":{"<topic>@<group>":{"<queueId>":<offset>,...},...},"dataVersion":{...}}
 *
 * RocketMQ (fastjson) writes the queue id keys unquoted; we write standard JSON, which fastjson
 * reads, and read both. The file is replaced atomically (temp file, fsync, rename); the previous
 * content is kept as `consumerOffset.json.bak` and read when the main file cannot be parsed, as
 * RocketMQ's ConfigManager does. A crash loses at most the commits since the last persist.
 */
import { messageOf, readConfigFile, writeConfigFile } from '@mqts/common'
import { StoreError, ioError } from './errors.js'
import type { FileIO } from './file-io.js'

export const CONSUMER_OFFSET_FILE = 'consumerOffset.json'
export const TOPIC_GROUP_SEPARATOR = '@'
export const DEFAULT_PERSIST_CONSUMER_OFFSET_INTERVAL_MS = 5000

interface OffsetFile {
  offsetTable?: Record<string, Record<string, number>>
  dataVersion?: { timestamp: number; counter: number }
}

/** Quotes the bare integer keys fastjson writes (`{0:12}`) so JSON.parse accepts them. */
function quoteBareKeys(text: string): string {
  return text.replace(/([{,]\s*)(-?\d+)(\s*:)/g, '$1"$2"$3')
}

export function parseConsumerOffsets(text: string): Map<string, Map<number, number>> {
  let parsed: OffsetFile
  try {
    parsed = JSON.parse(text) as OffsetFile
  } catch {
    parsed = JSON.parse(quoteBareKeys(text)) as OffsetFile
  }
  const table = new Map<string, Map<number, number>>()
  const raw = parsed?.offsetTable
  if (raw === undefined || raw === null) return table
  if (typeof raw !== 'object') throw new Error('offsetTable is not an object')
  for (const key of Object.keys(raw)) {
    const byQueue = raw[key]
    if (typeof byQueue !== 'object' || byQueue === null) continue
    const m = new Map<number, number>()
    for (const q of Object.keys(byQueue)) {
      const queueId = Number(q)
      const offset = Number(byQueue[q])
      // A negative offset or queue id is damage, not a position: left out (the group starts afresh there).
      if (Number.isInteger(queueId) && queueId >= 0 && Number.isSafeInteger(offset) && offset >= 0) m.set(queueId, offset)
    }
    table.set(key, m)
  }
  return table
}

function parses(text: string): boolean {
  try {
    parseConsumerOffsets(text)
    return true
  } catch {
    return false
  }
}

export class ConsumerOffsetManager {
  /** "<topic>@<group>" -> queueId -> offset. */
  private table = new Map<string, Map<number, number>>()
  private counter = 0
  private persisted = 0
  private persisting: Promise<void> | undefined

  constructor(
    private readonly io: FileIO,
    private readonly file: string,
    private readonly now: () => number,
  ) {}

  async load(): Promise<void> {
    let table: Awaited<ReturnType<typeof parseConsumerOffsets>> | undefined
    try {
      table = await readConfigFile(this.io, this.file, parseConsumerOffsets)
    } catch (err) {
      throw new StoreError('CORRUPT_FILE', `consumer offsets cannot be read: ${messageOf(err)}`, { cause: err })
    }
    if (table) this.table = table
  }

  commit(group: string, topic: string, queueId: number, offset: number): void {
    const key = topic + TOPIC_GROUP_SEPARATOR + group
    let m = this.table.get(key)
    if (!m) {
      m = new Map()
      this.table.set(key, m)
    }
    m.set(queueId, offset)
    this.counter++
  }

  /** Whether any group committed an offset of `topic`. */
  hasTopic(topic: string): boolean {
    const prefix = topic + TOPIC_GROUP_SEPARATOR
    for (const key of this.table.keys()) if (key.startsWith(prefix)) return true
    return false
  }

  /** Forgets every group's offsets of `topic` (RocketMQ's cleanOffsetByTopic); persisted by the next persist. */
  removeTopic(topic: string): boolean {
    // A topic has no '@': "<topic>@" starts exactly its keys.
    const prefix = topic + TOPIC_GROUP_SEPARATOR
    let removed = false
    for (const key of [...this.table.keys()]) {
      if (!key.startsWith(prefix)) continue
      this.table.delete(key)
      removed = true
    }
    if (removed) this.counter++
    return removed
  }

  /** The committed offset, or -1 when the group never committed one (RocketMQ's queryOffset). */
  get(group: string, topic: string, queueId: number): number {
    return this.table.get(topic + TOPIC_GROUP_SEPARATOR + group)?.get(queueId) ?? -1
  }

  /** Every (topic@group) entry, for tests and tools. */
  entries(): Array<{ topic: string; group: string; queueId: number; offset: number }> {
    const out: Array<{ topic: string; group: string; queueId: number; offset: number }> = []
    for (const [key, m] of this.table) {
      const at = key.indexOf(TOPIC_GROUP_SEPARATOR)
      for (const [queueId, offset] of m) out.push({ topic: key.slice(0, at), group: key.slice(at + 1), queueId, offset })
    }
    return out
  }

  encode(): string {
    const offsetTable: Record<string, Record<string, number>> = {}
    for (const [key, m] of this.table) {
      const byQueue: Record<string, number> = {}
      for (const [queueId, offset] of m) byQueue[String(queueId)] = offset
      offsetTable[key] = byQueue
    }
    return JSON.stringify({ offsetTable, dataVersion: { timestamp: this.now(), counter: this.counter } }, null, 2)
  }

  /** Writes the table if it changed since the last persist. Concurrent calls share one write. */
  persist(): Promise<void> {
    if (this.persisting) return this.persisting.then(() => this.persist())
    if (this.counter === this.persisted) return Promise.resolve()
    const counter = this.counter
    const text = this.encode()
    this.persisting = (async () => {
      try {
        await writeConfigFile(this.io, this.file, text, parses)
        this.persisted = counter
      } catch (err) {
        // ENOSPC answers DISK_FULL: the offsets in memory are kept and written by the next persist.
        throw ioError(`persisting consumer offsets to ${this.file}`, err)
      } finally {
        this.persisting = undefined
      }
    })()
    return this.persisting
  }
}
