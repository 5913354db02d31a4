/**
 * The shared connector conformance suite against RabbitMQ. Every source gets its own durable
 * classic queue (declared here, deleted in cleanup) and its own connection name.
 *
 * restartBroker: these sources live on a dedicated RabbitMQ node (see broker.ts), which the
 * harness stops and starts for real, keeping durable queues and persistent messages; other test
 * files share the system broker, which must never be restarted. Where no dedicated node can start
 * (not root, no rabbitmq user), the sources use the system broker and restartBroker closes the
 * gateway's connections server-side with `rabbitmqctl close_connection` instead (the client sees
 * the same CONNECTION_FORCED close as on a broker shutdown; the queues just stay up).
 */
import { afterAll, beforeAll } from 'vitest'
import { connectorConformance } from '../../conformance/suite.js'
import { Client, closeConnections, DedicatedBroker, RABBIT_URL, unique } from './broker.js'

let broker: DedicatedBroker | undefined

beforeAll(async () => {
  try {
    broker = await DedicatedBroker.start()
  } catch (e) {
    console.warn(`no dedicated RabbitMQ node (${(e as Error).message}); restartBroker closes connections on the system broker instead`)
  }
}, 120_000)

afterAll(async () => {
  await broker?.destroy()
}, 60_000)

connectorConformance({
  kind: 'amqp',
  async source() {
    const url = broker?.url ?? RABBIT_URL
    const queue = unique('conformance')
    const connection = unique('conf')
    const admin = await Client.open(url)
    try {
      await admin.ch.assertQueue(queue, { durable: true })
    } finally {
      await admin.close()
    }
    return {
      connectionsYaml: `  ${connection}: { kind: amqp, url: "${url}", reconnect: { initialDelayMs: 200, maxDelayMs: 2000 } }`,
      triggerYaml: `{ amqp: { connection: ${connection}, queue: ${queue} } }`,
      async publish(bodies) {
        const c = await Client.open(url)
        try {
          await c.publish(bodies, { queue })
        } finally {
          await c.close()
        }
      },
      async restartBroker() {
        if (broker) await broker.restart()
        else if ((await closeConnections(`sluice/${connection}/`)) === 0) throw new Error('no gateway connection to close')
      },
      async cleanup() {
        const c = await Client.open(url)
        try {
          await c.ch.deleteQueue(queue)
        } finally {
          await c.close()
        }
      },
    }
  },
})
