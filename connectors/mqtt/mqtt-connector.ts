import { hostname } from 'node:os'
import type { IConnackPacket, IPublishPacket, MqttClient } from 'mqtt'
import {
  SluiceError,
  type Connector,
  type ConnectorContext,
  type Outcome,
  type SessionHolder,
  type SourceSession,
  type TriggerEvent,
  type TriggerSpec,
} from '../../src/sdk/index.js'
import { AckQueue, pubackBytes, settleAll, State, type AckSender, type InflightMessage } from './acks.js'
import { displayUrl, isFatal, MqttConnection, mqttError, protocolVersionOf } from './connection.js'
import { payloadOf, toEvent } from './message.js'
import type { MqttConnectionOptions, MqttTriggerOptions } from './options.js'

/**
 * Handed to mqtt.js's handleMessage callback for a QoS 1 message: mqtt.js then sends no PUBACK but
 * reads on (its packet loop ignores the error). The connector sends the PUBACK itself once the
 * outcome is durable. test/connectors/mqtt/acks.test.ts pins this mqtt.js 5.16.0 behaviour.
 */
const DEFERRED = new Error('sluice: PUBACK deferred until the outcome is durable')
/**
 * Most events read before they are handed to the router. Events read in one tick go together (one
 * deliver call); a full group goes at once, so the router's back-pressure is seen in time.
 */
const MAX_GROUP = 64
/** Longest graceful wait for in-flight outcomes on stop (the gateway bounds its stop too). */
const STOP_DRAIN_MS = 30000

/**
 * The client id of a trigger's persistent session unless `clientId` is set. Instances of a shared
 * subscription need sessions of their own: the instance id (default: the host name) tells them
 * apart, and stays the same across restarts, so a restarted instance resumes its session.
 */
export function defaultClientId(connection: string, fn: string, share?: string, instanceId?: string): string {
  return share ? `sluice-${connection}-${fn}-${instanceId ?? hostname()}` : `sluice-${connection}-${fn}`
}

/** What the trigger subscribes to: the topic filter, inside $share/<group>/ with `share`. */
export function subscriptionFilter(t: Pick<MqttTriggerOptions, 'topic' | 'share'>): string {
  return t.share ? `$share/${t.share}/${t.topic}` : t.topic
}

/**
 * MQTT trigger: a persistent session (clean: false, fixed client id) subscribed to one topic
 * filter. Each PUBLISH becomes one event; a QoS 1 message is acknowledged (PUBACK) only once its
 * outcome is durable, in the order the messages came. See connectors/mqtt/README.md.
 */
export class MqttConnector implements Connector, AckSender, SessionHolder {
  readonly clientId: string
  private readonly connection: string
  private ctx: ConnectorContext | undefined
  private conn: MqttConnection | undefined
  /** QoS 1 messages of the current network connection, in receive order. */
  private queue: AckQueue | undefined
  /** Unacknowledged messages of earlier connections, by packet id, waiting for their redelivery. */
  private readonly carried = new Map<number, InflightMessage>()
  /** Events read in this tick, handed to the router together. */
  private pending: { events: TriggerEvent[]; msgs: Array<InflightMessage | undefined> } | undefined
  /** Events handed to the router whose outcomes have not resolved. */
  private open = 0
  private idle: Array<() => void> = []
  /** mqtt.js's callback, held while reading must wait (see mustWait): no packet is read meanwhile. */
  private held: (() => void) | undefined
  private subscribed = false
  private previous: { clientId: string; filter: string } | undefined
  private starting: { resolve(): void; reject(e: unknown): void } | undefined
  private stopping = false
  private stopPromise: Promise<void> | undefined
  private unflow: (() => void) | undefined
  private seq = 0
  private readonly boot = Date.now().toString(36)

  constructor(private readonly spec: TriggerSpec<MqttTriggerOptions, MqttConnectionOptions>) {
    this.connection = spec.connectionName ?? spec.trigger.connection
    this.clientId = spec.trigger.clientId ?? defaultClientId(this.connection, spec.functionName, spec.trigger.share, spec.instanceId)
  }

