/**
 * RemotingCommand: one request or response on the wire. The same shape carries both; `flag`
 * tells them apart and `opaque` pairs a response with its request.
 */
import { CURRENT_VERSION, LanguageCode } from './codes.js'
import { TransportError } from './errors.js'

/** Header serialization, the high byte of the frame's second word. */
export const SerializeType = {
  JSON: 0,
  ROCKETMQ: 1,
} as const
export type SerializeType = (typeof SerializeType)[keyof typeof SerializeType]

/** Bits of `flag`. */
export const COMMAND_FLAG = {
  RESPONSE: 1 << 0,
  ONEWAY: 1 << 1,
} as const

/**
 * Default `language`. RocketMQ's own components send JAVA and some Java broker code paths
 * branch on it, so JAVA keeps a Java broker on its usual path.
 */
export const DEFAULT_LANGUAGE: number = LanguageCode.JAVA

const EMPTY_BODY = Buffer.alloc(0)

let opaqueCounter = 0

/** Next request id of this process: starts at 0 and wraps within int32 like Java's AtomicInteger. */
export function nextOpaque(): number {
  const opaque = opaqueCounter
  opaqueCounter = (opaqueCounter + 1) | 0
  return opaque
}

export interface RemotingCommandInit {
  code: number
  language?: number
  version?: number
  opaque?: number
  flag?: number
  remark?: string | null
  extFields?: Record<string, string>
  /** An array is a body in parts, sent one after another without being joined (see bodyParts). */
  body?: Buffer | Uint8Array | string | readonly Uint8Array[]
  serializeType?: SerializeType
}

export class RemotingCommand {
  code: number
  language: number
  version: number
  opaque: number
  flag: number
  /** Error text; null when absent (the JSON header then omits it). */
  remark: string | null
  extFields: Record<string, string>
  body: Buffer
  /**
   * The body's parts when it was given as an array and not read since: an encoder writes them one
   * after another (a pull answer's records, views of the store's files, go out without a copy).
   * Undefined for a body in one piece. Reading or setting `body` joins or drops them. Made by the
   * constructor only (a body given as an array).
   */
  bodyParts: readonly Buffer[] | undefined
  /**
   * Header serialization this command arrived with, or should be sent with. Undefined means the
   * connection's default. A response goes out in its request's serialization.
   */
  serializeType: SerializeType | undefined

  constructor(init: RemotingCommandInit) {
    this.code = init.code
    this.language = init.language ?? DEFAULT_LANGUAGE
    this.version = init.version ?? CURRENT_VERSION
    // Every command gets its own id unless given one, as RocketMQ's constructor does: a request
    // built here must never share an opaque with an earlier one whose answer may still arrive.
    this.opaque = init.opaque ?? nextOpaque()
    this.flag = init.flag ?? 0
    this.remark = init.remark ?? null
    this.extFields = init.extFields ?? {}
    const body = init.body
    if (Array.isArray(body)) {
      this.body = EMPTY_BODY
      this.bodyParts = (body as readonly unknown[]).map(toBodyPart)
      // Only a command made with parts gets an accessor: `body` reads as the joined parts (once),
      // and stays an own enumerable property, so a spread copy still carries it.
      Object.defineProperty(this, 'body', { get: joinParts, set: setBody, enumerable: true, configurable: true })
    } else {
      this.body = toBuffer(body as Buffer | Uint8Array | string | undefined)
      this.bodyParts = undefined
    }
    this.serializeType = init.serializeType
  }

  /** The body's length in bytes, without joining its parts. */
  get bodyLength(): number {
    const parts = this.bodyParts
    if (parts === undefined) return this.body.length
    let n = 0
    for (let i = 0; i < parts.length; i++) n += parts[i]!.length
    return n
  }

  /** A request with a fresh opaque from the process-wide counter. */
  static createRequest(code: number, extFields?: Record<string, string>, body?: Buffer | Uint8Array | string | readonly Uint8Array[]): RemotingCommand {
    return new RemotingCommand({ code, extFields: extFields ? { ...extFields } : {}, body })
  }

  /** A response; the server fills in `opaque` and the serialization from the request it answers. */
  static createResponse(code: number, remark?: string | null, extFields?: Record<string, string>, body?: Buffer | Uint8Array | string | readonly Uint8Array[]): RemotingCommand {
    return new RemotingCommand({ code, flag: COMMAND_FLAG.RESPONSE, remark: remark ?? null, extFields: extFields ? { ...extFields } : {}, body })
  }

  get isResponse(): boolean {
    return (this.flag & COMMAND_FLAG.RESPONSE) !== 0
  }

  get isOneway(): boolean {
    return (this.flag & COMMAND_FLAG.ONEWAY) !== 0
  }

  markResponse(): this {
    this.flag |= COMMAND_FLAG.RESPONSE
    return this
  }

  markOneway(): this {
    this.flag |= COMMAND_FLAG.ONEWAY
    return this
  }

  /** A deep copy; the body bytes are copied too. */
  clone(): RemotingCommand {
    return new RemotingCommand({
      code: this.code,
      language: this.language,
      version: this.version,
      opaque: this.opaque,
      flag: this.flag,
      remark: this.remark,
      extFields: { ...this.extFields },
      body: Buffer.from(this.body),
      serializeType: this.serializeType,
    })
  }

  toString(): string {
    const kind = this.isResponse ? 'response' : this.isOneway ? 'oneway' : 'request'
    return `RemotingCommand(${kind} code=${this.code} opaque=${this.opaque} remark=${JSON.stringify(this.remark)} body=${this.bodyLength}B)`
  }
}

/** `body` of a command made with parts, on first read: the parts joined, then a plain property. */
function joinParts(this: RemotingCommand): Buffer {
  const joined = Buffer.concat(this.bodyParts ?? [])
  setBody.call(this, joined)
  return joined
}

function setBody(this: RemotingCommand, body: Buffer): void {
  Object.defineProperty(this, 'body', { value: body, writable: true, enumerable: true, configurable: true })
  this.bodyParts = undefined
}

/** A part of a body given in parts: bytes, or ENCODE_FAILED saying what it was. */
function toBodyPart(part: unknown, index: number): Buffer {
  if (!(part instanceof Uint8Array)) {
    const kind = part === null ? 'null' : Array.isArray(part) ? 'an array' : typeof part === 'string' ? 'a string' : typeof part
    throw new TransportError('ENCODE_FAILED', `body part ${index} must be a Buffer or Uint8Array, got ${kind}`)
  }
  return toBuffer(part)
}

function toBuffer(body: Buffer | Uint8Array | string | undefined): Buffer {
  if (body === undefined) return EMPTY_BODY
  if (typeof body === 'string') return Buffer.from(body, 'utf8')
  if (Buffer.isBuffer(body)) return body
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength)
}
