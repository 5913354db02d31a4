/**
 * A real broker restart: a dedicated RabbitMQ node (broker.ts) is stopped and started while the
 * gateway runs. Health reports the outage, non-durable topology is declared again, and the output
 * binding reconnects.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../../helpers/gateway.js'
import { Client, DedicatedBroker, unique } from './broker.js'
import { amqpGateway, numbers, onCleanup, settled } from './helpers.js'

let broker: DedicatedBroker

beforeAll(async () => {
  broker = await DedicatedBroker.start()
}, 120_000)

afterAll(async () => {
  await broker?.destroy()
}, 60_000)

async function admin(): Promise<Client> {
  const c = await Client.open(broker.url)
  onCleanup(() => c.close())
  return c
}

describe('amqp across a broker restart', () => {
  it('reports the outage in health, declares a non-durable queue and its binding again, and resumes', async () => {
    const exchange = unique('amqp-restart-x')
    const queue = unique('amqp-restart-q')
    const t = await amqpGateway({
      url: broker.url,
      trigger: `queue: ${queue}, declare: { durable: false }, exchange: { name: ${exchange}, type: direct }, bindings: [{ routingKey: telemetry }]`,
    })
    let c = await admin()
    await c.publish([{ n: 1 }], { exchange, routingKey: 'telemetry' })
    await waitFor(() => numbers(t).has(1), 20_000, 'first message')
    await broker.halt()
    await waitFor(() => t.gw.health().connections.some((x) => !x.up), 20_000, 'health down')
    const down = t.gw.health().connections[0]
    expect(down?.detail).toMatch(/^reconnecting/)
    expect(t.gw.health().status).toBe('degraded')
    await broker.resume()
    await waitFor(() => t.gw.health().connections.every((x) => x.up), 30_000, 'health up')
    c = await admin()
    // The restart dropped the non-durable queue and its binding; the connector declared both again.
    expect((await c.ch.checkQueue(queue)).consumerCount).toBe(1)
    await c.publish([{ n: 2 }], { exchange, routingKey: 'telemetry' })
    await waitFor(() => numbers(t).has(2), 20_000, 'message through the declared binding')
  })

  it('publishes outputs again after the broker comes back, and loses no input', async () => {
    const input = unique('amqp-restart-in')
    const alerts = unique('amqp-restart-alerts')
    let c = await admin()
    await c.ch.assertQueue(input, { durable: true })
    await c.ch.assertQueue(alerts, { durable: true })
    const t = await amqpGateway({
      url: broker.url,
      trigger: `queue: ${input}`,
      fn:
        '    retry: { maxAttempts: 50, backoff: fixed, initialDelayMs: 200 }\n    outputs:\n      out: { amqp: { connection: $CONN, routingKey: ' +
        alerts +
        ' } }\n',
    })
    await c.publish([{ n: 1, output: { a: 1 } }], { queue: input })
    await waitFor(async () => (await c.ch.checkQueue(alerts)).messageCount === 1, 20_000, 'first output')
    await broker.restart()
    c = await admin()
    await waitFor(() => t.gw.health().connections.every((x) => x.up), 30_000, 'trigger back')
    await c.publish(
      Array.from({ length: 10 }, (_, i) => ({ n: 10 + i, output: { a: 10 + i } })),
      { queue: input },
    )
    await waitFor(async () => (await c.ch.checkQueue(alerts)).messageCount >= 11, 30_000, 'all outputs')
    const bodies = (await c.drain(alerts)).map((m) => m.body as { a: number })
    expect(new Set(bodies.map((b) => b.a))).toEqual(new Set([1, ...Array.from({ length: 10 }, (_, i) => 10 + i)]))
    await waitFor(() => settled(input, broker.node), 20_000, 'inputs acked')
  })
})
