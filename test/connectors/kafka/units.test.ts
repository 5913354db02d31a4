/**
 * The Kafka connector's pure parts: the commit point of a partition, message decoding, error
 * mapping, the trigger's configuration checks (through the real config loader), and a batch's
 * wait for its partition's start position (a stand-in consumer; the real broker's side is in
 * offsets.test.ts).
 */
import { describe, expect, it } from 'vitest'
import { kafkaError, isRebalanceError } from '../../../connectors/kafka/client.js'
import type { Consumer, EachBatchPayload, KafkaMessage } from 'kafkajs'
import { Committer } from '../../../connectors/kafka/commits.js'
import { PartitionBatches, type Owned } from '../../../connectors/kafka/partition-batch.js'
import { decodeValue, partitionInfo, PartitionOffsets, toEvent } from '../../../connectors/kafka/index.js'
import { Pending } from '../../../connectors/kafka/offsets.js'
import { CONNECTORS } from '../../../src/config/connectors.js'
import { parseConfig } from '../../../src/config/load.js'
import type { ConnectorContext, TriggerEvent } from '../../../src/sdk/index.js'
import { projectDir, waitFor } from '../../helpers/gateway.js'

describe('PartitionOffsets', () => {
  it('commits at the lowest unfinished offset as events finish out of order', () => {
    const p = new PartitionOffsets()
    expect(p.commitPoint()).toBe(-1)
    for (const o of [10, 11, 12, 13]) p.delivered(o)
    expect(p.commitPoint()).toBe(10)
    p.finish(12)
    p.finish(11)
    expect(p.commitPoint()).toBe(10)
    expect(p.inFlight).toBe(2)
    p.finish(10)
    expect(p.commitPoint()).toBe(13)
    p.finish(13)
    expect(p.commitPoint()).toBe(14)
    // Control records after the last message: the position moves past them.
    p.advance(16)
    expect(p.commitPoint()).toBe(16)
    expect(p.inFlight).toBe(0)
  })

  it('is due only when the commit point moved past the last commit, and reports lag from it', () => {
    const p = new PartitionOffsets()
    expect(p.due).toBe(false)
    p.delivered(0)
    p.delivered(1)
    p.highWatermark = 10
    expect(p.due).toBe(true)
    p.committed = 0
    expect(p.due).toBe(false)
    expect(p.lag()).toBe(10)
    p.finish(0)
    expect(p.due).toBe(true)
  })

  it('takes the outcomes of a delivered chunk in one pass: aborted holds the commit point', () => {
    const p = new PartitionOffsets()
    const seq = p.delivered(3)
    for (const o of [4, 6, 9]) p.delivered(o)
    const done = { status: 'done' } as const
    const aborted = { status: 'aborted' } as const
    expect(p.finishAll(seq + 1, [done, aborted, done])).toBe(true)
    expect(p.commitPoint()).toBe(3)
    expect(p.inFlight).toBe(2)
    expect(p.finishAll(seq, [done])).toBe(true)
    expect(p.commitPoint()).toBe(6)
    expect(p.finishAll(seq + 2, [aborted])).toBe(false)
    expect(p.commitPoint()).toBe(6)
    // Finishing again changes nothing; an outcome never finishes an entry it does not own.
    p.finishSeq(seq)
    p.finish(5)
    expect(p.inFlight).toBe(1)
    p.finish(6)
    expect(p.commitPoint()).toBe(10)
    expect(p.inFlight).toBe(0)
  })

  it('keeps its queue short over many offsets', () => {
    const p = new PartitionOffsets()
    for (let o = 0; o < 100_000; o++) {
      p.delivered(o)
      if (o > 0) p.finish(o - 1)
    }
    expect(p.commitPoint()).toBe(99_999)
    expect(p.inFlight).toBe(1)
  })

  it('keeps its entries across growth and compaction while the head is held', () => {
    const p = new PartitionOffsets()
    const first = p.delivered(0)
    const seqs = [first]
    for (let o = 1; o < 5000; o++) seqs.push(p.delivered(o))
    for (let k = 1; k < 5000; k++) p.finishSeq(seqs[k] as number)
    expect(p.commitPoint()).toBe(0)
    expect(p.inFlight).toBe(1)
    p.finishSeq(first)
    expect(p.commitPoint()).toBe(5000)
    for (let o = 5000; o < 20_000; o++) {
      const s = p.delivered(o)
      if (o % 3 === 0) p.finishSeq(s)
    }
    expect(p.commitPoint()).toBe(5000)
    expect(p.inFlight).toBe(10_000)
  })
})

