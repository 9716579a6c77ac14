/**
 * Tag subscriptions (RocketMQ's FilterAPI.buildSubscriptionData): `*` or empty takes every
 * message; otherwise `TagA || TagB` names the tags taken. The broker filters on the tags' hash
 * codes; the client checks the tag string itself (hash collisions pass the broker).
 */
import { javaStringHashCode } from '@mqts/common'
import { SUB_ALL, splitTagExpression } from './constants.js'
import { ClientError } from './errors.js'

export interface Subscription {
  topic: string
  /** The expression as sent (`*` for everything). */
  subString: string
  /** The tags taken; empty for everything. */
  tags: string[]
  codes: number[]
  subVersion: number
}

export function parseSubscription(topic: string, expression: string | undefined, now = Date.now()): Subscription {
  if (expression !== undefined && typeof expression !== 'string') throw new ClientError('INVALID_OPTION', `a tag expression is a string like "TagA || TagB" or "*", got ${typeof expression}`)
  const tags = splitTagExpression(expression)
  if (tags === undefined) return { topic, subString: SUB_ALL, tags: [], codes: [], subVersion: now }
  // Nothing but separators is refused: RocketMQ's client refuses '||' (its split finds no part)
  // and would subscribe to no tag at all for '|| ||'.
  if (tags.length === 0) throw new ClientError('INVALID_OPTION', `a tag expression names tags between '||' (or is "*"), got ${JSON.stringify(expression)}`)
  const text = (expression ?? '').trim()
  return { topic, subString: text, tags, codes: tags.map((t) => javaStringHashCode(t)), subVersion: now }
}

/** Whether a message with tag `tag` belongs to the subscription (PullAPIWrapper's client-side check). */
export function matchesTag(sub: Subscription, tag: string | undefined): boolean {
  if (sub.tags.length === 0) return true
  return tag !== undefined && sub.tags.includes(tag)
}

/** The subscription as the heartbeat carries it (SubscriptionData). */
export function subscriptionData(sub: Subscription): { classFilterMode: boolean; topic: string; subString: string; tagsSet: string[]; codeSet: number[]; subVersion: number; expressionType: string } {
  return { classFilterMode: false, topic: sub.topic, subString: sub.subString, tagsSet: sub.tags, codeSet: sub.codes, subVersion: sub.subVersion, expressionType: 'TAG' }
}
