/**
 * Sync flush off the main thread: a dedicated writer thread (worker_threads) that owns the
 * durable writes of the CommitLog (docs/design/mmap.md, "Sync flush: the writer thread").
 *
 * - Staged records live in SharedArrayBuffer chunks: the main thread encodes into them, the
 *   writer thread reads them in place (no copy, no libuv thread-pool queue).
 * - A write request is five Int32 slots in a shared ring (buffer id, file id, offset, length,
 *   position). The main thread fills slots, then start() publishes SUBMITTED and wakes the
 *   thread (WAKE + Atomics.notify), so requests made together are written together.
 * - The thread takes every request published, writes each run that is contiguous in a file with
 *   one pwrite/pwritev (its first 4 bytes after the rest: run-write.ts), fdatasyncs each file
 *   written (the calls of the raw baseline), stores DONE and, unless the main thread is polling
 *   DONE (POLLING), posts a message. The main thread handles completions as MessagePort events
 *   or finds them on its poll.
 * - Write-ahead: while a group is still being appended, the main thread may publish what is
 *   staged so far in WRITABLE (writeAhead(), no wake-up); a thread that is polling for the group
 *   writes it into the page cache at once, so when the group is submitted only its tail is left
 *   to write before the fdatasync.
 * - A failure is posted before FAILED is set; the main thread fails everything not yet done and
 *   the thread writes nothing more until it is stopped.
 *
 * The thread sleeps on a counter (WAKE) that changes on every signal, so no wake-up is lost
 * between its check for work and its wait. After a write it first polls for the next
 * submission for a short while (DEFAULT_WRITER_SPIN_MICROS): under load that submission comes
 * within a few hundred µs, and waking a sleeping thread costs tens of µs on every group.
 *
 * The main thread, while submissions are outstanding, also polls DONE once per event-loop turn
 * (DEFAULT_COMPLETION_POLL_MICROS), so it finds a completion without waiting for the message and
 * its CPU does not go idle during the fdatasync: measured on a 2-vCPU VM, waking an idle vCPU
 * costs 50-120 µs, and the 64 puts that follow run about half as fast on a CPU that just woke
 * from idle (turn-around for 64 puts: p50 61 µs kept busy, 125 µs after idling).
 */
import * as fs from 'node:fs'
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads'
import type { DataFile } from './file-io.js'
import type { BodyCopier } from './codec/index.js'

/** Control words (Int32 indexes) of the shared ring. */
export const CTL = {
  /** Requests submitted (main thread). */
  SUBMITTED: 0,
  /** Requests durable (writer thread). */
  DONE: 1,
  /** Bumped by the main thread to wake the writer thread. */
  WAKE: 2,
  /** Set by the main thread: finish and exit. */
  STOP: 3,
  /** Set by the writer thread after posting a failure. */
  FAILED: 4,
  /** Durable writes (pwrite(s) + fdatasync of one file) made so far (writer thread). */
  WRITES: 5,
  /** Requests the thread may write ahead, not yet to be made durable (main thread; >= SUBMITTED). */
  WRITABLE: 6,
  /**
   * 1 while the main thread polls DONE (main thread): the thread then posts no message for a
   * completion. Stored before the main thread's last check of DONE when it stops, and read by
   * the thread after it stores DONE, so one of the two always sees the other.
   */
  POLLING: 7,
} as const
export const CTL_HEADER_INTS = 8
export const SLOT_INTS = 5
export const RING_SLOTS = 4096
/**
 * After a write, the thread polls for the next submission this long before it sleeps. Under
 * load the next group comes a few hundred µs later (the producers resume and append), and a
 * futex wake-up costs tens of µs here; when idle, the poll costs this much once per write.
 */
export const DEFAULT_WRITER_SPIN_MICROS = 300
/**
 * While submissions are outstanding, the main thread checks for completions on every event-loop
 * turn (setImmediate, so timers and I/O still run between checks) for up to this long after the
 * last start() or completion; past that (a slow or stuck disk) it waits for the thread's message.
 */
