import type { Admin } from 'kafkajs'

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
