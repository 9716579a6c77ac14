// The store checkpoint carries a CRC after RocketMQ's fields: one that fails it is not trusted
// (recovery scans from the first file and reports it); one written before the CRC still reads.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CHECKPOINT, CHECKPOINT_CRC_MAGIC, StoreCheckpoint, checkpointState, decodeCheckpoint, encodeCheckpoint, type CheckpointValues } from '../src/internal.js'
import { MessageStore, type PutResult } from '../src/index.js'
import { writeI64 } from '../src/codec/index.js'
import { SimFileIO } from '../src/sim-file-io.js'

const VALUES: CheckpointValues = {
  physicMsgTimestamp: 1_700_000_000_001,
  logicsMsgTimestamp: 1_700_000_000_002,
  indexMsgTimestamp: 1_700_000_000_003,
  masterFlushedOffset: 4,
  confirmPhyOffset: 5,
  physicalFlushedOffset: 6_000_000_000,
  logicsFlushedOffset: 7_000,
}

test('checkpoint layout: RocketMQ fields in place, then the magic and a CRC of what precedes it', () => {
  const order = ['physicMsgTimestamp', 'logicsMsgTimestamp', 'indexMsgTimestamp', 'masterFlushedOffset', 'confirmPhyOffset', 'physicalFlushedOffset', 'logicsFlushedOffset'] as const
  order.forEach((field, i) => assert.equal(CHECKPOINT[field], i * 8))
  assert.equal(CHECKPOINT.crcMagic, 56)
  assert.equal(CHECKPOINT.crc, 60)
  assert.equal(CHECKPOINT.usedBytes, 64)
  const b = Buffer.alloc(CHECKPOINT.usedBytes)
  encodeCheckpoint(b, VALUES)
  assert.equal(b.readUInt32BE(CHECKPOINT.crcMagic), CHECKPOINT_CRC_MAGIC)
  assert.equal(checkpointState(b), 'ok')
  assert.deepEqual(decodeCheckpoint(b), VALUES)
  for (const at of [0, 40, 47, 56, 63]) {
    const flipped = Buffer.from(b)
    flipped[at] ^= 0x10
    assert.equal(checkpointState(flipped), 'damaged', `bit flipped at byte ${at}`)
  }
})

test('a checkpoint written before the CRC (zeros from byte 56) reads as it is', async () => {
  const io = new SimFileIO()
  const legacy = Buffer.alloc(CHECKPOINT.fileBytes)
  writeI64(legacy, CHECKPOINT.physicalFlushedOffset, 12_345)
  writeI64(legacy, CHECKPOINT.logicsFlushedOffset, 678)
  await io.writeFileAtomic('/sim/cp/checkpoint', legacy)
  const cp = await StoreCheckpoint.open(io, '/sim/cp/checkpoint')
  assert.equal(cp.damaged, false)
  assert.equal(cp.values.physicalFlushedOffset, 12_345)
  assert.equal(cp.values.logicsFlushedOffset, 678)
  await cp.flush()
  const again = await StoreCheckpoint.open(io, '/sim/cp/checkpoint')
  assert.equal(again.damaged, false)
  assert.equal(checkpointState((await io.readFile('/sim/cp/checkpoint'))!), 'ok', 'rewritten with a CRC')
  await cp.close()
  await again.close()
})

test('a store whose checkpoint fails its CRC recovers from the first file, reports it, and loses nothing', { timeout: 30_000 }, async () => {
  const io = new SimFileIO()
  const options = { dir: '/sim/cp-store', commitLogFileSize: 16 * 1024, fileIO: io, messageIndexEnable: false }
  const store = await MessageStore.open(options)
  const puts: PutResult[] = []
  for (let i = 0; i < 60; i++) puts.push(await store.put({ topic: 't', queueId: i % 2, body: Buffer.alloc(500, i) }))
  await store.close()
  // One bit of the durable offset, far beyond the data: trusted, it would claim bytes that do not exist.
  const file = io.files.get('/sim/cp-store/checkpoint')!
  for (const image of [file.volatile, file.durable]) image[CHECKPOINT.physicalFlushedOffset + 2] ^= 0x01
  const reopened = await MessageStore.open(options)
  try {
    assert.equal(reopened.recovery.checkpointDamaged, true)
    assert.equal(reopened.recovery.cleanShutdown, false)
    assert.equal(reopened.recovery.durableOffset, 0)
    assert.equal(reopened.recovery.scanFromOffset, 0)
    assert.equal(reopened.recovery.truncated, undefined)
    for (const p of puts) assert.equal((await reopened.lookup(p.physicalOffset)).queueOffset, p.queueOffset)
    assert.equal(reopened.maxQueueOffset('t', 0), 30)
  } finally {
    await reopened.close()
  }
  const third = await MessageStore.open(options)
  try {
    assert.equal(third.recovery.checkpointDamaged, undefined, 'the checkpoint was rewritten whole')
    assert.equal(third.recovery.cleanShutdown, true)
  } finally {
    await third.close()
  }
})
