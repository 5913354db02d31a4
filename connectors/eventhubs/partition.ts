import type { ReceivedEventData } from '@azure/event-hubs'
import { hasCode, type Logger, type Outcome } from '../../src/sdk/index.js'

/**
 * active: checkpoints follow the outcomes. halted: an event came back `aborted` (the gateway is
 * stopping), so nothing after it is checkpointed; what finished before it still is. lost: another
 * owner has the partition: nothing is checkpointed any more.
 */
export type SessionState = 'active' | 'halted' | 'lost'

/**
 * The work of one partition between its claim and its close: the batches handed to the router,
 * in order, and the checkpoint that follows them. A batch is checkpointed (at its last event) once
 * every event of it and of every earlier batch is done or dead-lettered. Writes are at least
 * `intervalMs` apart: batches that finish in between share one write (at the latest of them).
 */
export class PartitionSession {
  state: SessionState = 'active'
  /** Batches handed to the router whose outcomes have not all resolved. */
  inflight = 0
  /** Sequence number of the last checkpoint written by this session (or found when it started). */
  checkpointed: number | undefined
  /** Latest known last-enqueued sequence number of the partition (for the lag). */
  lastEnqueued = -1
  /** The last event of the latest batch that is completely done, waiting to be written. */
  private done: ReceivedEventData | undefined
  private tail: Promise<void> = Promise.resolve()
  private writing: Promise<void> | undefined
  private readonly ended: Promise<void>
  private end!: () => void
  private closing = false
  private lastWrite = 0
  /** Cuts the wait between two checkpoint writes short (close, loss). */
  private wake: (() => void) | undefined

  constructor(
    readonly partitionId: string,
    /** Writes a checkpoint at this event (rejects with OWNERSHIP_LOST when the partition moved). */
    private readonly write: (e: ReceivedEventData) => Promise<void>,
    private readonly log: Logger,
    /** Least time between two checkpoint writes of this partition (0: after every batch). */
    private readonly intervalMs = 0,
  ) {
    this.ended = new Promise<void>((r) => (this.end = r))
  }

  /** Whether new batches may be handed on. */
  get accepting(): boolean {
    return this.state === 'active' && !this.closing
  }

  /** Resolves when the session stops taking events (drained or lost): cuts a back-pressure wait short. */
  get stopped(): Promise<void> {
    return this.ended
  }

  /** Events enqueued but not checkpointed yet: in flight, or not read yet. */
  lag(): number {
    return Math.max(0, this.lastEnqueued - (this.checkpointed ?? -1))
  }

  /** Follows one delivered batch: checkpoints after it once it and every earlier batch are final. */
  track(outcomes: Promise<Outcome[]>, last: ReceivedEventData): void {
    this.inflight++
    this.lastEnqueued = Math.max(this.lastEnqueued, last.sequenceNumber)
    this.tail = this.tail.then(async () => {
      let out: Outcome[]
      try {
        out = await outcomes
      } catch (err) {
        // The router refused the batch as a whole: treat it as unfinished (the source keeps it).
        this.inflight--
        if (this.state === 'active') this.state = 'halted'
        this.log.error(
          { partitionId: this.partitionId, err: (err as Error).message },
          'events could not be handed on: the partition is not checkpointed past them',
        )
        return
      }
      this.inflight--
      if (this.state !== 'active') return
      const aborted = out.filter((o) => o.status === 'aborted').length
      if (aborted > 0) {
        // The source keeps these: the next owner (or this gateway after restart) reads them again.
        this.state = 'halted'
        this.log.info({ partitionId: this.partitionId, aborted }, 'events were not finished: the partition is not checkpointed past them')
        return
      }
      this.done = last
      this.flush()
    })
  }

  /** Starts the checkpoint writer unless it runs. */
  private flush(): Promise<void> {
    this.writing ??= this.writeLoop().finally(() => (this.writing = undefined))
    return this.writing
  }

  private pending(): boolean {
    return this.state !== 'lost' && this.done !== undefined && (this.checkpointed === undefined || this.done.sequenceNumber > this.checkpointed)
  }

  private async writeLoop(): Promise<void> {
    while (this.pending()) {
      // A store write can block (SQLite syncs to disk): batches finishing meanwhile share the next one.
      const wait = this.lastWrite + this.intervalMs - Date.now()
      if (wait > 0 && !this.closing) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, wait)
          t.unref()
          this.wake = () => {
            clearTimeout(t)
            resolve()
          }
        })
        this.wake = undefined
        if (!this.pending()) return
      }
      const e = this.done as ReceivedEventData
      this.lastWrite = Date.now()
      try {
        await this.write(e)
        // The partition may have been lost while the write was under way.
        if ((this.state as SessionState) === 'lost') return
        this.checkpointed = e.sequenceNumber
      } catch (err) {
        if (hasCode(err, 'SLUICE_ERR_CONNECTOR_EVENTHUBS_OWNERSHIP_LOST')) {
          this.lose(err.message)
          return
        }
        // The next finished batch tries again; until then the source keeps the events (at-least-once).
        this.log.error(
          {
            partitionId: this.partitionId,
            sequenceNumber: e.sequenceNumber,
            err: { code: hasCode(err) ? err.code : undefined, message: (err as Error).message },
          },
          'checkpoint failed',
        )
        return
      }
    }
  }

  /** Writes the checkpoint of the start position (before any event): `e` is the partition's last enqueued event. */
  async writeStart(e: ReceivedEventData): Promise<void> {
    if (this.state === 'lost' || this.checkpointed !== undefined) return
    await this.write(e)
    if (this.checkpointed === undefined) this.checkpointed = e.sequenceNumber
  }

  /** Another owner has the partition: stop, and never checkpoint it from this session again. */
  lose(why: string): void {
    if (this.state !== 'lost') {
      this.log.warn(
        { partitionId: this.partitionId, code: 'SLUICE_ERR_CONNECTOR_EVENTHUBS_OWNERSHIP_LOST', why },
        'partition ownership lost: stopped processing it; it is not checkpointed from here any more',
      )
    }
    this.state = 'lost'
    this.done = undefined
    this.end()
    this.wake?.()
  }

  /** Graceful close: waits for the outcomes of every handed-on batch and writes the last checkpoint. */
  async drain(): Promise<void> {
    this.closing = true
    this.end()
    this.wake?.()
    await this.tail
    await this.flush()
    if (this.state === 'active') this.state = 'halted'
  }
}
