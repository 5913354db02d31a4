import { randomUUID } from 'node:crypto'
import { SluiceError, toInfo, type ErrorInfo } from '../errors.js'
import type { Flow, InvocationResult, Outcome, OutcomeListener, TriggerEvent } from '../sdk/index.js'
import type { Lease } from '../scheduler/scheduler.js'
import { LIMITS } from '../sandbox/protocol.js'
import { Delivery, Item, Lane } from './lane.js'
import { FlowControl } from './flow.js'
import { FunctionStats } from './stats.js'
import { publishOutputs } from './outputs.js'
import { bodyOfRaw, checkEvent, checkedSize, failedOf } from './event-check.js'
import { batchJson } from './batch-json.js'
import { reasonOf } from './safe-json.js'
import {
  ABORTED,
  type Admission,
  admittedOpen,
  type FnLane,
  finish,
  guard,
  internal,
  type RouterFunction,
  type RouterHost,
  type RouterOptions,
  runOnLease,
} from './lane-state.js'
import { deadLetterSoon, settle } from './settle.js'
import { report, type InvocationReport } from './report.js'
import { invoke } from './invoke.js'

export type { RouterFunction, RouterOptions } from './lane-state.js'

/** About the largest batch, in JSON characters (an event alone is at most EVENT_LIMITS.maxChars). */
const MAX_BATCH_CHARS = LIMITS.resultBytes

/**
 * Events admitted per turn of the event loop (see FnLane.admitting): a call of up to this many is
 * admitted at once, as before; a backlog of 200,000 in one call no longer keeps the worker hosts
 * idle for the ~0.5 s its admission takes (bench/README.md, warm path).
 */
const ADMIT_SLICE = 1000

/**
 * Admitted events not yet final, at most, before the next slice of a large call waits for some to
 * finish (at least this many; more when the function's concurrency can take more): a backlog of
 * 200,000 then holds a few thousand events in the router's queues, not 200,000, which the
 * garbage collector would copy and promote while they wait (bench/README.md).
 */
const ADMIT_AHEAD = 4 * ADMIT_SLICE
const admitAhead = (fn: RouterFunction): number => Math.max(ADMIT_AHEAD, 2 * fn.batch.maxSize * fn.maxConcurrency)

/** How many of a batch's items a function's `{ failed }` list names. */
function failedIn(failedIds: Map<string, string | undefined>, items: Item[]): number {
  if (failedIds.size === 0) return 0
  const ids = new Set(items.map((it) => it.event.id))
  let n = 0
  for (const id of failedIds.keys()) if (ids.has(id)) n++
  return n
}

/**
 * Batches events per function, runs them through the scheduler, retries with backoff, dead-letters
 * what exhausts its attempts, and resolves each event's outcome once that outcome is durable.
 */
export class Router {
  private readonly lanes = new Map<string, FnLane>()
  private closing = false
  private closePromise: Promise<void> | undefined

  /** What the lane modules (invoke.ts, settle.ts, report.ts) get from the router. */
  private readonly host: RouterHost

  constructor(private readonly opts: RouterOptions) {
    this.host = { opts, closing: () => this.closing, onReady: (l) => this.onReady(l) }
  }

  /**
   * Adds a function. `stats`: the counts and latencies to go on from (a function a reload
   * restarts keeps its own, see Router.stats).
   */
  register(fn: RouterFunction, stats = new FunctionStats()): void {
    const keyPath = fn.orderKey === 'source' || fn.orderKey === 'none' ? undefined : fn.orderKey.split('.')
    this.lanes.set(fn.name, {
      fn,
      lane: new Lane(),
      keyPath,
      backlog: 0,
      inflight: 0,
      requested: 0,
      held: [],
      waitTimer: undefined,
      retryTimers: new Map(),
      flow: new FlowControl(fn.maxBacklog),
      stats,
      idle: [],
      admitting: [],
      unadmitted: 0,
      admitTimer: undefined,
      admitAhead: admitAhead(fn),
      wakeAdmission: () => {},
    })
    const l = this.lanes.get(fn.name) as FnLane
    l.wakeAdmission = () => {
      if (l.admitTimer === undefined && l.admitting.length > 0)
        l.admitTimer = setImmediate(() => guard(this.host, l, 'admitting events', () => this.admitSlice(l)))
    }
  }

