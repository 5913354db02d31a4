/**
 * The MQTT output binding. Wire taps in front of the brokers show the order of things: an input's
 * PUBACK goes out only after the broker confirmed (PUBACK) every message its function output.
 */
import { connectAsync } from 'mqtt'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startGateway, waitFor, type TestGateway } from '../../helpers/gateway.js'
import { startMosquitto } from './broker.js'
import { dropSession, publish, RECORDER, seen, SYSTEM_BROKER, uid } from './helpers.js'
import { ackedPublishes, wiretap, type Tap, type TapPacket } from './wiretap.js'

async function tapped(port: number): Promise<Tap> {
  const tap = await wiretap({ port })
  onTestFinished(() => tap.close())
  return tap
}

/** Collects what arrives on `topic` at `url` (subscribed before it resolves). */
async function subscriber(url: string, topic: string): Promise<Array<{ topic: string; body: unknown; retain: boolean }>> {
  const got: Array<{ topic: string; body: unknown; retain: boolean }> = []
  const client = await connectAsync(url, { reconnectPeriod: 0, clientId: uid('sub') })
  onTestFinished(() => client.endAsync())
  client.on('message', (t, payload, packet) => got.push({ topic: t, body: JSON.parse(payload.toString()) as unknown, retain: packet.retain }))
  await client.subscribeAsync(topic, { qos: 1 })
  return got
}

async function gateway(yaml: string, files: Record<string, string>): Promise<TestGateway> {
  const t = await startGateway({ yaml, files })
  onTestFinished(() => t.stop())
  return t
}

const inputAcks = (tap: Tap) =>
  ackedPublishes(tap.packets).map(({ ack, publish: p }) => ({ seq: ack.seq, n: (JSON.parse(p?.payload ?? 'null') as { n: number }).n }))

describe('mqtt output binding', () => {
  it('publishes each value as JSON, confirmed before the input is acked, with one client per connection', async () => {
    const inTap = await tapped(1883)
    const outTap = await tapped(1883)
    const [cin, cout] = [uid('ci'), uid('co')]
    const base = `out/${uid()}`
    const fn = `export default async function (events, ctx) {
  for (const e of events) {
    ctx.output('alerts', { n: e.body.n, kind: 'alert' })
    ctx.output('commands', { n: e.body.n, kind: 'command' })
  }
}`
    const got = await subscriber(SYSTEM_BROKER, `${base}/out/+`)
    const t = await gateway(
      `connections:\n  ${cin}: { kind: mqtt, url: "${inTap.url}" }\n  ${cout}: { kind: mqtt, url: "${outTap.url}" }\nfunctions:\n  fan:\n    code: functions/fan.js\n    trigger: { mqtt: { connection: ${cin}, topic: "${base}/in" } }\n    outputs:\n      alerts: { mqtt: { connection: ${cout}, topic: "${base}/out/alerts" } }\n      commands: { mqtt: { connection: ${cout}, topic: "${base}/out/commands", qos: 1, retain: false } }\n`,
      { 'functions/fan.js': fn },
    )
    onTestFinished(() => dropSession(SYSTEM_BROKER, `sluice-${cin}-fan`))
    await publish(
      SYSTEM_BROKER,
      `${base}/in`,
      Array.from({ length: 10 }, (_, n) => ({ n })),
    )
    await waitFor(() => got.length === 20 && inputAcks(inTap).length === 10, 30_000, 'outputs and input PUBACKs')

    for (const kind of ['alert', 'command']) {
      const topic = `${base}/out/${kind}s`
      expect(got.filter((g) => g.topic === topic).map((g) => g.body)).toEqual(Array.from({ length: 10 }, (_, n) => ({ n, kind })))
    }
    // Both outputs of the connection went through one client (one connection at the broker).
    expect(new Set(outTap.packets.map((p) => p.conn))).toEqual(new Set([1]))
    // Each input's PUBACK came after the broker's PUBACKs of both of its outputs.
    const outPublish = outTap.packets.filter((p) => p.dir === 'toBroker' && p.cmd === 'publish')
    const confirmed = (p: TapPacket) =>
      outTap.packets.find((a) => a.dir === 'toClient' && a.cmd === 'puback' && a.messageId === p.messageId && a.seq > p.seq)?.seq
    for (const ack of inputAcks(inTap)) {
      const mine = outPublish.filter((p) => (JSON.parse(p.payload ?? 'null') as { n: number }).n === ack.n)
      expect(mine).toHaveLength(2)
      for (const p of mine) expect(confirmed(p)).toBeLessThan(ack.seq)
    }
    expect(t.gw.function('fan')?.counts.eventsDone).toBe(10)
  })

  it('fails the invocation while its broker is down: the input is retried, not acked, and acked once an output is confirmed', async () => {
    const inTap = await tapped(1883)
    const outBroker = await startMosquitto({ persistence: false })
    onTestFinished(() => outBroker.close())
    await outBroker.stop()
    const [cin, cout] = [uid('ci'), uid('co')]
    const base = `down/${uid()}`
    const t = await gateway(
      `connections:\n  ${cin}: { kind: mqtt, url: "${inTap.url}" }\n  ${cout}: { kind: mqtt, url: "${outBroker.url}", reconnect: { initialDelayMs: 50, maxDelayMs: 200 } }\nfunctions:\n  rec:\n    code: functions/rec.js\n    trigger: { mqtt: { connection: ${cin}, topic: "${base}/in" } }\n    retry: { maxAttempts: 1000, backoff: fixed, initialDelayMs: 100 }\n    outputs:\n      out: { mqtt: { connection: ${cout}, topic: "${base}/out", retain: true } }\n`,
      { 'functions/rec.js': RECORDER },
    )
    onTestFinished(() => dropSession(SYSTEM_BROKER, `sluice-${cin}-rec`))
    await publish(SYSTEM_BROKER, `${base}/in`, [{ n: 1, output: { x: 1 } }])
    await waitFor(() => seen(t).filter((s) => s.n === 1).length >= 3, 30_000, 'three attempts')
    const failures = t.logs.find('invocation failed')
    expect(failures.length).toBeGreaterThanOrEqual(2)
    expect(failures[0]?.err).toMatchObject({ code: 'SLUICE_ERR_OUTPUT_FAILED' })
    expect(String((failures[0]?.err as { message?: string }).message)).toMatch(/not connected to mqtt:\/\/127\.0\.0\.1/)
    expect(inputAcks(inTap)).toEqual([])
    expect(t.gw.function('rec')?.counts.eventsDone).toBe(0)

    await outBroker.start()
    await waitFor(() => inputAcks(inTap).length === 1, 30_000, 'the input acked')
    expect(t.gw.function('rec')?.counts.eventsDone).toBe(1)
    // The broker has the output: it was published with retain, so a subscriber that comes now gets it.
    const got = await subscriber(outBroker.url, `${base}/out`)
    await waitFor(() => got.length > 0, 30_000, 'the retained output')
    expect(got).toEqual([{ topic: `${base}/out`, body: { x: 1 }, retain: true }])
  })
})
