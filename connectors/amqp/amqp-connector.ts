import { randomBytes } from 'node:crypto'
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, Message } from 'amqplib'
import {
  backoffDelay,
  SluiceError,
  type Connector,
  type ConnectorContext,
  type Logger,
  type Outcome,
  type TriggerEvent,
  type TriggerSpec,
} from '../../src/sdk/index.js'
import { AckWindow } from './acks.js'
import { DeliveryCounter, type Counted } from './attempts.js'
import { describe, errorInfo, openConnection, redact, sleep, toSluiceError } from './connection.js'
import { toEvent } from './message.js'
import { connectionDefaults, type AmqpConnectionOptions, type AmqpTriggerOptions } from './options.js'
import { declareTopology } from './topology.js'

/** One connection and its consuming channel. Delivery tags, acks and the consumer belong to it. */
interface Link {
  gen: number
  model: ChannelModel
  ch: Channel
  window: AckWindow
  consumerTag: string | undefined
  /** Consumer changes (consume/cancel) run one after another. */
  sync: Promise<void>
  /** Set once, when the channel or connection closes (or stop closes it): nothing is sent after. */
  closed: boolean
  flushQueued: boolean
  /** Deliveries waiting for their outcome. */
  inflight: Map<number, InFlight>
  /** First deliveries of this tick, handed to the router together (see deliverGroup). */
  group: InFlight[]
  dlx: Promise<ConfirmChannel> | undefined
  /** Resolves when the link closes. */
  down: Promise<void>
  setDown: () => void
}

interface InFlight {
  msg: ConsumeMessage
  counted: Counted
}

/** A message waiting for its (asynchronous) delivery count, kept in arrival order. */
interface Waiting {
  link: Link
  msg: ConsumeMessage
}

const ABORTED: Outcome = { status: 'aborted' }
/** How long a graceful stop waits for in-flight outcomes (the gateway bounds the whole stop too). */
const STOP_WAIT_MS = 30_000

/**
 * AMQP 0-9-1 trigger (RabbitMQ). Consumes one queue with manual acks and a prefetch window; each
 * message is one event, acknowledged once its outcome is durable (`done` or `dead`), with
 * multiple-acks over settled prefixes (see acks.ts); `aborted` is nacked with requeue. Reconnects
 * with backoff, declares the topology again and resumes; outcomes of a closed channel are never
 * sent on a new one (the broker redelivers those messages). Redeliveries count towards
 * retry.maxAttempts (see attempts.ts).
 */
export class AmqpConnector implements Connector {
  private readonly trigger: AmqpTriggerOptions
  private readonly conn: Required<AmqpConnectionOptions>
  private readonly connectionName: string
  private readonly source: string
  private readonly prefetch: number
  private readonly runId = randomBytes(3).toString('hex')
  private readonly abort = new AbortController()
  private ctx: ConnectorContext | undefined
  private log: Logger | undefined
  private counter: DeliveryCounter | undefined
  private link: Link | undefined
  private gen = 0
  private paused = false
  private reconnecting = false
  /** The connection attempt in progress, which stop waits for. */
  private opening: Promise<Link> | undefined
  private stopPromise: Promise<void> | undefined
  private unsubscribe: (() => void) | undefined
  private waiting: Waiting[] = []
  private draining = false
  /** Deliveries handed to the router (or waiting for their count) without a settled outcome. */
  private pending = 0
  private idle: Array<() => void> = []
  /** Ack and nack frames sent (all channels), for the stop log. */
  private ackFrames = 0
  /** Store writes in progress (counts and credits), awaited by stop. */
  private readonly writes = new Set<Promise<unknown>>()

  constructor(private readonly spec: TriggerSpec<AmqpTriggerOptions, AmqpConnectionOptions>) {
    this.trigger = spec.trigger
    if (!spec.connection) throw new SluiceError('SLUICE_ERR_CONNECTOR_START', `function ${spec.functionName}: the amqp trigger needs a connection`)
    this.conn = connectionDefaults(spec.connection)
    const connection = spec.connectionName ?? 'amqp'
    this.connectionName = `sluice/${connection}/${spec.functionName}`
    this.source = `amqp://${connection}/${this.trigger.queue}`
    this.prefetch = Math.max(1, Math.min(this.trigger.prefetch, spec.maxBacklog ?? Number.MAX_SAFE_INTEGER))
  }

