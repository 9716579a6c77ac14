/** Reading the broker's persisted config files (RocketMQ's ConfigManager.load). */
import { readConfigFile, type FileIO } from '@mqts/common'
import { BrokerError } from './errors.js'

/**
 * A broker config file (topics.json, subscriptionGroup.json, delayOffset.json) through
 * readConfigFile: undefined when absent; CONFIG_CORRUPT when it and its .bak hold something
 * and neither parses.
 */
export async function readBrokerConfigFile<T>(io: FileIO, file: string, parse: (text: string) => T): Promise<T | undefined> {
  try {
    return await readConfigFile(io, file, parse)
  } catch (err) {
    throw new BrokerError('CONFIG_CORRUPT', `cannot read ${file}: ${(err as Error).message}`, { cause: err })
  }
}
