import type { Admin, Consumer } from 'kafkajs'
import type { PartitionOffsets } from './offsets.js'

/** A partition newly assigned to this member. */
export interface AssignedPartition {
  topic: string
  partition: number
}

/**
 * The start position of each partition in `parts` that `group` has no committed offset for:
 * the partition's first offset with `fromBeginning`, else its end (where kafkajs would start
 * too). Partitions with a committed offset are left out: kafkajs reads on from there.
 */
export async function uncommittedStarts(admin: Admin, group: string, parts: AssignedPartition[], fromBeginning: boolean): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  const topics = [...new Set(parts.map((p) => p.topic))]
  const committed = await admin.fetchOffsets({ groupId: group, topics })
  for (const t of committed) {
    const wanted = new Set(parts.filter((p) => p.topic === t.topic).map((p) => p.partition))
    const missing = t.partitions.filter((p) => wanted.has(p.partition) && Number(p.offset) < 0)
    if (missing.length === 0) continue
    const ends = await admin.fetchTopicOffsets(t.topic)
    for (const m of missing) {
      const e = ends.find((x) => x.partition === m.partition)
      if (e) out.set(`${t.topic}/${m.partition}`, Number(fromBeginning ? e.low : e.high))
    }
  }
  return out
}

/**
 * Commits the start position of each partition of `parts` that the group never committed (see
 * uncommittedStarts) through the running consumer, so kafkajs takes it as its position too, and
 * moves the partition's bookkeeping there. Resolves with what it committed (`<topic>/<partition>`
 * -> offset); rejects when a request failed (nothing is marked then).
 */
export async function commitStartPositions(
  admin: Admin,
  consumer: Consumer,
  group: string,
  fromBeginning: boolean,
  parts: Array<AssignedPartition & { offsets: PartitionOffsets }>,
): Promise<Record<string, number>> {
  const starts = await uncommittedStarts(admin, group, parts, fromBeginning)
  const commits = parts.filter((o) => starts.has(`${o.topic}/${o.partition}`))
  if (commits.length === 0) return {}
  const at = (o: AssignedPartition) => starts.get(`${o.topic}/${o.partition}`) as number
  await consumer.commitOffsets(commits.map((o) => ({ topic: o.topic, partition: o.partition, offset: String(at(o)) })))
  const out: Record<string, number> = {}
  for (const o of commits) {
    o.offsets.advance(at(o))
    if (o.offsets.committed < at(o)) o.offsets.committed = at(o)
    out[`${o.topic}/${o.partition}`] = at(o)
  }
  return out
}

/** The topics of `topics` that the cluster does not list (or this client may not describe). */
export async function missingTopics(admin: Admin, topics: string[]): Promise<string[]> {
  const known = new Set(await admin.listTopics())
  return topics.filter((t) => !known.has(t))
}
