import type { ErrorInfo } from '../errors.js'
import type { Outcome, TriggerEvent } from '../sdk/index.js'

/** The outcomes of one `deliver` call: resolved together when the last one is final. */
export class Delivery {
  readonly outcomes: Outcome[]
  pending: number
  constructor(
    size: number,
    readonly resolve: (outcomes: Outcome[]) => void,
  ) {
    this.outcomes = new Array<Outcome>(size)
    this.pending = size
  }
}

/** One event on its way through one function (a class: many are alive at once). */
export class Item {
  /** JSON of the event without `attempt`, computed once on arrival. */
  json = ''
  /** Where a raw body (TriggerEvent.rawBody) starts in `json` (it runs to the closing brace); 0: none. */
  rawAt = 0
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
    /** performance.now() when accepted (orders keys against unkeyed events). */
    readonly enqueuedAt: number,
    /** Date.now() when accepted (reported with dead letters). */
    readonly firstAttemptAt: number,
  ) {}
}

/**
 * The queue of one function: per-key FIFOs where a key runs one batch at a time (so events of a
 * key are processed in order) while different keys run in parallel. A key is "locked" while its
 * events are in flight or wait for a retry; locked keys stay out of new batches, so a failing key
 * holds back only itself.
 */
export class Lane {
  private readonly keyed = new Map<string, Item[]>()
  private readonly locked = new Set<string>()
  /** Keys with queued items that are not locked, oldest first (Set keeps insertion order). */
  private readonly ready = new Set<string>()
  private free: Item[] = []
  private freeHead = 0
  /** Items that could go into a batch now. */
  readyCount = 0
  /** When readyCount last rose from zero. */
  readySince = 0

  /** Adds an item; `front` puts a retried item back before newer ones of its key. */
  push(item: Item, front = false): void {
    if (this.readyCount === 0) this.readySince = performance.now()
    if (item.key === undefined) {
      if (front) {
        if (this.freeHead > 0) this.free[--this.freeHead] = item
        else this.free.unshift(item)
      } else this.free.push(item)
      this.readyCount++
      return
    }
    let q = this.keyed.get(item.key)
    if (!q) {
      q = []
      this.keyed.set(item.key, q)
    }
    if (front) q.unshift(item)
    else q.push(item)
    if (!this.locked.has(item.key)) {
      this.ready.add(item.key)
      this.readyCount++
    }
  }

  private freeLength(): number {
    return this.free.length - this.freeHead
  }

  private compactFree(): void {
    if (this.freeHead > 1024 && this.freeHead * 2 > this.free.length) {
      this.free = this.free.slice(this.freeHead)
      this.freeHead = 0
    }
  }

  /**
   * Takes up to `maxSize` items (and about `maxBytes` of JSON) for one batch, oldest first. Every
   * key that gives items is locked until `unlock(key)`.
   */
  take(maxSize: number, maxBytes: number): Item[] {
    const batch: Item[] = []
    let bytes = 0
    const fits = (it: Item) => batch.length === 0 || bytes + it.json.length <= maxBytes
    while (batch.length < maxSize && this.readyCount > 0) {
      const freeItem = this.freeLength() > 0 ? this.free[this.freeHead] : undefined
      const key = this.ready.values().next().value as string | undefined
      const keyItem = key === undefined ? undefined : this.keyed.get(key)?.[0]
      if (freeItem && (!keyItem || freeItem.enqueuedAt <= keyItem.enqueuedAt)) {
        if (!fits(freeItem)) break
        this.freeHead++
        this.readyCount--
        batch.push(freeItem)
        bytes += freeItem.json.length
        continue
      }
      if (key === undefined || !keyItem) break
      const q = this.keyed.get(key) as Item[]
      if (!fits(keyItem)) break
      this.ready.delete(key)
      this.locked.add(key)
      this.readyCount -= q.length
      let n = 0
      while (n < q.length && batch.length < maxSize) {
        const it = q[n] as Item
        if (!fits(it)) break
        batch.push(it)
        bytes += it.json.length
        n++
      }
      q.splice(0, n)
    }
    this.compactFree()
    return batch
  }

  /** Lets a key's queued items into batches again. */
  unlock(key: string): void {
    if (!this.locked.delete(key)) return
    const q = this.keyed.get(key)
    if (!q || q.length === 0) {
      this.keyed.delete(key)
      return
    }
    if (this.readyCount === 0) this.readySince = performance.now()
    this.ready.add(key)
    this.readyCount += q.length
  }

  /** Removes and returns every queued item (in flight items are not queued). */
  drain(): Item[] {
    const out = this.free.slice(this.freeHead)
    this.free = []
    this.freeHead = 0
    for (const q of this.keyed.values()) out.push(...q)
    this.keyed.clear()
    this.ready.clear()
    this.readyCount = 0
    return out
  }
}
