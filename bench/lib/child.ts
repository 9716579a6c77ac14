/**
 * Benchmark parts that run in processes of their own (a server, a load generator, a baseline), so
 * that one event loop does not serve both ends of a connection. The parent forks a compiled module
 * and calls its handlers by name over the IPC channel; each call answers one value or an error.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import type { MessageStore } from '@mqts/store'
import { fileURLToPath } from 'node:url'

interface Call {
  id: number
  op: string
  arg: unknown
}

interface Reply {
  id: number
  value?: unknown
  error?: string
}

export type Handlers = Record<string, (arg: any) => unknown>

/** A forked benchmark process whose handlers the parent calls. */
export class BenchChild {
  readonly #child: ChildProcess
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  #nextId = 1
  #exited: Error | undefined

  /** Forks `moduleUrl` (an import.meta.url-relative URL of a compiled module) with node flags `execArgv`. */
  constructor(
    readonly name: string,
    moduleUrl: URL,
    execArgv: string[] = [],
  ) {
    this.#child = fork(fileURLToPath(moduleUrl), [], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    this.#child.on('message', (m: Reply) => {
      const p = this.#pending.get(m.id)
      if (!p) return
      this.#pending.delete(m.id)
      if (m.error !== undefined) p.reject(new Error(`${this.name}: ${m.error}`))
      else p.resolve(m.value)
    })
    this.#child.on('exit', (code, signal) => {
      this.#exited = new Error(`${this.name} exited (code ${code}, signal ${signal})`)
      for (const p of this.#pending.values()) p.reject(this.#exited)
      this.#pending.clear()
    })
  }

  get pid(): number | undefined {
    return this.#child.pid
  }

  call<T>(op: string, arg: unknown = null): Promise<T> {
    if (this.#exited) return Promise.reject(this.#exited)
    const id = this.#nextId++
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      this.#child.send({ id, op, arg } satisfies Call)
    })
  }

  /** Asks the child to finish (its `stop` handler, then exit), killing it if it has not within `ms`. */
  async stop(ms = 10_000): Promise<void> {
    if (this.#exited) return
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()))
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), ms)
    try {
      await this.call('stop').catch(() => undefined)
      this.#child.disconnect?.()
      await exited
    } finally {
      clearTimeout(timer)
    }
  }
}

/**
 * The child's side: answers the parent's calls with `handlers`. A `stop` handler, if any, runs
 * before the process exits on the parent's `stop`; the process also exits when the parent goes.
 */
export function serveParent(handlers: Handlers): void {
  process.on('message', (m: Call) => {
    void (async () => {
      let reply: Reply
      try {
        const h = handlers[m.op]
        if (!h && m.op !== 'stop') throw new Error(`no handler ${m.op}`)
        reply = { id: m.id, value: h ? await h(m.arg) : null }
      } catch (err) {
        reply = { id: m.id, error: (err as Error)?.stack ?? String(err) }
      }
      process.send!(reply)
      if (m.op === 'stop') process.disconnect()
    })()
  })
  process.on('disconnect', () => process.exit(0))
}

/**
 * CPU time (µs) of this process's main thread (the event loop) so far, from Linux's schedstat;
 * undefined where that is not readable.
 */
export function mainThreadCpuMicros(): number | undefined {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'latin1').split(' ')[0]) / 1000
  } catch {
    return undefined
  }
}

/** CPU (user + system, µs) this process used since `since` (a process.cpuUsage() value). */
export function cpuMicros(since?: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since)
  return u.user + u.system
}

/**
 * Waits until `store` has flushed what it holds and its background file work (the next file's
 * allocation, page-cache warm-up) is done: a round measured in one process then starts with
 * nothing of the last round left to do, in neither process (on a machine of few cores that work
 * would run in the other side's round).
 */
export async function settleStore(store: MessageStore): Promise<void> {
  await store.flush()
  await store.commitLog.queue.whenIdle()
}
