/**
 * The broker benchmark's server process: a real Broker (the server code `mqts broker` runs), alone
 * in this process, as a deployment runs it. The parent starts it, reads its CPU use and stops it.
 */
import { Broker } from '@mqts/broker'
import { silentLogger } from '@mqts/transport'
import { cpuMicros, mainThreadCpuMicros, serveParent, settleStore } from '../lib/child.js'

export interface ServerStart {
  dir: string
  fileBytes: number
}

let broker: Broker | undefined

serveParent({
  async start(arg: ServerStart): Promise<string> {
    // No nameserver: the load generator dials the broker directly; registration has no one to call.
    broker = await Broker.start({ listenHost: '127.0.0.1', listenPort: 0, namesrvAddr: [], storePathRootDir: arg.dir, logger: silentLogger, mappedFileSizeCommitLog: arg.fileBytes, messageIndexEnable: false })
    return broker.address
  },
  /** Waits for the store's background work (see settleStore). */
  settle: () => settleStore(broker!.store),
  /** CPU µs so far: the whole process, and its main thread (the event loop) where known. */
  cpu: () => ({ process: cpuMicros(), main: mainThreadCpuMicros(), loop: performance.eventLoopUtilization() }),
  async stop(): Promise<void> {
    await broker?.stop()
    broker = undefined
  },
})