  /** The persistent session this trigger keeps at the broker (recorded in the cluster registry for takeover). */
  sessions(): SourceSession[] {
    const conn = this.spec.connection
    if (!conn || conn.url === 'embedded' || this.spec.trigger.qos === 0) return []
    return [
      { clientId: this.clientId, filter: this.filter, shared: this.spec.trigger.share !== undefined, detail: { protocolVersion: protocolVersionOf(conn) } },
    ]
  }

  private get filter(): string {
    return subscriptionFilter(this.spec.trigger)
  }

  async start(ctx: ConnectorContext): Promise<void> {
    this.ctx = ctx
    const { trigger: t, connection: conn } = this.spec
    const context = { function: this.spec.functionName, connection: this.connection }
    if (!conn) throw new SluiceError('SLUICE_ERR_CONNECTOR_START', `mqtt connection ${this.connection} is not configured`, { retriable: false, context })
    if (t.qos === 2) throw new SluiceError('SLUICE_ERR_CONFIG_QOS', 'qos: 2 is not supported (see connectors/mqtt/README.md)', { context })
    const v5 = protocolVersionOf(conn) === 5
    this.previous = await ctx.state.get<{ clientId: string; filter: string }>('subscription')
    const started = new Promise<void>((resolve, reject) => (this.starting = { resolve, reject }))
    // Rejected before it is awaited (stop() during open()) must not count as unhandled.
    started.catch(() => undefined)
    this.unflow = ctx.flow.onChange((paused) => {
      if (!paused) this.release()
    })
    this.conn = new MqttConnection(
      this.connection,
      conn,
      {
        clientId: this.clientId,
        clean: false,
        ...(v5 ? { properties: { sessionExpiryInterval: t.sessionExpiryInterval, receiveMaximum: t.maxInflight } } : {}),
      },
      { onConnect: (c) => this.onConnect(c), onDown: (e, ms) => this.onDown(e, ms) },
      ctx.log,
    )
    ctx.setHealth(false, `connecting to ${conn.url === 'embedded' ? 'the embedded broker' : displayUrl(conn.url)}`)
    let timer: NodeJS.Timeout | undefined
    try {
      const client = await this.conn.open()
      client.handleMessage = (packet, cb) => this.onMessage(client, packet, cb)
      timer = setTimeout(() => {
        const why =
          this.conn?.lastError === undefined ? 'no answer' : mqttError('SLUICE_ERR_CONNECTOR_START', 'last error', this.conn.lastError, context).message
        this.starting?.reject(
          new SluiceError(
            'SLUICE_ERR_CONNECTOR_START',
            `could not connect to ${displayUrl(this.conn?.url ?? conn.url)} and subscribe to ${this.filter} within ${conn.startTimeoutMs} ms (${why})`,
            { context },
          ),
        )
      }, conn.startTimeoutMs)
      await started
    } catch (e) {
      await this.conn.end(true)
      throw e
    } finally {
      clearTimeout(timer)
      this.starting = undefined
    }
  }

