/** Seeded randomness and command generators for property and fuzz tests. */
import { randomBytes, randomInt } from '@mqts/common'
import { LanguageCode } from './codes.js'
import { RemotingCommand, SerializeType } from './command.js'

export { randomBytes, randomInt, seedFromEnv, seededRandom } from '@mqts/common'

const ALPHABET = ['a', 'Z', '0', ' ', '=', '\u0001', 'é', '✓', 'ключ', '😀', '"', '\\', '\n', '%RETRY%']

export function randomString(rng: () => number, maxParts: number): string {
  let s = ''
  const n = randomInt(rng, 0, maxParts)
  for (let i = 0; i < n; i++) s += ALPHABET[randomInt(rng, 0, ALPHABET.length - 1)]!
  return s
}

/** A command valid in the given serialization (ROCKETMQ needs short codes and versions). */
export function randomCommand(rng: () => number, type: SerializeType, maxBodyBytes = 2048): RemotingCommand {
  const binary = type === SerializeType.ROCKETMQ
  const extFields: Record<string, string> = {}
  const nExt = randomInt(rng, 0, 6)
  for (let i = 0; i < nExt; i++) extFields[randomString(rng, 4) || `k${i}`] = randomString(rng, 8)
  const remarkRoll = rng()
  // ROCKETMQ cannot tell an empty remark from null; keep generated remarks non-empty there.
  const remark = remarkRoll < 0.4 ? null : binary ? `r${randomString(rng, 6)}` : randomString(rng, 6)
  return new RemotingCommand({
    code: binary ? randomInt(rng, -0x8000, 0x7fff) : randomInt(rng, -2000, 300_000),
    language: randomInt(rng, 0, LanguageCode.NODE_JS),
    version: binary ? randomInt(rng, 0, 0x7fff) : randomInt(rng, 0, 100_000),
    opaque: randomInt(rng, -0x80000000, 0x7fffffff),
    flag: randomInt(rng, 0, 3),
    remark,
    extFields,
    body: randomBytes(rng, rng() < 0.2 ? 0 : randomInt(rng, 0, maxBodyBytes)),
    serializeType: type,
  })
}

/** The fields a receiver can observe, for deepEqual. */
export function observable(cmd: RemotingCommand): Record<string, unknown> {
  return {
    code: cmd.code,
    language: cmd.language,
    version: cmd.version,
    opaque: cmd.opaque,
    flag: cmd.flag,
    remark: cmd.remark,
    extFields: { ...cmd.extFields },
    body: Buffer.from(cmd.body).toString('hex'),
    serializeType: cmd.serializeType,
  }
}
