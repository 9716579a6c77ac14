/**
 * A server's connection that carries large requests reads into an arena of its own instead of a
 * new buffer per read.
 *
 * Node reads a socket into a fresh 64 KiB allocation each time and hands it over as its own
 * buffer. A request that two reads split (most of a 32-message batch of 1 KiB messages, about
 * 33 KiB, when reads take 40-64 KiB) is then copied into one buffer when whole, and every read is
 * a new ArrayBuffer. Reading into consecutive ranges of one slab instead leaves a split request
 * whole in memory (FrameDecoder joins contiguous chunks without a copy) and allocates once per slab.
 *
 * Only connections that need it switch: one whose pending request, cut by a read, is at least
 * READ_ARENA_MIN_FRAME_BYTES (a producer sending batches), and at most `readArenaConnections` of a
 * server at once. Idle connections, and those sending heartbeats, pulls and single sends, read as
 * Node does and hold no read memory between reads (an arena per accepted connection made every
 * idle connection hold 256 KiB: thousands of them exhausted an address-space limit).
 *
 * Node offers this as the socket option `onread` (a buffer, or a function returning the buffer of
 * the next read), for sockets it creates from options only; a server's sockets are created by
 * Node from accepted handles. readIntoArena sets the same three fields on such a socket between
 * two reads, found by their descriptions, and gives the handle its first buffer
 * (`useUserBuffer`), from which on every read goes to the arena; where a Node release has not
 * these fields it returns false and the connection keeps reading as Node does.
 *
 * Lifetime: a request's body is a view of its slab, so a slab lives while any request read into
 * it is referenced (the same as Node's per-read buffers); the current slab stays with its
 * connection while it is open.
 */
import type { Socket } from 'node:net'

/** Bytes of one slab. */
export const READ_ARENA_SLAB_BYTES = 256 * 1024
/** Most bytes one read takes (Node's own read size): how many requests one read hands over stays as before. */
export const READ_ARENA_MAX_READ_BYTES = 64 * 1024
/** A new slab is taken once fewer bytes than this are left in the current one. */
export const READ_ARENA_MIN_READ_BYTES = 16 * 1024
/** A connection switches to an arena once a request at least this large is cut by a read. */
export const READ_ARENA_MIN_FRAME_BYTES = 16 * 1024
/** Default for how many connections of one server may read into arenas at once (64 MiB of slabs). */
export const DEFAULT_READ_ARENA_CONNECTIONS = 256

class ReadArena {
  private slab = Buffer.allocUnsafeSlow(READ_ARENA_SLAB_BYTES)
  private used = 0

  /** Where the next read goes: right after the last one, so a request split by reads stays contiguous. */
  next(): Buffer {
    if (this.slab.length - this.used < READ_ARENA_MIN_READ_BYTES) {
      this.slab = Buffer.allocUnsafeSlow(READ_ARENA_SLAB_BYTES)
      this.used = 0
    }
    return this.slab.subarray(this.used, Math.min(this.slab.length, this.used + READ_ARENA_MAX_READ_BYTES))
  }

  /** The last read filled `n` bytes of the range next() gave. */
  took(n: number): void {
    this.used += n
  }
}

interface UserBufferHandle {
  useUserBuffer(buffer: Uint8Array): void
}

/**
 * Makes `socket` read into an arena from its next read on and hand each read's bytes to `onChunk`
 * (instead of 'data' events), with whether the read filled its range (more may be waiting). Call it between reads (in a 'data' handler, say). False when this
 * Node release cannot.
 */
export function readIntoArena(socket: Socket, onChunk: (chunk: Buffer, full: boolean) => void): boolean {
  const handle = (socket as unknown as { _handle?: Partial<UserBufferHandle> | null })._handle
  if (!handle || typeof handle.useUserBuffer !== 'function') return false
  const symbols = Object.getOwnPropertySymbols(socket)
  const field = (description: string): symbol | undefined => symbols.find((s) => s.description === description)
  const kBuffer = field('kBuffer')
  const kBufferCb = field('kBufferCb')
  const kBufferGen = field('kBufferGen')
  if (kBuffer === undefined || kBufferCb === undefined || kBufferGen === undefined) return false
  const fields = socket as unknown as Record<symbol, unknown>
  if (fields[kBuffer] || fields[kBufferGen]) return false
  const arena = new ReadArena()
  const first = arena.next()
  fields[kBuffer] = first
  fields[kBufferGen] = () => arena.next()
  // Node passes the range it read into (the last one next() returned) and how much it filled.
  fields[kBufferCb] = (n: number, range: Buffer): void => {
    arena.took(n)
    onChunk(range.subarray(0, n), n === range.length)
  }
  handle.useUserBuffer(first)
  return true
}
