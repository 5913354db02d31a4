import { EventHubProducerClient, type CreateBatchOptions, type EventData } from '@azure/event-hubs'
import { SluiceError, type Logger, type OutputBinding } from '../../src/sdk/index.js'
import { RETRY_OPTIONS } from './eventhubs-connector.js'
import { eventHubsError } from './errors.js'
import type { EventHubsConnectionOptions, EventHubsOutputOptions } from './options.js'

/** One producer client per connection (and hub), shared by every output on it. */
const producers = new Map<string, { client: EventHubProducerClient; refs: number }>()

function acquire(key: string, conn: EventHubsConnectionOptions): EventHubProducerClient {
  let p = producers.get(key)
  if (!p) {
    p = { client: new EventHubProducerClient(conn.connectionString, conn.eventHub, { retryOptions: RETRY_OPTIONS }), refs: 0 }
    producers.set(key, p)
  }
  p.refs++
  return p.client
}

async function releaseProducer(key: string): Promise<void> {
  const p = producers.get(key)
  if (!p || --p.refs > 0) return
  producers.delete(key)
  await p.client.close()
}

/** The event a function's output value becomes: the value is the body (JSON, or a string as is). */
const toEventData = (value: unknown): EventData => ({ body: value })

/**
 * Event Hubs output binding: the values of one invocation go out in as few batches as fit
 * (EventHubProducerClient.sendBatch), each awaited until the service accepted it, so the router
 * acknowledges the input only after its outputs are in the hub.
 */
export class EventHubsOutput implements OutputBinding {
  private readonly key: string
  private readonly producer: EventHubProducerClient
  private readonly batchOptions: CreateBatchOptions
  private closed: Promise<void> | undefined

  constructor(
    private readonly spec: {
      functionName: string
      outputName: string
      output: EventHubsOutputOptions
      connectionName: string
      connection: EventHubsConnectionOptions
      log: Logger
    },
  ) {
    const o = spec.output
    if (o.partitionKey !== undefined && o.partitionId !== undefined) {
      throw new SluiceError(
        'SLUICE_ERR_CONFIG_INVALID',
        `output ${spec.outputName} of function ${spec.functionName} sets both partitionKey and partitionId; set one`,
        {
          context: { function: spec.functionName, connection: spec.connectionName },
        },
      )
    }
    this.batchOptions = o.partitionKey !== undefined ? { partitionKey: o.partitionKey } : o.partitionId !== undefined ? { partitionId: o.partitionId } : {}
    this.key = `${spec.connectionName}\u0000${spec.connection.eventHub}\u0000${spec.connection.connectionString}`
    this.producer = acquire(this.key, spec.connection)
  }

  private get context(): Record<string, unknown> {
    return { function: this.spec.functionName, connection: this.spec.connectionName, output: this.spec.outputName }
  }

  async publish(values: unknown[]): Promise<void> {
    if (this.closed) throw new SluiceError('SLUICE_ERR_OUTPUT_FAILED', `output ${this.spec.outputName} is closed`, { context: this.context })
    const hub = this.spec.connection.eventHub
    try {
      let batch = await this.producer.createBatch(this.batchOptions)
      for (const v of values) {
        const event = toEventData(v)
        if (batch.tryAdd(event)) continue
        if (batch.count > 0) {
          await this.producer.sendBatch(batch)
          batch = await this.producer.createBatch(this.batchOptions)
          if (batch.tryAdd(event)) continue
        }
        throw new SluiceError(
          'SLUICE_ERR_CONNECTOR_EVENTHUBS_MESSAGE_TOO_LARGE',
          `an output value of ${JSON.stringify(v)?.length ?? 0} characters does not fit in one message (at most ${batch.maxSizeInBytes} bytes) of event hub ${hub}`,
          {
            context: this.context,
          },
        )
      }
      if (batch.count > 0) await this.producer.sendBatch(batch)
    } catch (e) {
      throw eventHubsError(e, `sending to event hub ${hub}`, this.context)
    }
  }

  close(): Promise<void> {
    this.closed ??= releaseProducer(this.key).catch((e: unknown) => {
      this.spec.log.warn({ err: eventHubsError(e, 'closing the producer', this.context).toJSON() }, 'event hubs producer did not close cleanly')
    })
    return this.closed
  }
}
