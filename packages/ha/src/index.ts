/**
 * @mqts/ha: RocketMQ's classic HA stream. A master's CommitLog goes to its replicas over TCP,
 * byte for byte; replicas append it (the store's appendReplicated) and acknowledge their end.
 *
 * ```ts
 * const master = await HAMaster.start({ store: masterStore, port: 10912 })
 * const replica = HAReplica.start({ store: replicaStore, masterAddress: master.address() })
 * const r = await master.waitForReplicas(put.physicalOffset + put.size, 3000) // 'OK' | 'FLUSH_SLAVE_TIMEOUT' | 'SLAVE_NOT_AVAILABLE'
 * ```
 */
export { HAMaster } from './master.js'
export type { HAMasterOptions, HALogger, ReplicaInfo, SyncResult } from './master.js'
export { HAReplica } from './replica.js'
export type { HAReplicaOptions } from './replica.js'
export {
  HEADER_BYTES,
  REPORT_BYTES,
  TRANSFER_BATCH_BYTES,
  REPORT_INTERVAL_MS,
  HOUSEKEEPING_MS,
  MAX_GAP_NOT_IN_SYNC_BYTES,
  MAX_TIME_NOT_CAUGHT_UP_MS,
  MAX_FRAME_BODY_BYTES,
  HA_PORT_OFFSET,
  encodeHeader,
  encodeReport,
} from './protocol.js'
export { HAError } from './errors.js'
export type { HAErrorCode } from './errors.js'
