/**
 * Event Hubs trigger and output, end to end: real gateways (worker host, isolates, router, SQLite
 * store) against the Event Hubs test server, with the real @azure/event-hubs client inside the
 * connector. Functions report what they saw with console.log; checkpoints are read from the
 * gateway's store. Nothing is asserted on durations.
 */
import { join } from 'node:path'
import { EventHubProducerClient } from '@azure/event-hubs'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import type { PartitionRow } from '../../../connectors/eventhubs/index.js'
import { parseConfig, issuesOf } from '../../../src/config/load.js'
import { CONNECTORS } from '../../../src/config/connectors.js'
import { hasCode } from '../../../src/errors.js'
import { projectDir, startGateway, waitFor, type TestGateway } from '../../helpers/gateway.js'
import { EventHubsTestServer } from '../../eventhubs/server.js'
import { eventHubsYaml, publish, uid } from './helpers.js'

const server = new EventHubsTestServer()
beforeAll(() => server.start())
afterAll(() => server.stop())

/** Logs every event as JSON; fails or throws for events whose body says so; writes body.out (or, with body.big, 2 MiB) to the `out` output. */
const FN = `export default async function (events, ctx) {
  const failed = []
  for (const e of events) {
    console.log(JSON.stringify({ id: e.id, key: e.key, source: e.source, time: e.time, body: e.body, meta: e.meta, attempt: e.attempt }))
    // Only object bodies carry instructions (a string has a .big method of its own).
    const b = e.body !== null && typeof e.body === 'object' ? e.body : {}
    if (b.fail) failed.push(e.id)
    if (b.throw) throw new Error('cannot handle ' + e.id)
    if (b.out !== undefined) ctx.output('out', { from: e.id, out: b.out })
    if (b.big === true) ctx.output('out', { from: e.id, out: 'x'.repeat(2 * 1024 * 1024) })
  }
  return { failed }
}`

interface Seen {
  id: string
  key: string
  source: string
  time: string
  body: Record<string, unknown> | string
  meta: Record<string, unknown>
  attempt: number
}

const seen = (t: TestGateway): Seen[] =>
  t.logs.lines.filter((l) => l.source === 'function' && String(l.msg).startsWith('{')).map((l) => JSON.parse(String(l.msg)) as Seen)

async function gateway(hub: string, opts: { trigger?: string; extra?: string; connections?: string; batch?: string } = {}): Promise<TestGateway> {
  const y = eventHubsYaml(server, hub, opts.trigger)
  const t = await startGateway({
    yaml: `connections:\n${y.connectionsYaml}\n${opts.connections ?? ''}functions:\n  fn:\n    code: functions/fn.js\n    trigger: ${y.triggerYaml}\n    batch: ${opts.batch ?? '{ maxSize: 50, maxWaitMs: 10 }'}\n    retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 20 }\n${opts.extra ?? ''}`,
    files: { 'functions/fn.js': FN },
  })
  onTestFinished(() => t.stop())
  return t
}

/** Checkpointed sequence number per partition, from the gateway's store. */
async function checkpoints(t: TestGateway, fn = 'fn'): Promise<Record<string, number>> {
  const rows = await t.gw.store.listVersioned(`eventhubs:${fn}`, 'eh/')
  const out: Record<string, number> = {}
  for (const r of rows) {
    const v = r.value as PartitionRow
    if (v.checkpoint) out[r.key.slice(r.key.lastIndexOf('/') + 1)] = v.checkpoint.sequenceNumber
  }
  return out
}

/** The sluice_source_lag gauge of one partition, from the gateway's Prometheus text. */
async function lagOf(t: TestGateway, source: string): Promise<number | undefined> {
  const { body } = await t.gw.metrics()
  const line = body.split('\n').find((l) => l.startsWith('sluice_source_lag{') && l.includes(`source="${source}"`))
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
}

