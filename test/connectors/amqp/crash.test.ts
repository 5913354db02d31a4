/**
 * Gateway crashes (kill -9 of a `sluice start` process) with the AMQP trigger on the system
 * RabbitMQ: redeliveries count as attempts, on quorum queues through the broker's
 * x-delivery-count and on classic queues through the connector's durable count, so a message that
 * keeps the gateway from finishing ends in the dead-letter store instead of a requeue loop.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { waitFor } from '../../helpers/gateway.js'
import { SqliteStore } from '../../../src/store/sqlite.js'
import { RABBIT_URL, queueCounts, unique } from './broker.js'
import { ChildGateway } from './child.js'
import { client, onCleanup, RECORDER, seenIn, settled, tempExchange, tempQueue } from './helpers.js'

/** A project folder with the config (absolute paths: the child runs in the repository root). */
function project(trigger: string, fn: string): { dir: string; config: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-amqp-crash-'))
  onCleanup(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'functions'))
  writeFileSync(join(dir, 'functions/rec.js'), RECORDER)
  const config = join(dir, 'gateway.yaml')
  writeFileSync(
    config,
    `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1, prewarm: 1 }
store: { path: ${join(dir, 'state.db')} }
connections:
  queue: { kind: amqp, url: "${RABBIT_URL}" }
functions:
  rec:
    code: ${join(dir, 'functions/rec.js')}
    trigger: { amqp: { connection: queue, ${trigger} } }
${fn}`,
  )
  return { dir, config }
}

async function startChild(config: string): Promise<ChildGateway> {
  const g = await ChildGateway.start(config)
  onCleanup(() => g.kill())
  return g
}

async function deadLetters(dir: string) {
  const store = new SqliteStore(join(dir, 'state.db'))
  try {
    return await store.listDeadLetters({ function: 'rec' })
  } finally {
    await store.close()
  }
}

describe('amqp trigger across gateway crashes', () => {
  it('counts broker redeliveries of a quorum queue as attempts and dead-letters after maxAttempts', async () => {
    const queue = unique('amqp-crash-quorum')
    onCleanup(async () => (await client()).ch.deleteQueue(queue))
    const dlx = await tempExchange('amqp-crash-dlx', { type: 'fanout' })
    const parking = await tempQueue('amqp-crash-parking')
    const c = await client()
    await c.ch.bindQueue(parking, dlx, '')
    // A failed attempt waits a minute for its retry: long enough to kill the gateway meanwhile.
    const { dir, config } = project(
      `queue: ${queue}, declare: { type: quorum }, deadLetterExchange: ${dlx}`,
      '    retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 60000, maxDelayMs: 60000 }\n',
    )
    const runs: ChildGateway[] = []
    for (let attempt = 1; attempt <= 2; attempt++) {
      const g = await startChild(config)
      runs.push(g)
      if (attempt === 1) await c.publish([{ n: 1, failAlways: true }], { queue }, () => ({ messageId: 'crashy' }))
      await waitFor(() => seenIn(g.lines).some((s) => s.attempt === attempt), 30_000, `attempt ${attempt}`)
      await g.kill()
    }
    const last = await startChild(config)
    runs.push(last)
    await waitFor(async () => (await queueCounts(parking))?.ready === 1, 30_000, 'the dead-letter exchange copy')
    await waitFor(() => settled(queue), 20_000, 'acked after dead-lettering')
    expect(await last.stop()).toBe(0)
    expect(runs.map((g) => seenIn(g.lines).map((s) => [s.attempt, s.dc]))).toEqual([[[1, 1]], [[2, 2]], [[3, 3]]])
    const letters = await deadLetters(dir)
    expect(letters).toHaveLength(1)
    expect(letters[0]).toMatchObject({ attempts: 3, error: { code: 'SLUICE_ERR_FUNCTION_EVENT_FAILED' }, event: { id: 'crashy' } })
    const [parked] = await c.drain(parking)
    expect(parked?.headers['x-sluice-dead-letter-id']).toBe(letters[0]?.id)
  })

  it('dead-letters a classic-queue message that crashes the gateway every time, and only that one', async () => {
    const queue = await tempQueue('amqp-crash-loop')
    const { dir, config } = project(
      `queue: ${queue}, prefetch: 10`,
      '    retry: { maxAttempts: 2, backoff: fixed, initialDelayMs: 50 }\n    batch: { maxSize: 1, maxWaitMs: 0 }\n    scale: { max: 1 }\n    timeoutMs: 20000\n',
    )
    const c = await client()
    // n: 1 keeps the function busy until the test kills the gateway: it never gets an outcome.
    // n: 2 and n: 3 wait behind it in the prefetch window each time.
    await c.publish([{ n: 1, spinMs: 6000 }, { n: 2 }, { n: 3 }], { queue }, (i) => ({ messageId: `${queue}-${i + 1}` }))
    for (let run = 1; run <= 2; run++) {
      const g = await startChild(config)
      await waitFor(async () => (await g.admin<{ inflight: number }>('/admin/functions/rec')).inflight > 0, 30_000, 'the message running')
      await g.kill()
      expect(seenIn(g.lines)).toEqual([])
    }
    const last = await startChild(config)
    await waitFor(() => seenIn(last.lines).some((s) => s.n === 3), 30_000, 'the messages behind it')
    await waitFor(() => settled(queue), 20_000, 'all acked')
    expect(await last.stop()).toBe(0)
    // n: 1 was dead-lettered at once on its third delivery. n: 2 and 3 vanished in the first crash
    // too (attempt 2 now) but never ran while n: 1 was being retried alone: no further attempts.
    expect(seenIn(last.lines).map((s) => [s.n, s.attempt])).toEqual([
      [2, 2],
      [3, 2],
    ])
    const letters = await deadLetters(dir)
    expect(letters).toHaveLength(1)
    expect(letters[0]).toMatchObject({
      attempts: 2,
      error: { code: 'SLUICE_ERR_EVENT_REDELIVERY_LIMIT' },
      event: { id: `${queue}-1`, body: { n: 1, spinMs: 6000 } },
    })
    // Settled messages leave no delivery-count rows behind (deleted, not overwritten with null).
    const store = new SqliteStore(join(dir, 'state.db'))
    try {
      for (let i = 1; i <= 3; i++) expect(await store.getState('amqp:rec', `attempts:${queue}:id:${queue}-${i}`)).toBeUndefined()
    } finally {
      await store.close()
    }
  })
})
