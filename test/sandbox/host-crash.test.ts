import { afterEach, describe, expect, it } from 'vitest'
import type { TriggerEvent } from '../../src/sdk/index.js'
import { startGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

const SLOW = `export default async function (events) {
  const end = Date.now() + 300
  while (Date.now() < end) {}
  return { n: events.length }
}`
const FAST = `export default async () => ({ ok: true })`

let t: TestGateway | undefined
afterEach(async () => {
  await t?.stop()
  t = undefined
})

const ev = (i: number): TriggerEvent => ({ id: `c${i}`, source: 'test://crash', time: new Date().toISOString(), body: { i }, meta: {} })

describe('worker host crash', () => {
  it('fails in-flight batches back to the router, restarts the host and loses nothing', async () => {
    t = await startGateway({
      hosts: 2,
      yaml: `functions:
  slow:
    code: functions/slow.js
    trigger: { timer: { schedule: "0 0 0 1 1 *" } }
    batch: { maxSize: 10, maxWaitMs: 0 }
    orderKey: none
    retry: { maxAttempts: 5, backoff: fixed, initialDelayMs: 50 }
    scale: { max: 2 }
  fast:
    code: functions/fast.js
    trigger: { http: { route: fast, auth: anonymous } }
`,
      files: { 'functions/slow.js': SLOW, 'functions/fast.js': FAST },
    })
    const g = t
    const events = Array.from({ length: 60 }, (_, i) => ev(i))
    const pending = g.gw.router.deliver('slow', events)
    await waitFor(() => g.gw.router.stats('slow').inflight > 0, 5000, 'a batch in flight')
    const victim = g.gw.hosts().find((h) => h.instances > 0)
    expect(victim).toBeDefined()
    process.kill(victim!.pid, 'SIGKILL')
    // Other functions keep working while the host is down.
    const res = await fetch(`${g.url}/api/fast`)
    expect(res.status).toBe(200)
    const outcomes = await pending
    expect(outcomes.every((o) => o.status === 'done')).toBe(true)
    expect(g.gw.function('slow')?.counts.retries).toBeGreaterThan(0)
    await waitFor(() => g.gw.hosts().every((h) => h.up) && g.gw.hosts().some((h) => h.restarts > 0), 10_000, 'host restart')
    expect(g.logs.find('worker host exited; restarting').length).toBeGreaterThan(0)
  })

  it('restarts a host that keeps dying with growing backoff', async () => {
    t = await startGateway({
      yaml: `functions:
  fast:
    code: functions/fast.js
    trigger: { http: { route: fast, auth: anonymous } }
`,
      files: { 'functions/fast.js': FAST },
    })
    const g = t
    for (let i = 0; i < 3; i++) {
      await waitFor(() => g.gw.hosts()[0]?.up, 10_000, 'host up')
      process.kill(g.gw.hosts()[0]!.pid, 'SIGKILL')
      await waitFor(() => !g.gw.hosts()[0]?.up, 5000, 'host down')
    }
    await waitFor(() => g.gw.hosts()[0]?.up, 10_000, 'host up again')
    const delays = g.logs.find('worker host exited; restarting').map((l) => l.restartInMs as number)
    expect(delays).toHaveLength(3)
    expect(delays[1]).toBeGreaterThan(delays[0]!)
    expect(delays[2]).toBeGreaterThan(delays[1]!)
    expect((await fetch(`${g.url}/api/fast`)).status).toBe(200)
  })
})

describe('no worker host up', () => {
  it('holds requests until a host is back, then serves them', async () => {
    t = await startGateway({
      yaml: `functions:
  fast:
    code: functions/fast.js
    trigger: { http: { route: fast, auth: anonymous } }
`,
      files: { 'functions/fast.js': FAST },
    })
    const g = t
    await waitFor(() => g.gw.hosts()[0]?.up, 10_000, 'host up')
    process.kill(g.gw.hosts()[0]!.pid, 'SIGKILL')
    await waitFor(() => !g.gw.hosts()[0]?.up, 5000, 'host down')
    // Sent while no host runs: waits for the restart instead of failing.
    const res = await fetch(`${g.url}/api/fast`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ ok: true })
  })
})