  private onConnect(connack: IConnackPacket): void {
    const client = this.conn?.client
    if (!client || this.stopping) return
    const log = this.ctx?.log
    if (!connack.sessionPresent) {
      // Nothing of the earlier connections will be resent: their unacked messages are gone.
      this.carried.clear()
      if (this.subscribed)
        log?.warn(
          { clientId: this.clientId },
          'the broker had no session for this client: messages published while disconnected may be lost (check its persistence and session expiry)',
        )
    } else if (this.subscribed) {
      this.up()
      return
    }
    const filter = this.filter
    const prev = this.previous
    if (!this.subscribed && prev && prev.clientId === this.clientId && prev.filter !== filter) {
      // The configuration changed: the session must not keep feeding the old filter.
      client.unsubscribe(prev.filter)
      log?.info({ old: prev.filter, filter }, 'mqtt subscription changed; unsubscribed the old filter')
    }
    const v5 = this.conn?.protocolVersion === 5
    client.subscribe(filter, { qos: this.spec.trigger.qos as 0 | 1, ...(v5 ? { rh: 1 } : {}) }, (err, granted) => {
      // A refusal comes as an error carrying the SUBACK (MQTT 5 reason / 3.1.1 0x80), or as a granted 0x80.
      const suback = (err as { packet?: { granted?: unknown[] } } | null)?.packet?.granted
      const refused = [...(suback ?? []), ...(granted ?? []).map((g) => g.qos)].find((c): c is number => typeof c === 'number' && (c & 0x80) !== 0)
      if (!err && refused === undefined) {
        this.subscribed = true
        this.previous = { clientId: this.clientId, filter }
        this.ctx?.state.set('subscription', this.previous).catch((e: unknown) => log?.warn({ err: (e as Error).message }, 'cannot save the mqtt subscription'))
        this.up()
        return
      }
      // Cut short by a lost connection: subscribed again on the next one.
      if (refused === undefined) return
      const e = Object.assign(new Error(`the broker refused the subscription: reason ${refused}`), { code: refused })
      const mapped = mqttError('SLUICE_ERR_CONNECTOR_START', `could not subscribe to ${filter}`, e, {
        function: this.spec.functionName,
        connection: this.connection,
      })
      log?.error({ err: mapped.message }, 'mqtt subscription refused')
      this.ctx?.setHealth(false, mapped.message)
      this.starting?.reject(mapped)
    })
  }

  private up(): void {
    this.ctx?.setHealth(true)
    this.starting?.resolve()
  }

  private onDown(err: unknown, retryInMs: number | undefined): void {
    const q = this.queue
    this.queue = undefined
    if (q) for (const m of q.close()) this.carried.set(m.messageId, m)
    // The closed connection's packet loop is done: let it end (mqtt.js drops what it had parsed).
    const held = this.held
    this.held = undefined
    held?.()
    if (this.stopping || retryInMs === undefined) return
    const why = err instanceof Error ? err.message : 'connection closed'
    const detail = `reconnecting to ${displayUrl(this.conn?.url ?? '')} in ${retryInMs} ms: ${why}`
    this.ctx?.setHealth(false, detail)
    this.ctx?.log.warn({ retryInMs, err: why }, 'mqtt connection lost; reconnecting')
    if (this.starting && isFatal(err))
      this.starting.reject(mqttError('SLUICE_ERR_CONNECTOR_START', `the broker refused the connection`, err, { connection: this.connection }))
  }

  /** mqtt.js calls this for every PUBLISH, one at a time; the next one comes after `cb`. */
  private onMessage(client: MqttClient, packet: IPublishPacket, cb: (err?: Error) => void): void {
    const qos = packet.qos
    const answer = qos > 0 ? DEFERRED : undefined
    // Stopping, or a packet still parsed from a connection that closed: not taken, not acked (the broker keeps it).
    if (this.stopping || !client.connected || this.queue?.closed) return cb(answer)
    let msg: InflightMessage | undefined
    if (qos > 0) {
      const id = packet.messageId as number
      const payload = payloadOf(packet)
      msg = this.queueFor(client.stream).add(id, packet.topic, payload)
      const earlier = this.carried.get(id)
      if (earlier) {
        this.carried.delete(id)
        if (packet.dup && earlier.matches(id, packet.topic, payload)) {
          // The redelivery of a message received before a reconnect: its outcome answers both.
          if (earlier.state === State.Pending) earlier.follower = msg
          else msg.queue.settle(msg, earlier.state !== State.Skip)
          return cb(answer)
        }
      }
    }
    const event = toEvent(packet, `${this.clientId}-${packet.messageId ?? 0}-${this.boot}.${++this.seq}`, this.connection)
    if (!this.pending) {
      this.pending = { events: [], msgs: [] }
      setImmediate(() => this.deliverPending())
    }
    this.pending.events.push(event)
    this.pending.msgs.push(msg)
    if (this.pending.events.length >= MAX_GROUP) this.deliverPending()
    if (this.mustWait()) {
      // Hold mqtt.js's packet loop: the socket is not read until the router (flow.onChange) or the
      // PUBACKs (advanced) catch up.
      this.held = () => cb(answer)
    } else cb(answer)
  }

