/**
 * The synchronous call path (HTTP trigger, admin invoke): runs a function once on exactly the
 * given events, with no batching, no retry and no dead letter.
 * Contract: `invoke` throws SLUICE_ERR_ROUTER_CLOSED while the router or the function closes,
 * SLUICE_ERR_ROUTER_OVERLOADED when the events do not fit the backlog, and an event's admission
 * code when an event is invalid; otherwise it resolves with the InvocationResult (a failed
 * function is `ok: false`, not a rejection). The events count towards the lane's backlog while
 * the call runs. A run whose instance died before the function began is tried again, up to
 * SYNC_NOT_STARTED_TRIES runs in all.
 */
import { randomUUID } from 'node:crypto'
import { SluiceError } from '../errors.js'
import type { InvocationResult, TriggerEvent } from '../sdk/index.js'
import { publishOutputs } from './outputs.js'
import { checkEvent, failedOf, syncResultError } from './event-check.js'
import { type BatchPart, batchJson } from './batch-json.js'
import { report } from './report.js'
import { type FnLane, type RouterHost, runOnLease } from './lane-state.js'

/** Attempts of a synchronous call whose instance died before the function began. */
const SYNC_NOT_STARTED_TRIES = 3

/** The error of a synchronous call that finds `backlog` events of `fn` waiting, `maxBacklog` at most. */
export function overloaded(fn: string, backlog: number, maxBacklog: number): SluiceError {
  return new SluiceError('SLUICE_ERR_ROUTER_OVERLOADED', `function ${fn} has ${backlog} events waiting (maxBacklog ${maxBacklog})`, {
    context: { function: fn },
  })
}

/** Runs function `fn` (whose lane is `l`) once on `events`; see the file header for the contract. */
export async function invoke(h: RouterHost, l: FnLane, fn: string, events: TriggerEvent[], opts: { signal?: AbortSignal } = {}): Promise<InvocationResult> {
  if (h.closing()) throw new SluiceError('SLUICE_ERR_ROUTER_CLOSED', 'the gateway is shutting down')
  if (l.closing)
    throw new SluiceError('SLUICE_ERR_ROUTER_CLOSED', `function ${fn} is being removed or restarted by a reload: try again`, { context: { function: fn } })
  if (l.backlog + events.length > l.fn.maxBacklog) throw overloaded(fn, l.backlog, l.fn.maxBacklog)
  const parts: BatchPart[] = []
  for (let i = 0; i < events.length; i++) {
    const e = events[i] as TriggerEvent
    const checked = checkEvent(asChecked(e, i))
    if (checked.error)
      throw new SluiceError(checked.error.code, events.length === 1 ? checked.error.message : `event ${i}: ${checked.error.message}`, {
        context: { function: fn },
      })
    parts.push({ json: checked.json, raw: checked.raw, attempts: 1 })
  }
  const json = batchJson(parts)
  l.backlog += events.length
  l.flow.update(l.backlog)
  const invocationId = randomUUID()
  const t0 = performance.now()
  try {
    let lease = await h.opts.scheduler.acquire(fn, opts.signal)
    let r = await runOnLease(h, l, lease, json, invocationId)
    // A host that died before the function began (e.g. during a cold start) did nothing: run
    // the call on another instance rather than fail a request that never ran.
    for (let tries = 1; r.notStarted && tries < SYNC_NOT_STARTED_TRIES && !h.closing(); tries++) {
      lease = await h.opts.scheduler.acquire(fn, opts.signal)
      r = await runOnLease(h, l, lease, json, invocationId)
    }
    let error = r.payload.ok ? undefined : r.payload.error
    // The value goes back to the caller as JSON (an HTTP reply): refuse what cannot be serialized.
    error ??= syncResultError(fn, r.payload.value)
    if (!error && r.payload.outputs.length > 0) error = await publishOutputs(l.fn, r.payload.outputs)
    const durationMs = performance.now() - t0
    const failed = error ? events.length : failedCount(r.payload.value, events)
    report(h, l, {
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

/**
 * The event checkEvent sees: without `attempt`, with its index as id when it has none. A plain
 * object that already is so (an HTTP request's event) goes as it is, without a copy.
 */
function asChecked(e: TriggerEvent, i: number): TriggerEvent {
  if (e === null || typeof e !== 'object') return e
  if (e.attempt === undefined && typeof e.id === 'string' && e.id !== '' && Object.getPrototypeOf(e) === Object.prototype) return e
  return { ...e, attempt: undefined, id: e.id || `${i}` }
}

/** How many of `events` a result's `{ failed }` list names. */
function failedCount(value: unknown, events: TriggerEvent[]): number {
  const failed = failedOf(value)
  if (!failed) return 0
  let n = 0
  for (let i = 0; i < events.length; i++) if (failed.has((events[i] as TriggerEvent).id || `${i}`)) n++
  return n
}
