/**
 * The writer thread of ThreadDurableWriter (durable-writer.ts has the protocol). It loops:
 * wait for requests; write every request published so far (one pwrite or pwritev per run that is
 * contiguous in a file, then the run's first 4 bytes: run-write.ts), whether only written ahead
 * (WRITABLE) or submitted to be made durable (SUBMITTED); once submitted ones are written,
 * fdatasync each file they wrote to, publish DONE and wake the main thread unless it is polling
 * DONE.
 */
import * as fs from 'node:fs'
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads'
import { RUN_HEAD_BYTES, splitRunHead } from './run-write.js'
import { CTL, CTL_HEADER_INTS, RING_SLOTS, SLOT_INTS, type WriterFailure, type WriterFaults, type WriterMessage } from './durable-writer.js'

const { ctl: sab, port, faults, spinMicros } = workerData as { ctl: SharedArrayBuffer; port: MessagePort; faults: WriterFaults | undefined; spinMicros: number }
const ctl = new Int32Array(sab)
const buffers = new Map<number, Buffer>()
const fds = new Map<number, number>()
const calls = { write: 0, fdatasync: 0 }

function drainMessages(): void {
  for (;;) {
    const m = receiveMessageOnPort(port)
    if (!m) return
    const msg = m.message as WriterMessage
    switch (msg.t) {
      case 'buf':
        buffers.set(msg.id, Buffer.from(msg.sab))
        break
      case 'free':
        buffers.delete(msg.id)
        break
      case 'file':
        fds.set(msg.id, msg.fd)
        break
      case 'forget':
        fds.delete(msg.id)
        break
    }
  }
}

/** Applies the fault armed for this call, if any; `cut` writes the first n bytes of a write first. */
function injected(on: 'write' | 'fdatasync', cut?: (n: number) => void): void {
  if (!faults) return
  if (++calls[on] === faults.failCall && faults.on === on) {
    if (faults.delayMs) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, faults.delayMs)
    if (faults.code && faults.writeBytes !== undefined) cut?.(faults.writeBytes)
    if (faults.code) throw Object.assign(new Error(`${faults.code}: injected ${on} failure`), { code: faults.code, syscall: on })
  }
}

/** pwritev of `parts` at `position`, looping on short writes. */
function writeAll(fd: number, parts: Buffer[], position: number): void {
  injected('write', (n) => writePrefix(fd, parts, position, n))
  if (parts.length === 1) {
    const b = parts[0]!
    let done = 0
    while (done < b.length) {
      const n = fs.writeSync(fd, b, done, b.length - done, position + done)
      if (n <= 0) throw Object.assign(new Error('short write'), { code: 'EIO', syscall: 'write' })
      done += n
    }
    return
  }
  let total = 0
  for (const b of parts) total += b.length
  const n = fs.writevSync(fd, parts, position)
  if (n === total) return
  if (n <= 0) throw Object.assign(new Error('short write'), { code: 'EIO', syscall: 'writev' })
  // Short: finish piece by piece.
  let skip = n
  let at = position + n
  for (const b of parts) {
    if (skip >= b.length) {
      skip -= b.length
      continue
    }
    const rest = b.subarray(skip)
    skip = 0
    writeAll(fd, [rest], at)
    at += rest.length
  }
}

/** Test hook (WriterFaults.writeBytes): the first `n` bytes of `parts` at `position`. */
function writePrefix(fd: number, parts: Buffer[], position: number, n: number): void {
  for (const b of parts) {
    if (n <= 0) return
    const part = b.subarray(0, Math.min(n, b.length))
    fs.writeSync(fd, part, 0, part.length, position)
    position += part.length
    n -= part.length
  }
}

function slot(i: number, field: number): number {
  return ctl[CTL_HEADER_INTS + ((i >>> 0) % RING_SLOTS) * SLOT_INTS + field]!
}

