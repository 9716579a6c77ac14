import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { IndexService, type IndexRecord, type IndexServiceOptions } from '../src/index.js'

/** Tiny geometry for tests: 64 slots, 100 entries (99 usable) per file. */
export const TINY = { maxHashSlotNum: 64, maxIndexNum: 100 } as const

/** A fresh temp directory, removed by the returned cleanup. */
export async function tempDir(prefix = 'mqts-index-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

/** A clock that moves 1 ms per call from a fixed start, so file names are predictable. */
export function fakeClock(start = Date.UTC(2026, 0, 2, 3, 4, 5, 6)): () => number {
  let t = start
  return () => t++
}

export function openTiny(dir: string, overrides: Partial<IndexServiceOptions> = {}): Promise<IndexService> {
  return IndexService.open({ dir: path.join(dir, 'index'), ...TINY, now: fakeClock(), ...overrides })
}

/** Closes `idx` and opens the same directory again. */
export async function reopen(idx: IndexService, dir: string, overrides: Partial<IndexServiceOptions> = {}): Promise<IndexService> {
  await idx.close()
  return openTiny(dir, overrides)
}

export const RECORD_BYTES = 100
export const T0 = Date.UTC(2026, 0, 1)

/**
 * The simulated CommitLog: record i sits at i × 100, is stored at T0 + i seconds, has UNIQ_KEY
 * `u<i>` and KEYS `k<i>`; every fifth record (i % 5 === 3) has no keys at all.
 */
export function record(i: number, topic = 'T'): IndexRecord {
  const keyless = i % 5 === 3
  return {
    topic,
    keys: keyless ? [] : [`k${i}`],
    uniqKey: keyless ? undefined : `u${i}`,
    phyOffset: i * RECORD_BYTES,
    size: RECORD_BYTES,
    storeTimestamp: T0 + i * 1000,
  }
}

export function hasKeys(i: number): boolean {
  return i % 5 !== 3
}

/** How often record i's offset comes back for its keys: [for u<i>, for k<i>]. */
export function hits(idx: IndexService, i: number, topic = 'T'): [number, number] {
  const at = i * RECORD_BYTES
  const count = (key: string): number => idx.query(topic, key, { maxNum: 1000 }).filter((o) => o === at).length
  return [count(`u${i}`), count(`k${i}`)]
}

/**
 * Drops `idx` as a killed process would: no flush, mappings released (their dirty pages stay in
 * the page cache, exactly what survives a SIGKILL).
 */
export function crash(idx: IndexService): void {
  const raw = idx as unknown as { releaseAll(): void; _status: string }
  raw.releaseAll()
  raw._status = 'closed'
}
