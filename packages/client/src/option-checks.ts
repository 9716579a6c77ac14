/**
 * Checks of the clients' numeric options, one place for every class: a duration must fit a
 * timer (Node's setTimeout fires at once past 2^31 - 1 ms), a count must be a whole number.
 */
import { MAX_TIMER_MS } from './constants.js'
import { ClientError } from './errors.js'

/** A duration option in milliseconds: greater than 0, at most a timer's range; `fallback` when unset. */
export function positiveMillis(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > MAX_TIMER_MS) {
    throw new ClientError('INVALID_OPTION', `${name} must be a number of milliseconds above 0 and at most ${MAX_TIMER_MS}, got ${value}`)
  }
  return value
}

/** A count option: a whole number >= 1; `fallback` when unset. */
export function positiveCount(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new ClientError('INVALID_OPTION', `${name} must be a whole number >= 1, got ${value}`)
  return value
}
