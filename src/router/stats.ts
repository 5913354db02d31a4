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
  logs: LogLine[]
}

const WINDOW = 1024
const RECENT = 50

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
  lastColdStartMs: number | undefined
  private readonly durations = new Float64Array(WINDOW)
  private count = 0
  private readonly recent: InvocationRecord[] = []

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
    this.recent.push(r)
    if (this.recent.length > RECENT) this.recent.shift()
  }

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
