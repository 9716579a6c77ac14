/**
 * The batched produce load the broker benchmark measures and the HA benchmark replays to measure
 * replication lag: 1 KiB messages in batches of 32 over 4 queues, 4 connections with 8 batches in
 * flight each (4 for the lag), 256 MiB CommitLog files, a warm-up of single sends first.
 */
export const BODY_BYTES = 1024
export const BATCH = 32
export const QUEUES = 4
export const CONNECTIONS = 4
/**
 * Batches in flight per connection: enough that the broker is never without a request (its event
 * loop busy 97-98% of a round). With 4 it waited for requests a quarter of each round (answers
 * leave at the end of a turn of its loop, so they reach the load generator in bursts), which the
 * throughput ratio then measured instead of the broker. A RocketMQ producer's async sends are not
 * limited per connection (the Java client allows 65,535 at once).
 */
export const IN_FLIGHT_PER_CONNECTION = 8
/** The HA benchmark's lag row: 4 batches in flight per connection, as its README figures were measured. */
export const LAG_IN_FLIGHT_PER_CONNECTION = 4
export const FILE_BYTES = 256 * 1024 * 1024
export const WARMUP_SENDS = 200
