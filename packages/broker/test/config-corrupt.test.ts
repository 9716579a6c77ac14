// A config file that exists but does not parse, with no backup that does, stops the broker from
// starting (as RocketMQ's ConfigManager.load failing stops its broker) instead of starting it
// empty, which would lose the topics, groups, delay progress or offsets at the next write.
import assert from 'node:assert/strict'
import { readFile, rm, writeFile, mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { test } from 'node:test'
import { NameServer } from '@mqts/namesrv'
import { silentLogger } from '@mqts/transport'
import { Broker } from '../src/index.js'
import { createTopic, startCluster, stopCluster } from './helpers.js'

test('a corrupt topics.json, subscriptionGroup.json, delayOffset.json or consumerOffset.json (and .bak) fails the start with a typed error and is left as it was', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'mqts-broker-corrupt-'))
  try {
    const c = await startCluster(dir)
    assert.equal((await createTopic(c, 'Kept', 2, 2)).code, 0)
    c.broker.store.commitOffset('G', 'Kept', 0, 1)
    await stopCluster(c)
    const ns = await NameServer.start({ port: 0, logger: silentLogger })
    try {
      for (const [name, code] of [
        ['topics.json', 'CONFIG_CORRUPT'],
        ['subscriptionGroup.json', 'CONFIG_CORRUPT'],
        ['delayOffset.json', 'CONFIG_CORRUPT'],
        ['consumerOffset.json', 'CORRUPT_FILE'],
      ] as const) {
        const file = path.join(dir, 'config', name)
        const good = await readFile(file).catch(() => undefined)
        await writeFile(file, '{"truncated": ')
        await writeFile(`${file}.bak`, 'not json either')
        await assert.rejects(
          Broker.start({ listenPort: 0, namesrvAddr: [ns.address()], storePathRootDir: dir, logger: silentLogger, store: { commitLogFileSize: 4 * 1024 * 1024, maxHashSlotNum: 1024, maxIndexNum: 4096 } }),
          (err: Error & { code?: string }) => {
            assert.equal(err.code, code, `${name}: ${err.message}`)
            assert.match(err.message, new RegExp(name.replace('.', '\\.')))
            return true
          },
        )
        assert.equal(await readFile(file, 'utf8'), '{"truncated": ', `${name} is left for the operator`)
        // Put the good content back for the next file's turn.
        if (good) await writeFile(file, good)
        else await rm(file)
        await rm(`${file}.bak`, { force: true })
      }
    } finally {
      await ns.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