export const DEFAULT_COMPLETION_POLL_MICROS = 1000

/** Messages from the main thread to the writer thread. */
export type WriterMessage =
  | { t: 'buf'; id: number; sab: SharedArrayBuffer }
  | { t: 'free'; id: number }
  | { t: 'file'; id: number; fd: number; path: string }
  | { t: 'forget'; id: number }

/** What the writer thread reports when a write or fdatasync fails. */
export interface WriterFailure {
  code: string | undefined
  errno: number | undefined
  syscall: string | undefined
  message: string
}

/** Test hook: make the writer thread fail a syscall, as the OS would, or take long. */
export interface WriterFaults {
  /** Fail the nth (1-based) call of kind `on` the thread makes (a run is two writes: run-write.ts). */
  failCall: number
  /** Which call fails. */
  on: 'write' | 'fdatasync'
  /** The error code; omitted: the call succeeds, after `delayMs`. */
  code?: string
  /** The failing (or slow) call first takes this long, as a slow disk would. */
  delayMs?: number
  /**
   * With `code`: the failing write first writes only this many of its bytes, as a write a kill
   * ended early leaves the file.
   */
  writeBytes?: number
}

export interface DurableWriterEvents {
  /** The oldest `count` submissions not yet reported are durable (they complete in order). */
  onDone(count: number): void
  /** The oldest submission not reported done failed; no later one will be written. */
  onError(err: NodeJS.ErrnoException): void
}

/**
 * Makes staged bytes durable off the main thread. Submissions complete in the order they were
 * made; each is reported through DurableWriterEvents.
 */
export interface DurableWriter {
  /** A staging buffer this writer can write from; contents are unspecified. */
  allocate(size: number): Buffer
  /** A copy into buffers from allocate() faster than TypedArray#set, when there is one. */
  readonly copier?: BodyCopier | undefined
  /** A buffer from allocate() that will not be submitted again. */
  free(buf: Buffer): void
  /**
   * Queues a durable write of source[sourceOffset, +length) at `position` of `file`; `source`
   * must come from allocate(). False when the queue is full: submit again after a completion.
   * Nothing starts before start(), so submissions made together are written together.
   */
  submit(file: DataFile, source: Buffer, sourceOffset: number, length: number, position: number): boolean
  /**
   * Lets the writer write what was submitted so far ahead of start(), into the page cache only
   * (no durability, no completion): a thread already busy or polling takes it at once.
   */
  writeAhead(): void
  /** Starts writing what was submitted, and makes it durable. */
  start(): void
  /** Every submission for `file` has completed and none will follow: drop what is held for it. */
  release(file: DataFile): void
  /** Stops the writer once the submissions made so far are done (or failed). */
  close(): Promise<void>
}

export interface ThreadDurableWriterOptions {
  faults?: WriterFaults
  /** See DEFAULT_WRITER_SPIN_MICROS; 0 sleeps at once. */
  spinMicros?: number
  /** See DEFAULT_COMPLETION_POLL_MICROS; 0 waits for the thread's message only. */
  pollMicros?: number
  /** See DurableWriter.copier (the buffers are SharedArrayBuffers). */
  copier?: DurableWriter['copier']
}

export class ThreadDurableWriter implements DurableWriter {
  readonly copier: DurableWriter['copier']
  private readonly ctl: Int32Array
  private readonly worker: Worker
  private readonly port: MessagePort
  /** Counters as the thread sees them: Int32, wrapping; compare through `(a - b) | 0`. */
  private submitted = 0
  private done = 0
  private referenced = false
  private closed = false
  private failed = false
  private nextBufferId = 1
  private nextFileId = 1
  private readonly bufferIds = new WeakMap<ArrayBufferLike, number>()
  private readonly files = new Map<DataFile, { id: number; fd: number }>()
  private readonly exited: Promise<void>
  private failure: WriterFailure | undefined
  private hasExited = false
  private readonly pollMicros: number
  /** A poll turn is scheduled. */
  private polling = false
  /** When the poll budget started: the last start() or completion (performance.now()). */
  private pollSince = 0
  private polledCompletions = 0

