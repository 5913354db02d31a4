/**
 * The topology errors users meet first, against the system RabbitMQ: a trigger on a queue that
 * does not exist says which queue, on which connection, and how to have sluice declare it.
 */
import { describe, expect, it } from 'vitest'
import type { AmqpTriggerOptions } from '../../../connectors/amqp/options.js'
import { declareTopology } from '../../../connectors/amqp/topology.js'
import { unique } from './broker.js'
import { client, onCleanup } from './helpers.js'

const trigger = (queue: string, extra: Partial<AmqpTriggerOptions> = {}): AmqpTriggerOptions =>
  ({ connection: 'orders_broker', queue, prefetch: 10, ...extra }) as AmqpTriggerOptions

describe('amqp topology', () => {
  it('names the queue, the connection and declare: when the queue does not exist', async () => {
    const queue = unique('amqp-missing-queue')
    const c = await client()
    const ch = await c.model.createChannel()
    ch.on('error', () => undefined)
    const err = await declareTopology(ch, trigger(queue), 'orders_broker').then(
      () => undefined,
      (e: unknown) => e as { code?: string; message: string; retriable?: boolean },
    )
    expect(err?.code).toBe('SLUICE_ERR_CONNECTOR_TOPOLOGY')
    expect(err?.retriable).toBe(false)
    expect(err?.message).toBe(
      `queue "${queue}" does not exist on connection orders_broker (404 NOT_FOUND): create it at the broker, or add declare: {} to the trigger (declare: { type: quorum } for a quorum queue) so sluice declares it at start`,
    )
  })

  it('declares the queue with declare: {}, as the message says', async () => {
    const queue = unique('amqp-declared-queue')
    const c = await client()
    onCleanup(async () => (await client()).ch.deleteQueue(queue))
    const ch = await c.model.createChannel()
    const ok = await declareTopology(ch, trigger(queue, { declare: { type: 'classic', durable: false, autoDelete: false } }), 'orders_broker')
    expect(ok.messageCount).toBe(0)
    expect((await c.ch.checkQueue(queue)).queue).toBe(queue)
  })
})
