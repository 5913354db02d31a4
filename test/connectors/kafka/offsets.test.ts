/**
 * The offset handling defects of issue 12, each proven on a real Kafka 4 broker: a record whose
 * event could not be built stopped its partition's commits for good; a group that never committed
 * started at the end again after a restart (skipping what was produced while the gateway was
 * down); a commit in flight when a rebalance began kept the final one from being sent; and what
 * an out-of-range committed offset does.
 */
import type { Producer } from 'kafkajs'
import { describe, expect, it } from 'vitest'
import { startGateway, waitFor, type TestGateway } from '../../helpers/gateway.js'
import type { KafkaBroker } from '../../helpers/kafka-broker.js'
import { brokerPerFile, connectionYaml, FAST_GROUP, produce, producerFor, TopicTail, uid } from './helpers.js'
import { createLedgerTopic, LEDGER_FUNCTION, readLedger } from './ledger.js'

let broker: KafkaBroker
const cleanups = brokerPerFile((b) => {
  broker = b
})

async function producer(): Promise<Producer> {
  const p = await producerFor(broker)
  cleanups.push(() => p.disconnect())
  return p
}

async function gateway(yaml: string, code: string, opts: { keep?: boolean } = {}): Promise<TestGateway> {
  const t = await startGateway({ yaml: `connections:\n${connectionYaml('stream', broker)}\n${yaml}`, files: { 'functions/f.js': code } })
  if (!opts.keep) cleanups.push(() => t.stop())
  return t
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + Math.max(0, b), 0)

const RECORDER = `export default async function (events, ctx) { for (const e of events) ctx.log.info('ev ' + JSON.stringify({ id: e.id, time: e.time, timestamp: e.meta.timestamp, n: e.body && e.body.n })) }`
const seen = (t: TestGateway) =>
  t.logs.lines
    .filter((l) => typeof l.msg === 'string' && l.msg.startsWith('ev '))
    .map((l) => JSON.parse((l.msg as string).slice(3)) as { id: string; time: string; timestamp: unknown; n?: number })

