import type { Offsets } from 'kafkajs'
import type { Logger } from '../../src/sdk/index.js'
import { isRebalanceError, kafkaError, type KafkaErrorContext } from './client.js'
import type { PartitionOffsets } from './offsets.js'

/** A partition whose commit point the committer writes. */
export interface Committable {
  topic: string
  partition: number
  offsets: PartitionOffsets
}

export interface CommitterOptions {
  intervalMs: number
  groupId: string
  context: KafkaErrorContext
  log: () => Logger | undefined
  /** The partitions owned now. */
  owned: () => Iterable<Committable>
  /** False while the assignment is unknown (a join runs): nothing is committed then. */
  mayCommit: () => boolean
  stopping: () => boolean
}

/**
 * Writes the commit points of the owned partitions: at most every `intervalMs` while events
 * finish (`schedule`), at once (`commit`, one request at a time, a request asked for meanwhile
 * follows), or at once regardless of one in flight (`commitNow`). Commits go through `commitFn`,
 * the batch payload's commitOffsetsIfNecessary(offsets): one attempt under the generation
 * current at the call (consumer.commitOffsets would retry, possibly under a later generation).
 */
export class Committer {
  commitFn: ((offsets: Offsets) => Promise<void>) | undefined
  private timer: NodeJS.Timeout | undefined
  private committing: Promise<void> | undefined
  private again = false

  constructor(private readonly o: CommitterOptions) {}

  schedule(): void {
    if (this.timer) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.commit()
    }, this.o.intervalMs)
  }

  /** Commits every owned partition whose commit point moved; one commit request at a time. */
  commit(): Promise<void> {
    if (this.committing) {
      this.again = true
      return this.committing
    }
    const run = this.commitNow().finally(() => {
      this.committing = undefined
      if (this.again) {
        this.again = false
        void this.commit()
      }
    })
    this.committing = run
    return run
  }

  /** Waits for a commit in flight, then commits what is due. */
  async flush(): Promise<void> {
    while (this.committing) await this.committing
    this.clear()
    await this.commit()
  }

  clear(): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }

  /** Sends one commit request now with every due commit point, whatever else is in flight. */
  async commitNow(): Promise<void> {
    const commit = this.commitFn
    if (!commit || !this.o.mayCommit()) return
    const due = [...this.o.owned()].filter((o) => o.offsets.due).map((o) => ({ owned: o, point: o.offsets.commitPoint() }))
    if (due.length === 0) return
    const byTopic = new Map<string, Array<{ partition: number; offset: string }>>()
    for (const { owned, point } of due) {
      const list = byTopic.get(owned.topic) ?? []
      list.push({ partition: owned.partition, offset: String(point) })
      byTopic.set(owned.topic, list)
    }
    try {
      // The request is built synchronously: it carries the generation the ownership above belongs to.
      await commit({ topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) })
      for (const { owned, point } of due) if (owned.offsets.committed < point) owned.offsets.committed = point
    } catch (e) {
      const err = kafkaError(e, 'SLUICE_ERR_CONNECTOR_KAFKA_COMMIT', this.o.context).toJSON()
      if (isRebalanceError(e)) {
        // The group moved on; whatever is still owned after the rejoin is committed then.
        this.o.log()?.info({ group: this.o.groupId, err }, 'kafka commit refused: the group is rebalancing')
        return
      }
      this.o.log()?.warn({ group: this.o.groupId, err: { ...err, code: 'SLUICE_ERR_CONNECTOR_KAFKA_COMMIT' } }, 'kafka offset commit failed; retrying')
      if (!this.o.stopping()) this.schedule()
    }
  }
}
