/**
 * @mqts/transport: RocketMQ's remoting model for mqts.
 *
 * ```ts
 * const transport = new InMemoryTransport()
 * const server = transport.createServer({ name: 'broker-a' })
 * server.registerProcessor(RequestCode.HEART_BEAT, () => RemotingCommand.createResponse(ResponseCode.SUCCESS))
 * await server.start()
 * const client = transport.createClient()
 * const response = await client.invoke('mem:broker-a', RemotingCommand.createRequest(RequestCode.HEART_BEAT), 3000)
 * ```
 */
export { RemotingCommand, SerializeType, COMMAND_FLAG, DEFAULT_LANGUAGE, nextOpaque } from './command.js'
export type { RemotingCommandInit } from './command.js'
export { RequestCode, ResponseCode, LanguageCode, CURRENT_VERSION, languageName } from './codes.js'
export type { RequestCodeName, ResponseCodeName, LanguageName } from './codes.js'
export { TransportError, isTransportError } from './errors.js'
export { encodeRemotingJson, parseRemotingJson } from './json-body.js'
export { AUTO_CREATE_TOPIC, DLQ_GROUP_TOPIC_PREFIX, MESSAGE_PROPERTY, NOT_ALLOWED_SEND_TOPICS, PERM, PULL_SYS_FLAG, RETRY_GROUP_TOPIC_PREFIX, SUB_ALL, dlqTopic, retryTopic, splitTagExpression } from './message-const.js'
export type { BrokerData, QueueData, TopicRouteData } from './message-const.js'
// SEND_BATCH_MESSAGE's body: its format belongs to the message (@mqts/message), kept here for the client.
export { BATCH_ENTRY, BATCH_ENTRY_FIXED_BYTES, encodeBatchBody, walkBatchBody, type BatchEntryVisitor } from '@mqts/message'
export type { BatchEntry } from '@mqts/message'
export { headerInt, headerOptionalBool, headerOptionalInt, headerOptionalString, headerString } from './headers.js'
export type { TransportErrorCode } from './errors.js'
export { encodeFrame, decodeFrame, FrameDecoder, DEFAULT_MAX_FRAME_BYTES } from './codec.js'
export { consoleLogger, silentLogger, DEFAULT_CONNECTION_LIMITS } from './remoting.js'
export type {
  Channel,
  ConnectionOptions,
  InvokeCallback,
  LifecycleStatus,
  Logger,
  RemotingAddress,
  RemotingClient,
  RemotingEvents,
  RemotingServer,
  RemotingService,
  RequestProcessor,
} from './remoting.js'
export { InMemoryTransport, InMemoryRemotingServer, InMemoryRemotingClient } from './in-memory.js'
export type { InMemoryServerOptions, InMemoryClientOptions } from './in-memory.js'
export type { ClientOptions } from './endpoint.js'
