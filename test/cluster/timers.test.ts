/**
 * Timers across gateway instances sharing one PostgreSQL store (the local server, a fresh schema
 * per test): every tick of a one-second schedule runs exactly once across three gateways; a long
 * tick whose gateway is killed (-9) is taken over by another with attempt 2; a tick aborted by a
 * shutdown is released at once and runs on another gateway. Each function logs what it ran; the
 * ledger is read from every gateway's logs.
 */
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { projectDir, startGateway, waitFor, type TestGateway } from '../helpers/gateway.js'
import { PostgresStore } from '../../src/store/postgres.js'
import { admin, memoryLog, PG_URL, tempSchema } from '../store/pg.js'

interface Ran {
  id: string
  scheduledAt: string
  attempt: number
  isPastDue: boolean
}

/** Logs each tick; spins `spinMs` first (a long run); throws after logging when `throws`. */
const tickFn = (opts: { spinMs?: number; throws?: boolean } = {}) => `export default async function (events: any[]) {
  const start = Date.now()
  ${opts.spinMs ? `while (Date.now() - start < ${opts.spinMs}) { /* a long tick */ }` : ''}
  for (const e of events) console.log(JSON.stringify({ id: e.id, scheduledAt: e.body.scheduledAt, attempt: e.attempt, isPastDue: e.body.isPastDue }))
  ${opts.throws ? "throw new Error('tick failed')" : ''}
}
`

const storeYaml = (schema: string) => `{ kind: postgres, url: "${PG_URL}", schema: ${schema}, pool: { max: 4 } }`

/** Each gateway its own instance id: two under one id (the host name) would refuse to start. */
const fnYaml = (schedule: string, extra: string[] = []) =>
  `${[
    `instance: { id: tick-${randomBytes(4).toString('hex')} }`,
    `functions:`,
    `  tick:`,
    `    code: functions/tick.ts`,
    `    trigger: { timer: { schedule: "${schedule}", leaseMs: 3000 } }`,
    ...extra.map((l) => `    ${l}`),
  ].join('\n')}\n`

function ledger(lines: Array<Record<string, unknown>>): Ran[] {
  return lines.filter((l) => l.source === 'function' && l.function === 'tick').map((l) => JSON.parse(String(l.msg)) as Ran)
}

async function gateway(schema: string, schedule: string, code: string, extra: string[] = []): Promise<TestGateway> {
  const t = await startGateway({ yaml: fnYaml(schedule, extra), files: { 'functions/tick.ts': code }, store: storeYaml(schema) })
  onTestFinished(() => t.stop())
  return t
}

interface LeaseRow {
  key: string
  owner: string
  state: string
  attempt: number
}

const leases = (schema: string) => admin<LeaseRow>(`SELECT key, owner, state, attempt FROM ${schema}.leases WHERE key LIKE 'timer:tick:tick:%' ORDER BY key`)
const tickOf = (key: string) => key.slice('timer:tick:tick:'.length)

