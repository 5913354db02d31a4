/**
 * The ledger of the Kafka fault tests: the function under test writes one record per processed
 * event to an output topic on the test broker (outputs are confirmed before the input is
 * committed), and the broker numbers every append, commit and group generation in one order
 * (nextSeq). From that the tests check that nothing was lost, that no committed offset ever
 * passed an event not yet processed, and that each event was processed by the partition's owner.
 */
import { AssignerProtocol } from 'kafkajs'
import type { KafkaTestBroker } from '../../kafka/broker.js'

/** The function of the fault tests: one ledger record per event (after an optional busy wait). */
export const LEDGER_FUNCTION = `
export default async function (events, ctx) {
  for (const e of events) {
    const b = e.body ?? {}
    if (b.sleepMs) { const end = Date.now() + b.sleepMs; while (Date.now() < end) {} }
    ctx.output('ledger', { id: e.id, partition: e.meta.partition, offset: e.meta.offset })
  }
}`

export interface LedgerEntry {
  id: string
  partition: number
  offset: number
  /** Broker event order of the append. */
  seq: number
  /** Which gateway wrote it (the ledger topic's owner). */
  instance: string
}

/** Every ledger record of the given `instance -> ledger topic` map. */
export function readLedger(broker: KafkaTestBroker, topics: Record<string, string>): LedgerEntry[] {
  return Object.entries(topics).flatMap(([instance, topic]) =>
    broker.records(topic).map((r) => {
      const v = JSON.parse(r.value ?? '{}') as { id: string; partition: number; offset: number }
      return { id: v.id, partition: v.partition, offset: v.offset, seq: r.seq, instance }
    }),
  )
}

/** Ids `<topic>-<partition>-<offset>` of every record of `topic` (all were acknowledged with acks -1). */
export function producedIds(broker: KafkaTestBroker, topic: string): string[] {
  return broker.records(topic).map((r) => `${topic}-${r.partition}-${r.offset}`)
}

/**
 * Commits of `group` on `topic` that passed an event not yet processed: for a commit of offset C
 * on partition p, every offset below C must have a ledger record written before the commit.
 */
export function commitViolations(broker: KafkaTestBroker, group: string, topic: string, ledger: LedgerEntry[]): string[] {
  const firstSeq = new Map<number, number[]>()
  for (const e of ledger) {
    const seqs = firstSeq.get(e.partition) ?? []
    const prev = seqs[e.offset]
    if (prev === undefined || e.seq < prev) seqs[e.offset] = e.seq
    firstSeq.set(e.partition, seqs)
  }
  const out: string[] = []
  for (const c of broker.commits) {
    if (c.group !== group || c.topic !== topic) continue
    const seqs = firstSeq.get(c.partition) ?? []
    for (let o = 0; o < c.offset; o++) {
      const s = seqs[o]
      if (s === undefined || s > c.seq) {
        out.push(`commit of ${topic}/${c.partition} at ${c.offset} (member ${c.memberId}, generation ${c.generation}) passed offset ${o}, ${s === undefined ? 'never processed' : 'processed only later'}`)
        break
      }
    }
  }
  return out
}

/**
 * Ledger records written by a gateway that did not own the partition at that moment according
 * to the coordinator: the owner is the member given the partition by the latest generation
 * handed out before the record. `instanceOf` maps a member id to its gateway.
 */
export function ownershipViolations(broker: KafkaTestBroker, group: string, topic: string, ledger: LedgerEntry[], instanceOf: (memberId: string) => string): string[] {
  const gens = broker.groups.generations
    .filter((g) => g.group === group)
    .map((g) => {
      const owners = new Map<number, string>()
      for (const [member, buf] of g.assignments) {
        const decoded = buf.length > 0 ? AssignerProtocol.MemberAssignment.decode(buf) : null
        for (const p of decoded?.assignment[topic] ?? []) owners.set(p, instanceOf(member))
      }
      return { seq: g.seq, generation: g.generation, owners }
    })
  const out: string[] = []
  for (const e of ledger) {
    let current: (typeof gens)[number] | undefined
    for (const g of gens) if (g.seq < e.seq) current = g
    const owner = current?.owners.get(e.partition)
    if (owner !== e.instance) out.push(`${e.id} processed by ${e.instance} while ${owner ?? 'nobody'} owned partition ${e.partition} (generation ${current?.generation ?? 'none'})`)
  }
  return out
}
