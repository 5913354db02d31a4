/**
 * The wire-protocol test broker against bare kafkajs 2.2.4 (producer, consumer group, admin) and,
 * for the group checks kafkajs never provokes on purpose, against raw requests.
 */
import { connect } from 'node:net'
import { Kafka, logLevel, type Consumer, type EachBatchPayload } from 'kafkajs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../helpers/gateway.js'
import { KafkaTestBroker } from './broker.js'
import { API, ERR, Reader, Writer } from './protocol.js'

let broker: KafkaTestBroker
const cleanups: Array<() => Promise<unknown> | unknown> = []
let seq = 0
const uid = (p: string) => `${p}-${process.pid}-${++seq}`

beforeAll(async () => {
  broker = await KafkaTestBroker.start()
})
afterAll(async () => {
  await broker?.close()
})
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function kafka(clientId = uid('client')): Kafka {
  return new Kafka({ brokers: [broker.address], clientId, logLevel: logLevel.NOTHING, retry: { initialRetryTime: 50, retries: 10 } })
}

async function producer() {
  const p = kafka().producer()
  await p.connect()
  cleanups.push(() => p.disconnect())
  return p
}

/** A consumer that records what it got and commits each batch's end; `assigned` follows GROUP_JOIN. */
async function consumer(groupId: string, topic: string) {
  const c: Consumer = kafka().consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 200, maxWaitTimeInMs: 100, rebalanceTimeout: 10000 })
  const got: Array<{ partition: number; offset: number; key: string | null; value: string }> = []
  const state = { assigned: [] as number[], joins: 0 }
  c.on(c.events.GROUP_JOIN, (e) => {
    state.assigned = e.payload.memberAssignment[topic] ?? []
    state.joins++
  })
  await c.connect()
  await c.subscribe({ topic, fromBeginning: true })
  await c.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary }: EachBatchPayload) => {
      for (const m of batch.messages) got.push({ partition: batch.partition, offset: Number(m.offset), key: m.key?.toString() ?? null, value: m.value?.toString() ?? '' })
      resolveOffset(batch.lastOffset())
      await commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition: batch.partition, offset: String(Number(batch.lastOffset()) + 1) }] }] })
    },
  })
  cleanups.push(() => c.disconnect())
  return { c, got, state }
}

/** One raw request on a fresh connection; resolves with the response body. */
async function raw(apiKey: number, version: number, body: Writer): Promise<Reader> {
  const sock = connect(Number(broker.address.split(':')[1]), '127.0.0.1')
  const b = body.toBuffer()
  const head = new Writer().int16(apiKey).int16(version).int32(7).string('raw-client').toBuffer()
  sock.write(new Writer().int32(head.length + b.length).raw(head).raw(b).toBuffer())
  const chunks: Buffer[] = []
  return new Promise((resolve, reject) => {
    sock.on('error', reject)
    sock.on('data', (c: Buffer) => {
      chunks.push(c)
      const all = Buffer.concat(chunks)
      if (all.length >= 4 && all.length >= 4 + all.readInt32BE(0)) {
        sock.destroy()
        const r = new Reader(all.subarray(4, 4 + all.readInt32BE(0)))
        r.int32() // correlation id
        resolve(r)
      }
    })
  })
}

const joinRequest = (memberId: string, sessionMs: number) =>
  new Writer().int32(sessionMs).int32(sessionMs).string(memberId).string('consumer').array([{ name: 'RoundRobinAssigner', metadata: Buffer.alloc(0) }], (w, p) => w.string(p.name).bytes(p.metadata))

async function rawJoin(group: string, memberId = '', sessionMs = 6000) {
  const r = await raw(API.JoinGroup, 2, new Writer().string(group).raw(joinRequest(memberId, sessionMs).toBuffer()))
  r.int32()
  return { error: r.int16(), generation: r.int32(), protocol: r.string(), leader: r.string(), memberId: r.string() ?? '' }
}

async function rawCommit(group: string, generation: number, memberId: string, topic: string, offset: number): Promise<number> {
  const w = new Writer().string(group).int32(generation).string(memberId).int64(-1)
  w.array([topic], (w, t) => w.string(t).array([0], (w, p) => w.int32(p).int64(offset).string(null)))
  const r = await raw(API.OffsetCommit, 3, w)
  r.int32()
  const topics = r.array((r) => {
    r.string()
    return r.array((r) => {
      r.int32()
      return r.int16()
    })
  })
  return topics?.[0]?.[0] ?? -1
}