  constructor(
    private readonly handler: DurableWriterEvents,
    options: ThreadDurableWriterOptions = {},
  ) {
    this.copier = options.copier
    this.pollMicros = options.pollMicros ?? DEFAULT_COMPLETION_POLL_MICROS
    this.ctl = new Int32Array(new SharedArrayBuffer((CTL_HEADER_INTS + RING_SLOTS * SLOT_INTS) * 4))
    const { port1, port2 } = new MessageChannel()
    this.port = port1
    // Completions arrive as messages: each is handled in its own callback, so the puts it
    // resolves run (and append the next group) before the next loop phase submits it.
    port1.on('message', (msg: { t?: string } & WriterFailure) => {
      if (msg.t === 'failure') this.failure = msg
      this.progress()
    })
    port1.unref()
    this.worker = new Worker(new URL('./durable-writer-worker.js', import.meta.url), {
      workerData: { ctl: this.ctl.buffer, port: port2, faults: options.faults, spinMicros: options.spinMicros ?? DEFAULT_WRITER_SPIN_MICROS },
      transferList: [port2],
      name: 'mqts-durable-writer',
      // The thread only makes fs calls; the parent's flags (some, like --input-type, are refused
      // in a worker) are not needed.
      execArgv: [],
    })
    this.worker.unref()
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', () => {
        this.hasExited = true
        resolve()
      }),
    )
    this.worker.on('error', (err) => this.crashed(err))
    this.worker.once('exit', (code) => this.crashed(new Error(`durable writer thread exited with code ${code}`)))
  }

  allocate(size: number): Buffer {
    const sab = new SharedArrayBuffer(size)
    const id = this.nextBufferId++
    this.bufferIds.set(sab, id)
    this.post({ t: 'buf', id, sab })
    return Buffer.from(sab)
  }

  free(buf: Buffer): void {
    const id = this.bufferIds.get(buf.buffer)
    if (id === undefined || this.closed) return
    this.bufferIds.delete(buf.buffer)
    this.post({ t: 'free', id })
  }

  submit(file: DataFile, source: Buffer, sourceOffset: number, length: number, position: number): boolean {
    if (this.closed || this.failed) throw Object.assign(new Error('durable writer is stopped'), { code: 'EBADF' })
    if (((this.submitted - this.done) | 0) >= RING_SLOTS) return false
    const bufferId = this.bufferIds.get(source.buffer)
    if (bufferId === undefined) throw new TypeError('submit() takes buffers from allocate()')
    let f = this.files.get(file)
    if (!f) {
      f = { id: this.nextFileId++, fd: fs.openSync(file.path, fs.constants.O_RDWR) }
      this.files.set(file, f)
      this.post({ t: 'file', id: f.id, fd: f.fd, path: file.path })
    }
    const ctl = this.ctl
    const at = CTL_HEADER_INTS + ((this.submitted >>> 0) % RING_SLOTS) * SLOT_INTS
    ctl[at] = bufferId
    ctl[at + 1] = f.id
    ctl[at + 2] = source.byteOffset + sourceOffset
    ctl[at + 3] = length
    ctl[at + 4] = position
    this.submitted = (this.submitted + 1) | 0
    return true
  }

  writeAhead(): void {
    Atomics.store(this.ctl, CTL.WRITABLE, this.submitted)
  }

  start(): void {
    const ctl = this.ctl
    if (Atomics.load(ctl, CTL.SUBMITTED) === this.submitted) return
    // WRITABLE first: the thread reads SUBMITTED, then WRITABLE, and relies on WRITABLE >= SUBMITTED.
    Atomics.store(ctl, CTL.WRITABLE, this.submitted)
    Atomics.store(ctl, CTL.SUBMITTED, this.submitted)
    Atomics.add(ctl, CTL.WAKE, 1)
    Atomics.notify(ctl, CTL.WAKE)
    if (this.pollMicros > 0) {
      this.pollSince = performance.now()
      if (!this.polling) {
        this.polling = true
        Atomics.store(ctl, CTL.POLLING, 1)
        setImmediate(this.pollTurn)
      }
    }
    if (!this.referenced) {
      // Keeps the process alive while a put waits for its write.
      this.referenced = true
      this.port.ref()
    }
  }

  release(file: DataFile): void {
    const f = this.files.get(file)
    if (!f) return
    this.files.delete(file)
    // Called only once every submission for the file completed: the thread is done with it.
    this.post({ t: 'forget', id: f.id })
    fs.closeSync(f.fd)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    Atomics.store(this.ctl, CTL.STOP, 1)
    Atomics.add(this.ctl, CTL.WAKE, 1)
    Atomics.notify(this.ctl, CTL.WAKE)
    this.worker.ref()
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, 10_000)))
    await Promise.race([this.exited, late])
    clearTimeout(timer)
    if (this.hasExited) {
      for (const f of this.files.values()) fs.closeSync(f.fd)
    } else {
      // Stuck in a syscall for 10 s: abandoned, its descriptors left open rather than reused under it.
      await this.worker.terminate()
    }
    this.files.clear()
    this.port.close()
  }

  /** Durable writes the thread has made (one per file per group). */
  get writes(): number {
    return Atomics.load(this.ctl, CTL.WRITES)
  }

  /** The main thread is checking for completions on every loop turn. */
  get pollingForCompletions(): boolean {
    return this.polling
  }

  /** Completions the main thread found by polling, before the thread's message arrived. */
  get completionsPolled(): number {
    return this.polledCompletions
  }

  /** One poll turn: reports what is done; schedules the next turn while some is outstanding, within the budget. */
  private readonly pollTurn = (): void => {
    const before = this.done
    if (!this.closed && !this.failed) this.progress()
    const now = performance.now()
    if (this.done !== before) {
      this.polledCompletions++
      this.pollSince = now
    }
    if (this.done !== this.submitted && !this.failed && !this.closed && (now - this.pollSince) * 1000 < this.pollMicros) {
      setImmediate(this.pollTurn)
      return
    }
    // Stop: from here the thread posts completions; one it stored before seeing this is taken now.
    this.polling = false
    Atomics.store(this.ctl, CTL.POLLING, 0)
    if (!this.closed && !this.failed && Atomics.load(this.ctl, CTL.DONE) !== this.done) this.progress()
  }

  private post(msg: WriterMessage): void {
    this.port.postMessage(msg)
  }

  /** Reads what the thread published; reports completions, then a failure. */
  private progress(): void {
    const ctl = this.ctl
    const done = Atomics.load(ctl, CTL.DONE)
    if (done !== this.done) {
      const count = (done - this.done) | 0
      this.done = done
      this.handler.onDone(count)
    }
    if ((this.failure !== undefined || Atomics.load(ctl, CTL.FAILED) !== 0) && !this.failed) {
      this.failed = true
      const msg = this.receiveFailure()
      const err = Object.assign(new Error(msg.message), { code: msg.code, errno: msg.errno, syscall: msg.syscall }) as NodeJS.ErrnoException
      this.unreference()
      this.handler.onError(err)
      return
    }
    if (this.done === this.submitted) this.unreference()
  }

  private receiveFailure(): WriterFailure {
    if (this.failure) return this.failure
    for (;;) {
      const m = receiveMessageOnPort(this.port)
      if (!m) return { code: 'EIO', errno: undefined, syscall: undefined, message: 'durable writer thread failed' }
      const msg = m.message as { t?: string } & WriterFailure
      if (msg.t === 'failure') return msg
    }
  }

  private unreference(): void {
    if (this.referenced && !this.closed) {
      this.referenced = false
      this.port.unref()
    }
  }

  private crashed(err: Error): void {
    if (this.closed || this.failed) return
    this.failed = true
    this.unreference()
    this.handler.onError(Object.assign(err, { code: (err as NodeJS.ErrnoException).code ?? 'EIO' }))
  }
}
