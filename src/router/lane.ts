import type { ErrorInfo } from '../errors.js'
import type { Outcome, OutcomeListener, TriggerEvent } from '../sdk/index.js'

/**
 * The outcomes of one `deliver` call: resolved together when the last one is final. With an
 * `onOutcome` listener, each outcome is also reported on its own as it is recorded.
 */
export class Delivery {
  readonly outcomes: Outcome[]
  /** Outcomes still to come. */
  private pending: number
  constructor(
    size: number,
    readonly resolve: (outcomes: Outcome[]) => void,
    /** performance.now() when accepted: the events of one call arrived together. */
    readonly enqueuedAt: number,
    /** Date.now() when accepted. */
    readonly firstAttemptAt: number,
    /** Called once per event, before `resolve`; must not throw (the router guards it). */
    private readonly onOutcome?: OutcomeListener,
  ) {
    this.outcomes = new Array<Outcome>(size)
    this.pending = size
  }

  /** Records event `index`'s final outcome (once per event: finish() sees to it). */
  record(index: number, o: Outcome): void {
    this.outcomes[index] = o
    this.onOutcome?.(index, o)
    if (--this.pending === 0) this.resolve(this.outcomes)
  }
}

/** One event on its way through one function (a class: many are alive at once). */
export class Item {
  /** JSON of the event without `attempt`, computed once on arrival (with `raw`: all but the body; see checkEvent). */
  json = ''
  /** A raw body's text (TriggerEvent.rawBody), which goes to the isolate beside `json`. */
  raw: string | undefined = undefined
  /** Characters of JSON it adds to a batch (checkedSize). */
  size = 0
  /** Ordering key; undefined: no ordering (runs in parallel with everything). */
  key: string | undefined = undefined
  attempts = 0
  lastError: ErrorInfo | undefined = undefined
  /** Its outcome is recorded (finish ignores a second one). */
  final = false
  /** Its batch handed it on (finished, retried or dead-lettering): a failing batch leaves it alone. */
  handled = false
  constructor(
    readonly event: TriggerEvent,
    readonly delivery: Delivery,
    /** Position of the event in its delivery. */
    readonly index: number,
  ) {}

  // The times live on the delivery: a double field costs every item a boxed number to allocate
  // and for the garbage collector to copy while the item is in flight (issue 11).
  /** performance.now() when accepted (orders keys against unkeyed events). */
  get enqueuedAt(): number {
    return this.delivery.enqueuedAt
  }

  /** Date.now() when accepted (reported with dead letters). */
  get firstAttemptAt(): number {
    return this.delivery.firstAttemptAt
  }
}

/** The queued items of one ordering key, and whether the key is in a batch or waits to be. */
class KeyQueue {
  /** Queued items from `head` on (a batch takes from the front without moving the rest). */
  items: Item[] = []
  head = 0
  /** Its items are in flight or wait for a retry: none goes into a batch until `unlock`. */
  locked = false
  /** In the lane's ready queue. */
  ready = false
  constructor(readonly key: string) {}

  get size(): number {
    return this.items.length - this.head
  }

  unshift(item: Item): void {
    if (this.head > 0) this.items[--this.head] = item
    else this.items.unshift(item)
  }

  /** Drops the first `n` queued items. */
  drop(n: number): void {
    this.head += n
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
  }
}

/**
 * The queue of one function: per-key FIFOs where a key runs one batch at a time (so events of a
 * key are processed in order) while different keys run in parallel. A key is "locked" while its
 * events are in flight or wait for a retry; locked keys stay out of new batches, so a failing key
 * holds back only itself.
 */
export class Lane {
  /** Every key with queued items or locked. */
  private readonly keyed = new Map<string, KeyQueue>()
  /** The queue `push` used last (a source hands over runs of one key): no Map lookup for its key. */
  private last: KeyQueue | undefined
  /**
   * Keys with queued items that are not locked, oldest first (from `readyHead`). Only `take`
   * removes a key, from the front, so this is a plain FIFO.
   */
  private ready: KeyQueue[] = []
  private readyHead = 0
  private free: Item[] = []
  private freeHead = 0
  /** Items that could go into a batch now. */
  readyCount = 0
  /**
   * When the oldest of them arrived, about (performance.now()): when readyCount rose from zero,
   * or earlier when a key unlocked with items that waited behind its batch. batch.maxWaitMs counts
   * from here, as a batching window counts from its first event: a key's leftovers, queued while
   * its last batch ran, do not wait for a full batch once more.
   */
  readySince = 0

