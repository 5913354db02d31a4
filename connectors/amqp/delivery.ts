import { randomBytes } from 'node:crypto'
import type { ConsumeMessage, Message } from 'amqplib'
import type { ConnectorContext, Logger, Outcome, TriggerEvent } from '../../src/sdk/index.js'
import type { Counted, DeliveryCounter } from './attempts.js'
import { describe } from './connection.js'
import { publishDeadLetter, type DeadLetterTarget } from './dead-letters.js'
import type { InFlight, Link } from './link.js'
import { toEvent } from './message.js'

export interface DeliveriesOptions {
  ctx: ConnectorContext
  log: Logger
  counter: DeliveryCounter
  queue: string
  /** The events' `source`. */
  source: string
  /** Set when dead letters are also published to an exchange. */
  deadLetters: DeadLetterTarget | undefined
  /** Aborted when the connector stops: what arrives after goes back to the queue. */
  signal: AbortSignal
}

/** A message waiting for its (asynchronous) delivery count, kept in arrival order. */
interface Waiting {
  link: Link
  msg: ConsumeMessage
}

const ABORTED: Outcome = { status: 'aborted' }
const DONE: Promise<void> = Promise.resolve()

/**
 * The way of a consumed message from the channel to its ack: counts it (attempts.ts), hands it to
 * the router and settles its outcome in the link's ack window (acks.ts). `done` and `dead` are
 * acked once durable (`dead` after the dead-letter exchange confirmed, when there is one),
 * `aborted` is nacked with requeue. Outcomes of a closed channel are never sent (the broker
 * requeues those messages; see attempts.ts for how they count).
 *
 * One path for every message: `deliverGroup`. First deliveries of one tick go in one group; a
 * redelivery goes as a group of one.
 */
export class Deliveries {
  /** Ack and nack frames sent (all channels), for the stop log. */
  ackFrames = 0
  private readonly ctx: ConnectorContext
  private readonly log: Logger
  private readonly counter: DeliveryCounter
  private readonly queue: string
  private readonly source: string
  private readonly deadLetters: DeadLetterTarget | undefined
  private readonly signal: AbortSignal
  private readonly runId = randomBytes(3).toString('hex')
  private waiting: Waiting[] = []
  private draining = false
  /** Deliveries handed to the router (or waiting for their count) without a settled outcome. */
  private pending = 0
  private idle: Array<() => void> = []
  /** Store writes in progress (counts and credits), awaited by stop. */
  private readonly writes = new Set<Promise<unknown>>()

  constructor(o: DeliveriesOptions) {
    this.ctx = o.ctx
    this.log = o.log
    this.counter = o.counter
    this.queue = o.queue
    this.source = o.source
    this.deadLetters = o.deadLetters
    this.signal = o.signal
  }

  /**
   * Takes a message the link has registered in its ack window. A first delivery joins the link's
   * group for this tick: the messages of one socket read arrive in one tick and go to the router
   * in one call. A redelivery waits for its count (a store read) behind the redeliveries before it.
   */
  receive(link: Link, msg: ConsumeMessage): void {
    this.pending++
    const quick = this.waiting.length === 0 ? this.counter.quick(msg) : undefined
    if (quick) {
      if (link.group.push({ msg, counted: quick }) === 1) queueMicrotask(() => this.deliverQueued(link))
    } else {
      // What came before goes to the router first: the queue's order is kept.
      this.deliverQueued(link)
      this.waiting.push({ link, msg })
      if (!this.draining) void this.drainWaiting()
    }
  }

  /** The link closed while its deliveries run here: the broker requeues them, and they do not count (attempts.ts). */
  returnInflight(link: Link): void {
    for (const d of link.inflight.values()) this.track(this.counter.returned(d.msg, d.counted))
  }

