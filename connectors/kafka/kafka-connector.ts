import { PartitionAssigners, type Admin, type Consumer, type EachBatchPayload, type IMemberAssignment, type Kafka, type PartitionAssigner } from 'kafkajs'
import { backoffDelay, SluiceError, type Connector, type ConnectorContext, type LagReporter, type Outcome, type TriggerSpec } from '../../src/sdk/index.js'
import { createKafka, isRebalanceError, kafkaError, type KafkaErrorContext } from './client.js'
import { Committer } from './commits.js'
import { Liveness } from './liveness.js'
import { partitionInfo, toEvent, type PartitionInfo } from './message.js'
import { Pending, PartitionOffsets } from './offsets.js'
import { defaultGroupId, triggerTopics, type KafkaConnectionOptions, type KafkaTriggerOptions } from './options.js'
import { commitStartPositions, missingTopics } from './start-position.js'

/** Longest graceful wait for in-flight outcomes on stop (the gateway bounds its stop too). */
const STOP_DRAIN_MS = 30000
/** Backoff of the connector's own consumer restarts (kafkajs restarts retriable crashes itself). */
const RESTART_BACKOFF = { backoff: 'exponential', initialDelayMs: 500, maxDelayMs: 30000 } as const
/** kafkajs workers: the batches of one fetch (one per partition) are handled this many at a time. */
const PARTITION_CONCURRENCY = 128
/** Share of rebalanceTimeoutMs spent finishing in-flight events before rejoining. */
const REBALANCE_DRAIN_SHARE = 0.8
/** Pause between attempts to commit a new partition's start position. */
const START_RETRY_MS = 500

/** A partition this consumer owns in the current generation. */
interface Owned {
  topic: string
  partition: number
  offsets: PartitionOffsets
  info: PartitionInfo
  /** Paused until its start position is committed (a partition the group never committed). */
  awaitingStart: boolean
}

const partKey = (topic: string, partition: number) => `${topic}/${partition}`

/** Resolves true when `p` settles within `ms`, false when the time runs out first. */
function within(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms)
    void p.then(() => {
      clearTimeout(t)
      resolve(true)
    })
  })
}

