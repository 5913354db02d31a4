/**
 * The shared connector conformance suite against a Mosquitto of this file's own (persistence on,
 * so restartBroker keeps sessions and queued messages). Each source is a fresh connection name
 * (so a fresh client id and session) and topic.
 */
import { afterAll, beforeAll } from 'vitest'
import { connectorConformance, type HarnessSource } from '../../conformance/suite.js'
import { startMosquitto, type Mosquitto } from './broker.js'
import { dropSession, publish, uid } from './helpers.js'

let broker: Mosquitto
beforeAll(async () => {
  broker = await startMosquitto()
})
afterAll(async () => {
  await broker?.close()
})

connectorConformance({
  kind: 'mqtt',
  source: async (): Promise<HarnessSource> => {
    const connection = uid('c')
    const topic = `conf/${uid()}/data`
    return {
      connectionsYaml: `  ${connection}: { kind: mqtt, url: "${broker.url}", reconnect: { initialDelayMs: 50, maxDelayMs: 500 } }`,
      triggerYaml: `{ mqtt: { connection: ${connection}, topic: "${topic}", qos: 1 } }`,
      publish: (bodies) => publish(broker.url, topic, bodies),
      restartBroker: () => broker.restart(),
      // The suite's function is named rec: its session is sluice-<connection>-rec.
      cleanup: () => dropSession(broker.url, `sluice-${connection}-rec`),
    }
  },
})
