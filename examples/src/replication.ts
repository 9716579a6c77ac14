import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MessageStore } from '@mqts/store'

const dir = process.env.MQTS_EXAMPLE_DIR ?? mkdtempSync(join(tmpdir(), 'mqts-example-'))
// Both stores need the same commitLogFileSize (and maxMessageSize); small files here.
const options = { flush: 'sync' as const, commitLogFileSize: 1024 * 1024, maxHashSlotNum: 1024, maxIndexNum: 4096 }
const master = await MessageStore.open({ ...options, dir: join(dir, 'master') })
const replica = await MessageStore.open({ ...options, dir: join(dir, 'replica'), role: 'replica' })
for (let i = 0; i < 3; i++) await master.put({ topic: 'orders', queueId: 0, body: `order ${i}`, keys: `order-${i}` })
// The HA link: ship the master's bytes from the replica's end, in chunks that may cut a record.
for (let at = replica.replicaEndOffset; at < master.commitLogMaxOffset; at = replica.replicaEndOffset) {
  await replica.appendReplicated(at, master.readCommitLog(at, 100))
}
const acked = replica.commitLogMaxOffset // what the replica reports to its master: whole records on disk
// Failover: the old master stops taking puts, the replica takes over after the last record.
await master.setRole('replica')
await replica.setRole('master')
const r = await replica.put({ topic: 'orders', queueId: 0, body: 'order 3' })
const [found] = await replica.queryByKey('orders', 'order-1')
await master.close()
await replica.close()
console.log(acked === r.physicalOffset, r.queueOffset, found?.body.toString())
