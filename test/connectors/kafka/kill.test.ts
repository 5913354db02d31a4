/**
 * Fault test: the gateway runs as its own process (`sluice start`) and is killed with SIGKILL
 * several times while it works through a topic that a producer keeps writing to; after each kill
 * a new process takes over the consumer group. The function writes a ledger record per event to
 * a topic on the same (real Kafka 4) broker. Checked: every acknowledged message was processed,
 * and no committed offset ever passed an event that had not been processed before the commit.
 */
import type { Producer } from 'kafkajs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { GatewayProcess } from '../../helpers/gateway-process.js'
import { projectDir, waitFor } from '../../helpers/gateway.js'
import { KafkaBroker } from '../../helpers/kafka-broker.js'
import { produce, producerFor, TopicTail, uid } from './helpers.js'
import { CommitLog, commitViolations, createLedgerTopic, LEDGER_FUNCTION, producedIds, readLedger } from './ledger.js'

let broker: KafkaBroker
let commitLog: CommitLog
const cleanups: Array<() => Promise<unknown> | unknown> = []

beforeAll(async () => {
  broker = await KafkaBroker.start()
  commitLog = await CommitLog.open(broker)
}, 180_000)
afterAll(async () => {
  await commitLog?.close()
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
    await broker.createTopic(topic, 4)
    await createLedgerTopic(broker, ledgerTopic)
    const ledger = await TopicTail.open(broker, ledgerTopic)
    cleanups.push(() => ledger.close())
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
    await produce(
      p,
      topic,
      Array.from({ length: 1000 }, (_, n) => ({ n, sleepMs: 1 })),
    )
    let producing = true
    let n = 1000
    const writer = (async () => {
      while (producing && n < 6000) {
        await produce(
          p,
          topic,
          Array.from({ length: 20 }, () => ({ n: n++, sleepMs: 1 })),
        )
        await new Promise((r) => setTimeout(r, 100))
      }
    })()
    cleanups.push(async () => {
      producing = false
      await writer
    })

    const processed = () => new Set(readLedger({ gw: ledger }).map((e) => e.id)).size
    const committed = async () => (await broker.committed(group, topic)).reduce((sum, c) => sum + Math.max(0, c), 0)
    const atKill: Array<{ produced: number; processed: number; committed: number }> = []
    for (let i = 0; i < KILLS; i++) {
      await gp.start(120_000)
      const before = processed()
      // Kill once this process has made progress: it is then mid-way through fetched batches.
      await waitFor(() => processed() >= before + 250, 60_000, `progress of gateway run ${i + 1}`)
      await gp.kill()
      atKill.push({ produced: (await producedIds(broker, topic)).length, processed: processed(), committed: await committed() })
    }
    producing = false
    await writer
    await gp.start(120_000)
    const all = await producedIds(broker, topic)
    await waitFor(
      () => {
        const done = new Set(readLedger({ gw: ledger }).map((e) => e.id))
        return all.every((id) => done.has(id))
      },
      120_000,
      'every produced message processed',
    )
    await waitFor(async () => (await committed()) === all.length, 30_000, 'the last commits')
    expect(await gp.stop()).toBe(0)

    // Each kill left work behind: messages not yet committed.
    for (const k of atKill) expect(k.committed).toBeLessThan(k.produced)
    const commits = await waitFor(
      () => {
        const c = commitLog.commits(group, topic)
        return c.filter((x) => x.offset > 0).length >= KILLS && c
      },
      20_000,
      'the commits in __consumer_offsets',
    )
    expect(commitViolations(commits, readLedger({ gw: ledger }))).toEqual([])
    // Sanity: the ledger holds nothing but ids of the topic.
    const known = new Set(all)
    expect(readLedger({ gw: ledger }).every((e) => known.has(e.id))).toBe(true)
  }, 400_000)
})
