import { randomUUID } from 'node:crypto'
import type { Checkpoint, CheckpointStore, PartitionOwnership } from '@azure/event-hubs'
import { SluiceError, type ConnectorState } from '../../src/sdk/index.js'

/**
 * One partition's row in the sluice store: its ownership and its checkpoint together, so a
 * checkpoint can be written only while its writer still owns the partition (one compare-and-set).
 */
export interface PartitionRow {
  /** '' once the owner gave the partition up. */
  ownerId: string
  /** The ownership etag the SDK's load balancer sees; new on every claim, renewals included. */
  ownerEtag: string
  /** Counts changes of owner: a partition session may checkpoint only within the generation it started in. */
  generation: number
  lastModifiedTimeInMs: number
  checkpoint?: { sequenceNumber: number; offset: string }
}

/** Another writer changed the row between our read and our write this often in a row: give up. */
const MAX_ATTEMPTS = 50

type RowState = Pick<ConnectorState, 'list' | 'compareAndSet'>

/**
 * The SDK's CheckpointStore on sluice's own store (ConnectorState compare-and-set rows): partition
 * ownership with etags, so several gateway instances sharing the store balance the partitions of
 * a consumer group between them, and checkpoints that only the current owner can write.
 */
export class SluiceCheckpointStore implements CheckpointStore {
  /** Generation of this owner's latest claim, per partition row. */
  private readonly claims = new Map<string, number>()

  constructor(
    private readonly state: RowState,
    /** The consumer client's identifier: the owner id its claims carry. */
    readonly ownerId: string,
  ) {}

  private static prefix(ns: string, hub: string, group: string): string {
    return `eh/${ns.toLowerCase()}/${hub.toLowerCase()}/${group.toLowerCase()}/`
  }

  private static key(p: { fullyQualifiedNamespace: string; eventHubName: string; consumerGroup: string; partitionId: string }): string {
    return `${SluiceCheckpointStore.prefix(p.fullyQualifiedNamespace, p.eventHubName, p.consumerGroup)}${p.partitionId}`
  }

  private async read(key: string): Promise<{ row: PartitionRow | undefined; version: string | undefined }> {
    const found = (await this.state.list(key)).find((r) => r.key === key)
    return found ? { row: found.value as PartitionRow, version: found.version } : { row: undefined, version: undefined }
  }

  private async rows(ns: string, hub: string, group: string): Promise<Array<{ partitionId: string; row: PartitionRow }>> {
    const prefix = SluiceCheckpointStore.prefix(ns, hub, group)
    return (await this.state.list(prefix)).map((r) => ({ partitionId: r.key.slice(prefix.length), row: r.value as PartitionRow }))
  }

  /**
   * The ownership rows. A row held under this owner id that this store object never claimed was
   * left by an earlier run of the same instance (the owner id is the instance id, stable across
   * restarts): it is reported as abandoned (ownerId ''), so the SDK's load balancer claims it at
   * once. The SDK itself would count it as ours and never read it until the claim expired.
   */
  async listOwnership(fullyQualifiedNamespace: string, eventHubName: string, consumerGroup: string): Promise<PartitionOwnership[]> {
    const prefix = SluiceCheckpointStore.prefix(fullyQualifiedNamespace, eventHubName, consumerGroup)
    return (await this.rows(fullyQualifiedNamespace, eventHubName, consumerGroup)).map(({ partitionId, row }) => ({
      fullyQualifiedNamespace,
      eventHubName,
      consumerGroup,
      partitionId,
      ownerId: row.ownerId === this.ownerId && !this.claims.has(prefix + partitionId) ? '' : row.ownerId,
      lastModifiedTimeInMs: row.lastModifiedTimeInMs,
      etag: row.ownerEtag,
    }))
  }

  /** Claims each partition whose ownership etag is still the one the request names (none: unowned). */
  async claimOwnership(requests: PartitionOwnership[]): Promise<PartitionOwnership[]> {
    const claimed: PartitionOwnership[] = []
    for (const req of requests) {
      const c = await this.claimOne(req)
      if (c) claimed.push(c)
    }
    return claimed
  }

