/**
 * The sluice checkpoint store (the SDK's CheckpointStore on the gateway's store) on a real
 * SQLite store: ownership claims with etags, and checkpoints only the current owner can write.
 */
import { describe, expect, it } from 'vitest'
import type { PartitionOwnership } from '@azure/event-hubs'
import { SluiceCheckpointStore } from '../../../connectors/eventhubs/checkpoint-store.js'
import { hasCode } from '../../../src/errors.js'
import { SqliteStore } from '../../../src/store/sqlite.js'

const NS = 'ns.example'
const HUB = 'telemetry'
const CG = '$Default'

function stores(...owners: string[]): SluiceCheckpointStore[] {
  const db = new SqliteStore(':memory:')
  const state = {
    list: (prefix: string) => db.listVersioned('eventhubs:fn', prefix),
    compareAndSet: (k: string, v: unknown, ver: string | undefined) => db.compareAndSet('eventhubs:fn', k, v, ver),
  }
  return owners.map((o) => new SluiceCheckpointStore(state, o))
}

const request = (ownerId: string, partitionId: string, etag?: string): PartitionOwnership => ({
  fullyQualifiedNamespace: NS,
  eventHubName: HUB,
  consumerGroup: CG,
  partitionId,
  ownerId,
  ...(etag !== undefined ? { etag } : {}),
})

const cp = (partitionId: string, sequenceNumber: number) => ({
  fullyQualifiedNamespace: NS,
  eventHubName: HUB,
  consumerGroup: CG,
  partitionId,
  sequenceNumber,
  offset: String(sequenceNumber * 100),
})

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (e) {
    return e
  }
  throw new Error('expected a rejection')
}

describe('SluiceCheckpointStore', () => {
  it('claims a free partition once: the second claim with the same (empty) etag loses', async () => {
    const [a, b] = stores('A', 'B') as [SluiceCheckpointStore, SluiceCheckpointStore]
    const [claimedA, claimedB] = await Promise.all([a.claimOwnership([request('A', '0')]), b.claimOwnership([request('B', '0')])])
    expect([claimedA.length, claimedB.length].sort()).toEqual([0, 1])
    const owners = await a.listOwnership(NS, HUB, CG)
    expect(owners).toHaveLength(1)
    expect(owners[0]?.ownerId).toBe(claimedA.length ? 'A' : 'B')
    expect(owners[0]?.etag).toBe((claimedA[0] ?? claimedB[0])?.etag)
    expect(owners[0]?.lastModifiedTimeInMs).toBeGreaterThan(0)
  })

  it('lets an owner renew and another steal only with the current etag', async () => {
    const [a, b] = stores('A', 'B') as [SluiceCheckpointStore, SluiceCheckpointStore]
    const [first] = await a.claimOwnership([request('A', '0')])
    const [renewed] = await a.claimOwnership([request('A', '0', first?.etag)])
    expect(renewed?.etag).not.toBe(first?.etag)
    // A stale etag (from before the renewal) claims nothing.
    expect(await b.claimOwnership([request('B', '0', first?.etag)])).toEqual([])
    const [stolen] = await b.claimOwnership([request('B', '0', renewed?.etag)])
    expect(stolen?.ownerId).toBe('B')
    expect((await a.listOwnership(NS, HUB, CG))[0]?.ownerId).toBe('B')
  })

  it('writes checkpoints only while the writer owns the partition', async () => {
    const [a, b] = stores('A', 'B') as [SluiceCheckpointStore, SluiceCheckpointStore]
    const [own] = await a.claimOwnership([request('A', '0'), request('A', '1')])
    await a.updateCheckpoint(cp('0', 5))
    await a.updateCheckpoint(cp('1', 7))
    // B has no claim: refused.
    expect(hasCode(await rejection(b.updateCheckpoint(cp('0', 9))), 'SLUICE_ERR_CONNECTOR_EVENTHUBS_OWNERSHIP_LOST')).toBe(true)
    await b.claimOwnership([request('B', '0', own?.etag)])
    // A lost partition 0: its checkpoint is refused and the row keeps what was there.
    expect(hasCode(await rejection(a.updateCheckpoint(cp('0', 6))), 'SLUICE_ERR_CONNECTOR_EVENTHUBS_OWNERSHIP_LOST')).toBe(true)
    await b.updateCheckpoint(cp('0', 8))
    const cps = await a.listCheckpoints(NS, HUB, CG)
    expect(cps.map((c) => [c.partitionId, c.sequenceNumber, c.offset])).toEqual([
      ['0', 8, '800'],
      ['1', 7, '700'],
    ])
  })

  it('keeps a session that lost the partition from checkpointing even after its owner claims it again', async () => {
    const [a, b] = stores('A', 'B') as [SluiceCheckpointStore, SluiceCheckpointStore]
    await a.claimOwnership([request('A', '0')])
    const oldGeneration = a.generationOf(cp('0', 0))
    await a.checkpoint(cp('0', 1), oldGeneration)
    const [byB] = await b.claimOwnership([request('B', '0', (await a.listOwnership(NS, HUB, CG))[0]?.etag)])
    await a.claimOwnership([request('A', '0', byB?.etag)])
    const newGeneration = a.generationOf(cp('0', 0))
    expect(newGeneration).not.toBe(oldGeneration)
    expect(hasCode(await rejection(a.checkpoint(cp('0', 2), oldGeneration)), 'SLUICE_ERR_CONNECTOR_EVENTHUBS_OWNERSHIP_LOST')).toBe(true)
    await a.checkpoint(cp('0', 3), newGeneration)
    expect((await a.listCheckpoints(NS, HUB, CG))[0]?.sequenceNumber).toBe(3)
  })

  it('keeps the checkpoint when the owner gives the partition up, for the next owner', async () => {
    const [a, b] = stores('A', 'B') as [SluiceCheckpointStore, SluiceCheckpointStore]
    const [own] = await a.claimOwnership([request('A', '0')])
    await a.updateCheckpoint(cp('0', 4))
    // What EventProcessor.stop does: claim with an empty owner id.
    const [abandoned] = await a.claimOwnership([request('', '0', own?.etag)])
    expect((await b.listOwnership(NS, HUB, CG))[0]?.ownerId).toBe('')
    expect(hasCode(await rejection(a.updateCheckpoint(cp('0', 5))), 'SLUICE_ERR_CONNECTOR_EVENTHUBS_OWNERSHIP_LOST')).toBe(true)
    expect(await b.claimOwnership([request('B', '0', abandoned?.etag)])).toHaveLength(1)
    expect((await b.listCheckpoints(NS, HUB, CG))[0]?.sequenceNumber).toBe(4)
  })

  it('keeps hubs and consumer groups apart', async () => {
    const [a] = stores('A') as [SluiceCheckpointStore]
    await a.claimOwnership([request('A', '0'), { ...request('A', '0'), consumerGroup: 'other' }, { ...request('A', '0'), eventHubName: 'telemetry2' }])
    expect(await a.listOwnership(NS, HUB, CG)).toHaveLength(1)
    expect(await a.listOwnership(NS, HUB, 'other')).toHaveLength(1)
    expect(await a.listOwnership(NS, 'telemetry2', CG)).toHaveLength(1)
    expect(await a.listOwnership(NS, 'telemetry', 'nobody')).toHaveLength(0)
  })
})
