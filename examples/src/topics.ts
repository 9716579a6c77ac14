import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MessageStore, StoreError } from '@mqts/store'

const dir = process.env.MQTS_EXAMPLE_DIR ?? mkdtempSync(join(tmpdir(), 'mqts-example-'))
// Back-pressure bounds (the defaults): appends waiting on the disk, and their bytes.
const store = await MessageStore.open({ dir, commitLogFileSize: 16 * 1024 * 1024, maxPendingAppends: 10_000, maxPendingAppendBytes: 128 * 1024 * 1024 })
await store.putBatch([0, 1, 2].map((queueId) => ({ topic: 'orders', queueId, body: `order ${queueId}` })))
await store.put({ topic: 'audit', queueId: 0, body: 'checked' })
store.commitOffset('g1', 'orders', 0, 1)
console.log(JSON.stringify(store.topics())) // sorted: [{ topic, queueIds }]
await store.deleteTopic('orders') // its ConsumeQueues and consumer offsets go, its records stay until retention
const again = await store.put({ topic: 'orders', queueId: 0, body: 'new order' })
console.log(again.queueOffset, store.committedOffset('g1', 'orders', 0), store.maxOffset('orders', 1))
// On a stalled disk a put past the bounds fails at once: a broker answers SYSTEM_BUSY.
const answer = (err: unknown): string => (err instanceof StoreError && err.code === 'BUSY' ? 'SYSTEM_BUSY' : 'SYSTEM_ERROR')
console.log(answer(new StoreError('BUSY', 'example')))
await store.close()
