/**
 * Timer trigger, end to end: real gateways (worker host, isolates, router, SQLite store) started
 * from inline YAML. Functions report what they saw with console.log; the test reads those lines
 * from the gateway's JSON logs (`source: 'function'`). Nothing is asserted on durations: the test
 * waits for events and checks counts, order and content.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { join } from 'node:path'
import { getTasks } from 'node-cron'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { ScheduleStatus, TimerBody } from '../../connectors/timer/index.js'
import { CHANNELS, type TimerSkipMessage } from '../../src/channels.js'
import type { InvocationRecord } from '../../src/router/stats.js'
import { SqliteStore } from '../../src/store/sqlite.js'
import { projectDir, startGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

/** What a recording function logs per event. `start`/`end` are Date.now() inside the isolate. */
interface Seen {
  id: string
  source: string
  attempt: number
  body: TimerBody
  meta: Record<string, unknown>
  start: number
  end: number
}

/** A function that logs each event it receives, optionally after a busy-wait, optionally throwing after. */
const recorder = (opts: { busyMs?: number; throws?: boolean } = {}) => `export default async function (events: any[]) {
  const start = Date.now()
  ${opts.busyMs ? `while (Date.now() - start < ${opts.busyMs}) { /* busy: a run that takes a while */ }` : ''}
  for (const e of events) {
    console.log(JSON.stringify({ id: e.id, source: e.source, attempt: e.attempt, body: e.body, meta: e.meta, start, end: Date.now() }))
  }
  ${opts.throws ? `throw new Error('boom ' + events[0].id)` : ''}
}
`

/** YAML of one timer function with its code at functions/<name>.ts. */
const timerFn = (name: string, timer: string, extra: string[] = []) =>
  `${[`  ${name}:`, `    code: functions/${name}.ts`, `    trigger: { timer: ${timer} }`, ...extra.map((l) => `    ${l}`)].join('\n')}\n`

/** Starts a gateway that is stopped (and its folder removed unless `dir` is given) after the test. */
async function gateway(fns: string[], files: Record<string, string>, dir?: string): Promise<TestGateway> {
  const t = await startGateway({ yaml: `functions:\n${fns.join('')}`, files, ...(dir === undefined ? {} : { dir }) })
  onTestFinished(() => t.stop())
  return t
}

/** A temp project folder that outlives its gateways (the store is reused), removed after the test. */
function keptDir(): string {
  const p = projectDir({})
  onTestFinished(() => p.cleanup())
  return p.dir
}

function seen(t: TestGateway, fn: string): Seen[] {
  return t.logs.lines.filter((l) => l.source === 'function' && l.function === fn).map((l) => JSON.parse(String(l.msg)) as Seen)
}

async function seenAtLeast(t: TestGateway, fn: string, n: number, timeoutMs = 30_000): Promise<Seen[]> {
  return waitFor(
    () => {
      const s = seen(t, fn)
      return s.length >= n && s
    },
    timeoutMs,
    `${n} runs of ${fn}`,
  )
}

async function status(t: TestGateway, fn: string): Promise<ScheduleStatus | undefined> {
  return (await t.gw.store.getState(`timer:${fn}`, 'status')) as ScheduleStatus | undefined
}

/** Reads the persisted status straight from a stopped gateway's store file. */
async function statusInFile(dir: string, fn: string): Promise<ScheduleStatus | undefined> {
  const store = new SqliteStore(join(dir, 'state.db'))
  try {
    return (await store.getState(`timer:${fn}`, 'status')) as ScheduleStatus | undefined
  } finally {
    await store.close()
  }
}

const WHOLE_SECOND_ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/
const EVERY_SECOND = '"* * * * * *"'

/** A daily schedule (UTC) whose tick is about 12 hours away from now, in either direction. */
function farDaily(): { schedule: string; lastSlot: string } {
  const hour = (new Date().getUTCHours() + 12) % 24
  const slot = new Date()
  slot.setUTCHours(hour, 0, 0, 0)
  if (slot.getTime() > Date.now()) slot.setUTCDate(slot.getUTCDate() - 1)
  return { schedule: `0 0 ${hour} * * *`, lastSlot: slot.toISOString() }
}

