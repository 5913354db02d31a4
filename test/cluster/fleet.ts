/**
 * Several `sluice start` processes (test/helpers/gateway-process.ts) sharing one PostgreSQL store
 * (a database of their own on the local server, created here and dropped after the test) and
 * consuming one AMQP queue (competing consumers), one MQTT shared subscription (`share:`) and one
 * Kafka topic (one consumer group), with publishers that count what each broker confirmed.
 *
 * Each instance has a stable id (`instance.id`, MQTT client id, Kafka client id): a restarted
 * instance comes back under the same identity, as a StatefulSet pod does. Before each start its
 * function files are rewritten with the incarnation (`B#2`), so the ledger tells the runs of a
 * killed process from those of its successor (fleet-ledger.ts).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Producer } from 'kafkajs'
import { Client, RABBIT_URL, unique } from '../connectors/amqp/broker.js'
import { produce, producerFor } from '../connectors/kafka/helpers.js'
import { dropSession } from '../connectors/mqtt/helpers.js'
import { deadLetterIds, StreamPublisher } from '../connectors/mqtt/ledger.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { waitFor } from '../helpers/gateway.js'
import type { KafkaBroker } from '../helpers/kafka-broker.js'
import { admin, PG_URL, uniqueName } from '../store/pg.js'
import { ledgerFunction, LedgerQueue, report, SOURCES, type Source, type SourceReport } from './fleet-ledger.js'

export const MQTT_URL = 'mqtt://127.0.0.1:1883'

/** The windows that bound what a killed instance leaves to run again. */
export interface Windows {
  /** AMQP: unacknowledged messages per consumer. */
  prefetch: number
  /** MQTT: unacknowledged messages per session (Receive Maximum). */
  maxInflight: number
  /** Kafka: unfinished events per partition. */
  maxInFlightPerPartition: number
  partitions: number
  batch: number
}

export const WINDOWS: Windows = { prefetch: 50, maxInflight: 100, maxInFlightPerPartition: 50, partitions: 6, batch: 25 }

/** Names of everything the fleet uses, unique per test. */
export interface FleetNames {
  database: string
  queue: string
  ledgerQueue: string
  topic: string
  share: string
  kafkaTopic: string
  group: string
}

type Cleanup = (step: () => unknown) => void

/** Creates the database, queues and Kafka topic; `cleanup` steps drop them after the test. */
export async function fleetNames(broker: KafkaBroker, cleanup: Cleanup): Promise<FleetNames> {
  const tag = unique('fleet').replace(/-/g, '')
  const n: FleetNames = {
    database: uniqueName('sluice_fleet'),
    queue: `${tag}-in`,
    ledgerQueue: `${tag}-ledger`,
    topic: `${tag}/in`,
    share: tag,
    kafkaTopic: `${tag}-in`,
    group: `${tag}-group`,
  }
  await admin(`CREATE DATABASE ${n.database}`)
  cleanup(() => admin(`DROP DATABASE IF EXISTS ${n.database} WITH (FORCE)`))
  const c = await Client.open()
  await c.ch.assertQueue(n.queue, { durable: true })
  await c.ch.assertQueue(n.ledgerQueue, { durable: true })
  await c.close()
  cleanup(async () => {
    const d = await Client.open()
    await d.ch.deleteQueue(n.queue).catch(() => undefined)
    await d.ch.deleteQueue(n.ledgerQueue).catch(() => undefined)
    await d.close()
  })
  await broker.createTopic(n.kafkaTopic, WINDOWS.partitions)
  return n
}

