import { CompressionTypes, type Producer } from 'kafkajs'
import { SluiceError, type Logger, type OutputBinding } from '../../src/sdk/index.js'
import { createKafka, kafkaError } from './client.js'
import type { KafkaConnectionOptions, KafkaOutputOptions } from './options.js'

/** The producer of one connection, shared by every output on it (refcounted). */
class SharedProducer {
  refs = 0
  readonly producer: Producer
  private connecting: Promise<void> | undefined
  private closing: Promise<void> | undefined

  constructor(options: KafkaConnectionOptions, log: Logger) {
    // Not idempotent: that needs InitProducerId and only narrows duplicates that at-least-once
    // delivery has anyway (a retried invocation produces its outputs again).
    this.producer = createKafka(options, log, '-out').producer({ allowAutoTopicCreation: true, idempotent: false })
  }

  /** Connects on first use; a failed attempt is tried again by the next publish. */
  async ready(): Promise<Producer> {
    this.connecting ??= this.producer.connect()
    try {
      await this.connecting
    } catch (e) {
      this.connecting = undefined
      throw e
    }
    return this.producer
  }

  close(): Promise<void> {
    this.closing ??= this.connecting ? this.producer.disconnect() : Promise.resolve()
    return this.closing
  }
}

/** Producers by connection: the key is the connection's options object, shared by all its users. */
const producers = new Map<object, SharedProducer>()

/** The value of a dotted path inside `v` (undefined when absent). */
function pick(v: unknown, path: readonly string[]): unknown {
  let cur = v
  for (const p of path) cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[p] : undefined
  return cur
}

/**
 * Kafka output binding: each value becomes one message (strings as they are, anything else as
 * JSON) produced with acks: -1 (every in-sync replica), and `publish` resolves only once the
 * brokers acknowledged them all, so the router commits the input after that.
 */
export class KafkaOutput implements OutputBinding {
  private readonly shared: SharedProducer
  private readonly keyPath: string[] | undefined
  private closed = false

  constructor(
    private readonly spec: {
      functionName: string
      outputName: string
      output: KafkaOutputOptions
      connection: KafkaConnectionOptions
      connectionName: string
      log: Logger
    },
  ) {
    let shared = producers.get(spec.connection)
    if (!shared) {
      shared = new SharedProducer(spec.connection, spec.log.child({ connection: spec.connectionName }))
      producers.set(spec.connection, shared)
    }
    shared.refs++
    this.shared = shared
    this.keyPath = spec.output.key?.split('.')
  }

  async publish(values: unknown[]): Promise<void> {
    const { output, connectionName, functionName, outputName } = this.spec
    const context = { function: functionName, connection: connectionName, output: outputName, topic: output.topic }
    if (this.closed) throw new SluiceError('SLUICE_ERR_OUTPUT_FAILED', `output ${outputName} is closed`, { context })
    const messages = values.map((v) => {
      const k = this.keyPath ? pick(v, this.keyPath) : undefined
      return {
        key: k === undefined || k === null ? null : typeof k === 'string' ? k : JSON.stringify(k),
        value: typeof v === 'string' ? v : (JSON.stringify(v) ?? 'null'),
      }
    })
    try {
      const producer = await this.shared.ready()
      await producer.send({
        topic: output.topic,
        acks: -1,
        compression: output.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
        messages,
      })
    } catch (e) {
      throw kafkaError(e, 'SLUICE_ERR_CONNECTOR_KAFKA_PRODUCE', context)
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (--this.shared.refs > 0) return
    if (producers.get(this.spec.connection) === this.shared) producers.delete(this.spec.connection)
    await this.shared.close()
  }
}
