/**
 * The in-memory data of the Event Hubs test server: hubs, their partitions, and each partition's
 * append-only log. Offsets are byte positions (the size of every earlier event's encoded form),
 * so they differ from sequence numbers as they do on the real service.
 */
import rhea, { type Message } from 'rhea'

const { message: amqpMessage, types } = rhea

/** One stored event: its position and the encoded AMQP message a consumer receives. */
export interface StoredEvent {
  sequenceNumber: number
  offset: number
  enqueuedTime: Date
  partitionKey: string | undefined
  /** The message with the x-opt-* annotations, encoded once at append. */
  encoded: Buffer
}

export interface PartitionProperties {
  name: string
  partition: string
  begin_sequence_number: number
  last_enqueued_sequence_number: number
  last_enqueued_offset: string
  last_enqueued_time_utc: Date
  is_partition_empty: boolean
}

/** Where a receiver starts, parsed from the link's selector filter. */
export type StartPosition =
  | { kind: 'offset'; value: number | 'earliest' | 'latest'; inclusive: boolean }
  | { kind: 'sequence'; value: number; inclusive: boolean }
  | { kind: 'time'; value: number }

const SELECTOR = /^amqp\.annotation\.x-opt-(offset|sequence-number|enqueued-time)\s*(>=|>)\s*'([^']*)'$/

/**
 * Parses the selector the SDK sends (apache.org:selector-filter:string), e.g.
 * `amqp.annotation.x-opt-offset > '-1'`. Returns undefined for anything else.
 */
export function parseSelector(selector: string): StartPosition | undefined {
  const m = SELECTOR.exec(selector.trim())
  if (!m) return undefined
  const [, field, op, raw = ''] = m
  const inclusive = op === '>='
  if (field === 'offset') {
    if (raw === '-1') return { kind: 'offset', value: 'earliest', inclusive }
    if (raw === '@latest') return { kind: 'offset', value: 'latest', inclusive }
    const n = Number(raw)
    return Number.isInteger(n) ? { kind: 'offset', value: n, inclusive } : undefined
  }
  const n = Number(raw)
  if (!Number.isFinite(n)) return undefined
  return field === 'sequence-number' ? { kind: 'sequence', value: n, inclusive } : { kind: 'time', value: n }
}

export class PartitionLog {
  readonly events: StoredEvent[] = []
  private nextOffset = 0

  constructor(
    readonly hub: string,
    readonly id: string,
  ) {}

  /** Appends one message (as a producer sent it) and returns the stored event. */
  append(msg: Message, partitionKey: string | undefined): StoredEvent {
    const sequenceNumber = this.events.length
    const offset = this.nextOffset
    const enqueuedTime = new Date()
    const annotations: Record<string, unknown> = {
      ...(msg.message_annotations ?? {}),
      'x-opt-sequence-number': types.wrap_long(sequenceNumber),
      'x-opt-offset': String(offset),
      'x-opt-enqueued-time': enqueuedTime,
    }
    if (partitionKey !== undefined) annotations['x-opt-partition-key'] = partitionKey
    else delete annotations['x-opt-partition-key']
    const encoded = amqpMessage.encode({ ...msg, message_annotations: annotations })
    this.nextOffset += encoded.length
    const e: StoredEvent = { sequenceNumber, offset, enqueuedTime, partitionKey, encoded }
    this.events.push(e)
    return e
  }

  /** Index of the first event a receiver starting at `pos` gets (may be events.length). */
  indexOf(pos: StartPosition): number {
    const n = this.events.length
    switch (pos.kind) {
      case 'offset': {
        if (pos.value === 'earliest') return 0
        if (pos.value === 'latest') return n
        const target = pos.value
        const i = this.events.findIndex((e) => (pos.inclusive ? e.offset >= target : e.offset > target))
        return i === -1 ? n : i
      }
      case 'sequence': {
        const i = pos.inclusive ? pos.value : pos.value + 1
        return Math.min(Math.max(i, 0), n)
      }
      case 'time': {
        const i = this.events.findIndex((e) => e.enqueuedTime.getTime() > pos.value)
        return i === -1 ? n : i
      }
    }
  }

  properties(): PartitionProperties {
    const last = this.events[this.events.length - 1]
    return {
      name: this.hub,
      partition: this.id,
      begin_sequence_number: 0,
      last_enqueued_sequence_number: last ? last.sequenceNumber : -1,
      last_enqueued_offset: last ? String(last.offset) : '-1',
      last_enqueued_time_utc: last ? last.enqueuedTime : new Date(0),
      is_partition_empty: last === undefined,
    }
  }
}

export class Hub {
  readonly createdAt = new Date()
  readonly partitions: PartitionLog[]

  constructor(
    readonly name: string,
    partitionCount: number,
  ) {
    this.partitions = Array.from({ length: partitionCount }, (_, i) => new PartitionLog(name, String(i)))
  }

  partition(id: string): PartitionLog | undefined {
    return this.partitions[Number(id)]?.id === id ? this.partitions[Number(id)] : undefined
  }

  /**
   * The partition for a partition key. A stable FNV-1a hash: the same key always lands in the same
   * partition, but not the partition the real service (Jenkins lookup3) would pick.
   */
  partitionForKey(key: string): PartitionLog {
    let h = 0x811c9dc5
    for (let i = 0; i < key.length; i++) {
      h ^= key.charCodeAt(i)
      h = Math.imul(h, 0x01000193) >>> 0
    }
    return this.partitions[h % this.partitions.length] as PartitionLog
  }

  /** Partitions in turn for events without key or partition. */
  private rr = 0
  nextPartition(): PartitionLog {
    const p = this.partitions[this.rr % this.partitions.length] as PartitionLog
    this.rr++
    return p
  }
}
