import { PartitionAssigners, type Admin, type Consumer, type IMemberAssignment, type Kafka, type PartitionAssigner } from 'kafkajs'
import { backoffDelay, SluiceError, type Connector, type ConnectorContext, type LagReporter, type TriggerSpec } from '../../src/sdk/index.js'
import { createKafka, kafkaError, type KafkaErrorContext } from './client.js'
import { Committer } from './commits.js'
import { ClusterLiveness, RESTART_BACKOFF, startWithRetry } from './liveness.js'
import { partitionInfo } from './message.js'
import { PartitionOffsets } from './offsets.js'
import { defaultGroupId, triggerTopics, type KafkaConnectionOptions, type KafkaTriggerOptions } from './options.js'
import { PartitionBatches, PartitionPauses, partKey, within, type Owned } from './partition-batch.js'
import { commitStartPositions, missingTopics } from './start-position.js'

/** Longest graceful wait for in-flight outcomes on stop (the gateway bounds its stop too). */
const STOP_DRAIN_MS = 30000
/** kafkajs workers: the batches of one fetch (one per partition) are handled this many at a time. */
const PARTITION_CONCURRENCY = 128
/** Pause between attempts to commit a new partition's start position. */
const START_RETRY_MS = 500

/**
 * Kafka trigger: a kafkajs consumer group with eachBatch, auto-commit and auto-resolve off.
 * The messages of a partition's batch go to the router in chunks (one outcome per event, per-key
 * order kept by the router); per partition the offset committed is the lowest one not yet done or
 * dead-lettered
 * (offsets.ts), at most every commitIntervalMs. eachBatch returns once every event of its batch
 * has an outcome, heartbeating while it waits, so kafkajs fetches again only then: work in flight
 * does not outlive the batch it came in. On a rebalance (eager: every partition goes back) the
 * batches stop handing out events, finish what runs, commit, and only then let kafkajs rejoin,
 * so a partition's next owner starts after its last owner stopped. From the moment this member
 * sends JoinGroup until kafkajs reports the new assignment nothing is committed, and partitions
 * given to others are forgotten. See connectors/kafka/README.md.
 *
 * This class owns the consumer's lifecycle (start, restarts, stop), the assignment and the start
 * positions; batches and pausing live in partition-batch.ts, start retry and health in liveness.ts.
 */
export class KafkaConnector implements Connector, LagReporter {
  readonly groupId: string
  private readonly connection: string
  private readonly topics: string[]
  private readonly byKey: boolean
  private ctx: ConnectorContext | undefined
  private kafka: Kafka | undefined
  private consumer: Consumer | undefined
  private parts = new Map<string, Owned>()
  /** True while the assignment is unknown (before the first join, during a rejoin): no commits. */
  private joining = true
  private readonly commits: Committer
  private readonly batches: PartitionBatches
  private readonly pauses = new PartitionPauses(() => this.consumer)
  private starting: { resolve(): void; reject(e: unknown): void } | undefined
  private stopping = false
  private stopPromise: Promise<void> | undefined
  private restartTimer: NodeJS.Timeout | undefined
  private restarts = 0
  /** For the start positions of newly assigned partitions (created on first use). */
  private admin: Admin | undefined
  private liveness: ClusterLiveness | undefined
  /** Some broker answered since start() began (tells "unreachable" from "did not join"). */
  private reached = false

  constructor(private readonly spec: TriggerSpec<KafkaTriggerOptions, KafkaConnectionOptions>) {
    this.connection = spec.connectionName ?? spec.trigger.connection
    this.groupId = spec.trigger.groupId ?? defaultGroupId(spec.functionName)
    this.topics = triggerTopics(spec.trigger)
    this.byKey = spec.trigger.orderBy === 'key'
    this.commits = new Committer({
      intervalMs: spec.trigger.commitIntervalMs,
      groupId: this.groupId,
      context: this.context,
      log: () => this.ctx?.log,
      owned: () => this.parts.values(),
      mayCommit: () => !this.joining,
      stopping: () => this.stopping,
    })
    this.batches = new PartitionBatches({
      trigger: spec.trigger,
      maxBacklog: spec.maxBacklog,
      groupId: this.groupId,
      context: this.context,
      commits: this.commits,
      ctx: () => this.ctx,
      owned: (key) => this.parts.get(key),
      isCurrent: (consumer) => consumer === this.consumer,
      joining: () => this.joining,
      stopping: () => this.stopping,
    })
  }

  private get context(): KafkaErrorContext {
    return { function: this.spec.functionName, connection: this.connection, group: this.groupId }
  }

