/**
 * Connection loss with the AMQP trigger on the system RabbitMQ: the server closes the gateway's
 * connection (`rabbitmqctl close_connection`, found by the connection name the connector sets) or
 * cancels its consumer; the connector reconnects, declares its topology again and loses nothing.
 */
import { describe, expect, it } from 'vitest'
import { waitFor } from '../../helpers/gateway.js'
import { closeConnections, connections, queueCounts, unique } from './broker.js'
import { amqpGateway, client, numbers, onCleanup, seen, tempExchange, tempQueue, settled } from './helpers.js'

const logged = (t: { logs: { find(m: string): unknown[] } }, msg: string) => t.logs.find(msg).length

describe('amqp connection loss', () => {
  it('asks the broker for the configured heartbeat', async () => {
    const queue = await tempQueue('amqp-heartbeat')
    const t = await amqpGateway({ trigger: `queue: ${queue}`, connection: 'heartbeatSeconds: 3' })
    const mine = (await connections()).filter((c) => c.name === `sluice/${t.connection}/rec`)
    expect(mine.map((c) => c.heartbeat)).toEqual([3])
  })

  it('reconnects after the server closes the connection mid-stream and loses nothing', async () => {
    const queue = await tempQueue('amqp-closed')
    const c = await client()
    const t = await amqpGateway({ trigger: `queue: ${queue}, prefetch: 100` })
    await c.publish(
      Array.from({ length: 300 }, (_, n) => ({ n, spinMs: 15 })),
      { queue },
      (i) => ({ messageId: `${queue}-${i}` }),
    )
    await waitFor(() => numbers(t).size >= 50, 30_000, 'the first batches')
    expect(await closeConnections(`sluice/${t.connection}/`)).toBe(1)
    await waitFor(() => logged(t, 'amqp reconnected; consuming again') === 1, 30_000, 'reconnected')
    await waitFor(() => numbers(t).size === 300, 60_000, 'all 300')
    await waitFor(() => settled(queue), 20_000, 'all acked')
    expect(logged(t, 'amqp connection lost; reconnecting')).toBe(1)
    expect(t.gw.health().connections.every((x) => x.up)).toBe(true)
    // What the closed channel had not acked comes again (the old copies finished too: at-least-once),
    // counted by the broker as a redelivery but not as a new attempt.
    expect(seen(t).some((s) => s.red === true && s.dc === 2)).toBe(true)
    expect(Math.max(...seen(t).map((s) => s.attempt))).toBe(1)
  })

  it('declares an auto-delete queue and its binding again after reconnecting', async () => {
    const queue = unique('amqp-autodelete')
    const exchange = await tempExchange('amqp-autodelete-x', { type: 'direct' })
    const t = await amqpGateway({
      trigger: `queue: ${queue}, declare: { durable: false, autoDelete: true }, bindings: [{ exchange: ${exchange}, routingKey: telemetry }]`,
      // Slow enough to see the queue gone before the connector declares it again.
      connection: 'reconnect: { initialDelayMs: 3000, maxDelayMs: 3000 }',
    })
    const c = await client()
    await c.publish([{ n: 1 }], { exchange, routingKey: 'telemetry' })
    await waitFor(() => numbers(t).has(1), 20_000, 'first message')
    expect(await closeConnections(`sluice/${t.connection}/`)).toBe(1)
    // The broker deleted the queue with its last consumer (and the binding with it).
    await waitFor(async () => (await queueCounts(queue)) === undefined, 10_000, 'queue deleted')
    await waitFor(() => logged(t, 'amqp reconnected; consuming again') === 1, 30_000, 'reconnected')
    expect((await c.ch.checkQueue(queue)).consumerCount).toBe(1)
    await c.publish([{ n: 2 }], { exchange, routingKey: 'telemetry' })
    await waitFor(() => numbers(t).has(2), 20_000, 'message through the new binding')
    expect([...numbers(t)]).toEqual([1, 2])
  })

  it('declares the queue again and resumes when the broker cancels the consumer (queue deleted)', async () => {
    const queue = unique('amqp-cancelled')
    onCleanup(async () => (await client()).ch.deleteQueue(queue))
    const t = await amqpGateway({ trigger: `queue: ${queue}, declare: { durable: true }` })
    const c = await client()
    await c.publish([{ n: 1 }], { queue })
    await waitFor(() => numbers(t).has(1), 20_000, 'first message')
    await c.ch.deleteQueue(queue)
    await waitFor(() => logged(t, 'amqp reconnected; consuming again') === 1, 30_000, 'resubscribed')
    expect(logged(t, 'the broker cancelled the amqp consumer; reconnecting')).toBe(1)
    await c.publish([{ n: 2 }], { queue })
    await waitFor(() => numbers(t).has(2), 20_000, 'message after the re-declare')
    expect(t.gw.health().connections.every((x) => x.up)).toBe(true)
  })

  it('fails to start at once with refused credentials, and after connectTimeoutMs without a broker on a required connection', async () => {
    const queue = await tempQueue('amqp-refused')
    const refused = await amqpGateway({ trigger: `queue: ${queue}`, url: 'amqp://guest:wrong@127.0.0.1:5672' }).then(
      () => undefined,
      (e: unknown) => e as { code?: string; message: string; retriable?: boolean },
    )
    expect(refused?.code).toBe('SLUICE_ERR_CONNECTOR_START')
    expect(refused?.message).toMatch(/ACCESS.REFUSED/)
    // Port 1 on loopback: nothing listens there.
    const unreachable = await amqpGateway({
      trigger: `queue: ${queue}`,
      url: 'amqp://guest:guest@127.0.0.1:1',
      connection: 'connectTimeoutMs: 1500, required: true',
    }).then(
      () => undefined,
      (e: unknown) => e as { code?: string; message: string },
    )
    expect(unreachable?.code).toBe('SLUICE_ERR_CONNECTOR_START')
    expect(unreachable?.message).toMatch(/ECONNREFUSED/)
  })
})
