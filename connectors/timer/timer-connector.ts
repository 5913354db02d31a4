import { createTask, parse as parseCron, type ScheduledTask } from 'node-cron'
import type { Connector, ConnectorContext, Outcome, SkipReporter, TriggerSpec } from '../../src/sdk/index.js'
import type { TimerTriggerOptions } from './options.js'

/** What is persisted per timer function (Azure's "schedule status"). */
export interface ScheduleStatus {
  /** Scheduled time of the last tick that ran. */
  last?: string
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

/** A tick claimed by one gateway instance stays claimed this long (instances sharing a store). */
const CLAIM_TTL_MS = 24 * 3600 * 1000
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

/**
 * Timer trigger (node-cron, 6 fields with seconds, timezone). One tick is one event. Ticks do not
 * overlap: a tick that comes while the previous run (with its retries) still goes on is skipped
 * and counted. The schedule status is kept in the store, so after downtime `catchUp: latest`
 * runs the missed schedule once with isPastDue: true.
 */
export class TimerConnector implements Connector, SkipReporter {
  private task: ScheduledTask | undefined
  private running: Promise<void> | undefined
  private status: ScheduleStatus = {}
  private stopPromise: Promise<void> | undefined
  private ctx: ConnectorContext | undefined
  private onSkip: ((scheduledAt: Date) => void) | undefined

  constructor(private readonly spec: TriggerSpec<TimerTriggerOptions, never>) {}

  /** Called with the scheduled time of every skipped tick (the gateway counts them). */
  onSkipped(fn: (scheduledAt: Date) => void): void {
    this.onSkip = fn
  }

  async start(ctx: ConnectorContext): Promise<void> {
    this.ctx = ctx
    const t = this.spec.trigger
    this.status = (await ctx.state.get<ScheduleStatus>('status')) ?? {}
    if (this.stopPromise) return
    const log = ctx.log
    this.task = createTask(t.schedule, (c) => this.tick(c.date, false), {
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
    if (missed && t.catchUp === 'latest') {
      // The status is saved when the catch-up run ends: a crash before then catches up again.
      const at = latestMissedTick(this.task, t.schedule, new Date(previousNext), new Date())
      log.info({ firstMissed: previousNext, running: at.toISOString() }, 'timer missed ticks while down; catching up once')
      this.tick(at, true)
      return
    }
    await this.saveStatus()
    if (t.runOnStartup) this.tick(new Date(), false)
  }

  /** The next scheduled tick, or undefined when stopped. */
  nextRun(): Date | undefined {
    if (this.stopPromise) return undefined
    return this.task?.getNextRun() ?? undefined
  }

  private tick(scheduledAt: Date, isPastDue: boolean): void {
    const ctx = this.ctx
    if (!ctx || this.stopPromise) return
    if (this.running) {
      this.status.skipped = (this.status.skipped ?? 0) + 1
      ctx.log.warn({ scheduledAt: scheduledAt.toISOString() }, 'timer tick skipped: the previous run is still going')
      this.onSkip?.(scheduledAt)
      void this.saveStatus()
      return
    }
    // A store error (claim, status) must not become an unhandled rejection: that ends the process.
    this.running = this.run(ctx, scheduledAt, isPastDue)
      .catch((e: unknown) => {
        ctx.log.error({ scheduledAt: scheduledAt.toISOString(), err: (e as Error).message }, 'timer tick failed')
      })
      .finally(() => {
        this.running = undefined
      })
  }

  private async run(ctx: ConnectorContext, scheduledAt: Date, isPastDue: boolean): Promise<void> {
    const fn = this.spec.functionName
    const at = scheduledAt.toISOString()
    // With several gateway instances on one store, exactly one runs each tick.
    if (!(await ctx.state.claim(`tick:${at}`, CLAIM_TTL_MS))) return
    const body: TimerBody = {
      scheduledAt: at,
      isPastDue,
      schedule: this.spec.trigger.schedule,
      scheduleStatus: { ...(this.status.last ? { last: this.status.last } : {}), ...(this.nextRun() ? { next: this.nextRun()?.toISOString() } : {}), ...(this.status.lastUpdated ? { lastUpdated: this.status.lastUpdated } : {}) },
    }
    const [outcome] = await ctx.deliver([
      { id: `${fn}@${at}`, source: `timer://${fn}`, key: `timer:${fn}`, time: new Date().toISOString(), body, meta: { schedule: this.spec.trigger.schedule, timezone: this.spec.trigger.timezone ?? 'UTC', isPastDue } },
    ])
    if (outcome?.status === 'aborted') return
    this.status.last = at
    this.status.lastOutcome = outcome?.status
    await this.saveStatus()
  }

  private async saveStatus(): Promise<void> {
    // getNextRuns works on a destroyed task too: a run that finishes while stop() waits for it
    // must still record the tick after it, or the next start takes `last` for a missed tick.
    const next = this.task?.getNextRuns(1)[0]
    if (next) this.status.next = next.toISOString()
    this.status.lastUpdated = new Date().toISOString()
    try {
      await this.ctx?.state.set('status', this.status)
    } catch (e) {
      this.ctx?.log.error({ err: (e as Error).message }, 'cannot save the schedule status')
    }
  }

  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      const task = this.task
      await task?.destroy()
      await this.running
      this.task = undefined
    })()
    return this.stopPromise
  }
}