describe('Event Hubs trigger', () => {
  it('hands events on with id, key, time, body and meta, and checkpoints each partition after success', async () => {
    const hub = uid()
    server.createHub(hub, 2)
    const t = await gateway(hub)
    await publish(server, hub, [{ n: 1 }, { n: 2 }], { partitionId: '0' })
    await publish(server, hub, ['plain text', { n: 4 }], { partitionId: '1' })
    const p = new EventHubProducerClient(server.connectionString(), hub)
    await p.sendBatch([{ body: { n: 5 }, properties: { station: 'st-7', at: new Date('2026-01-02T03:04:05Z') }, contentType: 'application/json' }], {
      partitionKey: 'st-7',
    })
    // Bytes that are not text, and an AMQP value body holding a timestamp and binary.
    await p.sendBatch([{ body: Buffer.from([0xff, 0xfe, 0x00]) }], { partitionId: '1' })
    await p.sendBatch([{ bodyType: 'value', body: { n: 7, at: new Date('2026-01-02T03:04:05Z'), raw: Buffer.from('hi') } }], { partitionId: '1' })
    await p.close()
    await waitFor(() => seen(t).length === 7, 30_000, 'seven events')
    const byBody = new Map(seen(t).map((s) => [JSON.stringify(s.body), s]))
    const first = byBody.get('{"n":1}') as Seen
    expect(first.id).toBe('0-0')
    expect(first.key).toBe('0')
    expect(first.source).toBe(`eventhubs://hub/${hub}/0`)
    expect(first.meta).toMatchObject({ eventHub: hub, consumerGroup: '$Default', partitionId: '0', sequenceNumber: 0, offset: '0' })
    expect(Date.parse(first.time)).toBe(Date.parse(first.meta.enqueuedTimeUtc as string))
    expect(byBody.get('"plain text"')?.id).toBe('1-0')
    const keyed = byBody.get('{"n":5}') as Seen
    expect(keyed.meta).toMatchObject({
      partitionKey: 'st-7',
      properties: { station: 'st-7', at: Date.parse('2026-01-02T03:04:05Z') },
      contentType: 'application/json',
    })
    expect(byBody.get('"//4A"')?.meta.bodyEncoding).toBe('base64')
    expect(seen(t).find((x) => typeof x.body === 'object' && x.body.n === 7)?.body).toEqual({ n: 7, at: '2026-01-02T03:04:05.000Z', raw: 'aGk=' })
    const last = new Map<string, number>()
    for (const s of seen(t)) last.set(String(s.meta.partitionId), Math.max(last.get(String(s.meta.partitionId)) ?? -1, Number(s.meta.sequenceNumber)))
    await waitFor(
      async () => JSON.stringify(await checkpoints(t)) === JSON.stringify(Object.fromEntries([...last].sort())),
      20_000,
      'checkpoints at the last events',
    )
    expect(await checkpoints(t)).toEqual(Object.fromEntries([...last].sort()))
  })

  it('retries a function that throws, dead-letters the event, then checkpoints past it', async () => {
    const hub = uid()
    server.createHub(hub, 1)
    // One event per invocation, so only the throwing event fails.
    const t = await gateway(hub, { batch: '{ maxSize: 1, maxWaitMs: 0 }' })
    await publish(server, hub, [{ n: 0 }, { n: 1, throw: true }, { n: 2 }])
    await waitFor(async () => (await checkpoints(t))['0'] === 2, 30_000, 'checkpoint after the dead letter')
    const letters = await t.gw.listDeadLetters({ function: 'fn' })
    expect(letters).toHaveLength(1)
    expect(letters[0]?.event.id).toBe('0-1')
    expect(letters[0]?.attempts).toBe(3)
    expect(letters[0]?.error.code).toBe('SLUICE_ERR_FUNCTION_THREW')
    expect(letters[0]?.event.meta).toMatchObject({ partitionId: '0', sequenceNumber: 1 })
    const attemptsOf = (n: number) =>
      seen(t)
        .filter((s) => typeof s.body === 'object' && s.body.n === n)
        .map((s) => s.attempt)
    expect(Math.max(...attemptsOf(1))).toBe(3)
    // Events of the partition after the failing one ran once it was dead-lettered, in order.
    expect(attemptsOf(2).length).toBeGreaterThanOrEqual(1)
    await publish(server, hub, [{ n: 3 }])
    await waitFor(async () => (await checkpoints(t))['0'] === 3, 30_000, 'the checkpoint moves on')
  })

  it('checkpoints only after its output binding confirmed the output', async () => {
    const hub = uid()
    const out = uid('out')
    server.createHub(hub, 1)
    server.createHub(out, 1)
    const t = await gateway(hub, {
      connections: `  sink: { kind: eventhubs, connectionString: "${server.connectionString()}", eventHub: ${out} }\n`,
      extra: '    outputs:\n      out: { eventhubs: { connection: sink, partitionKey: alerts } }\n',
    })
    await publish(server, hub, [{ n: 0 }])
    await waitFor(async () => (await checkpoints(t))['0'] === 0, 30_000, 'first checkpoint')
    server.hold(out)
    await publish(server, hub, [
      { n: 1, out: 'a' },
      { n: 2, out: 'b' },
    ])
    // The function ran and its output reached the hub, but the hub has not confirmed it yet.
    await waitFor(() => server.heldCount(out) > 0, 30_000, 'output held at the hub')
    expect(server.bodies(out)[0]).toEqual({ from: '0-1', out: 'a' })
    expect((await checkpoints(t))['0']).toBe(0)
    // The lag counts what is enqueued but not checkpointed: both events after the checkpoint.
    await waitFor(async () => (await lagOf(t, `${hub}/0`)) === 2, 30_000, 'lag of the two unfinished events')
    server.release(out)
    await waitFor(async () => (await checkpoints(t))['0'] === 2, 30_000, 'checkpoint after the confirmation')
    await waitFor(async () => (await lagOf(t, `${hub}/0`)) === 0, 30_000, 'no lag')
    expect(server.bodies(out)).toEqual([
      { from: '0-1', out: 'a' },
      { from: '0-2', out: 'b' },
    ])
    expect(server.hubs.get(out)?.partitions[0]?.events.every((e) => e.partitionKey === 'alerts')).toBe(true)
  })

  it('fails an invocation whose output does not fit in a message, and dead-letters it after its attempts', async () => {
    const hub = uid()
    const out = uid('out')
    server.createHub(hub, 1)
    server.createHub(out, 1)
    const t = await gateway(hub, {
      connections: `  sink: { kind: eventhubs, connectionString: "${server.connectionString()}", eventHub: ${out} }\n`,
      extra: '    outputs:\n      out: { eventhubs: { connection: sink } }\n',
      batch: '{ maxSize: 1, maxWaitMs: 0 }',
    })
    // The test server takes messages up to 1 MiB: the function's 2 MiB output cannot be sent.
    await publish(server, hub, [{ n: 0, out: 'small' }])
    await waitFor(async () => (await checkpoints(t))['0'] === 0, 30_000, 'the small output went out')
    const producer = new EventHubProducerClient(server.connectionString(), hub)
    await producer.sendBatch([{ body: { n: 1, big: true } }])
    await producer.close()
    await waitFor(async () => (await t.gw.listDeadLetters({ function: 'fn' })).length === 1, 30_000, 'dead letter')
    const [letter] = await t.gw.listDeadLetters({ function: 'fn' })
    expect(letter?.event.id).toBe('0-1')
    expect(letter?.error.code).toBe('SLUICE_ERR_OUTPUT_FAILED')
    expect(letter?.error.message).toMatch(/does not fit in one message/)
    await waitFor(async () => (await checkpoints(t))['0'] === 1, 30_000, 'checkpoint past the dead letter')
    expect(server.bodies(out)).toEqual([{ from: '0-0', out: 'small' }])
  })

  it('starts where startPosition says when there is no checkpoint', async () => {
    const hub = uid()
    server.createHub(hub, 1)
    await publish(server, hub, [{ n: 0 }, { n: 1 }, { n: 2 }])
    const latest = await gateway(hub, { trigger: 'startPosition: latest' })
    const fromSeq = await gateway(hub, { trigger: 'consumerGroup: replay, startPosition: { sequenceNumber: 1 }' })
    await waitFor(() => seen(fromSeq).length === 1, 30_000, 'the event after sequence number 1')
    expect(seen(fromSeq).map((s) => s.id)).toEqual(['0-2'])
    // The latest receiver is attached once its consumer group has a receiver on the partition.
    const log = server.hubs.get(hub)?.partitions[0]
    await waitFor(() => log && server.consumers.ofPartition(log).some((c) => c.group === '$Default'), 30_000, 'latest receiver')
    await publish(server, hub, [{ n: 3 }])
    await waitFor(() => seen(latest).length === 1 && seen(fromSeq).length === 2, 30_000, 'the new event')
    expect(seen(latest).map((s) => s.id)).toEqual(['0-3'])
  })

  it('with startPosition: latest checkpoints the start at once, so a restart misses nothing enqueued while it was down', async () => {
    const hub = uid()
    server.createHub(hub, 1)
    await publish(server, hub, [{ n: 0 }, { n: 1 }, { n: 2 }])
    const project = projectDir({ 'functions/fn.js': FN })
    onTestFinished(project.cleanup)
    const y = eventHubsYaml(server, hub, 'startPosition: latest')
    const yaml = `connections:\n${y.connectionsYaml}\nfunctions:\n  fn:\n    code: functions/fn.js\n    trigger: ${y.triggerYaml}\n`
    const first = await startGateway({ yaml, dir: project.dir })
    // No event was processed, yet the partition's start (its last event) is checkpointed.
    await waitFor(async () => (await checkpoints(first))['0'] === 2, 30_000, 'the start checkpoint')
    await first.stop()
    await publish(server, hub, [{ n: 3 }, { n: 4 }])
    const second = await startGateway({ yaml, dir: project.dir })
    onTestFinished(() => second.stop())
    await waitFor(() => seen(second).length === 2, 30_000, 'the two events enqueued while the gateway was down')
    expect(seen(first)).toEqual([])
    expect(seen(second).map((e) => e.id)).toEqual(['0-3', '0-4'])
  })

  it("stops reading from the hub while the function's backlog is full", async () => {
    const hub = uid()
    server.createHub(hub, 1)
    const t = await gateway(hub, {
      trigger: 'maxBatchSize: 10, prefetchCount: 10',
      extra: '    maxBacklog: 20\n    scale: { max: 1 }\n',
    })
    const total = 400
    await publish(
      server,
      hub,
      Array.from({ length: total }, (_, n) => ({ n })),
    )
    const receiver = server.consumers.ofPartition(server.hubs.get(hub)?.partitions[0] as never)[0]
    expect(receiver).toBeDefined()
    // Events the server sent but the gateway has not finished: bounded by the backlog limit, one
    // batch over it, the link's prefetch and the batch the SDK holds, never the whole partition.
    const bound = 20 + 10 + 10 + 10
    let worst = 0
    await waitFor(
      () => {
        const done = t.gw.function('fn')?.counts.eventsDone ?? 0
        worst = Math.max(worst, (receiver?.next ?? 0) - done)
        return done === total
      },
      120_000,
      'every event',
    )
    expect(worst).toBeGreaterThan(0)
    expect(worst).toBeLessThanOrEqual(bound)
  })
})

