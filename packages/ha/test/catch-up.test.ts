// The in-sync rule on its own, with a clock the test sets: when a link joins and leaves.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CatchUp } from '../src/catch-up.js'

const T = 1000
const GAP = 1 << 20

test('a link that keeps acknowledging one send behind a master that never stops joins and stays in sync', () => {
  const c = new CatchUp()
  c.sent(100, 0) // the link starts with the master at 100
  let now = 0
  for (let i = 1; i <= 50; i++) {
    now += 20
    c.sent(100 + i * 10, now) // a new send before each acknowledgement
    c.acknowledged(100 + (i - 1) * 10) // it holds what the master had one send ago
    const change = c.update(now, 10, T, GAP)
    if (i === 1) assert.deepEqual(change, { joined: true })
    else assert.equal(change, undefined)
  }
  assert.equal(c.inSync, true)
})

test('a link copying a log joins once it holds what the master had when it started; one that stops acknowledging leaves after maxTimeNotCaughtUpMs', () => {
  const c = new CatchUp()
  c.sent(5000, 0)
  c.acknowledged(0)
  assert.equal(c.update(10, 5000, T, GAP), undefined, 'never in sync: nothing changes')
  assert.equal(c.inSync, false)
  c.sent(6000, 100)
  c.acknowledged(4999)
  assert.equal(c.update(200, 1001, T, GAP), undefined, 'not yet')
  c.acknowledged(5000)
  assert.deepEqual(c.update(300, 1000, T, GAP), { joined: true })
  // It stops: what the master sent at 100 is still missing at 1100 (T later), not yet at 1099.
  assert.equal(c.update(1100, 1000, T, GAP), undefined)
  const left = c.update(1101, 1000, T, GAP)
  assert.equal(left?.joined, false)
  assert.match((left as { why: string }).why, /not caught up for 1001 ms/)
  // It comes back.
  c.acknowledged(6000)
  assert.deepEqual(c.update(1200, 0, T, GAP), { joined: true })
  // Too far behind in bytes, whatever the time.
  assert.match((c.update(1201, GAP, T, GAP) as { why: string }).why, /haMaxGapNotInSync/)
})

test('a peer that repeats a report below what it was sent never joins', () => {
  const c = new CatchUp()
  c.sent(3000, 0)
  for (let now = 0; now < 5000; now += 100) {
    c.acknowledged(7)
    assert.equal(c.update(now, 2993, T, GAP), undefined)
  }
  assert.equal(c.inSync, false)
})
