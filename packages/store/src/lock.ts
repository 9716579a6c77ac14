import * as fs from 'node:fs'
import * as path from 'node:path'
import { StoreError, ioError } from './errors.js'
import type { FileIO } from './file-io.js'

/**
 * The `lock` file says which process has the store open. A pid alone is not enough: after a
 * reboot (or long enough) the pid may belong to another live process, and the open would be
 * refused for ever. So the holder is recorded as one line, `<pid> <bootId> <startTicks>`: the
 * boot it ran in (/proc/sys/kernel/random/boot_id) and its start time in clock ticks since boot
 * (field 22 of /proc/<pid>/stat). A lock is stale, and taken over, when its process is gone, ran
 * in another boot, or started at another time (its pid was reused). Where /proc is missing, or
 * for a lock file written by an older version (the pid only), the pid alone decides.
 */
export interface LockHolder {
  pid: number
  bootId?: string
  startTicks?: string
}

const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id'
/** Field 22 of /proc/<pid>/stat (1-based): starttime. */
const STAT_START_TIME_FIELD = 22

function readProcText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim()
  } catch {
    return undefined
  }
}

export function currentBootId(): string | undefined {
  return readProcText(BOOT_ID_FILE)
}

/** The start time of `pid` in clock ticks after boot, or undefined when unknown (no /proc, gone). */
export function processStartTicks(pid: number): string | undefined {
  const stat = readProcText(`/proc/${pid}/stat`)
  if (!stat) return undefined
  // The command name (field 2) is in parentheses and may hold spaces: count from its end.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return fields[STAT_START_TIME_FIELD - 3]
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export function encodeLockHolder(h: LockHolder): string {
  return h.bootId && h.startTicks ? `${h.pid} ${h.bootId} ${h.startTicks}\n` : `${h.pid}\n`
}

export function decodeLockHolder(text: string): LockHolder | undefined {
  const [pidText, bootId, startTicks] = text.trim().split(/\s+/)
  const pid = Number(pidText)
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  return bootId && startTicks ? { pid, bootId, startTicks } : { pid }
}

/** Whether the process a lock names still runs (the same process, not a reuse of its pid). */
export function holderAlive(h: LockHolder): boolean {
  if (!isProcessAlive(h.pid)) return false
  if (h.bootId === undefined || h.startTicks === undefined) return true
  const boot = currentBootId()
  if (boot !== undefined && boot !== h.bootId) return false
  const started = processStartTicks(h.pid)
  return started === undefined || started === h.startTicks
}

/** This process, as a lock records it. */
export function selfHolder(): LockHolder {
  const bootId = currentBootId()
  const startTicks = processStartTicks(process.pid)
  return bootId && startTicks ? { pid: process.pid, bootId, startTicks } : { pid: process.pid }
}

/** Takes the lock of the store in `dir`: LOCKED when another live process holds it. */
export async function acquireStoreLock(io: FileIO, dir: string, lockFile: string): Promise<void> {
  const held = await io.readFile(lockFile)
  const holder = held ? decodeLockHolder(held.toString('utf8')) : undefined
  if (holder && holder.pid !== process.pid && holderAlive(holder)) {
    throw new StoreError('LOCKED', `store ${dir} is in use by process ${holder.pid} (lock file ${path.basename(lockFile)})`, { details: { pid: holder.pid } })
  }
  const mine = Buffer.from(encodeLockHolder(selfHolder()))
  try {
    await io.writeFileAtomic(lockFile, mine)
  } catch (err) {
    // On a full disk the temp file of an atomic replace gets no block; a stale lock left by a
    // killed process has one: overwrite it in place (padded with spaces to its length, which
    // the reader trims). A torn lock only reads as stale, which it was.
    if (!held || ioError('writing the lock file', err).code !== 'DISK_FULL') throw err
    await overwriteInPlace(io, lockFile, Buffer.concat([mine, Buffer.alloc(Math.max(0, held.length - mine.length), ' ')]))
  }
}

async function overwriteInPlace(io: FileIO, file: string, data: Buffer): Promise<void> {
  const f = await io.open(file)
  try {
    await f.write(data, 0, data.length, 0)
    await f.datasync()
  } finally {
    await f.close()
  }
}
