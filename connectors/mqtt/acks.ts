/**
 * Deferred, ordered PUBACKs. mqtt.js answers a QoS 1 PUBLISH as soon as `handleMessage` calls back;
 * sluice must answer only once the message's outcome is durable, and MQTT wants the PUBACKs in the
 * order the PUBLISHes came (MQTT 3.1.1 §4.6, MQTT 5 §4.6). So every QoS 1 message gets a place in
 * the queue of the network connection it came on, and the queue sends the answered head.
 *
 * A PUBACK belongs to one network connection: after a reconnect the broker sends the unacknowledged
 * messages again (same packet ids) and may reuse an id for a new message once it was acknowledged.
 * So a queue whose connection closed never sends anything again; its unanswered messages are kept
 * as "carried" so that their redeliveries (DUP set, same id, topic and payload) take over their
 * outcome instead of running the function a second time.
 */

export const State = {
  /** The outcome is not known yet. */
  Pending: 0,
  /** Done or dead-lettered: acknowledge. */
  Ack: 1,
  /** Aborted (the gateway stops): never acknowledge; the broker sends it again later. */
  Skip: 2,
  /** The PUBACK was written. */
  Sent: 3,
} as const
export type State = (typeof State)[keyof typeof State]

/** One QoS 1 message received on one connection. */
export class InflightMessage {
  state: State = State.Pending
  /** The same message redelivered on a later connection, waiting for this outcome. */
  follower: InflightMessage | undefined = undefined
  constructor(
    readonly queue: AckQueue,
    readonly messageId: number,
    readonly topic: string,
    readonly payload: Buffer,
  ) {}

  /** True when `topic`/`payload`/`id` describe this message (a redelivery of it). */
  matches(messageId: number, topic: string, payload: Buffer): boolean {
    return this.messageId === messageId && this.topic === topic && this.payload.equals(payload)
  }
}

export interface AckSender {
  /** True while the queue's connection is the client's current, open one. */
  canSend(queue: AckQueue): boolean
  /** Writes PUBACKs for these packet ids, in this order. */
  send(queue: AckQueue, messageIds: number[]): void
  /** The queue got shorter (answered messages left its head). */
  advanced(queue: AckQueue): void
}

export class AckQueue {
  private items: InflightMessage[] = []
  private head = 0
  /** The connection closed: nothing is sent any more. */
  closed = false

  constructor(
    /** The network stream the messages came on (the connection's identity). */
    readonly stream: unknown,
    private readonly sender: AckSender,
  ) {}

  add(messageId: number, topic: string, payload: Buffer): InflightMessage {
    const m = new InflightMessage(this, messageId, topic, payload)
    this.items.push(m)
    return m
  }

  /** Records a message's outcome and sends every PUBACK that is now due. */
  settle(m: InflightMessage, ack: boolean): void {
    if (this.record(m, ack)) this.flush()
  }

  /**
   * Records a message's outcome without sending: for the outcomes of a group, followed by one
   * `flush` (one write for all their PUBACKs). False when the outcome was known already.
   */
  record(m: InflightMessage, ack: boolean): boolean {
    if (m.state !== State.Pending) return false
    m.state = ack ? State.Ack : State.Skip
    const f = m.follower
    if (f) f.queue.settle(f, ack)
    return true
  }

  /** Sends the PUBACKs of the answered head, in order. */
  flush(): void {
    if (this.closed || !this.sender.canSend(this)) return
    const items = this.items
    const start = this.head
    let ids: number[] | undefined
    while (this.head < items.length) {
      const m = items[this.head] as InflightMessage
      if (m.state === State.Pending) break
      if (m.state === State.Ack) {
        ;(ids ??= []).push(m.messageId)
        m.state = State.Sent
      }
      this.head++
    }
    const advanced = this.head > start
    if (this.head > 1024 && this.head * 2 > items.length) {
      this.items = items.slice(this.head)
      this.head = 0
    }
    if (ids) this.sender.send(this, ids)
    if (advanced) this.sender.advanced(this)
  }

  /** Marks the connection closed and returns the messages it never acknowledged, in order. */
  close(): InflightMessage[] {
    this.closed = true
    const open = this.items.slice(this.head).filter((m) => m.state !== State.Skip)
    this.items = []
    this.head = 0
    return open
  }

  /** Messages waiting for an outcome or for an earlier message's outcome. */
  get size(): number {
    return this.items.length - this.head
  }
}

/**
 * Records the outcomes of a group of messages (`ack[i]` for `msgs[i]`; undefined entries are
 * QoS 0 messages) and sends the PUBACKs that are now due, one write per connection.
 */
export function settleAll(msgs: ReadonlyArray<InflightMessage | undefined>, ack: (i: number) => boolean): void {
  let q: AckQueue | undefined
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i]
    if (m === undefined) continue
    if (!m.queue.record(m, ack(i))) continue
    if (q !== m.queue) {
      q?.flush()
      q = m.queue
    }
  }
  q?.flush()
}

/**
 * PUBACK packets for `messageIds`, in order, as one buffer (one socket write for a run of them).
 * The bytes are the ones mqtt-packet 9 writes for `{ cmd: 'puback', messageId }`: MQTT 3.1.1
 * `40 02 id`; MQTT 5 `40 04 id 00 00` (reason code success, no properties).
 */
export function pubackBytes(messageIds: readonly number[], protocolVersion: number | undefined): Buffer {
  const v5 = protocolVersion === 5
  const size = v5 ? 6 : 4
  const buf = Buffer.allocUnsafe(size * messageIds.length)
  let o = 0
  for (const id of messageIds) {
    buf[o] = 0x40
    buf[o + 1] = size - 2
    buf[o + 2] = (id >> 8) & 0xff
    buf[o + 3] = id & 0xff
    if (v5) {
      buf[o + 4] = 0
      buf[o + 5] = 0
    }
    o += size
  }
  return buf
}