  /** Resolves once consuming; rejects (SLUICE_ERR_CONNECTOR_START / _TOPOLOGY) after connectTimeoutMs or at once for a permanent refusal. */
  async start(ctx: ConnectorContext): Promise<void> {
    this.ctx = ctx
    const log = ctx.log.child({ queue: this.trigger.queue, url: redact(this.conn.url) })
    this.log = log
    this.counter = new DeliveryCounter(ctx.state, this.trigger.queue, log)
    this.paused = ctx.flow.paused
    this.unsubscribe = ctx.flow.onChange((paused) => {
      this.paused = paused
      const link = this.link
      if (link && !link.closed) void this.syncConsumer(link)
    })
    const deadline = Date.now() + this.conn.connectTimeoutMs
    for (let attempt = 1; ; attempt++) {
      try {
        this.link = await this.openLink()
        break
      } catch (e) {
        const err =
          e instanceof SluiceError
            ? e
            : toSluiceError(e, 'SLUICE_ERR_CONNECTOR_START', `cannot connect to ${redact(this.conn.url)}`, { connection: this.spec.connectionName })
        const delay = backoffDelay({ backoff: 'exponential', ...this.conn.reconnect }, attempt)
        if (this.abort.signal.aborted || !err.retriable || Date.now() + delay > deadline) throw err
        log.warn({ attempt, delayMs: delay, err: errorInfo(err) }, 'amqp connection failed; trying again')
        await sleep(delay, this.abort.signal)
      }
    }
    ctx.setHealth(true)
    log.info({ prefetch: this.prefetch, gen: this.gen }, 'amqp consumer started')
  }

  /** Connects, declares the topology, sets the prefetch and starts consuming (unless paused). */
  private openLink(): Promise<Link> {
    const p = this.connect()
    this.opening = p
    void p
      .catch(() => undefined)
      .finally(() => {
        if (this.opening === p) this.opening = undefined
      })
    return p
  }

  private async connect(): Promise<Link> {
    const gen = ++this.gen
    const model = await openConnection(this.conn, this.connectionName)
    let link: Link | undefined
    model.on('error', (e: Error) => this.log?.debug({ gen, err: describe(e) }, 'amqp connection error'))
    model.on('close', (e?: Error) => {
      if (link) this.onLinkDown(link, e ?? new Error('connection closed'))
    })
    model.on('blocked', (reason: string) => this.log?.warn({ gen, reason }, 'broker blocked the connection'))
    try {
      const ch = await model.createChannel()
      ch.on('error', (e: Error) => this.log?.warn({ gen, err: describe(e) }, 'amqp channel error'))
      ch.on('close', () => {
        if (!link) return
        this.onLinkDown(link, new Error('channel closed'))
        model.close().catch(() => undefined)
      })
      try {
        await declareTopology(ch, this.trigger, this.spec.connectionName)
      } catch (e) {
        throw toSluiceError(e, 'SLUICE_ERR_CONNECTOR_TOPOLOGY', `declaring the topology of queue ${this.trigger.queue}`, {
          connection: this.spec.connectionName,
        })
      }
      let setDown = () => {}
      const down = new Promise<void>((r) => (setDown = r))
      link = {
        gen,
        model,
        ch,
        window: new AckWindow(),
        consumerTag: undefined,
        sync: Promise.resolve(),
        closed: false,
        flushQueued: false,
        inflight: new Map(),
        group: [],
        dlx: undefined,
        down,
        setDown,
      }
      if (this.abort.signal.aborted) throw new Error('stopping')
      await this.syncConsumer(link)
      if (link.closed) throw new Error('the connection closed while subscribing')
      // stop() began meanwhile: it waits for this attempt, which must not leave a consumer behind.
      if (this.abort.signal.aborted) throw new Error('stopping')
      return link
    } catch (e) {
      if (link) {
        link.closed = true
        link.setDown()
      }
      await model.close().catch(() => undefined)
      throw e
    }
  }

  /**
   * Makes the consumer match what is wanted: consuming unless stopping or paused. A pause cancels
   * the consumer only when the prefetch window is not what holds the router back (other load, such
   * as replays, filled the backlog); a full window already stops the broker from sending.
   */
  private syncConsumer(link: Link): Promise<void> {
    link.sync = link.sync.then(async () => {
      if (link.closed) return
      const stopping = this.abort.signal.aborted
      if (!link.consumerTag && !stopping && !this.paused) {
        await link.ch.prefetch(this.prefetch, false)
        const ok = await link.ch.consume(this.trigger.queue, (msg) => this.onMessage(link, msg), { noAck: false })
        link.consumerTag = ok.consumerTag
      } else if (link.consumerTag && (stopping || (this.paused && link.window.open < this.prefetch))) {
        const tag = link.consumerTag
        link.consumerTag = undefined
        await link.ch.cancel(tag)
      }
    })
    link.sync = link.sync.catch((e: unknown) => {
      if (!link.closed) this.log?.warn({ gen: link.gen, err: describe(e) }, 'cannot change the amqp consumer')
    })
    return link.sync
  }

