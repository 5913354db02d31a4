/**
 * Helpers for the Kafka connector tests: unique names, a bare kafkajs producer against the test
 * broker (test/kafka/broker.ts), and the YAML of a kafka connection.
 */
import { randomBytes } from 'node:crypto'
import { Kafka, logLevel, type Producer } from 'kafkajs'
import type { KafkaTestBroker } from '../../kafka/broker.js'

export const uid = (prefix = 't') => `${prefix}-${randomBytes(5).toString('hex')}`

/** A connected producer (acks -1 on every send); disconnect it in the test's cleanup. */
export async function producerFor(broker: KafkaTestBroker): Promise<Producer> {
  const p = new Kafka({ brokers: [broker.address], clientId: uid('test-producer'), logLevel: logLevel.NOTHING }).producer()
  await p.connect()
  return p
}

/** Produces one JSON message per body, resolving once the broker acknowledged all of them. */
export async function produce(p: Producer, topic: string, bodies: Array<Record<string, unknown>>, key?: (b: Record<string, unknown>, i: number) => string | null): Promise<void> {
  await p.send({ topic, acks: -1, messages: bodies.map((b, i) => ({ key: key ? key(b, i) : null, value: JSON.stringify(b) })) })
}

/** A `connections:` entry (two-space indent) for the broker. */
export function connectionYaml(name: string, broker: KafkaTestBroker): string {
  return `  ${name}: { kind: kafka, brokers: ["${broker.address}"], clientId: ${name}, connectionTimeoutMs: 1000 }`
}

/** Group timings fast enough for tests (the defaults are Kafka's: 30 s sessions, 3 s heartbeats). */
export const FAST_GROUP = 'sessionTimeoutMs: 6000, heartbeatIntervalMs: 300, rebalanceTimeoutMs: 20000, maxWaitMs: 200, commitIntervalMs: 50'