  async start(ctx: ConnectorContext): Promise<void> {
    this.ctx = ctx
    const conn = this.spec.connection
    if (!conn)
      throw new SluiceError('SLUICE_ERR_CONNECTOR_START', `kafka connection ${this.connection} is not configured`, { retriable: false, context: this.context })
    if (this.topics.length === 0) throw new SluiceError('SLUICE_ERR_CONFIG_REQUIRED', 'the kafka trigger needs topic: or topics:', { context: this.context })
    this.kafka = createKafka(conn, ctx.log.child({ group: this.groupId }))
    this.liveness = new ClusterLiveness({
      kafka: this.kafka,
      trigger: this.spec.trigger,
      groupId: this.groupId,
      context: this.context,
      ctx: () => this.ctx,
      onStuck: () => this.onStuck(),
    })
    const started = new Promise<void>((resolve, reject) => (this.starting = { resolve, reject }))
    try {
      await startWithRetry({
        brokers: conn.brokers,
        startTimeoutMs: conn.startTimeoutMs,
        groupId: this.groupId,
        context: this.context,
        log: ctx.log,
        started,
        fail: (err) => this.starting?.reject(err),
        run: () => this.runConsumer(),
        discard: async () => {
          await this.consumer?.disconnect().catch(() => undefined)
        },
        reached: () => this.reached,
        stopping: () => this.stopping,
      })
    } catch (e) {
      const err = kafkaError(e, 'SLUICE_ERR_CONNECTOR_START', this.context)
      await this.stop({ force: true })
      throw err
    } finally {
      this.starting = undefined
    }
  }

  /** The cluster answers but the consumer stays silent (see liveness.ts): replace it. */
  private onStuck(): void {
    if (this.stopping) return
    this.ctx?.log.warn({ group: this.groupId }, 'kafka consumer silent while the cluster answers; replacing it')
    this.joining = true
    this.parts = new Map()
    this.pauses.clear()
    this.commits.commitFn = undefined
    this.replaceConsumer()
  }

