/**
 * 64-bit big-endian fields (Java longs). Offsets and timestamps stay below 2^53, so they travel
 * as two 32-bit halves, with no BigInt on the hot path. Buffer and DataView forms.
 */
/** 2^32: the weight of a 64-bit field's high half. */
export const TWO_POW_32 = 4294967296

/** Writes a non-negative safe integer as an unsigned 64-bit field. */
export function writeU64(target: Buffer, at: number, value: number): void {
  target.writeUInt32BE(Math.floor(value / TWO_POW_32) >>> 0, at)
  target.writeUInt32BE(value >>> 0, at + 4)
}

/** Signed 64-bit read, exact up to 2^53 in magnitude (only damaged files hold more). */
export function readI64(source: Buffer, at: number): number {
  return source.readInt32BE(at) * TWO_POW_32 + source.readUInt32BE(at + 4)
}

/** Signed 64-bit write of a safe integer (two's complement for negatives). */
export function writeI64(target: Buffer, at: number, value: number): void {
  const hi = Math.floor(value / TWO_POW_32)
  target.writeInt32BE(hi | 0, at)
  target.writeUInt32BE((value - hi * TWO_POW_32) >>> 0, at + 4)
}

/** writeU64 on a DataView. */
export function writeU64View(view: DataView, at: number, value: number): void {
  view.setUint32(at, Math.floor(value / TWO_POW_32))
  view.setUint32(at + 4, value >>> 0)
}

/** readI64 on a DataView. */
export function readI64View(view: DataView, at: number): number {
  return view.getInt32(at) * TWO_POW_32 + view.getUint32(at + 4)
}