  /** Adds an item; `front` puts a retried item back before newer ones of its key. */
  push(item: Item, front = false): void {
    if (this.readyCount === 0) this.readySince = performance.now()
    const key = item.key
    if (key === undefined) {
      if (front) {
        if (this.freeHead > 0) this.free[--this.freeHead] = item
        else this.free.unshift(item)
      } else this.free.push(item)
      this.readyCount++
      return
    }
    let q = this.last !== undefined && this.last.key === key ? this.last : this.keyed.get(key)
    if (!q) {
      q = new KeyQueue(key)
      this.keyed.set(key, q)
    }
    this.last = q
    if (front) q.unshift(item)
    else q.items.push(item)
    if (!q.locked) {
      if (!q.ready) {
        q.ready = true
        this.ready.push(q)
      }
      this.readyCount++
    }
  }

  private compact(): void {
    if (this.freeHead > 1024 && this.freeHead * 2 > this.free.length) {
      this.free = this.free.slice(this.freeHead)
      this.freeHead = 0
    }
    if (this.readyHead === this.ready.length) {
      this.ready.length = 0
      this.readyHead = 0
    } else if (this.readyHead > 1024 && this.readyHead * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.readyHead)
      this.readyHead = 0
    }
  }

  /**
   * Takes up to `maxSize` items (and about `maxBytes` of JSON) for one batch, oldest first. Every
   * key that gives items is locked until `unlock(key)`; a key's items are side by side in the batch.
   */
  take(maxSize: number, maxBytes: number): Item[] {
    const batch: Item[] = []
    let bytes = 0
    while (batch.length < maxSize && this.readyCount > 0) {
      const freeItem = this.freeHead < this.free.length ? (this.free[this.freeHead] as Item) : undefined
      const q = this.readyHead < this.ready.length ? (this.ready[this.readyHead] as KeyQueue) : undefined
      const keyItem = q?.items[q.head]
      if (freeItem && (!keyItem || freeItem.enqueuedAt <= keyItem.enqueuedAt)) {
        if (batch.length > 0 && bytes + freeItem.size > maxBytes) break
        this.freeHead++
        this.readyCount--
        batch.push(freeItem)
        bytes += freeItem.size
        continue
      }
      if (!q || !keyItem) break
      if (batch.length > 0 && bytes + keyItem.size > maxBytes) break
      this.readyHead++
      q.ready = false
      q.locked = true
      const items = q.items
      this.readyCount -= q.size
      let i = q.head
      while (i < items.length && batch.length < maxSize) {
        const it = items[i] as Item
        if (batch.length > 0 && bytes + it.size > maxBytes) break
        batch.push(it)
        bytes += it.size
        i++
      }
      q.drop(i - q.head)
    }
    this.compact()
    return batch
  }

  /** Lets a key's queued items into batches again. */
  unlock(key: string): void {
    const q = this.keyed.get(key)
    if (!q?.locked) return
    q.locked = false
    if (q.size === 0) {
      this.keyed.delete(key)
      if (this.last === q) this.last = undefined
      return
    }
    const oldest = (q.items[q.head] as Item).enqueuedAt
    this.readySince = this.readyCount === 0 ? oldest : Math.min(this.readySince, oldest)
    q.ready = true
    this.ready.push(q)
    this.readyCount += q.size
  }

  /** Removes and returns every queued item (in flight items are not queued; their keys stay locked). */
  drain(): Item[] {
    const out = this.free.slice(this.freeHead)
    this.free = []
    this.freeHead = 0
    for (const [key, q] of this.keyed) {
      for (let i = q.head; i < q.items.length; i++) out.push(q.items[i] as Item)
      q.items = []
      q.head = 0
      q.ready = false
      if (!q.locked) this.keyed.delete(key)
    }
    this.last = undefined
    this.ready = []
    this.readyHead = 0
    this.readyCount = 0
    return out
  }
}
