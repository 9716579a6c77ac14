/**
 * Where a push consumer keeps its offsets (RocketMQ's OffsetStore): on the broker for
 * clustering (RemoteBrokerOffsetStore: QUERY_CONSUMER_OFFSET, UPDATE_CONSUMER_OFFSET) and in a
 * local file for broadcasting (LocalFileOffsetStore, `<dir>/<clientId>/<group>/offsets.json`,
 * replaced atomically with a .bak of the previous content).
 */
import { mkdir } from 'node:fs/promises'
import * as path from 'node:path'
import { NodeFileIO, readConfigFile, writeConfigFile } from '@mqts/common'
import type { ClientInstance } from './client-instance.js'
import { ClientError } from './errors.js'
import { queryConsumerOffset, updateConsumerOffset } from './pull-api.js'
import { queueKey, type MessageQueue } from './route.js'

export const LOCAL_OFFSET_FILE = 'offsets.json'

export interface OffsetStore {
  load(): Promise<void>
  /** The offset in memory, or -1. */
  readMemory(q: MessageQueue): number
  /** The offset kept by the store (the broker or the file), or -1 when it has none. */
  readStore(q: MessageQueue): Promise<number>
  /** Sets the offset in memory; with increaseOnly an older offset does not replace a newer one. */
  update(q: MessageQueue, offset: number, increaseOnly: boolean): void
  /** Writes the offsets of these queues to the store. */
  persist(queues: readonly MessageQueue[]): Promise<void>
  remove(q: MessageQueue): void
}

abstract class MemoryOffsets {
  protected readonly table = new Map<string, { queue: MessageQueue; offset: number }>()

  readMemory(q: MessageQueue): number {
    return this.table.get(queueKey(q))?.offset ?? -1
  }

  update(q: MessageQueue, offset: number, increaseOnly: boolean): void {
    const key = queueKey(q)
    const cur = this.table.get(key)
    if (cur && increaseOnly && cur.offset >= offset) return
    this.table.set(key, { queue: q, offset })
  }

  remove(q: MessageQueue): void {
    this.table.delete(queueKey(q))
  }
}

export class RemoteOffsetStore extends MemoryOffsets implements OffsetStore {
  constructor(
    private readonly instance: ClientInstance,
    private readonly group: string,
  ) {
    super()
  }

  async load(): Promise<void> {}

  async readStore(q: MessageQueue): Promise<number> {
    const offset = await queryConsumerOffset(this.instance, this.group, q)
    if (offset >= 0) this.update(q, offset, false)
    return offset
  }

  async persist(queues: readonly MessageQueue[]): Promise<void> {
    await Promise.all(
      queues.map(async (q) => {
        const offset = this.readMemory(q)
        if (offset < 0) return
        try {
          await updateConsumerOffset(this.instance, this.group, q, offset)
        } catch (err) {
          this.instance.logger.warn(`consumer ${this.group}: offset ${offset} of ${queueKey(q)} not committed: ${(err as Error).message}`)
        }
      }),
    )
  }
}

interface OffsetFile {
  offsetTable: Record<string, number>
}

function parseOffsetFile(text: string): OffsetFile {
  const json = JSON.parse(text) as Partial<OffsetFile>
  if (!json || typeof json.offsetTable !== 'object' || json.offsetTable === null) throw new Error('no offsetTable')
  return { offsetTable: json.offsetTable }
}

export class LocalOffsetStore extends MemoryOffsets implements OffsetStore {
  readonly file: string
  readonly #io = new NodeFileIO()
  #stored: Record<string, number> = {}
  #writing: Promise<void> = Promise.resolve()

  constructor(dir: string, clientId: string, group: string) {
    super()
    this.file = path.join(dir, clientId.replace(/[^A-Za-z0-9@._#-]/g, '_'), group, LOCAL_OFFSET_FILE)
  }

  async load(): Promise<void> {
    let content: Awaited<ReturnType<typeof parseOffsetFile>> | undefined
    try {
      content = await readConfigFile(this.#io, this.file, parseOffsetFile)
    } catch (err) {
      throw new ClientError('INVALID_OPTION', `the broadcasting offsets file cannot be read: ${(err as Error).message}`, { cause: err })
    }
    this.#stored = content?.offsetTable ?? {}
  }

  async readStore(q: MessageQueue): Promise<number> {
    const offset = this.#stored[queueKey(q)]
    if (offset === undefined) return -1
    if (!Number.isInteger(offset) || offset < 0) throw new ClientError('INVALID_OPTION', `${this.file} holds offset ${offset} for ${queueKey(q)}, not an integer >= 0`)
    this.update(q, offset, false)
    return offset
  }

  persist(queues: readonly MessageQueue[]): Promise<void> {
    for (const q of queues) {
      const offset = this.readMemory(q)
      if (offset >= 0) this.#stored[queueKey(q)] = offset
    }
    const text = JSON.stringify({ offsetTable: this.#stored }, null, 2)
    // One write at a time: the timer's and close()'s may overlap.
    this.#writing = this.#writing.then(async () => {
      await mkdir(path.dirname(this.file), { recursive: true })
      await writeConfigFile(this.#io, this.file, text, (t) => {
        try {
          parseOffsetFile(t)
          return true
        } catch {
          return false
        }
      })
    })
    return this.#writing
  }
}
