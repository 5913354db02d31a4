/**
 * The shared connector conformance suite against the Event Hubs test server (test/eventhubs):
 * each source is a fresh hub with two partitions; restartBroker drops every connection and
 * listens again on the same port with the logs kept, as a namespace that comes back.
 */
import { afterAll, beforeAll } from 'vitest'
import { connectorConformance, type HarnessSource } from '../../conformance/suite.js'
import { EventHubsTestServer } from '../../eventhubs/server.js'
import { eventHubsYaml, publish, uid } from './helpers.js'

const server = new EventHubsTestServer()
beforeAll(() => server.start())
afterAll(() => server.stop())

connectorConformance({
  kind: 'eventhubs',
  source: async (): Promise<HarnessSource> => {
    const hub = uid('conf')
    server.createHub(hub, 2)
    return {
      ...eventHubsYaml(server, hub),
      publish: (bodies) => publish(server, hub, bodies),
      restartBroker: () => server.restart(),
      cleanup: async () => undefined,
    }
  },
})