  /**
   * Reading stops while the router applies back-pressure, or while `maxInflight` messages wait for
   * their PUBACK: brokers bound the unacked window too, but Mosquitto 2.0.11 ignores its limit for
   * the backlog of a resumed session and sends all of it at once.
   */
  private mustWait(): boolean {
    if (this.stopping) return false
    return (this.ctx?.flow.paused ?? false) || (this.queue?.size ?? 0) >= this.spec.trigger.maxInflight
  }

  private release(): void {
    const held = this.held
    if (!held || this.mustWait()) return
    this.held = undefined
    held()
  }

  private queueFor(stream: unknown): AckQueue {
    const old = this.queue
    if (old && old.stream === stream) return old
    if (old) for (const m of old.close()) this.carried.set(m.messageId, m)
    const q = new AckQueue(stream, this)
    this.queue = q
    return q
  }

  private deliverPending(): void {
    const p = this.pending
    const ctx = this.ctx
    this.pending = undefined
    if (!p || !ctx) return
    const n = p.events.length
    this.open += n
    const settle = (outcomes: Outcome[] | undefined) => {
      settleAll(p.msgs, (i) => outcomes !== undefined && outcomes[i]?.status !== 'aborted')
      this.open -= n
      if (this.open === 0) for (const f of this.idle.splice(0)) f()
    }
    try {
      ctx.deliver(p.events).then(settle, (e: unknown) => {
        ctx.log.error({ err: (e as Error).message }, 'mqtt: the router did not take the events; they stay at the broker')
        settle(undefined)
      })
    } catch (e) {
      ctx.log.error({ err: (e as Error).message }, 'mqtt: the router did not take the events; they stay at the broker')
      settle(undefined)
    }
  }

  // ---- AckSender: PUBACKs only ever go to the connection the message came on ----

  canSend(queue: AckQueue): boolean {
    const c = this.conn?.client
    return c?.connected === true && c.stream === queue.stream
  }

  send(_queue: AckQueue, messageIds: number[]): void {
    const c = this.conn?.client
    if (!c) return
    // A run of PUBACKs as one buffer, one socket write (mqtt.js would write each in 2-5 pieces).
    c.stream.write(pubackBytes(messageIds, c.options.protocolVersion))
  }

  advanced(queue: AckQueue): void {
    if (queue === this.queue) this.release()
  }

  /**
   * Graceful: takes no more messages, waits for the in-flight outcomes (the router aborts queued
   * ones) so their PUBACKs go out, then disconnects. The session and its subscription stay at the
   * broker. `force`: disconnects at once; unacked messages are redelivered later. Idempotent.
   */
  stop(opts: { force?: boolean } = {}): Promise<void> {
    this.stopPromise ??= this.doStop(opts.force === true)
    return this.stopPromise
  }

  private async doStop(force: boolean): Promise<void> {
    this.stopping = true
    this.unflow?.()
    this.starting?.reject(new SluiceError('SLUICE_ERR_CONNECTOR_START', 'stopped while starting', { context: { connection: this.connection } }))
    // Read but not handed over yet: not taken, so not acked; the broker sends them again.
    const p = this.pending
    this.pending = undefined
    for (const m of p?.msgs ?? []) m?.queue.settle(m, false)
    const held = this.held
    this.held = undefined
    held?.()
    if (!force && this.open > 0) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([new Promise<void>((r) => this.idle.push(r)), new Promise<void>((r) => (timer = setTimeout(r, STOP_DRAIN_MS)))])
      clearTimeout(timer)
    }
    await this.conn?.end(force)
    this.carried.clear()
  }
}
