/** Seeded randomness for model, fuzz and crash tests: the same seed replays the same run. */

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
export function seedFromEnv(name = 'SEED'): number {
  const fromEnv = process.env[name]
  if (fromEnv !== undefined && fromEnv !== '') return Number(fromEnv) >>> 0
  return (Date.now() ^ (process.pid << 8)) >>> 0
}

/** An integer count from the environment (loop lengths), or `fallback`. */
export function countFromEnv(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`)
  return n
}

/** An integer in [min, max]. */
export function randomInt(rng: () => number, min: number, max: number): number {
  return min + Math.floor(rng() * (max - min + 1))
}

export function randomBytes(rng: () => number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length)
  for (let i = 0; i < length; i++) b[i] = Math.floor(rng() * 256)
  return b
}

/** One element of a non-empty list. */
export function pick<T>(rng: () => number, items: readonly T[]): T {
  return items[Math.floor(rng() * items.length)]!
}
