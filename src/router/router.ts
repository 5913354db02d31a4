import { randomUUID } from 'node:crypto'
import { deadChannel, invocationChannel, retryChannel, type InvocationMessage } from '../channels.js'
import { SluiceError, toInfo, type ErrorInfo } from '../errors.js'
import { backoffDelay, EVENT_LIMITS, type Flow, type InvocationResult, type Logger, type Outcome, type OutputBinding, type TriggerEvent } from '../sdk/index.js'
import type { Lease, Scheduler } from '../scheduler/scheduler.js'
import type { RunResult } from '../sandbox/pool.js'
import type { RetryConfig } from '../config/schema.js'
import type { Store } from '../store/store.js'
import { LIMITS } from '../sandbox/protocol.js'
import { Delivery, Item, Lane } from './lane.js'
import { FlowControl } from './flow.js'
import { FunctionStats, type InvocationRecord } from './stats.js'
import { letterEvent } from './dead-letter.js'
import { publishOutputs } from './outputs.js'
import { bodyOfRaw, checkEvent, failedOf } from './event-check.js'
import { batchJson } from './batch-json.js'
import { depthExceeds, preview, reasonOf } from './safe-json.js'

export interface RouterFunction {
  name: string
  batch: { maxSize: number; maxWaitMs: number }
  retry: RetryConfig
  maxBacklog: number
  /** source | none | a path such as body.station */
  orderKey: string
  maxConcurrency: number
  outputs: ReadonlyMap<string, OutputBinding>
}

export interface RouterOptions {
  gateway: number
  log: Logger
  scheduler: Scheduler
  store: Store
}

const DONE: Outcome = Object.freeze({ status: 'done' })
const ABORTED: Outcome = Object.freeze({ status: 'aborted' })

/** About the largest batch, in JSON characters (an event alone is at most EVENT_LIMITS.maxChars). */
const MAX_BATCH_CHARS = LIMITS.resultBytes
/** Attempts of a synchronous call whose instance died before the function began. */
const SYNC_NOT_STARTED_TRIES = 3
/** How often a failed dead-letter write is tried again: the event is not acked until it lands. */
const DEAD_LETTER_RETRY_MS = 1000

interface FnLane {
  fn: RouterFunction
  lane: Lane
  keyPath: string[] | undefined
  backlog: number
  inflight: number
  requested: number
  held: Lease[]
  waitTimer: NodeJS.Timeout | undefined
  retryTimers: Map<NodeJS.Timeout, Item[]>
  flow: FlowControl
  stats: FunctionStats
  idle: Array<() => void>
  /** Being removed (hot reload): answers new events `aborted`, starts no batch. */
  closing?: boolean
}

/**
 * Batches events per function, runs them through the scheduler, retries with backoff, dead-letters
 * what exhausts its attempts, and resolves each event's outcome once that outcome is durable.
 */
export class Router {
  private readonly lanes = new Map<string, FnLane>()
  private closing = false
  private closePromise: Promise<void> | undefined

  constructor(private readonly opts: RouterOptions) {}

