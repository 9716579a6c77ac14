/**
 * @mqts/namesrv: RocketMQ's NameServer. Brokers register with it, clients ask it for routes.
 *
 * ```ts
 * const ns = await NameServer.start({ port: 9876 })
 * console.log(ns.address()) // "127.0.0.1:9876": give it to brokers and clients
 * await ns.stop()
 * ```
 */
export { NameServer, KV_CONFIG_FILE } from './namesrv.js'
export type { NameServerOptions } from './namesrv.js'
export { RouteInfoManager } from './route-info.js'
export type { RegisterBrokerRequest, RegisterBrokerResult, RouteInfoOptions } from './route-info.js'
export { KvConfigManager } from './kv-config.js'
export {
  PERM,
  DEFAULT_PERM,
  MASTER_ID,
  HEADER,
  DEFAULT_NAMESRV_PORT,
  BROKER_REGISTER_INTERVAL_MS,
  BROKER_CHANNEL_EXPIRED_MS,
  SCAN_NOT_ACTIVE_BROKER_INTERVAL_MS,
  NAMESPACE_ORDER_TOPIC_CONFIG,
  bodyCrc32,
  decodeRegisterBrokerBody,
} from './protocol.js'
export type { BrokerData, ClusterInfo, DataVersion, QueueData, RegisterBrokerBody, TopicConfig, TopicRouteData } from './protocol.js'
export { NamesrvError } from './errors.js'
export type { NamesrvErrorCode } from './errors.js'
