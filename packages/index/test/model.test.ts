// Seeded model check: random puts (few distinct keys, so chains are long and hashes collide,
// keys repeated within a record), flushes, reopenings, cuts of the CommitLog end (recover with
// clean true, and false, which also cuts at the last flush) and retention, on files of 16 slots and 49 entries. After every step each
// key's query must equal what a plain list of (keyHash, offset) entries predicts, newest first,
// and indexedUpTo must match the model. SEED replays.
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { test } from 'node:test'
import { IndexService } from '../src/index.js'
import { INDEX_ENTRY, entryPosition, indexKeyHash, slotPosition } from '../src/internal.js'
import { seededRandom } from '@mqts/common'
import { tempDir } from './helpers.js'

const SEED = process.env.SEED ? Number(process.env.SEED) : Date.now() % 1_000_000
const GEOMETRY = { maxHashSlotNum: 16, maxIndexNum: 50 }
const KEYS = Array.from({ length: 24 }, (_, i) => `key-${i}`).concat(['Aa', 'BB']) // "Aa" and "BB" share a hash
const TOPICS = ['T', 'U']

interface Entry {
  hash: number
  phyOffset: number
}

test(`model check: random puts, cuts, reopens and retention (seed ${SEED})`, { timeout: 20_000 }, async () => {
  const random = seededRandom(SEED)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!
  const { dir, cleanup } = await tempDir('mqts-index-model-')
  const open = (): Promise<IndexService> => IndexService.open({ dir: path.join(dir, 'index'), ...GEOMETRY, maxOpenFiles: 2 })
  let idx = await open()
  // The model: entries in insertion order, the end of the simulated CommitLog, retention floor.
  let entries: Entry[] = []
  let end = 0
  /** What the last flush (or close) made durable: recover(…, false) cuts there too. */
  let durable = 0
  let minOffset = 0
  let op = ''
  const check = (step: number): void => {
    for (const topic of TOPICS) {
      for (const key of KEYS) {
        const hash = indexKeyHash(topic, key)
        // Each record once, however many of its keys share the hash.
        const expected = [...new Set(entries.filter((e) => e.hash === hash && e.phyOffset >= minOffset).map((e) => e.phyOffset).reverse())]
        const got = idx.query(topic, key, { maxNum: 10_000 }).filter((o) => o >= minOffset)
        assert.deepEqual(got, expected, `seed ${SEED} step ${step} (${op}): ${topic}#${key}`)
      }
    }
  }
  try {
    for (let step = 0; step < 200; step++) {
      const r = random()
      op = r < 0.7 ? 'put' : r < 0.8 ? 'flush' : r < 0.88 ? 'cut' : r < 0.95 ? 'reopen' : 'retention'
      if (r < 0.7) {
        // A few records.
        for (let n = 1 + Math.floor(random() * 8); n > 0; n--) {
          const topic = pick(TOPICS)
          const keys = Array.from({ length: Math.floor(random() * 4) }, () => (random() < 0.1 ? '' : pick(KEYS)))
          const uniqKey = random() < 0.5 ? pick(KEYS) : undefined
          const size = 10 + Math.floor(random() * 90)
          idx.put({ topic, keys, uniqKey, phyOffset: end, size, storeTimestamp: 1_700_000_000_000 + end })
          for (const k of [...(uniqKey ? [uniqKey] : []), ...keys.filter((k) => k.length > 0)]) entries.push({ hash: indexKeyHash(topic, k), phyOffset: end })
          end += size
        }
        assert.equal(idx.indexedUpTo, end)
      } else if (r < 0.8) {
        await idx.flush()
        durable = end
      } else if (r < 0.88) {
        // The CommitLog loses its tail back to a record boundary at or after the newest entry
        // below the cut: recover with that end.
        const boundaries = [...new Set(entries.map((e) => e.phyOffset))].filter((o) => o >= minOffset)
        const cut = boundaries.length > 0 && random() < 0.8 ? pick(boundaries) : end
        const clean = random() < 0.5
        idx.recover(cut, clean)
        end = Math.min(end, cut, clean ? end : durable)
        durable = Math.min(durable, end)
        entries = entries.filter((e) => e.phyOffset < end)
        assert.equal(idx.indexedUpTo, end, `seed ${SEED} step ${step}: recover(${cut}, ${clean})`)
      } else if (r < 0.95) {
        await idx.close()
        durable = end
        idx = await open()
        idx.recover(end, true)
        assert.equal(idx.indexedUpTo, end, `seed ${SEED} step ${step}: reopen`)
      } else {
        // Retention below some offset: whole files go, the rest stay queryable.
        const floor = Math.floor(end * random() * 0.5)
        await idx.deleteBelow(floor)
        const kept = idx.files
        // The first kept file may begin with a record whose other keys were in a deleted file:
        // leave that record out of the comparison.
        minOffset = kept.length > 0 ? Math.max(minOffset, kept[0]!.beginPhyOffset + 1) : minOffset
        entries = entries.filter((e) => e.phyOffset >= minOffset)
      }
      check(step)
    }
  } finally {
    await idx.close()
    await cleanup()
  }
})

