import { createTask, parse as parseCron, type ScheduledTask } from 'node-cron'
import type { Connector, ConnectorContext, Lease, Outcome, SkipReporter, TriggerSpec } from '../../src/sdk/index.js'
import type { TimerTriggerOptions } from './options.js'
import { FINISHED_RETAIN_MS, keepRenewed, settleLease, watchLease } from './tick-lease.js'

/** What is persisted per timer function (Azure's "schedule status"). */
export interface ScheduleStatus {
  /** Scheduled time of the last tick that ran. */
  last?: string
  /**
   * Scheduled time of the latest tick an instance took the lease of. Later than `last` at start:
   * that tick may have died with its instance, so the starting instance watches its lease.
   */
  claimed?: string
  /** The next tick, as known when the gateway last ran: a past value at start means missed ticks. */
  next?: string
  lastUpdated?: string
  lastOutcome?: Outcome['status']
  skipped?: number
}

/** The event body a timer function receives. */
export interface TimerBody {
  scheduledAt: string
  isPastDue: boolean
  schedule: string
  scheduleStatus: { last?: string; next?: string; lastUpdated?: string }
}

/** A stored `next` this far in the past at start counts as a missed tick. */
const MISSED_GRACE_MS = 1000
/** How far back catch-up looks for the latest missed tick (one check per minute). */
const CATCH_UP_WINDOW_MS = 7 * 24 * 3600 * 1000

/**
 * The latest tick of `task` in [firstMissed, now]: what `catchUp: latest` runs. Scans back a
 * minute at a time (node-cron has no "previous run"); beyond the window, the first missed tick.
 */
export function latestMissedTick(task: ScheduledTask, schedule: string, firstMissed: Date, now: Date): Date {
  const seconds = [...parseCron(schedule).second].sort((a, b) => b - a)
  const floor = Math.max(firstMissed.getTime(), now.getTime() - CATCH_UP_WINDOW_MS)
  const minute = Math.floor(now.getTime() / 60000) * 60000
  for (let m = minute; m >= floor - 60000; m -= 60000) {
    for (const s of seconds) {
      const t = m + s * 1000
      if (t > now.getTime() || t < firstMissed.getTime()) continue
      if (task.match(new Date(t))) return new Date(t)
    }
  }
  return firstMissed
}

/** Most ticks one instance watches at once (held by other instances, or waiting for the store). */
const MAX_WATCHED = 32

interface Watcher {
  abort: AbortController
  /** Waiting because the store failed (a newer tick's failure supersedes it), not for a holder. */
  storeError: boolean
}

/**
 * Timer trigger (node-cron, 6 fields with seconds, timezone). One tick is one event. Ticks do not
 * overlap on one instance: a tick that comes while the previous run (with its retries) still goes
 * on is skipped and counted. Across instances sharing a store, each tick runs once: its lease
 * (`tick:<scheduledAt>`, `leaseMs`) is held by the instance running it and renewed meanwhile; the
 * others watch it and take the tick over (attempt + 1) if the holder dies. A tick aborted by
 * shutdown is released at once. The schedule status is kept in the store, so after downtime
 * `catchUp: latest` runs the missed schedule once with isPastDue: true (its lease is the first
 * missed tick's, so instances starting together catch up once).
 */
export class TimerConnector implements Connector, SkipReporter {
  private task: ScheduledTask | undefined
  private running: Promise<void> | undefined
  private status: ScheduleStatus = {}
  /** Skips counted here and not yet added to the stored status. */
  private pendingSkips = 0
  private saving: Promise<void> = Promise.resolve()
  private stopPromise: Promise<void> | undefined
  private readonly stopping = new AbortController()
  private readonly watchers = new Map<string, Watcher>()
  private ctx: ConnectorContext | undefined
  private onSkip: ((scheduledAt: Date) => void) | undefined

  constructor(private readonly spec: TriggerSpec<TimerTriggerOptions, never>) {}

  /** Called with the scheduled time of every skipped tick (the gateway counts them). */
  onSkipped(fn: (scheduledAt: Date) => void): void {
    this.onSkip = fn
  }

  private get leaseMs(): number {
    return this.spec.trigger.leaseMs
  }

