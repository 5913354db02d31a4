import { randomUUID } from 'node:crypto'
import { deadChannel, invocationChannel, retryChannel, type InvocationMessage } from '../channels.js'
import { SluiceError, toInfo, type ErrorInfo } from '../errors.js'
import { backoffDelay, type Flow, type InvocationResult, type Logger, type Outcome, type OutputBinding, type TriggerEvent } from '../sdk/index.js'
import type { Lease, Scheduler } from '../scheduler/scheduler.js'
import type { RunResult } from '../sandbox/pool.js'
import type { RetryConfig } from '../config/schema.js'
import type { Store } from '../store/store.js'
import { LIMITS } from '../sandbox/protocol.js'
import { Delivery, Item, Lane } from './lane.js'
import { FlowControl } from './flow.js'
import { FunctionStats, type InvocationRecord } from './stats.js'

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

/** Largest event, and about the largest batch, in JSON characters. */
const MAX_EVENT_CHARS = LIMITS.resultBytes
const MAX_BATCH_CHARS = LIMITS.resultBytes
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
    let v: unknown = e
    for (const p of l.keyPath) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[p] : undefined
    if (v === undefined || v === null) return e.key
    return typeof v === 'string' ? v : JSON.stringify(v)
  }

  /**
   * Accepts events for `fn` and resolves with one outcome per event once every outcome is
   * durable. After close() begins, events are answered `aborted` (the source keeps them).
   */
  deliver(fn: string, events: TriggerEvent[]): Promise<Outcome[]> {
    const l = this.get(fn)
    if (this.closing) return Promise.resolve(events.map(() => ABORTED))
    if (events.length === 0) return Promise.resolve([])
    return new Promise<Outcome[]>((resolve) => {
      const delivery = new Delivery(events.length, resolve)
      // One clock read per call, not per event: deliveries of one call arrived together.
      const mono = performance.now()
      const wall = Date.now()
      for (let i = 0; i < events.length; i++) this.accept(l, new Item(events[i] as TriggerEvent, delivery, i, mono, wall))
      this.onReady(l)
    })
  }

  private accept(l: FnLane, item: Item): void {
    l.backlog++
    l.flow.update(l.backlog)
    const event = item.event
    let invalid: string | undefined
    try {
      // `attempt` is the router's to set: a connector's value only seeds the count (below).
      const json = JSON.stringify(event.attempt === undefined ? event : { ...event, attempt: undefined })
      item.json = json
      if (typeof json !== 'string' || json.charCodeAt(0) !== 123 /* { */) invalid = 'the event is not a JSON object'
      else if (json.length > MAX_EVENT_CHARS) invalid = `the event is ${json.length} characters of JSON; the limit is ${MAX_EVENT_CHARS}`
      else if (typeof event.id !== 'string' || event.id === '') invalid = 'the event has no id'
    } catch (err) {
      invalid = `the event is not JSON data: ${(err as Error).message}`
    }
    if (invalid !== undefined) {
      item.lastError = { code: 'SLUICE_ERR_EVENT_INVALID', message: invalid, retriable: false }
      void this.deadLetter(l, item)
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
        void this.deadLetter(l, item)
        return
      }
    }
    item.key = this.keyOf(l, event)
    l.lane.push(item)
  }

  /** Records an item's final outcome; resolves its delivery when it was the last one. */
  private finish(l: FnLane, item: Item, o: Outcome): void {
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
    if (this.closing) return
    const want = Math.ceil(l.lane.readyCount / l.fn.batch.maxSize)
    let have = l.requested + l.held.length
    while (have < want && l.inflight + have < l.fn.maxConcurrency) {
      have++
      l.requested++
      this.opts.scheduler.acquire(l.fn.name).then(
        (lease) => {
          l.requested--
          this.onLease(l, lease)
        },
        (e: unknown) => {
          l.requested--
          if (!this.closing) this.opts.log.error({ function: l.fn.name, err: toInfo(e) }, 'could not get an instance')
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
        while (l.held.length > 0) {
          const h = l.held.shift() as Lease
          if (l.lane.readyCount > 0) this.dispatch(l, h)
          else h.release()
        }
      }, l.fn.batch.maxWaitMs - waited)
    }
  }

  private dispatch(l: FnLane, lease: Lease): void {
    const items = l.lane.take(l.fn.batch.maxSize, MAX_BATCH_CHARS)
    if (items.length === 0) {
      lease.release()
      return
    }
    l.inflight++
    void this.runBatch(l, lease, items).finally(() => {
      l.inflight--
      this.pump(l)
    })
  }

  private async runBatch(l: FnLane, lease: Lease, items: Item[]): Promise<void> {
    const invocationId = randomUUID()
    let json = '['
    for (let i = 0; i < items.length; i++) {
      const it = items[i] as Item
      it.attempts++
      json += `${i ? ',' : ''}{"attempt":${it.attempts},${it.json.slice(1)}`
    }
    json += ']'
    const t0 = performance.now()
    let r: RunResult
    try {
      r = await lease.run(json, invocationId)
    } finally {
      lease.release()
    }
    let error: ErrorInfo | undefined = r.payload.ok ? undefined : r.payload.error
    let failedIds: Set<string> | undefined
    if (r.payload.ok) {
      error = await this.publishOutputs(l, r.payload.outputs)
      const failed = (r.payload.value as { failed?: unknown } | null)?.failed
      if (Array.isArray(failed)) failedIds = new Set(failed.filter((x): x is string => typeof x === 'string'))
    }
    const durationMs = performance.now() - t0
    this.report(l, {
      invocationId,
      kind: 'batch',
      size: items.length,
      ok: error === undefined,
      failed: error ? items.length : (failedIds?.size ?? 0),
      durationMs,
      waitMs: lease.waitMs,
      coldStart: lease.coldStart,
      error,
      logs: r.payload.logs,
      value: r.payload.value,
    })
    const eventFailed: ErrorInfo = {
      code: 'SLUICE_ERR_FUNCTION_EVENT_FAILED',
      message: `function ${l.fn.name} reported the event as failed (invocation ${invocationId})`,
      retriable: true,
    }
    this.settle(l, items, (it) => (error ? error : failedIds?.has(it.event.id) ? eventFailed : undefined))
  }

  /** Publishes outputs; resolves with the error that fails the batch, if any. */
  private async publishOutputs(l: FnLane, outputs: Array<{ name: string; value: unknown }>): Promise<ErrorInfo | undefined> {
    if (outputs.length === 0) return undefined
    const byName = new Map<string, unknown[]>()
    for (const o of outputs) {
      const list = byName.get(o.name)
      if (list) list.push(o.value)
      else byName.set(o.name, [o.value])
    }
    try {
      await Promise.all(
        [...byName].map(([name, values]) => {
          const binding = l.fn.outputs.get(name)
          if (!binding) throw new SluiceError('SLUICE_ERR_FUNCTION_OUTPUT_UNKNOWN', `output ${name} is not configured for function ${l.fn.name}`)
          return binding.publish(values)
        }),
      )
      return undefined
    } catch (e) {
      const info = toInfo(e, 'SLUICE_ERR_OUTPUT_FAILED')
      return info.code === 'SLUICE_ERR_FUNCTION_OUTPUT_UNKNOWN' ? info : { ...info, code: 'SLUICE_ERR_OUTPUT_FAILED', retriable: true }
    }
  }

  /**
   * Resolves finished items, schedules retries and writes dead letters. A key stays locked until
   * its retried items are back in the queue (at the front) and its dead letters are durable.
   */
  private settle(l: FnLane, items: Item[], errorOf: (it: Item) => ErrorInfo | undefined): void {
    const byKey = new Map<string | undefined, Item[]>()
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
      else if (this.closing) this.finish(l, it, ABORTED)
      else retry.push(it)
    }
    const deadDone = Promise.all(dead.map((it) => this.deadLetter(l, it)))
    if (retry.length === 0) {
      // The key's next events wait for this unlock: pump, or they wait for an unrelated event.
      if (key !== undefined)
        void deadDone.then(() => {
          l.lane.unlock(key)
          this.onReady(l)
        })
      return
    }
    const attempts = Math.max(...retry.map((it) => it.attempts))
    const delayMs = backoffDelay(l.fn.retry, attempts)
    l.stats.retries += retry.length
    if (retryChannel.hasSubscribers) {
      for (const it of retry) {
        retryChannel.publish({ gateway: this.opts.gateway, function: l.fn.name, eventId: it.event.id, attempt: it.attempts, delayMs, error: it.lastError as ErrorInfo })
      }
    }
    const timer = setTimeout(() => {
      l.retryTimers.delete(timer)
      void deadDone.then(() => {
        if (this.closing) {
          for (const it of retry) this.finish(l, it, ABORTED)
          return
        }
        for (let i = retry.length - 1; i >= 0; i--) l.lane.push(retry[i] as Item, true)
        if (key !== undefined) l.lane.unlock(key)
        this.onReady(l)
      })
    }, delayMs)
    l.retryTimers.set(timer, retry)
  }

  private async deadLetter(l: FnLane, it: Item): Promise<void> {
    const error = it.lastError as ErrorInfo
    let event: TriggerEvent
    try {
      event = JSON.parse(it.json || 'null') as TriggerEvent
      if (event === null) throw new Error('not JSON')
    } catch {
      event = { id: String(it.event.id), source: String(it.event.source), time: String(it.event.time), body: String(it.event.body), meta: {} }
    }
    for (;;) {
      try {
        const id = await this.opts.store.putDeadLetter({
          function: l.fn.name,
          event,
          error,
          attempts: it.attempts,
          firstAttemptAt: new Date(it.firstAttemptAt).toISOString(),
          failedAt: new Date().toISOString(),
        })
        this.opts.log.warn({ function: l.fn.name, eventId: event.id, deadLetterId: id, attempts: it.attempts, err: error }, 'event dead-lettered')
        if (deadChannel.hasSubscribers) {
          deadChannel.publish({ gateway: this.opts.gateway, function: l.fn.name, eventId: event.id, deadLetterId: id, attempts: it.attempts, error })
        }
        this.finish(l, it, { status: 'dead', deadLetterId: id, error })
        return
      } catch (e) {
        // Not durable, so not acknowledged: keep trying; shutdown gives up and leaves it at the source.
        this.opts.log.error({ function: l.fn.name, eventId: event.id, err: toInfo(e, 'SLUICE_ERR_STORE_OPEN') }, 'dead-letter write failed; retrying')
        if (this.closing) {
          this.finish(l, it, ABORTED)
          return
        }
        await new Promise((r) => setTimeout(r, DEAD_LETTER_RETRY_MS))
      }
    }
  }

  private report(l: FnLane, r: Omit<InvocationMessage, 'gateway' | 'function'> & { logs: InvocationResult['logs']; value: unknown }): void {
    const { logs, value, ...msg } = r
    const record: InvocationRecord = { ...msg, time: new Date().toISOString(), logs }
    if (record.error === undefined) delete record.error
    if (r.ok) record.result = preview(value)
    l.stats.record(record)
    if (invocationChannel.hasSubscribers) invocationChannel.publish({ gateway: this.opts.gateway, function: l.fn.name, ...msg })
    const log = this.opts.log
    for (const line of logs) log[line.level]({ function: l.fn.name, invocationId: r.invocationId, source: 'function' }, line.msg)
    if (r.coldStart) log.info({ function: l.fn.name, invocationId: r.invocationId, ms: round(r.durationMs) }, 'cold start')
    if (r.error) log.warn({ function: l.fn.name, invocationId: r.invocationId, size: r.size, err: r.error }, 'invocation failed')
  }

  /**
   * Runs `fn` once on exactly `events` (HTTP trigger, admin invoke): no batching, no retry, no
   * dead letter. Throws SLUICE_ERR_ROUTER_OVERLOADED when the backlog is full.
   */
  async invoke(fn: string, events: TriggerEvent[], opts: { signal?: AbortSignal } = {}): Promise<InvocationResult> {
    const l = this.get(fn)
    if (this.closing) throw new SluiceError('SLUICE_ERR_ROUTER_CLOSED', 'the gateway is shutting down')
    if (l.backlog + events.length > l.fn.maxBacklog) {
      throw new SluiceError('SLUICE_ERR_ROUTER_OVERLOADED', `function ${fn} has ${l.backlog} events waiting (maxBacklog ${l.fn.maxBacklog})`, { context: { function: fn } })
    }
    let json: string
    try {
      json = JSON.stringify(events.map((e, i) => ({ ...e, attempt: 1, id: e.id || `${i}` })))
    } catch (e) {
      throw new SluiceError('SLUICE_ERR_EVENT_INVALID', `events are not JSON data: ${(e as Error).message}`)
    }
    l.backlog += events.length
    l.flow.update(l.backlog)
    const invocationId = randomUUID()
    const t0 = performance.now()
    try {
      const lease = await this.opts.scheduler.acquire(fn, opts.signal)
      let r: RunResult
      try {
        r = await lease.run(json, invocationId)
      } finally {
        lease.release()
      }
      let error = r.payload.ok ? undefined : r.payload.error
      if (!error) error = await this.publishOutputs(l, r.payload.outputs)
      const durationMs = performance.now() - t0
      this.report(l, { invocationId, kind: 'sync', size: events.length, ok: !error, failed: error ? events.length : 0, durationMs, waitMs: lease.waitMs, coldStart: lease.coldStart, error, logs: r.payload.logs, value: r.payload.value })
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
    for (const l of this.lanes.values()) {
      if (l.waitTimer) clearTimeout(l.waitTimer)
      for (const lease of l.held.splice(0)) lease.release()
      for (const [timer, items] of l.retryTimers) {
        clearTimeout(timer)
        for (const it of items) this.finish(l, it, ABORTED)
      }
      l.retryTimers.clear()
      for (const it of l.lane.drain()) this.finish(l, it, ABORTED)
      l.flow.release()
    }
    const idle = Promise.all(
      [...this.lanes.values()].map((l) => (l.backlog === 0 ? Promise.resolve() : new Promise<void>((r) => l.idle.push(r)))),
    )
    let timer: NodeJS.Timeout | undefined
    await Promise.race([idle, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))])
    clearTimeout(timer)
  }
}

const round = (n: number) => Math.round(n * 100) / 100

/** The start of a result's JSON, for the recent-invocations list. */
function preview(value: unknown): string {
  const s = JSON.stringify(value ?? null)
  return s.length > PREVIEW_CHARS ? `${s.slice(0, PREVIEW_CHARS)}...` : s
}
const PREVIEW_CHARS = 2048
