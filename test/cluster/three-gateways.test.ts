/**
 * Fault test with several instances: three `sluice start` processes share one PostgreSQL store
 * and consume one AMQP queue (competing consumers), one MQTT shared subscription on Mosquitto and
 * one Kafka topic of 6 partitions (a real Kafka 4 broker), while a publisher per source streams
 * `{ id }` messages. Instance B is killed with SIGKILL twice mid-stream and started again with the
 * same identity (instance id, MQTT client id, Kafka client id: as a StatefulSet pod comes back).
 *
 * Checked against the ledger (fleet-ledger.ts): every message the broker confirmed (publisher
 * confirm, PUBACK, produce ack) was processed or dead-lettered; ids run more than once are
 * bounded by what a killed instance can hold unfinished, per kill: the AMQP prefetch, the MQTT
 * Receive Maximum (maxInflight), and for Kafka maxInFlightPerPartition on every partition; no
 * Kafka partition was run by two incarnations at once and each ran its partitions' offsets in
 * order.
 *
 * Size: at least 10,000 messages per source (30,000 in all), at most 125/s per source; publishing
 * goes on until B's last incarnation is processing, so both kills land mid-stream on a slow
 * machine too (the exact count then grows; the test prints it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cleanupStack } from '../connectors/mqtt/ledger.js'
import { waitFor } from '../helpers/gateway.js'
import { KafkaBroker } from '../helpers/kafka-broker.js'
import { kafkaViolations, SOURCES, type Source } from './fleet-ledger.js'
import { fleet, fleetNames, ledgerQueue, phases, publishers, settle, WINDOWS, type Publisher } from './fleet.js'

const KILLS = 2
const PACE = { min: 10_000, max: 200_000, tick: 25, pauseMs: 200 }
/** Records of each source a new incarnation must have run before it is killed (it takes part). */
const PROGRESS = 100

let broker: KafkaBroker
beforeAll(async () => {
  broker = await KafkaBroker.start()
}, 180_000)
afterAll(async () => {
  await broker?.close()
})

describe('three gateways on one store, one queue, one shared subscription, one topic', () => {
  it(`loses nothing and bounds duplicates by the in-flight windows when one instance is killed -9 ${KILLS} times mid-stream`, async () => {
    const cleanup = cleanupStack()
    const names = await fleetNames(broker, cleanup)
    const ledger = await ledgerQueue(names, cleanup)
    const [a, b, c] = fleet(names, broker, ['A', 'B', 'C'], cleanup)
    if (!a || !b || !c) throw new Error('three instances')
    let pubs: Record<Source, Publisher> | undefined
    const phase = phases(ledger, () => pubs)
    // One at a time: on two busy cores, starting together makes every start slower.
    for (const i of [a, b, c]) await i.start()
    phase('A, B, C up')
    // After the subscriptions exist: an MQTT message to a topic nobody subscribed is dropped.
    pubs = await publishers(names, broker, PACE, cleanup)

    const working = (inst: string) => SOURCES.every((s) => ledger.processed(s, inst).size >= PROGRESS)
    const atKill: Array<Record<string, number>> = []
    for (let k = 0; k < KILLS; k++) {
      await waitFor(() => working(b.incarnation), 240_000, `${b.incarnation} processing every source`)
      atKill.push(Object.fromEntries(SOURCES.map((s) => [s, pubs?.[s].published ?? 0])))
      await b.process.kill()
      phase(`${b.incarnation} killed`)
      await b.start()
      phase(`${b.incarnation} up`)
    }
    await waitFor(() => working(b.incarnation), 240_000, `${b.incarnation} processing every source`)
    await Promise.all(SOURCES.map((s) => pubs?.[s].finish()))
    phase('publishers done')

    const r = await settle(ledger, pubs, () => a.process.url, 240_000)
    console.info(JSON.stringify({ test: 'three-gateways', atKill, reports: r }))
    for (const s of SOURCES) {
      expect(r[s].missing, `${s}: confirmed ids neither processed nor dead-lettered`).toEqual([])
      expect(r[s].unknown, `${s}: ids nobody published`).toEqual([])
      expect(r[s].confirmed, `${s}: confirmed`).toBeGreaterThanOrEqual(PACE.min)
    }
    // What a killed instance held unfinished runs again elsewhere; nothing else does.
    expect(r.amqp.extraRuns).toBeLessThanOrEqual(KILLS * WINDOWS.prefetch)
    expect(r.mqtt.extraRuns).toBeLessThanOrEqual(KILLS * WINDOWS.maxInflight)
    expect(r.kafka.extraRuns).toBeLessThanOrEqual(KILLS * WINDOWS.partitions * WINDOWS.maxInFlightPerPartition)
    expect(kafkaViolations(ledger.runs)).toEqual([])
    // Every incarnation took part in every source.
    for (const inst of ['A#1', 'B#1', 'B#2', 'B#3', 'C#1']) expect(working(inst), inst).toBe(true)
  }, 900_000)
})