describe('Pending', () => {
  it('resolves each waiter once the count falls to its threshold', async () => {
    const p = new Pending()
    for (let i = 0; i < 10; i++) p.add()
    const order: string[] = []
    const half = p.below(5).then(() => order.push(`half at ${p.count}`))
    const none = p.done().then(() => order.push(`done at ${p.count}`))
    for (let i = 0; i < 4; i++) p.settle()
    await Promise.resolve()
    expect(order).toEqual([])
    p.settle()
    await half
    for (let i = 0; i < 5; i++) p.settle()
    await none
    expect(order).toEqual(['half at 5', 'done at 0'])
    await expect(p.below(3)).resolves.toBeUndefined()
  })
})

describe('kafka message values', () => {
  it('parses JSON, keeps text, base64-encodes binary and passes tombstones as null', () => {
    expect(decodeValue(Buffer.from('{"a":[1,2]}'))).toEqual({ body: { a: [1, 2] }, base64: false })
    expect(decodeValue(Buffer.from('42'))).toEqual({ body: 42, base64: false })
    expect(decodeValue(Buffer.from('{not json'))).toEqual({ body: '{not json', base64: false })
    expect(decodeValue(Buffer.from('hello'))).toEqual({ body: 'hello', base64: false })
    expect(decodeValue(Buffer.from([0xc3, 0x28]))).toEqual({ body: Buffer.from([0xc3, 0x28]).toString('base64'), base64: true })
    expect(decodeValue(null)).toEqual({ body: null, base64: false })
  })
})

describe('kafka events', () => {
  const info = partitionInfo('t', 2, 'stream', false)
  const msg = (m: Partial<KafkaMessage>): KafkaMessage =>
    ({ key: null, value: Buffer.from('{"a":1}'), timestamp: '1700000000000', attributes: 0, offset: '7', headers: {}, ...m }) as KafkaMessage

  it('keeps a timestamp that is no valid date raw in meta instead of throwing', () => {
    const e = toEvent(msg({ timestamp: '1700000000000000000' }), info)
    // A JSON value goes on as the text the producer wrote: the isolate parses it.
    expect(e).toMatchObject({ id: 't-2-7', rawBody: '{"a":1}', meta: { timestamp: '1700000000000000000' } })
    expect(Number.isNaN(Date.parse(e.time))).toBe(false)
    expect(e.rejected).toBeUndefined()
    expect(toEvent(msg({ timestamp: 'garbage' }), info).meta.timestamp).toBe('garbage')
  })

  it('reads keys as text: ASCII, other UTF-8 (also longer than the ASCII check), else base64; event keys with orderBy: key', () => {
    const byKey = partitionInfo('t', 2, 'stream', true)
    const long = `${'k'.repeat(80)}é`
    for (const [key, text] of [
      ['st-001', 'st-001'],
      ['Zürich-7', 'Zürich-7'],
      ['駅-1', '駅-1'],
      [long, long],
      ['', ''],
    ] as const) {
      const e = toEvent(msg({ key: Buffer.from(key) }), byKey)
      expect(e.meta.key).toBe(text)
      expect(e.key).toBe(`t/2/${text}`)
    }
    const binary = Buffer.from([0x61, 0xff, 0x80])
    expect(toEvent(msg({ key: binary }), info).meta.key).toBe(binary.toString('base64'))
    expect(toEvent(msg({ key: Buffer.from([0xc3]) }), info).meta.key).toBe('ww==')
  })

  it('gives each message the time and number of its own timestamp when they change from one to the next', () => {
    const a = toEvent(msg({ timestamp: '1700000000000' }), info)
    const b = toEvent(msg({ timestamp: '1700000000001' }), info)
    const bad = toEvent(msg({ timestamp: '-5' }), info)
    const c = toEvent(msg({ timestamp: '1700000000001', offset: '9' }), info, 9)
    expect([a.time, a.meta.timestamp]).toEqual(['2023-11-14T22:13:20.000Z', 1700000000000])
    expect([b.time, b.meta.timestamp]).toEqual(['2023-11-14T22:13:20.001Z', 1700000000001])
    expect(bad.meta.timestamp).toBe('-5')
    expect([c.time, c.meta.timestamp, c.meta.offset, c.id]).toEqual(['2023-11-14T22:13:20.001Z', 1700000000001, 9, 't-2-9'])
  })

  it('turns a record it cannot build into a rejected event with the raw bytes (base64 when not UTF-8)', () => {
    const hostile = msg({ value: Buffer.from([0xff, 0x00, 0xfe]) })
    Object.defineProperty(hostile, 'headers', {
      get: () => {
        throw new Error('broken headers')
      },
    })
    const e = toEvent(hostile, info)
    expect(e).toMatchObject({ id: 't-2-7', body: Buffer.from([0xff, 0x00, 0xfe]).toString('base64'), meta: { encoding: 'base64', offset: 7 } })
    expect(e.rejected).toMatchObject({ code: 'SLUICE_ERR_CONNECTOR_KAFKA_RECORD', retriable: false })
    expect(e.rejected?.message).toContain('broken headers')
  })
})

