import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import {
  CloseReason,
  earliestEventPosition,
  EventHubConsumerClient,
  latestEventPosition,
  type CheckpointStore,
  type EventPosition,
  type PartitionContext,
  type ReceivedEventData,
  type RetryOptions,
  type Subscription,
} from '@azure/event-hubs'
import { BlobCheckpointStore } from '@azure/eventhubs-checkpointstore-blob'
import { ContainerClient } from '@azure/storage-blob'
import { backoffDelay, SluiceError, type Connector, type ConnectorContext, type LagReporter, type TriggerEvent, type TriggerSpec } from '../../src/sdk/index.js'
import { SluiceCheckpointStore } from './checkpoint-store.js'
import { eventHubsError } from './errors.js'
import { sourceOf, toTriggerEvent } from './events.js'
import type { EventHubsConnectionOptions, EventHubsTriggerOptions } from './options.js'
import { PartitionSession } from './partition.js'

/** Retries of one SDK operation (connect, receive, management request) before it reports an error. */
export const RETRY_OPTIONS: RetryOptions = { maxRetries: 3, retryDelayInMs: 250, maxRetryDelayInMs: 5000, mode: 1 /* exponential */, timeoutInMs: 30000 }
/** Retries of one blob request (checkpoint store): a few, quickly, then the error is reported. */
const BLOB_RETRY_OPTIONS = { maxTries: 4, retryDelayInMs: 250, maxRetryDelayInMs: 4000 }
/** Backoff while the namespace is unreachable, before subscribing again. */
const RECONNECT = { backoff: 'exponential', initialDelayMs: 250, maxDelayMs: 10000 } as const
/** How often the last enqueued sequence number of each owned partition is read (for the lag). */
const LAG_REFRESH_MS = 5000
/** Longest graceful wait for a partition's in-flight outcomes and last checkpoint on stop. */
const DRAIN_MS = 30000

export const LOAD_BALANCING_DEFAULTS = { strategy: 'greedy', updateIntervalMs: 10000, ownershipExpirationMs: 60000 } as const

/** Where a partition without a checkpoint starts, as the SDK's EventPosition. */
export function startPositionOf(p: EventHubsTriggerOptions['startPosition']): EventPosition {
  if (p === 'earliest') return earliestEventPosition
  if (p === 'latest') return latestEventPosition
  if ('sequenceNumber' in p) return { sequenceNumber: p.sequenceNumber, isInclusive: p.inclusive ?? false }
  return { enqueuedOn: new Date(p.enqueuedOn) }
}

/**
 * Event Hubs trigger: an EventHubConsumerClient subscribed with a checkpoint store (sluice's store
 * by default, or Azure Blob), so gateway instances on one consumer group split the partitions by
 * ownership. Each read batch of a partition goes to the router at once (key = partition id, so a
 * partition's events run in order); its checkpoint follows once every event of it and of the
 * batches before it is done or dead-lettered, never past an aborted one. A partition another owner
 * takes stops being processed and is never checkpointed from here again. See README.md.
 */
export class EventHubsConnector implements Connector, LagReporter {
  /**
   * Owner id of this instance in the checkpoint store: `<instance id>:<function>`, stable across
   * restarts, so a restarted instance recognises its partitions as its own and reads them at once
   * instead of waiting out `ownershipExpirationMs`. Without an instance id (a connector built
   * outside a gateway): new per start.
   */
  readonly ownerId: string
  private readonly connection: string
  private ctx: ConnectorContext | undefined
  private client: EventHubConsumerClient | undefined
  private subscription: Subscription | undefined
  private store: CheckpointStore | undefined
  private readonly sessions = new Map<PartitionContext, PartitionSession>()
  private lagTimer: NodeJS.Timeout | undefined
  private resubscribing: Promise<void> | undefined
  /** Resubscriptions since events last came through (their backoff grows with it). */
  private resubscribes = 0
  /** Aborted by stop: cuts reconnect waits short. */
  private readonly halt = new AbortController()
  private healthy = true
  private stopping = false
  private force = false
  private stopPromise: Promise<void> | undefined

  constructor(private readonly spec: TriggerSpec<EventHubsTriggerOptions, EventHubsConnectionOptions>) {
    this.connection = spec.connectionName ?? spec.trigger.connection
    this.ownerId = spec.instanceId ? `${spec.instanceId}:${spec.functionName}` : `sluice-${hostname()}-${randomUUID().slice(0, 8)}`
  }

  private get context(): Record<string, unknown> {
    return { function: this.spec.functionName, connection: this.connection }
  }

