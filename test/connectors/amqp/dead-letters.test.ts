/**
 * Poison messages with the AMQP trigger on the system RabbitMQ: the retry policy's attempts, the
 * dead-letter store, an optional RabbitMQ dead-letter exchange, and redeliveries after a graceful
 * stop (which must not count as attempts).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { waitFor } from '../../helpers/gateway.js'
import { queueCounts, unique } from './broker.js'
import { amqpGateway, client, numbers, onCleanup, seen, tempExchange, tempQueue, settled } from './helpers.js'

describe('amqp poison messages', () => {
  it('tries a poison message retry.maxAttempts times, dead-letters and acks it, and the rest flows', async () => {
    const queue = await tempQueue('amqp-poison')
    const c = await client()
    const t = await amqpGateway({ trigger: `queue: ${queue}`, fn: '    retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 50 }\n' })
    await c.publish([{ n: 1 }, { n: 2, failAlways: true }, { n: 3 }, { n: 4 }], { queue }, (i) => ({ messageId: `m${i + 1}` }))
    await waitFor(() => t.gw.function('rec')?.counts.eventsDead === 1 && t.gw.function('rec')?.counts.eventsDone === 3, 20_000, 'three done, one dead')
    expect(
      seen(t)
        .filter((s) => s.n === 2)
        .map((s) => s.attempt),
    ).toEqual([1, 2, 3])
    expect([...numbers(t)].sort()).toEqual([1, 2, 3, 4])
    const items = await t.gw.listDeadLetters({ function: 'rec' })
    expect(items).toHaveLength(1)
    expect(items[0]).toMatchObject({
      attempts: 3,
      error: { code: 'SLUICE_ERR_FUNCTION_EVENT_FAILED' },
      event: { id: 'm2', source: `amqp://${t.connection}/${queue}`, body: { n: 2, failAlways: true } },
    })
    await waitFor(() => settled(queue), 20_000, 'acked')
  })

  it('also publishes a dead-lettered message to the configured dead-letter exchange', async () => {
    const queue = await tempQueue('amqp-dlx-src')
    const dlx = await tempExchange('amqp-dlx', { type: 'fanout' })
    const parking = await tempQueue('amqp-dlx-parking')
    const c = await client()
    await c.ch.bindQueue(parking, dlx, '')
    const t = await amqpGateway({
      trigger: `queue: ${queue}, deadLetterExchange: ${dlx}`,
      fn: '    retry: { maxAttempts: 2, backoff: fixed, initialDelayMs: 20 }\n',
    })
    await c.publish([{ n: 7, failAlways: true }], { queue }, () => ({ messageId: 'poison-7', headers: { origin: 'station-7' } }))
    await waitFor(async () => (await queueCounts(parking))?.ready === 1, 20_000, 'the dead-letter exchange copy')
    const [parked] = await c.drain(parking)
    const items = await t.gw.listDeadLetters({ function: 'rec' })
    expect(items).toHaveLength(1)
    expect(parked?.body).toEqual({ n: 7, failAlways: true })
    expect(parked?.props.messageId).toBe('poison-7')
    expect(parked?.headers).toMatchObject({
      origin: 'station-7',
      'x-sluice-dead-letter-id': items[0]?.id,
      'x-sluice-error-code': 'SLUICE_ERR_FUNCTION_EVENT_FAILED',
      'x-sluice-function': 'rec',
      'x-sluice-queue': queue,
    })
    await waitFor(() => settled(queue), 20_000, 'source acked')
  })

  it('refuses to start when the dead-letter exchange does not exist', async () => {
    const queue = await tempQueue('amqp-dlx-missing')
    const err = await amqpGateway({ trigger: `queue: ${queue}, deadLetterExchange: ${unique('no-such-exchange')}` }).then(
      () => undefined,
      (e: unknown) => e as { code?: string; message: string },
    )
    expect(err?.code).toBe('SLUICE_ERR_CONNECTOR_TOPOLOGY')
    expect(err?.message).toMatch(/NOT_FOUND/)
  })

  it.each(['classic', 'quorum'])('does not count a graceful stop as an attempt (%s queue)', async (type) => {
    const queue = await tempQueue('amqp-stop', type === 'quorum' ? { args: { 'x-queue-type': 'quorum' } } : {})
    const dir = mkdtempSync(join(tmpdir(), 'sluice-amqp-stop-'))
    onCleanup(() => rmSync(dir, { recursive: true, force: true }))
    const c = await client()
    const opts = {
      trigger: `queue: ${queue}`,
      dir,
      fn: '    retry: { maxAttempts: 2, backoff: fixed, initialDelayMs: 50 }\n    scale: { max: 1 }\n    batch: { maxSize: 1, maxWaitMs: 0 }\n    timeoutMs: 10000\n',
    }
    // Message 1 keeps the only instance busy; 2..4 wait in the router and are given back on stop.
    await c.publish([{ n: 1, spinMs: 1500 }, { n: 2 }, { n: 3, failAttempts: 1 }, { n: 4 }], { queue }, (i) => ({ messageId: `${queue}-${i + 1}` }))
    const t1 = await amqpGateway(opts)
    await waitFor(() => t1.gw.function('rec')?.backlog === 4, 20_000, 'all four in the router')
    await t1.gw.stop()
    expect(numbers(t1)).toEqual(new Set([1]))
    const t2 = await amqpGateway(opts)
    await waitFor(() => t2.gw.function('rec')?.counts.eventsDone === 3, 20_000, 'the rest done')
    // Redelivered (the broker counts the returns) but still a first attempt: 3 fails once and succeeds.
    const again = seen(t2)
    expect(again.filter((s) => s.n === 2)).toEqual([expect.objectContaining({ attempt: 1, red: true, dc: 2 })])
    expect(again.filter((s) => s.n === 3).map((s) => s.attempt)).toEqual([1, 2])
    expect(t2.gw.function('rec')?.counts.eventsDead).toBe(0)
    await waitFor(() => settled(queue), 20_000, 'acked')
  })
})