describe('kafka errors', () => {
  it('maps kafkajs errors by name and type, following causes', () => {
    const conn = Object.assign(new Error('Connection error: connect ECONNREFUSED 127.0.0.1:1'), { name: 'KafkaJSConnectionError' })
    const retries = Object.assign(new Error('Number of retries exceeded'), { name: 'KafkaJSNumberOfRetriesExceeded', cause: conn })
    const mapped = kafkaError(retries, 'SLUICE_ERR_CONNECTOR_START', { connection: 'stream' })
    expect(mapped.code).toBe('SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION')
    expect(mapped.message).toContain('ECONNREFUSED')
    expect(mapped.context).toEqual({ connection: 'stream' })
    const sasl = Object.assign(new Error('SASL PLAIN authentication failed'), { name: 'KafkaJSSASLAuthenticationError' })
    expect(kafkaError(sasl, 'SLUICE_ERR_CONNECTOR_START', {}).code).toBe('SLUICE_ERR_CONNECTOR_KAFKA_UNAUTHORIZED')
    const acl = Object.assign(new Error('Not authorized to access topics'), { name: 'KafkaJSProtocolError', type: 'TOPIC_AUTHORIZATION_FAILED' })
    expect(kafkaError(acl, 'SLUICE_ERR_CONNECTOR_KAFKA_PRODUCE', {}).code).toBe('SLUICE_ERR_CONNECTOR_KAFKA_UNAUTHORIZED')
    expect(kafkaError(new Error('boom'), 'SLUICE_ERR_CONNECTOR_KAFKA_PRODUCE', {}).code).toBe('SLUICE_ERR_CONNECTOR_KAFKA_PRODUCE')
    const rebalance = Object.assign(new Error('The group is rebalancing'), { name: 'KafkaJSProtocolError', type: 'REBALANCE_IN_PROGRESS' })
    expect(isRebalanceError(rebalance)).toBe(true)
    expect(isRebalanceError(rebalance, 'ILLEGAL_GENERATION')).toBe(false)
    expect(isRebalanceError(conn)).toBe(false)
  })
})

