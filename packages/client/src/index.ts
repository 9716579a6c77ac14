/**
 * @mqts/client: a RocketMQ 4.x client for Node.js (producer, pull consumer, push consumer) over
 * the remoting protocol; it talks to mqts's nameserver and broker and to RocketMQ's own.
 *
 * ```ts
 * const producer = await Producer.start({ namesrv: '127.0.0.1:9876', group: 'PG' })
 * await producer.send({ topic: 'Orders', body: 'hello', tags: 'TagA' })
 * const consumer = new PushConsumer({ namesrv: '127.0.0.1:9876', group: 'CG' })
 * consumer.subscribe('Orders', 'TagA || TagB', async (m) => console.log(m.body.toString()))
 * await consumer.start()
 * ```
 *
 * Pulled records are decoded with `decodeRecord` of @mqts/message, the store's own record codec.
 */
export { ClientError, isClientError } from './errors.js'
export type { ClientErrorCode } from './errors.js'
export { ClientInstance } from './client-instance.js'
export type { ClientOptions } from './client-instance.js'
export { NamesrvSelector, parseNamesrvList } from './namesrv-selector.js'
export { LatencyFaultTolerance, LATENCY_MAX_MS, NOT_AVAILABLE_MS } from './fault-tolerance.js'
export { compareQueues, publishQueues, subscribeQueues, QueueChooser } from './route.js'
export type { MessageQueue, TopicRouteData } from './route.js'
export { PROPERTY, CLIENT_DEFAULTS, retryTopic } from './constants.js'
export { decodeMessages } from './message.js'
export { UniqueIdGenerator } from '@mqts/common'
export type { Message, MessageExt } from './message.js'
export { Producer } from './producer.js'
export { encodeBatchBody } from '@mqts/transport'
export type { ProducerOptions, SendOptions, SendResult, SendStatus } from './producer.js'
export { selectByHash } from './selector.js'
export type { QueueSelector } from './selector.js'
export { parseSubscription, matchesTag } from './expression.js'
export type { Subscription } from './expression.js'
export { allocateAveragely } from './allocate.js'
export { PullConsumer } from './pull-consumer.js'
export type { PullConsumerOptions, PullOptions, MessagesOptions } from './pull-consumer.js'
export type { PullResult, PullStatus } from './pull-api.js'
export { PushConsumer, ConsumeResult } from './push-consumer.js'
export type { PushConsumerOptions, MessageHandler, MessageModel, ConsumeFromWhere } from './push-consumer.js'
export { LocalOffsetStore, RemoteOffsetStore, LOCAL_OFFSET_FILE } from './offset-store.js'
export type { OffsetStore } from './offset-store.js'
