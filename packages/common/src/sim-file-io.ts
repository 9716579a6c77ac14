/**
 * A simulated disk for tests. Invariants it models:
 * - A file's bytes live twice: `volatile` (the page cache: what reads and the map see at once)
 *   and `durable` (what survives a power loss). fdatasync copies volatile to durable.
 * - `crash()` returns the disk as a power loss leaves it: every 512-byte sector that differs from
 *   its durable image independently keeps its new bytes, keeps its old bytes, or is torn
 *   (a random prefix new).
 * - Directory entries live twice too: a file created, removed or renamed (and a directory made by
 *   `mkdirp(dir, { durable: false })`) is durable only once its directory is synced (syncDir).
 *   At a power loss each directory keeps a random prefix of its unsynced operations, in order.
 *   allocate(), writeFileAtomic() and mkdirp() sync what they create unless told `durable: false`.
 * - `processCrash()` (kill -9) keeps every written byte and entry but nothing becomes durable, so
 *   a later `crash()` of the returned disk is a power loss after the kill.
 * - Space is finite when `capacityBytes` is set: allocate() past it fails with ENOSPC.
 * - Faults can be armed: the next writes or datasyncs fail with a given OS code.
 * - A kill -9 in the middle of a write can be armed (killAt): the write stops at a chosen byte,
 *   as Linux may end a write to a regular file early on a fatal signal, and `killed` holds the
 *   disk as the kill left it.
 * - The disk can stall (stall()): writes, syncs and file creations wait until released.
 */
import * as path from 'node:path'
import type { DataFile, DiskUsage, FileIO } from './file-io.js'
import { seededRandom } from './random.js'

export const SECTOR_BYTES = 512

interface SimEntry {
  volatile: Buffer
  durable: Buffer
  modifiedMs?: number
}

/** A directory operation not yet made durable by a sync of `dir`. */
type PendingOp =
  | { dir: string; kind: 'create'; path: string; entry: SimEntry }
  | { dir: string; kind: 'remove'; path: string }
  | { dir: string; kind: 'rename'; path: string; to: string }
  | { dir: string; kind: 'mkdir'; path: string }
  | { dir: string; kind: 'rmdir'; path: string }

