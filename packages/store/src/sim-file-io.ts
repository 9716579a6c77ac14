/**
 * A simulated disk for tests. Invariants it models:
 * - A file's bytes live twice: `volatile` (the page cache: what reads and the map see at once)
 *   and `durable` (what survives a power loss). fdatasync copies volatile to durable.
 * - `crash()` returns the disk as a power loss leaves it: every 512-byte sector that differs from
 *   its durable image independently keeps its new bytes, keeps its old bytes, or is torn
 *   (a random prefix new). Directory operations and allocate() are durable when they return.
 * - Space is finite when `capacityBytes` is set: allocate() past it fails with ENOSPC.
 * - Faults can be armed: the next writes or datasyncs fail with a given OS code.
 */
import * as path from 'node:path'
import type { DataFile, FileIO } from './file-io.js'

export const SECTOR_BYTES = 512

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface SimEntry {
  volatile: Buffer
  durable: Buffer
  modifiedMs?: number
}

function osError(code: string, what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${what}`), { code })
}

export interface SimFileIOOptions {
  capacityBytes?: number
  /** Clock for modification times; default Date.now. */
  clock?: () => number
}

export class SimFileIO implements FileIO {
  readonly files = new Map<string, SimEntry>()
  readonly dirs = new Set<string>()
  capacityBytes: number
  /** Armed faults: the next N writes / datasyncs (of paths containing `pathIncludes`) fail with `code`. */
  failWrites: { code: string; count: number; pathIncludes?: string } | undefined
  failDatasyncs: { code: string; count: number; pathIncludes?: string } | undefined

  clock: () => number

  constructor(options: SimFileIOOptions = {}) {
    this.capacityBytes = options.capacityBytes ?? Number.POSITIVE_INFINITY
    this.clock = options.clock ?? Date.now
  }

  usedBytes(): number {
    let used = 0
    for (const e of this.files.values()) used += e.volatile.length
    return used
  }

  async mkdirp(dir: string): Promise<void> {
    let d = path.resolve(dir)
    while (!this.dirs.has(d)) {
      this.dirs.add(d)
      const parent = path.dirname(d)
      if (parent === d) break
      d = parent
    }
  }

  async list(dir: string): Promise<string[]> {
    const d = path.resolve(dir)
    const names = new Set<string>()
    for (const p of [...this.files.keys(), ...this.dirs]) if (path.dirname(p) === d) names.add(path.basename(p))
    return [...names].sort()
  }

  async size(file: string): Promise<number | undefined> {
    return this.files.get(path.resolve(file))?.volatile.length
  }

  async exists(file: string): Promise<boolean> {
    return this.files.has(path.resolve(file))
  }

  async remove(file: string): Promise<void> {
    this.files.delete(path.resolve(file))
  }

  async rename(from: string, to: string): Promise<void> {
    const e = this.files.get(path.resolve(from))
    if (!e) throw osError('ENOENT', from)
    this.files.delete(path.resolve(from))
    this.files.set(path.resolve(to), e)
  }

  async syncDir(): Promise<void> {}

  async readFile(file: string): Promise<Buffer | undefined> {
    const e = this.files.get(path.resolve(file))
    return e ? Buffer.from(e.volatile) : undefined
  }

  async writeFileAtomic(file: string, data: Buffer): Promise<void> {
    this.files.set(path.resolve(file), { volatile: Buffer.from(data), durable: Buffer.from(data), modifiedMs: this.clock() })
  }

  canPrefault(): boolean {
    return true
  }

  canPrefaultInBackground(): boolean {
    return true
  }

  async allocate(file: string, size: number): Promise<void> {
    if (this.usedBytes() + size > this.capacityBytes) throw osError('ENOSPC', `allocate ${file}`)
    this.files.set(path.resolve(file), { volatile: Buffer.alloc(size), durable: Buffer.alloc(size), modifiedMs: this.clock() })
  }

  async open(file: string): Promise<DataFile> {
    const p = path.resolve(file)
    const entry = this.files.get(p)
    if (!entry) throw osError('ENOENT', file)
    const io = this
    const write = async (source: Buffer, sourceOffset: number, length: number, position: number): Promise<void> => {
      if (io.failWrites && io.failWrites.count > 0 && p.includes(io.failWrites.pathIncludes ?? '')) {
        io.failWrites.count--
        throw osError(io.failWrites.code, `write ${p}`)
      }
      if (position + length > entry.volatile.length) throw osError('EFBIG', `write past end of ${p}`)
      source.copy(entry.volatile, position, sourceOffset, sourceOffset + length)
      entry.modifiedMs = io.clock()
    }
    return {
      path: p,
      size: entry.volatile.length,
      map: (_writable, offset = 0, length = entry.volatile.length - offset) => entry.volatile.subarray(offset, offset + length),
      mapMore: (_writable, offset, length) => entry.volatile.subarray(offset, offset + length),
      async read(target, targetOffset, length, position) {
        const n = Math.max(0, Math.min(length, entry.volatile.length - position))
        entry.volatile.copy(target, targetOffset, position, position + n)
        return n
      },
      write,
      async datasync() {
        if (io.failDatasyncs && io.failDatasyncs.count > 0 && p.includes(io.failDatasyncs.pathIncludes ?? '')) {
          io.failDatasyncs.count--
          throw osError(io.failDatasyncs.code, `fdatasync ${p}`)
        }
        entry.volatile.copy(entry.durable)
      },
      async writeDurable(source, sourceOffset, length, position) {
        if (io.failDatasyncs && io.failDatasyncs.count > 0 && p.includes(io.failDatasyncs.pathIncludes ?? '')) {
          io.failDatasyncs.count--
          throw osError(io.failDatasyncs.code, `O_DSYNC write ${p}`)
        }
        await write(source, sourceOffset, length, position)
        source.copy(entry.durable, position, sourceOffset, sourceOffset + length)
      },
      prefault: () => true,
      prefaultView: () => true,
      async prefaultViewAsync(_view, from, length, progress) {
        if (progress) Atomics.store(progress, 0, from + length)
        return true
      },
      async warm() {},
      async close() {},
    }
  }

  reclaim(): void {}

  async modifiedMs(file: string): Promise<number | undefined> {
    const e = this.files.get(path.resolve(file))
    return e ? (e.modifiedMs ?? 0) : undefined
  }

  /** Sets a file's modification time (retention tests). */
  touch(file: string, modifiedMs: number): void {
    const e = this.files.get(path.resolve(file))
    if (e) e.modifiedMs = modifiedMs
  }

  async diskUsage(): Promise<{ totalBytes: number; usedBytes: number; freeBytes: number }> {
    const total = Number.isFinite(this.capacityBytes) ? this.capacityBytes : Number.MAX_SAFE_INTEGER
    const used = this.usedBytes()
    return { totalBytes: total, usedBytes: used, freeBytes: Math.max(0, total - used) }
  }

  /** The disk as a power loss at this instant leaves it, decided by `seed`. */
  crash(seed: number): SimFileIO {
    const rnd = mulberry32(seed)
    const next = new SimFileIO({ capacityBytes: this.capacityBytes, clock: this.clock })
    for (const d of this.dirs) next.dirs.add(d)
    for (const [p, e] of this.files) {
      const image = Buffer.from(e.durable)
      for (let at = 0; at < image.length; at += SECTOR_BYTES) {
        const end = Math.min(at + SECTOR_BYTES, image.length)
        if (e.volatile.compare(e.durable, at, end, at, end) === 0) continue
        const roll = rnd()
        if (roll < 0.45) e.volatile.copy(image, at, at, end)
        else if (roll < 0.6) {
          const cut = at + Math.floor(rnd() * (end - at))
          e.volatile.copy(image, at, at, cut)
        }
      }
      next.files.set(p, { volatile: image, durable: Buffer.from(image), modifiedMs: e.modifiedMs })
    }
    return next
  }

  /** The disk as a process crash (kill -9) leaves it: everything written is kept. */
  processCrash(): SimFileIO {
    const next = new SimFileIO({ capacityBytes: this.capacityBytes, clock: this.clock })
    for (const d of this.dirs) next.dirs.add(d)
    for (const [p, e] of this.files) next.files.set(p, { volatile: Buffer.from(e.volatile), durable: Buffer.from(e.durable), modifiedMs: e.modifiedMs })
    return next
  }
}
