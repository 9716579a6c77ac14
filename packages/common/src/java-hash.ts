/**
 * Java's String.hashCode (s[0]*31^(n-1) + ... + s[n-1], int overflow) over UTF-16 code units,
 * as RocketMQ hashes tags (the ConsumeQueue's tags code) and index keys. h*31 + c composes, so
 * "<topic>#<key>" hashes without building the string (javaHashContinue).
 */
export function javaStringHashCode(s: string): number {
  return javaHashContinue(0, s)
}

/**
 * Continues a Java string hash `h` over the characters of `s`, two at a time
 * (h × 31² + a × 31 + b: a shorter dependency chain; every term is exact in a double before `| 0`).
 */
export function javaHashContinue(h: number, s: string): number {
  const n = s.length
  let i = 0
  for (; i + 1 < n; i += 2) h = (Math.imul(961, h) + s.charCodeAt(i) * 31 + s.charCodeAt(i + 1)) | 0
  if (i < n) h = (Math.imul(31, h) + s.charCodeAt(i)) | 0
  return h
}
