/**
 * The AMQP trigger against the system RabbitMQ: topology, event shape, prefetch, when and how
 * messages are acknowledged (on the wire, through a relay that reads the client's frames).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { Router } from '../../../src/router/router.js'
import { waitFor } from '../../helpers/gateway.js'
import { queueCounts, unique } from './broker.js'
import { amqpGateway, client, numbers, onCleanup, seen, tempExchange, tempQueue, settled } from './helpers.js'
import { Wiretap } from './wiretap.js'

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ({ n: from + i }))

describe('amqp trigger', () => {
  it('declares its exchange, queue and binding, and maps messages to events', async () => {
    const queue = unique('amqp-topology')
    const exchange = await tempExchange('amqp-topology-x', { declare: false })
    onCleanup(async () => (await client()).ch.deleteQueue(queue))
    const t = await amqpGateway({
      trigger: `queue: ${queue}, declare: { durable: true }, exchange: { name: ${exchange}, type: topic }, bindings: [{ routingKey: "stations.*.telemetry" }]`,
    })
    const c = await client()
    // The topology exists at the broker now: checkExchange/checkQueue fail (404) otherwise.
    await c.ch.checkExchange(exchange)
    expect((await c.ch.checkQueue(queue)).consumerCount).toBe(1)
    await c.publish([{ n: 1, dump: true }], { exchange, routingKey: 'stations.7.telemetry' }, () => ({
      messageId: 'msg-1',
      correlationId: 'corr-1',
      headers: { station: 7, region: 'north' },
      timestamp: 1_700_000_000,
    }))
    await c.publish([{ n: 2 }], { exchange, routingKey: 'stations.8.status' }) // not bound: dropped by the exchange
    c.ch.publish(exchange, 'stations.9.telemetry', Buffer.from('plain text'), { contentType: 'text/plain' })
    await c.ch.waitForConfirms()
    await waitFor(() => seen(t).length === 2, 20_000, 'two events')
    const [first, text] = seen(t)
    expect(first?.event).toMatchObject({
      id: 'msg-1',
      source: `amqp://${t.connection}/${queue}`,
      key: queue,
      time: new Date(1_700_000_000_000).toISOString(),
      body: { n: 1, dump: true },
      meta: {
        queue,
        exchange,
        routingKey: 'stations.7.telemetry',
        redelivered: false,
        deliveryTag: 1,
        deliveryCount: 1,
        messageId: 'msg-1',
        correlationId: 'corr-1',
        contentType: 'application/json',
        headers: { station: 7, region: 'north' },
      },
    })
    expect(first?.attempt).toBe(1)
    // No message id: a generated id, unique per channel generation and delivery tag.
    expect(text?.id).toMatch(new RegExp(`^${queue}-[0-9a-f]{6}\\.1-2$`))
    expect(text?.n).toBeNull()
    await waitFor(() => settled(queue), 20_000, 'acks')
  })

  it('fails to start with a coded error when the queue does not exist and is not declared', async () => {
    const queue = unique('amqp-missing')
    const err = await amqpGateway({ trigger: `queue: ${queue}` }).then(
      () => undefined,
      (e: unknown) => e as { code?: string; message: string },
    )
    expect(err?.code).toBe('SLUICE_ERR_CONNECTOR_TOPOLOGY')
    expect(err?.message).toMatch(/NOT_FOUND/)
  })

  it('holds no more than min(prefetch, maxBacklog) unacknowledged messages', async () => {
    const queue = await tempQueue('amqp-prefetch')
    const dir = mkdtempSync(join(tmpdir(), 'sluice-amqp-prefetch-'))
    onCleanup(() => rmSync(dir, { recursive: true, force: true }))
    const c = await client()
    // The first message (alone in its batch) fails once and waits a minute for its retry: its key
    // (the queue) holds every later message in the router, unacknowledged.
    await c.publish([{ n: 0, failAttempts: 1 }, ...range(99, 1)], { queue }, (i) => ({ messageId: `${queue}-${i}` }))
    const t1 = await amqpGateway({
      dir,
      trigger: `queue: ${queue}, prefetch: 256`,
      fn: '    maxBacklog: 20\n    batch: { maxSize: 1, maxWaitMs: 0 }\n    retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 60000, maxDelayMs: 60000 }\n',
    })
    await waitFor(async () => (await queueCounts(queue))?.unacked === 20, 20_000, '20 unacked')
    expect(await queueCounts(queue)).toEqual({ ready: 80, unacked: 20 })
    expect(t1.gw.function('rec')?.backlog).toBe(20)
    // A gateway with a short retry delay takes over and drains the queue.
    await t1.gw.stop()
    const t2 = await amqpGateway({ dir, trigger: `queue: ${queue}, prefetch: 256`, fn: '    maxBacklog: 20\n' })
    await waitFor(() => numbers(t2).size === 100, 60_000, 'all 100 processed')
    await waitFor(() => settled(queue), 20_000, 'all acked')
  })

  it('uses the configured prefetch when it is below maxBacklog', async () => {
    const queue = await tempQueue('amqp-prefetch')
    const c = await client()
    await c.publish([{ n: 0, failAttempts: 1 }, ...range(29, 1)], { queue })
    const t = await amqpGateway({
      trigger: `queue: ${queue}, prefetch: 7`,
      fn: '    batch: { maxSize: 1, maxWaitMs: 0 }\n    retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 60000, maxDelayMs: 60000 }\n',
    })
    await waitFor(async () => (await queueCounts(queue))?.unacked === 7, 20_000, '7 unacked')
    expect(await queueCounts(queue)).toEqual({ ready: 23, unacked: 7 })
    expect(t.gw.function('rec')?.backlog).toBe(7)
  })

  it('acknowledges a message only after it succeeded', async () => {
    const tap = await Wiretap.start()
    onCleanup(() => tap.close())
    const queue = await tempQueue('amqp-ack-after')
    const c = await client()
    const t = await amqpGateway({ trigger: `queue: ${queue}`, url: tap.url(), fn: '    retry: { maxAttempts: 5, backoff: fixed, initialDelayMs: 200 }\n' })
    await c.publish([{ n: 1, failAttempts: 2 }], { queue })
    await waitFor(() => settled(queue), 20_000, 'acked')
    expect(seen(t).map((s) => s.attempt)).toEqual([1, 2, 3])
    // One ack, sent after the third (successful) attempt was logged; none while it was retried.
    const third = t.logs.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('seen') && l.msg.includes('"attempt":3'))
    expect(tap.settles.map((s) => [s.method, s.tag])).toEqual([['ack', 1]])
    expect(tap.settles[0]?.at).toBeGreaterThanOrEqual(Date.parse(third?.time as string))
  })

  it('acknowledges with multiple-acks: fewer ack frames than messages, covering every tag', async () => {
    const tap = await Wiretap.start()
    onCleanup(() => tap.close())
    const queue = await tempQueue('amqp-multi')
    const c = await client()
    await c.publish(range(500), { queue })
    const t = await amqpGateway({ trigger: `queue: ${queue}, prefetch: 200`, url: tap.url() })
    await waitFor(() => numbers(t).size === 500, 60_000, '500 processed')
    await waitFor(() => tap.settles.some((s) => s.tag === 500), 20_000, 'the last tag acked')
    const acks = tap.settles.filter((s) => s.method === 'ack')
    expect(tap.settles.filter((s) => s.method === 'nack')).toEqual([])
    expect(acks.length).toBeLessThan(500 / 5)
    expect(acks.some((a) => a.multiple)).toBe(true)
    // Every tag is settled, none twice (a multiple frame settles every tag up to its own).
    const covered = new Set<number>()
    const twice: number[] = []
    for (const a of acks) {
      if (covered.has(a.tag)) twice.push(a.tag)
      if (a.multiple) for (let tag = 1; tag <= a.tag; tag++) covered.add(tag)
      else covered.add(a.tag)
    }
    expect(twice).toEqual([])
    expect(covered.size).toBe(500)
    await waitFor(() => settled(queue), 20_000, 'queue empty')
  })

  it('hands the messages of one socket read to the router in one call, acking each from its own outcome', async () => {
    const queue = await tempQueue('amqp-group')
    const c = await client()
    await c.publish(range(300), { queue })
    const deliver = vi.spyOn(Router.prototype, 'deliver')
    onCleanup(() => deliver.mockRestore())
    const t = await amqpGateway({ trigger: `queue: ${queue}, prefetch: 200` })
    await waitFor(() => numbers(t).size === 300, 60_000, '300 processed')
    await waitFor(() => settled(queue), 20_000, 'queue empty')
    const calls = deliver.mock.calls.filter(([fn]) => fn === 'rec')
    expect(calls.reduce((n, [, events]) => n + events.length, 0)).toBe(300)
    expect(calls.length).toBeLessThan(300)
    expect(calls.every(([, , onOutcome]) => typeof onOutcome === 'function')).toBe(true)
  })

  it('settles out of order: a message waiting for its retry does not hold back the acks of others', async () => {
    const tap = await Wiretap.start()
    onCleanup(() => tap.close())
    const queue = await tempQueue('amqp-ooo')
    const c = await client()
    const t = await amqpGateway({
      trigger: `queue: ${queue}, prefetch: 50`,
      url: tap.url(),
      fn: '    orderKey: body.k\n    retry: { maxAttempts: 2, backoff: fixed, initialDelayMs: 60000, maxDelayMs: 60000 }\n',
    })
    await c.publish([{ n: 0, k: 'slow', failAttempts: 1 }, ...range(40, 1).map((b) => ({ ...b, k: `k${b.n % 4}` }))], { queue })
    await waitFor(() => numbers(t).size === 41, 30_000, 'all seen')
    // Tag 1 waits a minute for its retry; tags 2..41 are acked meanwhile, one by one: a multiple
    // ack would cover tag 1 too.
    await waitFor(() => tap.settles.length === 40, 20_000, '40 acks')
    expect(tap.settles.every((s) => s.method === 'ack' && !s.multiple && s.tag >= 2 && s.tag <= 41)).toBe(true)
    await waitFor(async () => (await queueCounts(queue))?.unacked === 1, 20_000, 'only the retried message unacked')
    expect(await queueCounts(queue)).toEqual({ ready: 0, unacked: 1 })
  })

  it('stops consuming while other load holds the backlog at maxBacklog, and resumes', async () => {
    const queue = await tempQueue('amqp-flow')
    const c = await client()
    const t = await amqpGateway({
      trigger: `queue: ${queue}, prefetch: 5`,
      fn: '    maxBacklog: 10\n    scale: { max: 1 }\n    batch: { maxSize: 1, maxWaitMs: 0 }\n    timeoutMs: 10000\n',
    })
    expect((await c.ch.checkQueue(queue)).consumerCount).toBe(1)
    // Events from elsewhere (as a replay would add) fill the backlog: the flow pauses.
    const injected = Array.from({ length: 12 }, (_, i) => ({
      id: `inj-${i}`,
      source: 'test://flow',
      time: new Date().toISOString(),
      body: { n: 1000 + i, spinMs: 400 },
      meta: {},
    }))
    const done = t.gw.router.deliver('rec', injected)
    await waitFor(async () => (await c.ch.checkQueue(queue)).consumerCount === 0, 20_000, 'consumer cancelled')
    await c.publish(
      Array.from({ length: 20 }, (_, n) => ({ n })),
      { queue },
    )
    expect((await c.ch.checkQueue(queue)).messageCount).toBe(20)
    await done
    await waitFor(async () => (await c.ch.checkQueue(queue)).consumerCount === 1, 20_000, 'consumer back')
    await waitFor(() => Array.from({ length: 20 }, (_, n) => n).every((n) => numbers(t).has(n)), 30_000, 'the queued messages')
    await waitFor(() => settled(queue), 20_000, 'queue empty')
  })
})