  private onLinkDown(link: Link, err: Error): void {
    if (link.closed) return
    link.closed = true
    link.setDown()
    if (this.link === link) this.link = undefined
    // The broker requeues what this channel had not settled while this process still runs those
    // messages: their redelivery is not a new attempt.
    for (const d of link.inflight.values()) this.track(this.counter?.returned(d.msg, d.counted))
    if (this.abort.signal.aborted) return
    this.ctx?.setHealth(false, `reconnecting: ${describe(err)}`)
    this.log?.warn({ gen: link.gen, unsettled: link.inflight.size, err: describe(err) }, 'amqp connection lost; reconnecting')
    void this.reconnect()
  }

  private async reconnect(): Promise<void> {
    if (this.reconnecting) return
    this.reconnecting = true
    try {
      for (let attempt = 1; !this.abort.signal.aborted; attempt++) {
        await sleep(backoffDelay({ backoff: 'exponential', ...this.conn.reconnect }, attempt), this.abort.signal)
        if (this.abort.signal.aborted) return
        try {
          const link = await this.openLink()
          if (link.closed) continue
          this.link = link
          this.ctx?.setHealth(true)
          this.log?.info({ gen: link.gen, attempt }, 'amqp reconnected; consuming again')
          return
        } catch (e) {
          this.ctx?.setHealth(false, `reconnecting (attempt ${attempt}): ${describe(e)}`)
          this.log?.warn({ attempt, err: errorInfo(e) }, 'amqp reconnect failed')
        }
      }
    } finally {
      this.reconnecting = false
    }
  }

