/**
 * Reporting of finished invocations (batch and synchronous alike).
 * Contract: `report` records the invocation in the function's stats (with a preview of an ok
 * result), publishes it on `sluice:router:invocation` when anyone listens, and logs the function's
 * own log lines, a cold start and a failure. It never throws (a failure is logged as internal).
 */
import { invocationChannel, type InvocationMessage } from '../channels.js'
import type { InvocationResult } from '../sdk/index.js'
import type { InvocationRecord } from './stats.js'
import { preview } from './safe-json.js'
import { type FnLane, guard, type RouterHost } from './lane-state.js'

/** The start of a result's JSON kept in the recent-invocations list. */
const PREVIEW_CHARS = 2048

/** One finished invocation as the router saw it: `value` is what the function returned. */
export type InvocationReport = Omit<InvocationMessage, 'gateway' | 'function'> & { logs: InvocationResult['logs']; value: unknown }

export function report(h: RouterHost, l: FnLane, r: InvocationReport): void {
  guard(h, l, 'reporting an invocation', () => {
    const { logs, value, ...msg } = r
    const record: InvocationRecord = { ...msg, time: new Date().toISOString(), logs }
    if (record.error === undefined) delete record.error
    if (r.ok) record.result = preview(value, PREVIEW_CHARS)
    l.stats.record(record)
    if (invocationChannel.hasSubscribers) invocationChannel.publish({ gateway: h.opts.gateway, function: l.fn.name, ...msg })
    const log = h.opts.log
    for (const line of logs) log[line.level]({ function: l.fn.name, invocationId: r.invocationId, source: 'function' }, line.msg)
    if (r.coldStart) log.info({ function: l.fn.name, invocationId: r.invocationId, ms: round(r.durationMs) }, 'cold start')
    if (r.error) log.warn({ function: l.fn.name, invocationId: r.invocationId, size: r.size, err: r.error }, 'invocation failed')
  })
}

const round = (n: number) => Math.round(n * 100) / 100