interface WallClock {
  year: number
  month: number
  day: number
  hour: number
  minute: number
  second: number
}

const formatters = new Map<string, Intl.DateTimeFormat>()
/** The wall-clock time of `d` in `zone`, by Intl (independent of node-cron's own tz code). */
function wallClock(d: Date, zone: string): WallClock {
  let f = formatters.get(zone)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    })
    formatters.set(zone, f)
  }
  const parts = f.formatToParts(d)
  const get = (type: Intl.DateTimeFormatPartTypes) => Number(parts.find((p) => p.type === type)?.value)
  return { year: get('year'), month: get('month'), day: get('day'), hour: get('hour'), minute: get('minute'), second: get('second') }
}

/** The first whole minute after `fromMs` whose wall clock in `zone` satisfies `match`. */
function nextWallMinute(fromMs: number, zone: string, match: (w: WallClock) => boolean): Date {
  let t = Math.floor(fromMs / 60_000) * 60_000 + 60_000
  for (let i = 0; i < 3 * 24 * 60; i++, t += 60_000) {
    if (match(wallClock(new Date(t), zone))) return new Date(t)
  }
  throw new Error(`no matching minute in ${zone} within 3 days`)
}

describe('timer trigger', () => {
  it('runs an every-second schedule repeatedly, one event per tick', async () => {
    const t = await gateway([timerFn('tick', `{ schedule: ${EVERY_SECOND} }`)], { 'functions/tick.ts': recorder() })
    const runs = await seenAtLeast(t, 'tick', 3)

    for (const r of runs) {
      expect(r.source).toBe('timer://tick')
      expect(r.attempt).toBe(1)
      expect(r.body.scheduledAt).toMatch(WHOLE_SECOND_ISO)
      expect(r.id).toBe(`tick@${r.body.scheduledAt}`)
      expect(r.body.isPastDue).toBe(false)
      expect(r.body.schedule).toBe('* * * * * *')
      expect(r.meta).toEqual({ schedule: '* * * * * *', timezone: 'UTC', isPastDue: false })
      expect(r.body.scheduleStatus.next).toMatch(WHOLE_SECOND_ISO)
      expect(Date.parse(r.body.scheduleStatus.next as string)).toBeGreaterThan(Date.parse(r.body.scheduledAt))
      expect(r.body.scheduleStatus.lastUpdated).toBeDefined()
    }
    // Ticks arrive in schedule order, each once, and each run sees the previous run as `last`.
    for (let i = 1; i < runs.length; i++) {
      const [prev, cur] = [runs[i - 1] as Seen, runs[i] as Seen]
      expect(Date.parse(cur.body.scheduledAt)).toBeGreaterThan(Date.parse(prev.body.scheduledAt))
      expect(cur.body.scheduleStatus.last).toBe(prev.body.scheduledAt)
    }
    expect((runs[0] as Seen).body.scheduleStatus.last).toBeUndefined()

    // The admin API shows the same invocations, with the function's logs.
    const res = await fetch(`${t.url}/admin/functions/tick`)
    expect(res.status).toBe(200)
    const info = (await res.json()) as { trigger: { kind: string }; counts: { eventsDone: number }; recent: InvocationRecord[] }
    expect(info.trigger.kind).toBe('timer')
    expect(info.counts.eventsDone).toBeGreaterThanOrEqual(3)
    // Recent invocations keep a short preview of each log line (the id comes first in it).
    const previews = info.recent.flatMap((r) => r.logs.map((l) => l.msg))
    for (const r of runs) expect(previews.some((m) => m.startsWith(`{"id":${JSON.stringify(r.id)}`))).toBe(true)
    expect(info.recent.every((r) => r.ok && r.kind === 'batch' && r.size === 1)).toBe(true)
  })

  it('reads the schedule in the configured time zone', async () => {
    const zone = 'Europe/Amsterdam'
    // Runs every second, but only during this hour and the next one on Amsterdam's clock.
    const h = wallClock(new Date(), zone).hour
    const hours = [h, (h + 1) % 24]
    const t = await gateway(
      [
        timerFn('ams', `{ schedule: "* * ${hours.join(',')} * * *", timezone: ${zone} }`),
        timerFn('nightly', `{ schedule: "0 0 3 * * *", timezone: ${zone} }`),
        timerFn('ist', '{ schedule: "0 0 * * * *", timezone: Asia/Kolkata }'),
      ],
      { 'functions/ams.ts': recorder(), 'functions/nightly.ts': recorder(), 'functions/ist.ts': recorder() },
    )

    const runs = await seenAtLeast(t, 'ams', 2)
    for (const r of runs) {
      expect(r.body.scheduledAt).toMatch(WHOLE_SECOND_ISO)
      expect(hours).toContain(wallClock(new Date(r.body.scheduledAt), zone).hour)
      expect(r.meta.timezone).toBe(zone)
      expect(r.source).toBe('timer://ams')
    }

    // 03:00 in Amsterdam is 01:00Z in summer and 02:00Z in winter: the persisted `next` is the
    // first 03:00:00 on Amsterdam's wall clock after it was computed.
    const nightly = await waitFor(() => status(t, 'nightly'), 10_000, 'nightly status')
    expect(nightly.next).toMatch(WHOLE_SECOND_ISO)
    const computedAt = Date.parse(nightly.lastUpdated as string)
    const expected = nextWallMinute(computedAt, zone, (w) => w.hour === 3 && w.minute === 0)
    expect(nightly.next).toBe(expected.toISOString())
    expect([1, 2]).toContain(new Date(nightly.next as string).getUTCHours())

    // A half-hour offset: every full hour in Kolkata (UTC+05:30) is at minute 30 in UTC.
    const ist = await waitFor(() => status(t, 'ist'), 10_000, 'ist status')
    const istNext = new Date(ist.next as string)
    expect(istNext.getUTCMinutes()).toBe(30)
    expect(ist.next).toBe(nextWallMinute(Date.parse(ist.lastUpdated as string), 'Asia/Kolkata', (w) => w.minute === 0).toISOString())
    expect(seen(t, 'nightly')).toHaveLength(0)
  })

  it('persists the schedule status in the store', async () => {
    const t = await gateway([timerFn('persisted', `{ schedule: ${EVERY_SECOND} }`)], { 'functions/persisted.ts': recorder() })
    await seenAtLeast(t, 'persisted', 3)
    // The status is written once the tick's outcome is final, after the function's log line.
    const s = await waitFor(
      async () => {
        const st = await status(t, 'persisted')
        const ticks = seen(t, 'persisted').map((r) => r.body.scheduledAt)
        return st?.last !== undefined && ticks.includes(st.last) && st
      },
      10_000,
      'status.last to be a tick that ran',
    )
    expect(s.last).toMatch(WHOLE_SECOND_ISO)
    expect(s.next).toMatch(WHOLE_SECOND_ISO)
    expect(Date.parse(s.next as string)).toBeGreaterThan(Date.parse(s.last as string))
    expect(Date.parse(s.lastUpdated as string)).toBeGreaterThanOrEqual(Date.parse(s.last as string))
    expect(s.lastOutcome).toBe('done')
  })

  it('catchUp: latest runs a tick missed while down once, with isPastDue', async () => {
    const dir = keptDir()
    const { schedule, lastSlot } = farDaily()
    const fns = [timerFn('report', `{ schedule: "${schedule}", catchUp: latest }`)]
    const files = { 'functions/report.ts': recorder() }

    const first = await gateway(fns, files, dir)
    const s1 = await waitFor(() => status(first, 'report'), 10_000, 'first status')
    expect(Date.parse(s1.next as string)).toBeGreaterThan(Date.now())
    await first.stop()
    expect(seen(first, 'report')).toHaveLength(0)

    // While the gateway was down, the schedule's latest tick passed.
    const store = new SqliteStore(join(dir, 'state.db'))
    await store.setState('timer:report', 'status', { ...s1, next: lastSlot })
    await store.close()

    const second = await gateway(fns, files, dir)
    const [run] = await seenAtLeast(second, 'report', 1)
    expect(run?.body).toMatchObject({ scheduledAt: lastSlot, isPastDue: true, schedule })
    expect(run?.meta.isPastDue).toBe(true)
    expect(run?.id).toBe(`report@${lastSlot}`)
    const s2 = await waitFor(
      async () => {
        const st = await status(second, 'report')
        return st?.last === lastSlot && st
      },
      10_000,
      'status.last = the missed tick',
    )
    expect(s2.lastOutcome).toBe('done')
    expect(Date.parse(s2.next as string)).toBeGreaterThan(Date.now())
    expect(second.logs.find('timer missed ticks while down; catching up once')).toHaveLength(1)
    await second.stop()
    expect(seen(second, 'report')).toHaveLength(1)

    // A third start finds nothing missed: no second catch-up.
    const third = await gateway(fns, files, dir)
    await third.stop()
    expect(seen(third, 'report')).toHaveLength(0)
    expect(third.logs.find('timer missed ticks while down; catching up once')).toHaveLength(0)
  })

  it('a tick aborted by shutdown is released at once, so catchUp: latest runs it at the next start', async () => {
    const dir = keptDir()
    const fns = [
      timerFn('slowly', '{ schedule: "*/20 * * * * *", catchUp: latest }', [
        'retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 600000, maxDelayMs: 600000 }',
      ]),
    ]

    // The first attempt fails; its retry would come ten minutes later, but the gateway stops first.
    const first = await gateway(fns, { 'functions/slowly.ts': recorder({ throws: true }) }, dir)
    const [failed] = await seenAtLeast(first, 'slowly', 1, 40_000)
    const tick = failed?.body.scheduledAt as string
    await waitFor(() => first.gw.router.stats('slowly').backlog > 0 && first.gw.router.stats('slowly').inflight === 0, 10_000, 'the retry to wait')
    await first.stop()
    expect(first.logs.find('released a timer tick aborted by shutdown')).toHaveLength(1)
    expect((await statusInFile(dir, 'slowly'))?.next).toBe(tick)

    // Once the tick counts as missed (a second's grace), a start catches it up: it was released,
    // not kept claimed (before, a claim held it for 24 hours and the catch-up ran nothing).
    await waitFor(() => Date.now() > Date.parse(tick) + 1500, 10_000, 'the grace to pass')
    const second = await gateway(fns, { 'functions/slowly.ts': recorder() }, dir)
    const [again] = await seenAtLeast(second, 'slowly', 1)
    expect(again?.body.isPastDue).toBe(true)
    // The missed tick itself, unless the restart was so slow that a later one was missed too.
    expect(Date.parse(again?.body.scheduledAt as string)).toBeGreaterThanOrEqual(Date.parse(tick))
    expect(again?.attempt).toBe(1)
    expect(second.logs.find('timer missed ticks while down; catching up once')).toHaveLength(1)
  }, 90_000)

  it('catchUp: none does not run a missed tick', async () => {
    const dir = keptDir()
    const fns = [timerFn('nocatch', `{ schedule: ${EVERY_SECOND}, catchUp: none }`)]
    const files = { 'functions/nocatch.ts': recorder() }

    const first = await gateway(fns, files, dir)
    await seenAtLeast(first, 'nocatch', 1)
    await first.stop()

    const missed = new Date(Math.floor(Date.now() / 1000) * 1000 - 10 * 60_000).toISOString()
    const store = new SqliteStore(join(dir, 'state.db'))
    const s1 = (await store.getState('timer:nocatch', 'status')) as ScheduleStatus
    await store.setState('timer:nocatch', 'status', { ...s1, next: missed })
    await store.close()

    // A catch-up would start inside start(), before any scheduled tick, so it would be the first run.
    const second = await gateway(fns, files, dir)
    const runs = await seenAtLeast(second, 'nocatch', 2)
    for (const r of runs) {
      expect(r.body.isPastDue).toBe(false)
      expect(r.body.scheduledAt).not.toBe(missed)
      expect(Date.parse(r.body.scheduledAt)).toBeGreaterThan(Date.parse(missed))
    }
    expect(second.logs.find('timer missed ticks while down; catching up once')).toHaveLength(0)
  })

  it('does not overlap runs: ticks during a run are skipped and counted', async () => {
    const skips: TimerSkipMessage[] = []
    const onSkip = (m: unknown) => skips.push(m as TimerSkipMessage)
    subscribe(CHANNELS.timerSkip, onSkip)
    onTestFinished(() => {
      unsubscribe(CHANNELS.timerSkip, onSkip)
    })
    const dir = keptDir()
    const t = await gateway([timerFn('slow', `{ schedule: ${EVERY_SECOND} }`, ['timeoutMs: 5000'])], { 'functions/slow.ts': recorder({ busyMs: 1500 }) }, dir)
    const mine = () => skips.filter((m) => m.gateway === t.gw.id && m.function === 'slow')

    await waitFor(() => seen(t, 'slow').length >= 3 && mine().length >= 2, 60_000, '3 runs and 2 skipped ticks')
    const persisted = await waitFor(
      async () => {
        const st = await status(t, 'slow')
        return (st?.skipped ?? 0) > 0 && st
      },
      10_000,
      'a persisted skip count',
    )
    expect(persisted.skipped).toBeGreaterThan(0)

    const metrics = await (await fetch(`${t.url}/metrics`)).text()
    const counted = /^sluice_timer_skipped_total\{function="slow"\} (\d+)$/m.exec(metrics)
    expect(Number(counted?.[1])).toBeGreaterThan(0)

    await t.stop()
    const runs = seen(t, 'slow').sort((a, b) => a.start - b.start)
    // No two runs were ever in the function at once.
    for (let i = 1; i < runs.length; i++) {
      expect((runs[i - 1] as Seen).end).toBeLessThanOrEqual((runs[i] as Seen).start)
      expect(Date.parse((runs[i] as Seen).body.scheduledAt)).toBeGreaterThan(Date.parse((runs[i - 1] as Seen).body.scheduledAt))
    }
    // A skipped tick is not run later, and every skip is both published and persisted.
    const ran = new Set(runs.map((r) => r.body.scheduledAt))
    for (const m of mine()) {
      expect(m.scheduledAt).toMatch(WHOLE_SECOND_ISO)
      expect(ran.has(m.scheduledAt)).toBe(false)
    }
    expect((await statusInFile(dir, 'slow'))?.skipped).toBe(mine().length)
  }, 120_000)

  it('applies the retry policy to a tick and dead-letters it after the last attempt', async () => {
    const t = await gateway([timerFn('fails', `{ schedule: ${EVERY_SECOND} }`, ['retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 50 }'])], {
      'functions/fails.ts': recorder({ throws: true }),
    })
    const [dl] = await waitFor(
      async () => {
        const l = await t.gw.store.listDeadLetters({ function: 'fails' })
        return l.length > 0 && l
      },
      30_000,
      'a dead letter',
    )
    expect(dl).toBeDefined()
    if (!dl) return
    const body = dl.event.body as TimerBody
    expect(dl.attempts).toBe(3)
    expect(dl.event.source).toBe('timer://fails')
    expect(dl.event.id).toBe(`fails@${body.scheduledAt}`)
    expect(body.isPastDue).toBe(false)
    expect(dl.error.code).toBe('SLUICE_ERR_FUNCTION_THREW')
    expect(dl.error.message).toContain(`boom ${dl.event.id}`)

    const runs = seen(t, 'fails')
    expect(runs.filter((r) => r.id === dl.event.id).map((r) => r.attempt)).toEqual([1, 2, 3])
    // A tick's attempts run back to back: the next tick waits until the last retry is over.
    const order: string[] = []
    for (const r of runs) {
      if (order.at(-1) !== r.id) {
        expect(order).not.toContain(r.id)
        order.push(r.id)
      }
    }
    for (const id of order) {
      const attempts = runs.filter((r) => r.id === id).map((r) => r.attempt)
      expect(attempts).toEqual([1, 2, 3].slice(0, attempts.length))
    }
    const s = await waitFor(
      async () => {
        const st = await status(t, 'fails')
        return st?.lastOutcome !== undefined && st
      },
      10_000,
      'a persisted outcome',
    )
    expect(s.lastOutcome).toBe('dead')
  })

  it('a store failure during a tick is logged and does not end the gateway', async () => {
    const t = await gateway([timerFn('fragile', `{ schedule: ${EVERY_SECOND} }`)], { 'functions/fragile.ts': recorder() })
    await seenAtLeast(t, 'fragile', 1)
    // The store goes away under the running gateway (a lost database, a broken disk): claiming
    // the tick throws. Before the fix this was an unhandled rejection, which ends the process.
    await t.gw.store.close()
    const failed = await waitFor(
      () => {
        const l = t.logs.find('timer tick failed')
        return l.length >= 2 && l
      },
      30_000,
      'two failed ticks to be logged',
    )
    expect(failed[0]).toMatchObject({ level: 'error', function: 'fragile' })
    expect(String(failed[0]?.err)).toMatch(/not open/)
    await t.stop()
    expect(t.logs.find('shutdown step failed; continuing')).toHaveLength(0)
  })

  it('runOnStartup runs once when the gateway starts', async () => {
    const { schedule } = farDaily()
    const t = await gateway([timerFn('boot', `{ schedule: "${schedule}", runOnStartup: true }`), timerFn('quiet', `{ schedule: "${schedule}" }`)], {
      'functions/boot.ts': recorder(),
      'functions/quiet.ts': recorder(),
    })
    const [run] = await seenAtLeast(t, 'boot', 1)
    expect(run?.source).toBe('timer://boot')
    expect(run?.body.isPastDue).toBe(false)
    expect(run?.body.schedule).toBe(schedule)
    expect(Number.isNaN(Date.parse(run?.body.scheduledAt ?? ''))).toBe(false)
    await waitFor(async () => (await status(t, 'boot'))?.last === run?.body.scheduledAt, 10_000, 'boot status')
    await t.stop()
    expect(seen(t, 'boot')).toHaveLength(1)
    expect(seen(t, 'quiet')).toHaveLength(0)
  })

  it('stop() during a run lets the run finish and ends the schedule', async () => {
    const dir = keptDir()
    const t = await gateway(
      [timerFn('stopper', `{ schedule: ${EVERY_SECOND} }`, ['timeoutMs: 5000'])],
      { 'functions/stopper.ts': recorder({ busyMs: 1500 }) },
      dir,
    )
    const taskName = 'timer:stopper'
    expect([...getTasks().values()].some((task) => task.name === taskName)).toBe(true)
    await waitFor(() => t.gw.router.stats('stopper').inflight > 0, 30_000, 'a run in progress')

    await t.stop()
    // Every shutdown step finished (a step that hangs is cut off with this log line).
    expect(t.logs.find('shutdown step failed; continuing')).toHaveLength(0)
    expect(t.logs.find('gateway stopped')).toHaveLength(1)
    // The run that was going on finished, and its outcome was persisted before the store closed.
    const runs = seen(t, 'stopper')
    expect(runs.length).toBeGreaterThanOrEqual(1)
    const lastRun = runs.at(-1) as Seen
    const s = await statusInFile(dir, 'stopper')
    expect(s?.last).toBe(lastRun.body.scheduledAt)
    expect(s?.lastOutcome).toBe('done')
    // `next` is a tick after the last one that ran: a restart must not take that tick for missed.
    expect(Date.parse(s?.next ?? '')).toBeGreaterThan(Date.parse(s?.last ?? ''))

    // The cron task is gone, so nothing can tick any more; and nothing does over the next slots.
    expect([...getTasks().values()].some((task) => task.name === taskName)).toBe(false)
    const activity = () => seen(t, 'stopper').length + t.logs.find(/^timer /).length
    const before = activity()
    await new Promise((r) => setTimeout(r, 2500))
    expect(activity()).toBe(before)
  })
})