  private onMessage(link: Link, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // The broker cancelled the consumer (queue deleted, or a quorum queue lost its leader):
      // reconnecting declares the topology again and resubscribes.
      this.log?.warn({ gen: link.gen }, 'the broker cancelled the amqp consumer; reconnecting')
      link.consumerTag = undefined
      link.model.close().catch(() => undefined)
      return
    }
    if (link.closed) return
    const tag = msg.fields.deliveryTag
    if (!link.window.add(tag)) {
      // Tags on a channel count up from 1 without gaps; anything else would make multiple-acks unsafe.
      this.log?.error({ gen: link.gen, tag, expected: link.window.nextTag }, 'amqp delivery tag out of sequence; reconnecting')
      link.model.close().catch(() => undefined)
      return
    }
    this.pending++
    const quick = this.waiting.length === 0 ? this.counter?.quick(msg) : undefined
    if (quick) {
      // The messages of one socket read arrive in one tick: they go to the router in one call.
      if (link.group.push({ msg, counted: quick }) === 1) queueMicrotask(() => this.deliverGroup(link))
    } else {
      // What came before goes to the router first: the queue's order is kept.
      this.deliverGroup(link)
      this.waiting.push({ link, msg })
      if (!this.draining) void this.drainWaiting()
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
        const counter = this.counter as DeliveryCounter
        const counted = counter.quick(w.msg) ?? (await counter.count(w.msg))
        if (!w.link.closed && !this.abort.signal.aborted) await this.track(counter.handOver(counted))
        const settled = this.dispatch(w.link, w.msg, counted)
        // (A closed channel's copy may run on for a while; its redelivery must not wait for it.)
        if (counted.attempt > 1) await Promise.race([settled, w.link.down])
        this.waiting.shift()
      }
    } catch (e) {
      // Not expected (the counter logs store errors itself): give everything waiting back to the broker.
      this.log?.error({ err: describe(e) }, 'amqp redelivery handling failed; reconnecting')
      for (const w of this.waiting.splice(0)) {
        w.link.model.close().catch(() => undefined)
        this.settled()
      }
    } finally {
      this.draining = false
    }
  }

  /**
   * Hands the first deliveries of one tick to the router in one call. Each message is settled from
   * the outcome listener as soon as its own outcome is durable, so a message waiting for its retry
   * holds back no other message's ack (issue 11). Never throws (it runs as a microtask).
   */
  private deliverGroup(link: Link): void {
    const group = link.group
    if (group.length === 0) return
    link.group = []
    if (link.closed) {
      // Its channel went away before they ran: the broker requeues them.
      for (const g of group) {
        this.track(this.counter?.returned(g.msg, g.counted))
        this.settled()
      }
      return
    }
    for (const g of group) link.inflight.set(g.msg.fields.deliveryTag, g)
    const ctx = this.ctx
    if (this.abort.signal.aborted || !ctx) {
      for (const g of group) void this.onOutcome(link, g.msg.fields.deliveryTag, ABORTED)
      return
    }
    const events: TriggerEvent[] = []
    const tags: number[] = []
    // Cleared as each outcome is settled. The router keeps a finished delivery (and this
    // listener) for a while, so the listener holds no message: their buffers die at their ack.
    const counted: Array<Counted | undefined> = []
    for (const g of group) {
      try {
        events.push(this.eventOf(link, g.msg, g.counted))
        tags.push(g.msg.fields.deliveryTag)
        counted.push(g.counted)
      } catch (e) {
        void this.giveBack(link, g.msg.fields.deliveryTag, e)
      }
    }
    if (events.length === 0) return
    // The router reports each outcome once; `rest` covers a context that only resolves.
    const onOutcome = (i: number, outcome: Outcome): void => {
      const c = counted[i]
      if (c === undefined) return
      counted[i] = undefined
      void this.settle(link, tags[i] as number, c, outcome)
    }
    const rest = (outcomes: Outcome[] | undefined, e?: unknown): void => {
      if (e !== undefined) this.log?.error({ messages: tags.length, err: describe(e) }, 'cannot hand the messages to the router; they go back to the queue')
      try {
        for (let i = 0; i < tags.length; i++) if (counted[i] !== undefined) onOutcome(i, outcomes?.[i] ?? ABORTED)
      } catch (err) {
        this.log?.error({ err: describe(err) }, 'cannot settle amqp deliveries; they stay unacked until the channel closes')
      }
    }
    try {
      ctx.deliver(events, onOutcome).then(rest, (e: unknown) => rest(undefined, e))
    } catch (e) {
      rest(undefined, e)
    }
  }

  private eventOf(link: Link, msg: ConsumeMessage, counted: Counted): TriggerEvent {
    const messageId: unknown = msg.properties.messageId
    return toEvent(msg, {
      id: typeof messageId === 'string' && messageId !== '' ? messageId : `${this.trigger.queue}-${this.runId}.${link.gen}-${msg.fields.deliveryTag}`,
      source: this.source,
      queue: this.trigger.queue,
      attempt: counted.attempt,
      deliveries: counted.deliveries,
    })
  }

  private giveBack(link: Link, tag: number, e: unknown): Promise<void> {
    this.log?.error({ tag, err: describe(e) }, 'cannot hand the message to the router; it goes back to the queue')
    return this.onOutcome(link, tag, ABORTED)
  }

  /** Hands one message (a redelivery) to the router; resolves once its outcome is settled (or given back). */
  private dispatch(link: Link, msg: ConsumeMessage, counted: Counted): Promise<unknown> {
    const tag = msg.fields.deliveryTag
    if (link.closed) {
      // Its channel went away before it ran: the broker requeues it.
      this.track(this.counter?.returned(msg, counted))
      this.settled()
      return Promise.resolve()
    }
    link.inflight.set(tag, { msg, counted })
    const ctx = this.ctx
    if (this.abort.signal.aborted || !ctx) return this.onOutcome(link, tag, ABORTED)
    const fail = (e: unknown) => this.giveBack(link, tag, e)
    try {
      return ctx.deliver([this.eventOf(link, msg, counted)]).then((outcomes) => this.settle(link, tag, counted, outcomes[0] ?? ABORTED), fail)
    } catch (e) {
      return fail(e)
    }
  }

  /**
   * Settles one outcome. An ack that needs no store write and no dead-letter publish (a first
   * delivery done, or dead without a dead-letter exchange) is recorded at once, without the
   * promises of onOutcome: the common case, once per message.
   */
  private settle(link: Link, tag: number, counted: Counted, outcome: Outcome): Promise<void> | undefined {
    if (counted.key !== undefined || !(outcome.status === 'done' || (outcome.status === 'dead' && !this.trigger.deadLetterExchange)))
      return this.onOutcome(link, tag, outcome)
    // A closed channel's messages are requeued by the broker (and were credited in onLinkDown).
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
      // A closed channel's messages are requeued by the broker (and were credited in onLinkDown);
      // their state rows stay for the redelivered copies.
      if (!d || link.closed) return
      const counter = this.counter as DeliveryCounter
      if (outcome.status === 'aborted') await this.track(counter.returned(d.msg, d.counted))
      else {
        if (outcome.status === 'dead' && this.trigger.deadLetterExchange) await this.publishDeadLetter(link, d.msg, outcome)
        await this.track(counter.clear(d.counted))
      }
      if (link.closed) return
      link.window.settle(tag, outcome.status === 'aborted' ? 'requeue' : 'ack')
      this.queueFlush(link)
    } catch (e) {
      this.log?.error({ tag, err: describe(e) }, 'cannot settle an amqp delivery; it stays unacked until the channel closes')
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

  private flush(link: Link): void {
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
      this.log?.warn({ gen: link.gen, err: describe(e) }, 'cannot send acks; the channel is gone')
    }
  }

  /**
   * Publishes a dead-lettered message to deadLetterExchange (original body and properties, plus
   * x-sluice-* headers) and waits for the broker's confirm. The message is already in the
   * dead-letter store, so a failure here is logged and the message is acked all the same.
   */
  private async publishDeadLetter(link: Link, msg: Message, outcome: Extract<Outcome, { status: 'dead' }>): Promise<void> {
    const exchange = this.trigger.deadLetterExchange as string
    try {
      link.dlx ??= link.model.createConfirmChannel().then((ch) => {
        ch.on('error', (e: Error) => this.log?.warn({ err: describe(e) }, 'amqp dead-letter channel error'))
        ch.on('close', () => {
          link.dlx = undefined
        })
        return ch
      })
      const ch = await link.dlx
      const p = msg.properties
      const headers = {
        ...(p.headers ?? {}),
        'x-sluice-dead-letter-id': outcome.deadLetterId,
        'x-sluice-error-code': outcome.error.code,
        'x-sluice-error': outcome.error.message.slice(0, 1000),
        'x-sluice-function': this.spec.functionName,
        'x-sluice-queue': this.trigger.queue,
      }
      const options = {
        contentType: p.contentType,
        contentEncoding: p.contentEncoding,
        deliveryMode: p.deliveryMode,
        priority: p.priority,
        correlationId: p.correlationId,
        replyTo: p.replyTo,
        messageId: p.messageId,
        timestamp: p.timestamp,
        type: p.type,
        appId: p.appId,
      }
      const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined && v !== null))
      await new Promise<void>((resolve, reject) => {
        ch.publish(exchange, this.trigger.deadLetterRoutingKey ?? msg.fields.routingKey, msg.content, { ...defined, headers }, (err: unknown) =>
          err ? reject(err) : resolve(),
        )
      })
    } catch (e) {
      this.log?.error(
        { exchange, deadLetterId: outcome.deadLetterId, err: describe(e) },
        'cannot publish to the dead-letter exchange; the message is in the dead-letter store',
      )
    }
  }

  /** Keeps a store write visible to stop (which must not close the store under it). */
  private track<T>(p: Promise<T> | undefined): Promise<T | undefined> {
    if (!p) return Promise.resolve(undefined)
    this.writes.add(p)
    return p.finally(() => this.writes.delete(p))
  }

  private waitIdle(ms: number): Promise<void> {
    if (this.pending === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms)
      this.idle.push(() => {
        clearTimeout(t)
        resolve()
      })
    })
  }

  /**
   * Idempotent. Cancels the consumer, waits for in-flight outcomes (the router answers queued
   * events `aborted` on shutdown), sends the acks and nacks that are due, then closes the channel
   * and the connection. `force`: closes at once; the broker requeues what is unsettled.
   */
  stop(opts: { force?: boolean } = {}): Promise<void> {
    this.stopPromise ??= (async () => {
      this.abort.abort()
      this.unsubscribe?.()
      await this.opening?.catch(() => undefined)
      const link = this.link
      if (link && !link.closed) await this.syncConsumer(link)
      if (!opts.force) await this.waitIdle(STOP_WAIT_MS)
      if (link && !link.closed) {
        this.flush(link)
        for (const d of link.inflight.values()) this.track(this.counter?.returned(d.msg, d.counted))
        link.closed = true
        link.setDown()
      }
      await Promise.allSettled([...this.writes])
      if (link) {
        await link.ch.close().catch(() => undefined)
        await link.model.close().catch(() => undefined)
      }
      this.ctx?.setHealth(false, 'stopped')
      this.log?.info({ gen: this.gen, ackFrames: this.ackFrames }, 'amqp consumer stopped')
    })()
    return this.stopPromise
  }
}
