/**
 * Partition receivers of the Event Hubs test server: one entry per open receiver link on
 * `<hub>/ConsumerGroups/<group>/Partitions/<id>`, with the owner level (epoch) rules of the
 * service and delivery as far as the link's credit allows.
 */
import type { Sender } from 'rhea'
import type { PartitionLog } from './partition-log.js'

export interface Consumer {
  sender: Sender
  log: PartitionLog
  group: string
  /** Owner level (com.microsoft:epoch), undefined for a receiver without one. */
  epoch: number | undefined
  /** Index of the next event to send. */
  next: number
  /** Ids of deliveries handed to rhea that it has not put on the wire yet (they hold credit). */
  queued: number[]
}

/** rhea's outgoing side of a session: deliveries below next_pending_delivery are transferred. */
interface OutgoingWindow {
  next_pending_delivery: number
}

/** AMQP error condition the service uses when an owner level takes a partition away. */
export const LINK_STOLEN = 'amqp:link:stolen'

export class Consumers {
  private readonly byPartition = new Map<string, Set<Consumer>>()
  private readonly bySender = new Map<Sender, Consumer>()
  /** Every receiver ever disconnected for a higher owner level (tests read it). */
  readonly stolen: Array<{ hub: string; partition: string; group: string; epoch: number | undefined }> = []

  private slot(log: PartitionLog, group: string): string {
    return `${log.hub}\u0000${group.toLowerCase()}\u0000${log.id}`
  }

  /**
   * Admits a new receiver, or refuses it (returns the error to close it with). A receiver with an
   * owner level at least that of every current receiver disconnects the others; a lower owner
   * level, or none while an owner-level receiver is open, is refused.
   */
  add(c: Consumer): { condition: string; description: string } | undefined {
    const key = this.slot(c.log, c.group)
    const set = this.byPartition.get(key) ?? new Set<Consumer>()
    const epochs = [...set].map((o) => o.epoch).filter((e): e is number => e !== undefined)
    const highest = epochs.length ? Math.max(...epochs) : undefined
    if (highest !== undefined && (c.epoch === undefined || c.epoch < highest)) {
      return {
        condition: LINK_STOLEN,
        description: `Receiver '${c.sender.name}' with epoch '${c.epoch ?? 'none'}' cannot be created: a receiver with a higher epoch '${highest}' already exists on partition ${c.log.id} of consumer group ${c.group}.`,
      }
    }
    if (c.epoch !== undefined) {
      for (const old of set) {
        this.remove(old.sender)
        this.stolen.push({ hub: c.log.hub, partition: c.log.id, group: c.group, epoch: old.epoch })
        old.sender.close({
          condition: LINK_STOLEN,
          description: `New receiver '${c.sender.name}' with higher epoch of '${c.epoch}' is created hence current receiver '${old.sender.name}' with epoch '${old.epoch ?? 'none'}' is getting disconnected.`,
        })
      }
    }
    set.add(c)
    this.byPartition.set(key, set)
    this.bySender.set(c.sender, c)
    return undefined
  }

  remove(sender: Sender): void {
    const c = this.bySender.get(sender)
    if (!c) return
    this.bySender.delete(sender)
    this.byPartition.get(this.slot(c.log, c.group))?.delete(c)
  }

  get(sender: Sender): Consumer | undefined {
    return this.bySender.get(sender)
  }

  /** Open receivers of a partition (any consumer group). */
  ofPartition(log: PartitionLog): Consumer[] {
    const out: Consumer[] = []
    for (const c of this.bySender.values()) if (c.log === log) out.push(c)
    return out
  }

  /**
   * Sends what the receiver's credit allows (pre-settled, as the log holds it encoded). rhea takes
   * credit off only when it writes a delivery out, so deliveries it still queues count against it.
   */
  pump(c: Consumer): void {
    const events = c.log.events
    const outgoing = (c.sender.session as unknown as { outgoing: OutgoingWindow }).outgoing
    while (c.queued.length > 0 && (c.queued[0] as number) < outgoing.next_pending_delivery) c.queued.shift()
    let credit = (c.sender as unknown as { credit: number }).credit - c.queued.length
    while (c.next < events.length && credit > 0 && c.sender.is_open()) {
      const d = c.sender.send((events[c.next] as { encoded: Buffer }).encoded, undefined, 0)
      c.queued.push(d.id)
      c.next++
      credit--
    }
  }

  clear(): void {
    this.byPartition.clear()
    this.bySender.clear()
  }
}
