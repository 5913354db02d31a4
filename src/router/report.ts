/**
 * Reporting of finished invocations (batch and synchronous alike).
 * Contract: `report` records the invocation in the function's stats (with a preview of an ok
 * result), publishes it on `sluice:router:invocation` when anyone listens, and logs the function's
 * own log lines, a cold start and a failure. It never throws (a failure is logged as internal).
 */
import { invocationChannel, type InvocationMessage } from '../channels.js'
import type { InvocationResult } from '../sdk/index.js'
import { nowIso } from '../sdk/time.js'
import type { InvocationRecord } from './stats.js'
import { preview } from './safe-json.js'
import { type FnLane, guard, type RouterHost } from './lane-state.js'

/** The start of a result's JSON kept in the recent-invocations list. */
export const PREVIEW_CHARS = 2048

/**
 * One finished invocation as the router saw it: `value` is what the function returned, or
 * `result` its preview already made (by the worker host that ran it).
 */
export type InvocationReport = Omit<InvocationMessage, 'gateway' | 'function'> & { logs: InvocationResult['logs']; value?: unknown; result?: string }

export function report(h: RouterHost, l: FnLane, r: InvocationReport): void {
  guard(h, l, 'reporting an invocation', () => {
    const { invocationId, kind, size, ok, failed, durationMs, waitMs, coldStart, error, logs } = r
    const time = nowIso()
    // Built field by field (no spread, no delete): this runs once per invocation.
    const record: InvocationRecord & { waitMs: number } =
      error === undefined
        ? { invocationId, kind, size, ok, failed, durationMs, waitMs, coldStart, time, logs }
        : { invocationId, kind, size, ok, failed, durationMs, waitMs, coldStart, error, time, logs }
    if (ok) record.result = r.result ?? preview(r.value, PREVIEW_CHARS)
    l.stats.record(record)
    if (invocationChannel.hasSubscribers) {
      const gateway = h.opts.gateway
      const fn = l.fn.name
      invocationChannel.publish(
        error === undefined
          ? { gateway, function: fn, invocationId, kind, size, ok, failed, durationMs, waitMs, coldStart }
          : { gateway, function: fn, invocationId, kind, size, ok, failed, durationMs, waitMs, coldStart, error },
      )
    }
    const log = h.opts.log
    for (const line of logs) log[line.level]({ function: l.fn.name, invocationId, source: 'function' }, line.msg)
    if (coldStart) log.info({ function: l.fn.name, invocationId, ms: round(durationMs) }, 'cold start')
    if (error) log.warn({ function: l.fn.name, invocationId, size, err: error }, 'invocation failed')
  })
}

const round = (n: number) => Math.round(n * 100) / 100
