/** Seeded randomness and command generators for property and fuzz tests. */
import { LanguageCode } from './codes.js'
import { RemotingCommand, SerializeType } from './command.js'

/** A seeded PRNG (mulberry32): same seed, same sequence. Returns floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** SEED from the environment to replay a run, otherwise a fresh one. */
export function seedFromEnv(): number {
  const fromEnv = process.env.SEED
  if (fromEnv !== undefined && fromEnv !== '') return Number(fromEnv) >>> 0
  return (Date.now() ^ (process.pid << 8)) >>> 0
}

export function randomInt(rng: () => number, min: number, max: number): number {
  return min + Math.floor(rng() * (max - min + 1))
}

const ALPHABET = ['a', 'Z', '0', ' ', '=', '\u0001', 'é', '✓', 'ключ', '😀', '"', '\\', '\n', '%RETRY%']

export function randomString(rng: () => number, maxParts: number): string {
  let s = ''
  const n = randomInt(rng, 0, maxParts)
  for (let i = 0; i < n; i++) s += ALPHABET[randomInt(rng, 0, ALPHABET.length - 1)]!
  return s
}

export function randomBytes(rng: () => number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length)
  for (let i = 0; i < length; i++) b[i] = Math.floor(rng() * 256)
  return b
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