describe('kafka configuration', () => {
  const load = async (yaml: string) => {
    const p = projectDir({ 'f.js': 'export default async function () {}' })
    try {
      return await parseConfig(yaml, `${p.dir}/gateway.yaml`, { connectors: CONNECTORS, root: p.dir, env: {} })
    } finally {
      p.cleanup()
    }
  }
  const conn = 'connections:\n  k: { kind: kafka, brokers: ["127.0.0.1:9092"] }\n'

  it('fills defaults for the connection and the trigger', async () => {
    const l = await load(`${conn}functions:\n  f:\n    code: f.js\n    trigger: { kafka: { connection: k, topic: telemetry } }\n`)
    expect(l.config.connections.k?.options).toMatchObject({ brokers: ['127.0.0.1:9092'], clientId: 'sluice', connectionTimeoutMs: 3000, startTimeoutMs: 60000 })
    expect(l.config.functions.f?.trigger.options).toMatchObject({
      topic: 'telemetry',
      fromBeginning: true,
      orderBy: 'partition',
      sessionTimeoutMs: 30000,
      maxInFlightPerPartition: 200,
    })
  })

  it('reports every problem at once, with positions and codes', async () => {
    const err = await load(
      `${conn}functions:\n  f:\n    code: f.js\n    trigger: { kafka: { connection: k, topic: a, topics: [b], heartbeatIntervalMs: 40000 } }\n  g:\n    code: f.js\n    trigger: { kafka: { connection: k } }\n  h:\n    code: f.js\n    trigger: { kafka: { connection: k, topic: "no spaces" } }\n`,
    ).catch((e: unknown) => e as Error)
    const msg = String(err)
    expect(msg).toContain('functions.f.trigger.kafka.topics set topic: or topics:, not both [SLUICE_ERR_CONFIG_TYPE]')
    expect(msg).toContain('functions.f.trigger.kafka.heartbeatIntervalMs must be below sessionTimeoutMs')
    expect(msg).toContain('functions.g.trigger.kafka.topic needs topic: (or topics: [...]) [SLUICE_ERR_CONFIG_REQUIRED]')
    expect(msg).toMatch(/gateway\.yaml:\d+:\d+ functions\.h\.trigger\.kafka\.topic/)
  })
})

/** Partition t/0 as the batch tests own it. */
const info = partitionInfo('t', 0, 'stream', false)
const message = (offset: number): KafkaMessage =>
  ({ offset: String(offset), key: null, value: Buffer.from('{"n":1}'), timestamp: '1700000000000', attributes: 0, headers: {} }) as KafkaMessage

/**
 * A PartitionBatches on partition t/0 (`owned`) with a router that records the offsets it is
 * handed and answers every event done, and a Committer that never commits.
 */
function partitionBatches(opts: { owned: Owned; consumer: Consumer; flow: unknown; heartbeatIntervalMs: number; stopping: () => boolean }) {
  const delivered: number[] = []
  const ctx = {
    log: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
    flow: opts.flow,
    deliver: async (events: TriggerEvent[]) => {
      for (const e of events) delivered.push(Number((e.meta as { offset: string }).offset))
      return events.map(() => ({ status: 'done' as const }))
    },
  } as unknown as ConnectorContext
  const batches = new PartitionBatches({
    trigger: { heartbeatIntervalMs: opts.heartbeatIntervalMs, maxInFlightPerPartition: 200, rebalanceTimeoutMs: 60000 },
    groupId: 'g',
    context: {},
    commits: new Committer({
      intervalMs: 1000,
      groupId: 'g',
      context: {},
      log: () => undefined,
      owned: () => [],
      mayCommit: () => false,
      stopping: () => false,
    }),
    ctx: () => ctx,
    owned: (key) => (key === 't/0' ? opts.owned : undefined),
    isCurrent: (c) => c === opts.consumer,
    joining: () => false,
    stopping: opts.stopping,
  })
  return { batches, delivered }
}