/** Flips bit `bit` of the int at `position` of `file`. */
function flipBit(file: string, position: number, bit: number): void {
  const fd = fs.openSync(file, 'r+')
  try {
    const b = Buffer.alloc(4)
    fs.readSync(fd, b, 0, 4, position)
    b.writeInt32BE(b.readInt32BE(0) ^ (1 << bit))
    fs.writeSync(fd, b, 0, 4, position)
  } finally {
    fs.closeSync(fd)
  }
}

// The same kind of records, then flipped bits in every file: in links only (prevIndex, slots), a
// query may miss entries but never answers an offset that was not put for the key's hash; with any
// field damaged, it still answers distinct offsets inside the log. Either way it returns (a walk
// that loops would hang here; damage.test.ts checks that case in a worker).
for (const fields of ['links', 'any'] as const) {
  test(`model check: queries over files with flipped bits in ${fields} (seed ${SEED})`, { timeout: 20_000 }, async () => {
    const random = seededRandom(SEED + (fields === 'any' ? 1 : 0))
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!
    const { dir, cleanup } = await tempDir('mqts-index-model-damage-')
    const open = (): Promise<IndexService> => IndexService.open({ dir: path.join(dir, 'index'), ...GEOMETRY, maxOpenFiles: 2 })
    let idx = await open()
    const entries: Entry[] = []
    let end = 0
    try {
      for (let n = 0; n < 300; n++) {
        const topic = pick(TOPICS)
        const keys = Array.from({ length: Math.floor(random() * 4) }, () => pick(KEYS))
        const uniqKey = random() < 0.5 ? pick(KEYS) : undefined
        const size = 10 + Math.floor(random() * 90)
        idx.put({ topic, keys, uniqKey, phyOffset: end, size, storeTimestamp: 1_700_000_000_000 + end })
        for (const k of [...(uniqKey ? [uniqKey] : []), ...keys]) entries.push({ hash: indexKeyHash(topic, k), phyOffset: end })
        end += size
      }
      const files = idx.files
      await idx.close()
      const flips: string[] = []
      for (const f of files) {
        const file = path.join(dir, 'index', f.name)
        for (let d = 0; d < 3; d++) {
          const n = 1 + Math.floor(random() * (f.indexCount - 1))
          const field = fields === 'links' ? pick(['prevIndex', 'slot'] as const) : pick(['prevIndex', 'slot', 'keyHash', 'timeDiff', 'phyOffset'] as const)
          const bit = Math.floor(random() * 32)
          const at =
            field === 'slot'
              ? slotPosition(Math.floor(random() * GEOMETRY.maxHashSlotNum))
              : entryPosition(GEOMETRY.maxHashSlotNum, n) + INDEX_ENTRY[field] + (field === 'phyOffset' ? pick([0, 4]) : 0)
          flipBit(file, at, bit)
          flips.push(`${f.name} ${field} ${field === 'slot' ? '' : `entry ${n} `}bit ${bit}`)
        }
      }
      idx = await open()
      idx.recover(end, true)
      for (const topic of TOPICS) {
        for (const key of KEYS) {
          const hash = indexKeyHash(topic, key)
          const got = idx.query(topic, key, { maxNum: 10_000 })
          const context = `seed ${SEED} ${topic}#${key} after ${flips.join(', ')}`
          assert.equal(new Set(got).size, got.length, `${context}: repeats in ${got}`)
          assert.ok(got.every((o) => Number.isSafeInteger(o) && o >= 0 && o < end), `${context}: ${got} outside [0, ${end})`)
          if (fields === 'links') {
            const put = new Set(entries.filter((e) => e.hash === hash).map((e) => e.phyOffset))
            assert.ok(got.every((o) => put.has(o)), `${context}: ${got} not all put`)
          }
        }
      }
    } finally {
      await idx.close()
      await cleanup()
    }
  })
}
