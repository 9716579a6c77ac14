import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Broker } from '@mqts/broker'
import { Producer, PushConsumer } from '@mqts/client'
import { NameServer } from '@mqts/namesrv'
import { silentLogger } from '@mqts/transport'

// A nameserver and a broker in this process (or point `namesrv` at running ones, "a:9876;b:9876").
const dir = process.env.MQTS_EXAMPLE_DIR ?? mkdtempSync(join(tmpdir(), 'mqts-example-'))
const ns = await NameServer.start({ port: 0, logger: silentLogger })
const broker = await Broker.start({ listenPort: 0, namesrvAddr: [ns.address()], storePathRootDir: dir, logger: silentLogger })
const namesrv = ns.address()

const producer = await Producer.start({ namesrv, group: 'example-producer' })
for (const [i, tags] of ['TagA', 'TagB', 'TagC'].entries()) {
  const r = await producer.send({ topic: 'Orders', body: `order ${i}`, tags, keys: [`order-${i}`] }, { shardingKey: 'customer-7' })
  console.log('sent', r.status, r.queue.queueId, r.queueOffset) // one key, one queue: in order
}

let seen = 0
let allSeen!: () => void
const done = new Promise<void>((resolve) => (allSeen = resolve))
const consumer = new PushConsumer({ namesrv, group: 'example-consumer', consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET' })
consumer.subscribe('Orders', 'TagA || TagB', async (m) => {
  console.log('got', m.tags, m.body.toString(), m.keys.join())
  if (++seen === 2) allSeen()
})
await consumer.start()
await done

await consumer.close() // commits offsets, leaves the group
await producer.close()
await broker.stop()
await ns.stop()
