import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MessageStore, SCHEDULE_TOPIC, toScheduledMessage } from '@mqts/store'

const dir = process.env.MQTS_EXAMPLE_DIR ?? mkdtempSync(join(tmpdir(), 'mqts-example-'))
// Consumers see only what every in-sync replica holds: the confirm offset, set from outside.
const store = await MessageStore.open({ dir, commitLogFileSize: 16 * 1024 * 1024, confirmOffset: true })
const r = await store.put({ topic: 'orders', queueId: 0, body: 'order 4711' }) // resolves by its flush mode
const before = await store.get({ topic: 'orders', queueId: 0, offset: 0 }) // NO_MESSAGE_IN_QUEUE: not confirmed
const toReplicas = store.readCommitLog(0, 1024 * 1024, { unconfirmed: true }) // replication reads past it
store.setConfirmOffset(r.physicalOffset + r.size) // the replicas hold it
await store.whenDispatched()
const after = await store.get({ topic: 'orders', queueId: 0, offset: 0 })
// A delayed message as RocketMQ 4.x stores it: its ConsumeQueue unit's tags code is when it is due.
const d = await store.put(toScheduledMessage({ topic: 'orders', queueId: 0, body: 'later' }, 3)) // level 3: 10 s
store.setConfirmOffset(store.commitLogMaxOffset)
await store.whenDispatched()
const due = await store.get({ topic: SCHEDULE_TOPIC, queueId: 2, offset: 0, raw: true })
await store.close()
console.log(before.status, toReplicas.length === r.size, after.messages[0]!.body.toString(), due.records[0]!.tagsCode - d.storeTimestamp)
