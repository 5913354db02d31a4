/**
 * Wire format of the live feed, `GET /admin/events` (server-sent events). Types and one constant,
 * with no imports, so the dashboard (ui/) shares them without pulling in server code.
 *
 * Events on the stream, in order:
 * - `history` once, right after connecting: the last minutes at one point per second.
 * - `snapshot` every second: the state now.
 * - `activity` after a snapshot, when invocations finished or events were dead-lettered since the
 *   previous one (at most ACTIVITY_CAP of each per second; `dropped` counts the rest).
 */

/** One function in a snapshot. Counts are totals since the gateway started. */
export interface LiveFunction {
  name: string
  /** Trigger kind: http, timer, mqtt, amqp, kafka, eventhubs. */
  trigger: string
  connection?: string
  instances: number
  busy: number
  /** Events accepted and not yet finished. */
  backlog: number
  inflight: number
  invocations: number
  failures: number
  eventsDone: number
  eventsDead: number
  retries: number
  /** Events run per second over the last 5 seconds (every attempt counts; HTTP and Test/Run calls too). */
  eventsPerSec: number
  /** Failed invocations / invocations over the last minute; 0 without invocations. */
  errorRate: number
  /** Invocation duration percentiles (ms) over the recent invocations; absent before the first. */
  p50?: number
  p99?: number
  /** Events the source holds that the gateway has not read yet, where the source reports it. */
  lag?: number
}

export interface LiveConnection {
  function: string
  kind: string
  connection?: string
  up: boolean
  detail?: string
}

export interface LiveHost {
  id: number
  up: boolean
  pid: number
  instances: number
  restarts: number
}

export interface LiveSnapshot {
  /** Epoch ms. */
  t: number
  status: 'up' | 'starting' | 'degraded' | 'stopping'
  functions: LiveFunction[]
  connections: LiveConnection[]
  hosts: LiveHost[]
}

/** One function at one point of the history (eventsPerSec as in LiveFunction): what the charts draw. */
export type LiveSample = [instances: number, busy: number, backlog: number, eventsPerSec: number]

export interface LiveHistory {
  /** Milliseconds between points. */
  stepMs: number
  /** Function names; each point's `f` is in this order. */
  names: string[]
  points: Array<{ t: number; f: LiveSample[] }>
}

export interface LiveInvocation {
  function: string
  invocationId: string
  kind: 'batch' | 'sync'
  size: number
  ok: boolean
  failed: number
  durationMs: number
  coldStart: boolean
  error?: { code: string; message: string }
}

export interface LiveDeadLetter {
  function: string
  eventId: string
  deadLetterId: string
  attempts: number
  error: { code: string; message: string }
}

export interface LiveActivity {
  invocations: LiveInvocation[]
  dead: LiveDeadLetter[]
  /** Notifications left out because more than ACTIVITY_CAP of a kind arrived within a second. */
  dropped: number
}

/** Most invocation (and dead-letter) notifications sent per second. */
export const ACTIVITY_CAP = 100
