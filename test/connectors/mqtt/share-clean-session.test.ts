/**
 * What Mosquitto does with the messages of a shared subscription's member that dies while it uses
 * a clean (non-persistent) session: are the messages it had not acknowledged given to the other
 * members, or lost? Measured with plain MQTT clients on a private Mosquitto (the broker's
 * behaviour, not the gateway's), written down in connectors/mqtt/README.md ("Several gateway
 * instances"). If a Mosquitto upgrade changes the answer, this test fails and the README must
 * change with it.
 *
 * The dying member never acknowledges (it withholds PUBACK, like a gateway whose functions have
 * not finished) and limits its window with Receive Maximum (MQTT 5) like the gateway's maxInflight,
 * so it holds messages both in flight and queued behind the window when its socket is cut without
 * DISCONNECT (kill -9). Its will message tells the test when the broker has handled the loss.
 */
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { waitFor } from '../../helpers/gateway.js'
import { startMosquitto, type Mosquitto } from './broker.js'
import { uid } from './helpers.js'

let broker: Mosquitto
beforeAll(async () => {
  broker = await startMosquitto()
})
afterAll(async () => {
  await broker?.close()
})

const numberOf = (payload: Buffer): number => (JSON.parse(payload.toString()) as { n: number }).n

async function member(opts: IClientOptions): Promise<MqttClient> {
  const c = await connectAsync(broker.url, { reconnectPeriod: 0, ...opts })
  onTestFinished(() => {
    c.end(true)
  })
  return c
}

interface Result {
  published: number
  /** What the survivor received: its own share plus whatever the broker moved over to it. */
  survivor: Set<number>
  /** Confirmed messages that reached no live member. */
  lost: number[]
}

async function measure(protocolVersion: 4 | 5): Promise<Result> {
  const topic = `${uid('share')}/t`
  const filter = `$share/${uid('g')}/${topic}`
  const willTopic = `${uid('will')}/gone`
  const survivor = new Set<number>()
  let willSeen = false

  const v5 = protocolVersion === 5
  const dead = await member({
    protocolVersion,
    clean: true,
    clientId: uid('dying'),
    ...(v5 ? { properties: { sessionExpiryInterval: 0, receiveMaximum: 10 } } : {}),
    will: { topic: willTopic, payload: Buffer.from('gone'), qos: 1, retain: false },
    // Never acknowledge. mqtt.js reads the next packet only once this calls back, so the member
    // also stops reading: what the broker sent it stays unacknowledged, the rest waits in its
    // session behind the window (MQTT 5: Receive Maximum 10; 3.1.1: the broker's inflight limit).
    customHandleAcks: () => undefined,
  })
  const alive = await member({ protocolVersion, clean: true, clientId: uid('alive'), ...(v5 ? { properties: { sessionExpiryInterval: 0 } } : {}) })
  alive.on('message', (t, payload) => {
    if (t === willTopic) willSeen = true
    else survivor.add(numberOf(payload))
  })
  await dead.subscribeAsync(filter, { qos: 1 })
  await alive.subscribeAsync([filter, willTopic], { qos: 1 })

  // The ledger: every message the broker acknowledged to the publisher. Once all are
  // acknowledged, the broker has given each to one member of the group.
  const N = 200
  const pub = await connectAsync(broker.url, { protocolVersion: 5, clientId: uid('pub'), reconnectPeriod: 0 })
  onTestFinished(() => pub.endAsync())
  await Promise.all(Array.from({ length: N }, (_, i) => pub.publishAsync(topic, JSON.stringify({ n: i + 1 }), { qos: 1 })))
  await waitFor(() => survivor.size > 0, 10_000, 'the survivor receiving its share')

  // kill -9: the socket closes without DISCONNECT.
  dead.stream.destroy()
  await waitFor(() => willSeen, 10_000, 'the broker to notice (the will message)')
  // Anything the broker moves to the survivor on the loss is queued for it before this marker.
  await pub.publishAsync(topic, JSON.stringify({ n: N + 1 }), { qos: 1 })
  await waitFor(() => survivor.has(N + 1), 10_000, 'the marker')
  const lost = Array.from({ length: N }, (_, i) => i + 1).filter((n) => !survivor.has(n))
  return { published: N, survivor, lost }
}

describe('mosquitto shared subscription, clean sessions, a member dies (measured)', () => {
  it.each([5, 4] as const)('protocol version %i: the messages the dead member held are lost, not given to the survivor', async (v) => {
    const r = await measure(v)
    // Round robin gave every other message to the dead member: exactly those never arrive.
    expect(r.lost.length).toBe(r.published / 2)
    const parity = (r.lost[0] as number) % 2
    expect(r.lost.every((n) => n % 2 === parity)).toBe(true)
    // Published after the loss: the survivor gets it (and every later message).
    expect(r.survivor.has(r.published + 1)).toBe(true)
  })
})
