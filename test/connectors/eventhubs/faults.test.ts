/**
 * Event Hubs fault tests against the test server: a gateway killed between a function's success
 * and the checkpoint, a partition stolen by a consumer with a higher owner level, and a partition
 * taken over by a second gateway instance on the same store. Each checks a ledger of what the
 * source holds against what functions saw and what was checkpointed.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { EventHubConsumerClient, earliestEventPosition, type ReceivedEventData } from '@azure/event-hubs'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import type { PartitionRow } from '../../../connectors/eventhubs/index.js'
import { SqliteStore } from '../../../src/store/sqlite.js'
import { projectDir, startGateway, waitFor, type TestGateway } from '../../helpers/gateway.js'
import { EventHubsTestServer } from '../../eventhubs/server.js'
import { publish, uid } from './helpers.js'
import { sluiceArgs } from '../../helpers/sluice-bin.js'

const server = new EventHubsTestServer()
beforeAll(() => server.start())
afterAll(() => server.stop())

/** Writes each event's id to the `out` output and logs it. */
const FN = `export default async function (events, ctx) {
  for (const e of events) {
    console.log('seen ' + e.id)
    ctx.output('out', { id: e.id })
  }
}`

const LB = 'loadBalancing: { updateIntervalMs: 500, ownershipExpirationMs: 3000 }'

function configYaml(hub: string, out: string, dir: string, absolute: boolean): string {
  const cs = server.connectionString()
  return `connections:
  hub: { kind: eventhubs, connectionString: "${cs}", eventHub: ${hub} }
  sink: { kind: eventhubs, connectionString: "${cs}", eventHub: ${out} }
functions:
  fn:
    code: ${absolute ? join(dir, 'functions/fn.js') : 'functions/fn.js'}
    trigger: { eventhubs: { connection: hub, maxWaitTimeInSeconds: 0.5, ${LB} } }
    batch: { maxSize: 10, maxWaitMs: 10 }
    outputs:
      out: { eventhubs: { connection: sink } }
`
}

/** Checkpointed sequence number and owner per partition, read from a store file. */
async function rows(file: string): Promise<Record<string, PartitionRow>> {
  const store = new SqliteStore(file)
  try {
    const out: Record<string, PartitionRow> = {}
    for (const r of await store.listVersioned('eventhubs:fn', 'eh/')) out[r.key.slice(r.key.lastIndexOf('/') + 1)] = r.value as PartitionRow
    return out
  } finally {
    await store.close()
  }
}

const outputIds = (out: string) => server.bodies(out).map((b) => (b as { id: string }).id)
const count = (ids: string[], id: string) => ids.filter((x) => x === id).length

/** `sluice start` in a child process (TypeScript sources through tsx), JSON logs collected. */
function startChild(configFile: string): { child: ChildProcess; lines: Array<Record<string, unknown>>; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [...sluiceArgs(), 'start', '--config', configFile], {
    cwd: resolve('.'),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines: Array<Record<string, unknown>> = []
  let rest = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    const parts = (rest + chunk.toString()).split('\n')
    rest = parts.pop() ?? ''
    for (const p of parts) {
      try {
        lines.push(JSON.parse(p) as Record<string, unknown>)
      } catch {
        // not a log line
      }
    }
  })
  child.stderr?.resume()
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return { child, lines, exited }
}

/** Two fresh hubs (input with 2 partitions, output), a project folder, and a gateway on them. */
async function gatewayOnNewHubs(prefix: string): Promise<{ hub: string; out: string; dir: string; yaml: string; t: TestGateway }> {
  const hub = uid(prefix)
  const out = uid('out')
  server.createHub(hub, 2)
  server.createHub(out, 1)
  const p = projectDir({})
  onTestFinished(() => p.cleanup())
  const yaml = configYaml(hub, out, p.dir, false)
  const t = await startGateway({ dir: p.dir, yaml, files: { 'functions/fn.js': FN } })
  return { hub, out, dir: p.dir, yaml, t }
}

