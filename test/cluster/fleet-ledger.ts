/**
 * The ledger of the several-instance fault tests (three-gateways, rolling-restart).
 *
 * Every function of every gateway instance publishes one record per run (batch) through an AMQP
 * output into one ledger queue: the source, the instance incarnation that ran it (`A#1`, `A#2`
 * after a restart), the invocation id, the run's start and end time, and its items (the body id;
 * for Kafka also partition and offset). Outputs are confirmed by the broker before the input is
 * acknowledged or committed, so a record survives a kill -9 of the instance that wrote it. The test
 * process reads the queue as it fills (`LedgerQueue`); `check` compares it with what the
 * publishers counted as confirmed and with the dead letters in the shared store.
 */
import type { ConsumeMessage } from 'amqplib'
import { Client } from '../connectors/amqp/broker.js'
import { ownershipViolations, type LedgerEntry } from '../connectors/kafka/ledger.js'

export type Source = 'amqp' | 'mqtt' | 'kafka'
export const SOURCES: readonly Source[] = ['amqp', 'mqtt', 'kafka']

/** One function run as its record says. Items: body ids, or `[id, partition, offset]` for Kafka. */
export interface RunRecord {
  s: Source
  inst: string
  inv: string
  t0: number
  t1: number
  items: Array<number | [number, number, number]>
}

/** The function of every instance: one ledger record per run. `inst` names the incarnation. */
export function ledgerFunction(source: Source, inst: string): string {
  const item = source === 'kafka' ? '[e.body.id, e.meta.partition, Number(e.meta.offset)]' : 'e.body.id'
  return `export default async function (events, ctx) {
  const t0 = Date.now()
  const items = events.map((e) => ${item})
  ctx.output('ledger', { s: '${source}', inst: '${inst}', inv: ctx.invocationId, t0, t1: Date.now(), items })
}
`
}

/** Reads the ledger queue into memory as it fills (no acks: the test process is not killed). */
export class LedgerQueue {
  readonly runs: RunRecord[] = []
  private constructor(private readonly client: Client) {}

  static async open(queue: string): Promise<LedgerQueue> {
    const c = await Client.open()
    await c.ch.assertQueue(queue, { durable: true })
    const l = new LedgerQueue(c)
    await c.ch.consume(queue, (m: ConsumeMessage | null) => m && l.runs.push(JSON.parse(m.content.toString()) as RunRecord), { noAck: true })
    return l
  }

  /** Distinct ids of `source` processed so far (by `inst` prefix when given, e.g. `B#2`). */
  processed(source: Source, inst?: string): Set<number> {
    const out = new Set<number>()
    for (const r of this.runs) {
      if (r.s !== source || (inst !== undefined && r.inst !== inst)) continue
      for (const i of r.items) out.add(typeof i === 'number' ? i : i[0])
    }
    return out
  }

  async close(): Promise<void> {
    await this.client.close()
  }
}

export interface SourceReport {
  confirmed: number
  processed: number
  deadLettered: number
  /** Confirmed ids neither processed nor dead-lettered (must be none). */
  missing: number[]
  /** Processed ids no publisher sent (must be none). */
  unknown: number[]
  /** Runs of an id beyond its first (distinct invocations), over all ids. */
  extraRuns: number
  /** Records per instance incarnation. */
  byInstance: Record<string, number>
}

/** Compares the ledger of `source` with its confirmed ids, published count and dead letters. */
export function report(runs: RunRecord[], source: Source, confirmed: Set<number>, published: number, dead: number[]): SourceReport {
  const invs = new Map<number, Set<string>>()
  const byInstance: Record<string, number> = {}
  for (const r of runs) {
    if (r.s !== source) continue
    byInstance[r.inst] = (byInstance[r.inst] ?? 0) + r.items.length
    for (const i of r.items) {
      const id = typeof i === 'number' ? i : i[0]
      let set = invs.get(id)
      if (!set) invs.set(id, (set = new Set()))
      set.add(r.inv)
    }
  }
  const deadSet = new Set(dead)
  let extraRuns = 0
  for (const s of invs.values()) extraRuns += s.size - 1
  return {
    confirmed: confirmed.size,
    processed: invs.size,
    deadLettered: deadSet.size,
    missing: [...confirmed].filter((id) => !invs.has(id) && !deadSet.has(id)).sort((a, b) => a - b),
    unknown: [...invs.keys()].filter((id) => !(Number.isInteger(id) && id >= 0 && id < published)),
    extraRuns,
    byInstance,
  }
}

/** The Kafka runs as the Kafka ledger's entries (instance = incarnation), for its checks. */
export function kafkaEntries(runs: RunRecord[]): LedgerEntry[] {
  const out: LedgerEntry[] = []
  for (const r of runs) {
    if (r.s !== 'kafka') continue
    for (const i of r.items) {
      if (typeof i === 'number') continue
      const [, partition, offset] = i
      out.push({ id: `${partition}-${offset}`, partition, offset, t0: r.t0, t1: r.t1, appended: r.t1, instance: r.inst })
    }
  }
  return out
}

/**
 * Partitions processed by two incarnations at once (overlapping runs, the Kafka ledger's check),
 * and offsets out of order: within one incarnation's uninterrupted hold of a partition (no other
 * incarnation ran it in between), each run starts after the offsets of the run before it.
 */
export function kafkaViolations(runs: RunRecord[]): string[] {
  const entries = kafkaEntries(runs)
  const out = ownershipViolations(entries)
  const byPartition = new Map<number, LedgerEntry[]>()
  for (const e of entries) byPartition.set(e.partition, [...(byPartition.get(e.partition) ?? []), e])
  for (const [p, list] of byPartition) {
    // Runs of one partition never overlap (checked above), so start time orders them.
    list.sort((a, b) => a.t0 - b.t0 || a.offset - b.offset)
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1] as LedgerEntry
      const b = list[i] as LedgerEntry
      if (a.instance === b.instance && b.offset <= a.offset) out.push(`partition ${p}: ${b.instance} ran offset ${b.offset} after ${a.offset}`)
    }
  }
  return out
}
