/**
 * Running the servers from the command line: a nameserver, a broker (from RocketMQ's broker.conf,
 * flags and environment variables), or both in one process (standalone, what `npm start` runs).
 * Each prints where it listens and shuts down in order on SIGTERM or SIGINT.
 */
import { readFile } from 'node:fs/promises'
import * as path from 'node:path'
import { Broker, parseBrokerConf, type BrokerOptions } from '@mqts/broker'
import { NameServer } from '@mqts/namesrv'
import type { Logger } from '@mqts/transport'

/** Environment variables the commands read (flags win over them). */
export const ENV = {
  dataDir: 'MQTS_DATA_DIR',
  host: 'MQTS_HOST',
  namesrv: 'MQTS_NAMESRV',
} as const

export const DEFAULT_DATA_DIR = './data'

/** An environment variable's value; an empty one counts as unset. */
export function env(name: string): string | undefined {
  const v = process.env[name]
  return v === undefined || v === '' ? undefined : v
}

export const logger: Logger = {
  warn: (message, fields) => console.error(`[mqts] ${message}${fields ? ' ' + JSON.stringify(fields) : ''}`),
}

/** Stops `stop` once on SIGTERM or SIGINT, then exits (0, or 1 if stopping failed). */
export function stopOnSignals(what: string, stop: () => Promise<void>): void {
  let stopping = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return
    stopping = true
    console.log(`${what} stopping (${signal})`)
    stop().then(
      () => {
        console.log(`${what} stopped`)
        process.exit(0)
      },
      (err: unknown) => {
        console.error(`${what} did not stop cleanly: ${(err as Error).message}`)
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
}

export interface NamesrvFlags {
  host?: string
  port?: string
  data?: string
  brokerExpiry?: number
  scanInterval?: number
}

export async function runNamesrv(flags: NamesrvFlags): Promise<NameServer> {
  const ns = await NameServer.start({
    host: flags.host ?? env(ENV.host) ?? '127.0.0.1',
    port: flags.port !== undefined ? Number(flags.port) : undefined,
    dataDir: path.join(flags.data ?? env(ENV.dataDir) ?? DEFAULT_DATA_DIR, 'namesrv'),
    brokerExpiryMs: flags.brokerExpiry,
    scanIntervalMs: flags.scanInterval,
    logger,
  })
  console.log(`mqts namesrv listening on ${ns.address()}`)
  return ns
}

export interface BrokerFlags {
  config?: string
  namesrv?: string
  host?: string
  port?: string
  data?: string
  name?: string
  cluster?: string
  id?: string
  role?: string
  flush?: string
}

/** Broker settings: broker.conf first, then environment variables, then flags. */
export async function brokerSettings(flags: BrokerFlags): Promise<BrokerOptions> {
  const settings: Record<string, unknown> = {}
  if (flags.config) Object.assign(settings, parseBrokerConf(await readFile(flags.config, 'utf8')))
  const set = (key: string, value: string | undefined): void => {
    if (value !== undefined) settings[key] = value
  }
  set('namesrvAddr', env(ENV.namesrv))
  set('listenHost', env(ENV.host))
  const dataDir = env(ENV.dataDir)
  if (dataDir !== undefined && settings.storePathRootDir === undefined) settings.storePathRootDir = path.join(dataDir, 'store')
  set('namesrvAddr', flags.namesrv)
  set('listenHost', flags.host)
  set('listenPort', flags.port)
  if (flags.data !== undefined) settings.storePathRootDir = path.join(flags.data, 'store')
  set('brokerName', flags.name)
  set('brokerClusterName', flags.cluster)
  set('brokerId', flags.id)
  set('brokerRole', flags.role)
  set('flushDiskType', flags.flush)
  if (settings.storePathRootDir === undefined) settings.storePathRootDir = path.join(DEFAULT_DATA_DIR, 'store')
  return settings as BrokerOptions
}

export async function runBroker(flags: BrokerFlags): Promise<Broker> {
  const broker = await Broker.start({ ...(await brokerSettings(flags)), logger })
  console.log(`mqts broker ${broker.config.brokerName} (id ${broker.config.brokerId}, cluster ${broker.config.brokerClusterName}) listening on ${broker.address}, store ${broker.config.storePathRootDir}${broker.haAddress ? `, HA on ${broker.haAddress}` : ''}`)
  return broker
}

export interface StandaloneFlags {
  host?: string
  namesrvPort?: string
  brokerPort?: string
  data?: string
}

/** A nameserver and a broker in one process: the embedded default `npm start` runs. */
export async function runStandalone(flags: StandaloneFlags): Promise<{ ns: NameServer; broker: Broker }> {
  const data = flags.data ?? env(ENV.dataDir) ?? DEFAULT_DATA_DIR
  const host = flags.host ?? env(ENV.host) ?? '127.0.0.1'
  const ns = await runNamesrv({ host, port: flags.namesrvPort ?? '9876', data })
  try {
    const broker = await runBroker({ namesrv: ns.address(), host, port: flags.brokerPort ?? '10911', data })
    return { ns, broker }
  } catch (err) {
    await ns.stop()
    throw err
  }
}
