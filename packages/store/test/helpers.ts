import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import type { TestContext } from 'node:test'
import { MessageStore, type MessageStoreOptions } from '../src/index.js'

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

/**
 * A directory of its own for a store on the simulated disk, removed after the test. The key index
 * keeps real files there (it does not go through FileIO), so a fixed path shared by test files
 * running at once (or by other checkouts on the machine) would let their indexes trample one
 * another.
 */
export async function simDir(t: TestContext): Promise<string> {
  const { dir, cleanup } = await tempDir('mqts-sim-')
  t.after(cleanup)
  return dir
}
