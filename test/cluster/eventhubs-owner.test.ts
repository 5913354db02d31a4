/**
 * The Event Hubs owner id is the instance id: a gateway killed with SIGKILL and started again
 * under the same instance.id recognises the partitions it owned as its own and reads them at
 * once. The ownership expiry is an hour here, so a restart that had to wait it out (a new owner
 * id per start, as before) could not process anything within the test.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import type { PartitionRow } from '../../connectors/eventhubs/index.js'
import { SqliteStore } from '../../src/store/sqlite.js'
import { publish, uid } from '../connectors/eventhubs/helpers.js'
import { EventHubsTestServer } from '../eventhubs/server.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { projectDir, waitFor } from '../helpers/gateway.js'

const server = new EventHubsTestServer()
beforeAll(() => server.start())
afterAll(() => server.stop())

const FN = `export default async function (events) {
  for (const e of events) console.log('seen ' + e.id)
}`

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

async function owners(file: string): Promise<Record<string, string>> {
  return Object.fromEntries(Object.entries(await rows(file)).map(([p, r]) => [p, r.ownerId]))
}

const seen = (gp: GatewayProcess) => gp.lines.filter((l) => l.source === 'function' && String(l.msg).startsWith('seen ')).map((l) => String(l.msg).slice(5))

describe('Event Hubs owner id across a restart', () => {
  it('takes its partitions back at once when it restarts under the same instance id', async () => {
    const hub = uid('own')
    server.createHub(hub, 2)
    const id = `eh-${randomBytes(4).toString('hex')}`
    const p = projectDir({
      'functions/fn.js': FN,
      'gateway.yaml': `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1, prewarm: 1 }
store: { path: state.db }
instance: { id: ${id} }
connections:
  hub: { kind: eventhubs, connectionString: "${server.connectionString()}", eventHub: ${hub} }
functions:
  fn:
    code: functions/fn.js
    trigger: { eventhubs: { connection: hub, maxWaitTimeInSeconds: 0.5, loadBalancing: { updateIntervalMs: 500, ownershipExpirationMs: 3600000 } } }
    batch: { maxSize: 10, maxWaitMs: 10 }
`,
    })
    onTestFinished(() => p.cleanup())
    const storeFile = join(p.dir, 'state.db')
    const first = new GatewayProcess(p.dir)
    onTestFinished(() => first.kill())
    await first.start(120_000)
    await waitFor(
      async () => {
        const o = await owners(storeFile)
        return o['0'] === `${id}:fn` && o['1'] === `${id}:fn`
      },
      60_000,
      'both partitions owned by the instance',
    )
    await publish(server, hub, [{ n: 0 }], { partitionId: '0' })
    await waitFor(() => seen(first).includes('0-0'), 60_000, 'the first event')
    // Checkpoints follow at checkpointIntervalMs: wait for the one past 0-0, so what the restart
    // reads again is only what was enqueued while it was down.
    await waitFor(async () => ((await rows(storeFile))['0']?.checkpoint?.sequenceNumber ?? -1) >= 0, 60_000, 'the checkpoint past the first event')

    // Killed: its claims stay in the store, unexpired for an hour.
    await first.kill()
    await publish(server, hub, [{ n: 1 }, { n: 2 }], { partitionId: '0' })
    await publish(server, hub, [{ n: 0 }, { n: 1 }], { partitionId: '1' })

    const second = new GatewayProcess(p.dir)
    onTestFinished(() => second.kill())
    await second.start(120_000)
    await waitFor(() => ['0-1', '0-2', '1-0', '1-1'].every((e) => seen(second).includes(e)), 90_000, 'the events enqueued while it was down')
    expect(seen(second)).not.toContain('0-0')
    expect(await owners(storeFile)).toEqual({ '0': `${id}:fn`, '1': `${id}:fn` })
  }, 300_000)
})
