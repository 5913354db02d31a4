/**
 * Two `sluice start` processes on one host without instance.id share the host name as instance id.
 * With the store shared (one SQLite file, or a PostgreSQL schema on the local server), the second
 * waits out the first's heartbeat and refuses to start with SLUICE_ERR_INSTANCE_DUPLICATE_ID while
 * the first keeps beating; started after the first was killed with SIGKILL it starts once that
 * heartbeat expires; started after a clean stop (SIGTERM, the row recorded as stopped) it starts
 * without waiting. Nothing here is timed.
 */
import { describe, expect, it, onTestFinished } from 'vitest'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { projectDir } from '../helpers/gateway.js'
import { PG_URL, tempSchema } from '../store/pg.js'

const NOOP = 'export default async function () {}\n'
// Long enough that a process started right after a kill -9 (several seconds on a busy machine)
// still finds the killed one's heartbeat fresh, so it has to wait it out.
const EXPIRY_MS = 20_000
const WAITING = /is held by another process that heartbeat/
const EXPIRED = /stopped heartbeating \(its heartbeat expired\): starting/

function project(store: string): { dir: string } {
  const p = projectDir({
    'functions/noop.js': NOOP,
    'gateway.yaml': `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1, prewarm: 0 }
store: ${store}
instance: { heartbeatMs: 500, expiryMs: ${EXPIRY_MS} }
functions:
  noop:
    code: functions/noop.js
    trigger: { http: { route: noop, auth: anonymous } }
`,
  })
  onTestFinished(() => p.cleanup())
  return p
}

function gateway(dir: string): GatewayProcess {
  const g = new GatewayProcess(dir)
  onTestFinished(() => g.kill())
  return g
}

const msgs = (g: GatewayProcess, re: RegExp) => g.lines.filter((l) => re.test(String(l.msg)))

const stores: Array<[string, () => string]> = [
  ['SQLite', () => '{ path: state.db }'],
  ['PostgreSQL', () => `{ kind: postgres, url: "${PG_URL}", schema: ${tempSchema()} }`],
]

describe.each(stores)('one instance id on two processes (%s store)', (_name, store) => {
  it('refuses a second process while the first beats, starts one after a kill -9 once the heartbeat expired, and one after a clean stop at once', async () => {
    const { dir } = project(store())

    const first = gateway(dir)
    await first.start(120_000)

    // A second process with the same (host name) id: it waits, sees the first beat again, refuses.
    const second = gateway(dir)
    const refused = await second.start(120_000).then(
      () => undefined,
      (e: unknown) => e as Error,
    )
    expect(refused, 'the second process must not start').toBeInstanceOf(Error)
    expect(second.child?.exitCode).not.toBe(0)
    expect(second.child?.exitCode).not.toBeNull()
    expect(refused?.message).toContain('[SLUICE_ERR_INSTANCE_DUPLICATE_ID]')
    expect(refused?.message).toMatch(/instance\.id.*SLUICE_INSTANCE_ID/)
    // Its log (JSON) shows the wait with the holder, then the coded error; it never came up.
    const waiting = msgs(second, WAITING)
    expect(waiting.length).toBe(1)
    expect(waiting[0]).toMatchObject({ component: 'cluster', other: { pid: first.child?.pid }, expiryMs: EXPIRY_MS })
    expect(second.lines.find((l) => l.code === 'SLUICE_ERR_INSTANCE_DUPLICATE_ID' && l.level === 'error')).toBeDefined()
    expect(second.lines.some((l) => l.msg === 'gateway up')).toBe(false)
    // The first runs on, still holding the id.
    expect((await fetch(`${first.url}/livez`)).status).toBe(200)
    expect((await fetch(`${first.url}/api/noop`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status).toBe(200)

    // Killed: its row stays fresh until the expiry; a new process waits that out, then starts.
    await first.kill()
    const third = gateway(dir)
    await third.start(120_000)
    expect(msgs(third, WAITING).length).toBe(1)
    expect(msgs(third, EXPIRED).length).toBe(1)
    expect(third.lines.some((l) => l.msg === 'waiting for the instance id')).toBe(true)
    expect(third.lines.some((l) => l.code === 'SLUICE_ERR_INSTANCE_DUPLICATE_ID')).toBe(false)

    // A clean stop records the instance as stopped: the next process starts without waiting.
    expect(await third.stop()).toBe(0)
    const fourth = gateway(dir)
    await fourth.start(120_000)
    expect(msgs(fourth, WAITING)).toEqual([])
    expect(msgs(fourth, EXPIRED)).toEqual([])
    expect(fourth.lines.some((l) => l.code === 'SLUICE_ERR_INSTANCE_DUPLICATE_ID')).toBe(false)
    expect(await fourth.stop()).toBe(0)
  }, 300_000)
})
