/**
 * MQTT session takeover, checked against a ledger (see ledger.ts): three gateway processes share
 * one PostgreSQL store (a database of the test's own) and one $share group on a private
 * Mosquitto, each with its own persistent session (default heartbeat 2 s, expiry 10 s). One is
 * killed with SIGKILL and not restarted; then 10,000 QoS 1 messages are published at about 1,000/s. The broker keeps routing a third of
 * them to the dead member's session; once its heartbeat expires, a live instance takes the
 * session over, runs what was queued through the function and ends the session.
 *
 * Pass: every confirmed message is processed (in the ledger) or dead-lettered, the dead
 * instance's row records the takeover, and the dead instance, started again, gets a fresh session
 * and processes new messages.
 *
 * A second test drives the takeover in one process for MQTT 5 and 3.1.1: a "dead instance" is a
 * registry row plus a persistent session left at the broker by a client cut off without DISCONNECT.
 */
import { connect, connectAsync, type IConnackPacket } from 'mqtt'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { ClusterView } from '../../../src/cluster/types.js'
import { GatewayProcess } from '../../helpers/gateway-process.js'
import { projectDir, startGateway, waitFor } from '../../helpers/gateway.js'
import { foreignInstance } from '../../helpers/instance-report.js'
import { PG_URL, admin as pgAdmin, uniqueName } from '../../store/pg.js'
import { startMosquitto } from './broker.js'
import { publish, uid } from './helpers.js'
import { admin, cleanupStack, deadLetterIds, LedgerSubscriber, ledgerFunction, StreamPublisher } from './ledger.js'

const FN = 'ledger'
const IDS = 10_000
const TOPICS = 8
const LONG = 240_000

