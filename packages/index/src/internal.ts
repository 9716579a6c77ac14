/** For sibling packages, tests and benchmarks; not a stable API. */
export * from './format.js'
export * from './errors.js'
export * from './checkpoint.js'
export * from './mapping.js'
export * from './index-file.js'
export * from './index-service.js'
