/** Test scaffolding shared by every package's tests: temp dirs and real small file systems. */
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { forceGc } from './mmap.js'

export { countFromEnv, pick, randomBytes, randomInt, seedFromEnv, seededRandom } from './random.js'

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
