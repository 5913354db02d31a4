/**
 * Commit bookkeeping of one owned partition. Kafka commits a single position per partition
 * ("everything before this offset is done"), while events finish out of order (other keys,
 * retries), so the committable position is the lowest offset still unfinished: an event that is
 * slow, retrying, or aborted by a shutdown holds the commit back, and nothing after it is lost
 * when the gateway dies. Offsets are delivered in ascending order, so a queue with a head
 * pointer and a set of offsets finished early is enough.
 */
export class PartitionOffsets {
  /** One past the last offset handed to the router or stepped over (control records); -1 before any. */
  next = -1
  /** The position last committed by this consumer; -1 before its first commit. */
  committed = -1
  /** The partition's end as of the last fetch (for the lag metric); -1 before any. */
  highWatermark = -1
  private readonly queue: number[] = []
  private head = 0
  /** Offsets finished while an earlier one is still unfinished. */
  private readonly early = new Set<number>()

  /** Records that `offset` was handed to the router (ascending). */
  delivered(offset: number): void {
    this.queue.push(offset)
    this.next = offset + 1
  }

  /** Moves `next` past offsets that carry no event (control records, compacted gaps). */
  advance(to: number): void {
    if (to > this.next) this.next = to
  }

  /** Records that `offset` is done or dead-lettered (never call it for an aborted event). */
  finish(offset: number): void {
    if (this.queue[this.head] !== offset) {
      this.early.add(offset)
      return
    }
    this.head++
    while (this.head < this.queue.length && this.early.delete(this.queue[this.head] as number)) this.head++
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head)
      this.head = 0
    }
  }

  /** Events handed over and not finished. */
  get inFlight(): number {
    return this.queue.length - this.head - this.early.size
  }

  /** The position that may be committed: the lowest unfinished offset, else `next` (-1: none yet). */
  commitPoint(): number {
    return this.head < this.queue.length ? (this.queue[this.head] as number) : this.next
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
}

/** Counts work in flight; `below(n)` resolves when the count is (or falls to) n or less. */
export class Pending {
  count = 0
  private waiters: Array<{ n: number; resolve: () => void }> = []
  /** The largest threshold waited for: settle() has nothing to do while count stays above it. */
  private highest = -1

  add(): void {
    this.count++
  }

  settle(): void {
    if (--this.count > this.highest) return
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
