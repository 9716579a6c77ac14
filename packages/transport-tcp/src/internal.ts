/** For sibling packages, tests and benchmarks; not a stable API. */
export * from './tcp-connection.js'
export * from './tcp-server.js'
export * from './tcp-client.js'
export * from './read-arena.js'
