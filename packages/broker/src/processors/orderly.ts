/**
 * LOCK_BATCH_MQ and UNLOCK_BATCH_MQ (RocketMQ's AdminBrokerProcessor lockBatchMQ/unlockBatchMQ):
 * the queue locks of orderly consumption. Body `{consumerGroup, clientId, onlyThisBroker,
 * mqSet:[{topic, brokerName, queueId}]}`; the lock answer is `{lockOKMQSet:[...]}`.
 */
import { RemotingCommand, RequestCode, ResponseCode, TransportError, encodeRemotingJson, parseRemotingJson, type RequestProcessor } from '@mqts/transport'
import type { BrokerContext } from '../context.js'
import type { MessageQueue } from '../rebalance-lock.js'

interface LockBody {
  consumerGroup: string
  clientId: string
  mqSet: MessageQueue[]
}

function lockBody(body: Buffer): LockBody {
  const json = parseRemotingJson(body) as Partial<LockBody> | null
  if (!json || typeof json.consumerGroup !== 'string' || typeof json.clientId !== 'string' || !Array.isArray(json.mqSet)) {
    throw new TransportError('BAD_BODY', 'a lock request needs consumerGroup, clientId and an mqSet array')
  }
  const mqSet = json.mqSet
    .filter((m) => m && typeof m.topic === 'string' && typeof m.brokerName === 'string' && Number.isInteger(Number(m.queueId)))
    .map((m) => ({ topic: m.topic, brokerName: m.brokerName, queueId: Number(m.queueId) }))
  return { consumerGroup: json.consumerGroup, clientId: json.clientId, mqSet }
}

export function orderlyProcessors(ctx: BrokerContext): Map<number, RequestProcessor> {
  const p = new Map<number, RequestProcessor>()
  p.set(RequestCode.LOCK_BATCH_MQ, (req) => {
    const b = lockBody(req.body)
    const locked = ctx.locks.tryLock(b.consumerGroup, b.clientId, b.mqSet)
    return RemotingCommand.createResponse(ResponseCode.SUCCESS, null, undefined, encodeRemotingJson({ lockOKMQSet: locked }))
  })
  p.set(RequestCode.UNLOCK_BATCH_MQ, (req) => {
    const b = lockBody(req.body)
    ctx.locks.unlock(b.consumerGroup, b.clientId, b.mqSet)
    return RemotingCommand.createResponse(ResponseCode.SUCCESS)
  })
  return p
}
