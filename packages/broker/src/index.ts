/**
 * @mqts/broker: a RocketMQ 4.x broker on the mqts store.
 *
 * ```ts
 * const broker = await Broker.start({ namesrvAddr: ['127.0.0.1:9876'], storePathRootDir: './data/store' })
 * console.log(broker.address) // registered with the nameservers; clients dial it
 * await broker.stop()
 * ```
 */
export { Broker } from './broker.js'
export type { BrokerOptions } from './broker.js'
export { DEFAULT_BROKER_CONFIG, DEFAULT_BROKER_PORT, parseBrokerConf, resolveBrokerConfig } from './config.js'
export type { BrokerConfig, BrokerRole, FlushDiskType } from './config.js'
export { TopicConfigManager, SYSTEM_TOPIC, retryTopic, dlqTopic, TOPICS_FILE, MAX_QUEUES_PER_TOPIC, permProblem, queueNumsProblem } from './topic-config.js'
export { ClientManager } from './client-manager.js'
export type { HeartbeatData, ConsumerData, SubscriptionData } from './client-manager.js'
export { PULL_SYS_FLAG, SEND_V2_KEY, MESSAGE_PROPERTY } from './protocol.js'
export { readSendHeader } from './processors/send.js'
export { decodeBatchBody } from './processors/batch.js'
export { parseTagExpression, pullAnswer } from './processors/pull.js'
export { BrokerError } from './errors.js'
export type { BrokerErrorCode } from './errors.js'
