import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IndexService } from '@mqts/index'

const dir = process.env.MQTS_EXAMPLE_DIR ?? mkdtempSync(join(tmpdir(), 'mqts-example-'))
// Default geometry: 5,000,000 slots and 20,000,000 entries a file (420 MB, sparse); small here.
const idx = await IndexService.open({ dir: join(dir, 'index'), maxHashSlotNum: 1024, maxIndexNum: 4096 })
// After the store's own recovery: where its CommitLog ends and whether it was closed cleanly;
// then the store re-dispatches its records from idx.indexedUpTo. A new store ends at 0.
const commitLogEnd = 0
idx.recover(commitLogEnd, true)
const now = Date.now()
idx.put({ topic: 'orders', keys: ['order-1', 'customer-7'], uniqKey: 'u-1', phyOffset: 0, size: 200, storeTimestamp: now })
idx.put({ topic: 'orders', keys: ['order-2', 'customer-7'], phyOffset: 200, size: 180, storeTimestamp: now })
const offsets = idx.query('orders', 'customer-7', { maxNum: 32, begin: now - 60_000, end: now }) // newest first; hash match only
await idx.flush() // sync the files, then the index checkpoint
await idx.deleteBelow(0) // retention: files pointing only below the CommitLog's minimum go
await idx.close()
console.log(offsets.join(' '))
