/**
 * The cluster registry with two in-process gateways sharing one PostgreSQL store (the local
 * server, a fresh schema per test): GET /admin/instances on either lists both, live, with their
 * report; a stopped one is marked stopped and a silent one expired; the start warnings (MQTT
 * trigger without share on two live instances, per-key order over a $share group) are logged with
 * their codes and listed; a second instance under a live one's id refuses to start, and another
 * process beating under a running instance's id is reported; /livez answers without a key.
 */
import { randomBytes } from 'node:crypto'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { ClusterView } from '../../src/cluster/types.js'
import { sluiceVersion } from '../../src/cluster/identity.js'
import { startGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { foreignInstance } from '../helpers/instance-report.js'
import { PG_URL, tempSchema } from '../store/pg.js'

const KEY = 'cluster-test-admin-key'
const NOOP = 'export default async function () {}\n'

interface Opts {
  schema: string
  id: string
  topic: string
}

async function gateway(o: Opts): Promise<TestGateway> {
  const t = await startGateway({
    store: `{ kind: postgres, url: "${PG_URL}", schema: ${o.schema} }`,
    yaml: [
      `admin: { key: ${KEY} }`,
      `instance: { id: ${o.id}, heartbeatMs: 200, expiryMs: 1000 }`,
      'connections:',
      '  devices: { kind: mqtt, url: "mqtt://127.0.0.1:1883" }',
      'functions:',
      '  plain:',
      '    code: functions/noop.ts',
      `    trigger: { mqtt: { connection: devices, topic: "${o.topic}/plain", clientId: "${o.id}-plain" } }`,
      '  shared:',
      '    code: functions/noop.ts',
      `    trigger: { mqtt: { connection: devices, topic: "${o.topic}/shared", share: g${o.topic.replace(/\W/g, '')} } }`,
      '',
    ].join('\n'),
    files: { 'functions/noop.ts': NOOP },
  })
  onTestFinished(() => t.stop())
  return t
}

const view = async (t: TestGateway): Promise<ClusterView> => {
  const r = await fetch(`${t.url}/admin/instances`, { headers: { authorization: `Bearer ${KEY}` } })
  expect(r.status).toBe(200)
  return (await r.json()) as ClusterView
}

const uid = () => randomBytes(4).toString('hex')

describe('cluster registry on PostgreSQL', () => {
  it('lists both live instances with their report, then one stopped and a silent one expired', async () => {
    const schema = tempSchema()
    const topic = `sluice-test/cluster/${uid()}`
    const [ida, idb] = [`a-${uid()}`, `b-${uid()}`]
    const a = await gateway({ schema, id: ida, topic })
    const b = await gateway({ schema, id: idb, topic })
    const both = await waitFor(
      async () => {
        const v = await view(a)
        return v.instances.filter((i) => i.status === 'live').length === 2 && v.instances.every((i) => i.connections.length === 2) && v
      },
      15_000,
      'both instances live',
    )
    expect(both.self).toBe(ida)
    const ra = both.instances.find((i) => i.id === ida)
    const rb = both.instances.find((i) => i.id === idb)
    expect(ra).toMatchObject({ self: true, status: 'live', version: sluiceVersion(), state: 'up', pid: process.pid, backlog: 0, inflight: 0 })
    expect(rb).toMatchObject({ self: false, status: 'live', version: sluiceVersion() })
    expect(rb?.connections.map((c) => c.function).sort()).toEqual(['plain', 'shared'])
    // Both MQTT sessions are recorded (client ids carry the instance id with share).
    expect(rb?.sessions.sort()).toEqual([`${idb}-plain`, `sluice-devices-shared-${idb}`])

    // The warnings: `plain` runs without share on both; `shared` relies on order over $share.
    const codes = (t: TestGateway) =>
      t.logs.lines.filter((l) => l.level === 'warn' && typeof l.code === 'string').map((l) => `${String(l.code)}:${String(l.function)}`)
    await waitFor(
      () => codes(a).includes('SLUICE_ERR_CLUSTER_MQTT_UNSHARED:plain') && codes(b).includes('SLUICE_ERR_CLUSTER_MQTT_UNSHARED:plain'),
      10_000,
      'unshared warnings',
    )
    expect(codes(b)).toContain('SLUICE_ERR_CLUSTER_ORDER_NOT_KEPT:shared')
    const warned = (await view(b)).warnings.map((w) => `${w.code}:${w.function}`)
    expect(warned.sort()).toEqual(['SLUICE_ERR_CLUSTER_MQTT_UNSHARED:plain', 'SLUICE_ERR_CLUSTER_ORDER_NOT_KEPT:shared'])

    await b.stop()
    const afterStop = await view(a)
    expect(afterStop.instances.find((i) => i.id === idb)?.status).toBe('stopped')
    // One live instance: no warnings any more.
    await waitFor(async () => (await view(a)).warnings.length === 0, 10_000, 'warnings cleared')

    // An instance that stops heartbeating (as after kill -9) is expired once expiryMs passes.
    const ghost = `ghost-${uid()}`
    await a.gw.store.heartbeatInstance(ghost, 'gone', foreignInstance())
    expect((await view(a)).instances.find((i) => i.id === ghost)?.status).toBe('live')
    await waitFor(async () => (await view(a)).instances.find((i) => i.id === ghost)?.status === 'expired', 10_000, 'ghost expired')
  }, 90_000)

  it('refuses to start a second instance under the id of a live one', async () => {
    const schema = tempSchema()
    const topic = `sluice-test/cluster/${uid()}`
    const id = `dup-${uid()}`
    const a = await gateway({ schema, id, topic })
    const err = await gateway({ schema, id, topic: `${topic}/b` }).then(
      () => undefined,
      (e: unknown) => e as { code?: string; message?: string },
    )
    expect(err?.code).toBe('SLUICE_ERR_INSTANCE_DUPLICATE_ID')
    expect(err?.message).toMatch(/instance\.id.*SLUICE_INSTANCE_ID/)
    // The live one runs on, its row untouched by the refused start.
    expect((await fetch(`${a.url}/livez`)).status).toBe(200)
    const v = await view(a)
    expect(v.instances.filter((i) => i.id === id)).toMatchObject([{ self: true, status: 'live', state: 'up' }])
    expect(v.warnings).toEqual([])
  }, 60_000)

  it('reports another process beating under its id while it runs, and keeps running', async () => {
    const schema = tempSchema()
    const id = `dup-${uid()}`
    const a = await gateway({ schema, id, topic: `sluice-test/cluster/${uid()}` })
    // Another process with this id (as after a store outage longer than the expiry) keeps writing.
    const other = foreignInstance()
    const dup = () => a.logs.lines.some((l) => l.level === 'error' && l.code === 'SLUICE_ERR_INSTANCE_DUPLICATE_ID')
    const listed = async () => (await view(a)).warnings.some((w) => w.code === 'SLUICE_ERR_INSTANCE_DUPLICATE_ID')
    await waitFor(
      async () => {
        await a.gw.store.heartbeatInstance(id, 'other-process', other)
        return dup() && (await listed())
      },
      10_000,
      'duplicate id logged and listed',
    )
    expect((await fetch(`${a.url}/livez`)).status).toBe(200)
    expect(['up', 'degraded']).toContain(a.gw.health().status)
  }, 60_000)

  it('answers /livez without a key while the admin API needs one', async () => {
    const schema = tempSchema()
    const a = await gateway({ schema, id: `l-${uid()}`, topic: `sluice-test/cluster/${uid()}` })
    const live = await fetch(`${a.url}/livez`)
    expect(live.status).toBe(200)
    expect(await live.text()).toBe('ok')
    expect((await fetch(`${a.url}/admin/instances`)).status).toBe(401)
  }, 60_000)

  it('refuses an expiry shorter than three heartbeats', async () => {
    const schema = tempSchema()
    const err = await startGateway({
      store: `{ kind: postgres, url: "${PG_URL}", schema: ${schema} }`,
      yaml: `instance: { heartbeatMs: 1000, expiryMs: 2000 }\nfunctions:\n  f:\n    code: functions/noop.ts\n    trigger: { http: { route: f, auth: anonymous } }\n`,
      files: { 'functions/noop.ts': NOOP },
    }).then(
      (t) => {
        onTestFinished(() => t.stop())
        return undefined
      },
      (e: unknown) => e as { code?: string; message?: string },
    )
    expect(err?.code).toBe('SLUICE_ERR_INSTANCE_CONFIG')
    expect(err?.message).toMatch(/raise expiryMs to 3000/)
  }, 60_000)
})
