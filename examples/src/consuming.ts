import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MessageStore } from '@mqts/store'

const dir = process.env.MQTS_EXAMPLE_DIR ?? mkdtempSync(join(tmpdir(), 'mqts-example-'))
const store = await MessageStore.open({ dir, commitLogFileSize: 16 * 1024 * 1024 })
const off = store.onMessageArrived((topic, queueId, maxOffset) => console.log('arrived', topic, queueId, maxOffset)) // wake long polls
await store.putBatch(['TagA', 'TagC', 'TagB'].map((tags) => ({ topic: 'orders', queueId: 0, body: `a ${tags} order`, tags })))

const r = await store.get({ group: 'g1', topic: 'orders', queueId: 0, offset: 0, maxMessages: 32, tags: ['TagA', 'TagB'] })
// r: { status, messages, nextOffset, minOffset, maxOffset }; status as RocketMQ's GetMessageStatus:
// FOUND, NO_MATCHED_MESSAGE, NO_MESSAGE_IN_QUEUE, OFFSET_TOO_SMALL, OFFSET_OVERFLOW_ONE,
// OFFSET_OVERFLOW_BADLY, OFFSET_FOUND_NULL, MESSAGE_WAS_REMOVING
for (const m of r.messages) console.log(m.queueOffset, m.tags, m.body.toString())
store.minOffset('orders', 0); store.maxOffset('orders', 0)
await store.offsetByTime('orders', 0, Date.now() - 3600_000) // first offset stored at or after
await store.earliestMessageTime('orders', 0) // -1 when empty
store.commitOffset('g1', 'orders', 0, r.nextOffset); store.committedOffset('g1', 'orders', 0) // -1 if never
await store.deleteExpiredFiles({ manual: true }) // retention also runs every 10 s
off()
await store.close()