/** A database of the test's own on the local server; dropped when the test ends. */
async function tempDatabase(cleanup: (step: () => unknown) => void): Promise<string> {
  const name = uniqueName('sluice_takeover')
  await pgAdmin(`CREATE DATABASE ${name}`)
  cleanup(() => pgAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  return PG_URL.replace(/\/[^/]*$/, `/${name}`)
}

function gatewayYaml(o: { id: string; store: string; broker: string; base: string; share: string; ledgerTopic: string }): string {
  return `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1, prewarm: 1 }
store: { kind: postgres, url: "${o.store}", pool: { max: 4 } }
instance: { id: ${o.id} }
connections:
  bus: { kind: mqtt, url: "${o.broker}", reconnect: { initialDelayMs: 100, maxDelayMs: 1000 } }
functions:
  ${FN}:
    code: functions/ledger.js
    trigger: { mqtt: { connection: bus, topic: "${o.base}/+", qos: 1, share: ${o.share}, maxInflight: 200 } }
    orderKey: none
    batch: { maxSize: 50, maxWaitMs: 10 }
    retry: { maxAttempts: 10, backoff: exponential, initialDelayMs: 100, maxDelayMs: 2000 }
    timeoutMs: 30000
    outputs:
      ledger: { mqtt: { connection: bus, topic: "${o.ledgerTopic}", qos: 1, timeoutMs: 60000 } }
`
}

describe('mqtt session takeover across gateway instances', () => {
  it('processes every confirmed message when one of three instances is killed and stays dead', async () => {
    const cleanup = cleanupStack()
    const broker = await startMosquitto()
    cleanup(() => broker.close())
    const store = await tempDatabase(cleanup)
    const base = `takeover/${uid()}`
    const ledgerTopic = `ledger/${uid()}`
    const share = uid('g')
    const ids = ['a', 'b', 'c'].map((n) => `${n}-${uid()}`)
    const files: Record<string, string> = { 'functions/ledger.js': ledgerFunction(0) }
    for (const [i, id] of ids.entries()) files[`g${i}.yaml`] = gatewayYaml({ id, store, broker: broker.url, base, share, ledgerTopic })
    const project = projectDir(files)
    cleanup(project.cleanup)
    const gps = ids.map((_, i) => new GatewayProcess(project.dir, `g${i}.yaml`))
    for (const gp of gps) cleanup(() => gp.kill())
    const ledger = await LedgerSubscriber.open(broker.url, ledgerTopic)
    cleanup(() => ledger.close())

    // The first start migrates the store; the other two start together.
    await (gps[0] as GatewayProcess).start(120_000)
    await Promise.all(gps.slice(1).map((gp) => gp.start(120_000)))
    const [a, , c] = gps as [GatewayProcess, GatewayProcess, GatewayProcess]
    const deadId = ids[2] as string
    const deadClientId = `sluice-bus-${FN}-${deadId}`
    await waitFor(
      async () => (await admin<ClusterView>(a.url, '/admin/instances')).instances.filter((i) => i.status === 'live').length === 3,
      30_000,
      'three live instances',
    )
    const before = await admin<ClusterView>(a.url, '/admin/instances')
    expect(before.instances.find((i) => i.id === deadId)?.sessions).toEqual([deadClientId])

    await c.kill()
    const pub = new StreamPublisher({ url: broker.url, topicOf: (id) => `${base}/k${id % TOPICS}`, min: IDS, max: IDS, tick: 20, pauseMs: 20 })
    cleanup(() => pub.close())
    pub.start()
    await pub.finish()
    const publishedAt = Date.now()
    expect(pub.confirmed.size).toBe(IDS)

    // Every confirmed id in the ledger or dead-lettered (dead letters are in the shared store).
    let missing: number[] = []
    await waitFor(
      async () => {
        const dead = new Set(await deadLetterIds(a.url, FN))
        missing = [...pub.confirmed].filter((id) => !ledger.has(id) && !dead.has(id))
        return missing.length === 0
      },
      LONG,
      'every confirmed id processed or dead-lettered',
    ).catch((e: Error) => {
      throw new Error(`${e.message}: ${missing.length} of ${pub.confirmed.size} confirmed ids missing (first: ${missing.slice(0, 10).join(', ')})`)
    })
    expect(missing).toEqual([])
    const processedAt = Date.now()

    // The dead member's share went through its session: the takeover ran it and ended it.
    const taken = ledger.records.filter((r) => r.ev.startsWith(`${deadClientId}-`))
    expect(taken.length).toBeGreaterThan(0)
    const after = await admin<ClusterView>(a.url, '/admin/instances')
    const dead = after.instances.find((i) => i.id === deadId)
    expect(dead?.status).toBe('expired')
    expect(dead?.sessions).toEqual([])
    expect(dead?.takenOver?.messages).toBeGreaterThan(0)
    expect(ids.slice(0, 2)).toContain(dead?.takenOver?.by)
    // The measured numbers, for connectors/mqtt/README.md.
    console.info(
      'takeover ledger',
      JSON.stringify({
        confirmed: pub.confirmed.size,
        processed: ledger.size,
        extraRuns: ledger.extraRuns(),
        drainedByTakeover: dead?.takenOver?.messages,
        ranFromDeadSession: taken.length,
        allProcessedMsAfterLastPublish: processedAt - publishedAt,
      }),
    )

    // Started again, the instance gets a fresh session and takes its share of new messages.
    await c.start(120_000)
    await waitFor(
      async () => (await admin<ClusterView>(c.url, '/admin/instances')).instances.filter((i) => i.status === 'live').length === 3,
      30_000,
      'three live again',
    )
    const more = new StreamPublisher({ url: broker.url, topicOf: (id) => `${base}/k${id % TOPICS}`, min: IDS + 600, max: IDS + 600, tick: 20, pauseMs: 20 })
    more.published = IDS
    cleanup(() => more.close())
    more.start()
    await more.finish()
    await waitFor(() => [...more.confirmed].every((id) => ledger.has(id)), LONG, 'the new ids processed')
    expect(ledger.records.some((r) => r.id >= IDS && r.ev.startsWith(`${deadClientId}-`))).toBe(true)
  }, 420_000)

  for (const protocolVersion of [5, 4] as const) {
    it(`drains and ends a dead instance's MQTT ${protocolVersion === 5 ? '5' : '3.1.1'} session`, async () => {
      const cleanup = cleanupStack()
      const broker = await startMosquitto()
      cleanup(() => broker.close())
      const store = await tempDatabase(cleanup)
      const base = `takeover/${uid()}`
      const group = uid('g')
      const t = await startGateway({
        store: `{ kind: postgres, url: "${store}" }`,
        yaml: `instance: { id: live-${uid()}, heartbeatMs: 200, expiryMs: 1000 }
connections:
  bus: { kind: mqtt, url: "${broker.url}", protocolVersion: ${protocolVersion} }
functions:
  rec:
    code: functions/rec.js
    trigger: { mqtt: { connection: bus, topic: "${base}/+", share: ${group} } }
    orderKey: none
`,
        files: { 'functions/rec.js': "export default async function (events) { for (const e of events) console.log('seen ' + e.body.n) }\n" },
      })
      onTestFinished(() => t.stop())

      // The dead member: a persistent session in the group, cut off without DISCONNECT.
      const ghostClientId = uid('ghost')
      const filter = `$share/${group}/${base}/+`
      const ghost = await connectAsync(broker.url, {
        clientId: ghostClientId,
        clean: false,
        protocolVersion,
        reconnectPeriod: 0,
        ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
      })
      await ghost.subscribeAsync(filter, { qos: 1 })
      ghost.stream.destroy()
      ghost.end(true)
      await waitFor(() => t.gw.health().status === 'up', 30_000, 'gateway up')

      const N = 200
      await publish(
        broker.url,
        (i) => `${base}/k${i % 4}`,
        Array.from({ length: N }, (_, n) => ({ n })),
        { protocolVersion },
      )
      const seen = () =>
        new Set(t.logs.lines.filter((l) => l.source === 'function' && String(l.msg).startsWith('seen ')).map((l) => Number(String(l.msg).slice(5))))
      // Round robin gave the dead member its share: it waits in its session.
      await waitFor(() => seen().size > 0, 30_000, 'the live member works')
      expect(seen().size).toBeLessThan(N)

      const ghostId = `ghost-${uid()}`
      await t.gw.store.heartbeatInstance(
        ghostId,
        'gone',
        foreignInstance({
          version: '0.1.0',
          host: 'elsewhere',
          sessions: [{ clientId: ghostClientId, filter, shared: true, function: 'rec', kind: 'mqtt', connection: 'bus' }],
        }),
      )
      await waitFor(() => seen().size === N, 60_000, 'every message processed')
      const row = await waitFor(
        async () => (await admin<ClusterView>(t.url, '/admin/instances')).instances.find((i) => i.id === ghostId && i.takenOver),
        30_000,
        'the takeover recorded',
      )
      expect(row.takenOver?.messages).toBeGreaterThan(0)
      expect(row.sessions).toEqual([])
      expect(t.logs.find('session of a dead instance drained and ended').map((l) => l.clientId)).toEqual([ghostClientId])

      // The session is gone from the broker: the client id starts fresh.
      const back = connect(broker.url, { clientId: ghostClientId, clean: false, protocolVersion, reconnectPeriod: 0 })
      const connack = await new Promise<IConnackPacket>((resolve, reject) => {
        back.once('connect', resolve)
        back.once('error', reject)
      })
      await back.endAsync()
      expect(connack.sessionPresent).toBe(false)
    }, 180_000)
  }
})