/** Writes requests [from, to): one pwrite or pwritev per run contiguous in a file. */
function writeRange(from: number, to: number): void {
  let i = from
  while (i !== to) {
    const fileId = slot(i, 1)
    const fd = fds.get(fileId)
    if (fd === undefined) throw Object.assign(new Error(`unknown file ${fileId}`), { code: 'EBADF' })
    const parts: Buffer[] = []
    const position = slot(i, 4)
    let end = position
    while (i !== to && slot(i, 1) === fileId && slot(i, 4) === end) {
      const buf = buffers.get(slot(i, 0))
      if (!buf) throw Object.assign(new Error(`unknown buffer ${slot(i, 0)}`), { code: 'EFAULT' })
      const offset = slot(i, 2)
      const length = slot(i, 3)
      const last = parts[parts.length - 1]
      if (last && last.buffer === buf.buffer && last.byteOffset + last.length === offset) parts[parts.length - 1] = buf.subarray(last.byteOffset, offset + length)
      else parts.push(buf.subarray(offset, offset + length))
      end += length
      i = (i + 1) | 0
    }
    writeRun(fd, parts, position)
  }
}

/** One run, its first record's TOTALSIZE written last (run-write.ts says why). */
function writeRun(fd: number, parts: Buffer[], position: number): void {
  const split = splitRunHead(parts)
  if (!split) return writeAll(fd, parts, position)
  writeAll(fd, split.rest, position + RUN_HEAD_BYTES)
  writeAll(fd, [split.head], position)
}

/** fdatasync of every file that requests [from, to) wrote to, once each. */
function syncFiles(from: number, to: number): void {
  const synced: number[] = []
  for (let i = from; i !== to; i = (i + 1) | 0) {
    const fileId = slot(i, 1)
    if (synced.includes(fileId)) continue
    synced.push(fileId)
    const fd = fds.get(fileId)
    if (fd === undefined) throw Object.assign(new Error(`unknown file ${fileId}`), { code: 'EBADF' })
    injected('fdatasync')
    fs.fdatasyncSync(fd)
    Atomics.add(ctl, CTL.WRITES, 1)
  }
}

function publish(done: number): void {
  Atomics.store(ctl, CTL.DONE, done)
  if (Atomics.load(ctl, CTL.POLLING) === 0) port.postMessage(0)
}

function fail(err: unknown): void {
  const e = err as NodeJS.ErrnoException
  const failure: WriterFailure = { code: e?.code, errno: e?.errno, syscall: e?.syscall, message: String(e?.message ?? err) }
  // Posted before FAILED is set, so a main thread that sees FAILED finds the message.
  port.postMessage({ t: 'failure', ...failure })
  Atomics.store(ctl, CTL.FAILED, 1)
}

/** Polls for work (a request to sync past `done`, or to write past `written`) for up to spinMicros; true when some came. */
function spinFor(done: number, written: number): boolean {
  if (spinMicros <= 0) return false
  const until = performance.now() + spinMicros / 1000
  do {
    if (Atomics.load(ctl, CTL.SUBMITTED) !== done || Atomics.load(ctl, CTL.WRITABLE) !== written || Atomics.load(ctl, CTL.STOP) !== 0) return true
  } while (performance.now() < until)
  return false
}

/** Requests durable (synced and reported). */
let done = 0
/** Requests written (pwrite), synced or not: `done` up to `written` are in the page cache only. */
let written = 0
let wroteLast = false
for (;;) {
  const wake = Atomics.load(ctl, CTL.WAKE)
  if (Atomics.load(ctl, CTL.STOP) !== 0 && Atomics.load(ctl, CTL.SUBMITTED) === done) break
  // SUBMITTED before WRITABLE: the main thread publishes WRITABLE first, so writable is never
  // behind submitted here.
  const submitted = Atomics.load(ctl, CTL.SUBMITTED)
  const writable = Atomics.load(ctl, CTL.WRITABLE)
  if (submitted === done && writable === written) {
    // Right after a write the next group is usually on its way: poll before sleeping.
    if (wroteLast) {
      wroteLast = false
      if (spinFor(done, written)) continue
    }
    Atomics.wait(ctl, CTL.WAKE, wake)
    continue
  }
  wroteLast = true
  drainMessages()
  try {
    if (writable !== written) {
      writeRange(written, writable)
      written = writable
    }
    if (submitted !== done) {
      syncFiles(done, submitted)
      done = submitted
      publish(done)
    }
  } catch (err) {
    fail(err)
    // Nothing more is written; wait to be stopped.
    for (;;) {
      const w = Atomics.load(ctl, CTL.WAKE)
      if (Atomics.load(ctl, CTL.STOP) !== 0) break
      Atomics.wait(ctl, CTL.WAKE, w)
    }
    break
  }
}
port.close()
