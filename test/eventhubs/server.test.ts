/**
 * The Event Hubs test server, checked with the bare SDK: what the connector tests rely on has to
 * behave as the service does for @azure/event-hubs.
 */
import {
  EventHubConsumerClient,
  EventHubProducerClient,
  earliestEventPosition,
  latestEventPosition,
  type EventPosition,
  type ReceivedEventData,
  type Subscription,
} from '@azure/event-hubs'
import rhea from 'rhea'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../helpers/gateway.js'
import { publish, uid } from '../connectors/eventhubs/helpers.js'
import { parseSelector } from './partition-log.js'
import { EventHubsTestServer } from './server.js'

const server = new EventHubsTestServer()
beforeAll(() => server.start())
afterAll(() => server.stop())

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

function consumer(hub: string, group = '$Default'): EventHubConsumerClient {
  const c = new EventHubConsumerClient(group, server.connectionString(), hub)
  cleanups.push(() => c.close())
  return c
}

/** Subscribes to one partition and collects what arrives. */
function read(c: EventHubConsumerClient, partitionId: string, startPosition: EventPosition, ownerLevel?: number) {
  const got: ReceivedEventData[] = []
  const errors: Error[] = []
  const closes: string[] = []
  const sub: Subscription = c.subscribe(
    partitionId,
    {
      processEvents: async (events) => {
        got.push(...events)
      },
      processError: async (err) => {
        errors.push(err)
      },
      processClose: async (reason) => {
        closes.push(reason)
      },
    },
    { startPosition, maxWaitTimeInSeconds: 0.2, ...(ownerLevel !== undefined ? { ownerLevel } : {}) },
  )
  cleanups.push(() => sub.close())
  return { got, errors, closes, sub }
}

