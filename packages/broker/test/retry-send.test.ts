// A plain send to a retry topic (what RocketMQ's orderly consumer and a client whose send-back
// failed do): the broker moves it to %DLQ%<group> once its reconsumeTimes reaches the group's most
// retries (or the request's maxReconsumeTimes), as RocketMQ's SendMessageProcessor.handleRetryAndDLQ;
// a batch to a retry topic is refused, and so is a batch whose header properties ask for a delay
// (RocketMQ's CommitLog refuses a delayed batch: MESSAGE_ILLEGAL).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RemotingCommand, RequestCode, ResponseCode } from '@mqts/transport'
import { encodeBatchBody } from '@mqts/transport'
import { encodeProperties } from '@mqts/message'
import { T, pull, records, sendV2, withCluster } from './helpers.js'

test('a send to %RETRY%<group> whose reconsumeTimes reached the most retries is stored in %DLQ%<group>, without its DELAY; below it, in the retry topic', { timeout: 30_000 }, async () => {
  await withCluster(async (c) => {
    const send = async (reconsumeTimes: number, extra: Record<string, string> = {}): Promise<RemotingCommand> => {
      const r = await c.client.invoke(c.broker.address, sendV2('%RETRY%G', 0, `r${reconsumeTimes}`, { DELAY: '3', RECONSUME_TIME: String(reconsumeTimes) }, { j: String(reconsumeTimes), ...extra }), T)
      assert.equal(r.code, ResponseCode.SUCCESS, r.remark ?? '')
      return r
    }
    await send(2)
    await send(16)
    await send(3, { l: '3' })
    const dlq = await c.client.invoke(c.broker.address, pull('%DLQ%G', 0, 0), T)
    assert.equal(dlq.code, ResponseCode.SUCCESS, dlq.remark ?? '')
    const dead = records(dlq.body)
    assert.deepEqual(dead.map((m) => m.body.toString()), ['r16', 'r3'])
    for (const m of dead) assert.equal(m.properties.DELAY, undefined, 'a dead letter is not delayed')
    // The one below the most retries went where it was sent, held by its delay level.
    const sched = await c.client.invoke(c.broker.address, pull('SCHEDULE_TOPIC_XXXX', 2, 0), T)
    assert.equal(sched.code, ResponseCode.SUCCESS, sched.remark ?? '')
    assert.deepEqual(records(sched.body).map((m) => [m.body.toString(), m.properties.REAL_TOPIC]), [['r2', '%RETRY%G']])
    const batch = RemotingCommand.createRequest(RequestCode.SEND_BATCH_MESSAGE, { a: 'PG', b: '%RETRY%G', c: 'TBW102', d: '4', e: '0', f: '0', g: String(Date.now()), h: '0', i: '', j: '0', k: 'false', m: 'true' }, encodeBatchBody([{ body: Buffer.from('x'), flag: 0, properties: '' }]))
    const refused = await c.client.invoke(c.broker.address, batch, T)
    assert.equal(refused.code, ResponseCode.MESSAGE_ILLEGAL, refused.remark ?? '')
  })
})

test('a batch whose header properties carry a DELAY above 0 is refused with MESSAGE_ILLEGAL; 0 or none is stored', { timeout: 30_000 }, async () => {
  await withCluster(async (c) => {
    const batch = (props: string): RemotingCommand =>
      RemotingCommand.createRequest(RequestCode.SEND_BATCH_MESSAGE, { a: 'PG', b: 'Batches', c: 'TBW102', d: '4', e: '0', f: '0', g: String(Date.now()), h: '0', i: props, j: '0', k: 'false', m: 'true' }, encodeBatchBody([{ body: Buffer.from('x'), flag: 0, properties: '' }]))
    const delayed = await c.client.invoke(c.broker.address, batch(encodeProperties({ DELAY: '2' })), T)
    assert.equal(delayed.code, ResponseCode.MESSAGE_ILLEGAL, delayed.remark ?? '')
    assert.equal((await c.client.invoke(c.broker.address, batch(encodeProperties({ DELAY: '0' })), T)).code, ResponseCode.SUCCESS)
    assert.equal((await c.client.invoke(c.broker.address, batch(''), T)).code, ResponseCode.SUCCESS)
    const p = await c.client.invoke(c.broker.address, pull('Batches', 0, 0), T)
    assert.equal(records(p.body).length, 2)
  })
})
