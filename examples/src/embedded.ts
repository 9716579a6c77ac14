import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MessageStore } from '@mqts/store'

const dir = process.env.MQTS_EXAMPLE_DIR ?? mkdtempSync(join(tmpdir(), 'mqts-example-'))
// Small CommitLog files for an example (the default is 1 GiB).
const store = await MessageStore.open({ dir, flush: 'sync', commitLogFileSize: 16 * 1024 * 1024 }) // or 'async' (default)
const r = await store.put({ topic: 'orders', queueId: 0, body: Buffer.from('order 4711'), tags: 'TagA', keys: ['4711'] })
// r: { status: 'PUT_OK', msgId, physicalOffset, queueOffset, storeTimestamp, size }
const rs = await store.putBatch([{ topic: 'orders', queueId: 1, body: 'a' }, { topic: 'orders', queueId: 1, body: 'b' }])
const m = await store.lookup(r.physicalOffset) // topic, queueId, queueOffset, body, tags, keys, properties, msgId, timestamps
const same = await store.viewMessage(r.msgId) // decodes the offset message id
await store.close()
console.log(r.status, rs.length, m.body.toString(), same.keys.join(' '))
