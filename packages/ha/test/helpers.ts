/** What several HA test files need: a logger that keeps its lines, and the common wait. */
import { waitUntil } from '@mqts/common/testing'
import type { HALogger } from '../src/index.js'

export interface Recorded extends HALogger {
  /** Each line as `message {fields as JSON}`. */
  lines: string[]
  /** Each line's fields with its message under `message`. */
  fields: Array<Record<string, unknown>>
}

/** An HALogger keeping what it is told (warn and info alike). */
export function recording(): Recorded {
  const lines: string[] = []
  const fields: Array<Record<string, unknown>> = []
  const add = (message: string, f?: Record<string, unknown>): void => {
    lines.push(`${message} ${JSON.stringify(f ?? {})}`)
    fields.push({ message, ...f })
  }
  return { lines, fields, warn: add, info: add }
}

/** Waits (polling every 10 ms) until `cond` holds; fails naming `what` after `ms`. */
export function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  return waitUntil(what, cond, ms, 10)
}
