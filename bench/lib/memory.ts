/**
 * Page-cache warm-up for benchmarks on virtual machines.
 *
 * A VM whose guest memory the host backs lazily (and takes back once the guest frees it) makes
 * the first touch of a page cost a host fault: here a pwrite into new page-cache pages ran at
 * about 0.2 CPU s per GB into memory the guest had just freed, and at 2.5 - 3 s per GB into memory
 * untouched for some seconds (HACKING.md, Benchmarks). A host that has run a while, a replica or a
 * broker among them, writes into pages reclaimed from its own page cache, the first case. So a
 * row that writes files starts after warmPageCache: a scratch file as large as what the row
 * writes is written and deleted, and its freed pages are what the row's writes then take.
 */
import { open, rm } from 'node:fs/promises'
import * as path from 'node:path'

const CHUNK_BYTES = 4 * 1024 * 1024

/** Writes `bytes` of zeros to a scratch file in `dir`, then deletes it (its pages go back to the free lists). */
export async function warmPageCache(dir: string, bytes: number): Promise<void> {
  const file = path.join(dir, `.page-cache-warm-${process.pid}`)
  const zeros = Buffer.alloc(CHUNK_BYTES)
  const fh = await open(file, 'w')
  try {
    for (let at = 0; at < bytes; at += CHUNK_BYTES) await fh.write(zeros, 0, Math.min(CHUNK_BYTES, bytes - at), at)
  } finally {
    await fh.close()
    await rm(file, { force: true })
  }
}
