/**
 * @mqts/cli: the `mqts` command (src/main.ts) and what it runs, for embedding in scripts.
 */
export { runNamesrv, runBroker, runStandalone, brokerSettings, stopOnSignals, ENV, DEFAULT_DATA_DIR } from './servers.js'
export type { NamesrvFlags, BrokerFlags, StandaloneFlags } from './servers.js'
export { Admin, AdminError, table, formatRoute, formatClusters } from './admin.js'
