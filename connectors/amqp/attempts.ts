import { createHash } from 'node:crypto'
import type { Message } from 'amqplib'
import type { ConnectorState, Logger } from '../../src/sdk/index.js'

/**
 * Counts how often a message was tried across redeliveries, so a message that kills the gateway
 * (or never finishes before it stops) ends in the dead-letter store instead of a requeue loop.
 *
 * A delivery "counts" when the broker may hand the message out again without the gateway having
 * seen an outcome: a first delivery always counts (recording it would cost a store write per
 * message on the hot path), a redelivery counts from the moment it is handed to the router (the
 * connector records that in its durable state first, keyed by message id, or a hash of exchange,
 * routing key and body when there is none). When the gateway itself gives a counting delivery
 * back (graceful stop: outcome `aborted`; connection lost while this process still runs the old
 * copy) it records a "returned" credit. So:
 *
 *   attempt of a redelivery = 1 (its first delivery) + runs (recorded hand-overs) - returned + 1
 *
 * and only deliveries that vanished without the gateway knowing (a crash) add up. The connector
 * hands a redelivery whose attempt is above 1 to the router alone, after the previous one has an
 * outcome (see delivery.ts), so a crash loop adds to the message that was running, not to
 * every message held in the prefetch window. Rows are cleared once the message is settled.
 *
 * `deliveries` (meta.deliveryCount) is the broker's count: `x-delivery-count` + 1 on quorum
 * queues, the connector's own count of redeliveries on classic queues.
 */
export interface Counted {
  attempt: number
  deliveries: number
  /** The message's state key, when it has (or may have) a row. */
  key?: string
  /** Whether this delivery counts if it vanishes (see above). */
  counts: boolean
  /** The row as read, for the write at hand-over. */
  row?: Row
}

export interface Row {
  /** Redeliveries seen (classic queues: meta.deliveryCount). */
  seen?: number
  /** Redeliveries handed to the router. */
  runs?: number
  /** Counting deliveries the gateway gave back itself. */
  returned?: number
}

/** The broker's count of earlier returns of a quorum-queue message, if present. */
export function deliveryCountHeader(msg: Message): number | undefined {
  const v: unknown = msg.properties.headers?.['x-delivery-count']
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v
  if (typeof v === 'bigint' && v >= 0n) return Number(v)
  return undefined
}

export class DeliveryCounter {
  constructor(
    private readonly state: ConnectorState,
    private readonly queue: string,
    private readonly log: Logger,
  ) {}

  /** A first delivery, counted without the store; undefined for a redelivery. */
  quick(msg: Message): Counted | undefined {
    if (msg.fields.redelivered) return undefined
    const xdc = deliveryCountHeader(msg)
    return xdc === undefined || xdc === 0 ? { attempt: 1, deliveries: 1, counts: true } : undefined
  }

  keyOf(msg: Message): string {
    const id: unknown = msg.properties.messageId
    if (typeof id === 'string' && id !== '') return `attempts:${this.queue}:id:${id}`
    const h = createHash('sha1').update(msg.fields.exchange).update('\0').update(msg.fields.routingKey).update('\0').update(msg.content).digest('base64url')
    return `attempts:${this.queue}:sha1:${h}`
  }

  /** Counts a redelivery (reads the store; nothing is written until `handOver`). */
  async count(msg: Message): Promise<Counted> {
    const key = this.keyOf(msg)
    const row = await this.read(key)
    const xdc = deliveryCountHeader(msg)
    const deliveries = xdc !== undefined ? xdc + 1 : (row.seen ?? 1) + 1
    const attempt = Math.max(1, 2 + (row.runs ?? 0) - (row.returned ?? 0))
    return { attempt, deliveries, key, counts: false, row: xdc === undefined ? { ...row, seen: deliveries } : row }
  }

  /** Records that a redelivery goes to the router; durable before it resolves. */
  async handOver(c: Counted): Promise<void> {
    if (!c.key || c.counts) return
    await this.write(c.key, { ...c.row, runs: (c.row?.runs ?? 0) + 1 })
    c.counts = true
  }

  /** The gateway gives a delivery back (aborted, or its channel closed while this process runs it). */
  async returned(msg: Message, c: Counted): Promise<void> {
    if (!c.counts) return
    c.key ??= this.keyOf(msg)
    const row = await this.read(c.key)
    await this.write(c.key, { ...row, returned: (row.returned ?? 0) + 1 })
    c.counts = false
  }

  /** Forgets a settled message. */
  async clear(c: Counted): Promise<void> {
    if (!c.key) return
    try {
      await this.state.delete(c.key)
    } catch (e) {
      this.log.error({ key: c.key, err: (e as Error).message }, 'cannot clear the delivery count')
    }
  }

  private async read(key: string): Promise<Row> {
    try {
      return (await this.state.get<Row>(key)) ?? {}
    } catch (e) {
      this.log.error({ key, err: (e as Error).message }, 'cannot read the delivery count; counting this delivery as the second')
      return {}
    }
  }

  private async write(key: string, row: Row): Promise<void> {
    try {
      await this.state.set(key, row)
    } catch (e) {
      this.log.error({ key, err: (e as Error).message }, 'cannot store the delivery count')
    }
  }
}
