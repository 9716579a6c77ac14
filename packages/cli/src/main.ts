#!/usr/bin/env node
/**
 * The `mqts` command: `mqts namesrv`, `mqts broker -c broker.conf`, `mqts standalone` (what
 * `npm start` runs) and `mqts admin <command>`. `mqts <command> --help` explains each.
 */
import { Command, InvalidArgumentError } from 'commander'
import { MAX_QUEUES_PER_TOPIC, permProblem, queueNumsProblem } from '@mqts/broker'
import { Admin, AdminError, formatClusters, formatRoute, table } from './admin.js'
import { ENV, env, runBroker, runNamesrv, runStandalone, stopOnSignals } from './servers.js'

function int(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got ${JSON.stringify(value)}`)
  return n
}

/** -p of updateTopic: one of RocketMQ's perms (PermName), refused here before anything is sent. */
function perm(value: string): number {
  if (!/^[+-]?\d+$/.test(value.trim())) throw new InvalidArgumentError(`expected an integer 0-7, got ${JSON.stringify(value)}`)
  const n = Number(value)
  const problem = permProblem(n)
  if (problem) throw new InvalidArgumentError(problem)
  return n
}

function namesrvList(value: string | undefined): string[] {
  return (value ?? env(ENV.namesrv) ?? '')
    .split(/[;,]/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
}

/** Runs an admin action with a client, prints its result, exits non-zero on error. */
async function admin(namesrv: string | undefined, action: (a: Admin) => Promise<void>): Promise<void> {
  let a: Admin | undefined
  try {
    a = new Admin(namesrvList(namesrv))
    await action(a)
  } catch (err) {
    console.error(`mqts admin: ${err instanceof AdminError ? err.message : (err as Error).message}`)
    process.exitCode = 1
  } finally {
    await a?.close()
  }
}

function print(json: boolean | undefined, value: unknown, text: string): void {
  console.log(json ? JSON.stringify(value, null, 2) : text)
}

const program = new Command('mqts').description('mqts: a RocketMQ-compatible nameserver and broker for Node.js').showHelpAfterError()

program
  .command('namesrv')
  .description('run a nameserver')
  .option('--host <host>', `listen address (env ${ENV.host}; default 127.0.0.1)`)
  .option('-p, --port <port>', 'listen port (default 9876; 0 picks a free one)')
  .option('-d, --data <dir>', `data directory, for kvConfig.json (env ${ENV.dataDir}; default ./data)`)
  .option('--broker-expiry <ms>', 'a broker silent this long is removed (default 120000)', int)
  .option('--scan-interval <ms>', 'how often silent brokers are looked for (default 5000)', int)
  .action(async (flags) => {
    const ns = await runNamesrv(flags)
    stopOnSignals('mqts namesrv', () => ns.stop())
  })

program
  .command('broker')
  .description('run a broker')
  .option('-c, --config <file>', "RocketMQ's broker.conf (key=value lines)")
  .option('-n, --namesrv <list>', `nameservers, a;b (env ${ENV.namesrv})`)
  .option('--host <host>', `listen address (env ${ENV.host}; default 127.0.0.1)`)
  .option('-p, --port <port>', 'listen port (default 10911; 0 picks a free one)')
  .option('-d, --data <dir>', `data directory; the store goes to <dir>/store (env ${ENV.dataDir}; default ./data)`)
  .option('--name <brokerName>', 'brokerName (default broker-a)')
  .option('--cluster <brokerClusterName>', 'brokerClusterName (default DefaultCluster)')
  .option('--id <brokerId>', 'brokerId: 0 for a master')
  .option('--role <brokerRole>', 'ASYNC_MASTER | SYNC_MASTER | SLAVE')
  .option('--flush <flushDiskType>', 'ASYNC_FLUSH | SYNC_FLUSH')
  .action(async (flags) => {
    const broker = await runBroker(flags)
    stopOnSignals('mqts broker', () => broker.stop())
  })

program
  .command('standalone')
  .description('run a nameserver and a broker in one process (what `npm start` runs)')
  .option('--host <host>', `listen address of both (env ${ENV.host}; default 127.0.0.1)`)
  .option('--namesrv-port <port>', 'nameserver port (default 9876)')
  .option('--broker-port <port>', 'broker port (default 10911)')
  .option('-d, --data <dir>', `data directory (env ${ENV.dataDir}; default ./data)`)
  .action(async (flags) => {
    const { ns, broker } = await runStandalone(flags)
    stopOnSignals('mqts standalone', async () => {
      await broker.stop()
      await ns.stop()
    })
  })

const adminCmd = program.command('admin').description("admin commands over the protocol, as RocketMQ's mqadmin")
const nsOption = ['-n, --namesrv <list>', `nameservers, a;b (env ${ENV.namesrv})`] as const

adminCmd
  .command('updateTopic')
  .description('create or update a topic on every master of a cluster (-c) or on one broker (-b)')
  .option(...nsOption)
  .requiredOption('-t, --topic <topic>', 'topic name')
  .option('-c, --cluster <cluster>', 'cluster name: every master of it')
  .option('-b, --broker <addr>', 'one broker, host:port')
  .option('-r, --read <n>', `readQueueNums, 0-${MAX_QUEUES_PER_TOPIC}`, int, 8)
  .option('-w, --write <n>', `writeQueueNums, 0-${MAX_QUEUES_PER_TOPIC}`, int, 8)
  .option('-p, --perm <perm>', 'permission 0-7: 2 write, 4 read, 6 read-write (+1 inherit)', perm, 6)
  .option('--json', 'print JSON')
  .action(async (o) => {
    const problem = !o.cluster === !o.broker ? 'give exactly one of -c <cluster> or -b <broker addr>' : queueNumsProblem(o.read, o.write)
    if (problem) {
      console.error(`mqts admin updateTopic: ${problem}`)
      process.exitCode = 1
      return
    }
    await admin(o.namesrv, async (a) => {
      const brokers = await a.updateTopic({ topic: o.topic, cluster: o.cluster, broker: o.broker, read: o.read, write: o.write, perm: o.perm })
      print(o.json, { topic: o.topic, brokers, readQueueNums: o.read, writeQueueNums: o.write, perm: o.perm }, table(['#Topic', '#Broker', '#Read', '#Write', '#Perm'], brokers.map((b) => [o.topic, b, String(o.read), String(o.write), String(o.perm)])))
    })
  })

adminCmd
  .command('deleteTopic')
  .description("delete a topic from a cluster's masters and from the nameservers")
  .option(...nsOption)
  .requiredOption('-t, --topic <topic>', 'topic name')
  .requiredOption('-c, --cluster <cluster>', 'cluster name')
  .option('--json', 'print JSON')
  .action(async (o) => {
    await admin(o.namesrv, async (a) => {
      const brokers = await a.deleteTopic(o.topic, o.cluster)
      print(o.json, { topic: o.topic, brokers }, `deleted ${o.topic} from ${brokers.join(', ')} and the nameservers`)
    })
  })

adminCmd
  .command('topicList')
  .description('every topic the nameserver knows')
  .option(...nsOption)
  .option('--json', 'print JSON')
  .action(async (o) => {
    await admin(o.namesrv, async (a) => {
      const topics = await a.topicList()
      print(o.json, topics, topics.join('\n'))
    })
  })

adminCmd
  .command('topicRoute')
  .description("a topic's route: brokers, queue counts, permission")
  .option(...nsOption)
  .requiredOption('-t, --topic <topic>', 'topic name')
  .option('--json', 'print JSON')
  .action(async (o) => {
    await admin(o.namesrv, async (a) => {
      const route = await a.topicRoute(o.topic)
      print(o.json, route, formatRoute(route))
    })
  })

adminCmd
  .command('clusterList')
  .description('clusters, brokers and their addresses')
  .option(...nsOption)
  .option('--json', 'print JSON')
  .action(async (o) => {
    await admin(o.namesrv, async (a) => {
      const info = await a.clusterInfo()
      print(o.json, info, formatClusters(info))
    })
  })

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`mqts: ${(err as Error).message}`)
  process.exit(1)
})
