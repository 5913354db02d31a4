/**
 * Session takeover: a live gateway instance drains the persistent session of a dead one.
 *
 * With `share`, the broker keeps routing a share of the messages to a dead member's session until
 * that session expires (Mosquitto 2.0.11: every other message with two members). The takeover
 * connects under the dead instance's client id, runs every queued message through the same
 * function pipeline with the same ack rules (PUBACK once the outcome is durable), then ends the
 * session (MQTT 5: DISCONNECT with session expiry 0; 3.1.1: a clean reconnect) so the broker
 * routes only to live members.
 *
 * Mosquitto 2.0.11 does not send a resumed session's queued messages on reconnect; it sends them
 * when a new message is queued for that client. So the takeover subscribes to a probe topic of its
 * own and publishes to it: the probe comes back after everything queued before it (a client's
 * queue is first in, first out). Once the probe is back and every message before it is
 * acknowledged, the shared subscription is removed (Mosquitto drops what is still queued for a
 * removed subscription, hence only now, with nothing queued), and a second probe confirms that
 * whatever was in flight has arrived. See connectors/mqtt/README.md (Session takeover).
 */
import { randomUUID } from 'node:crypto'
import { connect, type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt'
import {
  SluiceError,
  type ConnectorContext,
  type Outcome,
  type SourceSession,
  type TakeoverReport,
  type TriggerEvent,
  type TriggerSpec,
} from '../../src/sdk/index.js'
import { AckQueue, pubackBytes, settleAll, type AckSender, type InflightMessage } from './acks.js'
import { displayUrl, mqttError, protocolVersionOf } from './connection.js'
import { payloadOf, toEvent } from './message.js'
import type { MqttConnectionOptions, MqttTriggerOptions } from './options.js'

/** Longest wait for one step (connect, subscribe, a probe's return with its predecessors acked). */
const STEP_TIMEOUT_MS = 60_000
const DEFERRED = new Error('sluice: PUBACK deferred until the outcome is durable')

/** Drains `session` (a dead instance's) and ends it. See ConnectorDefinition.takeOverSession. */
export async function takeOverSession(
  spec: TriggerSpec<MqttTriggerOptions, MqttConnectionOptions>,
  session: SourceSession,
  ctx: ConnectorContext,
): Promise<TakeoverReport> {
  const conn = spec.connection
  const connection = spec.connectionName ?? spec.trigger.connection
  const context = { function: spec.functionName, connection, clientId: session.clientId }
  if (!conn) throw new SluiceError('SLUICE_ERR_CLUSTER_TAKEOVER_FAILED', `mqtt connection ${connection} is not configured`, { retriable: false, context })
  // The embedded broker lives inside one gateway process: its sessions died with it.
  if (conn.url === 'embedded') return { sessionPresent: false, messages: 0 }
  const drain = new SessionDrain(spec, conn, session, ctx, connection)
  try {
    return await drain.run()
  } catch (e) {
    throw mqttError('SLUICE_ERR_CLUSTER_TAKEOVER_FAILED', `taking over mqtt session ${session.clientId} at ${displayUrl(conn.url)} failed`, e, context)
  } finally {
    drain.close()
  }
}

class SessionDrain implements AckSender {
  private client: MqttClient | undefined
  private queue: AckQueue | undefined
  private readonly v5: boolean
  private readonly probeTopic: string
  private probesSeen = 0
  private messages = 0
  private open = 0
  private seq = 0
  private readonly boot = Date.now().toString(36)
  private held: (() => void) | undefined
  private pending: { events: TriggerEvent[]; msgs: InflightMessage[] } | undefined
  private waiters: Array<() => void> = []
  private lost: Error | undefined
  private unflow: (() => void) | undefined

  constructor(
    private readonly spec: TriggerSpec<MqttTriggerOptions, MqttConnectionOptions>,
    private readonly conn: MqttConnectionOptions,
    private readonly session: SourceSession,
    private readonly ctx: ConnectorContext,
    private readonly connection: string,
  ) {
    this.v5 = protocolVersionOf(conn) === 5
    this.probeTopic = `sluice/takeover/${session.clientId.replace(/[+#/\u0000]/g, '_')}/${randomUUID()}`
  }

  async run(): Promise<TakeoverReport> {
    const log = this.ctx.log.child({ clientId: this.session.clientId, takeover: true })
    // The handler is set before the CONNACK: the broker sends the session's in-flight messages
    // right after it, and mqtt.js's default handler would acknowledge them unprocessed.
    const { client, sessionPresent } = await this.connect(
      {
        clean: false,
        ...(this.v5 ? { properties: { sessionExpiryInterval: this.spec.trigger.sessionExpiryInterval, receiveMaximum: this.spec.trigger.maxInflight } } : {}),
      },
      (c) => {
        this.client = c
        c.handleMessage = (packet, cb) => this.onMessage(packet, cb)
      },
    )
    if (sessionPresent) {
      this.unflow = this.ctx.flow.onChange((paused) => {
        if (!paused) this.release()
      })
      client.on('close', () => {
        this.lost ??= new Error('the connection closed during the takeover (did the instance come back?)')
        this.wake()
      })
      await this.step(`subscribe to ${this.probeTopic}`, (done) => client.subscribe(this.probeTopic, { qos: 1 }, (err) => done(err ?? undefined)))
      // 1. Everything queued before the probe arrives and is acknowledged.
      await this.probe(1)
      // 2. No new messages for this session; then whatever was already in flight.
      await this.step(`unsubscribe ${this.session.filter}`, (done) =>
        client.unsubscribe([this.session.filter, this.probeTopic], (err) => done(err ?? undefined)),
      )
      await this.probe(2, false)
      log.info({ messages: this.messages }, 'mqtt session of a dead instance drained')
    }
    await this.endSession(client)
    return { sessionPresent, messages: this.messages }
  }

  private connect(opts: IClientOptions, created?: (client: MqttClient) => void): Promise<{ client: MqttClient; sessionPresent: boolean }> {
    const c = this.conn
    const client = connect(c.url, {
      protocolVersion: this.v5 ? 5 : 4,
      keepalive: c.keepalive,
      connectTimeout: c.connectTimeoutMs,
      reconnectPeriod: 0,
      resubscribe: false,
      clientId: this.session.clientId,
      ...(c.username !== undefined ? { username: c.username } : {}),
      ...(c.password !== undefined ? { password: c.password } : {}),
      ...opts,
    })
    created?.(client)
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => fail(new Error(`no CONNACK within ${c.connectTimeoutMs} ms`)), c.connectTimeoutMs + 1000)
      const fail = (e: Error) => {
        clearTimeout(t)
        client.end(true)
        reject(e)
      }
      const closed = () => fail(new Error('the broker closed the connection'))
      client.once('error', fail)
      client.once('close', closed)
      client.once('connect', (connack) => {
        clearTimeout(t)
        client.removeListener('error', fail)
        client.removeListener('close', closed)
        client.on('error', () => undefined)
        resolve({ client, sessionPresent: connack.sessionPresent })
      })
    })
  }

  /** Publishes probe `n` to this session and waits for it and for every message before it to be acknowledged. */
  private async probe(n: number, viaSubscription = true): Promise<void> {
    const client = this.client as MqttClient
    if (viaSubscription) {
      await this.step('publish the probe', (done) => client.publish(this.probeTopic, String(n), { qos: 1 }, (err) => done(err ?? undefined)))
      await this.until(`probe ${n}`, () => this.probesSeen >= n && this.settled())
    } else {
      // Unsubscribed from the probe too: a round trip (PINGREQ is not ordered with PUBLISH, a
      // QoS 1 publish to a topic nobody reads is) proves earlier packets were read.
      await this.step('flush', (done) => client.publish(`${this.probeTopic}/flush`, '', { qos: 1 }, (err) => done(err ?? undefined)))
      await this.until('in-flight messages', () => this.settled())
    }
  }

  private settled(): boolean {
    return this.pending === undefined && this.open === 0 && (this.queue?.size ?? 0) === 0
  }

  private onMessage(packet: IPublishPacket, cb: (err?: Error) => void): void {
    const client = this.client as MqttClient
    this.queue ??= new AckQueue(client.stream, this)
    const q = this.queue
    const next = () => cb(packet.qos > 0 ? DEFERRED : undefined)
    if (packet.topic === this.probeTopic) {
      if (packet.qos > 0) q.settle(q.add(packet.messageId as number, packet.topic, payloadOf(packet)), true)
      this.probesSeen++
      this.wake()
      return next()
    }
    const msg = packet.qos > 0 ? q.add(packet.messageId as number, packet.topic, payloadOf(packet)) : undefined
    this.messages++
    // Event ids as the trigger makes them (<client id>-<packet id>-<start, base 36>.<n>), started now.
    const event = toEvent(packet, `${this.session.clientId}-${packet.messageId ?? 0}-${this.boot}.${++this.seq}`, this.connection)
    if (!this.pending) {
      this.pending = { events: [], msgs: [] }
      setImmediate(() => this.deliverPending())
    }
    this.pending.events.push(event)
    if (msg) this.pending.msgs.push(msg)
    if (this.ctx.flow.paused || q.size >= this.spec.trigger.maxInflight) this.held = next
    else next()
  }

  private deliverPending(): void {
    const p = this.pending
    this.pending = undefined
    if (!p) return
    this.open += p.events.length
    const settle = (outcomes: Outcome[] | undefined) => {
      // Only durable outcomes are acknowledged: an aborted or refused event stays in the session.
      settleAll(p.msgs, (i) => outcomes !== undefined && outcomes[i]?.status !== 'aborted')
      this.open -= p.events.length
      this.wake()
    }
    let delivered: Promise<Outcome[]>
    try {
      delivered = this.ctx.deliver(p.events)
    } catch (e) {
      delivered = Promise.reject(e)
    }
    delivered.then(settle, (e: unknown) => {
      this.ctx.log.error(
        { err: (e as Error).message, clientId: this.session.clientId },
        'mqtt takeover: the router did not take the events; they stay in the session',
      )
      this.lost ??= new Error('the router did not take the events')
      settle(undefined)
    })
  }

  private release(): void {
    const held = this.held
    if (!held || this.ctx.flow.paused || (this.queue?.size ?? 0) >= this.spec.trigger.maxInflight) return
    this.held = undefined
    held()
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w()
  }

  private async until(what: string, cond: () => boolean): Promise<void> {
    const end = Date.now() + STEP_TIMEOUT_MS
    while (!cond()) {
      if (this.lost) throw this.lost
      if (this.ctx.signal.aborted) throw new Error('the gateway is stopping')
      if (Date.now() > end) throw new Error(`${what} did not arrive within ${STEP_TIMEOUT_MS} ms`)
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200)
        this.waiters.push(() => {
          clearTimeout(t)
          r()
        })
      })
    }
    if (this.lost) throw this.lost
  }

  private step(what: string, run: (done: (err?: Error) => void) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${what}: no answer within ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS)
      run((err) => {
        clearTimeout(t)
        if (err) reject(err)
        else resolve()
      })
    })
  }

  /** Ends the session at the broker, so it stops queueing for this client id. */
  private async endSession(client: MqttClient): Promise<void> {
    if (this.v5) {
      await new Promise<void>((r) => client.end(false, { reasonCode: 0, properties: { sessionExpiryInterval: 0 } }, () => r()))
      return
    }
    // MQTT 3.1.1 has no session expiry: a clean connection discards the session.
    await new Promise<void>((r) => client.end(false, {}, () => r()))
    const { client: clean } = await this.connect({ clean: true })
    await new Promise<void>((r) => clean.end(false, {}, () => r()))
  }

  // ---- AckSender ----
  canSend(queue: AckQueue): boolean {
    const c = this.client
    return c?.connected === true && c.stream === queue.stream
  }

  send(_queue: AckQueue, messageIds: number[]): void {
    const c = this.client
    if (c) c.stream.write(pubackBytes(messageIds, c.options.protocolVersion))
  }

  advanced(): void {
    this.release()
    this.wake()
  }

  close(): void {
    this.unflow?.()
    this.held?.()
    this.held = undefined
    if (this.client && !this.client.disconnected) this.client.end(true)
  }
}
