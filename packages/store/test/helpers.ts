import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { existsSync, readdirSync, rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import type { TestContext } from 'node:test'
import { MessageStore, StoreError, type MessageStoreOptions, type StoredMessage } from '../src/index.js'

/** A fresh temp directory, removed by the returned cleanup. */
export async function tempDir(prefix = 'mqts-store-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

/** Closes `store` and opens the same directory again with the same (or overridden) options. */
export async function reopen(store: MessageStore, options: MessageStoreOptions, overrides: Partial<MessageStoreOptions> = {}): Promise<MessageStore> {
  await store.close()
  return MessageStore.open({ ...options, ...overrides })
}

export const SMALL_FILE = 64 * 1024

/** For assert.rejects/throws: a StoreError with `code` (its message shown when the code differs). */
export function isStoreError(code: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof StoreError, `expected a StoreError ${code}, got ${String(err)}`)
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`)
    return true
  }
}

/** A store in a temp directory (SMALL_FILE files unless `options` say otherwise) for `fn`, closed and removed after. */
export async function withTempStore(options: Partial<MessageStoreOptions>, fn: (store: MessageStore) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir()
  const store = await MessageStore.open({ commitLogFileSize: SMALL_FILE, ...options, dir })
  try {
    await fn(store)
  } finally {
    await store.close()
    await cleanup()
  }
}

/** A small key index for stores on the simulated disk, which keeps every file whole in memory. */
export const SIM_INDEX = { maxHashSlotNum: 64, maxIndexNum: 256 } as const

/** Every unit of a ConsumeQueue from minOffset to maxOffset, as "physicalOffset/size/tagsCode". */
export async function queueUnits(store: MessageStore, topic: string, queueId: number): Promise<string[]> {
  const cq = store.consumeQueues.find(topic, queueId)
  if (!cq) return []
  const out: string[] = [`min ${cq.minOffset} max ${cq.maxOffset}`]
  for (let u = cq.minOffset; u < cq.maxOffset; u++) {
    const unit = await cq.unitAt(u)
    out.push(unit ? `${unit.physicalOffset}/${unit.size}/${unit.tagsCode}` : 'missing')
  }
  return out
}

let simDirs = 0

/**
 * A path of its own for a store on the simulated disk, on no real disk: everything the store
 * writes, its key index included, goes through its SimFileIO. Unique, so a store the simulation
 * missed would not trample another run's; after the test it must still not exist for real.
 */
export function simPath(name = 'store'): string {
  return path.join(tmpdir(), `mqts-sim-${name}-${process.pid}-${++simDirs}-${randomUUID().slice(0, 8)}`)
}

/** Fails with what it found when a store on the simulated disk wrote real files under `dir`. */
export function assertNothingReal(dir: string): void {
  if (!existsSync(dir)) return
  const found = readdirSync(dir, { recursive: true })
  rmSync(dir, { recursive: true, force: true })
  assert.fail(`a store on the simulated disk wrote real files under ${dir}: ${found.join(', ')}`)
}

/** simPath for test `t`, checked with assertNothingReal after it. */
export function simDir(t: TestContext): string {
  const dir = simPath()
  t.after(() => assertNothingReal(dir))
  return dir
}

/**
 * Visits every record of the log from `from` to its end with `lookup`, in order (a blank moves to
 * the next file). Returns where the walk stopped: the log's end unless the last record runs past it.
 */
export async function forEachRecord(store: MessageStore, from: number, visit: (offset: number, m: StoredMessage) => void): Promise<number> {
  const fileSize = store.commitLog.fileSizeBytes
  const end = store.maxPhysicalOffset
  let offset = Math.max(from, store.minPhysicalOffset)
  while (offset < end) {
    let m
    try {
      m = await store.lookup(offset)
    } catch {
      offset = (Math.floor(offset / fileSize) + 1) * fileSize // blank: next file
      continue
    }
    visit(offset, m)
    offset += m.storeSize
  }
  return offset
}

/**
 * Walks the whole log with `lookup` (a blank moves to the next file): every record decodes and
 * each queue's offsets are 0, 1, 2, ... in log order, nothing follows the tail, and
 * `maxQueueOffset` of each queue is its count. Returns the count per "topic@queueId".
 */
export async function assertDenseLog(store: MessageStore, what = 'log'): Promise<Map<string, number>> {
  const next = new Map<string, number>()
  const end = store.maxPhysicalOffset
  const stopped = await forEachRecord(store, store.minPhysicalOffset, (offset, m) => {
    const key = `${m.topic}@${m.queueId}`
    assert.equal(m.queueOffset, next.get(key) ?? 0, `${what}: dense queue offsets for ${key} (record at ${offset})`)
    next.set(key, m.queueOffset + 1)
  })
  assert.equal(stopped, end, `${what}: nothing follows the tail`)
  for (const [key, n] of next) {
    const at = key.lastIndexOf('@')
    assert.equal(store.maxQueueOffset(key.slice(0, at), Number(key.slice(at + 1))), n, `${what}: maxQueueOffset of ${key}`)
  }
  return next
}
