/**
 * Degraded start (issue 9): a broker that is down when the gateway starts does not take every
 * function down. A private Mosquitto is prepared and stopped before the gateway starts: the
 * gateway comes up, its HTTP function answers, /admin/health says 503 with the MQTT trigger down
 * and why, the failures are logged with their code, and once the broker starts the trigger comes
 * up by itself (health 200) and messages flow. `required: true` keeps the fail-fast start. The
 * same with a private RabbitMQ node holding queued messages while it is down.
 */
import { join } from 'node:path'
import mqtt from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { CONNECTORS } from '../../src/config/connectors.js'
import { parseConfig } from '../../src/config/load.js'
import { hasCode } from '../../src/errors.js'
import { Gateway } from '../../src/gateway.js'
import type { HealthReport } from '../../src/http/admin.js'
import type { LiveSnapshot } from '../../src/http/live-types.js'
import { createLogger } from '../../src/log.js'
import { Client, DedicatedBroker, queueCounts, unique } from '../connectors/amqp/broker.js'
import { startMosquitto, type Mosquitto } from '../connectors/mqtt/broker.js'
import { LogCapture, projectDir, waitFor } from '../helpers/gateway.js'
import { openSse } from '../helpers/sse.js'

const cleanups: Array<() => Promise<unknown> | unknown> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const FILES = {
  'functions/hello.js': `export default async () => ({ hello: 'still here' })\n`,
  'functions/record.js': `export default async (events, ctx) => { for (const e of events) ctx.log.info('got ' + JSON.stringify(e.body)) }\n`,
}

/** A Mosquitto on a known port that is not running yet. */
async function stoppedBroker(): Promise<Mosquitto> {
  const b = await startMosquitto({ persistence: false })
  cleanups.push(() => b.close())
  await b.stop()
  return b
}

async function start(yaml: string, logs = new LogCapture()): Promise<{ gw: Gateway; logs: LogCapture }> {
  const project = projectDir(FILES)
  cleanups.push(project.cleanup)
  const text = `http: { port: 0, host: 127.0.0.1 }\nworkers: { hosts: 1, prewarm: 1 }\nstore: { path: state.db }\n${yaml}`
  const loaded = await parseConfig(text, join(project.dir, 'gateway.yaml'), { connectors: CONNECTORS, root: project.dir, env: {} })
  const gw = await Gateway.start({
    config: loaded.config,
    compiled: loaded.compiled,
    logger: createLogger('debug', logs),
    startRetry: { initialDelayMs: 200, maxDelayMs: 1000 },
  })
  cleanups.push(() => gw.stop({ timeoutMs: 10_000 }))
  return { gw, logs }
}

function yaml(url: string, connection: string, extra = ''): string {
  return `connections:
  ${connection}: { kind: mqtt, url: "${url}", startTimeoutMs: 500, connectTimeoutMs: 300${extra} }
functions:
  dg-hello:
    code: functions/hello.js
    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }
  dg-record:
    code: functions/record.js
    batch: { maxSize: 10, maxWaitMs: 5 }
    trigger: { mqtt: { connection: ${connection}, topic: "dg/${connection}/+", qos: 1 } }
`
}