describe('Event Hubs test server', () => {
  it('answers hub and partition properties over $management', async () => {
    const hub = uid()
    server.createHub(hub, 3)
    await publish(server, hub, [{ n: 1 }, { n: 2 }], { partitionId: '1' })
    const p = new EventHubProducerClient(server.connectionString(), hub)
    cleanups.push(() => p.close())
    const props = await p.getEventHubProperties()
    expect(props.name).toBe(hub)
    expect(props.partitionIds).toEqual(['0', '1', '2'])
    const empty = await p.getPartitionProperties('0')
    expect(empty).toMatchObject({ partitionId: '0', isEmpty: true, lastEnqueuedSequenceNumber: -1, beginningSequenceNumber: 0 })
    const one = await p.getPartitionProperties('1')
    expect(one).toMatchObject({ partitionId: '1', isEmpty: false, lastEnqueuedSequenceNumber: 1, eventHubName: hub })
    expect(Number(one.lastEnqueuedOffset)).toBeGreaterThan(0)
  })

  it('stores batches with sequence numbers, byte offsets, enqueued time and partition key', async () => {
    const hub = uid()
    server.createHub(hub, 4)
    await publish(server, hub, [{ n: 1 }, 'two', { n: 3 }], { partitionKey: 'station-7' })
    await publish(server, hub, [{ n: 4 }], { partitionKey: 'station-7' })
    const counts = server.hubs.get(hub)?.partitions.map((x) => x.events.length)
    // One key, one partition.
    expect(counts?.filter((n) => n > 0)).toEqual([4])
    const pid = String(counts?.findIndex((n) => n > 0))
    const r = read(consumer(hub), pid, earliestEventPosition)
    await waitFor(() => r.got.length === 4, 20_000, 'four events')
    expect(r.got.map((e) => e.body)).toEqual([{ n: 1 }, 'two', { n: 3 }, { n: 4 }])
    expect(r.got.map((e) => e.sequenceNumber)).toEqual([0, 1, 2, 3])
    expect(r.got.every((e) => e.partitionKey === 'station-7' && e.enqueuedTimeUtc instanceof Date)).toBe(true)
    const offsets = r.got.map((e) => Number(e.offset))
    expect(offsets[0]).toBe(0)
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b))
    expect(new Set(offsets).size).toBe(4)
  })

  it('starts receivers where the selector filter says', async () => {
    const hub = uid()
    server.createHub(hub, 1)
    await publish(
      server,
      hub,
      [0, 1, 2, 3, 4].map((n) => ({ n })),
    )
    // One client reads a partition once: one client per receiver.
    const after2 = read(consumer(hub), '0', { sequenceNumber: 2 })
    const from2 = read(consumer(hub), '0', { sequenceNumber: 2, isInclusive: true })
    await waitFor(() => after2.got.length === 2 && from2.got.length === 3, 20_000, 'both receivers')
    expect(after2.got.map((e) => e.sequenceNumber)).toEqual([3, 4])
    expect(from2.got.map((e) => e.sequenceNumber)).toEqual([2, 3, 4])
    const offsetOf3 = from2.got[1]?.offset as string
    const afterOffset = read(consumer(hub, 'other'), '0', { offset: offsetOf3 })
    const latest = read(consumer(hub, 'third'), '0', latestEventPosition)
    await waitFor(() => afterOffset.got.length === 1, 20_000, 'after offset')
    expect(afterOffset.got.map((e) => e.sequenceNumber)).toEqual([4])
    const log = server.hubs.get(hub)?.partitions[0]
    await waitFor(() => log && server.consumers.ofPartition(log).some((c) => c.group === 'third'), 20_000, 'latest receiver attached')
    await publish(server, hub, [{ n: 5 }])
    await waitFor(() => latest.got.length === 1, 20_000, 'latest')
    expect(latest.got[0]?.body).toEqual({ n: 5 })
    expect(parseSelector("amqp.annotation.x-opt-enqueued-time > '1700000000000'")).toEqual({ kind: 'time', value: 1700000000000 })
    expect(parseSelector('amqp.annotation.x-opt-offset > @latest')).toBeUndefined()
  })

  it('disconnects a receiver when one with a higher owner level opens, and refuses lower ones', async () => {
    const hub = uid()
    server.createHub(hub, 1)
    const first = read(consumer(hub), '0', earliestEventPosition, 1)
    await publish(server, hub, [{ n: 1 }])
    await waitFor(() => first.got.length === 1, 20_000, 'first receiver')
    const second = read(consumer(hub), '0', earliestEventPosition, 2)
    await waitFor(() => first.closes.length === 1, 20_000, 'first receiver closed')
    expect(first.closes).toEqual(['OwnershipLost'])
    expect(first.errors.map((e) => (e as { code?: string }).code)).toContain('ReceiverDisconnectedError')
    await waitFor(() => second.got.length === 1, 20_000, 'second receiver')
    await publish(server, hub, [{ n: 2 }])
    await waitFor(() => second.got.length === 2, 20_000, 'second receiver gets the next event')
    expect(first.got).toHaveLength(1)
    const lower = read(consumer(hub), '0', earliestEventPosition, 1)
    await waitFor(() => lower.closes.length === 1, 20_000, 'lower owner level refused')
    expect(lower.got).toHaveLength(0)
    expect(server.consumers.stolen.filter((s) => s.hub === hub)).toEqual([{ hub, partition: '0', group: '$Default', epoch: 1 }])
  })

  it('rejects a wrong key and names a missing hub', async () => {
    const hub = uid()
    server.createHub(hub, 1)
    const wrong = new EventHubProducerClient(server.connectionString().replace('SharedAccessKey=v', 'SharedAccessKey=nope'), hub, {
      retryOptions: { maxRetries: 0 },
    })
    cleanups.push(() => wrong.close())
    await expect(wrong.getEventHubProperties()).rejects.toMatchObject({ code: 'UnauthorizedError' })
    const missing = new EventHubProducerClient(server.connectionString(), 'no-such-hub', { retryOptions: { maxRetries: 0 } })
    cleanups.push(() => missing.close())
    await expect(missing.getEventHubProperties()).rejects.toMatchObject({ code: 'MessagingEntityNotFoundError' })
  })

  it('accepts SASL PLAIN as well as the ANONYMOUS the SDK uses', async () => {
    const c = rhea.create_container()
    const conn = c.connect({ host: '127.0.0.1', port: server.port, username: 'user', password: 'secret', reconnect: false })
    const opened = await new Promise<boolean>((resolve) => {
      conn.once('connection_open', () => resolve(true))
      conn.once('connection_error', () => resolve(false))
      conn.once('disconnected', () => resolve(false))
    })
    conn.close()
    expect(opened).toBe(true)
  })

  it('keeps its logs across a restart on the same port, and holds acknowledgements on request', async () => {
    const hub = uid()
    server.createHub(hub, 1)
    await publish(server, hub, [{ n: 1 }])
    const port = server.port
    await server.restart()
    expect(server.port).toBe(port)
    server.hold(hub)
    let sent = false
    const sending = publish(server, hub, [{ n: 2 }]).then(() => (sent = true))
    await waitFor(() => server.heldCount(hub) === 1, 20_000, 'held send')
    expect(sent).toBe(false)
    expect(server.bodies(hub)).toEqual([{ n: 1 }, { n: 2 }])
    server.release(hub)
    await sending
    expect(sent).toBe(true)
  })
})
