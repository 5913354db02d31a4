/**
 * The Event Hubs trigger with the Azure Blob checkpoint store (@azure/eventhubs-checkpointstore-blob)
 * against Azurite, a real Azure Storage emulator, started here on a free port with its data in a
 * temp folder.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { ContainerClient } from '@azure/storage-blob'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { projectDir, startGateway, waitFor, type TestGateway } from '../../helpers/gateway.js'
import { EventHubsTestServer } from '../../eventhubs/server.js'
import { eventHubsYaml, publish, uid } from './helpers.js'

/** Azurite's well-known development account. */
const ACCOUNT = 'devstoreaccount1'
const KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

const server = new EventHubsTestServer()
let azurite: ChildProcess | undefined
let azuriteDir = ''
let storage = ''

async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const addr = s.address()
  await new Promise<void>((r) => s.close(() => r()))
  return typeof addr === 'object' && addr ? addr.port : 0
}

beforeAll(async () => {
  await server.start()
  azuriteDir = mkdtempSync(join(tmpdir(), 'sluice-azurite-'))
  const port = await freePort()
  azurite = spawn(
    resolve('node_modules/.bin/azurite-blob'),
    ['--blobHost', '127.0.0.1', '--blobPort', String(port), '--location', azuriteDir, '--silent', '--skipApiVersionCheck', '--disableTelemetry'],
    {
      stdio: 'ignore',
    },
  )
  storage = `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT};AccountKey=${KEY};BlobEndpoint=http://127.0.0.1:${port}/${ACCOUNT};`
  const probe = new ContainerClient(storage, 'probe')
  await waitFor(
    () =>
      probe.exists().then(
        () => true,
        () => false,
      ),
    60_000,
    'azurite up',
  )
})

afterAll(async () => {
  await server.stop()
  if (azurite && azurite.exitCode === null) {
    const exited = new Promise((r) => azurite?.once('exit', r))
    azurite.kill('SIGTERM')
    await exited
  }
  rmSync(azuriteDir, { recursive: true, force: true })
})

const FN = `export default async function (events) { for (const e of events) console.log('seen ' + e.id) }`
const seen = (t: TestGateway) => t.logs.lines.filter((l) => l.source === 'function').map((l) => String(l.msg).slice(5))

/** Blob metadata by blob name under the container. */
async function blobs(container: string): Promise<Map<string, Record<string, string>>> {
  const out = new Map<string, Record<string, string>>()
  for await (const b of new ContainerClient(storage, container).listBlobsFlat({ includeMetadata: true })) out.set(b.name, b.metadata ?? {})
  return out
}

