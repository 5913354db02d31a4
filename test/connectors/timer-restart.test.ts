/**
 * A tick whose only gateway dies mid-run (kill -9) is not lost: the next gateway to start on the
 * same store (here the restarted one, SQLite, `catchUp: none`) finds the claimed tick without a
 * recorded run, waits out its lease and runs it once, past due, with the attempt counted on.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { ScheduleStatus } from '../../connectors/timer/index.js'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { projectDir, waitFor } from '../helpers/gateway.js'
import { SqliteStore } from '../../src/store/sqlite.js'

interface Ran {
  scheduledAt: string
  attempt: number
  isPastDue: boolean
}

/** Logs each tick; the first attempt spins long enough to be killed in the middle of it. */
const TICK = `export default async function (events: any[]) {
  const start = Date.now()
  if (events[0].attempt === 1) while (Date.now() - start < 20000) { /* a long tick */ }
  for (const e of events) console.log(JSON.stringify({ scheduledAt: e.body.scheduledAt, attempt: e.attempt, isPastDue: e.body.isPastDue }))
}
`

/** Daily at 03:00: no scheduled tick comes during the test; the first start runs one at startup. */
const config = (runOnStartup: boolean) => `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1 }
store: { path: state.db }
functions:
  tick:
    code: functions/tick.ts
    timeoutMs: 60000
    trigger: { timer: { schedule: "0 0 3 * * *", runOnStartup: ${runOnStartup}, leaseMs: 2000 } }
`

const ledger = (lines: Array<Record<string, unknown>>): Ran[] =>
  lines.filter((l) => l.source === 'function' && l.function === 'tick').map((l) => JSON.parse(String(l.msg)) as Ran)

describe('timer tick claimed by a gateway that died', () => {
  it('runs once on the next start, past due, attempt 2', async () => {
    const project = projectDir({ 'functions/tick.ts': TICK, 'gateway.yaml': config(true) })
    onTestFinished(() => project.cleanup())
    const first = new GatewayProcess(project.dir)
    onTestFinished(() => first.kill())
    await first.start()
    // The startup tick is running (its lease is held and the status names it as claimed).
    const readStatus = async () => {
      const store = new SqliteStore(join(project.dir, 'state.db'))
      try {
        return (await store.getState('timer:tick', 'status')) as ScheduleStatus | undefined
      } finally {
        await store.close()
      }
    }
    const claimed = await waitFor(async () => (await readStatus())?.claimed, 30_000, 'the startup tick to be claimed')
    await first.kill()
    expect(ledger(first.lines)).toEqual([])

    // Restarted without runOnStartup: the only tick it may run is the one that died.
    writeFileSync(join(project.dir, 'gateway.yaml'), config(false))
    const second = new GatewayProcess(project.dir)
    onTestFinished(() => second.kill())
    await second.start()
    const rerun = await waitFor(() => ledger(second.lines).find((r) => r.scheduledAt === claimed), 30_000, 'the claimed tick to run again')
    expect(rerun).toEqual({ scheduledAt: claimed, attempt: 2, isPastDue: true })
    await waitFor(async () => (await readStatus())?.last === claimed, 10_000, 'the run to be recorded')
    expect(await second.stop()).toBe(0)
    expect(ledger(second.lines)).toHaveLength(1)
    expect(second.lines.some((l) => l.msg === 'took over a timer tick whose lease ran out or was released')).toBe(true)
  }, 120_000)
})
