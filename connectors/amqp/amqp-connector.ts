import type { ConsumeMessage } from 'amqplib'
import { backoffDelay, SluiceError, type Connector, type ConnectorContext, type Logger, type TriggerSpec } from '../../src/sdk/index.js'
import { DeliveryCounter } from './attempts.js'
import { describe, errorInfo, openConnection, redact, sleep, toSluiceError } from './connection.js'
import { Deliveries } from './delivery.js'
import { markDown, newLink, type Link } from './link.js'
import { connectionDefaults, type AmqpConnectionOptions, type AmqpTriggerOptions } from './options.js'
import { declareTopology } from './topology.js'

/** How long a graceful stop waits for in-flight outcomes (the gateway bounds the whole stop too). */
const STOP_WAIT_MS = 30_000

/**
 * AMQP 0-9-1 trigger (RabbitMQ). Consumes one queue with manual acks and a prefetch window; each
 * message is one event, acknowledged once its outcome is durable (`done` or `dead`), with
 * multiple-acks over settled prefixes (see acks.ts); `aborted` is nacked with requeue. Reconnects
 * with backoff, declares the topology again and resumes; outcomes of a closed channel are never
 * sent on a new one (the broker redelivers those messages). Redeliveries count towards
 * retry.maxAttempts (see attempts.ts).
 *
 * This file is the lifecycle: connect, declare, consume, pause, reconnect, stop. A message's way
 * from the channel to its ack is in delivery.ts.
 */
export class AmqpConnector implements Connector {
  private readonly trigger: AmqpTriggerOptions
  private readonly conn: Required<AmqpConnectionOptions>
  private readonly connectionName: string
  private readonly source: string
  private readonly prefetch: number
  private readonly abort = new AbortController()
  private ctx: ConnectorContext | undefined
  private log: Logger | undefined
  /** From consumed message to ack; set by start. */
  private deliveries: Deliveries | undefined
  private link: Link | undefined
  private gen = 0
  private paused = false
  private reconnecting = false
  /** The connection attempt in progress, which stop waits for. */
  private opening: Promise<Link> | undefined
  private stopPromise: Promise<void> | undefined
  private unsubscribe: (() => void) | undefined

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
    const { queue, deadLetterExchange } = this.trigger
    this.deliveries = new Deliveries({
      ctx,
      log,
      counter: new DeliveryCounter(ctx.state, queue, log),
      queue,
      source: this.source,
      deadLetters: deadLetterExchange
        ? { exchange: deadLetterExchange, routingKey: this.trigger.deadLetterRoutingKey, functionName: this.spec.functionName, queue }
        : undefined,
      signal: this.abort.signal,
    })
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
      link = newLink(gen, model, ch)
      if (this.abort.signal.aborted) throw new Error('stopping')
      await this.syncConsumer(link)
      if (link.closed) throw new Error('the connection closed while subscribing')
      // stop() began meanwhile: it waits for this attempt, which must not leave a consumer behind.
      if (this.abort.signal.aborted) throw new Error('stopping')
      return link
    } catch (e) {
      if (link) markDown(link)
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
    if (!markDown(link)) return
    if (this.link === link) this.link = undefined
    // The broker requeues what this channel had not settled while this process still runs those
    // messages: their redelivery is not a new attempt.
    this.deliveries?.returnInflight(link)
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
    this.deliveries?.receive(link, msg)
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
      const deliveries = this.deliveries
      if (!opts.force) await deliveries?.waitIdle(STOP_WAIT_MS)
      if (link && !link.closed) {
        deliveries?.flush(link)
        deliveries?.returnInflight(link)
        markDown(link)
      }
      await deliveries?.writesDone()
      if (link) {
        await link.ch.close().catch(() => undefined)
        await link.model.close().catch(() => undefined)
      }
      this.ctx?.setHealth(false, 'stopped')
      this.log?.info({ gen: this.gen, ackFrames: this.deliveries?.ackFrames ?? 0 }, 'amqp consumer stopped')
    })()
    return this.stopPromise
  }
}
