/**
 * RocketMQ's classic HA stream (reference section 6.1), byte for byte:
 * - replica -> master: an 8-byte big-endian long, the replica's CommitLog end, after every applied
 *   chunk and at least every REPORT_INTERVAL_MS; the first one says where to start;
 * - master -> replica: a 12-byte header, [physical offset: long][body size: int], then that many
 *   raw CommitLog bytes (at most TRANSFER_BATCH_BYTES, cut anywhere, BLANK padding included), or a
 *   header with size 0 as a heartbeat when there is nothing to send.
 * Either side drops a link silent for HOUSEKEEPING_MS.
 */
export const REPORT_BYTES = 8
export const HEADER_BYTES = 12
/** RocketMQ's haTransferBatchSize. */
export const TRANSFER_BATCH_BYTES = 32 * 1024
/** RocketMQ's haSendHeartbeatInterval. */
export const REPORT_INTERVAL_MS = 5000
/** RocketMQ's haHousekeepingInterval. */
export const HOUSEKEEPING_MS = 20_000
/** RocketMQ's haMaxGapNotInSync: a replica further behind than this is out of sync. */
export const MAX_GAP_NOT_IN_SYNC_BYTES = 256 * 1024 * 1024
/**
 * RocketMQ 5's haMaxTimeSlaveNotCatchup: an in-sync replica that has not held everything its
 * master had this long ago leaves the in-sync set.
 */
export const MAX_TIME_NOT_CAUGHT_UP_MS = 15_000
/** A body larger than this in a header is garbage: the link is dropped. */
export const MAX_FRAME_BODY_BYTES = 4 * 1024 * 1024
/** The replica waits this long before connecting again after a dropped link. */
export const RECONNECT_DELAY_MS = 1000
/** The HA port is the broker's port + 1 (RocketMQ's haListenPort default). */
export const HA_PORT_OFFSET = 1

export function encodeHeader(offset: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_BYTES)
  b.writeBigInt64BE(BigInt(offset), 0)
  b.writeInt32BE(size, 8)
  return b
}

export function encodeReport(offset: number): Buffer {
  const b = Buffer.allocUnsafe(REPORT_BYTES)
  b.writeBigInt64BE(BigInt(offset), 0)
  return b
}

/** A 64-bit offset read as a number; undefined when negative or beyond 2^53. */
export function readOffset(b: Buffer, at: number): number | undefined {
  const v = b.readBigInt64BE(at)
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) return undefined
  return Number(v)
}
