/**
 * The Kafka trigger and output binding in a gateway, against a real Kafka 4 broker of this file:
 * event shape, the commit held at a slow event, a batch longer than the session, dead letters,
 * back-pressure, output keys, lag.
 */
import type { Producer } from 'kafkajs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, waitFor, type TestGateway } from '../../helpers/gateway.js'
import { KafkaBroker } from '../../helpers/kafka-broker.js'
import { connectionYaml, FAST_GROUP, produce, producerFor, TopicTail, uid } from './helpers.js'
import { CommitLog, commitViolations, createLedgerTopic, LEDGER_FUNCTION, readLedger } from './ledger.js'

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

async function producer(): Promise<Producer> {
  const p = await producerFor(broker)
  cleanups.push(() => p.disconnect())
  return p
}

async function tail(topic: string): Promise<TopicTail> {
  const t = await TopicTail.open(broker, topic)
  cleanups.push(() => t.close())
  return t
}

async function gateway(yaml: string, code: string): Promise<TestGateway> {
  const t = await startGateway({ yaml: `connections:\n${connectionYaml('stream', broker)}\n${yaml}`, files: { 'functions/f.js': code } })
  cleanups.push(() => t.stop())
  return t
}

/** The committed offset of `group` on partition `p` of `topic` (-1: none). */
async function committed(group: string, topic: string, p = 0): Promise<number> {
  return (await broker.committed(group, topic))[p] ?? -1
}

/** A function `f` on `topic` with a `ledger` output to `ledgerTopic`; `extra` adds function keys. */
function fnYaml(topic: string, ledgerTopic: string, trigger: string, extra = ''): string {
  return `functions:
  f:
    code: functions/f.js
    trigger: { kafka: { connection: stream, topic: ${topic}, groupId: g-${topic}, ${FAST_GROUP}${trigger ? `, ${trigger}` : ''} } }
    outputs:
      ledger: { kafka: { connection: stream, topic: ${ledgerTopic} } }
${extra}`
}

