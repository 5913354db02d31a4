/**
 * The AMQP output binding on the system RabbitMQ: confirmed publishes, and failures (no such
 * exchange, unroutable with mandatory) that make the router retry the input instead of acking it.
 */
import { describe, expect, it } from 'vitest'
import { waitFor } from '../../helpers/gateway.js'
import { queueCounts, unique } from './broker.js'
import { amqpGateway, client, onCleanup, seen, settled, tempExchange, tempQueue } from './helpers.js'
import { Wiretap } from './wiretap.js'

describe('amqp output binding', () => {
  it('publishes what the function outputs as persistent JSON, before the input is acked', async () => {
    const input = await tempQueue('amqp-out-in')
    const alerts = await tempQueue('amqp-out-alerts')
    const c = await client()
    const t = await amqpGateway({ trigger: `queue: ${input}`, fn: `    outputs:\n      out: { amqp: { connection: $CONN, routingKey: ${alerts} } }\n` })
    await c.publish(
      Array.from({ length: 30 }, (_, n) => ({ n, output: { scooter: `s${n}`, battery: n } })),
      { queue: input },
    )
    await waitFor(async () => (await queueCounts(alerts))?.ready === 30, 20_000, '30 alerts')
    const got = await c.drain(alerts)
    expect(got.map((m) => m.body)).toEqual(Array.from({ length: 30 }, (_, n) => ({ scooter: `s${n}`, battery: n })))
    expect(got.every((m) => m.props.contentType === 'application/json' && m.props.deliveryMode === 2 && typeof m.props.messageId === 'string')).toBe(true)
    await waitFor(() => settled(input), 20_000, 'input acked')
    expect(t.gw.function('rec')?.counts.eventsDone).toBe(30)
  })

  it('retries the input while the output exchange is missing, dead-letters it, and replays it once fixed', async () => {
    const input = await tempQueue('amqp-out-missing')
    const exchange = await tempExchange('amqp-out-x', { declare: false, type: 'direct' })
    const c = await client()
    const tap = await Wiretap.start()
    onCleanup(() => tap.close())
    const t = await amqpGateway({
      url: tap.url(),
      trigger: `queue: ${input}`,
      fn: `    retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 300 }\n    outputs:\n      out: { amqp: { connection: $CONN, exchange: ${exchange}, routingKey: alerts } }\n`,
    })
    await c.publish([{ n: 1, output: { alert: 1 } }], { queue: input })
    await waitFor(() => t.gw.function('rec')?.counts.eventsDead === 1, 20_000, 'dead-lettered')
    expect(seen(t).map((s) => s.attempt)).toEqual([1, 2, 3])
    const [letter] = await t.gw.listDeadLetters({ function: 'rec' })
    expect(letter?.error.code).toBe('SLUICE_ERR_OUTPUT_FAILED')
    expect(letter?.error.message).toMatch(/NOT_FOUND/)
    await waitFor(() => settled(input), 20_000, 'acked once dead')
    // Each publish failed (the broker closed the output's channel: 404): the input was acked once,
    // after the last attempt, not before.
    const last = t.logs.find('event dead-lettered')[0]
    expect(tap.settles.map((s) => [s.method, s.tag])).toEqual([['ack', 1]])
    expect(tap.settles[0]?.at).toBeGreaterThanOrEqual(Date.parse(last?.time as string))

    const parking = await tempQueue('amqp-out-fixed')
    await c.ch.assertExchange(exchange, 'direct', { durable: true })
    await c.ch.bindQueue(parking, exchange, 'alerts')
    const replay = await t.gw.replayDeadLetter(letter?.id as string)
    expect(replay.outcome).toEqual({ status: 'done' })
    expect((await c.drain(parking)).map((m) => m.body)).toEqual([{ alert: 1 }])
    expect(await t.gw.listDeadLetters({ function: 'rec' })).toEqual([])
  })

  it('with mandatory, an unroutable output fails the input until a queue is bound', async () => {
    const input = await tempQueue('amqp-out-mandatory')
    const key = unique('nobody-listens')
    const c = await client()
    const t = await amqpGateway({
      trigger: `queue: ${input}`,
      fn: `    retry: { maxAttempts: 100, backoff: fixed, initialDelayMs: 300 }\n    outputs:\n      out: { amqp: { connection: $CONN, exchange: amq.direct, routingKey: ${key}, mandatory: true } }\n`,
    })
    await c.publish([{ n: 1, output: { alert: 'late' } }], { queue: input })
    await waitFor(() => seen(t).some((s) => s.attempt >= 2), 20_000, 'a retry')
    expect(await queueCounts(input)).toEqual({ ready: 0, unacked: 1 })
    const parking = await tempQueue('amqp-out-late')
    await c.ch.bindQueue(parking, 'amq.direct', key)
    await waitFor(async () => (await queueCounts(parking))?.ready === 1, 20_000, 'the output routed')
    await waitFor(() => settled(input), 20_000, 'input acked')
    expect((await c.drain(parking)).map((m) => m.body)).toEqual([{ alert: 'late' }])
    expect(t.gw.function('rec')?.counts.eventsDone).toBe(1)
  })
})