describe('kafka test broker', () => {
  it('answers ApiVersions with the versions it serves, and refuses others in v0 format', async () => {
    const r = await raw(API.ApiVersions, 2, new Writer())
    expect(r.int16()).toBe(ERR.NONE)
    const apis = r.array((r) => ({ key: r.int16(), min: r.int16(), max: r.int16() })) ?? []
    expect(apis.find((a) => a.key === API.Fetch)).toEqual({ key: API.Fetch, min: 4, max: 4 })
    expect(apis.map((a) => a.key).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18])
    const old = await raw(API.ApiVersions, 3, new Writer())
    expect(old.int16()).toBe(ERR.UNSUPPORTED_VERSION)
  })

  it('stores what kafkajs produces and serves it back in partition order, with keys, headers and commits', async () => {
    const topic = uid('data')
    broker.createTopic(topic, 3)
    const p = await producer()
    for (let round = 0; round < 4; round++) {
      await p.send({ topic, acks: -1, messages: Array.from({ length: 25 }, (_, i) => ({ key: `k${i % 7}`, value: JSON.stringify({ round, i }), headers: { h: `v${i}` } })) })
    }
    const hw = broker.highWatermarks(topic)
    expect(hw.reduce((a, b) => a + b, 0)).toBe(100)
    const stored = broker.records(topic)
    expect(stored.find((r) => r.value === JSON.stringify({ round: 0, i: 3 }))?.headers).toEqual({ h: 'v3' })
    // The default partitioner hashes keys: one key, one partition.
    const partitionsOfKey = new Map<string, Set<number>>()
    for (const r of stored) partitionsOfKey.set(r.key as string, (partitionsOfKey.get(r.key as string) ?? new Set()).add(r.partition))
    expect([...partitionsOfKey.values()].every((s) => s.size === 1)).toBe(true)

    const group = uid('g')
    const { got } = await consumer(group, topic)
    await waitFor(() => got.length === 100, 20_000, '100 messages')
    for (let part = 0; part < 3; part++) {
      const offsets = got.filter((m) => m.partition === part).map((m) => m.offset)
      expect(offsets).toEqual(Array.from({ length: hw[part] as number }, (_, i) => i))
    }
    expect(new Set(got.map((m) => m.value)).size).toBe(100)
    await waitFor(() => [0, 1, 2].every((part) => broker.committed(group, topic, part) === hw[part]), 10_000, 'commits at the ends')
  })

  it('long-polls: a waiting fetch answers when a message arrives', async () => {
    const topic = uid('poll')
    broker.createTopic(topic, 1)
    const { got, state } = await consumer(uid('g'), topic)
    await waitFor(() => state.joins > 0, 20_000, 'joined')
    const p = await producer()
    await p.send({ topic, acks: -1, messages: [{ value: 'late' }] })
    await waitFor(() => got.length === 1, 20_000, 'the late message')
    expect(got[0]?.value).toBe('late')
  })

  it('lists earliest and latest offsets and committed offsets through the admin client', async () => {
    const topic = uid('admin')
    broker.createTopic(topic, 2)
    const p = await producer()
    await p.send({ topic, acks: -1, messages: [{ value: 'a', partition: 1 }, { value: 'b', partition: 1 }] })
    const admin = kafka().admin()
    await admin.connect()
    cleanups.push(() => admin.disconnect())
    const offsets = await admin.fetchTopicOffsets(topic)
    expect(offsets.sort((a, b) => a.partition - b.partition).map((o) => [o.partition, o.low, o.high])).toEqual([
      [0, '0', '0'],
      [1, '0', '2'],
    ])
    const group = uid('g')
    expect(await rawCommit(group, -1, '', topic, 1)).toBe(ERR.NONE)
    const fetched = await admin.fetchOffsets({ groupId: group, topics: [topic] })
    expect(fetched[0]?.partitions.find((x) => x.partition === 0)?.offset).toBe('1')
  })

  it('rebalances a group as members join and leave, without sharing a partition', async () => {
    const topic = uid('rebalance')
    broker.createTopic(topic, 4)
    const group = uid('g')
    const a = await consumer(group, topic)
    await waitFor(() => a.state.assigned.length === 4, 20_000, 'a owns all')
    const b = await consumer(group, topic)
    await waitFor(() => a.state.assigned.length === 2 && b.state.assigned.length === 2, 30_000, 'split in two')
    expect(new Set([...a.state.assigned, ...b.state.assigned]).size).toBe(4)
    const generation = broker.groups.describe(group).generation
    await b.c.disconnect()
    await waitFor(() => a.state.assigned.length === 4, 30_000, 'a owns all again')
    expect(broker.groups.describe(group).generation).toBeGreaterThan(generation)
  })

  it('refuses commits of an old generation or an unknown member, and expires silent members', async () => {
    const topic = uid('gen')
    broker.createTopic(topic, 1)
    const group = uid('g')
    const first = await rawJoin(group, '', 1000)
    expect(first.error).toBe(ERR.NONE)
    expect(first.leader).toBe(first.memberId)
    expect(await rawCommit(group, first.generation, first.memberId, topic, 5)).toBe(ERR.REBALANCE_IN_PROGRESS) // no SyncGroup yet
    expect(await rawCommit(group, first.generation, 'nobody', topic, 5)).toBe(ERR.UNKNOWN_MEMBER_ID)
    expect(await rawCommit(group, first.generation + 1, first.memberId, topic, 5)).toBe(ERR.ILLEGAL_GENERATION)
    // The member never heartbeats: after its 1 s session it is gone.
    await waitFor(() => broker.groups.describe(group).members.length === 0, 10_000, 'session expiry')
    expect(await rawCommit(group, first.generation, first.memberId, topic, 5)).toBe(ERR.UNKNOWN_MEMBER_ID)
    expect(broker.committed(group, topic, 0)).toBe(-1)
  })

  it('keeps topics, records and committed offsets across a restart on the same port', async () => {
    const topic = uid('restart')
    broker.createTopic(topic, 1)
    const p = await producer()
    await p.send({ topic, acks: -1, messages: [{ value: 'before' }] })
    const group = uid('g')
    expect(await rawCommit(group, -1, '', topic, 1)).toBe(ERR.NONE)
    const address = broker.address
    await broker.restart()
    expect(broker.address).toBe(address)
    await p.send({ topic, acks: -1, messages: [{ value: 'after' }] })
    expect(broker.records(topic).map((r) => [r.offset, r.value])).toEqual([
      [0, 'before'],
      [1, 'after'],
    ])
    expect(broker.committed(group, topic, 0)).toBe(1)
  })
})