describe('Event Hubs configuration and errors', () => {
  it('fails to start with a coded error for a wrong key and for a missing hub', async () => {
    const p = projectDir({ 'functions/fn.js': FN })
    onTestFinished(() => p.cleanup())
    const start = (cs: string, hub: string) =>
      startGateway({
        dir: p.dir,
        yaml: `connections:\n  hub: { kind: eventhubs, connectionString: "${cs}", eventHub: ${hub} }\nfunctions:\n  fn:\n    code: functions/fn.js\n    trigger: { eventhubs: { connection: hub } }\n`,
      }).then(
        async (t) => {
          await t.stop()
          throw new Error('the gateway started')
        },
        (e: unknown) => e,
      )
    const hub = uid()
    server.createHub(hub, 1)
    const wrongKey = await start(server.connectionString().replace('SharedAccessKey=v', 'SharedAccessKey=wrong'), hub)
    expect(hasCode(wrongKey, 'SLUICE_ERR_CONNECTOR_EVENTHUBS_UNAUTHORIZED')).toBe(true)
    const missing = await start(server.connectionString(), 'no-such-hub')
    expect(hasCode(missing, 'SLUICE_ERR_CONNECTOR_EVENTHUBS_NOT_FOUND')).toBe(true)
    expect((missing as Error).message).toContain('no-such-hub')
  })

  it('reports option mistakes at their key path', async () => {
    const paths = async (trigger: string) => {
      const yaml = `connections:
  hub: { kind: eventhubs, connectionString: "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v", eventHub: h }
functions:
  fn:
    code: fn.js
    trigger:
      eventhubs:
        connection: hub
${trigger}`
      const err = await parseConfig(yaml, join(process.cwd(), 'gateway.yaml'), { connectors: CONNECTORS, env: {}, compile: false }).then(
        () => undefined,
        (e: unknown) => e,
      )
      return issuesOf(err).map((i) => i.path)
    }
    expect(
      await paths('        maxBatchSize: 0\n        checkpointStore: { blob: { connectionString: x, container: Not_Valid } }\n        consumergroup: typo\n'),
    ).toEqual(['functions.fn.trigger.eventhubs.maxBatchSize', 'functions.fn.trigger.eventhubs.checkpointStore', 'functions.fn.trigger.eventhubs.consumergroup'])
    expect(
      await paths('        startPosition: { enqueuedOn: "2026-13-45Tnope" }\n        loadBalancing: { updateIntervalMs: 5000, ownershipExpirationMs: 5000 }\n'),
    ).toEqual(['functions.fn.trigger.eventhubs.startPosition.enqueuedOn', 'functions.fn.trigger.eventhubs.loadBalancing.ownershipExpirationMs'])
  })
})