  /** Creates, subscribes and runs a consumer; resolves once kafkajs's first join attempt ended. */
  private async runConsumer(): Promise<void> {
    const t = this.spec.trigger
    // The trigger never creates topics: a missing one is a clear error, not a wait.
    const admin = await this.adminClient()
    this.reached = true
    const missing = await missingTopics(admin, this.topics)
    if (missing.length > 0) {
      throw new SluiceError(
        'SLUICE_ERR_CONNECTOR_KAFKA_TOPIC_NOT_FOUND',
        `topic ${missing.join(', ')} does not exist on the cluster (or this client may not describe it); create it first: the trigger does not create topics`,
        { retriable: false, context: { ...this.context, topics: missing } },
      )
    }
    const consumer = (this.kafka as Kafka).consumer({
      groupId: this.groupId,
      sessionTimeout: t.sessionTimeoutMs,
      rebalanceTimeout: t.rebalanceTimeoutMs,
      heartbeatInterval: t.heartbeatIntervalMs,
      maxWaitTimeInMs: t.maxWaitMs,
      maxBytesPerPartition: t.maxBytesPerPartition,
      partitionAssigners: [this.assigner],
      // Records of aborted transactions never reach a function; open transactions hold the fetch.
      readUncommitted: false,
      allowAutoTopicCreation: false,
    })
    this.consumer = consumer
    const ev = consumer.events
    consumer.on(ev.GROUP_JOIN, (e) => this.onAssigned(consumer, e.payload.memberAssignment))
    for (const contact of [ev.FETCH, ev.HEARTBEAT, ev.COMMIT_OFFSETS]) {
      consumer.on(contact, () => {
        if (consumer === this.consumer && !this.joining) this.liveness?.contact()
      })
    }
    consumer.on(ev.CRASH, (e) => this.onCrash(consumer, e.payload.error, e.payload.restart))
    // kafkajs saw the rebalance itself (between batches, nothing in flight): commit what finished
    // since the last commit before it rejoins. The request takes the current generation now,
    // synchronously, before JoinGroup is even sent, and goes out even while an earlier commit is
    // still in flight (waiting for it would find the join begun and send nothing).
    consumer.on(ev.REBALANCING, () => {
      if (consumer === this.consumer && !this.joining) void this.commits.commitNow()
    })
    // A fetch that held only control records (a transaction's commit or abort marker) or aborted
    // records never reaches eachBatch: move the partition's position past it here.
    consumer.on(ev.END_BATCH_PROCESS, (e) => {
      if (consumer === this.consumer && e.payload.batchSize === 0)
        this.onSkipped(e.payload.topic, e.payload.partition, Number(e.payload.lastOffset) + 1, Number(e.payload.highWatermark))
    })
    await consumer.connect()
    await consumer.subscribe({ topics: this.topics, fromBeginning: t.fromBeginning })
    if (this.stopping || consumer !== this.consumer) {
      await consumer.disconnect()
      return
    }
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: PARTITION_CONCURRENCY,
      eachBatch: (p) => this.batches.handle(consumer, p),
    })
  }

  /**
   * kafkajs's round-robin assigner (so every gateway version agrees on the protocol), with a
   * hook: kafkajs asks each assigner for its protocol at the start of every JoinGroup of this
   * member, before the coordinator can hand out the next generation. From then until GROUP_JOIN
   * the assignment is unknown, and a commit could carry the new generation for a partition that
   * moved elsewhere, so none is sent.
   */
  private readonly assigner: PartitionAssigner = (config) => {
    const rr = PartitionAssigners.roundRobin(config)
    return {
      name: rr.name,
      version: rr.version,
      assign: (group) => rr.assign(group),
      protocol: (subscription) => {
        this.joining = true
        return rr.protocol(subscription)
      },
    }
  }

  private onAssigned(consumer: Consumer, assignment: IMemberAssignment): void {
    if (consumer !== this.consumer || this.stopping) return
    const next = new Map<string, Owned>()
    for (const [topic, partitions] of Object.entries(assignment)) {
      for (const partition of partitions) {
        const key = partKey(topic, partition)
        // A partition kept across the rebalance keeps its bookkeeping: kafkajs refetches it from
        // the last commit, and what was already handed out (up to `next`) is skipped.
        next.set(
          key,
          this.parts.get(key) ?? {
            topic,
            partition,
            offsets: new PartitionOffsets(),
            info: partitionInfo(topic, partition, this.connection, this.byKey),
            awaitingStart: true,
          },
        )
      }
    }
    const revoked = [...this.parts.keys()].filter((k) => !next.has(k))
    for (const key of revoked) this.pauses.set(this.parts.get(key) as Owned, false)
    this.parts = next
    this.joining = false
    this.batches.revoking = false
    this.restarts = 0
    this.ctx?.log.info({ group: this.groupId, assigned: [...next.keys()], revoked }, 'kafka partitions assigned')
    this.ctx?.setHealth(true)
    this.liveness?.contact()
    this.starting?.resolve()
    void this.commits.commit()
    const fresh = [...next.values()].filter((o) => o.awaitingStart)
    if (fresh.length > 0) {
      // commitStarts never rejects; the catch keeps a bug from waiting batches and from the process.
      const started = this.commitStarts(consumer, fresh).catch((e: unknown) =>
        this.ctx?.log.error(
          { group: this.groupId, err: kafkaError(e, 'SLUICE_ERR_CONNECTOR_KAFKA_COMMIT', this.context).toJSON() },
          'kafka start positions failed',
        ),
      )
      for (const o of fresh) o.started = started
    }
  }

  /**
   * Settles the start positions of newly assigned partitions: for those the group never
   * committed, the start position (first offset with fromBeginning, else the end) is committed at
   * once, so a restart or the next owner starts there rather than at the end of the partition,
   * which would skip what was produced meanwhile. kafkajs takes the committed value as its
   * position. Until this ran, a batch of such a partition waits in PartitionBatches.handle (and is
   * read again from the start when kafkajs read past it). The partitions are not paused meanwhile:
   * with every partition paused, kafkajs sleeps maxWaitMs before it fetches again, which made every
   * (re)assignment wait that long (1 s by default) before the first event. Never rejects.
   */
  private async commitStarts(consumer: Consumer, fresh: Owned[]): Promise<void> {
    const isCurrent = (o: Owned) => consumer === this.consumer && !this.stopping && this.parts.get(partKey(o.topic, o.partition)) === o
    for (;;) {
      const pending = fresh.filter((o) => isCurrent(o) && o.awaitingStart)
      if (pending.length === 0) return
      try {
        const starts = await commitStartPositions(await this.adminClient(), consumer, this.groupId, this.spec.trigger.fromBeginning, pending)
        if (Object.keys(starts).length > 0) this.ctx?.log.info({ group: this.groupId, starts }, 'kafka start positions committed')
        for (const o of pending) {
          o.awaitingStart = false
          // kafkajs stepped over records without events before the start was known (onSkipped):
          // its position may be past the committed start, so it reads again from there.
          const at = starts[partKey(o.topic, o.partition)]
          if (o.skippedEarly && at !== undefined && consumer === this.consumer) consumer.seek({ topic: o.topic, partition: o.partition, offset: String(at) })
          o.skippedEarly = false
        }
        return
      } catch (e) {
        if (!pending.some(isCurrent)) return
        this.ctx?.log.warn(
          { group: this.groupId, err: kafkaError(e, 'SLUICE_ERR_CONNECTOR_KAFKA_COMMIT', this.context).toJSON(), retryInMs: START_RETRY_MS },
          'kafka start positions not committed yet; retrying',
        )
        await new Promise((r) => setTimeout(r, START_RETRY_MS))
      }
    }
  }

  /** The connector's admin client, connected (kafkajs reconnects it on the next request). */
  private async adminClient(): Promise<Admin> {
    this.admin ??= (this.kafka as Kafka).admin()
    await this.admin.connect()
    return this.admin
  }

  /** kafkajs stepped over records that carry no event (see END_BATCH_PROCESS above). */
  private onSkipped(topic: string, partition: number, to: number, highWatermark: number): void {
    const owned = this.parts.get(partKey(topic, partition))
    if (!owned || this.joining || this.batches.revoking || !Number.isFinite(to)) return
    if (owned.awaitingStart) {
      owned.skippedEarly = true
      return
    }
    if (Number.isFinite(highWatermark)) owned.offsets.highWatermark = highWatermark
    owned.offsets.advance(to)
    if (owned.offsets.due) this.commits.schedule()
  }

  private onCrash(consumer: Consumer, error: Error, restart: boolean): void {
    if (consumer !== this.consumer) return
    // kafkajs has left the group (or lost it): nothing is owned until the next join.
    this.joining = true
    this.parts = new Map()
    this.pauses.clear()
    this.commits.commitFn = undefined
    const err = kafkaError(error, 'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION', this.context)
    this.ctx?.setHealth(false, err.message)
    if (this.stopping) return
    if (!restart && this.starting) {
      this.starting.reject(err)
      return
    }
    const delayMs = restart ? undefined : backoffDelay(RESTART_BACKOFF, ++this.restarts)
    this.ctx?.log.warn({ group: this.groupId, err: err.toJSON(), restartInMs: delayMs ?? 'kafkajs' }, 'kafka consumer crashed; restarting')
    if (delayMs !== undefined) this.restartTimer = setTimeout(() => this.replaceConsumer(), delayMs)
  }

  /** A crash kafkajs does not restart itself: a new consumer, with backoff while that fails. */
  private replaceConsumer(): void {
    if (this.stopping) return
    void this.consumer?.disconnect().catch(() => undefined)
    this.consumer = undefined
    this.runConsumer().catch((e: unknown) => {
      if (this.stopping) return
      const delayMs = backoffDelay(RESTART_BACKOFF, ++this.restarts)
      this.ctx?.log.warn(
        { group: this.groupId, err: kafkaError(e, 'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION', this.context).toJSON(), restartInMs: delayMs },
        'kafka consumer did not start; retrying',
      )
      this.restartTimer = setTimeout(() => this.replaceConsumer(), delayMs)
    })
  }

  /**
   * Pauses every owned partition at kafkajs once the trigger stops (its batches hand out nothing
   * more, and kafkajs would otherwise fetch the same records again and again while in-flight events
   * finish). The router's back-pressure does not pause at kafkajs: a fetch that finds every
   * partition of its broker paused sleeps maxWaitMs, and kept sleeping after the backlog drained
   * (bench/README.md, session 9). The batches wait in eachBatch instead (partition-batch.ts), which
   * holds kafkajs's next fetch from that broker just as well.
   */
  private applyPause(): void {
    this.pauses.apply(this.parts.values(), this.stopping)
  }

  // ---- lag, stop ----

  /** Messages behind the partition ends per owned partition (`<topic>/<partition>`), as of the last fetch. */
  lag(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [key, o] of this.parts) out[key] = o.offsets.lag()
    return out
  }

  stop(opts: { force?: boolean } = {}): Promise<void> {
    this.stopPromise ??= this.shutdown(opts.force === true)
    return this.stopPromise
  }

  private async shutdown(force: boolean): Promise<void> {
    this.stopping = true
    this.batches.stop()
    clearTimeout(this.restartTimer)
    // Nothing new is fetched or handed out; kafkajs keeps heartbeating while in-flight events finish.
    this.applyPause()
    if (!force) {
      await within(this.batches.open.done(), STOP_DRAIN_MS)
      await this.commits.flush()
    }
    this.commits.clear()
    this.liveness?.stop()
    await this.admin?.disconnect().catch(() => undefined)
    await this.liveness?.disconnect()
    try {
      await this.consumer?.disconnect()
    } catch (e) {
      this.ctx?.log.warn(
        { group: this.groupId, err: kafkaError(e, 'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION', this.context).toJSON() },
        'kafka consumer did not disconnect cleanly',
      )
    }
  }
}