  private async claimOne(req: PartitionOwnership): Promise<PartitionOwnership | undefined> {
    const key = SluiceCheckpointStore.key(req)
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const { row, version } = await this.read(key)
      // Someone claimed it since the caller listed the ownerships: the caller lost the race.
      if (row?.ownerEtag !== req.etag) return undefined
      const now = Date.now()
      const next: PartitionRow = {
        ...row,
        ownerId: req.ownerId,
        ownerEtag: randomUUID(),
        // A claim of a row an earlier run of this owner id held starts a new generation too.
        generation: (row?.generation ?? 0) + (row?.ownerId === req.ownerId && this.claims.has(key) ? 0 : 1),
        lastModifiedTimeInMs: now,
      }
      // A checkpoint write between our read and this write changes the row's version only: read again.
      if ((await this.state.compareAndSet(key, next, version)) === undefined) continue
      if (req.ownerId === this.ownerId) this.claims.set(key, next.generation)
      else this.claims.delete(key)
      return { ...req, etag: next.ownerEtag, lastModifiedTimeInMs: now }
    }
    throw new SluiceError('SLUICE_ERR_CONNECTOR_EVENTHUBS_CHECKPOINT', `could not claim partition ${req.partitionId}: the row kept changing`, {
      context: { partitionId: req.partitionId },
    })
  }

  /** The generation of this owner's current claim of a partition (taken when its session starts). */
  generationOf(p: { fullyQualifiedNamespace: string; eventHubName: string; consumerGroup: string; partitionId: string }): number | undefined {
    return this.claims.get(SluiceCheckpointStore.key(p))
  }

  async listCheckpoints(fullyQualifiedNamespace: string, eventHubName: string, consumerGroup: string): Promise<Checkpoint[]> {
    return (await this.rows(fullyQualifiedNamespace, eventHubName, consumerGroup)).flatMap(({ partitionId, row }) =>
      row.checkpoint
        ? [{ fullyQualifiedNamespace, eventHubName, consumerGroup, partitionId, sequenceNumber: row.checkpoint.sequenceNumber, offset: row.checkpoint.offset }]
        : [],
    )
  }

  /** The SDK's entry point: writes the checkpoint while this owner owns the partition. */
  updateCheckpoint(checkpoint: Checkpoint): Promise<void> {
    return this.checkpoint(checkpoint, undefined)
  }

  /**
   * Writes the checkpoint only while this owner still owns the partition, and (with `generation`)
   * only within that claim: a session that lost the partition never checkpoints it again, even
   * after this instance claimed it anew. Rejects with SLUICE_ERR_CONNECTOR_EVENTHUBS_OWNERSHIP_LOST.
   */
  async checkpoint(cp: Checkpoint, generation: number | undefined): Promise<void> {
    const key = SluiceCheckpointStore.key(cp)
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const { row, version } = await this.read(key)
      if (!row || row.ownerId !== this.ownerId || (generation !== undefined && row.generation !== generation)) {
        throw new SluiceError(
          'SLUICE_ERR_CONNECTOR_EVENTHUBS_OWNERSHIP_LOST',
          `partition ${cp.partitionId} is owned by ${row?.ownerId ? row.ownerId : 'nobody'} now; not checkpointing sequence number ${cp.sequenceNumber}`,
          { context: { partitionId: cp.partitionId } },
        )
      }
      const next: PartitionRow = { ...row, checkpoint: { sequenceNumber: cp.sequenceNumber, offset: cp.offset } }
      if ((await this.state.compareAndSet(key, next, version)) !== undefined) return
    }
    throw new SluiceError('SLUICE_ERR_CONNECTOR_EVENTHUBS_CHECKPOINT', `could not checkpoint partition ${cp.partitionId}: the row kept changing`, {
      context: { partitionId: cp.partitionId },
    })
  }
}
