import { randomBytes } from 'node:crypto'
import type { MqttClient } from 'mqtt'
import { SluiceError, type Logger, type OutputBinding } from '../../src/sdk/index.js'
import { displayUrl, MqttConnection, mqttError } from './connection.js'
import { OUTPUT_DEFAULTS, type MqttConnectionOptions, type MqttOutputOptions } from './options.js'

/**
 * The publisher client of one connection, shared by every output on it (refcounted): a clean
 * session with a random client id (it subscribes to nothing, so it needs no persistent session).
 */
class Publisher {
  refs = 0
  readonly conn: MqttConnection
  private readonly opening: Promise<MqttClient>
  private everUp = false
  private waiters = new Set<() => void>()
  private closing: Promise<void> | undefined

  constructor(
    readonly name: string,
    options: MqttConnectionOptions,
    private readonly log: Logger,
  ) {
    this.conn = new MqttConnection(
      name,
      options,
      { clientId: `sluice-out-${name}-${randomBytes(4).toString('hex')}`, clean: true },
      {
        onConnect: () => {
          this.everUp = true
          for (const w of this.waiters) w()
        },
        onDown: (err, retryInMs) => {
          // Unconfirmed publishes fail now (the router retries them) instead of being resent by
          // mqtt.js on the next connection; removeOutgoingMessage calls their callbacks with an error.
          const client = this.conn.client
          if (client) for (const id of Object.keys(client.outgoing)) client.removeOutgoingMessage(Number(id))
          for (const w of this.waiters) w()
          if (retryInMs !== undefined)
            this.log.warn({ retryInMs, err: err instanceof Error ? err.message : undefined }, 'mqtt output connection lost; reconnecting')
        },
      },
      log,
    )
    this.opening = this.conn.open()
    this.opening.catch((e: unknown) => log.error({ err: (e as Error).message }, 'mqtt output connection did not open'))
  }

  /**
   * The connected client. Waits while the first connection attempt is under way; once the
   * connection has been up and is lost, fails at once (the router retries the invocation later).
   */
  async client(timeoutMs: number): Promise<MqttClient> {
    const client = await this.opening
    if (client.connected) return client
    if (!this.everUp && this.conn.lastError === undefined) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t)
          this.waiters.delete(done)
          resolve()
        }
        const t = setTimeout(done, timeoutMs)
        this.waiters.add(done)
      })
      if (client.connected) return client
    }
    throw new SluiceError(
      'SLUICE_ERR_OUTPUT_FAILED',
      `not connected to ${displayUrl(this.conn.url)}${this.conn.lastError instanceof Error ? `: ${this.conn.lastError.message}` : ''}`,
      {
        context: { connection: this.name },
      },
    )
  }

  close(): Promise<void> {
    this.closing ??= this.conn.end(false)
    return this.closing
  }
}

/** Publishers by connection: the key is the connection's options object, shared by all its users. */
const publishers = new Map<object, Publisher>()

function acquire(name: string, options: MqttConnectionOptions, log: Logger): Publisher {
  let p = publishers.get(options)
  if (!p) {
    p = new Publisher(name, options, log.child({ connection: name }))
    publishers.set(options, p)
  }
  p.refs++
  return p
}

async function release(options: MqttConnectionOptions, p: Publisher): Promise<void> {
  if (--p.refs > 0) return
  if (publishers.get(options) === p) publishers.delete(options)
  await p.close()
}

/**
 * Output binding: each value is published as JSON to `topic`; `publish` resolves once the broker
 * confirmed every message (PUBACK for QoS 1, PUBCOMP for QoS 2) and rejects with
 * SLUICE_ERR_OUTPUT_FAILED otherwise, so the router fails the invocation and retries it.
 */
export class MqttOutput implements OutputBinding {
  private readonly publisher: Publisher
  private closed: Promise<void> | undefined

  constructor(
    private readonly spec: {
      functionName: string
      outputName: string
      output: MqttOutputOptions
      connectionName: string
      connection: MqttConnectionOptions
      log: Logger
    },
  ) {
    this.publisher = acquire(spec.connectionName, spec.connection, spec.log)
  }

  private get options(): Required<MqttOutputOptions> {
    return { ...OUTPUT_DEFAULTS, ...this.spec.output }
  }

  async publish(values: unknown[]): Promise<void> {
    const o = this.options
    const context = { function: this.spec.functionName, output: this.spec.outputName, connection: this.spec.connectionName }
    if (this.closed) throw new SluiceError('SLUICE_ERR_OUTPUT_FAILED', `output ${this.spec.outputName} is closed`, { context })
    let client: MqttClient
    try {
      client = await this.publisher.client(o.timeoutMs)
    } catch (e) {
      throw mqttError('SLUICE_ERR_OUTPUT_FAILED', `output ${this.spec.outputName}: cannot publish to ${o.topic}`, e, context)
    }
    await Promise.all(values.map((v) => this.publishOne(client, JSON.stringify(v ?? null), context)))
  }

  private publishOne(client: MqttClient, payload: string, context: Record<string, unknown>): Promise<void> {
    const o = this.options
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new SluiceError(
            'SLUICE_ERR_OUTPUT_FAILED',
            `output ${this.spec.outputName}: the broker did not confirm a message to ${o.topic} within ${o.timeoutMs} ms`,
            { context },
          ),
        )
      }, o.timeoutMs)
      client.publish(o.topic, payload, { qos: o.qos as 0 | 1 | 2, retain: o.retain }, (err) => {
        clearTimeout(timer)
        if (err) reject(mqttError('SLUICE_ERR_OUTPUT_FAILED', `output ${this.spec.outputName}: publish to ${o.topic} was not confirmed`, err, context))
        else resolve()
      })
    })
  }

  /** Gives the connection's publisher back; the last output on it disconnects it. Idempotent. */
  close(): Promise<void> {
    this.closed ??= release(this.spec.connection, this.publisher)
    return this.closed
  }
}
