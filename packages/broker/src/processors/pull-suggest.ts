/**
 * Which broker of the group a consumer should pull from next (the pull answer's
 * suggestWhichBrokerId), and whether a replica serves a pull at all: RocketMQ's
 * PullMessageProcessor rules. With `slaveReadEnable` off every answer says the master (0) and a
 * replica refuses reads; with it on, a consumer whose next message lies further behind the
 * CommitLog's end than `accessMessageInMemoryMaxRatio` % of the machine's memory (its data is
 * likely no longer in the page cache) is sent to the group's `whichBrokerWhenConsumeSlowly`, any
 * other to the group's `brokerId`.
 */
import { totalmem } from 'node:os'
import type { BrokerRole } from '../config.js'

/** The master's broker id (RocketMQ's MixAll.MASTER_ID). */
export const MASTER_BROKER_ID = 0

export interface SuggestInput {
  role: BrokerRole
  slaveReadEnable: boolean
  accessMessageInMemoryMaxRatio: number
  /** The CommitLog's end and the physical offset of the last record the pull read (undefined: none read). */
  commitLogMaxOffset: number
  lastPhysicalOffset: number | undefined
  /** The subscription group's settings. */
  brokerId: number
  whichBrokerWhenConsumeSlowly: number
  /** The machine's memory in bytes (os.totalmem() unless a test says otherwise). */
  memoryBytes?: number
}

export interface Suggestion {
  suggestWhichBrokerId: number
  /** A replica with slaveReadEnable off answers PULL_RETRY_IMMEDIATELY instead of the records. */
  refuse: boolean
}

/** The backlog beyond which a consumer counts as slow: a share of the machine's memory. */
export function slowConsumerBytes(ratioPercent: number, memoryBytes = totalmem()): number {
  return Math.floor((memoryBytes * ratioPercent) / 100)
}

export function suggestBroker(input: SuggestInput): Suggestion {
  if (!input.slaveReadEnable) return { suggestWhichBrokerId: MASTER_BROKER_ID, refuse: input.role === 'SLAVE' }
  const slow = input.lastPhysicalOffset !== undefined && input.commitLogMaxOffset - input.lastPhysicalOffset > slowConsumerBytes(input.accessMessageInMemoryMaxRatio, input.memoryBytes)
  return { suggestWhichBrokerId: slow ? input.whichBrokerWhenConsumeSlowly : input.brokerId, refuse: false }
}