describe('kafka offsets', () => {
  it('delivers a record with a nanosecond timestamp and dead-letters a record no function may get; commits move past both', async () => {
    const topic = uid('badrec')
    // Kafka 4 refuses timestamps far in the future by default (message.timestamp.after.max.ms).
    await broker.createTopic(topic, 1, { 'message.timestamp.after.max.ms': '9223372036854775807' })
    const t = await gateway(
      `functions:\n  f:\n    code: functions/f.js\n    trigger: { kafka: { connection: stream, topic: ${topic}, ${FAST_GROUP} } }\n`,
      RECORDER,
    )
    const p = await producer()
    const deep = '['.repeat(600) + ']'.repeat(600)
    await p.send({
      topic,
      acks: -1,
      messages: [{ value: '{"n":0}' }, { value: '{"n":1}', timestamp: '1700000000000000000' }, { value: deep }, { value: '{"n":3}' }],
    })
    await waitFor(async () => (await broker.committed('sluice-f', topic))[0] === 4, 30_000, 'the commit past all four records')
    const events = seen(t)
    expect(events.map((e) => e.n)).toEqual([0, 1, 3])
    // The raw nanosecond value is kept in meta; time is when it was read.
    expect(events[1]).toMatchObject({ id: `${topic}-0-1`, timestamp: '1700000000000000000' })
    expect(Date.parse(events[1]?.time ?? '')).toBeGreaterThan(Date.now() - 600_000)
    const dead = await t.gw.listDeadLetters({})
    expect(dead.map((d) => [d.event.id, d.error.code])).toEqual([[`${topic}-0-2`, 'SLUICE_ERR_EVENT_TOO_DEEP']])
    expect(dead[0]?.event.body).toBe(deep)
  })

  it('with fromBeginning: false commits the start position at once, so a restart misses nothing produced while it was down', async () => {
    const topic = uid('latest')
    const group = `g-${topic}`
    await broker.createTopic(topic, 2)
    const p = await producer()
    await produce(p, topic, [{ n: -1 }, { n: -2 }, { n: -3 }])
    const before = await broker.ends(topic)
    const yaml = `functions:\n  f:\n    code: functions/f.js\n    trigger: { kafka: { connection: stream, topic: ${topic}, groupId: ${group}, fromBeginning: false, ${FAST_GROUP} } }\n`
    const first = await gateway(yaml, RECORDER, { keep: true })
    // Nothing was consumed, yet every partition has its start committed: the end at assignment.
    await waitFor(async () => JSON.stringify(await broker.committed(group, topic)) === JSON.stringify(before), 30_000, 'the start positions committed')
    await first.stop()
    await produce(
      p,
      topic,
      Array.from({ length: 6 }, (_, n) => ({ n })),
    )
    const second = await gateway(yaml, RECORDER)
    await waitFor(() => seen(second).length === 6, 30_000, 'the six messages produced while the gateway was down')
    expect(seen(first)).toEqual([])
    expect(
      seen(second)
        .map((e) => e.n)
        .sort(),
    ).toEqual([0, 1, 2, 3, 4, 5])
    await waitFor(async () => sum(await broker.committed(group, topic)) === 9, 20_000, 'commits at the ends')
  })

  it('starts again at the first retained offset when the committed one is out of range (fromBeginning: true)', async () => {
    const topic = uid('range')
    const group = `g-${topic}`
    await broker.createTopic(topic, 1)
    const p = await producer()
    await produce(p, topic, [{ n: 0 }, { n: 1 }, { n: 2 }])
    // A commit beyond the end (as after the topic was deleted and created again).
    await (await broker.admin()).setOffsets({ groupId: group, topic, partitions: [{ partition: 0, offset: '1000' }] })
    const t = await gateway(
      `functions:\n  f:\n    code: functions/f.js\n    trigger: { kafka: { connection: stream, topic: ${topic}, groupId: ${group}, ${FAST_GROUP} } }\n`,
      RECORDER,
    )
    await waitFor(() => seen(t).length === 3, 30_000, 'the retained messages')
    await waitFor(async () => (await broker.committed(group, topic))[0] === 3, 20_000, 'the commit at the end')
  })

  it('commits what finished before it gives partitions back: no event runs twice when a second gateway joins', async () => {
    const topic = uid('handover')
    const group = `g-${topic}`
    await broker.createTopic(topic, 4)
    const ledgers = { A: uid('ledger-a'), B: uid('ledger-b') }
    const tails: Record<string, TopicTail> = {}
    for (const [k, l] of Object.entries(ledgers)) {
      await createLedgerTopic(broker, l)
      const tl = await TopicTail.open(broker, l)
      cleanups.push(() => tl.close())
      tails[k] = tl
    }
    const yaml = (name: 'A' | 'B') =>
      `functions:\n  f:\n    code: functions/f.js\n    trigger: { kafka: { connection: stream, topic: ${topic}, groupId: ${group}, sessionTimeoutMs: 6000, heartbeatIntervalMs: 300, rebalanceTimeoutMs: 20000, maxWaitMs: 200, commitIntervalMs: 5000 } }\n    batch: { maxSize: 5, maxWaitMs: 1 }\n    outputs:\n      ledger: { kafka: { connection: stream, topic: ${ledgers[name]} } }\n`
    await gateway(yaml('A'), LEDGER_FUNCTION)
    const p = await producer()
    let n = 0
    let producing = true
    const writer = (async () => {
      while (producing) {
        await produce(
          p,
          topic,
          Array.from({ length: 10 }, () => ({ n: n++, sleepMs: 1 })),
        )
        await new Promise((r) => setTimeout(r, 20))
      }
    })()
    cleanups.push(async () => {
      producing = false
      await writer
    })
    await waitFor(() => readLedger(tails).length > 200, 60_000, 'A processing')
    await gateway(yaml('B'), LEDGER_FUNCTION)
    await waitFor(() => readLedger({ B: tails.B as TopicTail }).length > 100, 60_000, 'B processing')
    producing = false
    await writer
    const total = sum(await broker.ends(topic))
    await waitFor(() => new Set(readLedger(tails).map((e) => e.id)).size === total, 60_000, 'every message processed')
    const ids = readLedger(tails).map((e) => e.id)
    const twice = ids.filter((id, i) => ids.indexOf(id) !== i)
    expect(twice).toEqual([])
  })
})
