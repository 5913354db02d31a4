import { connect, type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt'
import { backoffDelay, SluiceError, type ErrorCode, type Logger } from '../../src/sdk/index.js'
import { acquireEmbedded, type EmbeddedLease } from './embedded.js'
import { EMBEDDED_DEFAULT_PORT, RECONNECT_DEFAULTS, type MqttConnectionOptions } from './options.js'

/**
 * CONNACK / SUBACK reason codes that trying again cannot fix (bad credentials, refused client id,
 * unsupported protocol, not authorized, banned...). MQTT 3.1.1 return codes 1, 2, 4, 5 and their
 * MQTT 5 counterparts.
 */
const FATAL_CODES = new Set([1, 2, 4, 5, 128, 129, 130, 132, 133, 134, 135, 138, 140, 143, 158, 162])
/** Longest wait for a graceful DISCONNECT before the socket is simply closed. */
const END_TIMEOUT_MS = 5000

/** The URL without credentials, for logs, health and error messages. */
const noop = (): void => undefined

export function displayUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, '$1')
}

/** The reason code of an mqtt.js error (CONNACK/SUBACK/PUBACK), if it carries one. */
export function reasonCode(err: unknown): number | undefined {
  const c = (err as { code?: unknown } | null)?.code
  return typeof c === 'number' ? c : undefined
}

/** True when an mqtt.js error cannot be fixed by trying again. */
export function isFatal(err: unknown): boolean {
  const c = reasonCode(err)
  return c !== undefined && FATAL_CODES.has(c)
}

/** Maps an mqtt.js (or socket) error to a coded SluiceError at the connector boundary. */
export function mqttError(code: ErrorCode, what: string, err: unknown, context: Record<string, unknown>): SluiceError {
  const detail = err instanceof Error ? err.message : String(err)
  const errno = (err as { code?: unknown } | null)?.code
  const suffix = typeof errno === 'string' && !detail.includes(errno) ? ` (${errno})` : ''
  return new SluiceError(code, `${what}: ${detail}${suffix}`, { cause: err, context, ...(isFatal(err) ? { retriable: false } : {}) })
}

/** The MQTT version a connection speaks: as configured, else 5 (4 for the embedded broker). */
export function protocolVersionOf(conn: MqttConnectionOptions): 4 | 5 {
  return conn.protocolVersion ?? (conn.url === 'embedded' ? 4 : 5)
}

export interface ConnectionEvents {
  /** Every CONNACK with return code 0. */
  onConnect(connack: IConnackPacket): void
  /** The network connection closed (or an attempt failed); `retryInMs` is when the next attempt starts. */
  onDown(lastError: unknown, retryInMs: number | undefined): void
}

/**
 * One mqtt.js client with sluice's reconnect policy: exponential backoff with jitter between
 * attempts (mqtt.js's own reconnect is a fixed interval, so it is turned off: reconnectPeriod 0),
 * an embedded broker resolved (and refcounted) for `url: embedded`, and every client error kept
 * as `lastError` instead of thrown.
 */
export class MqttConnection {
  client: MqttClient | undefined
  lastError: unknown
  /** Attempts since the last successful connection. */
  private attempt = 0
  private timer: NodeJS.Timeout | undefined
  private embedded: EmbeddedLease | undefined
  private ended = false
  private endPromise: Promise<void> | undefined
  url = ''

  constructor(
    private readonly name: string,
    private readonly conn: MqttConnectionOptions,
    private readonly clientOptions: IClientOptions,
    private readonly events: ConnectionEvents,
    private readonly log: Logger,
  ) {}

  get protocolVersion(): 4 | 5 {
    return protocolVersionOf(this.conn)
  }

