/**
 * Ack bookkeeping for one AMQP channel. Delivery tags on a channel count up from 1, and an ack or
 * nack with `multiple` settles every unsettled tag up to it, so a multiple frame is only safe over
 * a prefix of the window in which no tag is still in flight. Outcomes arrive out of order (keys run
 * in parallel, retries take time), so `flush` sends:
 *
 * - for the settled prefix: one frame per run of the same kind (ack, or nack with requeue), with
 *   `multiple` when the run covers more than one tag;
 * - for tags settled behind a tag still in flight: one frame each, at once. Holding them back for a
 *   later multiple frame would keep them counted against the prefetch window while a slow or
 *   retried message blocks the prefix, and stall every other key.
 *
 * The window belongs to one channel: when the channel closes it is dropped with it (the broker
 * requeues what was not settled; acks for an old channel are never sent on a new one).
 */
export type Settlement = 'ack' | 'requeue'

export interface AckFrame {
  kind: Settlement
  tag: number
  multiple: boolean
}

const OPEN = 0
const ACK = 1
const REQUEUE = 2
const SENT = 3

export class AckWindow {
  /** Tag of states[head]. */
  private base = 1
  private head = 0
  private states: number[] = []
  /** Tags settled since the last flush. */
  private settled: number[] = []
  /** Messages still waiting for an outcome. */
  open = 0
  /** Frames and messages settled so far (observability and tests). */
  readonly stats = { frames: 0, multipleFrames: 0, messages: 0 }

  /** The next tag the channel will deliver. */
  get nextTag(): number {
    return this.base + this.states.length - this.head
  }

  /**
   * Registers a delivered tag. Tags arrive in order; returns false (and registers nothing) for a
   * tag out of sequence, which the caller settles on its own.
   */
  add(tag: number): boolean {
    if (tag !== this.nextTag) return false
    this.states.push(OPEN)
    this.open++
    return true
  }

  /** Records the outcome of `tag`; a tag that is not open is ignored. */
  settle(tag: number, kind: Settlement): void {
    const idx = this.head + tag - this.base
    if (idx < this.head || idx >= this.states.length || this.states[idx] !== OPEN) return
    this.states[idx] = kind === 'ack' ? ACK : REQUEUE
    this.open--
    this.stats.messages++
    this.settled.push(tag)
  }

  /** True when settled tags wait for `flush`. */
  get dirty(): boolean {
    return this.settled.length > 0
  }

  /** The frames that settle everything recorded since the last flush, in the order to send them. */
  flush(): AckFrame[] {
    const frames: AckFrame[] = []
    const s = this.states
    // The settled prefix, as runs of one kind (SENT entries inside a run are harmless: a multiple
    // frame settles only tags not yet settled).
    while (this.head < s.length && s[this.head] !== OPEN) {
      const kind = s[this.head] as number
      if (kind === SENT) {
        this.pop()
        continue
      }
      let end = this.head
      let last = this.head
      let count = 0
      while (end < s.length && (s[end] === kind || s[end] === SENT)) {
        if (s[end] === kind) {
          last = end
          count++
        }
        end++
      }
      frames.push({ kind: kind === ACK ? 'ack' : 'requeue', tag: this.base + last - this.head, multiple: count > 1 })
      while (this.head <= last) this.pop()
    }
    // Settled behind an open tag: one by one.
    for (const tag of this.settled) {
      const idx = this.head + tag - this.base
      if (idx < this.head) continue
      const kind = s[idx]
      if (kind !== ACK && kind !== REQUEUE) continue
      frames.push({ kind: kind === ACK ? 'ack' : 'requeue', tag, multiple: false })
      s[idx] = SENT
    }
    this.settled.length = 0
    if (this.head > 1024 && this.head * 2 > s.length) {
      this.states = s.slice(this.head)
      this.head = 0
    }
    for (const f of frames) {
      this.stats.frames++
      if (f.multiple) this.stats.multipleFrames++
    }
    return frames
  }

  private pop(): void {
    this.head++
    this.base++
  }
}