function config(n: FleetNames, broker: KafkaBroker, name: string, id: string): string {
  const w = WINDOWS
  const db = PG_URL.replace(/\/[^/]*$/, `/${n.database}`)
  const fn = (source: Source, trigger: string) => `  ${source}Ledger:
    code: functions/${name}/${source}.js
    trigger: ${trigger}
    batch: { maxSize: ${w.batch}, maxWaitMs: 5 }
    outputs:
      ledger: { amqp: { connection: rabbit, routingKey: ${n.ledgerQueue} } }
`
  return `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1, prewarm: 1 }
store: { kind: postgres, url: "${db}" }
instance: { id: ${id} }
connections:
  rabbit: { kind: amqp, url: "${RABBIT_URL}", reconnect: { initialDelayMs: 100, maxDelayMs: 1000 } }
  mosquitto: { kind: mqtt, url: "${MQTT_URL}" }
  stream: { kind: kafka, brokers: ["${broker.address}"], clientId: ${id}, connectionTimeoutMs: 1000 }
functions:
${fn('amqp', `{ amqp: { connection: rabbit, queue: ${n.queue}, prefetch: ${w.prefetch} } }`)}${fn('mqtt', `{ mqtt: { connection: mosquitto, topic: "${n.topic}", share: ${n.share}, clientId: ${id}-mqtt, maxInflight: ${w.maxInflight} } }`)}${fn(
  'kafka',
  `{ kafka: { connection: stream, topic: ${n.kafkaTopic}, groupId: ${n.group}, fromBeginning: true, sessionTimeoutMs: 6000, heartbeatIntervalMs: 300, rebalanceTimeoutMs: 20000, maxWaitMs: 200, commitIntervalMs: 50, maxInFlightPerPartition: ${w.maxInFlightPerPartition} } }`,
)}`
}

/** One gateway instance: a stable id, its own config file, and a process started again and again. */
export class Instance {
  readonly process: GatewayProcess
  /** The incarnation of the running (or last) process: `<name>#<starts>`. */
  incarnation = ''

  constructor(
    readonly name: string,
    private readonly dir: string,
  ) {
    this.process = new GatewayProcess(dir, `gateway-${name}.yaml`)
  }

  async start(): Promise<void> {
    this.incarnation = `${this.name}#${this.process.starts + 1}`
    for (const s of SOURCES) writeFileSync(join(this.dir, 'functions', this.name, `${s}.js`), ledgerFunction(s, this.incarnation))
    await this.process.start(300_000)
  }
}

/** Writes one project folder with a config per instance (`gateway-A.yaml`, ...). */
export function fleet(n: FleetNames, broker: KafkaBroker, names: string[], cleanup: Cleanup): Instance[] {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-fleet-'))
  cleanup(() => rmSync(dir, { recursive: true, force: true }))
  return names.map((name) => {
    mkdirSync(join(dir, 'functions', name), { recursive: true })
    writeFileSync(join(dir, `gateway-${name}.yaml`), config(n, broker, name, `${n.share}-${name}`))
    const i = new Instance(name, dir)
    // After the kill (steps run in reverse): the persistent session would stay on the broker.
    cleanup(() => dropSession(MQTT_URL, `${n.share}-${name}-mqtt`))
    cleanup(() => i.process.kill())
    return i
  })
}

/** Publishes `{ id }` bodies with ids 0, 1, ... in ticks until finished (at least `min`) or `max`. */
export interface Publisher {
  readonly confirmed: Set<number>
  /** Ids handed to the broker so far. */
  readonly published: number
  finish(): Promise<void>
}

export interface Pace {
  min: number
  max: number
  tick: number
  pauseMs: number
}

/** Runs `send(ids)` per tick; ids whose send resolved are confirmed. */
class TickPublisher implements Publisher {
  readonly confirmed = new Set<number>()
  published = 0
  private finishing = false
  private readonly loop: Promise<void>

  constructor(
    pace: Pace,
    send: (ids: number[]) => Promise<void>,
    private readonly close: () => Promise<unknown>,
  ) {
    this.loop = (async () => {
      while (this.published < pace.max && !(this.finishing && this.published >= pace.min)) {
        const ids = Array.from({ length: Math.min(pace.tick, pace.max - this.published) }, (_, i) => this.published + i)
        this.published += ids.length
        await send(ids).then(() => ids.forEach((id) => this.confirmed.add(id)))
        await new Promise((r) => setTimeout(r, pace.pauseMs))
      }
    })()
    this.loop.catch(() => undefined)
  }