describe('Event Hubs faults', () => {
  it('redelivers what a killed gateway had run but not checkpointed, and nothing it had checkpointed', async () => {
    const hub = uid('kill')
    const out = uid('out')
    server.createHub(hub, 2)
    server.createHub(out, 1)
    const p = projectDir({ 'functions/fn.js': FN })
    onTestFinished(() => p.cleanup())
    const configFile = join(p.dir, 'gateway.yaml')
    const storeFile = join(p.dir, 'state.db')
    writeFileSync(
      configFile,
      `http: { port: 0, host: 127.0.0.1 }\nworkers: { hosts: 1, prewarm: 1 }\nstore: { path: ${storeFile} }\n${configYaml(hub, out, p.dir, true)}`,
    )
    const ids = (from: number, to: number, partition: string) => Array.from({ length: to - from }, (_, i) => `${partition}-${from + i}`)

    const first = startChild(configFile)
    await waitFor(() => first.lines.some((l) => l.msg === 'gateway up'), 60_000, 'first gateway up')
    await publish(
      server,
      hub,
      Array.from({ length: 10 }, (_, n) => ({ n })),
      { partitionId: '0' },
    )
    await publish(
      server,
      hub,
      Array.from({ length: 10 }, (_, n) => ({ n })),
      { partitionId: '1' },
    )
    await waitFor(
      async () => {
        const r = await rows(storeFile)
        return r['0']?.checkpoint?.sequenceNumber === 9 && r['1']?.checkpoint?.sequenceNumber === 9
      },
      60_000,
      'the first 20 events checkpointed',
    )

    // The functions run and write their outputs, but the output hub does not confirm them: the
    // invocations succeeded, and their input is not checkpointed yet.
    server.hold(out)
    await publish(
      server,
      hub,
      Array.from({ length: 10 }, (_, n) => ({ n: 10 + n })),
      { partitionId: '0' },
    )
    await publish(
      server,
      hub,
      Array.from({ length: 10 }, (_, n) => ({ n: 10 + n })),
      { partitionId: '1' },
    )
    await waitFor(
      () => outputIds(out).some((id) => id.startsWith('0-1')) && outputIds(out).some((id) => id.startsWith('1-1')),
      60_000,
      'outputs of both partitions written',
    )
    const ranBeforeKill = outputIds(out).filter((id) => Number(id.split('-')[1]) >= 10)
    first.child.kill('SIGKILL')
    await first.exited
    server.release(out)
    const atKill = await rows(storeFile)
    expect(atKill['0']?.checkpoint?.sequenceNumber).toBe(9)
    expect(atKill['1']?.checkpoint?.sequenceNumber).toBe(9)

    // The next gateway takes the partitions once the dead owner's claims expire, from the checkpoints.
    const second = startChild(configFile)
    const all = [...ids(0, 20, '0'), ...ids(0, 20, '1')]
    await waitFor(() => all.every((id) => outputIds(out).includes(id)), 90_000, 'every event processed')
    await waitFor(
      async () => {
        const r = await rows(storeFile)
        return r['0']?.checkpoint?.sequenceNumber === 19 && r['1']?.checkpoint?.sequenceNumber === 19
      },
      60_000,
      'everything checkpointed',
    )
    second.child.kill('SIGTERM')
    expect(await second.exited).toBe(0)

    const outputs = outputIds(out)
    // Nothing lost: every event the hub holds was processed.
    expect(all.filter((id) => count(outputs, id) === 0)).toEqual([])
    // What ran before the kill without a checkpoint ran again (at-least-once)...
    expect(ranBeforeKill.length).toBeGreaterThan(0)
    expect(ranBeforeKill.filter((id) => count(outputs, id) < 2)).toEqual([])
    // ...and nothing that was checkpointed did.
    expect([...ids(0, 10, '0'), ...ids(0, 10, '1')].filter((id) => count(outputs, id) !== 1)).toEqual([])
    expect(second.lines.some((l) => l.msg === 'partition claimed')).toBe(true)
  })

  it('stops a partition taken by a receiver with a higher owner level and never checkpoints it again', async () => {
    const { hub, out, dir, t } = await gatewayOnNewHubs('steal')
    let stopped = false
    onTestFinished(async () => {
      if (!stopped) await t.gw.stop()
    })
    const seenBy = (g: TestGateway) => g.logs.lines.filter((l) => l.source === 'function').map((l) => String(l.msg).slice(5))
    await publish(server, hub, [{ n: 0 }], { partitionId: '0' })
    await publish(server, hub, [{ n: 0 }], { partitionId: '1' })
    await waitFor(
      async () => {
        const r = await rows(join(dir, 'state.db'))
        return r['0']?.checkpoint?.sequenceNumber === 0 && r['1']?.checkpoint?.sequenceNumber === 0
      },
      30_000,
      'first checkpoints',
    )

    // A batch of partition 0 is in flight (its output unconfirmed) when the partition is stolen.
    server.hold(out)
    await publish(server, hub, [{ n: 1 }], { partitionId: '0' })
    await waitFor(() => outputIds(out).includes('0-1'), 30_000, 'partition 0 in flight')
    const thief = new EventHubConsumerClient('$Default', server.connectionString(), hub)
    onTestFinished(() => thief.close())
    const stolen: ReceivedEventData[] = []
    const sub = thief.subscribe(
      '0',
      { processEvents: async (ev) => void stolen.push(...ev), processError: async () => undefined },
      { startPosition: earliestEventPosition, ownerLevel: 1, maxWaitTimeInSeconds: 0.2 },
    )
    onTestFinished(() => sub.close())
    await waitFor(() => t.logs.find(/partition ownership lost/).some((l) => l.partitionId === '0'), 30_000, 'the gateway notices the loss')
    server.release(out)
    await waitFor(() => (t.gw.function('fn')?.counts.eventsDone ?? 0) >= 3, 30_000, 'the in-flight batch finished')

    // Partition 0 goes on at the thief only; partition 1 stays with the gateway and is checkpointed.
    await publish(server, hub, [{ n: 2 }], { partitionId: '0' })
    await publish(server, hub, [{ n: 1 }], { partitionId: '1' })
    await waitFor(() => stolen.some((e) => e.sequenceNumber === 2), 30_000, 'the thief reads on')
    await waitFor(async () => (await rows(join(dir, 'state.db')))['1']?.checkpoint?.sequenceNumber === 1, 30_000, 'partition 1 checkpointed')
    await t.gw.stop()
    stopped = true

    const r = await rows(join(dir, 'state.db'))
    // The batch that finished after the loss was not checkpointed, nor anything later.
    expect(r['0']?.checkpoint?.sequenceNumber).toBe(0)
    expect(r['1']?.checkpoint?.sequenceNumber).toBe(1)
    expect(seenBy(t)).not.toContain('0-2')
    expect(seenBy(t)).toContain('1-1')
    expect(server.consumers.stolen.some((s) => s.hub === hub && s.partition === '0')).toBe(true)
  })

  it('reports the trigger down while the namespace is away, and resumes at the checkpoints after', async () => {
    const { hub, t } = await gatewayOnNewHubs('down')
    onTestFinished(() => t.gw.stop())
    const seenBy = () => t.logs.lines.filter((l) => l.source === 'function').map((l) => String(l.msg).slice(5))
    await publish(server, hub, [{ n: 0 }], { partitionId: '0' })
    await publish(server, hub, [{ n: 0 }], { partitionId: '1' })
    await waitFor(() => seenBy().length === 2, 30_000, 'first events')
    await server.stop()
    try {
      const down = await waitFor(() => t.gw.health().connections.find((c) => !c.up), 60_000, 'the trigger reported down')
      expect(down.detail).toMatch(/ECONNREFUSED/)
      expect(t.gw.health().status).toBe('degraded')
    } finally {
      await server.start()
    }
    await publish(server, hub, [{ n: 1 }], { partitionId: '0' })
    await publish(server, hub, [{ n: 1 }], { partitionId: '1' })
    await waitFor(() => seenBy().includes('0-1') && seenBy().includes('1-1'), 60_000, 'events after the outage')
    await waitFor(() => t.gw.health().connections.every((c) => c.up), 30_000, 'the trigger up again')
    // Each event once: the partitions resumed at their checkpoints.
    expect([...seenBy()].sort()).toEqual(['0-0', '0-1', '1-0', '1-1'])
    expect(t.logs.find(/^event hubs error$/).every((l) => (l.err as { code?: string }).code === 'SLUICE_ERR_CONNECTOR_EVENTHUBS_CONNECTION')).toBe(true)
  })

  it('hands a partition to a second gateway on the same store, which resumes from the last checkpoint', async () => {
    const { hub, out, dir, yaml, t: a } = await gatewayOnNewHubs('share')
    onTestFinished(() => a.gw.stop())
    const seenBy = (g: TestGateway) => g.logs.lines.filter((l) => l.source === 'function').map((l) => String(l.msg).slice(5))
    const claimed = (g: TestGateway) => g.logs.find('partition claimed').map((l) => String(l.partitionId))
    await waitFor(() => claimed(a).length === 2, 30_000, 'the first gateway owns both partitions')

    server.hold(out)
    await publish(server, hub, [{ n: 0 }], { partitionId: '0' })
    await publish(server, hub, [{ n: 0 }], { partitionId: '1' })
    await waitFor(() => outputIds(out).includes('0-0') && outputIds(out).includes('1-0'), 30_000, 'both partitions in flight')

    // Another instance: its own instance id, hence its own Event Hubs owner id.
    const b = await startGateway({ dir: dir, yaml: `instance: { id: second-${uid('i')} }\n${yaml}`, files: {} })
    onTestFinished(() => b.gw.stop())
    await waitFor(() => claimed(b).length === 1, 30_000, 'the second gateway takes a partition')
    const moved = claimed(b)[0] as string
    const kept = moved === '0' ? '1' : '0'
    await waitFor(() => a.logs.find(/partition ownership lost/).some((l) => l.partitionId === moved), 30_000, 'the first gateway lets it go')
    const ownerB = b.logs.find('partition claimed')[0]?.ownerId
    expect((await rows(join(dir, 'state.db')))[moved]?.ownerId).toBe(ownerB)

    server.release(out)
    // The moved partition's in-flight event was not checkpointed by its old owner: the new one runs it again.
    await waitFor(() => seenBy(b).includes(`${moved}-0`), 30_000, 'redelivered to the new owner')
    await publish(server, hub, [{ n: 1 }], { partitionId: moved })
    await publish(server, hub, [{ n: 1 }], { partitionId: kept })
    await waitFor(() => seenBy(b).includes(`${moved}-1`) && seenBy(a).includes(`${kept}-1`), 30_000, 'each gateway reads its partition')
    await waitFor(
      async () => {
        const r = await rows(join(dir, 'state.db'))
        return r[moved]?.checkpoint?.sequenceNumber === 1 && r[kept]?.checkpoint?.sequenceNumber === 1
      },
      30_000,
      'both partitions checkpointed by their owners',
    )
    expect(seenBy(a)).not.toContain(`${moved}-1`)
    expect(seenBy(b)).not.toContain(`${kept}-1`)
    expect(claimed(a)).toHaveLength(2)
  })
})