  async start(ctx: ConnectorContext): Promise<void> {
    this.ctx = ctx
    const { trigger: t, connection: conn } = this.spec
    if (!conn)
      throw new SluiceError('SLUICE_ERR_CONNECTOR_START', `eventhubs connection ${this.connection} is not configured`, {
        retriable: false,
        context: this.context,
      })
    this.store = await this.checkpointStore(ctx)
    const lb = { ...LOAD_BALANCING_DEFAULTS, ...t.loadBalancing }
    const client = new EventHubConsumerClient(t.consumerGroup, conn.connectionString, conn.eventHub, this.store, {
      identifier: this.ownerId,
      retryOptions: RETRY_OPTIONS,
      loadBalancingOptions: {
        strategy: lb.strategy,
        updateIntervalInMs: lb.updateIntervalMs,
        partitionOwnershipExpirationIntervalInMs: lb.ownershipExpirationMs,
      },
    })
    this.client = client
    try {
      // Fails fast on a wrong endpoint, key or hub name instead of logging errors forever.
      const props = await client.getEventHubProperties({ abortSignal: ctx.signal })
      ctx.log.info(
        { eventHub: props.name, partitions: props.partitionIds.length, consumerGroup: t.consumerGroup, ownerId: this.ownerId },
        'event hub reachable',
      )
    } catch (e) {
      await client.close().catch(() => undefined)
      throw eventHubsError(e, `cannot read event hub ${conn.eventHub}`, this.context)
    }
    if (this.stopping) return
    this.subscribe(client)
    this.lagTimer = setInterval(() => this.refreshLag(), LAG_REFRESH_MS)
    this.lagTimer.unref()
    ctx.setHealth(true)
  }

  private subscribe(client: EventHubConsumerClient): void {
    const t = this.spec.trigger
    this.subscription = client.subscribe(
      {
        processInitialize: async (pc) => {
          const session = this.onInitialize(pc)
          if (session && this.spec.trigger.startPosition === 'latest') await this.checkpointLatestStart(pc, session)
        },
        processEvents: (events, pc) => this.onEvents(events, pc),
        processError: async (err, pc) => this.onError(err, pc),
        processClose: (reason, pc) => this.onClose(reason, pc),
      },
      {
        maxBatchSize: t.maxBatchSize,
        maxWaitTimeInSeconds: t.maxWaitTimeInSeconds,
        prefetchCount: t.prefetchCount ?? 3 * t.maxBatchSize,
        startPosition: startPositionOf(t.startPosition),
        // events.ts decodes bodies itself (refusing JSON too deep to handle before it is built).
        skipParsingBodyAsJson: true,
      },
    )
  }

  /**
   * The SDK gives a partition up (closes it with reason Shutdown) when receiving failed past its
   * retries, and takes it up again only in a later load-balancing round whose own reads retry
   * with a fixed 30 s delay that no client option reaches. So: close the subscription, wait with
   * backoff until the hub answers, and subscribe again (the partitions resume at their checkpoints).
   */
  private resubscribe(why: string): void {
    const client = this.client
    if (this.stopping || this.resubscribing || !client) return
    const log = this.ctx?.log
    log?.warn({ why }, 'event hubs receiver gave up; subscribing again once the hub answers')
    this.resubscribing = (async () => {
      const old = this.subscription
      this.subscription = undefined
      await old?.close().catch((e: unknown) => log?.debug({ err: (e as Error).message }, 'closing the old subscription'))
      // Also when the hub answers at once (an error the receivers keep hitting): never a tight loop.
      await this.sleep(backoffDelay(RECONNECT, ++this.resubscribes))
      for (let attempt = 1; !this.stopping; attempt++) {
        try {
          await client.getEventHubProperties({ abortSignal: this.halt.signal })
          break
        } catch (e) {
          if (this.stopping) return
          this.setHealth(false, eventHubsError(e, 'reconnecting', this.context).message)
          await this.sleep(backoffDelay(RECONNECT, attempt))
        }
      }
      if (!this.stopping) this.subscribe(client)
    })().finally(() => (this.resubscribing = undefined))
  }