describe('degraded start', () => {
  it('starts without an unreachable broker, reports it down, and brings it up when the broker appears', async () => {
    const broker = await stoppedBroker()
    const connection = `dg${process.pid}${Date.now() % 100000}`
    const { gw, logs } = await start(yaml(broker.url, connection))

    // HTTP functions answer while the broker is down.
    const hello = await fetch(`${gw.url}/api/hello`)
    expect(hello.status).toBe(200)
    expect(await hello.json()).toEqual({ hello: 'still here' })

    const down = await fetch(`${gw.url}/admin/health`)
    expect(down.status).toBe(503)
    const report = (await down.json()) as HealthReport
    expect(report.status).toBe('degraded')
    const mqttConn = report.connections.find((c) => c.function === 'dg-record')
    expect(mqttConn).toMatchObject({ kind: 'mqtt', connection, up: false })
    expect(mqttConn?.detail).toMatch(/SLUICE_ERR_CONNECTOR_START/)
    expect(report.connections.find((c) => c.function === 'dg-hello')?.up).toBe(true)

    // The dashboard's live feed shows it down, with the reason.
    const live = await openSse(`${gw.url}/admin/events`)
    cleanups.push(() => live.close())
    const snap = await live.next<LiveSnapshot>('snapshot')
    expect(snap.connections.find((c) => c.function === 'dg-record')).toMatchObject({ up: false, detail: expect.stringMatching(/SLUICE_ERR_CONNECTOR_START/) })
    expect(snap.status).toBe('degraded')

    // Each failed attempt is logged once, at warn, with the coded error.
    await waitFor(() => logs.find(/^trigger down/).length >= 2, 15_000, 'two failed attempts logged')
    const failures = logs.find(/^trigger down/)
    expect(failures[0]).toMatchObject({ level: 'warn', function: 'dg-record', connection, attempt: 1, err: { code: 'SLUICE_ERR_CONNECTOR_START' } })
    expect(failures[1]).toMatchObject({ attempt: 2 })
    expect(new Set(failures.map((f) => f.attempt)).size).toBe(failures.length)

    await broker.start()
    await waitFor(async () => (await fetch(`${gw.url}/admin/health`)).status === 200, 30_000, 'health 200 after the broker started')
    await live.next<LiveSnapshot>('snapshot', (x) => x.connections.every((c) => c.up))
    expect(logs.find('trigger up: its connection answered')).toHaveLength(1)

    const pub = await mqtt.connectAsync(broker.url, { clientId: `dg-pub-${connection}` })
    cleanups.push(() => pub.endAsync())
    for (let i = 0; i < 3; i++) await pub.publishAsync(`dg/${connection}/s${i}`, JSON.stringify({ n: i }), { qos: 1 })
    await waitFor(() => gw.function('dg-record')?.counts.eventsDone === 3, 15_000, 'three events processed')
    const got = logs.lines.filter((l) => l.source === 'function' && String(l.msg).startsWith('got ')).map((l) => String(l.msg))
    expect(got.sort()).toEqual(['got {"n":0}', 'got {"n":1}', 'got {"n":2}'])
  })

  it('with required: true the start fails with the coded error and nothing listens', async () => {
    const broker = await stoppedBroker()
    const connection = `dgreq${process.pid}${Date.now() % 100000}`
    const logs = new LogCapture()
    const err = await start(yaml(broker.url, connection, ', required: true'), logs).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(hasCode(err, 'SLUICE_ERR_CONNECTOR_START')).toBe(true)
    expect((err as Error).message).toMatch(/dg-record/)
    // The port was bound first (the admin line names it), and is closed again.
    const adminUrl = logs.lines.map((l) => (l.admin as { url?: string } | undefined)?.url).find((u) => u !== undefined)
    expect(adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/admin\/$/)
    const after = await fetch(`${adminUrl}health`).then(
      () => 'answered',
      (e: unknown) => (e as Error & { cause?: { code?: string } }).cause?.code ?? 'failed',
    )
    expect(after).toBe('ECONNREFUSED')
  })
})

describe('degraded start with a private RabbitMQ node', () => {
  let broker: DedicatedBroker
  beforeAll(async () => {
    broker = await DedicatedBroker.start()
  }, 180_000)
  afterAll(() => broker?.destroy(), 60_000)

  it('runs the HTTP function while the node is down, then consumes what the queue held once it is back', async () => {
    const queue = unique('degraded')
    const c = await Client.open(broker.url)
    await c.ch.assertQueue(queue, { durable: true })
    await c.publish([{ n: 0 }, { n: 1 }], { queue })
    await c.close()
    await broker.halt()

    const connection = unique('dgq').replace(/-/g, '_')
    const { gw, logs } = await start(`connections:
  ${connection}: { kind: amqp, url: "${broker.url}", connectTimeoutMs: 500 }
functions:
  dg-hello:
    code: functions/hello.js
    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }
  dg-record:
    code: functions/record.js
    batch: { maxSize: 10, maxWaitMs: 5 }
    trigger: { amqp: { connection: ${connection}, queue: ${queue} } }
`)
    expect((await fetch(`${gw.url}/api/hello`)).status).toBe(200)
    const down = await fetch(`${gw.url}/admin/health`)
    expect(down.status).toBe(503)
    const conn = ((await down.json()) as HealthReport).connections.find((x) => x.function === 'dg-record')
    expect(conn).toMatchObject({ kind: 'amqp', connection, up: false, detail: expect.stringMatching(/SLUICE_ERR_CONNECTOR_START.*ECONNREFUSED/) })
    expect(logs.find(/^trigger down/)[0]).toMatchObject({ level: 'warn', connection, attempt: 1, err: { code: 'SLUICE_ERR_CONNECTOR_START' } })

    await broker.resume()
    await waitFor(async () => (await fetch(`${gw.url}/admin/health`)).status === 200, 60_000, 'health 200 once the node is back')
    await waitFor(() => gw.function('dg-record')?.counts.eventsDone === 2, 30_000, 'the queued messages processed')
    await waitFor(
      async () => (await queueCounts(queue, broker.node))?.ready === 0 && (await queueCounts(queue, broker.node))?.unacked === 0,
      30_000,
      'the queue acked empty',
    )
    const got = logs.lines.filter((l) => l.source === 'function' && String(l.msg).startsWith('got ')).map((l) => String(l.msg))
    expect(got.sort()).toEqual(['got {"n":0}', 'got {"n":1}'])
  }, 240_000)
})
