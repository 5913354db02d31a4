/**
 * Fault test: two gateways share a consumer group while a producer keeps writing; a third joins
 * and later leaves. Each gateway's function writes a ledger record per event to a topic of its
 * own, and the test broker numbers appends, commits and generations in one order. Checked:
 * every produced message was processed, each by the gateway that owned its partition at the
 * time (so no partition ran on two gateways at once), and no commit passed an unprocessed event.
 */
import type { Producer } from 'kafkajs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, waitFor, type TestGateway } from '../../helpers/gateway.js'
import { KafkaTestBroker } from '../../kafka/broker.js'
import { FAST_GROUP, produce, producerFor, uid } from './helpers.js'
import { commitViolations, LEDGER_FUNCTION, ownershipViolations, producedIds, readLedger } from './ledger.js'

let broker: KafkaTestBroker
const cleanups: Array<() => Promise<unknown> | unknown> = []

beforeAll(async () => {
  broker = await KafkaTestBroker.start()
})
afterAll(async () => {
  await broker?.close()
})
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

describe('kafka consumer group across gateways', () => {
  it('loses nothing and never runs a partition on two gateways while a third joins and leaves', async () => {
    const topic = uid('shared')
    const group = `g-${topic}`
    const ledgers: Record<string, string> = { A: `${topic}-ledger-A`, B: `${topic}-ledger-B`, C: `${topic}-ledger-C` }
    broker.createTopic(topic, 6)
    for (const l of Object.values(ledgers)) broker.createTopic(l, 1)

    const instance = async (name: string): Promise<TestGateway> => {
      const t = await startGateway({
        yaml: `connections:
  stream: { kind: kafka, brokers: ["${broker.address}"], clientId: inst-${name}, connectionTimeoutMs: 1000 }
functions:
  f:
    code: functions/f.js
    trigger: { kafka: { connection: stream, topic: ${topic}, groupId: ${group}, ${FAST_GROUP} } }
    batch: { maxSize: 10, maxWaitMs: 1 }
    outputs:
      ledger: { kafka: { connection: stream, topic: ${ledgers[name]} } }
`,
        files: { 'functions/f.js': LEDGER_FUNCTION },
      })
      cleanups.push(() => t.stop())
      return t
    }
    const processedBy = (name: string) => readLedger(broker, { [name]: ledgers[name] as string }).length

    // A producer that keeps writing through the whole scenario, in small acknowledged batches.
    const p: Producer = await producerFor(broker)
    cleanups.push(() => p.disconnect())
    let producing = true
    let n = 0
    const writer = (async () => {
      while (producing || n < 600) {
        await produce(p, topic, Array.from({ length: 20 }, () => ({ n: n++, sleepMs: 2 })))
        await new Promise((r) => setTimeout(r, 15))
      }
    })()
    cleanups.push(async () => {
      producing = false
      await writer
    })

    await instance('A')
    await instance('B')
    await waitFor(() => processedBy('A') > 0 && processedBy('B') > 0, 60_000, 'A and B both processing')
    const c = await instance('C')
    await waitFor(() => processedBy('C') > 50, 60_000, 'C processing')
    await c.stop()
    const processedByC = processedBy('C')
    const afterLeave = n
    await waitFor(() => n > afterLeave + 200, 60_000, 'more messages after C left')
    producing = false
    await writer

    const all = producedIds(broker, topic)
    await waitFor(() => {
      const done = new Set(readLedger(broker, ledgers).map((e) => e.id))
      return all.every((id) => done.has(id))
    }, 60_000, 'every produced message processed')

    const ledger = readLedger(broker, ledgers)
    expect(processedByC).toBeGreaterThan(0)
    // A alone, A+B, A+B+C, A+B again: at least four generations were handed out.
    expect(broker.groups.generations.filter((g) => g.group === group && g.assignments.size > 0).length).toBeGreaterThanOrEqual(4)
    expect(ownershipViolations(broker, group, topic, ledger, (member) => member.split('-')[1] as string)).toEqual([])
    expect(commitViolations(broker, group, topic, ledger)).toEqual([])
  })
})
