/**
 * The Kafka trigger when the cluster is not there, on a real Kafka 4 broker: a topic that does
 * not exist, no broker at start (none at all, and one that comes up while the trigger waits), and
 * the broker killed with SIGKILL mid-stream and gone for 30 s before it restarts on the same log
 * dir. connectors/kafka/README.md ("Health, errors and outages") says what each does.
 */
import { createServer, type AddressInfo } from 'node:net'
import type { Producer } from 'kafkajs'
import { describe, expect, it } from 'vitest'
import { startGateway, waitFor, type TestGateway } from '../../helpers/gateway.js'
import type { KafkaBroker } from '../../helpers/kafka-broker.js'
import { brokerPerFile, connectionYaml, FAST_GROUP, produce, producerFor, TopicTail, uid } from './helpers.js'
import { CommitLog, commitViolations, createLedgerTopic, LEDGER_FUNCTION, producedIds, readLedger } from './ledger.js'

const OUTAGE_MS = 30_000

let broker: KafkaBroker
const cleanups = brokerPerFile((b) => {
  broker = b
})

const fnYaml = (topic: string, extra = '') =>
  `functions:\n  f:\n    code: functions/f.js\n    trigger: { kafka: { connection: stream, topic: ${topic}, groupId: g-${topic}, ${FAST_GROUP} } }\n${extra}`

async function gateway(yaml: string, code = 'export default async function () {}'): Promise<TestGateway> {
  const t = await startGateway({ yaml, files: { 'functions/f.js': code } })
  cleanups.push(() => t.stop())
  return t
}

/** The start's error, or undefined when it started (then stopped in cleanup). */
async function startError(yaml: string): Promise<{ code?: string; message?: string } | undefined> {
  return gateway(yaml).then(
    () => undefined,
    (e: unknown) => e as { code?: string; message?: string },
  )
}

describe('kafka trigger availability', () => {
  it('fails the start at once when the topic does not exist, naming it (the trigger creates no topics)', async () => {
    const topic = uid('missing')
    const err = await startError(`connections:\n${connectionYaml('stream', broker)}\n${fnYaml(topic)}`)
    expect(err?.code).toBe('SLUICE_ERR_CONNECTOR_KAFKA_TOPIC_NOT_FOUND')
    expect(err?.message).toContain(topic)
    expect(await (await broker.admin()).listTopics()).not.toContain(topic)
  })

  it('starts the gateway without the trigger when no broker answers, reports it down with SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION; required: true fails the start', async () => {
    const server = createServer()
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as AddressInfo).port
    await new Promise((r) => server.close(r))
    const conn = (extra: string) =>
      `connections:\n  stream: { kind: kafka, brokers: ["127.0.0.1:${port}"], connectionTimeoutMs: 200, startTimeoutMs: 2000${extra} }\n${fnYaml('nowhere')}`
    const t = await gateway(conn(''))
    const health = t.gw.health().connections.find((c) => c.function === 'f')
    expect(health?.up).toBe(false)
    expect(health?.detail).toContain('SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION')
    expect(health?.detail).toContain(`127.0.0.1:${port}`)
    const err = await startError(conn(', required: true'))
    expect(err?.code).toBe('SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION')
    expect(err?.message).toContain('kafka trigger did not start')
  })

  it('keeps trying at start while the broker is down, and starts once it is up', async () => {
    const topic = uid('late')
    await broker.createTopic(topic, 1)
    await broker.stop()
    const starting = gateway(`connections:\n${connectionYaml('stream', broker, 'startTimeoutMs: 120000')}\n${fnYaml(topic)}`).catch((e: unknown) => e as Error)
    await broker.start()
    const t = await starting
    if (t instanceof Error) throw t
    expect(t.gw.health().connections.every((c) => c.up)).toBe(true)
  }, 240_000)

  it(`loses nothing when the broker is killed with SIGKILL mid-stream and gone for ${OUTAGE_MS / 1000} s: health goes down and up, consumption resumes from the committed offsets`, async () => {
    const topic = uid('outage')
    const group = `g-${topic}`
    const ledgerTopic = `${topic}-ledger`
    await broker.createTopic(topic, 3)
    await createLedgerTopic(broker, ledgerTopic)
    const ledger = await TopicTail.open(broker, ledgerTopic)
    cleanups.push(() => ledger.close())
    const t = await gateway(
      `connections:\n${connectionYaml('stream', broker)}\n${fnYaml(topic, `    batch: { maxSize: 20, maxWaitMs: 2 }\n    retry: { maxAttempts: 100, backoff: exponential, initialDelayMs: 200, maxDelayMs: 2000 }\n    outputs:\n      ledger: { kafka: { connection: stream, topic: ${ledgerTopic} } }\n`)}`,
      LEDGER_FUNCTION,
    )
    const p: Producer = await producerFor(broker)
    cleanups.push(() => p.disconnect().catch(() => undefined))
    // The writer pauses while the broker is down; a send that failed may or may not be in the
    // log: the check below counts what the broker has.
    let n = 0
    let writing = true
    const writer = (async () => {
      while (writing) {
        try {
          await produce(
            p,
            topic,
            Array.from({ length: 10 }, () => ({ n: n++, sleepMs: 2 })),
          )
        } catch {
          // broker down
        }
        await new Promise((r) => setTimeout(r, 20))
      }
    })()
    cleanups.push(async () => {
      writing = false
      await writer
    })
    const processed = () => new Set(readLedger({ gw: ledger }).map((e) => e.id))
    await waitFor(() => processed().size > 300, 60_000, 'processing before the kill')
    const committedAtKill = await broker.committed(group, topic)
    await broker.kill()
    const killedAt = Date.now()
    const down = await waitFor(
      () => {
        const c = t.gw.health().connections.find((x) => x.function === 'f')
        return c && !c.up && c
      },
      OUTAGE_MS,
      'health down',
    )
    expect(down.up).toBe(false)
    // The outage itself: the broker stays away for 30 s.
    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - killedAt))))
    const seenBeforeRestart = processed().size
    await broker.start()
    await waitFor(() => t.gw.health().connections.every((c) => c.up), 120_000, 'health up again')
    await waitFor(() => processed().size > seenBeforeRestart + 300, 120_000, 'processing after the restart')
    writing = false
    await writer

    const all = await producedIds(broker, topic)
    await waitFor(
      () => {
        const done = processed()
        return all.every((id) => done.has(id))
      },
      120_000,
      'every message the broker has, processed',
    )
    expect(await t.gw.listDeadLetters({})).toEqual([])
    // Resumed from the committed offsets: nothing run after the kill lies below a partition's commit at the kill.
    const entries = readLedger({ gw: ledger })
    const rerun = entries.filter((e) => e.t0 > killedAt && e.offset < (committedAtKill[e.partition] ?? 0))
    expect(rerun.map((e) => e.id)).toEqual([])
    const commitLog = await CommitLog.open(broker)
    cleanups.push(() => commitLog.close())
    await waitFor(async () => (await broker.committed(group, topic)).reduce((a, c) => a + Math.max(0, c), 0) === all.length, 30_000, 'the last commits')
    const commits = await waitFor(
      () => {
        const cs = commitLog.commits(group, topic)
        return cs.reduce((a, c) => Math.max(a, c.offset), 0) > 0 && cs
      },
      30_000,
      'the commits in __consumer_offsets',
    )
    expect(commitViolations(commits, entries)).toEqual([])
  }, 400_000)
})
