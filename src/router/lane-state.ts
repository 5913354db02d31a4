/**
 * The state of one function in the router and the few helpers every router module shares.
 * Contract: `FnLane` is owned by `Router` (router.ts); invoke.ts, settle.ts and report.ts read and
 * change it only through the functions they export, which the router calls on its own lanes.
 * `RouterHost` is the router's side of that exchange: its options, whether it is closing, and how
 * to start batches after a module re-queued events. Nothing here throws out of `guard`.
 */
import type { ErrorInfo } from '../errors.js'
import type { Logger, Outcome, OutputBinding, TriggerEvent } from '../sdk/index.js'
import type { Lease, Scheduler } from '../scheduler/scheduler.js'
import type { RunResult } from '../sandbox/pool.js'
import type { RetryConfig } from '../config/schema.js'
import type { Store } from '../store/store.js'
import type { Delivery, Item, Lane } from './lane.js'
import type { FlowControl } from './flow.js'
import type { FunctionStats } from './stats.js'
import { reasonOf } from './safe-json.js'

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

/** What the router lends its modules: they never hold the Router itself. */
export interface RouterHost {
  readonly opts: RouterOptions
  /** True once Router.close() began: nothing new starts, pending work is answered `aborted`. */
  closing(): boolean
  /** Starts batches for the lane's ready events (after a retry re-queued them or a key unlocked). */
  onReady(l: FnLane): void
}

export interface FnLane {
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
  /**
   * Deliveries not admitted yet, oldest first: a large `deliver` call is admitted in slices (one
   * per turn of the event loop) so its first batches run while the rest is admitted, and later
   * calls queue behind it, which keeps each key's events in the order the source gave them.
   */
  admitting: Admission[]
  /** Events in `admitting` (counted in `backlog` already). */
  unadmitted: number
  /** The turn that admits the next slice, while `admitting` is not empty. */
  admitTimer: NodeJS.Immediate | undefined
  /** Admitted events not final, at most, before admission waits for some to finish. */
  admitAhead: number
  /** Schedules the next slice's admission (a no-op when one is scheduled or none waits). */
  wakeAdmission: () => void
  /** Being removed (hot reload): answers new events `aborted`, starts no batch. */
  closing?: boolean
}

/** Events of the lane admitted (or invoked) and not final yet: its backlog less what waits for admission. */
export const admittedOpen = (l: FnLane): number => l.backlog - l.unadmitted

/** A `deliver` call's events from `next` on, still to be admitted (their Items are made then). */
export interface Admission {
  events: TriggerEvent[]
  delivery: Delivery
  next: number
}

export const DONE: Outcome = Object.freeze({ status: 'done' })
export const ABORTED: Outcome = Object.freeze({ status: 'aborted' })

/**
 * Runs `fn`, logging (never throwing) what escapes it: for code reached from timers and promise
 * callbacks, where a throw would be an uncaught exception or an unhandled rejection.
 */
export function guard(h: RouterHost, l: FnLane, what: string, fn: () => void): void {
  try {
    fn()
  } catch (e) {
    internal(h, l, what, e)
  }
}

/** Logs a bug in the gateway (SLUICE_ERR_INTERNAL) found while doing `what`; never throws. */
export function internal(h: RouterHost, l: FnLane, what: string, e: unknown): void {
  try {
    h.opts.log.error(
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

/** Records an item's final outcome; resolves its delivery when it was the last one. */
export function finish(l: FnLane, item: Item, o: Outcome): void {
  if (item.final) return
  item.final = true
  item.handled = true
  l.backlog--
  l.flow.update(l.backlog)
  if (o.status === 'done') l.stats.eventsDone++
  else if (o.status === 'dead') l.stats.eventsDead++
  item.delivery.record(item.index, o)
  if (l.admitting.length > 0 && admittedOpen(l) < l.admitAhead >> 1) l.wakeAdmission()
  if (l.backlog === 0) for (const f of l.idle.splice(0)) f()
}

/**
 * Runs a batch on its lease and releases the lease. Never rejects: a lease that throws is a
 * crashed run (`lost`, SLUICE_ERR_FUNCTION_CRASHED, retriable).
 */
export async function runOnLease(h: RouterHost, l: FnLane, lease: Lease, json: string, invocationId: string): Promise<RunResult> {
  try {
    return await lease.run(json, invocationId)
  } catch (e) {
    internal(h, l, 'running an invocation', e)
    const error: ErrorInfo = { code: 'SLUICE_ERR_FUNCTION_CRASHED', message: `the invocation failed in the gateway: ${reasonOf(e)}`, retriable: true }
    return { payload: { ok: false, error, outputs: [], logs: [] }, lost: true, cpuMs: 0, hostMs: 0 }
  } finally {
    guard(h, l, 'releasing an instance', () => lease.release())
  }
}