describe('kafka batches of a partition whose start position is not settled', () => {
  /** A PartitionBatches on one owned partition, with a router that answers every event done. */
  function setup() {
    let markStarted!: () => void
    const owned: Owned = { topic: 't', partition: 0, offsets: new PartitionOffsets(), info, awaitingStart: true }
    owned.started = new Promise<void>((r) => (markStarted = r))
    const seeks: Array<{ topic: string; partition: number; offset: string }> = []
    const consumer = { seek: (s: { topic: string; partition: number; offset: string }) => seeks.push(s) } as unknown as Consumer
    const flow = { paused: false, wait: () => Promise.resolve(), onChange: () => () => undefined }
    const { batches, delivered } = partitionBatches({ owned, consumer, flow, heartbeatIntervalMs: 3000, stopping: () => false })
    const payload = (offsets: number[]) =>
      ({
        batch: { topic: 't', partition: 0, highWatermark: '100', messages: offsets.map(message), lastOffset: () => String(offsets.at(-1)) },
        resolveOffset: () => undefined,
        heartbeat: async () => undefined,
        commitOffsetsIfNecessary: async () => undefined,
      }) as unknown as EachBatchPayload
    /** The connector committed `start` as the partition's start position. */
    const start = (at: number) => {
      owned.offsets.advance(at)
      owned.awaitingStart = false
      markStarted()
    }
    return { batches, consumer, payload, start, delivered, seeks }
  }

  it('waits for the start position, then hands out only what lies from it on', async () => {
    const s = setup()
    const handled = s.batches.handle(s.consumer, s.payload([3, 4, 5, 6]))
    await new Promise((r) => setTimeout(r, 20))
    expect(s.delivered).toEqual([]) // nothing before the start is known
    s.start(5)
    await handled
    expect(s.delivered).toEqual([5, 6])
    expect(s.seeks).toEqual([])
  })

  it('reads again from the start when kafkajs read from past it, handing out nothing of that batch', async () => {
    const s = setup()
    const handled = s.batches.handle(s.consumer, s.payload([8, 9]))
    s.start(5)
    await handled
    expect(s.delivered).toEqual([])
    expect(s.seeks).toEqual([{ topic: 't', partition: 0, offset: '5' }])
    // kafkajs fetches again from 5: handed out as usual
    await s.batches.handle(s.consumer, s.payload([5, 6, 7, 8, 9]))
    expect(s.delivered).toEqual([5, 6, 7, 8, 9])
  })

  it('hands out nothing when the trigger stops while the start position is unknown', async () => {
    const s = setup()
    const handled = s.batches.handle(s.consumer, s.payload([0, 1]))
    s.batches.stop()
    await handled
    expect(s.delivered).toEqual([])
  })
})

describe("kafka batches while the function's backlog is full", () => {
  /** A PartitionBatches on one owned partition whose router flow starts paused; every event is done. */
  function setup() {
    const owned: Owned = { topic: 't', partition: 0, offsets: new PartitionOffsets(), info, awaitingStart: false }
    const pauses: unknown[] = []
    let heartbeats = 0
    const consumer = { pause: (tp: unknown) => pauses.push(tp), resume: () => undefined } as unknown as Consumer
    const waiters: Array<() => void> = []
    const flow = {
      paused: true,
      wait: () => (flow.paused ? new Promise<void>((r) => waiters.push(r)) : Promise.resolve()),
      onChange: () => () => undefined,
    }
    const resume = () => {
      flow.paused = false
      for (const w of waiters.splice(0)) w()
    }
    let stopping = false
    const { batches, delivered } = partitionBatches({ owned, consumer, flow, heartbeatIntervalMs: 5, stopping: () => stopping })
    const resolved: string[] = []
    const payload = (offsets: number[]) =>
      ({
        batch: { topic: 't', partition: 0, highWatermark: '100', messages: offsets.map(message), lastOffset: () => String(offsets.at(-1)) },
        resolveOffset: (o: string) => resolved.push(o),
        heartbeat: async () => {
          heartbeats++
        },
        commitOffsetsIfNecessary: async () => undefined,
      }) as unknown as EachBatchPayload
    const stop = () => {
      stopping = true
      batches.stop()
    }
    return { batches, consumer, payload, resume, stop, delivered, pauses, resolved, heartbeats: () => heartbeats, waiting: () => waiters.length }
  }

  it('waits in eachBatch, heartbeating, without pausing kafkajs, and hands out as soon as the flow resumes', async () => {
    const s = setup()
    const handled = s.batches.handle(s.consumer, s.payload([0, 1, 2]))
    await waitFor(() => s.heartbeats() >= 2, 5_000, 'heartbeats while held back')
    expect(s.delivered).toEqual([])
    expect(s.resolved).toEqual([])
    s.resume()
    await handled
    expect(s.delivered).toEqual([0, 1, 2])
    expect(s.resolved).toEqual(['2'])
    expect(s.pauses).toEqual([]) // kafkajs was never paused: its next fetch does not sleep maxWaitMs
  })

  it('returns without handing out or resolving when the trigger stops while held back', async () => {
    const s = setup()
    const handled = s.batches.handle(s.consumer, s.payload([0, 1]))
    await waitFor(() => s.waiting() > 0, 5_000, 'the batch waiting for the flow')
    s.stop()
    await handled
    expect(s.delivered).toEqual([])
    expect(s.resolved).toEqual([])
  })
})