describe('Event Hubs trigger with the blob checkpoint store (Azurite)', () => {
  it('keeps ownership and checkpoints in blobs, and resumes from them after a restart', async () => {
    const hub = uid('blob')
    const container = uid('ck').toLowerCase()
    server.createHub(hub, 2)
    const p = projectDir({ 'functions/fn.js': FN })
    onTestFinished(() => p.cleanup())
    const y = eventHubsYaml(server, hub, `checkpointStore: { blob: { connectionString: "${storage}", container: ${container} } }`)
    const yaml = `connections:\n${y.connectionsYaml}\nfunctions:\n  fn:\n    code: functions/fn.js\n    trigger: ${y.triggerYaml}\n    batch: { maxSize: 20, maxWaitMs: 10 }\n`
    const t1 = await startGateway({ dir: p.dir, yaml })
    let running: TestGateway | undefined = t1
    onTestFinished(async () => {
      await running?.gw.stop()
    })
    await publish(
      server,
      hub,
      Array.from({ length: 5 }, (_, n) => ({ n })),
      { partitionId: '0' },
    )
    await publish(
      server,
      hub,
      Array.from({ length: 3 }, (_, n) => ({ n })),
      { partitionId: '1' },
    )
    await waitFor(() => seen(t1).length === 8, 30_000, 'eight events')
    const checkpointOf = async (pid: string) => {
      for (const [name, meta] of await blobs(container)) if (name.endsWith(`/checkpoint/${pid}`)) return Number(meta.sequencenumber)
      return undefined
    }
    await waitFor(async () => (await checkpointOf('0')) === 4 && (await checkpointOf('1')) === 2, 30_000, 'checkpoint blobs')
    const ownership = [...(await blobs(container))].filter(([name]) => name.includes('/ownership/'))
    expect(ownership).toHaveLength(2)
    const owner = t1.logs.find('partition claimed')[0]?.ownerId
    expect(ownership.every(([, meta]) => meta.ownerid === owner)).toBe(true)

    await t1.gw.stop()
    // Stopping gives the partitions up (empty owner) and keeps the checkpoints.
    expect([...(await blobs(container))].filter(([name]) => name.includes('/ownership/')).every(([, meta]) => meta.ownerid === '')).toBe(true)
    const t2 = await startGateway({ dir: p.dir, yaml })
    running = t2
    await publish(server, hub, [{ n: 5 }], { partitionId: '0' })
    await waitFor(() => seen(t2).includes('0-5'), 30_000, 'the new event')
    await waitFor(async () => (await checkpointOf('0')) === 5, 30_000, 'checkpoint moved on')
    expect(seen(t2)).toEqual(['0-5'])
  })

  it('splits the partitions between two gateways on one container', async () => {
    const hub = uid('blob')
    const container = uid('ck').toLowerCase()
    server.createHub(hub, 2)
    const y = eventHubsYaml(server, hub, `checkpointStore: { blob: { connectionString: "${storage}", container: ${container} } }`)
    const yaml = `connections:\n${y.connectionsYaml}\nfunctions:\n  fn:\n    code: functions/fn.js\n    trigger: ${y.triggerYaml}\n`
    // Two instances: each its own instance id, hence its own Event Hubs owner id.
    const a = await startGateway({ yaml: `instance: { id: first-${uid('i')} }\n${yaml}`, files: { 'functions/fn.js': FN } })
    onTestFinished(() => a.stop())
    const claimed = (g: TestGateway) => g.logs.find('partition claimed').map((l) => String(l.partitionId))
    await waitFor(() => claimed(a).length === 2, 30_000, 'the first gateway owns both partitions')
    const b = await startGateway({ yaml: `instance: { id: second-${uid('i')} }\n${yaml}`, files: { 'functions/fn.js': FN } })
    onTestFinished(() => b.stop())
    await waitFor(() => claimed(b).length === 1, 30_000, 'the second gateway takes one')
    const moved = claimed(b)[0] as string
    const kept = moved === '0' ? '1' : '0'
    await waitFor(() => a.logs.find(/partition ownership lost/).some((l) => l.partitionId === moved), 30_000, 'the first lets it go')
    await publish(server, hub, [{ n: 0 }], { partitionId: moved })
    await publish(server, hub, [{ n: 0 }], { partitionId: kept })
    await waitFor(() => seen(b).includes(`${moved}-0`) && seen(a).includes(`${kept}-0`), 30_000, 'each reads its own partition')
    expect(seen(a)).not.toContain(`${moved}-0`)
    expect(seen(b)).not.toContain(`${kept}-0`)
    const owners = new Map(
      [...(await blobs(container))].filter(([n]) => n.includes('/ownership/')).map(([n, m]) => [n.slice(n.lastIndexOf('/') + 1), m.ownerid]),
    )
    expect(owners.get(moved)).toBe(b.logs.find('partition claimed')[0]?.ownerId)
    expect(owners.get(kept)).toBe(a.logs.find('partition claimed')[0]?.ownerId)
  })

  it('fails to start with a coded error when the storage account cannot be reached (required connection)', async () => {
    const hub = uid('blob')
    server.createHub(hub, 1)
    const bad = storage.replace(/BlobEndpoint=http:\/\/127\.0\.0\.1:\d+/, `BlobEndpoint=http://127.0.0.1:${await freePort()}`)
    const y = eventHubsYaml(server, hub, `checkpointStore: { blob: { connectionString: "${bad}", container: nowhere } }`)
    // required: true keeps the fail-fast start (otherwise the gateway starts with the trigger down, retrying).
    const err = await startGateway({
      yaml: `connections:\n${y.connectionsYaml.replace(/ }$/, ', required: true }')}\nfunctions:\n  fn:\n    code: functions/fn.js\n    trigger: ${y.triggerYaml}\n`,
      files: { 'functions/fn.js': FN },
    }).then(
      async (t) => {
        await t.stop()
        return undefined
      },
      (e: unknown) => e,
    )
    expect((err as { code?: string } | undefined)?.code).toBe('SLUICE_ERR_CONNECTOR_EVENTHUBS_CHECKPOINT')
  })
})
