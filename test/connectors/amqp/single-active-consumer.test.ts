/**
 * Order across gateway instances on one RabbitMQ queue. Competing consumers split a queue and
 * lose its order; a queue declared with `x-single-active-consumer: true` (through the trigger's
 * `declare.arguments`) keeps it: the broker delivers to one consumer at a time, the others stand
 * by, and when the active one dies its unacknowledged messages go back to the queue in their
 * original order and the next consumer takes over from there (connectors/amqp/README.md).
 *
 * Two `sluice start` processes on the system RabbitMQ, with a publisher ledger: kill -9 the active
 * one mid-stream; every confirmed message is processed, each gateway sees the queue in order, and
 * the only duplicates are the dead gateway's unacknowledged window.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { waitFor } from '../../helpers/gateway.js'
import { RABBIT_URL, rabbitmqctl, unique } from './broker.js'
import { ChildGateway } from './child.js'
import { client, onCleanup, RECORDER, seenIn, settled } from './helpers.js'

const PREFETCH = 40

/** A project for one gateway instance (its own folder and SQLite store) consuming `queue`. */
function instance(name: string, queue: string, type: 'classic' | 'quorum'): string {
  const dir = mkdtempSync(join(tmpdir(), `sluice-amqp-sac-${name}-`))
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
    trigger:
      amqp:
        connection: queue
        queue: ${queue}
        prefetch: ${PREFETCH}
        declare: { type: ${type}, arguments: { x-single-active-consumer: true } }
    batch: { maxSize: 10, maxWaitMs: 5 }
`,
  )
  return config
}

async function start(config: string): Promise<ChildGateway> {
  const g = await ChildGateway.start(config)
  onCleanup(() => g.kill())
  return g
}

/** The queue's consumers as the broker lists them: how many, and how many are active. */
async function consumers(queue: string): Promise<{ total: number; active: number }> {
  const out = await rabbitmqctl(['list_consumers', '-q', '-s', 'queue_name', 'active'])
  const rows = out
    .split('\n')
    .map((l) => l.split('\t'))
    .filter((r) => r[0] === queue)
  return { total: rows.length, active: rows.filter((r) => r[1] === 'true').length }
}

/** First-seen message numbers of a gateway, in the order its function ran them. */
const order = (g: ChildGateway): number[] => seenIn(g.lines).map((s) => s.n as number)

function increasing(list: number[]): boolean {
  return list.every((n, i) => i === 0 || n > (list[i - 1] as number))
}

describe.each(['classic', 'quorum'] as const)('amqp single active consumer across two gateways (%s queue)', (type) => {
  it('one gateway takes everything in order; after kill -9 the other takes over in order', async () => {
    const queue = unique(`amqp-sac-${type}`)
    onCleanup(async () => (await client()).ch.deleteQueue(queue))
    const first = await start(instance('a', queue, type))
    const second = await start(instance('b', queue, type))
    // Both consume; the broker lets the first one that subscribed be the active one.
    await waitFor(async () => (await consumers(queue)).total === 2, 20_000, 'both gateways subscribed')
    expect(await consumers(queue)).toEqual({ total: 2, active: 1 })

    // The ledger: every message the broker confirmed. 2 ms of work per message keeps the stream
    // going long enough to kill the active gateway in the middle of it.
    const N = 1500
    const c = await client()
    await c.publish(
      Array.from({ length: N }, (_, i) => ({ n: i + 1, spinMs: 2 })),
      { queue },
      (i) => ({ messageId: `${queue}-${i + 1}` }),
    )
    await waitFor(() => order(first).length >= N / 3, 120_000, 'the active gateway to be a third through')
    expect(order(second), 'the standby gateway received nothing while the active one lived').toEqual([])
    await first.kill()

    // (The dead gateway's last log lines may still be on their way through the pipe: read both
    // logs only once everything is processed.)
    await waitFor(() => new Set([...order(first), ...order(second)]).size === N, 120_000, 'every confirmed message processed')
    await waitFor(() => settled(queue), 20_000, 'the queue empty and nothing unacknowledged')
    const before = order(first)
    const after = order(second)
    expect(increasing(before), 'the first gateway ran the queue in order').toBe(true)
    expect(increasing(after), 'the second gateway ran the queue in order').toBe(true)
    expect(before[0]).toBe(1)
    // The takeover starts at the oldest message the dead gateway had not acknowledged and runs
    // contiguously to the end: nothing skipped, nothing reordered.
    const from = after[0] as number
    expect(after).toEqual(Array.from({ length: N - from + 1 }, (_, i) => from + i))
    expect(from).toBeLessThanOrEqual((before.at(-1) as number) + 1)
    // Duplicates: only what the dead gateway ran but had not acknowledged, at most its window.
    const twice = after.filter((n) => before.includes(n))
    expect(twice.length).toBeLessThanOrEqual(PREFETCH)
    expect(await consumers(queue)).toEqual({ total: 1, active: 1 })

    // The first gateway comes back: it stands by, the second stays active and keeps the order.
    const again = await start(instance('a2', queue, type))
    await waitFor(async () => (await consumers(queue)).total === 2, 20_000, 'the restarted gateway subscribed')
    await c.publish(
      Array.from({ length: 100 }, (_, i) => ({ n: N + i + 1 })),
      { queue },
      (i) => ({ messageId: `${queue}-${N + i + 1}` }),
    )
    await waitFor(() => order(second).includes(N + 100), 30_000, 'the new messages')
    expect(order(again)).toEqual([])
    expect(order(second).slice(-100)).toEqual(Array.from({ length: 100 }, (_, i) => N + i + 1))
    expect(await second.stop()).toBe(0)
  }, 420_000)
})
