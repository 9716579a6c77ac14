/** Test scaffolding shared by every package's tests: temp dirs and real small file systems. */
import { execFileSync, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { forceGc } from './mmap.js'

export { countFromEnv, pick, randomBytes, randomInt, seedFromEnv, seededRandom } from './random.js'

/**
 * Waits until `cond` holds, asking every `intervalMs`; fails with "timed out waiting for <what>"
 * after `timeoutMs` (tests bound their own time).
 */
export async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000, intervalMs = 25): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/** A fresh temp dir for `fn`, removed afterwards whatever happens. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix))
  try {
    return await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Why a tmpfs cannot be mounted here (not root, or mount refused), or undefined when it can. */
export type TmpfsSkip = string

/**
 * Runs `fn` on a tmpfs of `size` (mount's syntax: "600k", "12m") mounted on a fresh temp dir,
 * for tests that need a real full disk. Returns the reason instead when this process cannot
 * mount one (it must be root), so the caller can `t.skip(reason)`. Afterwards it unmounts,
 * running the GC between tries (closed files are unmapped by the GC, docs/design/mmap.md) before
 * a lazy unmount; `fn` fails the test if some mapping was never released.
 */
export async function withTmpfs(size: string, fn: (mountPoint: string) => Promise<void>): Promise<TmpfsSkip | undefined> {
  if (process.getuid?.() !== 0) return 'needs root to mount a small tmpfs'
  const mountPoint = await mkdtemp(path.join(tmpdir(), 'mqts-tmpfs-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mountPoint], { stdio: 'ignore' })
  } catch {
    await rm(mountPoint, { recursive: true, force: true })
    return 'cannot mount a tmpfs here'
  }
  let failure: unknown
  try {
    await fn(mountPoint)
  } catch (err) {
    failure = err
  }
  const unmounted = await unmount(mountPoint)
  await rm(mountPoint, { recursive: true, force: true })
  if (failure !== undefined) throw failure
  if (!unmounted) throw new Error(`${mountPoint} was still busy after the test: some mapping was never released`)
  return undefined
}

async function unmount(mountPoint: string): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    try {
      execFileSync('umount', [mountPoint], { stdio: 'ignore' })
      return true
    } catch {
      forceGc()
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  execFileSync('umount', ['-l', mountPoint], { stdio: 'ignore' })
  return false
}

export interface KillRunOptions {
  /** SIGKILL the child this long after its first `armOn` line (none: no timed kill). */
  killAfterMs?: number
  /** The line that arms the timed kill (default: one starting with "ready"). */
  armOn?: (line: string) => boolean
  /** A line after which the child is killed at once (a writer that says it is done). */
  killOn?: (line: string) => boolean
  /** A child may also end by itself with exit code 0 (a writer that ran out of work). */
  exitOk?: boolean
  /** A child still running this long after it started is killed (default 20 s). */
  guardMs?: number
}

export interface KillRun {
  /** Every line the child printed on stdout before it died. */
  lines: string[]
  stderr: string
  /** Whether it died by SIGKILL (false: it exited 0, with `exitOk`). */
  killed: boolean
}

const isReadyLine = (line: string): boolean => line.startsWith('ready')

/**
 * The kill loop's one cycle: runs `node script ...args` and lets it die by SIGKILL (from here,
 * `killAfterMs` after its first `armOn` line or at once after a `killOn` line, or from itself),
 * then resolves with what it printed; a child that exits any other way (an error; a normal exit
 * unless `exitOk`) rejects with its exit code and stderr. The caller reopens what the child
 * wrote and checks it.
 */
export function runUntilKilled(script: string, args: readonly string[], options: KillRunOptions = {}): Promise<KillRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    const kill = (): boolean => child.kill('SIGKILL')
    const lines: string[] = []
    let buffered = ''
    let stderr = ''
    let timer: NodeJS.Timeout | undefined
    const guard = setTimeout(kill, options.guardMs ?? 20_000)
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk
      let nl: number
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        lines.push(line)
        if (timer === undefined && options.killAfterMs !== undefined && (options.armOn ?? isReadyLine)(line)) timer = setTimeout(kill, options.killAfterMs)
        else if (options.killOn?.(line)) kill()
      }
    })
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(guard)
      if (timer) clearTimeout(timer)
      if (signal === 'SIGKILL') resolve({ lines, stderr, killed: true })
      else if (code === 0 && options.exitOk) resolve({ lines, stderr, killed: false })
      else reject(new Error(`${script} exited with ${code ?? signal}, not by SIGKILL: ${stderr}`))
    })
  })
}
