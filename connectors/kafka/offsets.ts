import type { Outcome } from '../../src/sdk/index.js'

/**
 * Commit bookkeeping of one owned partition. Kafka commits a single position per partition
 * ("everything before this offset is done"), while events finish out of order (other keys,
 * retries), so the committable position is the lowest offset still unfinished: an event that is
 * slow, retrying, or aborted by a shutdown holds the commit back, and nothing after it is lost
 * when the gateway dies. Offsets are delivered in ascending order, so a queue with a head
 * pointer and a finished flag per entry is enough; outcomes come back by sequence number
 * (finishAll: one pass over a delivered chunk), no lookup per offset.
 */
export class PartitionOffsets {
  /** One past the last offset handed to the router or stepped over (control records); -1 before any. */
  next = -1
  /** The position last committed by this consumer; -1 before its first commit. */
  committed = -1
  /** The partition's end as of the last fetch (for the lag metric); -1 before any. */
  highWatermark = -1
  // The offsets handed out, in order, with a finished flag each: [head, tail) is the queue, head
  // the lowest unfinished one. An entry's sequence number (what delivered returns) is its index
  // plus `base`; the queue moves to the front of the arrays now and then (base grows by as much).
  private offsets = new Float64Array(256)
  private finished = new Uint8Array(256)
  private base = 0
  private head = 0
  private tail = 0
  /** Entries after head finished while it is still unfinished. */
  private early = 0

  /** Records that `offset` was handed to the router (ascending); returns its sequence number. */
  delivered(offset: number): number {
    if (this.tail === this.offsets.length) this.makeRoom()
    this.offsets[this.tail] = offset
    this.finished[this.tail] = 0
    this.next = offset + 1
    return this.base + this.tail++
  }

  /** Moves `next` past offsets that carry no event (control records, compacted gaps). */
  advance(to: number): void {
    if (to > this.next) this.next = to
  }

  /** Records that `offset` is done or dead-lettered (never call it for an aborted event). */
  finish(offset: number): void {
    // Offsets ascend: binary search for its entry.
    let lo = this.head
    let hi = this.tail
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((this.offsets[mid] as number) < offset) lo = mid + 1
      else hi = mid
    }
    if (lo < this.tail && this.offsets[lo] === offset) this.finishSeq(this.base + lo)
  }

  /**
   * Records the outcomes of the entries from sequence number `seq` on, one per outcome: done and
   * dead finish theirs, aborted (or a missing outcome) holds it. True when any finished.
   */
  finishAll(seq: number, outcomes: ReadonlyArray<Outcome | undefined>): boolean {
    let any = false
    for (let i = 0; i < outcomes.length; i++) {
      const o = outcomes[i]
      if (o && o.status !== 'aborted') {
        this.finishSeq(seq + i)
        any = true
      }
    }
    return any
  }

  /** Records that the entry with sequence number `seq` is done or dead-lettered. */
  finishSeq(seq: number): void {
    const i = seq - this.base
    if (i < this.head || i >= this.tail || this.finished[i] === 1) return
    if (i !== this.head) {
      this.finished[i] = 1
      this.early++
      return
    }
    this.head++
    while (this.head < this.tail && this.finished[this.head] === 1) {
      this.head++
      this.early--
    }
    if (this.head === this.tail) {
      this.base += this.head
      this.head = this.tail = 0
    }
  }

  /** Events handed over and not finished. */
  get inFlight(): number {
    return this.tail - this.head - this.early
  }

  /** The position that may be committed: the lowest unfinished offset, else `next` (-1: none yet). */
  commitPoint(): number {
    return this.head < this.tail ? (this.offsets[this.head] as number) : this.next
  }

  /** True when the commit point moved past the last commit. */
  get due(): boolean {
    return this.commitPoint() > this.committed
  }

  /** Messages between the commit point and the partition's end (0 when unknown). */
  lag(): number {
    const from = this.committed >= 0 ? this.committed : this.commitPoint()
    return this.highWatermark >= 0 && from >= 0 ? Math.max(0, this.highWatermark - from) : 0
  }

  /** The arrays are full: move the queue to their front, or grow them when it fills half. */
  private makeRoom(): void {
    const n = this.tail - this.head
    if (n * 2 > this.offsets.length) {
      const offsets = new Float64Array(this.offsets.length * 2)
      const finished = new Uint8Array(this.offsets.length * 2)
      offsets.set(this.offsets.subarray(this.head, this.tail))
      finished.set(this.finished.subarray(this.head, this.tail))
      this.offsets = offsets
      this.finished = finished
    } else {
      this.offsets.copyWithin(0, this.head, this.tail)
      this.finished.copyWithin(0, this.head, this.tail)
    }
    this.base += this.head
    this.head = 0
    this.tail = n
  }
}

/** Counts work in flight; `below(n)` resolves when the count is (or falls to) n or less. */
export class Pending {
  count = 0
  private waiters: Array<{ n: number; resolve: () => void }> = []
  /** The largest threshold waited for: settle() has nothing to do while count stays above it. */
  private highest = -1

  add(n = 1): void {
    this.count += n
  }

  settle(n = 1): void {
    this.count -= n
    if (this.count > this.highest) return
    const waiting = this.waiters
    this.waiters = []
    this.highest = -1
    for (const w of waiting) {
      if (this.count <= w.n) w.resolve()
      else this.wait(w)
    }
  }

  below(n: number): Promise<void> {
    return this.count <= n ? Promise.resolve() : new Promise((resolve) => this.wait({ n, resolve }))
  }

  done(): Promise<void> {
    return this.below(0)
  }

  private wait(w: { n: number; resolve: () => void }): void {
    this.waiters.push(w)
    if (w.n > this.highest) this.highest = w.n
  }
}
