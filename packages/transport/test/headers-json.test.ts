// Custom header readers (values as text, numbers and booleans included) and JSON bodies as
// fastjson writes them (bare integer map keys).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RemotingCommand, TransportError, encodeRemotingJson, headerInt, headerOptionalBool, headerOptionalInt, headerOptionalString, headerString, parseRemotingJson } from '../src/index.js'

test('header readers: required and optional fields, integers, booleans, typed errors naming the field', () => {
  const cmd = new RemotingCommand({ code: 105, extFields: { topic: 'T', queueId: '3', big: '-9007199254740991', flag: 'TRUE', empty: '', bad: '1.5', hex: '0x10' } })
  assert.equal(headerString(cmd, 'topic'), 'T')
  assert.equal(headerInt(cmd, 'queueId'), 3)
  assert.equal(headerInt(cmd, 'big'), -9007199254740991)
  assert.equal(headerOptionalBool(cmd, 'flag'), true)
  assert.equal(headerOptionalBool(cmd, 'topic'), false)
  assert.equal(headerOptionalBool(cmd, 'none'), undefined)
  assert.equal(headerOptionalString(cmd, 'empty'), undefined)
  assert.equal(headerOptionalInt(cmd, 'none'), undefined)
  const bad = (fn: () => unknown, field: string): void => {
    assert.throws(fn, (e: unknown) => e instanceof TransportError && e.code === 'BAD_HEADER' && e.message.includes(field))
  }
  bad(() => headerString(cmd, 'missing'), 'missing')
  bad(() => headerString(cmd, 'empty'), 'empty')
  bad(() => headerInt(cmd, 'bad'), 'bad')
  bad(() => headerInt(cmd, 'hex'), 'hex')
  bad(() => headerInt(cmd, 'topic'), 'topic')
})

test('parseRemotingJson reads standard JSON and fastjson bare integer keys, never inside strings', () => {
  assert.deepEqual(parseRemotingJson('{"a":1}'), { a: 1 })
  assert.deepEqual(parseRemotingJson(Buffer.from('{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"}}')), { brokerAddrs: { '0': '127.0.0.1:10911', '1': '127.0.0.1:10921' } })
  assert.deepEqual(parseRemotingJson('{ -1 : "x", "s":"{0:1, 2:3}", "arr":[1, 2, {3:4}]}'), { '-1': 'x', s: '{0:1, 2:3}', arr: [1, 2, { '3': 4 }] })
  assert.deepEqual(parseRemotingJson('{"q\\"uote":{7:"v"}}'), { 'q"uote': { '7': 'v' } })
  assert.throws(() => parseRemotingJson('{bare:1}'), (e: unknown) => e instanceof TransportError && e.code === 'BAD_BODY')
  assert.throws(() => parseRemotingJson(Buffer.from([0xff, 0x00])), (e: unknown) => e instanceof TransportError && e.code === 'BAD_BODY')
  assert.equal(encodeRemotingJson({ brokerAddrs: { 0: 'a:1' } }).toString(), '{"brokerAddrs":{"0":"a:1"}}')
})
