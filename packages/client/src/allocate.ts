/**
 * The average allocation strategy (RocketMQ's AllocateMessageQueueAveragely): with the queues
 * and the client ids both sorted, client i of n takes a contiguous run of queues, the first
 * `queues % n` clients one more than the others.
 */
import { compareQueues, type MessageQueue } from './route.js'

export function allocateAveragely(queues: readonly MessageQueue[], clientIds: readonly string[], clientId: string): MessageQueue[] {
  const all = [...queues].sort(compareQueues)
  const ids = [...clientIds].sort()
  const index = ids.indexOf(clientId)
  if (index < 0 || all.length === 0) return []
  const n = ids.length
  const mod = all.length % n
  const size = all.length <= n ? 1 : mod > 0 && index < mod ? Math.floor(all.length / n) + 1 : Math.floor(all.length / n)
  const start = mod > 0 && index < mod ? index * size : index * size + mod
  const range = Math.min(size, all.length - start)
  const out: MessageQueue[] = []
  for (let i = 0; i < range; i++) out.push(all[(start + i) % all.length]!)
  return out
}
