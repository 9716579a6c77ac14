/**
 * Scheduled (delayed) messages as RocketMQ 4.x stores them. A message with a delay level is stored
 * under SCHEDULE_TOPIC, queue id level - 1, with its real topic and queue id in the REAL_TOPIC and
 * REAL_QID properties and its level in DELAY; its ConsumeQueue unit's tags code is not the tags'
 * hash but the delivery time: store time + the level's delay (CommitLog.checkMessageAndReturnSize,
 * ScheduleMessageService.computeDeliverTimestamp). The scheduler reads the 20-byte units only.
 *
 * The rule for the tags code, exactly as RocketMQ's dispatch: only under SCHEDULE_TOPIC and only
 * with a DELAY property; a level above the highest is the highest; a level of 0 or below keeps
 * the tags hash. A DELAY that is not a Java int makes RocketMQ's dispatch fail on the record; the
 * store refuses such a put (put-prepare.ts) and a dispatch that meets one keeps the tags hash.
 */
import { StoreError } from '../errors.js'
import { PROPERTY, decodeProperties } from '@mqts/message'
import { SYSFLAG } from './record.js'

/** RocketMQ's RMQ_SYS_SCHEDULE_TOPIC. */
export const SCHEDULE_TOPIC = 'SCHEDULE_TOPIC_XXXX'

/** RocketMQ's default messageDelayLevel: 18 levels. */
export const DEFAULT_MESSAGE_DELAY_LEVEL = '1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h'

/** The units a level may use (ScheduleMessageService.parseDelayLevel's table), in ms. */
export const DELAY_TIME_UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** One level: a count of one unit. Levels are separated by single spaces, as RocketMQ splits them. */
const LEVEL_PATTERN = /^(\d+)([smhd])$/

/**
 * The delays of a messageDelayLevel string in ms, level 1 first; a string that says what is wrong
 * when it does not parse (empty, a token without a unit or with a sign, a delay past 2^53 ms).
 */
export function parseDelayLevels(text: string): number[] | string {
  if (text.length === 0) return 'it is empty'
  const levels: number[] = []
  for (const [i, token] of text.split(' ').entries()) {
    const m = LEVEL_PATTERN.exec(token)
    if (!m) return `level ${i + 1} is ${JSON.stringify(token)}: a level is a whole number and a unit (s, m, h or d), one space between levels`
    const ms = Number(m[1]) * DELAY_TIME_UNIT_MS[m[2]!]!
    if (!Number.isSafeInteger(ms)) return `level ${i + 1} (${token}) is longer than 2^53 ms`
    levels.push(ms)
  }
  return levels
}

/** The default levels in ms. */
export const DEFAULT_DELAY_LEVELS_MS: readonly number[] = parseDelayLevels(DEFAULT_MESSAGE_DELAY_LEVEL) as number[]

const JAVA_INT_PATTERN = /^[+-]?\d+$/

/** Java's Integer.parseInt for ASCII digits: the value, or undefined where Java throws. */
export function parseJavaInt(text: string): number | undefined {
  if (!JAVA_INT_PATTERN.test(text)) return undefined
  const n = Number(text)
  return n >= -(2 ** 31) && n <= 2 ** 31 - 1 ? n : undefined
}

/**
 * The tags code of a SCHEDULE_TOPIC record whose DELAY property is `level` (its text), stored at
 * `storeTimestamp`: the delivery time, or undefined when the tags hash stays (level 0 or below, or
 * not a Java int). Levels above the last are the last.
 */
export function deliverTagsCode(level: string, storeTimestamp: number, levelsMs: readonly number[]): number | undefined {
  const n = parseJavaInt(level)
  if (n === undefined) return undefined
  const clamped = Math.min(n, levelsMs.length)
  if (clamped <= 0) return undefined
  return storeTimestamp + levelsMs[clamped - 1]!
}

/** deliverTagsCode of a record's encoded properties (the append's fast path has them as a string). */
export function deliverTagsCodeOfProperties(properties: string, storeTimestamp: number, levelsMs: readonly number[]): number | undefined {
  const level = decodeProperties(properties)[PROPERTY.DELAY]
  return level === undefined ? undefined : deliverTagsCode(level, storeTimestamp, levelsMs)
}

/** What toScheduledMessage rewrites: the fields of a PutMessage it reads and sets. */
export interface SchedulableMessage {
  topic: string
  queueId: number
  properties?: Record<string, string>
  sysFlag?: number
}

/**
 * The message as RocketMQ 4.x's CommitLog.putMessage stores a message with delay level `level`:
 * under SCHEDULE_TOPIC, queue id level - 1, with REAL_TOPIC, REAL_QID and DELAY set; a level above
 * `maxLevel` is `maxLevel`. A level of 0 or below, or a transaction's prepared or rollback half,
 * is not delayed, nor is a message already under SCHEDULE_TOPIC: the message comes back as it is
 * (a new object otherwise; the given one is not changed). INVALID_ARGUMENT for a level that is not an integer or a maxLevel below 1.
 */
export function toScheduledMessage<M extends SchedulableMessage>(message: M, level: number, maxLevel: number = DEFAULT_DELAY_LEVELS_MS.length): M {
  if (!Number.isSafeInteger(level)) throw new StoreError('INVALID_ARGUMENT', `level must be an integer, got ${typeof level === 'string' ? JSON.stringify(level) : String(level)}`)
  if (!Number.isSafeInteger(maxLevel) || maxLevel < 1) throw new StoreError('INVALID_ARGUMENT', `maxLevel must be a positive integer, got ${typeof maxLevel === 'string' ? JSON.stringify(maxLevel) : String(maxLevel)}`)
  const tx = (message.sysFlag ?? 0) & SYSFLAG.TRANSACTION_MASK
  // Already scheduled: its REAL_TOPIC and REAL_QID must stay.
  if (level <= 0 || message.topic === SCHEDULE_TOPIC || (tx !== SYSFLAG.TRANSACTION_NOT_TYPE && tx !== SYSFLAG.TRANSACTION_COMMIT_TYPE)) return message
  const delay = Math.min(level, maxLevel)
  return {
    ...message,
    topic: SCHEDULE_TOPIC,
    queueId: delay - 1,
    properties: { ...message.properties, [PROPERTY.REAL_TOPIC]: message.topic, [PROPERTY.REAL_QID]: String(message.queueId), [PROPERTY.DELAY]: String(delay) },
  }
}
