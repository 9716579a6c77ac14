// The mqts command's parts alone: broker settings from broker.conf, environment and flags (flags
// win), aligned tables, and `--help` / bad input exit codes of the built command.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { brokerSettings, table } from '../src/index.js'

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'main.js')

test('broker settings: broker.conf, then MQTS_* variables, then flags', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-cli-'))
  const saved = { ...process.env }
  try {
    const conf = path.join(dir, 'broker.conf')
    await writeFile(conf, 'brokerName=from-conf\nnamesrvAddr=10.0.0.1:9876\nlistenPort=11011\n')
    process.env.MQTS_NAMESRV = '10.0.0.2:9876'
    process.env.MQTS_DATA_DIR = path.join(dir, 'envdata')
    const s = await brokerSettings({ config: conf, port: '12000' })
    assert.equal(s.brokerName, 'from-conf')
    assert.equal(s.namesrvAddr, '10.0.0.2:9876', 'the environment over broker.conf')
    assert.equal(s.listenPort, '12000', 'a flag over both')
    assert.equal(s.storePathRootDir, path.join(dir, 'envdata', 'store'))
    const f = await brokerSettings({ data: path.join(dir, 'flagdata'), namesrv: '10.0.0.3:9876' })
    assert.equal(f.storePathRootDir, path.join(dir, 'flagdata', 'store'))
    assert.equal(f.namesrvAddr, '10.0.0.3:9876')
  } finally {
    process.env = saved
    await rm(dir, { recursive: true, force: true })
  }
})

test('tables are aligned to the widest cell', () => {
  assert.equal(table(['#A', '#Bee'], [['x', 'y'], ['longer', 'z']]), '#A      #Bee\nx       y\nlonger  z')
})

test('the built command: --help exits 0, an unknown command and a bad flag exit non-zero with a message', () => {
  const run = (args: string[]): { status: number | null; out: string } => {
    const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 20_000 })
    return { status: r.status, out: r.stdout + r.stderr }
  }
  const help = run(['--help'])
  assert.equal(help.status, 0)
  assert.match(help.out, /namesrv[\s\S]*broker[\s\S]*standalone[\s\S]*admin/)
  assert.notEqual(run(['nonsense']).status, 0)
  const bad = run(['admin', 'updateTopic', '-t', 'T', '-r', 'x', '-b', '127.0.0.1:1'])
  assert.notEqual(bad.status, 0)
  assert.match(bad.out, /non-negative integer/)
  const none = run(['admin', 'topicList', '-n', ''])
  assert.notEqual(none.status, 0)
  assert.match(none.out, /no nameserver/)
})

test("admin updateTopic refuses a perm outside RocketMQ's 0-7 and queue counts out of range before it connects", () => {
  const run = (args: string[]): { status: number | null; out: string } => {
    const r = spawnSync(process.execPath, [MAIN, 'admin', 'updateTopic', '-n', '127.0.0.1:1', '-t', 'T', '-b', '127.0.0.1:1', ...args], { encoding: 'utf8', timeout: 20_000 })
    return { status: r.status, out: r.stdout + r.stderr }
  }
  for (const perm of ['99', '8', '-1']) {
    const r = run(['-p', perm])
    assert.notEqual(r.status, 0, `-p ${perm}`)
    assert.match(r.out, new RegExp(`topicPermission value: ${perm} is invalid: a topic's perm is 0-7`), `-p ${perm}: ${r.out}`)
  }
  const queues = run(['-r', '2000'])
  assert.notEqual(queues.status, 0)
  assert.match(queues.out, /readQueueNums.*2000/)
  const none = run(['-r', '0', '-w', '0'])
  assert.notEqual(none.status, 0)
  assert.match(none.out, /not both 0/)
})
