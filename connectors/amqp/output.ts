import { randomBytes } from 'node:crypto'
import type { ChannelModel, ConfirmChannel } from 'amqplib'
import { SluiceError, type Logger, type OutputBinding } from '../../src/sdk/index.js'
import { describe, openConnection, redact, toSluiceError } from './connection.js'
import { connectionDefaults, outputDefaults, type AmqpConnectionOptions, type AmqpOutputOptions } from './options.js'

interface Open {
  model: ChannelModel
  ch: ConfirmChannel
  /** The error the broker closed the channel with (404 no exchange...), for the rejections. */
  lastError: Error | undefined
}

export interface AmqpOutputSpec {
  functionName: string
  outputName: string
  output: AmqpOutputOptions
  connectionName?: string
  connection?: AmqpConnectionOptions
  log: Logger
}

/**
 * Output binding: publishes each value as a persistent JSON message on a confirm channel and
 * resolves once the broker confirmed every one. A nack, a closed channel (such as publishing to an
 * exchange that does not exist), with `mandatory` a message no queue took, or no confirm within
 * confirmTimeoutMs (a broker under a resource alarm blocks publishers) rejects with
 * SLUICE_ERR_OUTPUT_FAILED: the router then retries the input instead of acknowledging it. The
 * connection opens on the first publish and again on the next publish after it was lost.
 */
export class AmqpOutput implements OutputBinding {
  private readonly options: Required<AmqpOutputOptions>
  private readonly conn: Required<AmqpConnectionOptions>
  private readonly name: string
  private readonly context: Record<string, unknown>
  private readonly idPrefix = randomBytes(4).toString('hex')
  private seq = 0
  private open: Promise<Open> | undefined
  /** Message ids the broker returned as unroutable (mandatory), until their confirm arrives. */
  private readonly returned = new Set<string>()
  private closePromise: Promise<void> | undefined
  /** Why the broker blocks publishers (connection.blocked), while it does. */
  private blocked: string | undefined

  constructor(private readonly spec: AmqpOutputSpec) {
    if (!spec.connection)
      throw new SluiceError('SLUICE_ERR_CONFIG_CONNECTION', `function ${spec.functionName}: output ${spec.outputName} needs an amqp connection`)
    this.options = outputDefaults(spec.output)
    this.conn = connectionDefaults(spec.connection)
    this.name = `sluice/${spec.connectionName ?? 'amqp'}/${spec.functionName}/output/${spec.outputName}`
    this.context = { function: spec.functionName, output: spec.outputName, connection: spec.connectionName }
  }

  private channel(): Promise<Open> {
    if (this.open) return this.open
    const p: Promise<Open> = (async () => {
      const model = await openConnection(this.conn, this.name)
      const forget = () => {
        if (this.open === p) this.open = undefined
      }
      model.on('error', (e: Error) => this.spec.log.debug({ err: describe(e) }, 'amqp output connection error'))
      model.on('close', forget)
      model.on('blocked', (reason: string) => {
        this.blocked = reason
        this.spec.log.warn({ reason }, 'the broker blocks publishing on the output connection')
      })
      model.on('unblocked', () => {
        this.blocked = undefined
      })
      try {
        const ch = await model.createConfirmChannel()
        const open: Open = { model, ch, lastError: undefined }
        ch.on('error', (e: Error) => {
          open.lastError = e
          this.spec.log.warn({ err: describe(e) }, 'amqp output channel closed by the broker')
        })
        // A channel error leaves the connection up; the next publish opens both afresh.
        ch.on('close', () => {
          forget()
          model.close().catch(() => undefined)
        })
        ch.on('return', (m: { properties: { messageId?: unknown } }) => {
          if (typeof m.properties.messageId === 'string') this.returned.add(m.properties.messageId)
        })
        return open
      } catch (e) {
        await model.close().catch(() => undefined)
        throw e
      }
    })()
    this.open = p
    p.catch(() => {
      if (this.open === p) this.open = undefined
    })
    return p
  }

  async publish(values: unknown[]): Promise<void> {
    if (this.closePromise) throw new SluiceError('SLUICE_ERR_OUTPUT_FAILED', `output ${this.spec.outputName} is closed`, { context: this.context })
    if (values.length === 0) return
    let open: Open
    try {
      open = await this.channel()
    } catch (e) {
      throw toSluiceError(e, 'SLUICE_ERR_OUTPUT_FAILED', `output ${this.spec.outputName}: cannot connect to ${redact(this.conn.url)}`, this.context)
    }
    const { exchange, routingKey, mandatory, persistent } = this.options
    const where = `exchange ${JSON.stringify(exchange)} routing key ${JSON.stringify(routingKey)}`
    const timestamp = Math.floor(Date.now() / 1000)
    const confirms = values.map(
      (value) =>
        new Promise<void>((resolve, reject) => {
          const messageId = `${this.idPrefix}-${++this.seq}`
          const fail = (why: string, cause?: unknown) =>
            reject(
              new SluiceError('SLUICE_ERR_OUTPUT_FAILED', `output ${this.spec.outputName} (${where}): ${why}`, {
                context: this.context,
                ...(cause ? { cause } : {}),
              }),
            )
          try {
            const content = Buffer.from(JSON.stringify(value) ?? 'null')
            open.ch.publish(exchange, routingKey, content, { persistent, mandatory, contentType: 'application/json', messageId, timestamp }, (err: unknown) => {
              const unroutable = this.returned.delete(messageId)
              if (err) fail(open.lastError ? describe(open.lastError) : describe(err), err)
              else if (unroutable) fail('no queue is bound for the message (mandatory)')
              else resolve()
            })
          } catch (e) {
            fail(describe(e), e)
          }
        }),
    )
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new SluiceError(
            'SLUICE_ERR_OUTPUT_FAILED',
            `output ${this.spec.outputName} (${where}): no confirm from the broker within ${this.options.confirmTimeoutMs} ms${this.blocked ? ` (the broker blocks publishers: ${this.blocked})` : ''}`,
            { context: this.context },
          ),
        )
      }, this.options.confirmTimeoutMs)
    })
    const results = await Promise.race([Promise.allSettled(confirms), timeout]).finally(() => clearTimeout(timer))
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed.length > 0) {
      const first = failed[0]?.reason as SluiceError
      if (failed.length === 1) throw first
      throw new SluiceError('SLUICE_ERR_OUTPUT_FAILED', `${failed.length} of ${values.length} messages failed; first: ${first.message}`, {
        context: this.context,
        cause: first,
      })
    }
  }

  /** Idempotent: closes the channel and the connection (messages not yet confirmed fail). */
  close(): Promise<void> {
    this.closePromise ??= (async () => {
      const p = this.open
      this.open = undefined
      if (!p) return
      try {
        const { ch, model } = await p
        await ch.close().catch(() => undefined)
        await model.close().catch(() => undefined)
      } catch {
        // never opened
      }
    })()
    return this.closePromise
  }
}