  async finish(): Promise<void> {
    this.finishing = true
    try {
      await this.loop
    } finally {
      await this.close()
    }
  }
}

/** A publisher per source: AMQP publisher confirms, MQTT PUBACKs (QoS 1), Kafka acks from all replicas. */
export async function publishers(n: FleetNames, broker: KafkaBroker, pace: Pace, cleanup: Cleanup): Promise<Record<Source, Publisher>> {
  const rabbit = await Client.open()
  cleanup(() => rabbit.close())
  const amqp = new TickPublisher(
    pace,
    (ids) =>
      rabbit.publish(
        ids.map((id) => ({ id })),
        { queue: n.queue },
      ),
    () => rabbit.close(),
  )
  const producer: Producer = await producerFor(broker)
  cleanup(() => producer.disconnect())
  const kafka = new TickPublisher(
    pace,
    (ids) =>
      produce(
        producer,
        n.kafkaTopic,
        ids.map((id) => ({ id })),
      ),
    () => producer.disconnect(),
  )
  const mqtt = new StreamPublisher({ url: MQTT_URL, topicOf: () => n.topic, ...pace })
  mqtt.start()
  cleanup(() => mqtt.close())
  return { amqp, kafka, mqtt }
}

/** Opens the ledger queue's reader, closed after the test. */
export async function ledgerQueue(n: FleetNames, cleanup: Cleanup): Promise<LedgerQueue> {
  const l = await LedgerQueue.open(n.ledgerQueue)
  cleanup(() => l.close())
  return l
}

/**
 * Waits until every confirmed id of every source is in the ledger or among the dead letters of
 * the shared store (listed by the instance at `url`), then reports per source.
 */
export async function settle(
  ledger: LedgerQueue,
  pubs: Record<Source, Publisher>,
  url: () => string,
  timeoutMs: number,
): Promise<Record<Source, SourceReport>> {
  const dead = async (): Promise<Record<Source, number[]>> => {
    const [amqp, mqtt, kafka] = await Promise.all(SOURCES.map((s) => deadLetterIds(url(), `${s}Ledger`)))
    return { amqp: amqp ?? [], mqtt: mqtt ?? [], kafka: kafka ?? [] }
  }
  const reports = async (): Promise<Record<Source, SourceReport>> => {
    const d = await dead()
    const r = (s: Source) => report(ledger.runs, s, pubs[s].confirmed, pubs[s].published, d[s])
    return { amqp: r('amqp'), mqtt: r('mqtt'), kafka: r('kafka') }
  }
  const covered = () =>
    SOURCES.every((s) => {
      const p = ledger.processed(s)
      return [...pubs[s].confirmed].every((id) => p.has(id))
    })
  let last = 0
  try {
    await waitFor(
      async () => {
        if (covered()) return true
        // Dead letters count too; list them at most once a second.
        if (Date.now() - last < 1000) return false
        last = Date.now()
        const r = await reports()
        return SOURCES.every((s) => r[s].missing.length === 0)
      },
      timeoutMs,
      'every confirmed message processed or dead-lettered',
    )
  } catch (e) {
    const r = await reports()
    throw new Error(
      `${(e as Error).message}: ${JSON.stringify(Object.fromEntries(SOURCES.map((s) => [s, { ...r[s], missing: r[s].missing.length, firstMissing: r[s].missing.slice(0, 10) }])))}`,
    )
  }
  return reports()
}

/** Prints one line per phase (seconds since the first, published and processed per source): the run's story when it fails or is slow. */
export function phases(ledger: LedgerQueue, pubs: () => Record<Source, Publisher> | undefined): (label: string) => void {
  const t0 = Date.now()
  return (label) => {
    const p = pubs()
    const counts = Object.fromEntries(SOURCES.map((s) => [s, `${p?.[s].published ?? 0}/${ledger.processed(s).size}`]))
    console.info(`[fleet ${((Date.now() - t0) / 1000).toFixed(1)}s] ${label} (published/processed ${JSON.stringify(counts)})`)
  }
}