describe('kafka trigger', () => {
  it('turns messages into events: id, key, source, meta, JSON / text / base64 / null bodies', async () => {
    const topic = uid('shape')
    await broker.createTopic(topic, 1)
    const t = await gateway(
      `functions:\n  f:\n    code: functions/f.js\n    trigger: { kafka: { connection: stream, topic: ${topic}, ${FAST_GROUP} } }\n`,
      `export default async function (events, ctx) { for (const e of events) ctx.log.info('ev ' + JSON.stringify(e)) }`,
    )
    const p = await producer()
    await p.send({
      topic,
      acks: -1,
      messages: [
        { key: 'station-7', value: '{"battery":12}', headers: { trace: 'abc' }, timestamp: '1700000000000' },
        { value: 'plain text' },
        { value: Buffer.from([0xff, 0xfe, 0x00]) },
        { key: 'gone', value: null },
      ],
    })
    const events = await waitFor(
      () => {
        const evs = t.logs.lines
          .filter((l) => typeof l.msg === 'string' && l.msg.startsWith('ev '))
          .map((l) => JSON.parse((l.msg as string).slice(3)) as Record<string, any>)
        return evs.length === 4 && evs
      },
      30_000,
      'four events',
    )
    expect(events[0]).toMatchObject({
      id: `${topic}-0-0`,
      source: `kafka://stream/${topic}`,
      key: `${topic}/0`,
      time: '2023-11-14T22:13:20.000Z',
      body: { battery: 12 },
      attempt: 1,
      meta: { topic, partition: 0, offset: 0, timestamp: 1700000000000, key: 'station-7', headers: { trace: 'abc' } },
    })
    expect(events[1]).toMatchObject({ id: `${topic}-0-1`, body: 'plain text', meta: { key: null } })
    expect(events[2]).toMatchObject({ body: Buffer.from([0xff, 0xfe, 0x00]).toString('base64'), meta: { encoding: 'base64' } })
    expect(events[3]).toMatchObject({ body: null, meta: { key: 'gone' } })
    // The default group: sluice-<function>.
    await waitFor(async () => (await committed('sluice-f', topic)) === 4, 20_000, 'commit of all four')
  })

  it('holds the commit at a slow event in the middle of a batch while later keys finish', async () => {
    const topic = uid('slow')
    const ledgerTopic = uid('ledger')
    const group = `g-${topic}`
    await broker.createTopic(topic, 1)
    await createLedgerTopic(broker, ledgerTopic)
    const ledger = await tail(ledgerTopic)
    const t = await gateway(
      fnYaml(topic, ledgerTopic, 'orderBy: key', '    batch: { maxSize: 1, maxWaitMs: 0 }\n    scale: { max: 4 }\n    timeoutMs: 30000\n'),
      LEDGER_FUNCTION,
    )
    const p = await producer()
    // One produce request: one record batch, so one kafkajs batch. Offset 3 is slow.
    await produce(
      p,
      topic,
      Array.from({ length: 10 }, (_, n) => (n === 3 ? { n, sleepMs: 4000 } : { n })),
      (_b, i) => `k${i}`,
    )
    const processed = () => new Set(readLedger({ a: ledger }).map((e) => e.offset))
    await waitFor(() => [0, 1, 2, 4, 5, 6, 7, 8, 9].every((o) => processed().has(o)), 30_000, 'every fast event')
    const seen = await waitFor(
      async () => {
        const c = await committed(group, topic)
        const slowDone = processed().has(3)
        return (c === 3 || slowDone) && { committed: c, slowDone }
      },
      30_000,
      'the commit to reach the slow event',
    )
    expect(seen).toEqual({ committed: 3, slowDone: false })
    // While it runs, the lag is counted from the held commit.
    expect((await t.gw.metrics()).body).toContain(`sluice_source_lag{function="f",kind="kafka",connection="stream",source="${topic}/0"} 7`)
    await waitFor(async () => (await committed(group, topic)) === 10, 30_000, 'the commit past the slow event')
    const commits = await waitFor(
      () => {
        const c = commitLog.commits(group, topic)
        return c.some((x) => x.offset === 10) && c
      },
      20_000,
      'the commits in __consumer_offsets',
    )
    expect(commits.some((c) => c.offset === 3)).toBe(true)
    expect(commitViolations(commits, readLedger({ a: ledger }))).toEqual([])
  })

  it('heartbeats while a batch runs longer than the session timeout, and keeps its partitions', async () => {
    const topic = uid('long')
    const ledgerTopic = uid('ledger')
    await broker.createTopic(topic, 1)
    await createLedgerTopic(broker, ledgerTopic)
    const ledger = await tail(ledgerTopic)
    const group = `g-${topic}`
    await gateway(
      `functions:
  f:
    code: functions/f.js
    trigger: { kafka: { connection: stream, topic: ${topic}, groupId: ${group}, sessionTimeoutMs: 2000, heartbeatIntervalMs: 200, maxWaitMs: 200, commitIntervalMs: 50 } }
    timeoutMs: 30000
    outputs:
      ledger: { kafka: { connection: stream, topic: ${ledgerTopic} } }
`,
      LEDGER_FUNCTION,
    )
    const admin = await broker.admin()
    const describe = async () => (await admin.describeGroups([group])).groups[0]
    const before = await waitFor(
      async () => {
        const g = await describe()
        return g?.state === 'Stable' && g
      },
      30_000,
      'the group stable',
    )
    const p = await producer()
    // One event busy for three session timeouts: only heartbeats sent meanwhile keep the member.
    await produce(p, topic, [{ n: 0, sleepMs: 6000 }, { n: 1 }])
    await waitFor(async () => (await committed(group, topic)) === 2, 30_000, 'both events committed')
    const after = await describe()
    expect(after?.state).toBe('Stable')
    expect(after?.members.map((m) => m.memberId)).toEqual(before.members.map((m) => m.memberId))
    expect(readLedger({ a: ledger }).map((e) => e.offset)).toEqual([0, 1])
  })

  it('commits past an event once it is dead-lettered', async () => {
    const topic = uid('dead')
    await broker.createTopic(topic, 1)
    const t = await gateway(
      `functions:\n  f:\n    code: functions/f.js\n    trigger: { kafka: { connection: stream, topic: ${topic}, ${FAST_GROUP} } }\n    retry: { maxAttempts: 2, backoff: fixed, initialDelayMs: 20 }\n`,
      `export default async function (events) { return { failed: events.filter((e) => e.body.poison).map((e) => e.id) } }`,
    )
    const p = await producer()
    await produce(p, topic, [{ n: 0 }, { n: 1, poison: true }, { n: 2 }])
    await waitFor(async () => (await committed('sluice-f', topic)) === 3, 30_000, 'commit past the poison message')
    const dead = await t.gw.listDeadLetters({})
    expect(dead.map((d) => d.event.id)).toEqual([`${topic}-0-1`])
  })

  it("holds partitions back while the function's backlog is full (waiting in eachBatch, not pausing at kafkajs), and loses nothing", async () => {
    const topic = uid('pressure')
    const ledgerTopic = uid('ledger')
    await broker.createTopic(topic, 2)
    await createLedgerTopic(broker, ledgerTopic)
    const ledger = await tail(ledgerTopic)
    const t = await gateway(
      fnYaml(topic, ledgerTopic, '', '    maxBacklog: 20\n    batch: { maxSize: 5, maxWaitMs: 1 }\n    scale: { max: 1 }\n'),
      LEDGER_FUNCTION,
    )
    let flowPaused = 0
    const offFlow = t.gw.router.flow('f').onChange((paused) => {
      if (paused) flowPaused++
    })
    cleanups.push(offFlow)
    const p = await producer()
    await produce(
      p,
      topic,
      Array.from({ length: 400 }, (_, n) => ({ n, sleepMs: 1 })),
    )
    let maxBacklog = 0
    await waitFor(
      () => {
        maxBacklog = Math.max(maxBacklog, t.gw.function('f')?.backlog ?? 0)
        return new Set(readLedger({ a: ledger }).map((e) => e.id)).size === 400
      },
      90_000,
      'all 400 events',
    )
    expect(maxBacklog).toBeLessThanOrEqual(20)
    // The backlog filled (400 events against maxBacklog 20), and the batches waited for it to
    // drain instead of pausing kafkajs (whose fetch would then sleep maxWaitMs).
    expect(flowPaused).toBeGreaterThan(0)
    expect(t.logs.find(/^Pausing fetching/)).toEqual([])
  })
})

