/**
 * Fault test: the gateway runs as its own process (`sluice start`) and is killed with SIGKILL
 * several times while it works through a topic that a producer keeps writing to; after each kill
 * a new process takes over the consumer group. The function writes a ledger record per event to
 * a topic on the same test broker. Checked: every acknowledged message was processed, and no
 * committed offset ever passed an event that had not been processed before the commit.
 */
import type { Producer } from 'kafkajs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { GatewayProcess } from '../../helpers/gateway-process.js'
import { projectDir, waitFor } from '../../helpers/gateway.js'
import { KafkaTestBroker } from '../../kafka/broker.js'
import { produce, producerFor, uid } from './helpers.js'
import { commitViolations, LEDGER_FUNCTION, producedIds, readLedger } from './ledger.js'

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

const KILLS = 4

describe('kafka trigger: gateway killed with SIGKILL', () => {
  it(`loses nothing and never commits past unfinished work across ${KILLS} kills mid-batch`, async () => {
    const topic = uid('kill')
    const ledgerTopic = `${topic}-ledger`
    const group = `g-${topic}`
    broker.createTopic(topic, 4)
    broker.createTopic(ledgerTopic, 1)
    const project = projectDir({
      'gateway.yaml': `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1, prewarm: 1 }
store: { path: state.db }
connections:
  stream: { kind: kafka, brokers: ["${broker.address}"], connectionTimeoutMs: 1000 }
functions:
  ledger:
    code: functions/ledger.js
    trigger: { kafka: { connection: stream, topic: ${topic}, groupId: ${group}, sessionTimeoutMs: 3000, heartbeatIntervalMs: 300, maxWaitMs: 200, commitIntervalMs: 50 } }
    batch: { maxSize: 20, maxWaitMs: 2 }
    scale: { max: 2 }
    outputs:
      ledger: { kafka: { connection: stream, topic: ${ledgerTopic} } }
`,
      'functions/ledger.js': LEDGER_FUNCTION,
    })
    cleanups.push(project.cleanup)
    const gp = new GatewayProcess(project.dir)
    cleanups.push(() => gp.kill())

    const p: Producer = await producerFor(broker)
    cleanups.push(() => p.disconnect())
    await produce(p, topic, Array.from({ length: 1000 }, (_, n) => ({ n, sleepMs: 1 })))
    let producing = true
    let n = 1000
    const writer = (async () => {
      while (producing && n < 6000) {
        await produce(p, topic, Array.from({ length: 20 }, () => ({ n: n++, sleepMs: 1 })))
        await new Promise((r) => setTimeout(r, 100))
      }
    })()
    cleanups.push(async () => {
      producing = false
      await writer
    })

    const processed = () => new Set(readLedger(broker, { gw: ledgerTopic }).map((e) => e.id)).size
    const committed = () => [0, 1, 2, 3].reduce((sum, part) => sum + Math.max(0, broker.committed(group, topic, part)), 0)
    const atKill: Array<{ produced: number; processed: number; committed: number }> = []
    for (let i = 0; i < KILLS; i++) {
      await gp.start()
      const before = processed()
      // Kill once this process has made progress: it is then mid-way through fetched batches.
      await waitFor(() => processed() >= before + 250, 60_000, `progress of gateway run ${i + 1}`)
      await gp.kill()
      atKill.push({ produced: producedIds(broker, topic).length, processed: processed(), committed: committed() })
    }
    producing = false
    await writer
    await gp.start()
    const all = producedIds(broker, topic)
    await waitFor(() => {
      const done = new Set(readLedger(broker, { gw: ledgerTopic }).map((e) => e.id))
      return all.every((id) => done.has(id))
    }, 120_000, 'every produced message processed')
    await waitFor(() => committed() === all.length, 30_000, 'the last commits')
    expect(await gp.stop()).toBe(0)

    // Each kill left work behind: messages not yet committed.
    for (const k of atKill) expect(k.committed).toBeLessThan(k.produced)
    expect(commitViolations(broker, group, topic, readLedger(broker, { gw: ledgerTopic }))).toEqual([])
    // Sanity: the ledger holds nothing but ids of the topic.
    const known = new Set(all)
    expect(readLedger(broker, { gw: ledgerTopic }).every((e) => known.has(e.id))).toBe(true)
  }, 300_000)
})
