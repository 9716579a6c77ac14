// What the broker refuses as RocketMQ does: UPDATE_AND_CREATE_TOPIC with a perm that is not one of
// PermName's (0-7) or queue counts out of range, and a send whose DELAY property is not a Java int
// (RocketMQ's Integer.parseInt throws and the send answers SYSTEM_ERROR). A DELAY of 0 or below is
// no delay; one above the highest level is the highest.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RemotingCommand, RequestCode, ResponseCode } from '@mqts/transport'
import { T, createTopic, route, withCluster } from './helpers.js'

test('UPDATE_AND_CREATE_TOPIC refuses a perm outside 0-7 and queue counts out of range; nothing is created', { timeout: 30_000 }, async () => {
  await withCluster(async (c) => {
    for (const perm of [99, 8, -1, 16]) {
      const r = await createTopic(c, 'BadPerm', 4, 4, perm)
      assert.equal(r.code, ResponseCode.NO_PERMISSION, `perm ${perm}: ${r.remark}`)
      assert.match(r.remark ?? '', new RegExp(`topicPermission value: ${perm} is invalid`))
    }
    for (const [read, write] of [
      [-1, 4],
      [4, -1],
      [1025, 4],
      [4, 1025],
      [0, 0],
    ] as const) {
      const r = await createTopic(c, 'BadQueues', read, write)
      assert.equal(r.code, ResponseCode.SYSTEM_ERROR, `read ${read} write ${write}`)
      assert.match(r.remark ?? '', new RegExp(`readQueueNums ${read} and writeQueueNums ${write}`))
    }
    const all = await c.client.invoke(c.broker.address, RemotingCommand.createRequest(RequestCode.GET_ALL_TOPIC_CONFIG), T)
    const table = JSON.parse(all.body.toString()).topicConfigTable
    assert.equal(table.BadPerm, undefined)
    assert.equal(table.BadQueues, undefined)
    // Every PermName value is taken (7 = read, write and inherit, as TBW102 has).
    for (let perm = 0; perm < 8; perm++) assert.equal((await createTopic(c, `Perm${perm}`, 1, 1, perm)).code, ResponseCode.SUCCESS, `perm ${perm}`)
    await c.broker.registerAll()
    assert.equal((await route(c, 'Perm7'))?.queueDatas[0]?.perm, 7)
  })
})