describe('timers across three gateways sharing PostgreSQL', () => {
  it('runs every tick of a one-second schedule exactly once', async () => {
    const schema = tempSchema()
    const gws = await Promise.all([0, 1, 2].map(() => gateway(schema, '* * * * * *', tickFn())))
    const allUp = Date.now()
    await new Promise((r) => setTimeout(r, 12_000))
    const stopAt = Date.now()
    await Promise.all(gws.map((g) => g.stop()))

    const runs = gws.flatMap((g) => ledger(g.logs.lines))
    const ticks = runs.map((r) => r.scheduledAt)
    // Exactly once: no tick ran twice, on one gateway or on two.
    expect(new Set(ticks).size).toBe(ticks.length)
    // Every tick: each second from when all three were up until shortly before they stopped ran.
    const first = Math.ceil(allUp / 1000) * 1000 + 1000
    const last = Math.floor(stopAt / 1000) * 1000 - 2000
    const ran = new Set(ticks)
    const missing: string[] = []
    for (let t = first; t <= last; t += 1000) if (!ran.has(new Date(t).toISOString())) missing.push(new Date(t).toISOString())
    expect(missing).toEqual([])
    expect(last - first).toBeGreaterThanOrEqual(5000)
    // The work was shared, and nothing needed a takeover.
    expect(gws.filter((g) => ledger(g.logs.lines).length > 0).length).toBeGreaterThanOrEqual(2)
    expect(runs.every((r) => r.attempt === 1 && !r.isPastDue)).toBe(true)
    // Each tick's lease ended as done.
    const rows = (await leases(schema)).filter((r) => ran.has(tickOf(r.key)))
    expect(rows.map((r) => r.state)).toEqual(rows.map(() => 'done'))
  }, 90_000)

  it('catchUp: latest after every instance was down runs once, past due, on one of three starting together', async () => {
    const schema = tempSchema()
    // A daily tick about twelve hours away; the stored status says the last one was missed.
    const hour = (new Date().getUTCHours() + 12) % 24
    const slot = new Date()
    slot.setUTCHours(hour, 0, 0, 0)
    if (slot.getTime() > Date.now()) slot.setUTCDate(slot.getUTCDate() - 1)
    const schedule = `0 0 ${hour} * * *`
    const seed = await PostgresStore.open({ url: PG_URL, schema, log: memoryLog() })
    await seed.setState('timer:tick', 'status', { next: slot.toISOString(), last: new Date(slot.getTime() - 86_400_000).toISOString() })
    await seed.close()

    const gws = await Promise.all(
      [0, 1, 2].map(() =>
        startGateway({
          yaml: fnYaml(schedule).replace('leaseMs: 3000', 'leaseMs: 3000, catchUp: latest'),
          files: { 'functions/tick.ts': tickFn() },
          store: storeYaml(schema),
        }),
      ),
    )
    for (const g of gws) onTestFinished(() => g.stop())
    const all = () => gws.flatMap((g) => ledger(g.logs.lines))
    const [run] = await waitFor(() => all().length > 0 && all(), 30_000, 'the catch-up run')
    expect(run).toMatchObject({ scheduledAt: slot.toISOString(), isPastDue: true, attempt: 1 })
    await waitFor(async () => (await leases(schema)).some((r) => r.state === 'done'), 10_000, 'the catch-up to be done')
    await waitFor(
      async () => {
        const [row] = await admin<{ value: string }>(`SELECT value FROM ${schema}.state WHERE scope = 'timer:tick' AND key = 'status'`)
        return row !== undefined && Date.parse((JSON.parse(row.value) as { next: string }).next) > Date.now()
      },
      10_000,
      'the status to be saved',
    )
    // A fourth instance starting now finds nothing missed.
    const late = await startGateway({
      yaml: fnYaml(schedule).replace('leaseMs: 3000', 'leaseMs: 3000, catchUp: latest'),
      files: { 'functions/tick.ts': tickFn() },
      store: storeYaml(schema),
    })
    onTestFinished(() => late.stop())
    expect(late.logs.find('timer missed ticks while down; catching up once')).toHaveLength(0)
    await Promise.all([...gws, late].map((g) => g.stop()))
    expect([...all(), ...ledger(late.logs.lines)]).toHaveLength(1)
  }, 120_000)

  it('a long tick whose gateway is killed -9 completes on another gateway with attempt 2', async () => {
    const schema = tempSchema()
    // The gateway in a child process runs ticks for a long time; the two in this process are quick.
    const project = projectDir({ 'functions/tick.ts': tickFn({ spinMs: 15_000 }) })
    onTestFinished(() => project.cleanup())
    writeFileSync(
      join(project.dir, 'gateway.yaml'),
      `http: { port: 0, host: 127.0.0.1 }\nworkers: { hosts: 1, prewarm: 1 }\nstore: ${storeYaml(schema)}\n${fnYaml('*/3 * * * * *', ['timeoutMs: 60000'])}`,
    )
    const child = new GatewayProcess(project.dir)
    onTestFinished(() => child.kill())
    await child.start()
    const pid = child.child?.pid as number
    const quick = await Promise.all([0, 1].map(() => gateway(schema, '*/3 * * * * *', tickFn(), ['timeoutMs: 60000'])))

    const quickUp = Date.now()
    // Wait until the child holds a tick the others fired too (they watch only ticks they fired;
    // the child's lease names its pid), then kill it mid-run.
    const held = await waitFor(
      async () => (await leases(schema)).find((r) => r.owner.includes(`:${pid}:`) && r.state === 'held' && Date.parse(tickOf(r.key)) > quickUp),
      90_000,
      'a tick held by the child',
    )
    await child.kill()
    const tick = tickOf(held.key)

    const takenOver = await waitFor(() => quick.flatMap((g) => ledger(g.logs.lines)).find((r) => r.scheduledAt === tick), 60_000, 'the tick to run elsewhere')
    expect(takenOver).toMatchObject({ id: `tick@${tick}`, attempt: 2, isPastDue: true })
    await waitFor(async () => (await leases(schema)).find((r) => r.key === held.key && r.state === 'done'), 10_000, 'the taken-over tick to be done')
    await Promise.all(quick.map((g) => g.stop()))
    // It ran once after the takeover (on one of the two), and never completed in the killed child.
    expect(quick.flatMap((g) => ledger(g.logs.lines)).filter((r) => r.scheduledAt === tick)).toHaveLength(1)
    expect(ledger(child.lines).filter((r) => r.scheduledAt === tick)).toEqual([])
    expect(quick.flatMap((g) => g.logs.find('took over a timer tick whose lease ran out or was released'))).toHaveLength(1)
  }, 150_000)

  it('a tick aborted by shutdown is released at once and runs on another gateway', async () => {
    const schema = tempSchema()
    // A's runs fail and wait ten minutes for their retry; B's succeed.
    const retry = 'retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 600000, maxDelayMs: 600000 }'
    // B first: an instance watches the ticks it fired itself, so it must be up when A takes one.
    const b = await gateway(schema, '*/2 * * * * *', tickFn(), [retry])
    const a = await gateway(schema, '*/2 * * * * *', tickFn({ throws: true }), [retry])
    const failed = await waitFor(() => ledger(a.logs.lines)[0], 60_000, 'a failed tick on A')
    await waitFor(() => a.gw.router.stats('tick').backlog > 0 && a.gw.router.stats('tick').inflight === 0, 10_000, 'the retry to wait')
    const key = `timer:tick:tick:${failed.scheduledAt}`
    expect((await leases(schema)).find((r) => r.key === key)?.state).toBe('held')

    await a.stop()
    expect(a.logs.find('released a timer tick aborted by shutdown')).toHaveLength(1)
    // Released, not held until its lease runs out: free for B at once (or B has it already).
    const row = (await leases(schema)).find((r) => r.key === key)
    const tookOver = () => b.logs.find('took over a timer tick whose lease ran out or was released').some((l) => l.scheduledAt === failed.scheduledAt)
    expect(row?.state === 'released' || tookOver()).toBe(true)

    const rerun = await waitFor(() => ledger(b.logs.lines).find((r) => r.scheduledAt === failed.scheduledAt), 30_000, 'the released tick on B')
    // A release gives the work back on purpose: the attempt is not counted on.
    expect(rerun).toMatchObject({ attempt: 1, isPastDue: true })
    await waitFor(async () => (await leases(schema)).find((r) => r.key === key)?.state === 'done', 10_000, 'the tick to be done')
    expect(ledger(b.logs.lines).filter((r) => r.scheduledAt === failed.scheduledAt)).toHaveLength(1)
  }, 120_000)
})
