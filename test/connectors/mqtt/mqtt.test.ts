/**
 * MQTT trigger features against the system Mosquitto (127.0.0.1:1883): topic filters, QoS 0 and 1,
 * MQTT 3.1.1 and 5, what reaches the event, config errors, start failures, and the embedded broker.
 * Every test uses its own connection name (so its own client id and session) and topics, and
 * removes its sessions at the end.
 */
import { join } from 'node:path'
import { connectAsync } from 'mqtt'
import { describe, expect, it, onTestFinished } from 'vitest'
import { embeddedBrokerCount } from '../../../connectors/mqtt/index.js'
import { CONNECTORS } from '../../../src/config/connectors.js'
import { issuesOf, parseConfig } from '../../../src/config/load.js'
import { projectDir, startGateway, waitFor, type TestGateway } from '../../helpers/gateway.js'
import { freePort, startMosquitto, waitForPort } from './broker.js'
import { dropSession, numbers, publish, RECORDER, recGateway, seen, SYSTEM_BROKER, uid, type Seen } from './helpers.js'

/** A gateway on the system broker with functions `a` and `b` (RECORDER) on two filters. */
async function twoFilters(protocolVersion: 4 | 5, a: string, b: string): Promise<TestGateway> {
  const c = uid('c')
  const fn = (name: string, topic: string) =>
    `  ${name}:\n    code: functions/rec.js\n    trigger: { mqtt: { connection: ${c}, topic: "${topic}", qos: 1 } }\n    batch: { maxSize: 20, maxWaitMs: 10 }\n`
  const t = await startGateway({
    yaml: `connections:\n  ${c}: { kind: mqtt, url: "${SYSTEM_BROKER}", protocolVersion: ${protocolVersion} }\nfunctions:\n${fn('a', a)}${fn('b', b)}`,
    files: { 'functions/rec.js': RECORDER },
  })
  onTestFinished(async () => {
    await t.stop()
    for (const f of ['a', 'b']) await dropSession(SYSTEM_BROKER, `sluice-${c}-${f}`, protocolVersion)
  })
  return t
}

/** A gateway with RECORDER on the system broker; its session is removed after the test. */
async function onSystemBroker(opts: { trigger: (connection: string) => string; connection?: string; protocolVersion?: 4 | 5 }): Promise<TestGateway> {
  const c = uid('c')
  const pv = opts.protocolVersion ?? 5
  const t = await recGateway({
    connections: `  ${c}: { kind: mqtt, url: "${SYSTEM_BROKER}", protocolVersion: ${pv}${opts.connection ?? ''} }`,
    trigger: opts.trigger(c),
  })
  onTestFinished(() => dropSession(SYSTEM_BROKER, `sluice-${c}-rec`, pv))
  return t
}

describe.each([4, 5] as const)('mqtt trigger, protocol version %i', (protocolVersion) => {
  it('matches + and # filters and fills id, source, key and meta', async () => {
    const base = `flt/${uid()}`
    const t = await twoFilters(protocolVersion, `${base}/+/telemetry`, `${base}/#`)
    const topics = [`${base}/s1/telemetry`, `${base}/s2/telemetry`, `${base}/s1/status`, `${base}/s1/x/telemetry`, base]
    await publish(
      SYSTEM_BROKER,
      (i) => topics[i] as string,
      topics.map((_, n) => ({ n })),
      { protocolVersion },
    )
    // `base/#` also matches `base` itself (MQTT 3.1.1 §4.7.1.2).
    await waitFor(() => numbers(t, 'b').size === 5 && numbers(t, 'a').size === 2, 30_000, 'all matches')
    expect([...numbers(t, 'a')].sort()).toEqual([0, 1])
    const s = seen(t, 'a').find((e) => e.n === 0) as Seen
    expect(s.key).toBe(topics[0])
    expect(s.source).toMatch(new RegExp(`^mqtt://c[0-9a-f]+/${topics[0]}$`))
    expect(s.meta).toMatchObject({ topic: topics[0], qos: 1, retain: false, dup: false })
    expect(typeof s.meta.packetId).toBe('number')
    const ids = seen(t, 'b').map((e) => e.id)
    expect(new Set(ids).size).toBe(5)
    // Nothing else arrived (the other filter's messages would have come in the same stream).
    expect(seen(t, 'a')).toHaveLength(2)
  })

  it('delivers QoS 0 subscriptions at most once, without a packet id', async () => {
    const topic = `q0/${uid()}`
    const t = await onSystemBroker({ protocolVersion, trigger: (c) => `{ mqtt: { connection: ${c}, topic: "${topic}", qos: 0 } }` })
    // Published with QoS 1, delivered with the subscription's QoS 0.
    await publish(SYSTEM_BROKER, topic, [{ n: 1 }, { n: 2 }], { protocolVersion, qos: 1 })
    await publish(SYSTEM_BROKER, topic, [{ n: 3 }], { protocolVersion, qos: 0 })
    await waitFor(() => numbers(t).size === 3, 30_000, 'three messages')
    expect(seen(t).map((s) => s.meta.qos)).toEqual([0, 0, 0])
    expect(seen(t).map((s) => s.meta.packetId)).toEqual([null, null, null])
  })

  it('passes text and binary payloads through', async () => {
    const topic = `pl/${uid()}`
    const t = await onSystemBroker({ protocolVersion, trigger: (c) => `{ mqtt: { connection: ${c}, topic: "${topic}" } }` })
    const client = await connectAsync(SYSTEM_BROKER, { protocolVersion, reconnectPeriod: 0 })
    onTestFinished(() => client.endAsync())
    await client.publishAsync(topic, 'plain text, not JSON', { qos: 1 })
    await client.publishAsync(topic, Buffer.from([0xff, 0xfe, 0x00, 0x01]), { qos: 1 })
    await client.publishAsync(topic, '42', { qos: 1 })
    await waitFor(() => seen(t).length === 3, 30_000, 'three messages')
    const [text, binary, num] = seen(t)
    expect(text?.body).toBe('plain text, not JSON')
    expect(binary?.body).toBe(Buffer.from([0xff, 0xfe, 0x00, 0x01]).toString('base64'))
    expect(binary?.meta.encoding).toBe('base64')
    expect(num?.body).toBe(42)
  })
})