  async start(ctx: ConnectorContext): Promise<void> {
    this.ctx = ctx
    const t = this.spec.trigger
    this.status = (await ctx.state.get<ScheduleStatus>('status')) ?? {}
    if (this.stopPromise) return
    const log = ctx.log
    this.task = createTask(t.schedule, (c) => this.tick(c.date), {
      name: `timer:${this.spec.functionName}`,
      timezone: t.timezone ?? 'UTC',
      logger: {
        info: (m) => log.debug({ cron: true }, m),
        warn: (m) => log.warn({ cron: true }, m),
        error: (m) => log.error({ cron: true }, String(m)),
        debug: (m) => log.debug({ cron: true }, String(m)),
      },
    })
    const previousNext = this.status.next
    const missed = previousNext !== undefined && Date.parse(previousNext) < Date.now() - MISSED_GRACE_MS
    await this.task.start()
    ctx.setHealth(true)
    this.watchUnfinishedClaim(ctx)
    if (missed && t.catchUp === 'latest') {
      // The status is saved when the catch-up run ends: a crash before then catches up again.
      const at = latestMissedTick(this.task, t.schedule, new Date(previousNext), new Date())
      log.info({ firstMissed: previousNext, running: at.toISOString() }, 'timer missed ticks while down; catching up once')
      this.startRun(() => this.run(ctx, `tick:${new Date(previousNext).toISOString()}`, at, true))
      return
    }
    await this.saveStatus()
    if (t.runOnStartup) this.tick(new Date())
  }

  /**
   * A tick claimed by some instance and not recorded as run may have died with that instance
   * (kill -9, lost pod) before any other instance was up to watch it: watch its lease like a
   * tick this instance fired. If it ran, the lease says finished and nothing happens; if its
   * holder still runs it, this waits; if the holder died, the tick runs here once its lease
   * expires (isPastDue, attempt counted on).
   */
  private watchUnfinishedClaim(ctx: ConnectorContext): void {
    const { claimed, last } = this.status
    if (!claimed || (last !== undefined && last >= claimed)) return
    const at = new Date(claimed)
    if (Number.isNaN(at.getTime()) || Date.now() - at.getTime() > FINISHED_RETAIN_MS) return
    ctx.log.info({ scheduledAt: claimed }, 'timer tick claimed before this start has no recorded run; watching its lease')
    this.watch(ctx, `tick:${at.toISOString()}`, at, 0, false)
  }

  /** The next scheduled tick, or undefined when stopped. */
  nextRun(): Date | undefined {
    if (this.stopPromise) return undefined
    return this.task?.getNextRun() ?? undefined
  }

  private tick(scheduledAt: Date): void {
    const ctx = this.ctx
    if (!ctx || this.stopPromise) return
    if (this.running) {
      this.pendingSkips++
      ctx.log.warn({ scheduledAt: scheduledAt.toISOString() }, 'timer tick skipped: the previous run is still going')
      this.onSkip?.(scheduledAt)
      void this.saveStatus()
      return
    }
    this.startRun(() => this.run(ctx, `tick:${scheduledAt.toISOString()}`, scheduledAt, false))
  }

  /** Runs `fn` as this instance's one run; a store error must not become an unhandled rejection. */
  private startRun(fn: () => Promise<void>): Promise<void> {
    const p: Promise<void> = fn()
      .catch((e: unknown) => {
        this.ctx?.log.error({ err: (e as Error).message }, 'timer run failed')
      })
      .finally(() => {
        if (this.running === p) this.running = undefined
      })
    this.running = p
    return p
  }

  /** Takes the tick's lease and runs it, or leaves it to the instance holding it (and watches). */
  private async run(ctx: ConnectorContext, key: string, scheduledAt: Date, isPastDue: boolean): Promise<void> {
    let first
    try {
      first = await ctx.state.acquireLease(key, this.leaseMs)
    } catch (e) {
      ctx.log.error({ scheduledAt: scheduledAt.toISOString(), err: (e as Error).message }, 'timer tick failed')
      this.watch(ctx, key, scheduledAt, 0, true)
      return
    }
    if (first.acquired) return this.runLeased(ctx, first.lease, scheduledAt, isPastDue)
    if (!first.finished) this.watch(ctx, key, scheduledAt, first.retryInMs, false)
  }

  /** Watches a tick this instance could not take, and runs it (late: isPastDue) if it becomes free. */
  private watch(ctx: ConnectorContext, key: string, scheduledAt: Date, retryInMs: number, storeError: boolean): void {
    if (this.watchers.has(key) || this.stopPromise) return
    // After a store outage only the latest failed tick runs late, not one per second of outage.
    if (storeError) for (const [k, w] of this.watchers) if (w.storeError) this.dropWatcher(k, 'a later tick also waits for the store')
    if (this.watchers.size >= MAX_WATCHED) this.dropWatcher(this.watchers.keys().next().value as string, 'too many ticks watched')
    const abort = new AbortController()
    const onStop = () => abort.abort()
    this.stopping.signal.addEventListener('abort', onStop, { once: true })
    this.watchers.set(key, { abort, storeError })
    void (async () => {
      try {
        const r = await watchLease(ctx.state, key, this.leaseMs, abort.signal, retryInMs, ctx.log)
        if (!('lease' in r)) return
        // One run at a time on an instance: a taken-over tick waits for the current run.
        while (this.running) await this.running
        if (this.stopPromise) {
          await settleLease(ctx.state, r.lease, 'release', this.stopping.signal, ctx.log)
          return
        }
        ctx.log.info({ scheduledAt: scheduledAt.toISOString(), attempt: r.lease.attempt }, 'took over a timer tick whose lease ran out or was released')
        await this.startRun(() => this.runLeased(ctx, r.lease, scheduledAt, true))
      } catch (e) {
        ctx.log.error({ scheduledAt: scheduledAt.toISOString(), err: (e as Error).message }, 'timer tick failed')
      } finally {
        this.stopping.signal.removeEventListener('abort', onStop)
        if (this.watchers.get(key)?.abort === abort) this.watchers.delete(key)
      }
    })()
  }

