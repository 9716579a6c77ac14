// Seeding over the HA stream when the master's retention deleted its first CommitLog files: a new,
// empty replica catches up from the master's minimum (its files byte-identical to the master's
// from there, its queues answering as the master's), while producers run; a replica that holds
// data ending below the master's minimum cannot catch up: its link is refused, with the reason
// logged at both ends, its store is left as it was, and the master keeps serving the others.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { MessageStore, type FlushMode, type MessageStoreOptions } from '@mqts/store'
import { HAMaster, HAReplica } from '../src/index.js'
import { recording } from './helpers.js'

const FILE = 256 * 1024
const INDEX = { maxHashSlotNum: 1024, maxIndexNum: 8192 }

async function withDirs(n: number, fn: (dirs: string[]) => Promise<void>): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), 'mqts-ha-seed-'))
  try {
    await fn(Array.from({ length: n }, (_, i) => path.join(root, `s${i}`)))
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

function options(dir: string, flush: FlushMode, role: 'master' | 'replica'): MessageStoreOptions {
  // Retention asked for (manual) deletes every file but the last, whatever its age.
  return { dir, flush, role, commitLogFileSize: FILE, ...INDEX, retention: { fileReservedTimeHours: 0 } }
}

async function produce(store: MessageStore, n: number, from = 0): Promise<void> {
  for (let i = from; i < from + n; i++) {
    await store.put({ topic: `T${i % 3}`, queueId: i % 4, body: Buffer.alloc(100 + ((i * 131) % 3000), i % 256), tags: `tag${i % 5}`, keys: `key-${i}` })
  }
}

/** Produces until retention leaves the master starting past its first file. */
async function withRetention(master: MessageStore): Promise<number> {
  await produce(master, 400)
  await master.flush()
  const r = await master.deleteExpiredFiles({ manual: true })
  assert.ok(r.commitLogFilesDeleted >= 2 && master.commitLogMinOffset >= 2 * FILE, `retention left the log at ${master.commitLogMinOffset}`)
  return master.commitLogMinOffset
}

async function until(what: () => string | undefined, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  for (let left = what(); left !== undefined; left = what()) {
    if (Date.now() > end) assert.fail(left)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The CommitLog files holding bytes below `end`, by name. */
async function logFiles(dir: string, end: number): Promise<Array<[string, Buffer]>> {
  const names = (await readdir(path.join(dir, 'commitlog'))).filter((n) => /^\d{20}$/.test(n) && Number(n) < end).sort()
  return Promise.all(names.map(async (n): Promise<[string, Buffer]> => [n, await readFile(path.join(dir, 'commitlog', n))]))
}

/** Every queue from its minimum: offsets, physical offsets and keys. */
async function queues(store: MessageStore): Promise<string[]> {
  const out: string[] = []
  for (let t = 0; t < 3; t++) {
    for (let q = 0; q < 4; q++) {
      const min = store.minOffset(`T${t}`, q)
      const r = await store.get({ topic: `T${t}`, queueId: q, offset: min, maxMessages: 10_000, maxBytes: 64 * 1024 * 1024 })
      out.push(`T${t}/${q} from ${min}: ${r.messages.map((m) => `${m.queueOffset}:${m.physicalOffset}:${m.keys.join()}`).join(' ')}`)
    }
  }
  return out
}

for (const flush of ['async', 'sync'] as const) {
  test(`a new replica of a master whose first files retention deleted catches up from the master's minimum while producers run (${flush})`, { timeout: 90_000 }, async () => {
    await withDirs(2, async ([md, rd]) => {
      const master = await MessageStore.open(options(md!, flush, 'master'))
      const replica = await MessageStore.open(options(rd!, flush, 'replica'))
      const ha = await HAMaster.start({ store: master })
      let follower: HAReplica | undefined
      try {
        const min = await withRetention(master)
        follower = HAReplica.start({ store: replica, masterAddress: ha.address() })
        await produce(master, 300, 400)
        await until(() => (replica.commitLogMaxOffset === master.commitLogMaxOffset ? undefined : `replica at ${replica.commitLogMaxOffset}, master at ${master.commitLogMaxOffset}`))
        assert.equal(follower.linksDropped, 0, `no link dropped (${follower.lastDropReason})`)
        assert.equal(replica.commitLogMinOffset, min, "the replica's log starts at the master's minimum")
        await replica.whenDispatched()
        assert.deepEqual(await queues(replica), await queues(master))
        await follower.stop()
        await master.flush()
        await replica.flush()
        const end = master.commitLogMaxOffset
        const mine = await logFiles(rd!, end)
        const theirs = await logFiles(md!, end)
        assert.deepEqual(mine.map(([n]) => n), theirs.map(([n]) => n), 'the same files from the minimum')
        for (let i = 0; i < mine.length; i++) assert.ok(mine[i]![1].equals(theirs[i]![1]), `${mine[i]![0]} byte for byte`)
      } finally {
        await follower?.stop()
        await ha.stop()
        await Promise.all([master.close(), replica.close()])
      }
    })
  })
}

test("a replica whose log ends below the master's minimum is refused with the reason logged at both ends; its store is untouched and the master serves the others", { timeout: 90_000 }, async () => {
  await withDirs(3, async ([md, staleDir, freshDir]) => {
    const master = await MessageStore.open(options(md!, 'async', 'master'))
    let stale = await MessageStore.open(options(staleDir!, 'async', 'replica'))
    const fresh = await MessageStore.open(options(freshDir!, 'async', 'replica'))
    const masterLog = recording()
    const staleLog = recording()
    const ha = await HAMaster.start({ store: master, logger: masterLog })
    const followers: HAReplica[] = []
    try {
      // The stale replica copies the first file, then stops following.
      const first = HAReplica.start({ store: stale, masterAddress: ha.address() })
      await produce(master, 20)
      await until(() => (stale.commitLogMaxOffset === master.commitLogMaxOffset ? undefined : 'the stale replica copies the start'))
      await first.stop()
      await stale.close()
      await withRetention(master)
      stale = await MessageStore.open(options(staleDir!, 'async', 'replica'))
      const staleEnd = stale.commitLogMaxOffset
      assert.ok(staleEnd > 0 && staleEnd < master.commitLogMinOffset)
      followers.push(HAReplica.start({ store: stale, masterAddress: ha.address(), reconnectDelayMs: 50, logger: staleLog }))
      followers.push(HAReplica.start({ store: fresh, masterAddress: ha.address() }))
      await produce(master, 50, 400)
      await until(() => (fresh.commitLogMaxOffset === master.commitLogMaxOffset ? undefined : 'the empty replica catches up'))
      await until(() => (masterLog.lines.some((l) => l.includes(`"offset":${staleEnd}`)) ? undefined : `the master logs the refusal: ${masterLog.lines.join('; ')}`))
      assert.match(masterLog.lines.find((l) => l.includes(`"offset":${staleEnd}`))!, /below this master's first CommitLog offset.*cannot catch up/)
      await until(() => (followers[0]!.linksDropped >= 2 ? undefined : 'the stale replica tries again and is refused again'))
      assert.match(followers[0]!.lastDropReason, /closed the link before sending anything/)
      assert.ok(staleLog.lines.some((l) => /closed the link before sending anything/.test(l)), staleLog.lines.join('; '))
      assert.equal(stale.commitLogMaxOffset, staleEnd, "the stale replica's store is untouched")
      assert.equal(stale.commitLogMinOffset, 0)
      // In sync once its acknowledgement of what it copied reaches the master.
      await until(() => (ha.replicas().filter((r) => r.inSync).length === 1 ? undefined : `the master serves the empty replica: ${JSON.stringify(ha.replicas())}`))
    } finally {
      for (const f of followers) await f.stop()
      await ha.stop()
      await Promise.all([master.close(), stale.close(), fresh.close()])
    }
  })
})