function osError(code: string, what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${what}`), { code })
}

export interface SimFileIOOptions {
  capacityBytes?: number
  /** Clock for modification times; default Date.now. */
  clock?: () => number
}

export class SimFileIO implements FileIO {
  /** The namespace as the running system sees it. */
  readonly files = new Map<string, SimEntry>()
  readonly dirs = new Set<string>()
  /** The namespace a power loss falls back to, and the operations not yet synced into it. */
  readonly durableFiles = new Map<string, SimEntry>()
  readonly durableDirs = new Set<string>()
  private pending: PendingOp[] = []
  /** Called after each directory operation (create, remove, rename, mkdir), before any sync: tests take a crash() there. */
  onDirectoryOp: ((kind: PendingOp['kind'], path: string) => void) | undefined
  capacityBytes: number
  /** Armed faults: the next N writes / datasyncs (of paths containing `pathIncludes`) fail with `code`. */
  failWrites: { code: string; count: number; pathIncludes?: string } | undefined
  failDatasyncs: { code: string; count: number; pathIncludes?: string } | undefined
  /**
   * Armed kill -9 during a write: the first write (plain or durable) to a path containing
   * `pathIncludes` whose range holds file position `position` writes only its bytes before that
   * position and the process dies there: `killed` is set to the disk as the kill left it
   * (processCrash()), and from then on every write and sync of this disk fails with EIO (the dead
   * process writes nothing more; `killed` is a copy, so nothing done here later changes it).
   */
  killAt: { position: number; pathIncludes?: string } | undefined
  killed: SimFileIO | undefined
  /** Set while the disk is stalled: writes, syncs and file creations wait for it. */
  private stalled: Promise<void> | undefined

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

  async mkdirp(dir: string, options: { durable?: boolean } = {}): Promise<void> {
    let d = path.resolve(dir)
    while (!this.dirs.has(d)) {
      this.dirs.add(d)
      const parent = path.dirname(d)
      // The root (and a directory never made here) exists durably.
      if (parent === d) {
        this.durableDirs.add(d)
        break
      }
      this.pending.push({ dir: parent, kind: 'mkdir', path: d })
      this.onDirectoryOp?.('mkdir', d)
      if (options.durable ?? true) await this.syncDir(parent)
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
    this.removeSync(file)
  }

  removeSync(file: string): void {
    const p = path.resolve(file)
    if (!this.files.delete(p)) return
    this.pending.push({ dir: path.dirname(p), kind: 'remove', path: p })
    this.onDirectoryOp?.('remove', p)
  }

  async removeDir(dir: string): Promise<void> {
    const d = path.resolve(dir)
    if (!this.dirs.has(d)) return
    for (const p of [...this.files.keys(), ...this.dirs]) if (path.dirname(p) === d) throw osError('ENOTEMPTY', `rmdir ${dir}`)
    this.dirs.delete(d)
    this.pending.push({ dir: path.dirname(d), kind: 'rmdir', path: d })
    this.onDirectoryOp?.('rmdir', d)
  }

  /**
   * Stalls the disk: from now on every write, fdatasync, durable write and file creation waits
   * until the returned function is called (a device that stopped answering). Reads go on.
   */
  stall(): () => void {
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    this.stalled = gate
    return () => {
      if (this.stalled === gate) this.stalled = undefined
      release()
    }
  }

  /** Waits while the disk is stalled. */
  private async waitStall(): Promise<void> {
    while (this.stalled) await this.stalled
  }

  async rename(from: string, to: string): Promise<void> {
    this.renameSync(from, to)
  }

  renameSync(from: string, to: string): void {
    const f = path.resolve(from)
    const t = path.resolve(to)
    const e = this.files.get(f)
    if (!e) throw osError('ENOENT', from)
    this.files.delete(f)
    this.files.set(t, e)
    this.pending.push({ dir: path.dirname(t), kind: 'rename', path: f, to: t })
    this.onDirectoryOp?.('rename', t)
  }

  /** Makes the pending operations on `dir`'s entries durable, in order. */
  async syncDir(dir: string): Promise<void> {
    this.syncDirSync(dir)
  }

  syncDirSync(dir: string): void {
    const d = path.resolve(dir)
    const rest: PendingOp[] = []
    for (const op of this.pending) {
      if (op.dir === d) applyOp(this.durableFiles, this.durableDirs, op)
      else rest.push(op)
    }
    this.pending = rest
  }

  /** Adds `file` to the namespace; durable at once unless `durable` is false. */
  private createEntry(file: string, entry: SimEntry, durable: boolean): void {
    const p = path.resolve(file)
    this.files.set(p, entry)
    this.pending.push({ dir: path.dirname(p), kind: 'create', path: p, entry })
    this.onDirectoryOp?.('create', p)
    if (durable) this.syncDirSync(path.dirname(p))
  }

  async readFile(file: string): Promise<Buffer | undefined> {
    const e = this.files.get(path.resolve(file))
    return e ? Buffer.from(e.volatile) : undefined
  }

  async writeFileAtomic(file: string, data: Buffer, options: { mayReplace?: () => boolean } = {}): Promise<boolean> {
    // Temp file, sync, rename, directory sync: after a power loss the file is replaced whole or
    // not at all, which creating it durably in one step models.
    if (options.mayReplace && !options.mayReplace()) return false
    this.writeFileAtomicSync(file, data)
    return true
  }

  writeFileAtomicSync(file: string, data: Buffer): void {
    this.createEntry(file, { volatile: Buffer.from(data), durable: Buffer.from(data), modifiedMs: this.clock() }, true)
  }

  canPrefault(): boolean {
    return true
  }

  canPrefaultInBackground(): boolean {
    return true
  }

  async allocate(file: string, size: number, options: { durable?: boolean } = {}): Promise<void> {
    if (this.stalled) await this.waitStall()
    this.allocateEntry(file, size, options.durable ?? true)
  }

  allocateSparseSync(file: string, size: number): void {
    this.allocateEntry(file, size, false)
  }

  private allocateEntry(file: string, size: number, durable: boolean): void {
    if (this.usedBytes() + size > this.capacityBytes) throw osError('ENOSPC', `allocate ${file}`)
    this.createEntry(file, { volatile: Buffer.alloc(size), durable: Buffer.alloc(size), modifiedMs: this.clock() }, durable)
  }

  async open(file: string): Promise<DataFile> {
    return this.openSync(file)
  }

  openSync(file: string): DataFile {
    const p = path.resolve(file)
    const entry = this.files.get(p)
    if (!entry) throw osError('ENOENT', file)
    const io = this
    // A blocking write cannot wait for a stalled disk (as readSync, it goes on); a failure hits it.
    const writeSync = (source: Buffer, sourceOffset: number, length: number, position: number): void => {
      if (io.killed) throw osError('EIO', `write ${p} after the process was killed`)
      const kill = io.killAt
      if (kill && p.includes(kill.pathIncludes ?? '') && kill.position >= position && kill.position < position + length) {
        io.killAt = undefined
        source.copy(entry.volatile, position, sourceOffset, sourceOffset + kill.position - position)
        io.killed = io.processCrash()
        throw osError('EIO', `write ${p} cut at ${kill.position}: the process was killed`)
      }
      if (io.failWrites && io.failWrites.count > 0 && p.includes(io.failWrites.pathIncludes ?? '')) {
        io.failWrites.count--
        throw osError(io.failWrites.code, `write ${p}`)
      }
      if (position + length > entry.volatile.length) throw osError('EFBIG', `write past end of ${p}`)
      source.copy(entry.volatile, position, sourceOffset, sourceOffset + length)
      entry.modifiedMs = io.clock()
    }
    const write = async (source: Buffer, sourceOffset: number, length: number, position: number): Promise<void> => {
      if (io.stalled) await io.waitStall()
      writeSync(source, sourceOffset, length, position)
    }
    const read = (target: Buffer, targetOffset: number, length: number, position: number): number => {
      const n = Math.max(0, Math.min(length, entry.volatile.length - position))
      entry.volatile.copy(target, targetOffset, position, position + n)
      return n
    }
    return {
      path: p,
      size: entry.volatile.length,
      map: (_writable, offset = 0, length = entry.volatile.length - offset) => entry.volatile.subarray(offset, offset + length),
      mapMore: (_writable, offset, length) => entry.volatile.subarray(offset, offset + length),
      async read(target, targetOffset, length, position) {
        return read(target, targetOffset, length, position)
      },
      readSync: read,
      write,
      writeSync,
      async datasync() {
        if (io.stalled) await io.waitStall()
        if (io.killed) throw osError('EIO', `fdatasync ${p} after the process was killed`)
        if (io.failDatasyncs && io.failDatasyncs.count > 0 && p.includes(io.failDatasyncs.pathIncludes ?? '')) {
          io.failDatasyncs.count--
          throw osError(io.failDatasyncs.code, `fdatasync ${p}`)
        }
        entry.volatile.copy(entry.durable)
      },
      async writeDurable(source, sourceOffset, length, position) {
        if (io.stalled) await io.waitStall()
        if (io.failDatasyncs && io.failDatasyncs.count > 0 && p.includes(io.failDatasyncs.pathIncludes ?? '')) {
          io.failDatasyncs.count--
          throw osError(io.failDatasyncs.code, `O_DSYNC write ${p}`)
        }
        await write(source, sourceOffset, length, position)
        if (io.killed) throw osError('EIO', `O_DSYNC write ${p} after the process was killed`)
        // Written, not yet on disk: a process crash (processCrash) in between keeps the bytes
        // in the page cache only, as a kill during an O_DSYNC write or a write-then-fdatasync does.
        await new Promise((resolve) => setImmediate(resolve))
        source.copy(entry.durable, position, sourceOffset, sourceOffset + length)
      },
      prefault: () => true,
      prefaultView: () => true,
      // Space was taken whole by allocate.
      reserve: () => {},
      async prefaultViewAsync(_view, from, length, progress) {
        if (progress) Atomics.store(progress, 0, from + length)
        return true
      },
      async warm() {},
      async close() {},
      closeSync() {},
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

  async diskUsage(): Promise<DiskUsage> {
    const total = Number.isFinite(this.capacityBytes) ? this.capacityBytes : Number.MAX_SAFE_INTEGER
    const used = this.usedBytes()
    return { totalBytes: total, usedBytes: used, freeBytes: Math.max(0, total - used) }
  }

  /**
   * The disk as a power loss at this instant leaves it, decided by `seed`: each directory keeps a
   * random prefix of its unsynced operations; each surviving file keeps its synced bytes, and
   * every sector written since its last sync keeps its new bytes, keeps its old ones, or is torn.
   */
  crash(seed: number): SimFileIO {
    const rnd = seededRandom(seed)
    const files = new Map(this.durableFiles)
    const dirs = new Set(this.durableDirs)
    const byDir = new Map<string, PendingOp[]>()
    for (const op of this.pending) {
      const list = byDir.get(op.dir) ?? []
      list.push(op)
      byDir.set(op.dir, list)
    }
    for (const ops of byDir.values()) {
      const kept = Math.floor(rnd() * (ops.length + 1))
      for (const op of ops.slice(0, kept)) applyOp(files, dirs, op)
    }
    const next = new SimFileIO({ capacityBytes: this.capacityBytes, clock: this.clock })
    const reachable = (p: string): boolean => {
      for (let d = path.dirname(p); ; d = path.dirname(d)) {
        if (!dirs.has(d)) return false
        if (path.dirname(d) === d) return true
      }
    }
    for (const d of dirs) {
      if (path.dirname(d) !== d && !reachable(d)) continue
      next.dirs.add(d)
      next.durableDirs.add(d)
    }
    const images = new Map<SimEntry, SimEntry>()
    for (const [p, e] of files) {
      if (!reachable(p)) continue
      let copy = images.get(e)
      if (!copy) {
        const image = tornImage(e, rnd)
        copy = { volatile: image, durable: Buffer.from(image), modifiedMs: e.modifiedMs }
        images.set(e, copy)
      }
      next.files.set(p, copy)
      next.durableFiles.set(p, copy)
    }
    return next
  }

  /**
   * The disk as a process crash (kill -9) leaves it: everything written is kept and readable,
   * and what was not synced stays unsynced (a later crash() may still lose it).
   */
  processCrash(): SimFileIO {
    const next = new SimFileIO({ capacityBytes: this.capacityBytes, clock: this.clock })
    const copies = new Map<SimEntry, SimEntry>()
    const copyOf = (e: SimEntry): SimEntry => {
      let c = copies.get(e)
      if (!c) {
        c = { volatile: Buffer.from(e.volatile), durable: Buffer.from(e.durable), modifiedMs: e.modifiedMs }
        copies.set(e, c)
      }
      return c
    }
    for (const d of this.dirs) next.dirs.add(d)
    for (const d of this.durableDirs) next.durableDirs.add(d)
    for (const [p, e] of this.files) next.files.set(p, copyOf(e))
    for (const [p, e] of this.durableFiles) next.durableFiles.set(p, copyOf(e))
    next.pending = this.pending.map((op) => (op.kind === 'create' ? { ...op, entry: copyOf(op.entry) } : { ...op }))
    return next
  }
}

function applyOp(files: Map<string, SimEntry>, dirs: Set<string>, op: PendingOp): void {
  switch (op.kind) {
    case 'create':
      files.set(op.path, op.entry)
      break
    case 'remove':
      files.delete(op.path)
      break
    case 'rename': {
      const e = files.get(op.path)
      files.delete(op.path)
      if (e) files.set(op.to, e)
      break
    }
    case 'mkdir':
      dirs.add(op.path)
      break
    case 'rmdir':
      dirs.delete(op.path)
      break
  }
}

/** A file's bytes after a power loss: its durable image, with each unsynced sector kept, lost or torn. */
function tornImage(e: SimEntry, rnd: () => number): Buffer {
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
  return image
}
