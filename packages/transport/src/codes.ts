/**
 * Wire codes shared by every mqts component: request codes, response codes and language codes.
 * Numbers are RocketMQ's so a Java client or broker can talk to ours.
 */

/** Request codes used by broker and nameserver. */
export const RequestCode = {
  SEND_MESSAGE: 10,
  PULL_MESSAGE: 11,
  QUERY_MESSAGE: 12,
  QUERY_CONSUMER_OFFSET: 14,
  UPDATE_CONSUMER_OFFSET: 15,
  UPDATE_AND_CREATE_TOPIC: 17,
  GET_ALL_TOPIC_CONFIG: 21,
  SEARCH_OFFSET_BY_TIMESTAMP: 29,
  GET_MAX_OFFSET: 30,
  GET_MIN_OFFSET: 31,
  GET_EARLIEST_MSG_STORETIME: 32,
  VIEW_MESSAGE_BY_ID: 33,
  HEART_BEAT: 34,
  UNREGISTER_CLIENT: 35,
  CONSUMER_SEND_MSG_BACK: 36,
  END_TRANSACTION: 37,
  GET_CONSUMER_LIST_BY_GROUP: 38,
  CHECK_TRANSACTION_STATE: 39,
  NOTIFY_CONSUMER_IDS_CHANGED: 40,
  LOCK_BATCH_MQ: 41,
  UNLOCK_BATCH_MQ: 42,
  GET_ALL_CONSUMER_OFFSET: 43,
  GET_ALL_DELAY_OFFSET: 45,
  PUT_KV_CONFIG: 100,
  GET_KV_CONFIG: 101,
  DELETE_KV_CONFIG: 102,
  REGISTER_BROKER: 103,
  UNREGISTER_BROKER: 104,
  GET_ROUTEINFO_BY_TOPIC: 105,
  GET_BROKER_CLUSTER_INFO: 106,
  GET_ALL_SUBSCRIPTIONGROUP_CONFIG: 201,
  WIPE_WRITE_PERM_OF_BROKER: 205,
  GET_ALL_TOPIC_LIST_FROM_NAMESERVER: 206,
  DELETE_TOPIC_IN_BROKER: 215,
  DELETE_TOPIC_IN_NAMESRV: 216,
  REGISTER_TOPIC_IN_NAMESRV: 217,
  GET_KVLIST_BY_NAMESPACE: 219,
  GET_TOPICS_BY_CLUSTER: 224,
  GET_SYSTEM_TOPIC_LIST_FROM_NS: 304,
  SEND_MESSAGE_V2: 310,
  GET_UNIT_TOPIC_LIST: 311,
  GET_HAS_UNIT_SUB_TOPIC_LIST: 312,
  GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST: 313,
  UPDATE_NAMESRV_CONFIG: 318,
  GET_NAMESRV_CONFIG: 319,
  SEND_BATCH_MESSAGE: 320,
  QUERY_DATA_VERSION: 322,
  ADD_WRITE_PERM_OF_BROKER: 327,
  BROKER_HEARTBEAT: 904,
  CONTROLLER_ALTER_SYNC_STATE_SET: 1001,
  CONTROLLER_ELECT_MASTER: 1002,
  CONTROLLER_REGISTER_BROKER: 1003,
  CONTROLLER_GET_REPLICA_INFO: 1004,
  CONTROLLER_GET_SYNC_STATE_DATA: 1006,
  GET_BROKER_EPOCH_CACHE: 1007,
  NOTIFY_BROKER_ROLE_CHANGED: 1008,
} as const
export type RequestCodeName = keyof typeof RequestCode

/** Response codes; 0-4 are the remoting layer's own (RocketMQ's RemotingSysResponseCode). */
export const ResponseCode = {
  SUCCESS: 0,
  SYSTEM_ERROR: 1,
  SYSTEM_BUSY: 2,
  REQUEST_CODE_NOT_SUPPORTED: 3,
  TRANSACTION_FAILED: 4,
  FLUSH_DISK_TIMEOUT: 10,
  SLAVE_NOT_AVAILABLE: 11,
  FLUSH_SLAVE_TIMEOUT: 12,
  MESSAGE_ILLEGAL: 13,
  SERVICE_NOT_AVAILABLE: 14,
  VERSION_NOT_SUPPORTED: 15,
  NO_PERMISSION: 16,
  TOPIC_NOT_EXIST: 17,
  TOPIC_EXIST_ALREADY: 18,
  PULL_NOT_FOUND: 19,
  PULL_RETRY_IMMEDIATELY: 20,
  PULL_OFFSET_MOVED: 21,
  QUERY_NOT_FOUND: 22,
  SUBSCRIPTION_PARSE_FAILED: 23,
  SUBSCRIPTION_NOT_EXIST: 24,
  SUBSCRIPTION_NOT_LATEST: 25,
  SUBSCRIPTION_GROUP_NOT_EXIST: 26,
  FILTER_DATA_NOT_EXIST: 27,
  FILTER_DATA_NOT_LATEST: 28,
  INVALID_PARAMETER: 29,
  TRANSACTION_SHOULD_COMMIT: 200,
  TRANSACTION_SHOULD_ROLLBACK: 201,
  TRANSACTION_STATE_UNKNOW: 202,
  CONSUMER_NOT_ONLINE: 206,
  NO_MESSAGE: 208,
  FLOW_CONTROL: 215,
  GO_AWAY: 1500,
  CONTROLLER_FENCED_MASTER_EPOCH: 2000,
  CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH: 2001,
  CONTROLLER_INVALID_MASTER: 2002,
  CONTROLLER_INVALID_REPLICAS: 2003,
  CONTROLLER_MASTER_NOT_AVAILABLE: 2004,
  CONTROLLER_INVALID_REQUEST: 2005,
  CONTROLLER_BROKER_NOT_ALIVE: 2006,
  CONTROLLER_NOT_LEADER: 2007,
} as const
export type ResponseCodeName = keyof typeof ResponseCode

/** Sender's language, one byte in the ROCKETMQ header and the enum name in the JSON header. */
export const LanguageCode = {
  JAVA: 0,
  CPP: 1,
  DOTNET: 2,
  PYTHON: 3,
  DELPHI: 4,
  ERLANG: 5,
  RUBY: 6,
  OTHER: 7,
  HTTP: 8,
  GO: 9,
  PHP: 10,
  OMS: 11,
  RUST: 12,
  NODE_JS: 13,
} as const
export type LanguageName = keyof typeof LanguageCode

const LANGUAGE_NAMES: readonly string[] = Object.keys(LanguageCode)

/** The enum name for a language code, or undefined for a code RocketMQ does not define. */
export function languageName(code: number): LanguageName | undefined {
  return LANGUAGE_NAMES[code] as LanguageName | undefined
}

/** Parses a language sent as an enum name or a number; unknown names map to OTHER. */
export function parseLanguage(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 255) return value
  if (typeof value === 'string') {
    // Own properties only: "constructor" or "toString" must not resolve to Object.prototype's.
    return Object.hasOwn(LanguageCode, value) ? (LanguageCode as Record<string, number>)[value]! : LanguageCode.OTHER
  }
  return undefined
}

/**
 * `version` we send: the ordinal of RocketMQ V5_3_3. A Java nameserver answers route queries with
 * standard (quoted-key) JSON only to versions >= 401, so anything lower would get invalid JSON.
 */
export const CURRENT_VERSION = 479