  /** Starts connecting (resolving an embedded broker first). Rejects only when the URL cannot be resolved. */
  async open(): Promise<MqttClient> {
    const c = this.conn
    if (c.url === 'embedded') {
      if (c.protocolVersion === 5)
        throw new SluiceError(
          'SLUICE_ERR_CONNECTOR_START',
          `connection ${this.name}: the embedded broker speaks MQTT 3.1.1 only; set protocolVersion: 4 or leave it out`,
          { retriable: false, context: { connection: this.name } },
        )
      try {
        this.embedded = await acquireEmbedded(c, { host: c.host ?? '127.0.0.1', port: c.port ?? EMBEDDED_DEFAULT_PORT }, this.log)
      } catch (e) {
        throw mqttError('SLUICE_ERR_CONNECTOR_START', `connection ${this.name}: the embedded broker did not start`, e, { connection: this.name })
      }
      this.url = this.embedded.url
    } else {
      if (c.port !== undefined || c.host !== undefined) {
        throw new SluiceError('SLUICE_ERR_CONNECTOR_START', `connection ${this.name}: port and host apply to url: embedded only; put them in the url`, {
          retriable: false,
          context: { connection: this.name },
        })
      }
      this.url = c.url
    }
    if (this.ended) {
      // end() ran while the embedded broker started: give it back here.
      await this.embedded?.release()
      this.embedded = undefined
      throw new SluiceError('SLUICE_ERR_CONNECTOR_START', `connection ${this.name}: stopped while starting`, { context: { connection: this.name } })
    }
    const client = connect(this.url, {
      protocolVersion: this.protocolVersion,
      keepalive: c.keepalive,
      connectTimeout: c.connectTimeoutMs,
      reconnectPeriod: 0,
      resubscribe: false,
      // mqtt.js formats a debug line for every packet; even disabled, that was ~1.4 us a message.
      // DEBUG=mqttjs* still turns it on.
      ...(process.env.DEBUG?.includes('mqttjs') ? {} : { log: noop }),
      ...(c.username !== undefined ? { username: c.username } : {}),
      ...(c.password !== undefined ? { password: c.password } : {}),
      ...this.clientOptions,
    })
    this.client = client
    client.on('error', (err) => {
      this.lastError = err
      this.log.debug({ err: err.message, url: displayUrl(this.url) }, 'mqtt client error')
    })
    client.on('connect', (connack) => {
      this.attempt = 0
      this.lastError = undefined
      this.events.onConnect(connack)
    })
    client.on('close', () => this.onClose())
    client.on('disconnect', (packet) => {
      // MQTT 5: the broker says why it closes the connection (142: another client took the session over).
      const why = `the broker disconnected: reason ${packet.reasonCode ?? 0}${packet.properties?.reasonString ? ` (${packet.properties.reasonString})` : ''}`
      this.lastError = Object.assign(new Error(why), { code: packet.reasonCode ?? 0 })
      this.log.warn({ reasonCode: packet.reasonCode, url: displayUrl(this.url) }, 'mqtt broker sent DISCONNECT')
    })
    return client
  }

  private onClose(): void {
    if (this.ended) {
      this.events.onDown(this.lastError, undefined)
      return
    }
    if (this.timer) return
    this.attempt++
    const policy = { backoff: 'exponential' as const, ...RECONNECT_DEFAULTS, ...this.conn.reconnect }
    const delay = backoffDelay(policy, this.attempt)
    this.events.onDown(this.lastError, delay)
    this.timer = setTimeout(() => {
      this.timer = undefined
      if (!this.ended) this.client?.reconnect()
    }, delay)
  }

  /** Closes the client. Graceful: DISCONNECT after what is written (the session stays at the broker). Idempotent. */
  end(force: boolean): Promise<void> {
    this.endPromise ??= this.doEnd(force)
    return this.endPromise
  }

  private async doEnd(force: boolean): Promise<void> {
    this.ended = true
    clearTimeout(this.timer)
    this.timer = undefined
    const client = this.client
    if (client) {
      await new Promise<void>((resolve) => {
        // A graceful end that cannot finish (the broker stopped answering) becomes a forced one.
        const t = force
          ? undefined
          : setTimeout(() => {
              client.end(true)
              resolve()
            }, END_TIMEOUT_MS)
        client.end(force, {}, () => {
          clearTimeout(t)
          resolve()
        })
      })
    }
    const e = this.embedded
    this.embedded = undefined
    await e?.release()
  }
}