  /** Waits `ms`, or less when the connector stops. */
  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t)
        this.halt.signal.removeEventListener('abort', done)
        resolve()
      }
      const t = setTimeout(done, ms)
      this.halt.signal.addEventListener('abort', done)
    })
  }

  /**
   * Per owned partition (`<hub>/<partition>`): last enqueued sequence number minus the checkpointed
   * one, so events in flight and not yet read. From cached values (refreshed in the background).
   */
  lag(): Record<string, number> {
    const out: Record<string, number> = {}
    const hub = this.spec.connection?.eventHub ?? ''
    for (const s of this.sessions.values()) if (s.state !== 'lost') out[`${hub}/${s.partitionId}`] = s.lag()
    return out
  }

  private refreshLag(sessions: Iterable<PartitionSession> = this.sessions.values()): void {
    const client = this.client
    if (!client || this.stopping) return
    for (const s of sessions) {
      client.getPartitionProperties(s.partitionId).then(
        (p) => {
          s.lastEnqueued = Math.max(s.lastEnqueued, p.lastEnqueuedSequenceNumber)
        },
        (e: unknown) => this.ctx?.log.debug({ partitionId: s.partitionId, err: (e as Error).message }, 'cannot read partition properties for the lag'),
      )
    }
  }

  private async checkpointStore(ctx: ConnectorContext): Promise<CheckpointStore> {
    const cs = this.spec.trigger.checkpointStore
    if (cs === 'sluice') return new SluiceCheckpointStore(ctx.state, this.ownerId)
    try {
      const container = new ContainerClient(cs.blob.connectionString, cs.blob.container, { retryOptions: BLOB_RETRY_OPTIONS })
      await container.createIfNotExists({ abortSignal: ctx.signal })
      return new BlobCheckpointStore(container)
    } catch (e) {
      throw new SluiceError('SLUICE_ERR_CONNECTOR_EVENTHUBS_CHECKPOINT', `cannot open blob container ${cs.blob.container}: ${(e as Error).message}`, {
        cause: e,
        context: this.context,
      })
    }
  }

  /**
   * startPosition: latest and no checkpoint yet: checkpoints the partition's current end before
   * its receiver opens (the SDK opens it once processInitialize resolved), so a restart before
   * the first event's checkpoint starts there, not at the end again (which skipped what was
   * enqueued while the gateway was down; issue 12). An empty partition gets no checkpoint: it
   * has nothing to skip. A failure is logged; the start position stays "latest" then.
   */
  private async checkpointLatestStart(pc: PartitionContext, session: PartitionSession): Promise<void> {
    const client = this.client
    const store = this.store
    if (!client || !store) return
    try {
      const cps = await store.listCheckpoints(pc.fullyQualifiedNamespace, pc.eventHubName, pc.consumerGroup)
      if (cps.some((c) => c.partitionId === pc.partitionId)) return
      const props = await client.getPartitionProperties(pc.partitionId)
      if (props.isEmpty || session.checkpointed !== undefined) return
      await session.writeStart({ sequenceNumber: props.lastEnqueuedSequenceNumber, offset: props.lastEnqueuedOffset } as ReceivedEventData)
      this.ctx?.log.info(
        { partitionId: pc.partitionId, sequenceNumber: props.lastEnqueuedSequenceNumber },
        'start position checkpointed (startPosition: latest)',
      )
    } catch (e) {
      this.ctx?.log.warn(
        { partitionId: pc.partitionId, err: eventHubsError(e, 'checkpointing the start position', this.context).toJSON() },
        'start position not checkpointed; a restart before the first checkpoint starts at the end again',
      )
    }
  }

  private onInitialize(pc: PartitionContext): PartitionSession | undefined {
    const ctx = this.ctx as ConnectorContext
    const store = this.store
    const generation = store instanceof SluiceCheckpointStore ? store.generationOf(pc) : undefined
    const write = async (e: ReceivedEventData): Promise<void> => {
      const cp = {
        fullyQualifiedNamespace: pc.fullyQualifiedNamespace,
        eventHubName: pc.eventHubName,
        consumerGroup: pc.consumerGroup,
        partitionId: pc.partitionId,
        sequenceNumber: e.sequenceNumber,
        offset: e.offset,
      }
      if (store instanceof SluiceCheckpointStore) return store.checkpoint(cp, generation)
      try {
        // A blob checkpoint cannot be made conditional on the ownership blob: check it just before.
        const owner = (await store?.listOwnership(cp.fullyQualifiedNamespace, cp.eventHubName, cp.consumerGroup))?.find((o) => o.partitionId === cp.partitionId)
        if (owner?.ownerId !== this.ownerId) {
          throw new SluiceError('SLUICE_ERR_CONNECTOR_EVENTHUBS_OWNERSHIP_LOST', `partition ${cp.partitionId} is owned by ${owner?.ownerId || 'nobody'} now`, {
            context: { partitionId: cp.partitionId },
          })
        }
        await pc.updateCheckpoint(e)
      } catch (err) {
        if (err instanceof SluiceError) throw err
        throw new SluiceError('SLUICE_ERR_CONNECTOR_EVENTHUBS_CHECKPOINT', `checkpoint of partition ${cp.partitionId} failed: ${(err as Error).message}`, {
          cause: err,
          context: this.context,
        })
      }
    }
    const session = new PartitionSession(pc.partitionId, write, ctx.log, this.spec.trigger.checkpointIntervalMs)
    this.sessions.set(pc, session)
    // Where the lag counts from until this session writes a checkpoint of its own.
    store?.listCheckpoints(pc.fullyQualifiedNamespace, pc.eventHubName, pc.consumerGroup).then(
      (cps) => {
        const cp = cps.find((c) => c.partitionId === pc.partitionId)
        if (cp && session.checkpointed === undefined) session.checkpointed = cp.sequenceNumber
      },
      () => undefined,
    )
    this.refreshLag([session])
    ctx.log.info({ partitionId: pc.partitionId, ownerId: this.ownerId, ...(generation !== undefined ? { generation } : {}) }, 'partition claimed')
    return session
  }

  private async onEvents(events: ReceivedEventData[], pc: PartitionContext): Promise<void> {
    const ctx = this.ctx
    const session = this.sessions.get(pc)
    if (!ctx || !session?.accepting || this.stopping) return
    // A read came through (events, or none within maxWaitTimeInSeconds): the source works.
    this.resubscribes = 0
    if (!this.healthy) this.setHealth(true)
    const last = events[events.length - 1]
    if (!last) return
    // Back-pressure: while the function's backlog is full this pump reads nothing more, so the
    // receiver grants the service no new credit beyond its prefetch.
    if (ctx.flow.paused) await Promise.race([ctx.flow.wait(), session.stopped])
    if (!session.accepting || this.stopping) return
    const origin = { connection: this.connection, eventHub: pc.eventHubName, consumerGroup: pc.consumerGroup, partitionId: pc.partitionId }
    const source = sourceOf(origin)
    const batch = new Array<TriggerEvent>(events.length)
    for (let i = 0; i < events.length; i++) batch[i] = toTriggerEvent(events[i] as ReceivedEventData, origin, source)
    session.track(ctx.deliver(batch), last)
  }

  private onError(err: Error, pc: PartitionContext): void {
    const ctx = this.ctx
    if (!ctx || this.stopping) return
    const e = eventHubsError(err, pc.partitionId ? `partition ${pc.partitionId}` : 'load balancing', this.context)
    if (e.code === 'SLUICE_ERR_CONNECTOR_EVENTHUBS_OWNERSHIP_LOST') {
      // processClose(OwnershipLost) follows; stop checkpointing right away.
      const session = this.sessions.get(pc)
      session?.lose(e.message)
      return
    }
    ctx.log.warn({ partitionId: pc.partitionId || undefined, err: e.toJSON() }, 'event hubs error')
    this.setHealth(false, e.message)
  }

  private async onClose(reason: CloseReason, pc: PartitionContext): Promise<void> {
    const session = this.sessions.get(pc)
    if (!session) return
    this.sessions.delete(pc)
    if (reason === CloseReason.OwnershipLost || this.force) {
      session.lose(reason === CloseReason.OwnershipLost ? 'another consumer took the partition' : 'forced stop')
      return
    }
    let timer: NodeJS.Timeout | undefined
    await Promise.race([session.drain(), new Promise<void>((r) => (timer = setTimeout(r, DRAIN_MS)))]).finally(() => clearTimeout(timer))
    this.ctx?.log.info({ partitionId: pc.partitionId, checkpointed: session.checkpointed }, 'partition closed')
    if (!this.stopping && !this.resubscribing) this.resubscribe(`partition ${pc.partitionId} closed after errors`)
  }

  private setHealth(up: boolean, detail?: string): void {
    this.healthy = up
    this.ctx?.setHealth(up, up ? undefined : detail)
  }

  /**
   * Graceful: every partition stops reading, waits for the outcomes of what it handed on and
   * writes its last checkpoint, then gives its ownership up (other instances take over at once).
   * force: nothing more is checkpointed; ownership is given up all the same.
   */
  stop(opts: { force?: boolean } = {}): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping = true
      this.force = opts.force === true
      this.halt.abort()
      clearInterval(this.lagTimer)
      if (this.force) for (const s of this.sessions.values()) s.lose('forced stop')
      try {
        await this.resubscribing
        await this.subscription?.close()
      } catch (e) {
        this.ctx?.log.warn({ err: eventHubsError(e, 'closing the subscription', this.context).toJSON() }, 'event hubs subscription did not close cleanly')
      }
      try {
        await this.client?.close()
      } catch (e) {
        this.ctx?.log.warn({ err: eventHubsError(e, 'closing the client', this.context).toJSON() }, 'event hubs client did not close cleanly')
      }
    })()
    return this.stopPromise
  }
}
