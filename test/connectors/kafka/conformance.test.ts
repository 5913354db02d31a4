/**
 * The shared connector conformance suite against the wire-protocol test broker
 * (test/kafka/broker.ts): each source is a fresh topic of 3 partitions and a fresh consumer
 * group; restartBroker stops the broker and listens again on the same port with its log and
 * committed offsets kept.
 */
import type { Producer } from 'kafkajs'
import { afterAll, beforeAll } from 'vitest'
import { connectorConformance, type HarnessSource } from '../../conformance/suite.js'
import { KafkaTestBroker } from '../../kafka/broker.js'
import { connectionYaml, FAST_GROUP, produce, producerFor, uid } from './helpers.js'

let broker: KafkaTestBroker
beforeAll(async () => {
  broker = await KafkaTestBroker.start()
})
afterAll(async () => {
  await broker?.close()
})

connectorConformance({
  kind: 'kafka',
  source: async (): Promise<HarnessSource> => {
    const topic = uid('conf')
    broker.createTopic(topic, 3)
    let producer: Producer | undefined
    return {
      connectionsYaml: connectionYaml('stream', broker),
      triggerYaml: `{ kafka: { connection: stream, topic: ${topic}, groupId: g-${topic}, ${FAST_GROUP} } }`,
      publish: async (bodies) => {
        producer ??= await producerFor(broker)
        await produce(producer, topic, bodies)
      },
      restartBroker: () => broker.restart(),
      cleanup: async () => {
        await producer?.disconnect()
      },
    }
  },
})
