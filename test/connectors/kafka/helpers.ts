/**
 * Helpers for the Kafka connector tests against the real broker (test/helpers/kafka-broker.ts):
 * unique names, a bare kafkajs producer, the YAML of a kafka connection, and `TopicTail`, which
 * reads a topic into memory as it grows (the ledgers and outputs the tests check).
 */
import { randomBytes } from 'node:crypto'
import type { Consumer, Producer } from 'kafkajs'
import { afterAll, afterEach, beforeAll } from 'vitest'
import { KafkaBroker } from '../../helpers/kafka-broker.js'

export const uid = (prefix = 't') => `${prefix}-${randomBytes(5).toString('hex')}`

/** A connected producer; disconnect it in the test's cleanup. */
export async function producerFor(broker: KafkaBroker): Promise<Producer> {
  const p = broker.client(uid('test-producer')).producer()
  await p.connect()
  return p
}

/** Produces one JSON message per body, resolving once the broker acknowledged all of them (acks -1). */
export async function produce(
  p: Producer,
  topic: string,
  bodies: Array<Record<string, unknown>>,
  key?: (b: Record<string, unknown>, i: number) => string | null,
): Promise<void> {
  await p.send({ topic, acks: -1, messages: bodies.map((b, i) => ({ key: key ? key(b, i) : null, value: JSON.stringify(b) })) })
}

/** A `connections:` entry (two-space indent) for the broker's PLAINTEXT listener. */
export function connectionYaml(name: string, broker: KafkaBroker, extra = ''): string {
  return `  ${name}: { kind: kafka, brokers: ["${broker.address}"], clientId: ${name}, connectionTimeoutMs: 1000${extra ? `, ${extra}` : ''} }`
}

/** Group timings fast enough for tests (the defaults are Kafka's: 30 s sessions, 3 s heartbeats). */
export const FAST_GROUP = 'sessionTimeoutMs: 6000, heartbeatIntervalMs: 300, rebalanceTimeoutMs: 20000, maxWaitMs: 200, commitIntervalMs: 50'

export interface TailRecord {
  partition: number
  offset: number
  key: string | null
  value: string | null
  /** The record's timestamp (the broker's append time on topics created with LogAppendTime). */
  timestamp: number
  headers: Record<string, string>
  keyBytes: Buffer | null
  valueBytes: Buffer | null
}

/**
 * Reads `topic` from the beginning (committed records only) and keeps every record in
 * `records`, in arrival order, until closed. Opened once per test: polling it is free.
 */
export class TopicTail {
  readonly records: TailRecord[] = []
  private constructor(private readonly consumer: Consumer) {}

  static async open(broker: KafkaBroker, topic: string): Promise<TopicTail> {
    const consumer = broker.client(uid('tail')).consumer({ groupId: uid('tail'), maxWaitTimeInMs: 100, sessionTimeout: 30_000, retry: { retries: 100 } })
    const tail = new TopicTail(consumer)
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    let joined!: () => void
    const ready = new Promise<void>((r) => (joined = r))
    consumer.on(consumer.events.GROUP_JOIN, () => joined())
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message: m }) => {
        const headers: Record<string, string> = {}
        for (const [k, v] of Object.entries(m.headers ?? {})) headers[k] = String(v)
        tail.records.push({
          partition,
          offset: Number(m.offset),
          key: m.key?.toString() ?? null,
          value: m.value?.toString() ?? null,
          timestamp: Number(m.timestamp),
          headers,
          keyBytes: m.key,
          valueBytes: m.value,
        })
      },
    })
    await ready
    return tail
  }

  /** The values parsed as JSON. */
  json<T>(): T[] {
    return this.records.map((r) => JSON.parse(r.value ?? 'null') as T)
  }

  close(): Promise<void> {
    return this.consumer.disconnect()
  }
}

/**
 * One real Kafka broker for the whole test file (started before its first test, closed after its
 * last) handed to `use`, and a list of cleanups run after each test, newest first.
 */
export function brokerPerFile(use: (broker: KafkaBroker) => void): Array<() => Promise<unknown> | unknown> {
  let broker: KafkaBroker | undefined
  const cleanups: Array<() => Promise<unknown> | unknown> = []
  beforeAll(async () => {
    broker = await KafkaBroker.start()
    use(broker)
  }, 180_000)
  afterAll(async () => {
    await broker?.close()
  })
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })
  return cleanups
}
