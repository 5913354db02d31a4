/**
 * Sessions and the broker's lifecycle, against a Mosquitto of this file's own (persistence on):
 * messages published while the gateway is down, shared subscriptions split between gateways,
 * health while the broker is down, and a changed topic filter on a kept session.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { projectDir, waitFor, type TestGateway } from '../../helpers/gateway.js'
import { startMosquitto, type Mosquitto } from './broker.js'
import { numbers, publish, recGateway, seen, uid } from './helpers.js'

let broker: Mosquitto
beforeAll(async () => {
  broker = await startMosquitto()
})
afterAll(async () => {
  await broker?.close()
})

/** A project folder kept across gateways (same state store), removed after the test. */
function keptDir(): string {
  const p = projectDir({})
  onTestFinished(() => p.cleanup())
  return p.dir
}

const conn = (name: string, extra = '') => `  ${name}: { kind: mqtt, url: "${broker.url}", reconnect: { initialDelayMs: 50, maxDelayMs: 300 }${extra} }`

describe.each([4, 5] as const)('mqtt persistent session, protocol version %i', (protocolVersion) => {
  it('delivers what was published while the gateway was stopped', async () => {
    const c = uid('c')
    const topic = `sess/${uid()}/+`
    const dir = keptDir()
    const opts = { connections: conn(c, `, protocolVersion: ${protocolVersion}`), trigger: `{ mqtt: { connection: ${c}, topic: "${topic}", qos: 1 } }`, dir }
    const t1 = await recGateway(opts)
    await publish(broker.url, topic.replace('+', 'a'), [{ n: 0 }], { protocolVersion })
    await waitFor(() => numbers(t1).has(0), 30_000, 'the first message')
    await t1.stop()
    // Nobody is connected: the broker queues these in the session of sluice-<connection>-rec.
    await publish(
      broker.url,
      (i) => topic.replace('+', `s${i % 4}`),
      Array.from({ length: 40 }, (_, i) => ({ n: i + 1 })),
      { protocolVersion },
    )
    const t2 = await recGateway(opts)
    await waitFor(() => numbers(t2).size === 40, 30_000, 'the queued messages')
    expect([...numbers(t2)].sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))
    // Per topic, in publish order.
    for (let s = 0; s < 4; s++) {
      const ns = seen(t2)
        .filter((e) => e.meta.topic === topic.replace('+', `s${s}`))
        .map((e) => e.n ?? 0)
      expect(ns).toEqual([...ns].sort((a, b) => a - b))
    }
  })
})

describe('mqtt shared subscription', () => {
  it('splits the messages between two gateways and loses none', async () => {
    const c = uid('c')
    const group = uid('g')
    const topic = `shared/${uid()}/data`
    const start = (clientId: string) =>
      recGateway({ connections: conn(c), trigger: `{ mqtt: { connection: ${c}, topic: "${topic}", share: ${group}, clientId: ${clientId}, qos: 1 } }` })
    const [a, b] = await Promise.all([start(uid('ga')), start(uid('gb'))])
    await publish(
      broker.url,
      topic,
      Array.from({ length: 200 }, (_, n) => ({ n })),
    )
    const all = () => new Set([...numbers(a), ...numbers(b)])
    await waitFor(() => all().size === 200, 30_000, 'all 200 messages')
    expect(numbers(a).size).toBeGreaterThan(0)
    expect(numbers(b).size).toBeGreaterThan(0)
    // Each message went to one of them.
    expect(seen(a).length + seen(b).length).toBe(200)
  })
})

describe('mqtt health', () => {
  it('goes down while the broker is down and up once resubscribed; the session keeps what came meanwhile', async () => {
    const c = uid('c')
    const topic = `health/${uid()}`
    const t = await recGateway({ connections: conn(c), trigger: `{ mqtt: { connection: ${c}, topic: "${topic}" } }` })
    const health = (g: TestGateway) => g.gw.health().connections[0]
    expect(health(t)?.up).toBe(true)
    await broker.stop()
    // Whatever happens below, the next test needs the broker back.
    onTestFinished(() => broker.start())
    const down = await waitFor(() => (health(t)?.up === false ? health(t) : undefined), 30_000, 'health down')
    expect(down.detail).toMatch(/reconnecting to mqtt:\/\/127\.0\.0\.1:\d+ in \d+ ms/)
    expect(t.gw.health().status).toBe('degraded')
    await broker.start()
    await waitFor(() => health(t)?.up, 30_000, 'health up')
    await publish(broker.url, topic, [{ n: 1 }])
    await waitFor(() => numbers(t).has(1), 30_000, 'a message after the outage')
    expect(t.logs.find('mqtt connection lost; reconnecting').length).toBeGreaterThan(0)
  })
})

describe('mqtt subscription change', () => {
  it('unsubscribes the old filter when a kept session gets a new topic', async () => {
    const c = uid('c')
    const base = `chg/${uid()}`
    const dir = keptDir()
    const t1 = await recGateway({ connections: conn(c), trigger: `{ mqtt: { connection: ${c}, topic: "${base}/old" } }`, dir })
    await t1.stop()
    const t2 = await recGateway({ connections: conn(c), trigger: `{ mqtt: { connection: ${c}, topic: "${base}/new" } }`, dir })
    // One session, one stream: had the old filter stayed, n=1 would come before n=2.
    await publish(broker.url, `${base}/old`, [{ n: 1 }])
    await publish(broker.url, `${base}/new`, [{ n: 2 }])
    await waitFor(() => numbers(t2).has(2), 30_000, 'the new topic')
    expect([...numbers(t2)]).toEqual([2])
    expect(t2.logs.find('mqtt subscription changed; unsubscribed the old filter')).toHaveLength(1)
  })
})