  register(fn: RouterFunction): void {
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
      stats: new FunctionStats(),
      idle: [],
    })
  }

  /**
   * Applies a function's new batch, retry, concurrency and output settings in place (hot reload):
   * queued events and the next batches use them; running batches finish as they started.
   * `orderKey` and `maxBacklog` cannot change here (remove and register the function instead).
   */
  update(fn: RouterFunction): void {
    const l = this.get(fn.name)
    l.fn = { ...fn, orderKey: l.fn.orderKey, maxBacklog: l.fn.maxBacklog }
    this.guard(l, 'starting batches', () => this.onReady(l))
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

  /** Answers a lane's queued events, held leases and pending retries `aborted`. */
  private abortQueued(l: FnLane): void {
    if (l.waitTimer) clearTimeout(l.waitTimer)
    l.waitTimer = undefined
    for (const lease of l.held.splice(0)) lease.release()
    for (const [timer, items] of l.retryTimers) {
      clearTimeout(timer)
      for (const it of items) this.finish(l, it, ABORTED)
    }
    l.retryTimers.clear()
    for (const it of l.lane.drain()) this.finish(l, it, ABORTED)
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
   * Runs `fn`, logging (never throwing) what escapes it: for code reached from timers and promise
   * callbacks, where a throw would be an uncaught exception or an unhandled rejection.
   */
  private guard(l: FnLane, what: string, fn: () => void): void {
    try {
      fn()
    } catch (e) {
      this.internal(l, what, e)
    }
  }

  private internal(l: FnLane, what: string, e: unknown): void {
    try {
      this.opts.log.error(
        {
          function: l.fn.name,
          component: 'router',
          err: { code: 'SLUICE_ERR_INTERNAL', message: reasonOf(e), stack: e instanceof Error ? e.stack : undefined },
        },
        `router: ${what} failed`,
      )
    } catch {
      // a logger that throws has nothing left to tell
    }
  }

  /**
   * Accepts events for `fn` and resolves with one outcome per event once every outcome is
   * durable. After close() begins, events are answered `aborted` (the source keeps them).
   */
  deliver(fn: string, events: TriggerEvent[]): Promise<Outcome[]> {
    const l = this.get(fn)
    if (this.closing || l.closing) return Promise.resolve(events.map(() => ABORTED))
    if (events.length === 0) return Promise.resolve([])
    return new Promise<Outcome[]>((resolve) => {
      const delivery = new Delivery(events.length, resolve)
      // One clock read per call, not per event: deliveries of one call arrived together.
      const mono = performance.now()
      const wall = Date.now()
      for (let i = 0; i < events.length; i++) this.accept(l, new Item(events[i] as TriggerEvent, delivery, i, mono, wall))
      this.guard(l, 'starting batches', () => this.onReady(l))
    })
  }

  private accept(l: FnLane, item: Item): void {
    l.backlog++
    l.flow.update(l.backlog)
    const event = item.event
    try {
      const checked = checkEvent(event)
      item.json = checked.json ?? ''
      item.rawAt = checked.rawAt ?? 0
      if (checked.error) {
        item.lastError = checked.error
        this.deadLetterSoon(l, item)
        return
      }
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
          this.deadLetterSoon(l, item)
          return
        }
      }
      item.key = this.keyOf(l, event)
      l.lane.push(item)
    } catch (e) {
      this.internal(l, 'accepting an event', e)
      item.lastError = { code: 'SLUICE_ERR_EVENT_INVALID', message: `the event could not be accepted: ${reasonOf(e)}`, retriable: false }
      this.deadLetterSoon(l, item)
    }
  }

  /** Records an item's final outcome; resolves its delivery when it was the last one. */
  private finish(l: FnLane, item: Item, o: Outcome): void {
    if (item.final) return
    item.final = true
    item.handled = true
    l.backlog--
    l.flow.update(l.backlog)
    if (o.status === 'done') l.stats.eventsDone++
    else if (o.status === 'dead') l.stats.eventsDead++
    const d = item.delivery
    d.outcomes[item.index] = o
    if (--d.pending === 0) d.resolve(d.outcomes)
    if (l.backlog === 0) for (const f of l.idle.splice(0)) f()
  }

  private onReady(l: FnLane): void {
    while (l.held.length > 0 && l.lane.readyCount >= l.fn.batch.maxSize) this.dispatch(l, l.held.shift() as Lease)
    this.pump(l)
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
          this.guard(l, 'starting a batch', () => this.onLease(l, lease))
        },
        (e: unknown) => {
          l.requested--
          if (!this.closing) this.guard(l, 'logging', () => this.opts.log.error({ function: l.fn.name, err: toInfo(e) }, 'could not get an instance'))
        },
      )
    }
  }

  private onLease(l: FnLane, lease: Lease): void {
    if (l.lane.readyCount === 0) {
      lease.release()
      return
    }
    const waited = performance.now() - l.lane.readySince
    if (this.closing || l.lane.readyCount >= l.fn.batch.maxSize || waited >= l.fn.batch.maxWaitMs) {
      this.dispatch(l, lease)
      return
    }
    l.held.push(lease)
    if (!l.waitTimer) {
      l.waitTimer = setTimeout(() => {
        l.waitTimer = undefined
        this.guard(l, 'starting a waiting batch', () => {
          while (l.held.length > 0) {
            const h = l.held.shift() as Lease
            if (l.lane.readyCount > 0) this.dispatch(l, h)
            else h.release()
          }
        })
      }, l.fn.batch.maxWaitMs - waited)
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
        this.guard(l, 'asking for instances', () => this.pump(l))
      })
  }

  /**
   * Backstop for a bug in runBatch: its items that were not handed on are settled as failed
   * with SLUICE_ERR_INTERNAL (retried, then dead-lettered), so no delivery waits forever.
   */
  private batchFailed(l: FnLane, items: Item[], e: unknown): void {
    this.internal(l, 'running a batch', e)
    const error: ErrorInfo = { code: 'SLUICE_ERR_INTERNAL', message: `the gateway failed while it ran the batch: ${reasonOf(e)}`, retriable: true }
    const left = items.filter((it) => !it.handled)
    this.guard(l, 'settling a failed batch', () => this.settle(l, left, () => error))
  }

  private async runBatch(l: FnLane, lease: Lease, items: Item[]): Promise<void> {
    const invocationId = randomUUID()
    for (let i = 0; i < items.length; i++) (items[i] as Item).attempts++
    const json = batchJson(items)
    const t0 = performance.now()
    const r = await this.run(l, lease, json, invocationId)
    let error: ErrorInfo | undefined = r.payload.ok ? undefined : r.payload.error
    let failedIds: Map<string, string | undefined> | undefined
    if (r.payload.ok) {
      error = await publishOutputs(l.fn, r.payload.outputs)
      failedIds = failedOf(r.payload.value)
    }
    const durationMs = performance.now() - t0
    const ids = new Set(items.map((it) => it.event.id))
    this.report(l, {
      invocationId,
      kind: 'batch',
      size: items.length,
      ok: error === undefined,
      failed: error ? items.length : failedIds ? [...failedIds.keys()].filter((id) => ids.has(id)).length : 0,
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
    this.settle(l, items, (it) => (error ? error : failedIds?.has(it.event.id) ? eventFailed(failedIds.get(it.event.id)) : undefined))
  }

  /** Runs a batch on its lease and releases the lease; a lease that throws is a crashed run. */
  private async run(l: FnLane, lease: Lease, json: string, invocationId: string): Promise<RunResult> {
    try {
      return await lease.run(json, invocationId)
    } catch (e) {
      this.internal(l, 'running an invocation', e)
      return {
        payload: {
          ok: false,
          error: { code: 'SLUICE_ERR_FUNCTION_CRASHED', message: `the invocation failed in the gateway: ${reasonOf(e)}`, retriable: true },
          outputs: [],
          logs: [],
        },
        lost: true,
        cpuMs: 0,
        hostMs: 0,
      }
    } finally {
      this.guard(l, 'releasing an instance', () => lease.release())
    }
  }

  /**
   * Resolves finished items, schedules retries and writes dead letters. A key stays locked until
   * its retried items are back in the queue (at the front) and its dead letters are durable.
   */
  private settle(l: FnLane, items: Item[], errorOf: (it: Item) => ErrorInfo | undefined): void {
    const byKey = new Map<string | undefined, Item[]>()
    for (const it of items) it.handled = true
    for (const it of items) {
      const err = errorOf(it)
      if (err === undefined) {
        this.finish(l, it, DONE)
        continue
      }
      it.lastError = err
      const group = it.key === undefined ? [] : (byKey.get(it.key) ?? [])
      group.push(it)
      if (it.key !== undefined) byKey.set(it.key, group)
      else this.retryOrDead(l, [it], undefined)
    }
    for (const key of new Set(items.map((it) => it.key))) {
      if (key === undefined) continue
      const failed = byKey.get(key)
      if (failed) this.retryOrDead(l, failed, key)
      else l.lane.unlock(key)
    }
  }

  private retryOrDead(l: FnLane, failed: Item[], key: string | undefined): void {
    const retry: Item[] = []
    const dead: Item[] = []
    for (const it of failed) {
      const err = it.lastError as ErrorInfo
      if (!err.retriable || it.attempts >= l.fn.retry.maxAttempts) dead.push(it)
      else if (this.closing || l.closing) this.finish(l, it, ABORTED)
      else retry.push(it)
    }
    // deadLetter never rejects.
    const deadDone = Promise.all(dead.map((it) => this.deadLetter(l, it)))
    if (retry.length === 0) {
      // The key's next events wait for this unlock: pump, or they wait for an unrelated event.
      if (key !== undefined)
        void deadDone.then(() =>
          this.guard(l, 'unlocking a key', () => {
            l.lane.unlock(key)
            this.onReady(l)
          }),
        )
      return
    }
    const attempts = Math.max(...retry.map((it) => it.attempts))
    const delayMs = backoffDelay(l.fn.retry, attempts)
    l.stats.retries += retry.length
    if (retryChannel.hasSubscribers) {
      for (const it of retry) {
        retryChannel.publish({
          gateway: this.opts.gateway,
          function: l.fn.name,
          eventId: it.event.id,
          attempt: it.attempts,
          delayMs,
          error: it.lastError as ErrorInfo,
        })
      }
    }
    const timer = setTimeout(() => {
      l.retryTimers.delete(timer)
      void deadDone.then(() =>
        this.guard(l, 'queueing a retry', () => {
          if (this.closing || l.closing) {
            for (const it of retry) this.finish(l, it, ABORTED)
            return
          }
          for (let i = retry.length - 1; i >= 0; i--) l.lane.push(retry[i] as Item, true)
          if (key !== undefined) l.lane.unlock(key)
          this.onReady(l)
        }),
      )
    }, delayMs)
    l.retryTimers.set(timer, retry)
  }

  /** Dead-letters an item from a synchronous path (admission): its outcome resolves later. */
  private deadLetterSoon(l: FnLane, it: Item): void {
    it.handled = true
    void this.deadLetter(l, it)
  }

  /**
   * Writes the item's dead letter and resolves its outcome `dead` once it is durable. Never
   * rejects: a failed write is retried (the event is not acked until it lands) until shutdown,
   * which answers it `aborted`.
   */
  private async deadLetter(l: FnLane, it: Item): Promise<void> {
    const error: ErrorInfo = it.lastError ?? { code: 'SLUICE_ERR_INTERNAL', message: 'dead-lettered without an error', retriable: false }
    let event: TriggerEvent
    try {
      event = letterEvent(it.event, it.json || undefined)
    } catch (e) {
      this.internal(l, 'building a dead letter', e)
      event = {
        id: typeof it.event?.id === 'string' ? it.event.id : '',
        source: '',
        time: new Date(it.firstAttemptAt).toISOString(),
        body: null,
        meta: { bodyDropped: reasonOf(e) },
      }
    }
    // One id for every try: a write that landed although its answer was lost (the store's
    // connection broke) is not written twice by the retry.
    const letterId = randomUUID()
    for (;;) {
      let id: string
      try {
        id = await this.opts.store.putDeadLetter({
          id: letterId,
          function: l.fn.name,
          event,
          error,
          attempts: it.attempts,
          firstAttemptAt: new Date(it.firstAttemptAt).toISOString(),
          failedAt: new Date().toISOString(),
        })
      } catch (e) {
        // Not durable, so not acknowledged: keep trying; shutdown gives up and leaves it at the source.
        this.guard(l, 'logging', () =>
          this.opts.log.error({ function: l.fn.name, eventId: event.id, err: toInfo(e, 'SLUICE_ERR_STORE_OPEN') }, 'dead-letter write failed; retrying'),
        )
        if (this.closing) {
          this.guard(l, 'answering an event', () => this.finish(l, it, ABORTED))
          return
        }
        await new Promise((r) => setTimeout(r, DEAD_LETTER_RETRY_MS))
        continue
      }
      this.guard(l, 'logging a dead letter', () => {
        this.opts.log.warn({ function: l.fn.name, eventId: event.id, deadLetterId: id, attempts: it.attempts, err: error }, 'event dead-lettered')
        if (deadChannel.hasSubscribers) {
          deadChannel.publish({ gateway: this.opts.gateway, function: l.fn.name, eventId: event.id, deadLetterId: id, attempts: it.attempts, error })
        }
      })
      this.guard(l, 'answering an event', () => this.finish(l, it, { status: 'dead', deadLetterId: id, error }))
      return
    }
  }

  private report(l: FnLane, r: Omit<InvocationMessage, 'gateway' | 'function'> & { logs: InvocationResult['logs']; value: unknown }): void {
    this.guard(l, 'reporting an invocation', () => {
      const { logs, value, ...msg } = r
      const record: InvocationRecord = { ...msg, time: new Date().toISOString(), logs }
      if (record.error === undefined) delete record.error
      if (r.ok) record.result = preview(value, PREVIEW_CHARS)
      l.stats.record(record)
      if (invocationChannel.hasSubscribers) invocationChannel.publish({ gateway: this.opts.gateway, function: l.fn.name, ...msg })
      const log = this.opts.log
      for (const line of logs) log[line.level]({ function: l.fn.name, invocationId: r.invocationId, source: 'function' }, line.msg)
      if (r.coldStart) log.info({ function: l.fn.name, invocationId: r.invocationId, ms: round(r.durationMs) }, 'cold start')
      if (r.error) log.warn({ function: l.fn.name, invocationId: r.invocationId, size: r.size, err: r.error }, 'invocation failed')
    })
  }

  /**
   * Runs `fn` once on exactly `events` (HTTP trigger, admin invoke): no batching, no retry, no
   * dead letter. Throws SLUICE_ERR_ROUTER_OVERLOADED when the backlog is full.
   */
  async invoke(fn: string, events: TriggerEvent[], opts: { signal?: AbortSignal } = {}): Promise<InvocationResult> {
    const l = this.get(fn)
    if (this.closing) throw new SluiceError('SLUICE_ERR_ROUTER_CLOSED', 'the gateway is shutting down')
    if (l.closing)
      throw new SluiceError('SLUICE_ERR_ROUTER_CLOSED', `function ${fn} is being removed or restarted by a reload: try again`, { context: { function: fn } })
    if (l.backlog + events.length > l.fn.maxBacklog) {
      throw new SluiceError('SLUICE_ERR_ROUTER_OVERLOADED', `function ${fn} has ${l.backlog} events waiting (maxBacklog ${l.fn.maxBacklog})`, {
        context: { function: fn },
      })
    }
    const parts: Array<{ json: string; rawAt: number; attempts: number }> = []
    for (let i = 0; i < events.length; i++) {
      const e = events[i] as TriggerEvent
      const checked = checkEvent(e !== null && typeof e === 'object' ? { ...e, attempt: undefined, id: e.id || `${i}` } : e)
      if (checked.error)
        throw new SluiceError(checked.error.code, events.length === 1 ? checked.error.message : `event ${i}: ${checked.error.message}`, {
          context: { function: fn },
        })
      parts.push({ json: checked.json, rawAt: checked.rawAt ?? 0, attempts: 1 })
    }
    const json = batchJson(parts)
    l.backlog += events.length
    l.flow.update(l.backlog)
    const invocationId = randomUUID()
    const t0 = performance.now()
    try {
      let lease = await this.opts.scheduler.acquire(fn, opts.signal)
      let r = await this.run(l, lease, json, invocationId)
      // A host that died before the function began (e.g. during a cold start) did nothing: run
      // the call on another instance rather than fail a request that never ran.
      for (let tries = 1; r.notStarted && tries < SYNC_NOT_STARTED_TRIES && !this.closing; tries++) {
        lease = await this.opts.scheduler.acquire(fn, opts.signal)
        r = await this.run(l, lease, json, invocationId)
      }
      let error = r.payload.ok ? undefined : r.payload.error
      // The value goes back to the caller as JSON (an HTTP reply): refuse what cannot be serialized.
      if (!error && depthExceeds(r.payload.value, EVENT_LIMITS.maxDepth)) {
        error = {
          code: 'SLUICE_ERR_FUNCTION_RESULT_INVALID',
          message: `function ${fn} returned a value nested more than ${EVENT_LIMITS.maxDepth} levels deep`,
          retriable: false,
        }
      }
      if (!error) error = await publishOutputs(l.fn, r.payload.outputs)
      const durationMs = performance.now() - t0
      const failed = error ? events.length : this.failedCount(r.payload.value, events)
      this.report(l, {
        invocationId,
        kind: 'sync',
        size: events.length,
        ok: !error,
        failed,
        durationMs,
        waitMs: lease.waitMs,
        coldStart: lease.coldStart,
        error,
        logs: r.payload.logs,
        value: r.payload.value,
      })
      // A synchronous call's events end with the call: done unless it failed (no dead letters here).
      l.stats.eventsDone += events.length - failed
      const result: InvocationResult = { invocationId, ok: !error, logs: r.payload.logs, outputs: r.payload.outputs, durationMs, coldStart: lease.coldStart }
      if (r.payload.logsDropped) result.logsDropped = r.payload.logsDropped
      if (error) result.error = error
      else result.value = r.payload.value
      return result
    } finally {
      l.backlog -= events.length
      l.flow.update(l.backlog)
      if (l.backlog === 0) for (const f of l.idle.splice(0)) f()
    }
  }

  /** How many of `events` a result's `{ failed }` list names. */
  private failedCount(value: unknown, events: TriggerEvent[]): number {
    const failed = failedOf(value)
    if (!failed) return 0
    let n = 0
    for (let i = 0; i < events.length; i++) if (failed.has((events[i] as TriggerEvent).id || `${i}`)) n++
    return n
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

const round = (n: number) => Math.round(n * 100) / 100

/** The start of a result's JSON kept in the recent-invocations list. */
const PREVIEW_CHARS = 2048
