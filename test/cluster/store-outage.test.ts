/**
 * PostgreSQL stops while the gateway runs (a private cluster this test starts, stops and starts on
 * its own port). An AMQP trigger (system RabbitMQ, through a wiretap that records the acks on the
 * wire) feeds a function that always fails, so every message must be dead-lettered. Ledger: no
 * message is acked while its dead letter cannot be written, /admin/health answers 503 with the
 * store's state, and once the database is back every message is dead-lettered exactly once.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import type { HealthReport } from '../../src/http/admin.js'
import { startGateway, waitFor } from '../helpers/gateway.js'
import { queueCounts, RABBIT_URL } from '../connectors/amqp/broker.js'
import { client, RECORDER, seen, settled, tempQueue } from '../connectors/amqp/helpers.js'
import { Wiretap } from '../connectors/amqp/wiretap.js'
import { startPgCluster } from '../store/pg-cluster.js'

describe('the PostgreSQL store goes down while the gateway runs', () => {
  it('acks nothing whose dead letter is not durable, reports 503, and dead-letters each message once after it is back', async () => {
    const pg = await startPgCluster()
    onTestFinished(() => pg.close())
    const tap = await Wiretap.start()
    onTestFinished(() => tap.close())
    const queue = await tempQueue('store-outage')
    const amqpUrl = RABBIT_URL.replace(':5672', `:${tap.port}`)
    const t = await startGateway({
      store: `{ kind: postgres, url: "${pg.url}", schema: sluice }`,
      yaml: `connections:
  q: { kind: amqp, url: "${amqpUrl}" }
functions:
  rec:
    code: functions/rec.js
    trigger: { amqp: { connection: q, queue: ${queue}, prefetch: 50 } }
    batch: { maxSize: 10, maxWaitMs: 10 }
    orderKey: none
    retry: { maxAttempts: 2, backoff: fixed, initialDelayMs: 20 }
`,
      files: { 'functions/rec.js': RECORDER },
    })
    onTestFinished(() => t.stop())
    const c = await client()
    const publish = (from: number, n: number) =>
      c.publish(
        Array.from({ length: n }, (_, i) => ({ n: from + i, failAlways: true })),
        { queue },
        (i) => ({ messageId: `m-${from + i}` }),
      )
    const health = async () => {
      const res = await fetch(`${t.url}/admin/health`)
      return { status: res.status, body: (await res.json()) as HealthReport }
    }
    const lettered = async () => (await t.gw.store.listDeadLetters({ function: 'rec', limit: 1000 })).map((d) => d.event.id)

    // Before the outage: dead-lettered and acked as usual.
    await publish(0, 20)
    await waitFor(() => settled(queue), 30_000, 'the first messages acked')
    expect((await lettered()).length).toBe(20)
    expect((await health()).body.store).toMatchObject({ kind: 'postgres', up: true })

    await pg.stop()
    const acksBefore = tap.settles.length
    await publish(20, 20)
    // Every message of the outage failed its last attempt: now its letter cannot be written.
    await waitFor(
      () =>
        new Set(
          seen(t)
            .filter((s) => (s.n ?? -1) >= 20 && s.attempt === 2)
            .map((s) => s.n),
        ).size === 20,
      60_000,
      'the last attempts',
    )
    const down = await waitFor(
      async () => {
        const h = await health()
        return h.status === 503 && h
      },
      20_000,
      'health 503',
    )
    expect(down.body.status).toBe('degraded')
    expect(down.body.store).toMatchObject({ kind: 'postgres', up: false })
    expect(down.body.store?.detail).toBeTruthy()
    expect(JSON.stringify(down.body)).not.toContain('password')
    // Nothing acked while the database is down: the broker holds all 20 as unacknowledged.
    expect(tap.settles.length).toBe(acksBefore)
    expect(await queueCounts(queue)).toEqual({ ready: 0, unacked: 20 })
    const refused = t.logs.find('dead-letter write failed; retrying')
    expect(refused.length).toBeGreaterThan(0)

    await pg.start()
    await waitFor(() => settled(queue), 60_000, 'the outage messages acked after their letters')
    await publish(40, 20)
    await waitFor(() => settled(queue), 30_000, 'the last messages acked')
    const up = await waitFor(
      async () => {
        const h = await health()
        return h.status === 200 && h
      },
      20_000,
      'health 200',
    )
    expect(up.body.store).toMatchObject({ up: true })

    // The ledger: every message dead-lettered exactly once, none lost, none twice.
    const ids = await lettered()
    expect(ids.length).toBe(60)
    expect(new Set(ids)).toEqual(new Set(Array.from({ length: 60 }, (_, i) => `m-${i}`)))
    expect(t.logs.find('store reachable again').length).toBeGreaterThan(0)
  }, 180_000)
})