  /**
   * Applies a function's new batch, retry, concurrency and output settings in place (hot reload):
   * queued events and the next batches use them; running batches finish as they started.
   * `orderKey` and `maxBacklog` cannot change here (remove and register the function instead).
   */
  update(fn: RouterFunction): void {
    const l = this.get(fn.name)
    l.fn = { ...fn, orderKey: l.fn.orderKey, maxBacklog: l.fn.maxBacklog }
    l.admitAhead = admitAhead(l.fn)
    guard(this.host, l, 'starting batches', () => this.onReady(l))
  }

  /**
   * Drains a function (hot reload removes or restarts it): from now on new and queued events and
   * pending retries are answered `aborted` (the source keeps them); resolves once its running
   * batches finished (or `timeoutMs` passed). The function stays known (its trigger may still
   * deliver while it stops) until `unregister`.
   */
  async drain(name: string, timeoutMs = 30000): Promise<void> {
    const l = this.lanes.get(name)
    if (!l) return
    l.closing = true
    this.abortQueued(l)
    let timer: NodeJS.Timeout | undefined
    const idle = l.backlog === 0 ? Promise.resolve() : new Promise<void>((r) => l.idle.push(r))
    await Promise.race([idle, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))])
    clearTimeout(timer)
  }

  /** Forgets a drained function (after its trigger stopped); `register` may then reuse its name. */
  unregister(name: string): void {
    const l = this.lanes.get(name)
    if (l) this.abortQueued(l)
    this.lanes.delete(name)
  }

  /** Answers a lane's queued events, events not admitted yet, held leases and pending retries `aborted`. */
  private abortQueued(l: FnLane): void {
    if (l.waitTimer) clearTimeout(l.waitTimer)
    l.waitTimer = undefined
    if (l.admitTimer) clearImmediate(l.admitTimer)
    l.admitTimer = undefined
    l.unadmitted = 0
    for (const a of l.admitting.splice(0))
      for (let i = a.next; i < a.events.length; i++) finish(l, new Item(a.events[i] as TriggerEvent, a.delivery, i), ABORTED)
    for (const lease of l.held.splice(0)) lease.release()
    for (const [timer, items] of l.retryTimers) {
      clearTimeout(timer)
      for (const it of items) finish(l, it, ABORTED)
    }
    l.retryTimers.clear()
    for (const it of l.lane.drain()) finish(l, it, ABORTED)
    l.flow.release()
  }

  private get(fn: string): FnLane {
    const l = this.lanes.get(fn)
    if (!l) throw new SluiceError('SLUICE_ERR_FUNCTION_NOT_FOUND', `no function named ${fn}`, { context: { function: fn } })
    return l
  }

  flow(fn: string): Flow {
    return this.get(fn).flow
  }

  stats(fn: string): { backlog: number; inflight: number; ready: number; stats: FunctionStats } {
    const l = this.get(fn)
    return { backlog: l.backlog, inflight: l.inflight, ready: l.lane.readyCount, stats: l.stats }
  }

  private keyOf(l: FnLane, e: TriggerEvent): string | undefined {
    if (l.fn.orderKey === 'none') return undefined
    if (!l.keyPath) return e.key
    // A key in a raw body (orderKey: body.x) is the one case the gateway parses the payload.
    let v: unknown = e.rawBody !== undefined && l.keyPath[0] === 'body' ? { body: bodyOfRaw(e.rawBody) } : e
    for (const p of l.keyPath) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[p] : undefined
    if (v === undefined || v === null) return e.key
    if (typeof v === 'string') return v
    // The event passed admission (bounded depth), so this does not throw; the catch is a backstop.
    try {
      return JSON.stringify(v)
    } catch {
      return e.key
    }
  }

  /**
   * Accepts events for `fn` and resolves with one outcome per event once every outcome is
   * durable; `onOutcome` (see ConnectorContext.deliver) hears each outcome as it becomes durable.
   * After close() begins, events are answered `aborted` (the source keeps them).
   */
  deliver(fn: string, events: TriggerEvent[], onOutcome?: OutcomeListener): Promise<Outcome[]> {
    const l = this.get(fn)
    const report =
      onOutcome &&
      ((i: number, o: Outcome) => {
        try {
          onOutcome(i, o)
        } catch (e) {
          internal(this.host, l, 'reporting an outcome to the connector', e)
        }
      })
    if (this.closing || l.closing) {
      const outcomes = events.map(() => ABORTED)
      if (report) for (let i = 0; i < outcomes.length; i++) report(i, ABORTED)
      return Promise.resolve(outcomes)
    }
    if (events.length === 0) return Promise.resolve([])
    return new Promise<Outcome[]>((resolve) => {
      // One clock read per call, not per event: deliveries of one call arrived together.
      const delivery = new Delivery(events.length, resolve, performance.now(), Date.now(), report)
      // The whole call counts towards the backlog at once: the source's flow sees it now.
      l.backlog += events.length
      l.flow.update(l.backlog)
      if (l.admitting.length === 0 && events.length <= ADMIT_SLICE) {
        for (let i = 0; i < events.length; i++) this.accept(l, new Item(events[i] as TriggerEvent, delivery, i))
        guard(this.host, l, 'starting batches', () => this.onReady(l))
        return
      }
      l.admitting.push({ events, delivery, next: 0 })
      l.unadmitted += events.length
      if (l.admitting.length === 1) this.admitSlice(l)
    })
  }

  /**
   * Admits up to ADMIT_SLICE events of the lane's queued deliveries and starts batches. The rest
   * follows on the next turn (the batches' frames go out and outcomes come back meanwhile), or,
   * with admitAhead events admitted and not final, once some finished (finish() wakes it).
   */
  private admitSlice(l: FnLane): void {
    l.admitTimer = undefined
    let budget = Math.min(ADMIT_SLICE, l.admitAhead - admittedOpen(l))
    if (budget <= 0) return
    while (budget > 0 && l.admitting.length > 0) {
      const a = l.admitting[0] as Admission
      const end = Math.min(a.events.length, a.next + budget)
      budget -= end - a.next
      l.unadmitted -= end - a.next
      for (; a.next < end; a.next++) this.accept(l, new Item(a.events[a.next] as TriggerEvent, a.delivery, a.next))
      if (a.next === a.events.length) l.admitting.shift()
    }
    guard(this.host, l, 'starting batches', () => this.onReady(l))
    if (l.admitting.length > 0 && admittedOpen(l) < l.admitAhead) l.wakeAdmission()
  }

  /** Admits one event (its call already counted it in the backlog): queued, or dead-lettered. */
  private accept(l: FnLane, item: Item): void {
    const event = item.event
    try {
      const checked = checkEvent(event)
      if (checked.error) {
        item.json = checked.json ?? ''
        item.lastError = checked.error
        deadLetterSoon(this.host, l, item)
        return
      }
      item.json = checked.json
      item.raw = checked.raw
      item.size = checkedSize(checked)
      // A source that redelivers (after a crash) passes its delivery count as `attempt`: those
      // earlier runs count towards maxAttempts, so a message that kills the gateway cannot loop.
      const prior = typeof event.attempt === 'number' && Number.isSafeInteger(event.attempt) && event.attempt > 1 ? event.attempt - 1 : 0
      if (prior > 0) {
        item.attempts = prior
        if (prior >= l.fn.retry.maxAttempts) {
          item.lastError = {
            code: 'SLUICE_ERR_EVENT_REDELIVERY_LIMIT',
            message: `the source delivered the event for attempt ${prior + 1}; retry.maxAttempts is ${l.fn.retry.maxAttempts} (its earlier deliveries ended without an outcome: the gateway crashed while it held the event)`,
            retriable: false,
          }
          deadLetterSoon(this.host, l, item)
          return
        }
      }
      item.key = this.keyOf(l, event)
      l.lane.push(item)
    } catch (e) {
      internal(this.host, l, 'accepting an event', e)
      item.lastError = { code: 'SLUICE_ERR_EVENT_INVALID', message: `the event could not be accepted: ${reasonOf(e)}`, retriable: false }
      deadLetterSoon(this.host, l, item)
    }
  }

  private onReady(l: FnLane): void {
    while (l.held.length > 0 && this.batchDue(l)) this.dispatch(l, l.held.shift() as Lease)
    this.pump(l)
  }

  /** A batch goes now: a full one is ready, or the oldest ready event arrived batch.maxWaitMs ago or more. */
  private batchDue(l: FnLane): boolean {
    const ready = l.lane.readyCount
    return ready >= l.fn.batch.maxSize || (ready > 0 && performance.now() - l.lane.readySince >= l.fn.batch.maxWaitMs)
  }

  /** Asks the scheduler for as many instances as the ready events can fill. */
  private pump(l: FnLane): void {
    if (this.closing || l.closing) return
    const want = Math.ceil(l.lane.readyCount / l.fn.batch.maxSize)
    let have = l.requested + l.held.length
    while (have < want && l.inflight + have < l.fn.maxConcurrency) {
      have++
      l.requested++
      this.opts.scheduler.acquire(l.fn.name).then(
        (lease) => {
          l.requested--
          guard(this.host, l, 'starting a batch', () => this.onLease(l, lease))
        },
        (e: unknown) => {
          l.requested--
          if (!this.closing) guard(this.host, l, 'logging', () => this.opts.log.error({ function: l.fn.name, err: toInfo(e) }, 'could not get an instance'))
        },
      )
    }
  }

  private onLease(l: FnLane, lease: Lease): void {
    if (l.lane.readyCount === 0) {
      lease.release()
      return
    }
    if (this.closing || this.batchDue(l)) {
      this.dispatch(l, lease)
      return
    }
    l.held.push(lease)
    if (!l.waitTimer) {
      // Until the oldest ready event has waited maxWaitMs.
      const left = l.fn.batch.maxWaitMs - (performance.now() - l.lane.readySince)
      l.waitTimer = setTimeout(() => {
        l.waitTimer = undefined
        guard(this.host, l, 'starting a waiting batch', () => {
          while (l.held.length > 0) {
            const h = l.held.shift() as Lease
            if (l.lane.readyCount > 0) this.dispatch(l, h)
            else h.release()
          }
        })
      }, left)
    }
  }

  private dispatch(l: FnLane, lease: Lease): void {
    if (!lease.isCurrent()) {
      // A reload replaced the code while this lease waited for its batch to fill: the batch is
      // formed now, so it runs on a fresh lease of the new version.
      lease.release()
      this.pump(l)
      return
    }
    const items = l.lane.take(l.fn.batch.maxSize, MAX_BATCH_CHARS)
    if (items.length === 0) {
      lease.release()
      return
    }
    l.inflight++
    this.runBatch(l, lease, items)
      .catch((e: unknown) => this.batchFailed(l, items, e))
      .finally(() => {
        l.inflight--
        guard(this.host, l, 'asking for instances', () => this.pump(l))
      })
  }

  /**
   * Backstop for a bug in runBatch: its items that were not handed on are settled as failed
   * with SLUICE_ERR_INTERNAL (retried, then dead-lettered), so no delivery waits forever.
   */
  private batchFailed(l: FnLane, items: Item[], e: unknown): void {
    internal(this.host, l, 'running a batch', e)
    const error: ErrorInfo = { code: 'SLUICE_ERR_INTERNAL', message: `the gateway failed while it ran the batch: ${reasonOf(e)}`, retriable: true }
    const left = items.filter((it) => !it.handled)
    guard(this.host, l, 'settling a failed batch', () => settle(this.host, l, left, () => error))
  }

  private async runBatch(l: FnLane, lease: Lease, items: Item[]): Promise<void> {
    const invocationId = randomUUID()
    for (let i = 0; i < items.length; i++) (items[i] as Item).attempts++
    const json = batchJson(items)
    const t0 = performance.now()
    const r = await runOnLease(this.host, l, lease, json, invocationId)
    let error: ErrorInfo | undefined = r.payload.ok ? undefined : r.payload.error
    let failedIds: Map<string, string | undefined> | undefined
    if (r.payload.ok) {
      error = await publishOutputs(l.fn, r.payload.outputs)
      failedIds = failedOf(r.payload.value)
    }
    const durationMs = performance.now() - t0
    report(this.host, l, {
      invocationId,
      kind: 'batch',
      size: items.length,
      ok: error === undefined,
      failed: error ? items.length : failedIds ? failedIn(failedIds, items) : 0,
      durationMs,
      waitMs: lease.waitMs,
      coldStart: lease.coldStart,
      error,
      logs: r.payload.logs,
      value: r.payload.value,
    })
    const eventFailed = (reason: string | undefined): ErrorInfo => ({
      code: 'SLUICE_ERR_FUNCTION_EVENT_FAILED',
      message: `function ${l.fn.name} reported the event as failed${reason === undefined ? '' : `: ${reason}`} (invocation ${invocationId})`,
      retriable: true,
    })
    settle(this.host, l, items, (it) => (error ? error : failedIds?.has(it.event.id) ? eventFailed(failedIds.get(it.event.id)) : undefined))
  }

  /**
   * Runs `fn` once on exactly `events` (HTTP trigger, admin invoke): no batching, no retry, no
   * dead letter. Throws SLUICE_ERR_ROUTER_OVERLOADED when the backlog is full.
   */
  async invoke(fn: string, events: TriggerEvent[], opts: { signal?: AbortSignal } = {}): Promise<InvocationResult> {
    return invoke(this.host, this.get(fn), fn, events, opts)
  }

  /**
   * Publishes what an invocation a worker host ran on its own wrote to its outputs (direct HTTP):
   * resolves once every binding confirmed, with undefined, or with the error (never rejects).
   */
  publishOutputs(fn: string, outputs: Array<{ name: string; value: unknown }>): Promise<ErrorInfo | undefined> {
    const l = this.lanes.get(fn)
    if (!l) return Promise.resolve({ code: 'SLUICE_ERR_FUNCTION_NOT_FOUND', message: `no function named ${fn}`, retriable: false })
    return publishOutputs(l.fn, outputs)
  }

  /**
   * Records an invocation a worker host ran on its own: an HTTP request on a connection the
   * gateway handed it (src/gateway/direct-http.ts). A function that is gone is ignored.
   */
  recordDirect(fn: string, r: InvocationReport): void {
    const l = this.lanes.get(fn)
    if (!l) return
    report(this.host, l, r)
    l.stats.direct++
    if (r.ok) l.stats.eventsDone++
  }

  /**
   * Stops taking events: queued events and pending retries are answered `aborted` (the source
   * redelivers them), in-flight batches finish (or time out) and their outcomes resolve.
   * Idempotent.
   */
  close(timeoutMs = 30000): Promise<void> {
    this.closePromise ??= this.doClose(timeoutMs)
    return this.closePromise
  }

  private async doClose(timeoutMs: number): Promise<void> {
    this.closing = true
    for (const l of this.lanes.values()) this.abortQueued(l)
    const idle = Promise.all([...this.lanes.values()].map((l) => (l.backlog === 0 ? Promise.resolve() : new Promise<void>((r) => l.idle.push(r)))))
    let timer: NodeJS.Timeout | undefined
    await Promise.race([idle, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))])
    clearTimeout(timer)
  }
}
