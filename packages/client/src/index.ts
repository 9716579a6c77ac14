/**
 * @mqts/client: a RocketMQ 4.x client for Node.js over the remoting protocol; it talks to
 * mqts's nameserver and broker and to RocketMQ's own.
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
