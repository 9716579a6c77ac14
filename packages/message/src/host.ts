/** Hosts in records and message ids: "a.b.c.d:port" or "[ipv6]:port" <-> address bytes and port. */
import { isIPv6 } from 'node:net'

/** Bytes of a host in a record: address and port (an int). */
export const HOST_BYTES_IPV4 = 4 + 4
export const HOST_BYTES_IPV6 = 16 + 4
/** IPv6 adds 12 bytes per host. */
export const IPV6_EXTRA_BYTES = HOST_BYTES_IPV6 - HOST_BYTES_IPV4

export interface Host {
  /** IPv4 address as an unsigned 32-bit integer; 0 for an IPv6 host. */
  ip: number
  port: number
  /** The 16 address bytes of an IPv6 host; undefined for IPv4. */
  ipv6?: Buffer | undefined
}

export const MAX_PORT = 65535

/** "a.b.c.d" as an unsigned 32-bit integer, or undefined. */
function parseIpv4(text: string): number | undefined {
  const parts = text.split('.')
  if (parts.length !== 4) return undefined
  let ip = 0
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined
    const n = Number(p)
    if (n > 255) return undefined
    ip = ip * 256 + n
  }
  return ip
}

/** The 16 bytes of an IPv6 address in any RFC 4291 text form (no zone id), or undefined. */
function parseIpv6(text: string): Buffer | undefined {
  if (!isIPv6(text) || text.includes('%')) return undefined
  const groups = (part: string): number[] | undefined => {
    if (part.length === 0) return []
    const out: number[] = []
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const ip = parseIpv4(g)
        if (ip === undefined) return undefined
        out.push(Math.floor(ip / 65536), ip & 0xffff)
      } else out.push(parseInt(g, 16))
    }
    return out
  }
  const gap = text.indexOf('::')
  const head = groups(gap < 0 ? text : text.slice(0, gap))
  const tail = gap < 0 ? [] : groups(text.slice(gap + 2))
  if (head === undefined || tail === undefined || head.length + tail.length > 8) return undefined
  const all = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail]
  const bytes = Buffer.alloc(16)
  all.forEach((g, i) => bytes.writeUInt16BE(g, i * 2))
  return bytes
}

/** Parses "a.b.c.d:port" or "[ipv6]:port" (port 0 to 65535); undefined if it is neither. */
export function parseHost(text: string): Host | undefined {
  if (typeof text !== 'string') return undefined
  const colon = text.lastIndexOf(':')
  if (colon <= 0 || !/^\d{1,5}$/.test(text.slice(colon + 1))) return undefined
  const port = Number(text.slice(colon + 1))
  if (port > MAX_PORT) return undefined
  const address = text.slice(0, colon)
  if (address.startsWith('[') && address.endsWith(']')) {
    const ipv6 = parseIpv6(address.slice(1, -1))
    return ipv6 === undefined ? undefined : { ip: 0, port, ipv6 }
  }
  const ip = parseIpv4(address)
  return ip === undefined ? undefined : { ip, port, ipv6: undefined }
}

/** RFC 5952 text of 16 address bytes: lowercase, the longest run of zero groups as "::". */
function formatIpv6(address: Buffer): string {
  const g: number[] = []
  for (let i = 0; i < 16; i += 2) g.push(address.readUInt16BE(i))
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return `::ffff:${address[12]}.${address[13]}.${address[14]}.${address[15]}`
  let bestAt = -1
  let bestLength = 1
  for (let i = 0; i < 8; ) {
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLength) {
      bestAt = i
      bestLength = j - i
    }
    i = j === i ? i + 1 : j
  }
  const hex = (from: number, to: number): string => g.slice(from, to).map((x) => x.toString(16)).join(':')
  return bestAt < 0 ? hex(0, 8) : `${hex(0, bestAt)}::${hex(bestAt + bestLength, 8)}`
}

export function formatHost(address: Buffer, port: number): string {
  if (address.length === 4) return `${address[0]}.${address[1]}.${address[2]}.${address[3]}:${port}`
  return `[${formatIpv6(address)}]:${port}`
}

/** Bytes `host` takes in a record. */
export function hostBytes(host: Host): number {
  return host.ipv6 ? HOST_BYTES_IPV6 : HOST_BYTES_IPV4
}

