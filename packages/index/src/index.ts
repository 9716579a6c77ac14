/**
 * @mqts/index: RocketMQ's persistent message-key index (IndexFile), byte-compatible.
 *
 * ```ts
 * const idx = await IndexService.open({ dir: 'store/index' })
 * idx.recover(commitLogEnd, clean)
 * idx.put({ topic: 'orders', keys: ['order-1'], phyOffset, size, storeTimestamp })
 * const offsets = idx.query('orders', 'order-1') // newest first; compare the real key
 * await idx.flush()
 * await idx.close()
 * ```
 */
export { IndexService } from './index-service.js'
export type { IndexServiceOptions, IndexRecord, QueryOptions, IndexStatus, IndexRecoveryReport } from './index-service.js'
export type { IndexFileInfo } from './index-file.js'
export { IndexError } from './errors.js'
export type { IndexErrorCode } from './errors.js'
export { INDEX_DEFAULTS, indexFileSize, indexKeyHash, javaStringHashCode } from './format.js'
