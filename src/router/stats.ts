import type { ErrorInfo } from '../errors.js'
import type { LogLine } from '../sdk/index.js'

/** A finished invocation, kept for the dashboard and the admin API. */
export interface InvocationRecord {
  invocationId: string
  time: string
  kind: 'batch' | 'sync'
  size: number
  ok: boolean
  failed: number
  durationMs: number
  coldStart: boolean
  error?: ErrorInfo
  /** The start (2 KiB) of the returned value's JSON, when ok. */
  result?: string
  /**
   * Handed to `record`: every line the invocation kept (the isolate caps them, see LIMITS in
   * src/sandbox/protocol.ts). In `recentInvocations()`: a preview, the first LOG_PREVIEW_LINES
   * lines cut to LOG_PREVIEW_CHARS; `invocationLogs()` has all of them while they are kept.
   */
  logs: LogLine[]
  /** In `recentInvocations()`: how many lines the invocation logged (`logs` may hold fewer). */
  logLines?: number
}

const WINDOW = 1024
/** Invocations kept per function for the dashboard and GET /admin/functions/:name. */
export const RECENT = 50
/** Log lines (and characters per line) in a recent invocation's preview. */
export const LOG_PREVIEW_LINES = 3
export const LOG_PREVIEW_CHARS = 200
/**
 * Full logs of recent invocations are kept, newest first, up to this many characters per function
 * (each line counts its message plus LINE_COST); older ones are dropped (only their preview stays).
 * With the isolate's cap of 64 KiB per invocation that is at least the last 16 invocations.
 */
export const FULL_LOGS_CHARS = 1024 * 1024
const LINE_COST = 48

/**
 * Full logs by the recent-invocation record that previews them. A WeakMap so that a record handed
 * out (through the admin API's `recent` list) leads back to its logs without a reference from the
 * record itself, and eviction is one delete.
 */
const fullLogs = new WeakMap<InvocationRecord, LogLine[]>()

/**
 * All the log lines of a record from `recentInvocations()`, or undefined when they were evicted
 * (FULL_LOGS_CHARS) or the record is not one of those.
 */
export function invocationLogs(r: InvocationRecord): LogLine[] | undefined {
  return fullLogs.get(r)
}

function previewLogs(logs: LogLine[]): LogLine[] {
  const out: LogLine[] = []
  for (const l of logs.slice(0, LOG_PREVIEW_LINES)) {
    out.push(l.msg.length > LOG_PREVIEW_CHARS ? { ...l, msg: `${l.msg.slice(0, LOG_PREVIEW_CHARS)}...` } : l)
  }
  return out
}

/** Counters and a sliding window of durations for one function. */
export class FunctionStats {
  invocations = 0
  failures = 0
  eventsDone = 0
  eventsDead = 0
  /** Events passed to invocations (every attempt counts, synchronous invocations too). */
  events = 0
  retries = 0
  coldStarts = 0
  /** Invocations a worker host ran on its own: HTTP requests on connections handed to it. */
  direct = 0
  lastColdStartMs: number | undefined
  private readonly durations = new Float64Array(WINDOW)
  private count = 0
  private readonly recent: InvocationRecord[] = []
  /** Records whose full logs are kept, oldest first, with their cost. */
  private readonly kept: Array<{ record: InvocationRecord; chars: number }> = []
  private keptChars = 0

  record(r: InvocationRecord): void {
    this.invocations++
    this.events += r.size
    if (!r.ok) this.failures++
    if (r.coldStart) {
      this.coldStarts++
      this.lastColdStartMs = r.durationMs
    }
    this.durations[this.count % WINDOW] = r.durationMs
    this.count++
    const summary: InvocationRecord = { ...r, logs: previewLogs(r.logs), logLines: r.logs.length }
    this.recent.push(summary)
    if (this.recent.length > RECENT) this.forget(this.recent.shift() as InvocationRecord)
    if (r.logs.length > 0) this.keep(summary, r.logs)
  }

  private keep(record: InvocationRecord, logs: LogLine[]): void {
    let chars = 0
    for (const l of logs) chars += l.msg.length + LINE_COST
    if (chars > FULL_LOGS_CHARS) return
    fullLogs.set(record, logs)
    this.kept.push({ record, chars })
    this.keptChars += chars
    while (this.keptChars > FULL_LOGS_CHARS) this.forget((this.kept[0] as { record: InvocationRecord }).record)
  }

  private forget(record: InvocationRecord): void {
    if (!fullLogs.delete(record)) return
    const i = this.kept.findIndex((k) => k.record === record)
    if (i < 0) return
    this.keptChars -= (this.kept[i] as { chars: number }).chars
    this.kept.splice(i, 1)
  }

  /** Newest first; `logs` is a preview (see InvocationRecord), `invocationLogs` has the rest. */
  recentInvocations(): InvocationRecord[] {
    return [...this.recent].reverse()
  }

  /** Duration percentiles over the last WINDOW invocations (ms), undefined before the first. */
  percentiles(): { p50: number; p99: number } | undefined {
    const n = Math.min(this.count, WINDOW)
    if (n === 0) return undefined
    const sorted = Array.from(this.durations.subarray(0, n)).sort((a, b) => a - b)
    const at = (q: number) => sorted[Math.min(n - 1, Math.floor(q * n))] as number
    return { p50: at(0.5), p99: at(0.99) }
  }
}
