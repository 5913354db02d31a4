/**
 * Rolling restart: three `sluice start` processes share one PostgreSQL store and consume one AMQP
 * queue, one MQTT shared subscription and one Kafka topic (a real Kafka 4 broker) while the
 * stream flows; each instance in turn gets SIGTERM, exits 0 and starts again with the same
 * identity before the next one goes.
 *
 * SIGTERM drains: runs in flight finish and are acknowledged or committed, events taken but not
 * yet run are left unacknowledged and come back once, to whichever instance gets them next. So
 * the ledger (fleet-ledger.ts) must show every confirmed message processed exactly once, none
 * dead-lettered, and Kafka partitions handed over without overlap and in offset order.
 *
 * Size: at least 3,000 messages per source, at most 125/s per source; publishing goes on until
 * the last restarted instance is processing, so every restart happens mid-stream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cleanupStack } from '../connectors/mqtt/ledger.js'
import { waitFor } from '../helpers/gateway.js'
import { KafkaBroker } from '../helpers/kafka-broker.js'
import { kafkaViolations, SOURCES, type Source } from './fleet-ledger.js'
import { fleet, fleetNames, ledgerQueue, phases, publishers, settle, type Publisher } from './fleet.js'

const PACE = { min: 3_000, max: 200_000, tick: 25, pauseMs: 200 }
/** Records of each source an incarnation must have run before it is stopped (it takes part). */
const PROGRESS = 50

let broker: KafkaBroker
beforeAll(async () => {
  broker = await KafkaBroker.start()
}, 180_000)
afterAll(async () => {
  await broker?.close()
})

describe('rolling restart of three gateways with SIGTERM', () => {
  it('processes every confirmed message exactly once while each instance in turn drains and restarts', async () => {
    const cleanup = cleanupStack()
    const names = await fleetNames(broker, cleanup)
    const ledger = await ledgerQueue(names, cleanup)
    const instances = fleet(names, broker, ['A', 'B', 'C'], cleanup)
    let pubs: Record<Source, Publisher> | undefined
    const phase = phases(ledger, () => pubs)
    // One at a time: on two busy cores, starting together makes every start slower.
    for (const i of instances) await i.start()
    phase('A, B, C up')
    pubs = await publishers(names, broker, PACE, cleanup)

    const working = (inst: string) => SOURCES.every((s) => ledger.processed(s, inst).size >= PROGRESS)
    const atStop: Array<Record<string, number>> = []
    for (const i of instances) {
      await waitFor(() => working(i.incarnation), 240_000, `${i.incarnation} processing every source`)
      atStop.push(Object.fromEntries(SOURCES.map((s) => [s, pubs?.[s].published ?? 0])))
      expect(await i.process.stop(), `${i.incarnation} exit code after SIGTERM`).toBe(0)
      phase(`${i.incarnation} stopped`)
      await i.start()
      phase(`${i.incarnation} up`)
    }
    await waitFor(() => instances.every((i) => working(i.incarnation)), 240_000, 'every restarted instance processing every source')
    await Promise.all(SOURCES.map((s) => pubs?.[s].finish()))
    phase('publishers done')

    const first = instances[0]
    if (!first) throw new Error('three instances')
    const r = await settle(ledger, pubs, () => first.process.url, 240_000)
    console.info(JSON.stringify({ test: 'rolling-restart', atStop, reports: r }))
    for (const s of SOURCES) {
      expect(r[s].missing, `${s}: confirmed ids not processed`).toEqual([])
      expect(r[s].unknown, `${s}: ids nobody published`).toEqual([])
      expect(r[s].deadLettered, `${s}: dead letters`).toBe(0)
      expect(r[s].extraRuns, `${s}: ids run more than once`).toBe(0)
      expect(r[s].confirmed, `${s}: confirmed`).toBeGreaterThanOrEqual(PACE.min)
    }
    expect(kafkaViolations(ledger.runs)).toEqual([])
  }, 900_000)
})
