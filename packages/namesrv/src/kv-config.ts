/**
 * The nameserver's KV config (RocketMQ's KVConfigManager): namespaced string pairs that admin
 * tools set (ORDER_TOPIC_CONFIG among them). Kept in memory and, when a file is given, written
 * whole after every change as RocketMQ's kvConfig.json (`{"configTable":{ns:{key:value}}}`),
 * through a temp file and a rename so a crash leaves the old or the new content.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import * as path from 'node:path'
import { NamesrvError } from './errors.js'

export class KvConfigManager {
  readonly #table = new Map<string, Map<string, string>>()
  #writing: Promise<void> = Promise.resolve()

  constructor(readonly file: string | undefined) {}

  /** Loads the file if there is one; a missing file is an empty table. */
  async load(): Promise<void> {
    if (!this.file) return
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw new NamesrvError('CONFIG_UNREADABLE', `cannot read ${this.file}: ${(err as Error).message}`, { cause: err })
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (err) {
      throw new NamesrvError('CONFIG_UNREADABLE', `${this.file} is not JSON: ${(err as Error).message}`, { cause: err })
    }
    const table = (json as { configTable?: unknown } | null)?.configTable
    if (typeof table !== 'object' || table === null) return
    for (const [ns, kv] of Object.entries(table as Record<string, unknown>)) {
      if (typeof kv !== 'object' || kv === null) continue
      const m = new Map<string, string>()
      for (const [k, v] of Object.entries(kv as Record<string, unknown>)) if (typeof v === 'string') m.set(k, v)
      if (m.size > 0) this.#table.set(ns, m)
    }
  }

  get(namespace: string, key: string): string | undefined {
    return this.#table.get(namespace)?.get(key)
  }

  /** Every pair of a namespace, or undefined when it has none. */
  list(namespace: string): Record<string, string> | undefined {
    const m = this.#table.get(namespace)
    if (!m || m.size === 0) return undefined
    return Object.fromEntries(m)
  }

  async put(namespace: string, key: string, value: string): Promise<void> {
    let m = this.#table.get(namespace)
    if (!m) {
      m = new Map()
      this.#table.set(namespace, m)
    }
    m.set(key, value)
    await this.#persist()
  }

  async delete(namespace: string, key: string): Promise<void> {
    const m = this.#table.get(namespace)
    if (!m || !m.delete(key)) return
    if (m.size === 0) this.#table.delete(namespace)
    await this.#persist()
  }

  /** Writes are serialized: each writes the table as it is when its turn comes. */
  #persist(): Promise<void> {
    const file = this.file
    if (!file) return Promise.resolve()
    const run = async (): Promise<void> => {
      const configTable: Record<string, Record<string, string>> = {}
      for (const [ns, m] of this.#table) configTable[ns] = Object.fromEntries(m)
      await mkdir(path.dirname(file), { recursive: true })
      const tmp = `${file}.tmp`
      await writeFile(tmp, JSON.stringify({ configTable }, null, 2))
      await rename(tmp, file)
    }
    const p = this.#writing.then(run, run)
    this.#writing = p.catch(() => undefined)
    return p
  }
}