  /** Resolves when no delivery waits for its outcome, or after `ms`. */
  waitIdle(ms: number): Promise<void> {
    if (this.pending === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms)
      this.idle.push(() => {
        clearTimeout(t)
        resolve()
      })
    })
  }

  /** Resolves once the store writes started so far have finished (stop must not close the store under them). */
  writesDone(): Promise<unknown> {
    return Promise.allSettled([...this.writes])
  }

  /** Sends the acks and nacks due on the link. */
  flush(link: Link): void {
    if (link.closed || !link.window.dirty) return
    try {
      const frames = link.window.flush()
      this.ackFrames += frames.length
      for (const f of frames) {
        const m = { fields: { deliveryTag: f.tag } } as Message
        if (f.kind === 'ack') link.ch.ack(m, f.multiple)
        else link.ch.nack(m, f.multiple, true)
      }
    } catch (e) {
      // The channel closed under us: its messages are redelivered.
      this.log.warn({ gen: link.gen, err: describe(e) }, 'cannot send acks; the channel is gone')
    }
  }

  /**
   * Redeliveries, in arrival order: counts them (a store read), records the hand-over, then
   * delivers. A redelivery whose attempt is above 1 (it vanished in a crash before) goes alone: the
   * next message waits for its outcome, so if it crashes the gateway again, the count goes up for
   * it and not for everything behind it (see attempts.ts). Messages that arrive meanwhile queue
   * up here, which keeps the queue's order.
   */
  private async drainWaiting(): Promise<void> {
    this.draining = true
    try {
      while (this.waiting.length > 0) {
        const w = this.waiting[0] as Waiting
        const counter = this.counter
        const counted = counter.quick(w.msg) ?? (await counter.count(w.msg))
        if (!w.link.closed && !this.signal.aborted) await this.track(counter.handOver(counted))
        const settled = this.deliverGroup(w.link, [{ msg: w.msg, counted }])
        // (A closed channel's copy may run on for a while; its redelivery must not wait for it.)
        if (counted.attempt > 1) await Promise.race([settled, w.link.down])
        this.waiting.shift()
      }
    } catch (e) {
      // Not expected (the counter logs store errors itself): give everything waiting back to the broker.
      this.log.error({ err: describe(e) }, 'amqp redelivery handling failed; reconnecting')
      for (const w of this.waiting.splice(0)) {
        w.link.model.close().catch(() => undefined)
        this.settled()
      }
    } finally {
      this.draining = false
    }
  }

  /** Hands the link's group of first deliveries to the router (see receive). Never throws (it runs as a microtask). */
  private deliverQueued(link: Link): void {
    const group = link.group
    if (group.length === 0) return
    link.group = []
    void this.deliverGroup(link, group)
  }

  /**
   * Hands messages to the router in one call. Each is settled from the outcome listener as soon as
   * its own outcome is durable, so a message waiting for its retry holds back no other message's
   * ack (issue 11); a first delivery's ack is recorded there synchronously (see settle). Resolves
   * once every message of the group is settled or given back; never rejects or throws.
   */
  private deliverGroup(link: Link, group: InFlight[]): Promise<unknown> {
    if (link.closed) {
      // Its channel went away before they ran: the broker requeues them.
      for (const g of group) {
        this.track(this.counter.returned(g.msg, g.counted))
        this.settled()
      }
      return DONE
    }
    for (const g of group) link.inflight.set(g.msg.fields.deliveryTag, g)
    if (this.signal.aborted) return Promise.all(group.map((g) => this.onOutcome(link, g.msg.fields.deliveryTag, ABORTED)))
    const events: TriggerEvent[] = []
    const tags: number[] = []
    // Cleared as each outcome is settled. The router keeps a finished delivery (and this
    // listener) for a while, so the listener holds no message: their buffers die at their ack.
    const counted: Array<Counted | undefined> = []
    // Settlements that wait for the store or the dead-letter exchange (not a first delivery's ack).
    const settling: Array<Promise<void>> = []
    for (const g of group) {
      try {
        events.push(this.eventOf(link, g.msg, g.counted))
        tags.push(g.msg.fields.deliveryTag)
        counted.push(g.counted)
      } catch (e) {
        settling.push(this.giveBack(link, g.msg.fields.deliveryTag, e))
      }
    }
    if (events.length === 0) return Promise.all(settling)
    // The router reports each outcome once; `rest` covers a context that only resolves.
    const onOutcome = (i: number, outcome: Outcome): void => {
      const c = counted[i]
      if (c === undefined) return
      counted[i] = undefined
      const p = this.settle(link, tags[i] as number, c, outcome)
      if (p) settling.push(p)
    }
    const rest = (outcomes: Outcome[] | undefined, e?: unknown): Promise<unknown> | undefined => {
      if (e !== undefined) this.log.error({ messages: tags.length, err: describe(e) }, 'cannot hand the messages to the router; they go back to the queue')
      try {
        for (let i = 0; i < tags.length; i++) if (counted[i] !== undefined) onOutcome(i, outcomes?.[i] ?? ABORTED)
      } catch (err) {
        this.log.error({ err: describe(err) }, 'cannot settle amqp deliveries; they stay unacked until the channel closes')
      }
      return settling.length === 0 ? undefined : Promise.all(settling)
    }
    try {
      return this.ctx.deliver(events, onOutcome).then(rest, (e: unknown) => rest(undefined, e))
    } catch (e) {
      return Promise.resolve(rest(undefined, e))
    }
  }

  private eventOf(link: Link, msg: ConsumeMessage, counted: Counted): TriggerEvent {
    const messageId: unknown = msg.properties.messageId
    return toEvent(msg, {
      id: typeof messageId === 'string' && messageId !== '' ? messageId : `${this.queue}-${this.runId}.${link.gen}-${msg.fields.deliveryTag}`,
      source: this.source,
      queue: this.queue,
      attempt: counted.attempt,
      deliveries: counted.deliveries,
    })
  }

  private giveBack(link: Link, tag: number, e: unknown): Promise<void> {
    this.log.error({ tag, err: describe(e) }, 'cannot hand the message to the router; it goes back to the queue')
    return this.onOutcome(link, tag, ABORTED)
  }

  /**
   * Settles one outcome. An ack that needs no store write and no dead-letter publish (a first
   * delivery done, or dead without a dead-letter exchange) is recorded at once, without the
   * promises of onOutcome: the common case, once per message.
   */
  private settle(link: Link, tag: number, counted: Counted, outcome: Outcome): Promise<void> | undefined {
    if (counted.key !== undefined || !(outcome.status === 'done' || (outcome.status === 'dead' && !this.deadLetters))) return this.onOutcome(link, tag, outcome)
    // A closed channel's messages are requeued by the broker (and were credited in returnInflight).
    if (link.inflight.delete(tag) && !link.closed) {
      link.window.settle(tag, 'ack')
      this.queueFlush(link)
    }
    this.settled()
    return undefined
  }

  /** One delivery less in flight; wakes a stop waiting for none. */
  private settled(): void {
    if (--this.pending === 0) for (const f of this.idle.splice(0)) f()
  }

  private async onOutcome(link: Link, tag: number, outcome: Outcome): Promise<void> {
    const d = link.inflight.get(tag)
    try {
      // A closed channel's messages are requeued by the broker (and were credited in returnInflight);
      // their state rows stay for the redelivered copies.
      if (!d || link.closed) return
      const counter = this.counter
      if (outcome.status === 'aborted') await this.track(counter.returned(d.msg, d.counted))
      else {
        if (outcome.status === 'dead' && this.deadLetters) await publishDeadLetter(link, d.msg, outcome, this.deadLetters, this.log)
        await this.track(counter.clear(d.counted))
      }
      if (link.closed) return
      link.window.settle(tag, outcome.status === 'aborted' ? 'requeue' : 'ack')
      this.queueFlush(link)
    } catch (e) {
      this.log.error({ tag, err: describe(e) }, 'cannot settle an amqp delivery; it stays unacked until the channel closes')
    } finally {
      link.inflight.delete(tag)
      this.settled()
    }
  }

  /** Coalesces the acks of one tick (a finished batch resolves many outcomes at once) into few frames. */
  private queueFlush(link: Link): void {
    if (link.flushQueued) return
    link.flushQueued = true
    setImmediate(() => {
      link.flushQueued = false
      this.flush(link)
    })
  }

  /** Keeps a store write visible to stop (which must not close the store under it). */
  private track<T>(p: Promise<T> | undefined): Promise<T | undefined> {
    if (!p) return Promise.resolve(undefined)
    this.writes.add(p)
    return p.finally(() => this.writes.delete(p))
  }
}
