/**
 * Shared memory maps through `@riaskov/mmap-io`, the rules every package maps files by
 * (docs/design/mmap.md): a mapping goes away only when V8 collects its Buffer, so closing a
 * file drops its pages and references and `forceGc()` lets the finalizer unmap it; bytes are
 * written through a map only into ranges faulted in writable first (MADV_POPULATE_WRITE), so a
 * full disk is an ENOSPC from that call and never a SIGBUS.
 */
import { createRequire } from 'node:module'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as v8 from 'node:v8'
import * as vm from 'node:vm'

export interface MmapIo {
  map(size: number, protection: number, flags: number, fd: number, offset?: number, advise?: number): Buffer
  advise(buffer: Buffer, offset: number, length: number, advise: number): void
  PROT_READ: number
  PROT_WRITE: number
  MAP_SHARED: number
  MADV_DONTNEED: number
}

const require = createRequire(import.meta.url)
let mmapModule: MmapIo | undefined

/**
 * The mmap-io module, loaded on first use. It is an optional peer of this package: the packages
 * that map files (@mqts/store, @mqts/index) depend on it, so a client, which maps nothing, does
 * not install its native build.
 */
export function mmapIo(): MmapIo {
  if (mmapModule === undefined) {
    try {
      mmapModule = require('@riaskov/mmap-io') as MmapIo
    } catch (err) {
      throw new Error(`memory maps need @riaskov/mmap-io (a dependency of @mqts/store and @mqts/index), which does not load: ${(err as Error).message}`, { cause: err })
    }
  }
  return mmapModule
}

/** @riaskov/mmap-io takes sizes as a C int. */
export const MAX_MAP_BYTES = 2 ** 31 - 1
export const PAGE_BYTES = 4096
/** Linux madvise advice (5.14+): fault pages in writable, as a write would. */
export const MADV_POPULATE_WRITE = 23

let populateWriteWorks: boolean | undefined

/** Tests: take the path of a kernel without MADV_POPULATE_WRITE (`undefined` probes again). */
export function setPopulateWriteForTests(works: boolean | undefined): void {
  populateWriteWorks = works
}

/** Whether MADV_POPULATE_WRITE works here: probed once on a scratch mapping. */
export function canPopulateWrite(): boolean {
  if (populateWriteWorks !== undefined) return populateWriteWorks
  populateWriteWorks = false
  if (process.platform !== 'linux') return false
  const probe = path.join(os.tmpdir(), `mqts-probe-${process.pid}-${Date.now()}`)
  let fd: number | undefined
  try {
    fd = fs.openSync(probe, 'w+')
    fs.ftruncateSync(fd, PAGE_BYTES)
    const m = mmapIo()
    const view = m.map(PAGE_BYTES, m.PROT_READ | m.PROT_WRITE, m.MAP_SHARED, fd, 0)
    m.advise(view, 0, PAGE_BYTES, MADV_POPULATE_WRITE)
    populateWriteWorks = true
  } catch {
    populateWriteWorks = false
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
    fs.rmSync(probe, { force: true })
  }
  return populateWriteWorks
}

/** The errno at the end of an mmap-io message ("madvise() failed, 28"), if any. */
export function mmapErrno(err: unknown): number | undefined {
  const n = Number(/(\d+)\s*$/.exec(String((err as Error | undefined)?.message))?.[1])
  return Number.isInteger(n) ? n : undefined
}

let gcFunction: (() => void) | undefined | null

/** Runs a full GC (exposing it at run time once), so released mappings get unmapped. False when the runtime refuses. */
export function forceGc(): boolean {
  if (gcFunction === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc')
      gcFunction = vm.runInNewContext('gc') as () => void
    } catch {
      gcFunction = null
    }
  }
  gcFunction?.()
  return gcFunction !== null
}
