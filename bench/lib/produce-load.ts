/**
 * The batched produce load the broker benchmark measures and the HA benchmark replays to measure
 * replication lag: 1 KiB messages in batches of 32 over 4 queues, 4 connections with 4 batches in
 * flight each, 256 MiB CommitLog files, a warm-up of single sends first.
 */
export const BODY_BYTES = 1024
export const BATCH = 32
export const QUEUES = 4
export const CONNECTIONS = 4
export const IN_FLIGHT_PER_CONNECTION = 4
export const FILE_BYTES = 256 * 1024 * 1024
export const WARMUP_SENDS = 200
