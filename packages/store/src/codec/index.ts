/**
 * On-disk formats and their constants, byte-compatible with Apache RocketMQ 4.x, one module per
 * record: the CommitLog record (and its dispatch view), message properties, message ids, hosts,
 * the ConsumeQueue unit, the checkpoint. docs/design/storage-format.md draws every byte.
 */
export { javaStringHashCode, readI64, writeI64, writeU64 } from '@mqts/common'
export * from './record.js'
export * from './dispatch-view.js'
export * from './properties.js'
export * from './message-id.js'
export * from './host.js'
export * from './consume-queue-unit.js'
export * from './checkpoint.js'
export * from './schedule.js'
