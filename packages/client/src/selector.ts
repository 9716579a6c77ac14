/**
 * Queue selectors for ordered messages (RocketMQ's MessageQueueSelector): the messages of one
 * key go to one queue, so a consumer sees them in the order they were sent.
 */
import { javaStringHashCode } from '@mqts/common'
import type { Message } from './message.js'
import type { MessageQueue } from './route.js'

export type QueueSelector = (queues: readonly MessageQueue[], message: Message, arg: unknown) => MessageQueue

/** SelectMessageQueueByHash: |hashCode(String(arg))| modulo the number of queues. */
export const selectByHash: QueueSelector = (queues, _message, arg) => {
  const h = javaStringHashCode(String(arg))
  // Java's Math.abs of Integer.MIN_VALUE stays negative; RocketMQ's selector then uses abs again.
  return queues[Math.abs(h) % queues.length]!
}