/**
 * Kafka trigger: a kafkajs consumer group with eachBatch, auto-commit and auto-resolve off.
 * Each message is delivered to the router on its own, so its outcome is known as soon as it is
 * durable; per partition the offset committed is the lowest one not yet done or dead-lettered
 * (offsets.ts), at most every commitIntervalMs. eachBatch returns once every event of its batch
 * has an outcome, heartbeating while it waits, so kafkajs fetches again only then: work in flight
 * does not outlive the batch it came in. On a rebalance (eager: every partition goes back) the
 * batches stop handing out events, finish what runs, commit, and only then let kafkajs rejoin,
 * so a partition's next owner starts after its last owner stopped. From the moment this member
 * sends JoinGroup until kafkajs reports the new assignment nothing is committed, and partitions
 * given to others are forgotten. See connectors/kafka/README.md.
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
  /** True from a detected rebalance until the new assignment: no new events are handed out. */
  private revoking = false
  private readonly commits: Committer
  /** Partitions this connector paused at kafkajs. */
  private readonly paused = new Set<string>()
  /** Every event handed to the router whose outcome has not resolved. */
  private readonly open = new Pending()
  private starting: { resolve(): void; reject(e: unknown): void } | undefined
  private stopping = false
  private stopPromise: Promise<void> | undefined
  private restartTimer: NodeJS.Timeout | undefined
  private restarts = 0
  private offFlow: (() => void) | undefined
  /** For the start positions of newly assigned partitions (created on first use). */
  private admin: Admin | undefined
  /** One request, no retries: tells a quiet consumer from a lost cluster (see liveness.ts). */
  private probeAdmin: Admin | undefined
  private liveness: Liveness | undefined
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
    this.offFlow = ctx.flow.onChange(() => this.applyPause())
    const kafka = this.kafka
    this.liveness = new Liveness({
      staleMs: Math.max(5000, 3 * this.spec.trigger.heartbeatIntervalMs, 2 * this.spec.trigger.maxWaitMs),
      probe: async () => {
        this.probeAdmin ??= kafka.admin({ retry: { retries: 0 } })
        await this.probeAdmin.connect()
        await this.probeAdmin.describeCluster()
      },
      onDown: (e) => {
        const err = kafkaError(e, 'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION', this.context)
        this.ctx?.setHealth(false, err.message)
        this.ctx?.log.warn({ group: this.groupId, err: err.toJSON() }, 'kafka cluster unreachable; kafkajs keeps retrying')
      },
      stuckMs: this.spec.trigger.rebalanceTimeoutMs + this.spec.trigger.sessionTimeoutMs + 10_000,
      onStuck: () => {
        if (this.stopping) return
        this.ctx?.log.warn({ group: this.groupId }, 'kafka consumer silent while the cluster answers; replacing it')
        this.joining = true
        this.parts = new Map()
        this.paused.clear()
        this.commits.commitFn = undefined
        this.replaceConsumer()
      },
      onUp: () => {
        this.ctx?.setHealth(true)
        this.ctx?.log.info({ group: this.groupId }, 'kafka cluster reachable again')
      },
    })
    const started = new Promise<void>((resolve, reject) => (this.starting = { resolve, reject }))
    const deadline = Date.now() + conn.startTimeoutMs
    let lastError: unknown
    const timer = setTimeout(() => {
      const err = this.reached
        ? new SluiceError('SLUICE_ERR_CONNECTOR_START', `did not join consumer group ${this.groupId} within ${conn.startTimeoutMs} ms`, {
            context: this.context,
          })
        : new SluiceError(
            'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION',
            `no broker of ${conn.brokers.join(', ')} answered within startTimeoutMs (${conn.startTimeoutMs} ms)${lastError ? `: ${kafkaError(lastError, 'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION', this.context).message}` : ''}`,
            { cause: lastError, context: this.context },
          )
      this.starting?.reject(err)
    }, conn.startTimeoutMs)
    // kafkajs gives up connecting after its own retries: try again until startTimeoutMs, unless
    // the answer will not change (credentials, a missing topic).
    const attempt = async (): Promise<void> => {
      for (let n = 1; ; n++) {
        try {
          return await this.runConsumer()
        } catch (e) {
          lastError = e
          const mapped = kafkaError(e, 'SLUICE_ERR_CONNECTOR_START', this.context)
          if (mapped.code !== 'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION' || this.stopping) throw e
          const delayMs = Math.min(backoffDelay(RESTART_BACKOFF, n), Math.max(0, deadline - Date.now()))
          ctx.log.warn({ group: this.groupId, err: mapped.toJSON(), retryInMs: delayMs }, 'kafka brokers unreachable at start; trying again')
          await new Promise((r) => setTimeout(r, delayMs))
          if (Date.now() >= deadline || this.stopping) throw e
          await this.consumer?.disconnect().catch(() => undefined)
        }
      }
    }
    try {
      await Promise.race([started, attempt().then(() => started)])
    } catch (e) {
      const err = kafkaError(e, 'SLUICE_ERR_CONNECTOR_START', this.context)
      await this.stop({ force: true })
      throw err
    } finally {
      clearTimeout(timer)
      this.starting = undefined
    }
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
      eachBatch: (p) => this.eachBatch(consumer, p),
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
    for (const key of revoked) this.setPaused(this.parts.get(key) as Owned, false)
    this.parts = next
    this.joining = false
    this.revoking = false
    this.restarts = 0
    this.ctx?.log.info({ group: this.groupId, assigned: [...next.keys()], revoked }, 'kafka partitions assigned')
    this.ctx?.setHealth(true)
    this.liveness?.contact()
    this.applyPause()
    this.starting?.resolve()
    void this.commits.commit()
    const fresh = [...next.values()].filter((o) => o.awaitingStart)
    if (fresh.length > 0) void this.commitStarts(consumer, fresh)
  }

  /**
   * Newly assigned partitions stay paused until this ran. For those the group never committed,
   * the start position (first offset with fromBeginning, else the end) is committed at once, so
   * a restart or the next owner starts there rather than at the end of the partition, which
   * would skip what was produced meanwhile. kafkajs takes the committed value as its position.
   */
  private async commitStarts(consumer: Consumer, fresh: Owned[]): Promise<void> {
    const isCurrent = (o: Owned) => consumer === this.consumer && !this.stopping && this.parts.get(partKey(o.topic, o.partition)) === o
    for (;;) {
      const pending = fresh.filter((o) => isCurrent(o) && o.awaitingStart)
      if (pending.length === 0) return
      try {
        const starts = await commitStartPositions(await this.adminClient(), consumer, this.groupId, this.spec.trigger.fromBeginning, pending)
        if (Object.keys(starts).length > 0) this.ctx?.log.info({ group: this.groupId, starts }, 'kafka start positions committed')
        for (const o of pending) o.awaitingStart = false
        this.applyPause()
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
    if (!owned || this.joining || this.revoking || owned.awaitingStart || !Number.isFinite(to)) return
    if (Number.isFinite(highWatermark)) owned.offsets.highWatermark = highWatermark
    owned.offsets.advance(to)
    if (owned.offsets.due) this.commits.schedule()
  }

  private onCrash(consumer: Consumer, error: Error, restart: boolean): void {
    if (consumer !== this.consumer) return
    // kafkajs has left the group (or lost it): nothing is owned until the next join.
    this.joining = true
    this.parts = new Map()
    this.paused.clear()
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

  // ---- batches ----

  private async eachBatch(consumer: Consumer, p: EachBatchPayload): Promise<void> {
    if (consumer !== this.consumer) return
    // This payload's commit goes straight to the consumer group it belongs to: one attempt with
    // the generation current at the call. consumer.commitOffsets would retry, and a retry after
    // a rebalance carries the new generation for a partition that may have moved.
    this.commits.commitFn = p.commitOffsetsIfNecessary
    const { batch } = p
    const key = partKey(batch.topic, batch.partition)
    const owned = this.parts.get(key)
    const ctx = this.ctx
    // Fetched before a rebalance took the partition away, or while one runs: not ours to start.
    if (!ctx || !owned || this.joining || this.revoking || this.stopping) return
    const po = owned.offsets
    po.highWatermark = Number(batch.highWatermark)
    const work = new Pending()
    const window = this.spec.trigger.maxInFlightPerPartition
    try {
      let all = true
      for (const m of batch.messages) {
        // Back-pressure: the function's backlog is full, or this partition has its share in flight.
        while (ctx.flow.paused && !this.stopping) await this.heartbeatWhile(p, ctx.flow.wait())
        if (work.count >= window) await this.heartbeatWhile(p, work.below(window >> 1))
        if (this.stopping || this.revoking || this.parts.get(key) !== owned) {
          all = false
          break
        }
        const offset = Number(m.offset)
        if (offset < po.next) continue
        // Built before it is recorded: toEvent never throws (an unbuildable record comes back
        // rejected and is dead-lettered), so every recorded offset gets an outcome.
        const event = toEvent(m, owned.info)
        po.delivered(offset)
        this.track(key, owned, offset, ctx.deliver([event]), work)
      }
      if (all) {
        po.advance(Number(batch.lastOffset()) + 1)
        p.resolveOffset(batch.lastOffset())
      }
      this.commits.schedule()
      await this.heartbeatWhile(p, work.done())
      // The batch is through: commit now rather than at the next interval.
      void this.commits.commit()
    } catch (e) {
      if (!isRebalanceError(e, 'REBALANCE_IN_PROGRESS')) throw e
      await this.finishBeforeRejoin(p)
      throw e
    }
  }

  /**
   * Waits for `until`, sending a heartbeat every heartbeatIntervalMs. Throws the coordinator's
   * rebalance answers; a heartbeat lost to connection trouble is retried at the next interval
   * (kafkajs reconnects on the next request), so the batch keeps waiting for its events.
   */
  private async heartbeatWhile(p: EachBatchPayload, until: Promise<void>): Promise<void> {
    while (!(await within(until, this.spec.trigger.heartbeatIntervalMs))) {
      try {
        await p.heartbeat()
      } catch (e) {
        if (isRebalanceError(e)) throw e
        this.ctx?.log.debug(
          { group: this.groupId, err: kafkaError(e, 'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION', this.context).toJSON() },
          'kafka heartbeat failed; trying again',
        )
      }
    }
  }

  /**
   * The group is rebalancing and every partition goes back (eager protocol). Hands out nothing
   * more, lets every in-flight event finish (heartbeats keep the session while the coordinator
   * waits up to rebalanceTimeoutMs), commits, and returns so kafkajs rejoins.
   */
  private async finishBeforeRejoin(p: EachBatchPayload): Promise<void> {
    if (!this.revoking)
      this.ctx?.log.info({ group: this.groupId, inFlight: this.open.count }, 'kafka group rebalancing: finishing in-flight events before rejoining')
    this.revoking = true
    const deadline = Date.now() + this.spec.trigger.rebalanceTimeoutMs * REBALANCE_DRAIN_SHARE
    for (;;) {
      const left = deadline - Date.now()
      if (left <= 0) {
        this.ctx?.log.warn(
          { group: this.groupId, inFlight: this.open.count },
          "kafka rebalance: events still running at the deadline; their partitions' next owners may run them again",
        )
        break
      }
      if (await within(this.open.done(), Math.min(left, this.spec.trigger.heartbeatIntervalMs))) break
      try {
        await p.heartbeat()
      } catch (e) {
        if (!isRebalanceError(e, 'REBALANCE_IN_PROGRESS')) break // dropped from the group: too late to finish
      }
    }
    await this.commits.flush()
  }

  /** Follows one event's outcome: done and dead advance the partition, aborted holds it. */
  private track(key: string, owned: Owned, offset: number, outcome: Promise<Outcome[]>, work: Pending): void {
    this.open.add()
    work.add()
    outcome
      .then(
        ([o]) => {
          if (!o || o.status === 'aborted' || this.parts.get(key) !== owned) return
          owned.offsets.finish(offset)
          this.commits.schedule()
        },
        (e: unknown) => {
          // deliver never rejects by contract; if it did, the offset stays unfinished (held).
          this.ctx?.log.error(
            { group: this.groupId, offset, partition: key, err: kafkaError(e, 'SLUICE_ERR_CONNECTOR_KAFKA_COMMIT', this.context).toJSON() },
            "kafka event has no outcome; its partition's commit stays before it",
          )
        },
      )
      .finally(() => {
        work.settle()
        this.open.settle()
      })
  }

  // ---- back-pressure ----

  /** Pauses every owned partition at kafkajs while the router is full or the trigger stops. */
  private applyPause(): void {
    const pause = this.stopping || (this.ctx?.flow.paused ?? false)
    for (const owned of this.parts.values()) this.setPaused(owned, pause || owned.awaitingStart)
  }

  private setPaused(owned: Owned, pause: boolean): void {
    const key = partKey(owned.topic, owned.partition)
    if (pause === this.paused.has(key) || !this.consumer) return
    const tp = [{ topic: owned.topic, partitions: [owned.partition] }]
    try {
      if (pause) this.consumer.pause(tp)
      else this.consumer.resume(tp)
    } catch {
      return // before run(): nothing is fetched yet anyway
    }
    if (pause) this.paused.add(key)
    else this.paused.delete(key)
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
    clearTimeout(this.restartTimer)
    this.offFlow?.()
    // Nothing new is fetched or handed out; kafkajs keeps heartbeating while in-flight events finish.
    this.applyPause()
    if (!force) {
      await within(this.open.done(), STOP_DRAIN_MS)
      await this.commits.flush()
    }
    this.commits.clear()
    this.liveness?.stop()
    await this.admin?.disconnect().catch(() => undefined)
    await this.probeAdmin?.disconnect().catch(() => undefined)
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