  private dropWatcher(key: string, why: string): void {
    const w = this.watchers.get(key)
    if (!w) return
    this.watchers.delete(key)
    w.abort.abort()
    this.ctx?.log.warn({ lease: key, why }, 'timer stops watching a tick')
  }

  private async runLeased(ctx: ConnectorContext, lease: Lease, scheduledAt: Date, isPastDue: boolean): Promise<void> {
    const fn = this.spec.functionName
    const at = scheduledAt.toISOString()
    const body: TimerBody = {
      scheduledAt: at,
      isPastDue,
      schedule: this.spec.trigger.schedule,
      scheduleStatus: {
        ...(this.status.last ? { last: this.status.last } : {}),
        ...(this.nextRun() ? { next: this.nextRun()?.toISOString() } : {}),
        ...(this.status.lastUpdated ? { lastUpdated: this.status.lastUpdated } : {}),
      },
    }
    const renewal = keepRenewed(ctx.state, lease, this.leaseMs, ctx.log)
    if (!this.status.claimed || at > this.status.claimed) {
      this.status.claimed = at
      // `next` stays as it is until the run ends: a stored `next` in the past at start is what
      // tells the next start that this tick never ran (catchUp: latest).
      void this.saveStatus({ keepNext: true })
    }
    let outcome: Outcome | undefined
    try {
      ;[outcome] = await ctx.deliver([
        {
          id: `${fn}@${at}`,
          source: `timer://${fn}`,
          key: `timer:${fn}`,
          time: new Date().toISOString(),
          body,
          meta: { schedule: this.spec.trigger.schedule, timezone: this.spec.trigger.timezone ?? 'UTC', isPastDue },
          // A taken-over tick counts the attempts of the instances that died running it.
          ...(lease.attempt > 1 ? { attempt: lease.attempt } : {}),
        },
      ])
    } finally {
      renewal.stop()
    }
    if (!outcome || outcome.status === 'aborted') {
      // Shutdown: hand the tick back at once, so a restart or another instance runs it.
      await settleLease(ctx.state, lease, 'release', this.stopping.signal, ctx.log)
      ctx.log.info({ scheduledAt: at }, 'released a timer tick aborted by shutdown')
      return
    }
    await settleLease(ctx.state, lease, 'finish', this.stopping.signal, ctx.log)
    if (!this.status.last || at > this.status.last) {
      this.status.last = at
      this.status.lastOutcome = outcome.status
    }
    await this.saveStatus()
  }

  /** Merges this instance's view into the stored status (other instances write it too). */
  private saveStatus(opts: { keepNext?: boolean } = {}): Promise<void> {
    this.saving = this.saving.then(async () => {
      // getNextRuns works on a destroyed task too: a run that finishes while stop() waits for it
      // must still record the tick after it, or the next start takes `last` for a missed tick.
      const next = this.task?.getNextRuns(1)[0]
      const add = this.pendingSkips
      try {
        const stored = (await this.ctx?.state.get<ScheduleStatus>('status')) ?? {}
        const merged: ScheduleStatus = { ...stored }
        if (this.status.last && (!stored.last || this.status.last > stored.last)) {
          merged.last = this.status.last
          if (this.status.lastOutcome) merged.lastOutcome = this.status.lastOutcome
        }
        if (this.status.claimed && (!stored.claimed || this.status.claimed > stored.claimed)) merged.claimed = this.status.claimed
        if (add > 0 || stored.skipped !== undefined) merged.skipped = (stored.skipped ?? 0) + add
        if (next && !opts.keepNext) merged.next = next.toISOString()
        merged.lastUpdated = new Date().toISOString()
        await this.ctx?.state.set('status', merged)
        this.pendingSkips -= add
        this.status = merged
      } catch (e) {
        this.ctx?.log.error({ err: (e as Error).message }, 'cannot save the schedule status')
      }
    })
    return this.saving
  }

  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping.abort()
      const task = this.task
      await task?.destroy()
      while (this.running) await this.running
      await this.saving
      this.task = undefined
    })()
    return this.stopPromise
  }
}
