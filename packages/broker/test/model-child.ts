// The broker of model.test.ts's crash steps, in its own process: started on the directory given
// as the first argument with SYNC_FLUSH, it prints "ready <address>" and serves until SIGKILL.
// The options are the test's own, so both open the same store the same way.
import { silentLogger } from '@mqts/transport'
import { Broker, type BrokerOptions } from '../src/index.js'

export function modelBrokerOptions(dir: string, flushDiskType: 'SYNC_FLUSH' | 'ASYNC_FLUSH'): BrokerOptions {
  return { listenPort: 0, storePathRootDir: dir, logger: silentLogger, flushDiskType, store: { commitLogFileSize: 256 * 1024, maxHashSlotNum: 256, maxIndexNum: 1024 } }
}

// Run as a script (not imported by the test for its options).
if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) {
  const broker = await Broker.start(modelBrokerOptions(process.argv[2]!, 'SYNC_FLUSH'))
  process.stdout.write(`ready ${broker.address}\n`)
}
