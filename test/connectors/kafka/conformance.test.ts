/**
 * The shared connector conformance suite against a real Apache Kafka 4 broker of this file
 * (test/helpers/kafka-broker.ts): each source is a fresh topic of 3 partitions and a fresh
 * consumer group; restartBroker stops the broker (SIGTERM) and starts it on the same log dir.
 */
import type { Producer } from 'kafkajs'
import { afterAll, beforeAll } from 'vitest'
import { KafkaBroker } from '../../helpers/kafka-broker.js'
import { connectorConformance, type HarnessSource } from '../../conformance/suite.js'
import { connectionYaml, FAST_GROUP, produce, producerFor, uid } from './helpers.js'

let broker: KafkaBroker
beforeAll(async () => {
  broker = await KafkaBroker.start()
}, 180_000)
afterAll(async () => {
  await broker?.close()
})

connectorConformance({
  kind: 'kafka',
  source: async (): Promise<HarnessSource> => {
    const topic = uid('conf')
    await broker.createTopic(topic, 3)
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
