/**
 * Hostile payloads against every stream connector, each on its real broker or test server (see
 * hostile-payloads.ts for the set and what passes): MQTT on Mosquitto through a wire tap (PUBACKs
 * seen on the wire), AMQP on RabbitMQ (queue empty and nothing unacked), Event Hubs on the AMQP 1.0
 * test server (checkpoint at the last event). Another connector joins with one more harness.
 */
import { EventHubProducerClient } from '@azure/event-hubs'
import { connectAsync } from 'mqtt'
import { describe, it, onTestFinished } from 'vitest'
import type { PartitionRow } from '../../connectors/eventhubs/index.js'
import { EventHubsTestServer } from '../eventhubs/server.js'
import { Client, RABBIT_URL } from './amqp/broker.js'
import { settled, tempQueue } from './amqp/helpers.js'
import { uid as ehUid } from './eventhubs/helpers.js'
import { eventHubsYaml } from './eventhubs/helpers.js'
import { dropSession, uid } from './mqtt/helpers.js'
import { ackedPublishes, wiretap } from './mqtt/wiretap.js'
import { expectSurvivesHostilePayloads, hostileGateway, type HostileHarness } from './hostile-payloads.js'

const MQTT_PORT = 1883

const mqtt: HostileHarness = {
  name: 'mqtt',
  maxPayloadBytes: 64 * 1024 * 1024,
  async start() {
    const tap = await wiretap({ port: MQTT_PORT })
    onTestFinished(() => tap.close())
    const base = `hostile/${uid()}`
    const clientId = uid('sluice-hostile')
    onTestFinished(() => dropSession(`mqtt://127.0.0.1:${MQTT_PORT}`, clientId))
    const t = await hostileGateway(
      `  bus: { kind: mqtt, url: "${tap.url}" }`,
      `{ mqtt: { connection: bus, topic: "${base}/+", qos: 1, clientId: ${clientId} } }`,
    )
    let sent = 0
    return {
      t,
      async send(items) {
        const c = await connectAsync(`mqtt://127.0.0.1:${MQTT_PORT}`, { clientId: uid('pub'), reconnectPeriod: 0 })
        try {
          for (const it of items) await c.publishAsync(`${base}/${it.tag}`, it.bytes, { qos: 1 })
          sent += items.length
        } finally {
          await c.endAsync()
        }
      },
      tagOf: (meta) => (typeof meta.topic === 'string' ? meta.topic.slice(base.length + 1) : undefined),
      acked: async () => new Set(ackedPublishes(tap.packets).map((a) => a.publish?.topic)).size >= sent,
    }
  },
}

const amqp: HostileHarness = {
  name: 'amqp',
  maxPayloadBytes: 64 * 1024 * 1024,
  async start() {
    const queue = await tempQueue('amqp-hostile')
    const c = await Client.open()
    onTestFinished(() => c.close())
    const t = await hostileGateway(`  q: { kind: amqp, url: "${RABBIT_URL}" }`, `{ amqp: { connection: q, queue: ${queue} } }`)
    return {
      t,
      async send(items) {
        for (const it of items) c.ch.sendToQueue(queue, it.bytes, { persistent: true, messageId: it.tag })
        await c.ch.waitForConfirms()
      },
      tagOf: (meta) => (typeof meta.messageId === 'string' ? meta.messageId : undefined),
      acked: () => settled(queue),
    }
  },
}

const eventhubs: HostileHarness = {
  name: 'eventhubs',
  // The test server (like a standard namespace) carries messages up to 1 MiB.
  maxPayloadBytes: 1000 * 1000,
  async start() {
    const server = new EventHubsTestServer()
    await server.start()
    onTestFinished(() => server.stop())
    const hub = ehUid('hostile')
    server.createHub(hub, 1)
    const y = eventHubsYaml(server, hub)
    const t = await hostileGateway(y.connectionsYaml, y.triggerYaml)
    let sent = 0
    return {
      t,
      async send(items) {
        const p = new EventHubProducerClient(server.connectionString(), hub)
        try {
          for (const it of items) await p.sendBatch([{ body: it.bytes, properties: { tag: it.tag } }], { partitionId: '0' })
          sent += items.length
        } finally {
          await p.close()
        }
      },
      tagOf: (meta) => {
        const tag = (meta.properties as Record<string, unknown> | undefined)?.tag
        return typeof tag === 'string' ? tag : undefined
      },
      acked: async () => {
        const rows = await t.gw.store.listVersioned('eventhubs:fn', 'eh/')
        return rows.some((r) => ((r.value as PartitionRow).checkpoint?.sequenceNumber ?? -1) >= sent - 1)
      },
    }
  },
}

describe.each([mqtt, amqp, eventhubs])('hostile payloads: $name', (h) => {
  it('the gateway stays up, the stream flows, and each hostile message ends in exactly one place', { timeout: 240_000 }, async () => {
    await expectSurvivesHostilePayloads(h)
  })
})
