/**
 * The ledger of the Kafka fault tests. The function under test writes one record per processed
 * event to a ledger topic of its gateway (outputs are confirmed before the input is committed),
 * with the batch's start and end time; ledger topics use LogAppendTime, so each record also
 * carries the broker's time of the append. The consumer group's commits are read back from
 * `__consumer_offsets` with the coordinator's time of each commit. From that the tests check that
 * nothing was lost, that no commit passed an event not yet processed, and that no partition was
 * worked on by two gateways at once.
 */
import type { KafkaBroker } from '../../helpers/kafka-broker.js'
import { TopicTail } from './helpers.js'

/** The function of the fault tests: one ledger record per event, after an optional busy wait. */
export const LEDGER_FUNCTION = `
export default async function (events, ctx) {
  const t0 = Date.now()
  for (const e of events) {
    const b = e.body ?? {}
    if (b.sleepMs) { const end = Date.now() + b.sleepMs; while (Date.now() < end) {} }
  }
  const t1 = Date.now()
  for (const e of events) ctx.output('ledger', { id: e.id, partition: e.meta.partition, offset: e.meta.offset, t0, t1 })
}`

export interface LedgerEntry {
  id: string
  partition: number
  offset: number
  /** Start and end of the function run (batch) that processed it, gateway clock (ms). */
  t0: number
  t1: number
  /** The broker's append time of the ledger record. */
  appended: number
  /** Which gateway wrote it (the ledger topic's owner). */
  instance: string
}

/** Creates a ledger topic (one partition, LogAppendTime). */
export function createLedgerTopic(broker: KafkaBroker, topic: string): Promise<void> {
  return broker.createTopic(topic, 1, { 'message.timestamp.type': 'LogAppendTime' })
}

/** Every ledger record so far of the given `instance -> tail of its ledger topic` map. */
export function readLedger(tails: Record<string, TopicTail>): LedgerEntry[] {
  return Object.entries(tails).flatMap(([instance, tail]) =>
    tail.records.map((r) => {
      const v = JSON.parse(r.value ?? '{}') as { id: string; partition: number; offset: number; t0: number; t1: number }
      return { ...v, appended: r.timestamp, instance }
    }),
  )
}

/** Ids `<topic>-<partition>-<offset>` of every record of a non-transactional `topic` so far. */
export async function producedIds(broker: KafkaBroker, topic: string): Promise<string[]> {
  return (await broker.ends(topic)).flatMap((end, p) => Array.from({ length: end }, (_, o) => `${topic}-${p}-${o}`))
}

export interface CommitRecord {
  group: string
  topic: string
  partition: number
  offset: number
  /** The coordinator's time of the commit. */
  time: number
}

/** The offset commits of every group, read from `__consumer_offsets` as they are written. */
export class CommitLog {
  private constructor(private readonly tail: TopicTail) {}

  static async open(broker: KafkaBroker): Promise<CommitLog> {
    return new CommitLog(await TopicTail.open(broker, '__consumer_offsets'))
  }

  /** Commits of `group` on `topic`, in the order written per partition. */
  commits(group: string, topic: string): CommitRecord[] {
    const out: CommitRecord[] = []
    for (const r of this.tail.records) {
      const k = r.keyBytes
      const v = r.valueBytes
      // Key versions 0 and 1 are offset commits (2: group metadata); a null value is a tombstone.
      if (!k || !v || k.readInt16BE(0) > 1) continue
      let at = 2
      const str = () => {
        const n = k.readInt16BE(at)
        const s = k.toString('utf8', at + 2, at + 2 + n)
        at += 2 + n
        return s
      }
      const g = str()
      const t = str()
      if (g !== group || t !== topic) continue
      // Every OffsetCommitValue version starts with the offset, after its own version.
      out.push({ group: g, topic: t, partition: k.readInt32BE(at), offset: Number(v.readBigInt64BE(2)), time: r.timestamp })
    }
    return out
  }

  close(): Promise<void> {
    return this.tail.close()
  }
}

/**
 * Commits that passed an event not processed yet: for a commit of offset C on partition p, every
 * offset below C must have a ledger record appended no later than the commit.
 */
export function commitViolations(commits: CommitRecord[], ledger: LedgerEntry[]): string[] {
  const first = new Map<number, number[]>()
  for (const e of ledger) {
    const times = first.get(e.partition) ?? []
    const prev = times[e.offset]
    if (prev === undefined || e.appended < prev) times[e.offset] = e.appended
    first.set(e.partition, times)
  }
  // Per partition: the latest first-append among offsets [0, C), for every C.
  const latestBelow = new Map<number, number[]>()
  const out: string[] = []
  for (const c of commits) {
    let prefix = latestBelow.get(c.partition)
    if (!prefix) {
      const times = first.get(c.partition) ?? []
      prefix = [-Infinity]
      for (let o = 0; o < Math.max(times.length, ...commits.filter((x) => x.partition === c.partition).map((x) => x.offset)); o++) {
        prefix.push(Math.max(prefix[o] as number, times[o] ?? Infinity))
      }
      latestBelow.set(c.partition, prefix)
    }
    const latest = prefix[c.offset] ?? Infinity
    if (latest > c.time)
      out.push(
        `commit of ${c.topic}/${c.partition} at ${c.offset} (t=${c.time}) passed an offset ${latest === Infinity ? 'never processed' : `processed only at ${latest}`}`,
      )
  }
  return out
}

/**
 * Runs of the same partition on two gateways at once: function runs (batch start to end) of
 * different gateways that include the same partition and overlap in time.
 */
export function ownershipViolations(ledger: LedgerEntry[]): string[] {
  const byPartition = new Map<number, LedgerEntry[]>()
  for (const e of ledger) {
    const list = byPartition.get(e.partition) ?? []
    list.push(e)
    byPartition.set(e.partition, list)
  }
  const out: string[] = []
  for (const [partition, entries] of byPartition) {
    entries.sort((a, b) => a.t0 - b.t0)
    const latestEnd = new Map<string, { t1: number; id: string }>()
    for (const e of entries) {
      for (const [other, last] of latestEnd) {
        if (other !== e.instance && last.t1 > e.t0)
          out.push(`partition ${partition}: ${e.id} started on ${e.instance} at ${e.t0} while ${other} ran ${last.id} until ${last.t1}`)
      }
      const mine = latestEnd.get(e.instance)
      if (!mine || e.t1 > mine.t1) latestEnd.set(e.instance, { t1: e.t1, id: e.id })
    }
  }
  return out
}
