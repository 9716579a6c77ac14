// Real processes for the cross-package tests: the `mqts` command's nameserver and broker, each
// on a free loopback port (port 0, the address read from the line it prints), and the ali-ons
// client fixture. Everything started here is killed by stopAll().
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const MQTS = path.join(ROOT, 'packages', 'cli', 'dist', 'src', 'main.js')
export const ONS_CLIENT = path.join(ROOT, 'test', 'fixtures', 'ons-client.cjs')

export interface Server {
  child: ChildProcess
  address: string
  output: string[]
}

const running = new Set<ChildProcess>()

/** Starts `mqts <args>` and resolves once it prints "listening on <address>". */
export function startMqts(args: string[], timeoutMs = 20_000): Promise<Server> {
  const child = spawn(process.execPath, [MQTS, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MQTS_NAMESRV: '', MQTS_HOST: '', MQTS_DATA_DIR: '' } })
  running.add(child)
  child.on('exit', () => running.delete(child))
  const output: string[] = []
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`mqts ${args.join(' ')} did not start within ${timeoutMs} ms:\n${output.join('')}`))
    }, timeoutMs)
    const onData = (chunk: Buffer): void => {
      output.push(chunk.toString())
      const m = /listening on (\S+?)(,|\s|$)/.exec(output.join(''))
      if (m) {
        clearTimeout(timer)
        resolve({ child, address: m[1]!, output })
      }
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', (c: Buffer) => output.push(c.toString()))
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`mqts ${args.join(' ')} exited (${code ?? signal}) before listening:\n${output.join('')}`))
    })
  })
}

/** Sends `signal` and resolves with the exit code once the process is gone. */
export function stop(server: Server, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<number | null> {
  const child = server.child
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode)
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
    child.kill(signal)
  })
}

/** Kills every process still running (a test's cleanup). */
export function stopAll(): void {
  for (const c of running) c.kill('SIGKILL')
  running.clear()
}

/** Runs `mqts admin ...` to completion. */
export function admin(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MQTS, 'admin', ...args], { encoding: 'utf8', timeout: 30_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** Runs the ali-ons fixture to completion; its JSON lines, parsed. */
export function onsClient<T = Record<string, unknown>>(namesrv: string, args: string[], timeoutMs = 90_000): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ONS_CLIENT, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NAMESRV: namesrv } })
    running.add(child)
    let out = ''
    let err = ''
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()))
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      running.delete(child)
      if (code !== 0) {
        reject(new Error(`ali-ons ${args.join(' ')} exited ${code}:\n${err}\n${out}`))
        return
      }
      resolve(
        out
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as T),
      )
    })
  })
}
