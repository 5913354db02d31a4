/**
 * Per-partition batch handling of the Kafka trigger: kafkajs's eachBatch, the in-flight window,
 * back-pressure, the drain before a rejoin, and pausing partitions at kafkajs on stop.
 *
 * Contract of `PartitionBatches.handle` (eachBatch): the messages of an owned partition are
 * delivered to the router in chunks (one deliver call each; the router keeps per-key order and
 * answers one outcome per event; with orderBy: key a chunk is one key's run of consecutive
 * messages, as keys run in parallel); at most maxInFlightPerPartition of the batch are in flight (the
 * next chunk waits until half of them finished), none is handed out while the router's flow is
 * paused (the batch waits, heartbeating, until it resumes or the trigger stops), and a chunk never takes the function's backlog past maxBacklog. It returns once every
 * event of the batch has an outcome, heartbeating every
 * heartbeatIntervalMs meanwhile, so kafkajs fetches again only then. Outcomes done and dead
 * advance the partition's commit point (offsets.ts), aborted holds it. Batches of a replaced
 * consumer, of partitions not owned, or arriving while the assignment is unknown, a rebalance runs
 * or the trigger stops, hand out nothing. A batch of a partition whose start position is not
 * settled yet (`Owned.awaitingStart`) waits for it (heartbeating); one read from past the
 * committed start hands out nothing and seeks kafkajs back to the start. On REBALANCE_IN_PROGRESS it sets `revoking`, waits for
 * every open event (up to REBALANCE_DRAIN_SHARE of rebalanceTimeoutMs), flushes commits and
 * rethrows so kafkajs rejoins. `revoking` is cleared by the owner when the new assignment arrives.
 */
import type { Consumer, EachBatchPayload, KafkaMessage } from 'kafkajs'
import type { ConnectorContext, Outcome, TriggerEvent } from '../../src/sdk/index.js'
import { isRebalanceError, kafkaError, type KafkaErrorContext } from './client.js'
import type { Committer } from './commits.js'
import { toEvent, type PartitionInfo } from './message.js'
import { Pending, type PartitionOffsets } from './offsets.js'
import type { KafkaTriggerOptions } from './options.js'

/** Share of rebalanceTimeoutMs spent finishing in-flight events before rejoining. */
const REBALANCE_DRAIN_SHARE = 0.8

/** A partition this consumer owns in the current generation. */
export interface Owned {
  topic: string
  partition: number
  offsets: PartitionOffsets
  info: PartitionInfo
  /**
   * Its start position is not settled yet (a new assignment: committed when the group never
   * committed one, see kafka-connector.ts commitStarts). A batch fetched meanwhile waits for it.
   */
  awaitingStart: boolean
  /** Resolves once the start position of this assignment is settled, or its attempt gave up. */
  started?: Promise<void>
  /** kafkajs stepped over records without events while `awaitingStart` (its position moved). */
  skippedEarly?: boolean
}

/** The key of a partition in the owned map and in logs: `<topic>/<partition>`. */
export const partKey = (topic: string, partition: number) => `${topic}/${partition}`

/** True when two message keys are the same bytes (or both absent). */
function sameKey(a: Buffer | null, b: Buffer | null): boolean {
  return a === null || b === null ? a === b : a.equals(b)
}

/** Resolves true when `p` settles within `ms`, false when the time runs out first. */
export function within(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms)
    void p.then(() => {
      clearTimeout(t)
      resolve(true)
    })
  })
}

/** What the batch handler reads from the connector that owns it (read at each use: it changes). */
export interface BatchHost {
  trigger: Pick<KafkaTriggerOptions, 'heartbeatIntervalMs' | 'maxInFlightPerPartition' | 'rebalanceTimeoutMs'>
  /** The function's maxBacklog (TriggerSpec), when known: the events it takes before its flow pauses. */
  maxBacklog?: number
  groupId: string
  context: KafkaErrorContext
  commits: Committer
  ctx: () => ConnectorContext | undefined
  /** The partition owned now under `key` (partKey), if any. */
  owned: (key: string) => Owned | undefined
  /** True when `consumer` is the connector's current consumer. */
  isCurrent: (consumer: Consumer) => boolean
  /** True while the assignment is unknown (before the first join, during a rejoin). */
  joining: () => boolean
  stopping: () => boolean
}

export class PartitionBatches {
  /** True from a detected rebalance until the new assignment: no new events are handed out. */
  revoking = false
  /** Every event handed to the router whose outcome (its chunk's) has not resolved. */
  readonly open = new Pending()
  private stopped = false
  /** The waits `untilStop` ends early on `stop()`; each removes itself when it ends. */
  private readonly wakers = new Set<() => void>()