describe('kafka output', () => {
  it('produces each value with the configured key, confirmed before the input is committed', async () => {
    const topic = uid('in')
    const out = uid('out')
    const group = 'sluice-f'
    await broker.createTopic(topic, 2)
    await broker.createTopic(out, 3, { 'message.timestamp.type': 'LogAppendTime' })
    const outputs = await tail(out)
    const inputs = await tail(topic)
    await gateway(
      `functions:\n  f:\n    code: functions/f.js\n    trigger: { kafka: { connection: stream, topic: ${topic}, ${FAST_GROUP} } }\n    outputs:\n      alerts: { kafka: { connection: stream, topic: ${out}, key: scooter.id } }\n`,
      `export default async function (events, ctx) { for (const e of events) { ctx.output('alerts', { scooter: { id: 's' + (e.body.n % 4) }, n: e.body.n }); if (e.body.n === 0) ctx.output('alerts', 'as text') } }`,
    )
    const p = await producer()
    await produce(
      p,
      topic,
      Array.from({ length: 40 }, (_, n) => ({ n })),
    )
    await waitFor(() => outputs.records.length === 41, 30_000, '41 output messages')
    const records = outputs.records
    expect(records.find((r) => r.value === 'as text')?.key).toBeNull()
    const keyed = records.filter((r) => r.value !== 'as text').map((r) => ({ ...r, v: JSON.parse(r.value ?? '') as { n: number; scooter: { id: string } } }))
    expect(keyed.every((r) => r.key === r.v.scooter.id)).toBe(true)
    // One key, one partition (kafkajs's default partitioner).
    for (const k of ['s0', 's1', 's2', 's3']) expect(new Set(keyed.filter((r) => r.key === k).map((r) => r.partition)).size).toBe(1)
    await waitFor(async () => (await broker.committed(group, topic)).reduce((a, b) => a + Math.max(0, b), 0) === 40, 20_000, 'inputs committed')
    // Every commit came after the outputs of the events below it.
    const outTimeByN = new Map(keyed.map((r) => [r.v.n, r.timestamp]))
    const commits = await waitFor(
      () => {
        const c = commitLog.commits(group, topic)
        return c.reduce((a, x) => a + x.offset, 0) >= 40 && inputs.records.length === 40 && c
      },
      20_000,
      'the commits in __consumer_offsets',
    )
    const ins = inputs.records.map((r) => ({ partition: r.partition, offset: r.offset, n: (JSON.parse(r.value ?? '{}') as { n: number }).n }))
    for (const c of commits) {
      for (const i of ins.filter((i) => i.partition === c.partition && i.offset < c.offset)) expect(outTimeByN.get(i.n)).toBeLessThanOrEqual(c.time)
    }
  })
})
