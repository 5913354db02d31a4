/**
 * Rebalance under load on a real Kafka 4 broker: three gateways share a consumer group on a
 * topic of 12 partitions while 30,000 messages flow; one is stopped and a fourth added midway.
 * Each gateway's function writes a ledger record per event (with its batch's start and end time)
 * to a topic of its own. Checked: every produced message was processed; no partition was worked
 * on by two gateways at once (no overlapping batches of one partition on two gateways); no commit
 * passed an event not yet processed; and each gateway took part.
 */
import type { Producer } from 'kafkajs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, waitFor, type TestGateway } from '../../helpers/gateway.js'
import { KafkaBroker } from '../../helpers/kafka-broker.js'
import { FAST_GROUP, produce, producerFor, TopicTail, uid } from './helpers.js'
import { CommitLog, commitViolations, createLedgerTopic, LEDGER_FUNCTION, ownershipViolations, producedIds, readLedger } from './ledger.js'

const PARTITIONS = 12
const TOTAL = 30_000
const CHUNK = 250

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

describe('kafka consumer group across gateways', () => {
  it(`loses nothing and never runs a partition on two gateways while ${TOTAL} messages flow and gateways leave and join`, async () => {
    const topic = uid('shared')
    const group = `g-${topic}`
    const names = ['A', 'B', 'C', 'D'] as const
    await broker.createTopic(topic, PARTITIONS)
    const tails: Record<string, TopicTail> = {}
    const ledgers: Record<string, string> = {}
    for (const name of names) {
      ledgers[name] = `${topic}-ledger-${name}`
      await createLedgerTopic(broker, ledgers[name] as string)
      const t = await TopicTail.open(broker, ledgers[name] as string)
      cleanups.push(() => t.close())
      tails[name] = t
    }

    const instance = async (name: string): Promise<TestGateway> => {
      const t = await startGateway({
        yaml: `connections:
  stream: { kind: kafka, brokers: ["${broker.address}"], clientId: inst-${name}, connectionTimeoutMs: 1000 }
functions:
  f:
    code: functions/f.js
    trigger: { kafka: { connection: stream, topic: ${topic}, groupId: ${group}, ${FAST_GROUP} } }
    batch: { maxSize: 50, maxWaitMs: 2 }
    scale: { max: 2 }
    outputs:
      ledger: { kafka: { connection: stream, topic: ${ledgers[name]} } }
`,
        files: { 'functions/f.js': LEDGER_FUNCTION },
      })
      cleanups.push(() => t.stop())
      return t
    }
    const processed = (name: string) => tails[name]?.records.length ?? 0

    const p: Producer = await producerFor(broker)
    cleanups.push(() => p.disconnect())
    let n = 0
    const writer = (async () => {
      while (n < TOTAL) {
        await produce(
          p,
          topic,
          Array.from({ length: CHUNK }, () => ({ n: n++ })),
        )
        await new Promise((r) => setTimeout(r, 25))
      }
    })()
    cleanups.push(() => writer)

    await Promise.all([instance('A'), instance('B')])
    const c = await instance('C')
    await waitFor(() => processed('C') > 500 && n >= TOTAL / 3, 120_000, 'C processing, a third produced')
    await c.stop()
    const afterC = processed('A') + processed('B')
    await instance('D')
    await waitFor(() => processed('D') > 500 && processed('A') + processed('B') > afterC, 120_000, 'D processing')
    await writer

    const all = await producedIds(broker, topic)
    expect(all).toHaveLength(TOTAL)
    await waitFor(
      () => {
        const done = new Set(readLedger(tails).map((e) => e.id))
        return all.every((id) => done.has(id))
      },
      180_000,
      'every produced message processed',
    )
    await waitFor(async () => (await broker.committed(group, topic)).reduce((a, o) => a + Math.max(0, o), 0) === TOTAL, 60_000, 'the last commits')

    const ledger = readLedger(tails)
    for (const name of names) expect(processed(name), `gateway ${name}`).toBeGreaterThan(0)
    expect(ownershipViolations(ledger)).toEqual([])
    const commits = await waitFor(
      () => {
        const cs = commitLog.commits(group, topic)
        const last = new Map(cs.map((x) => [x.partition, x.offset]))
        return [...last.values()].reduce((a, o) => a + o, 0) === TOTAL && cs
      },
      30_000,
      'the last commits in __consumer_offsets',
    )
    expect(commitViolations(commits, ledger)).toEqual([])
  }, 480_000)
})