  constructor(private readonly h: BatchHost) {}

  /** The trigger stops: batches waiting for a start position or for the flow return without handing out. */
  stop(): void {
    this.stopped = true
    for (const wake of [...this.wakers]) wake()
  }

  /**
   * Resolves when `p` does, or at `stop()`. (Not Promise.race with one promise of the stop: every
   * race would leave a reaction on it until the trigger stops, one per back-pressure wait.)
   */
  private untilStop(p: Promise<void>): Promise<void> {
    if (this.stopped) return Promise.resolve()
    return new Promise((resolve) => {
      const wake = () => {
        this.wakers.delete(wake)
        resolve()
      }
      this.wakers.add(wake)
      void p.then(wake)
    })
  }

  /** kafkajs's eachBatch for `consumer` (see the header for the contract). */
  async handle(consumer: Consumer, p: EachBatchPayload): Promise<void> {
    const h = this.h
    if (!h.isCurrent(consumer)) return
    // This payload's commit goes straight to the consumer group it belongs to: one attempt with
    // the generation current at the call. consumer.commitOffsets would retry, and a retry after
    // a rebalance carries the new generation for a partition that may have moved.
    h.commits.commitFn = p.commitOffsetsIfNecessary
    const { batch } = p
    const key = partKey(batch.topic, batch.partition)
    const owned = h.owned(key)
    const ctx = h.ctx()
    // Fetched before a rebalance took the partition away, or while one runs: not ours to start.
    if (!ctx || !owned || h.joining() || this.revoking || h.stopping()) return
    const po = owned.offsets
    const work = new Pending()
    const window = h.trigger.maxInFlightPerPartition
    // Events go to the router in chunks of up to half the window: one runs while the next
    // waits, and the next is handed out as soon as one finishes (bench/README.md: a quarter
    // cost more CPU per event: smaller invocations).
    const chunkMax = Math.max(1, window >> 1)
    const maxBacklog = h.maxBacklog
    const byKey = owned.info.byKey
    po.highWatermark = Number(batch.highWatermark)
    const messages = batch.messages
    try {
      if (owned.awaitingStart) {
        // A new assignment, fetched before its start position was settled: kafkajs read from
        // its own default position. Pausing the partition instead would make kafkajs sleep
        // maxWaitMs when every partition is paused (bench/README.md, issue 11), so the batch
        // waits here (a few ms), then goes on from the start position.
        await this.heartbeatWhile(p, this.untilStop(owned.started ?? Promise.resolve()))
        if (owned.awaitingStart || h.stopping() || this.revoking || h.owned(key) !== owned || !h.isCurrent(consumer)) return
        const first = messages[0]
        // kafkajs read from after the committed start (fromBeginning: false, messages produced
        // between its lookup and ours): read again from the start; nothing of this batch is handed out.
        if (first !== undefined && po.next >= 0 && Number(first.offset) > po.next) {
          consumer.seek({ topic: batch.topic, partition: batch.partition, offset: String(po.next) })
          return
        }
      }
      let all = true
      let i = 0
      while (i < messages.length) {
        // Back-pressure: the function's backlog is full, or this partition has its share in flight.
        // The batch waits here, heartbeating; kafkajs fetches again from this broker only after
        // every batch of its last fetch returned, so waiting holds the fetch too. The partitions
        // are not paused at kafkajs: with every partition of a broker paused, its fetch sleeps
        // maxWaitMs, which outlasted the back-pressure (bench/README.md, session 9).
        while (ctx.flow.paused && !h.stopping()) await this.heartbeatWhile(p, this.untilStop(ctx.flow.wait()))
        if (work.count >= window) await this.heartbeatWhile(p, work.below(window >> 1))
        if (h.stopping() || this.revoking || h.owned(key) !== owned) {
          all = false
          break
        }
        // The chunk fits the window and what is left of the function's backlog (this trigger is
        // its only source: every event in it is open here), so it never runs past maxBacklog.
        let n = Math.min(chunkMax, window - work.count, messages.length - i)
        if (maxBacklog !== undefined) n = Math.min(n, Math.max(1, maxBacklog - this.open.count))
        const events: TriggerEvent[] = []
        let seq = -1
        let first: KafkaMessage | undefined
        for (; i < messages.length && events.length < n; i++) {
          const m = messages[i] as KafkaMessage
          const offset = Number(m.offset)
          if (offset < po.next) continue
          // A chunk's outcomes come back together. With orderBy: key the keys of a partition run
          // in parallel, so a chunk holds one key's run of messages: an event finished before a
          // slow one of another key is committed while that one runs.
          if (byKey && first !== undefined && !sameKey(first.key, m.key)) break
          first ??= m
          // Built before it is recorded: toEvent never throws (an unbuildable record comes back
          // rejected and is dead-lettered), so every recorded offset gets an outcome.
          events.push(toEvent(m, owned.info, offset))
          const s = po.delivered(offset)
          if (seq < 0) seq = s
        }
        if (events.length > 0) this.track(key, owned, seq, events.length, ctx.deliver(events), work)
      }
      if (all) {
        po.advance(Number(batch.lastOffset()) + 1)
        p.resolveOffset(batch.lastOffset())
      }
      h.commits.schedule()
      await this.heartbeatWhile(p, work.done())
      // The batch is through: commit now rather than at the next interval.
      void h.commits.commit()
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
    while (!(await within(until, this.h.trigger.heartbeatIntervalMs))) {
      try {
        await p.heartbeat()
      } catch (e) {
        if (isRebalanceError(e)) throw e
        this.h
          .ctx()
          ?.log.debug(
            { group: this.h.groupId, err: kafkaError(e, 'SLUICE_ERR_CONNECTOR_KAFKA_CONNECTION', this.h.context).toJSON() },
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
    const h = this.h
    if (!this.revoking)
      h.ctx()?.log.info({ group: h.groupId, inFlight: this.open.count }, 'kafka group rebalancing: finishing in-flight events before rejoining')
    this.revoking = true
    const deadline = Date.now() + h.trigger.rebalanceTimeoutMs * REBALANCE_DRAIN_SHARE
    for (;;) {
      const left = deadline - Date.now()
      if (left <= 0) {
        h.ctx()?.log.warn(
          { group: h.groupId, inFlight: this.open.count },
          "kafka rebalance: events still running at the deadline; their partitions' next owners may run them again",
        )
        break
      }
      if (await within(this.open.done(), Math.min(left, h.trigger.heartbeatIntervalMs))) break
      try {
        await p.heartbeat()
      } catch (e) {
        if (!isRebalanceError(e, 'REBALANCE_IN_PROGRESS')) break // dropped from the group: too late to finish
      }
    }
    await h.commits.flush()
  }

  /**
   * Follows the outcomes of a chunk of `n` events, recorded from sequence number `seq` on: done
   * and dead advance the partition, aborted holds it.
   */
  private track(key: string, owned: Owned, seq: number, n: number, outcome: Promise<Outcome[]>, work: Pending): void {
    const h = this.h
    this.open.add(n)
    work.add(n)
    outcome
      .then(
        (outcomes) => {
          if (h.owned(key) !== owned) return
          if (owned.offsets.finishAll(seq, outcomes.length > n ? outcomes.slice(0, n) : outcomes)) h.commits.schedule()
        },
        (e: unknown) => {
          // deliver never rejects by contract; if it did, the offsets stay unfinished (held).
          h.ctx()?.log.error(
            { group: h.groupId, events: n, partition: key, err: kafkaError(e, 'SLUICE_ERR_CONNECTOR_KAFKA_COMMIT', h.context).toJSON() },
            "kafka events have no outcome; their partition's commit stays before them",
          )
        },
      )
      .finally(() => {
        work.settle(n)
        this.open.settle(n)
      })
  }
}

/**
 * The partitions this connector paused at kafkajs (on stop only: back-pressure waits in
 * eachBatch instead). `set` pauses or resumes one partition of the
 * current consumer (a no-op when it already is so, or before run(): nothing is fetched yet then);
 * `apply` pauses or resumes every partition; `clear` forgets everything (the consumer is gone).
 */
export class PartitionPauses {
  private readonly paused = new Set<string>()

  constructor(private readonly consumer: () => Consumer | undefined) {}

  apply(parts: Iterable<Owned>, pause: boolean): void {
    for (const owned of parts) this.set(owned, pause)
  }

  set(owned: Owned, pause: boolean): void {
    const key = partKey(owned.topic, owned.partition)
    const consumer = this.consumer()
    if (pause === this.paused.has(key) || !consumer) return
    const tp = [{ topic: owned.topic, partitions: [owned.partition] }]
    try {
      if (pause) consumer.pause(tp)
      else consumer.resume(tp)
    } catch {
      return // before run(): nothing is fetched yet anyway
    }
    if (pause) this.paused.add(key)
    else this.paused.delete(key)
  }

  clear(): void {
    this.paused.clear()
  }
}