describe('mqtt trigger, MQTT 5 properties', () => {
  it('puts user properties, content type, correlation data and response topic in meta', async () => {
    const topic = `props/${uid()}`
    const t = await onSystemBroker({ trigger: (c) => `{ mqtt: { connection: ${c}, topic: "${topic}" } }` })
    await publish(SYSTEM_BROKER, topic, [{ n: 1 }], {
      properties: {
        userProperties: { station: 'st-7', tag: ['a', 'b'] },
        contentType: 'application/json',
        correlationData: Buffer.from('req-1'),
        responseTopic: 'replies/7',
      },
    })
    await waitFor(() => seen(t).length === 1, 30_000, 'the message')
    expect(seen(t)[0]?.meta).toMatchObject({
      userProperties: { station: 'st-7', tag: ['a', 'b'] },
      contentType: 'application/json',
      correlationData: 'req-1',
      responseTopic: 'replies/7',
    })
  })
})

describe('mqtt configuration', () => {
  async function configIssues(yaml: string) {
    const p = projectDir({ 'functions/rec.js': RECORDER })
    onTestFinished(() => p.cleanup())
    const err = await parseConfig(yaml, join(p.dir, 'gateway.yaml'), { connectors: CONNECTORS, root: p.dir, env: {} }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toMatchObject({ code: 'SLUICE_ERR_CONFIG_INVALID' })
    return issuesOf(err)
  }
  const config = (trigger: string, extra = '') =>
    `connections:\n  devices: { kind: mqtt, url: "mqtt://127.0.0.1:1883" }\nfunctions:\n  rec:\n    code: functions/rec.js\n    trigger: { mqtt: ${trigger} }\n${extra}`

  it('refuses qos: 2 and says why', async () => {
    const [issue, ...rest] = await configIssues(config('{ connection: devices, topic: a/b, qos: 2 }'))
    expect(rest).toEqual([])
    expect(issue).toMatchObject({ code: 'SLUICE_ERR_CONFIG_QOS', path: 'functions.rec.trigger.mqtt.qos' })
    expect(issue?.message).toMatch(/PUBREC/)
    expect(issue?.message).toMatch(/qos: 1/)
  })

  it('refuses malformed topic filters, $share/ in the topic and wildcards in an output topic', async () => {
    const found = await configIssues(
      `connections:\n  devices: { kind: mqtt, url: "mqtt://127.0.0.1:1883" }\nfunctions:\n  a:\n    code: functions/rec.js\n    trigger: { mqtt: { connection: devices, topic: "st/#/x" } }\n  b:\n    code: functions/rec.js\n    trigger: { mqtt: { connection: devices, topic: "st/a+" } }\n  c:\n    code: functions/rec.js\n    trigger: { mqtt: { connection: devices, topic: "$share/g/st" } }\n  d:\n    code: functions/rec.js\n    trigger: { mqtt: { connection: devices, topic: "st/+/x/#" } }\n    outputs:\n      out: { mqtt: { connection: devices, topic: "cmd/+" } }\n`,
    )
    expect(found.map((i) => [i.path, i.code])).toEqual([
      ['functions.a.trigger.mqtt.topic', 'SLUICE_ERR_CONFIG_TOPIC'],
      ['functions.b.trigger.mqtt.topic', 'SLUICE_ERR_CONFIG_TOPIC'],
      ['functions.c.trigger.mqtt.topic', 'SLUICE_ERR_CONFIG_TOPIC'],
      ['functions.d.outputs.out.mqtt.topic', 'SLUICE_ERR_CONFIG_TYPE'],
    ])
  })

  it('fails the start with SLUICE_ERR_CONNECTOR_START when no broker answers on a required connection', async () => {
    const port = await freePort()
    const err = await startGateway({
      yaml: `connections:\n  devices: { kind: mqtt, url: "mqtt://127.0.0.1:${port}", required: true, startTimeoutMs: 300, reconnect: { initialDelayMs: 20, maxDelayMs: 50 } }\nfunctions:\n  rec:\n    code: functions/rec.js\n    trigger: { mqtt: { connection: devices, topic: a/b } }\n`,
      files: { 'functions/rec.js': RECORDER },
    }).then(
      (t) => t.stop(),
      (e: unknown) => e,
    )
    expect(err).toMatchObject({ code: 'SLUICE_ERR_CONNECTOR_START' })
    expect((err as Error).message).toMatch(/ECONNREFUSED/)
  })

  it('refuses protocolVersion 5 with the embedded broker', async () => {
    const port = await freePort()
    const err = await startGateway({
      yaml: `connections:\n  devices: { kind: mqtt, url: embedded, port: ${port}, protocolVersion: 5 }\nfunctions:\n  rec:\n    code: functions/rec.js\n    trigger: { mqtt: { connection: devices, topic: a/b } }\n`,
      files: { 'functions/rec.js': RECORDER },
    }).then(
      (t) => t.stop(),
      (e: unknown) => e,
    )
    expect(err).toMatchObject({ code: 'SLUICE_ERR_CONNECTOR_START' })
    expect((err as Error).message).toMatch(/3\.1\.1 only/)
  })
})

describe('mqtt embedded broker', () => {
  it('runs triggers and outputs end to end on one shared broker, stopped with the last user', async () => {
    const port = await freePort()
    const fn = `export default async function (events, ctx) {
  for (const e of events) ctx.output('out', { echo: e.body.n })
  ctx.log.info('seen ' + JSON.stringify(events.map((e) => ({ n: e.body.n, id: e.id, meta: e.meta }))))
}`
    const fn2 = "export default async function (events, ctx) { ctx.log.info('seen ' + JSON.stringify(events.map((e) => ({ n: e.body.echo })))) }"
    const before = embeddedBrokerCount()
    const t = await startGateway({
      yaml: `connections:\n  local: { kind: mqtt, url: embedded, port: ${port} }\nfunctions:\n  rec:\n    code: functions/rec.js\n    trigger: { mqtt: { connection: local, topic: "in/+" } }\n    outputs:\n      out: { mqtt: { connection: local, topic: "echo/all" } }\n  echo:\n    code: functions/echo.js\n    trigger: { mqtt: { connection: local, topic: "echo/#" } }\n`,
      files: { 'functions/rec.js': fn, 'functions/echo.js': fn2 },
    })
    let stopped = false
    onTestFinished(async () => {
      if (!stopped) await t.stop()
    })
    // Two triggers and an output, one broker.
    expect(embeddedBrokerCount()).toBe(before + 1)
    await publish(
      `mqtt://127.0.0.1:${port}`,
      (i) => `in/${i % 3}`,
      Array.from({ length: 20 }, (_, n) => ({ n })),
      { protocolVersion: 4 },
    )
    await waitFor(() => numbers(t, 'echo').size === 20, 30_000, 'the echoes')
    expect([...numbers(t, 'echo')].sort((x, y) => (x ?? 0) - (y ?? 0))).toEqual(Array.from({ length: 20 }, (_, n) => n))
    expect(seen(t, 'rec')[0]?.meta).toMatchObject({ qos: 1, topic: 'in/0' })
    await t.stop()
    stopped = true
    expect(embeddedBrokerCount()).toBe(before)
    await expect(waitForPort(port, 200)).rejects.toThrow(/nothing listens/)
  })
})

describe('mqtt refused connection', () => {
  it('fails the start at once when the broker refuses the client (no waiting for startTimeoutMs)', async () => {
    const broker = await startMosquitto({ persistence: false, settings: 'allow_anonymous false' })
    onTestFinished(() => broker.close())
    // A start that waited for startTimeoutMs would outlast the test's own timeout.
    const err = await startGateway({
      yaml: `connections:\n  devices: { kind: mqtt, url: "${broker.url}", username: nobody, password: wrong, startTimeoutMs: 3600000 }\nfunctions:\n  rec:\n    code: functions/rec.js\n    trigger: { mqtt: { connection: devices, topic: a/b } }\n`,
      files: { 'functions/rec.js': RECORDER },
    }).then(
      (t) => t.stop(),
      (e: unknown) => e,
    )
    expect(err).toMatchObject({ code: 'SLUICE_ERR_CONNECTOR_START' })
    expect((err as Error).message).toMatch(/refused the connection.*(Not authorized|Bad User Name or Password)/i)
  })
})
