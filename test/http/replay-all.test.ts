/**
 * POST /admin/dead-letters/replay: replays every dead letter matching a filter. Letters made by a
 * broken function are replayed while it is still broken (they fail again and are replaced), then
 * by a new gateway on the same store after the function was fixed (they finish and are removed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Outcome, TriggerEvent } from '../../src/sdk/index.js'
import type { DeadLetter } from '../../src/store/store.js'
import { projectDir, startGateway, type TestGateway } from '../helpers/gateway.js'

const YAML = `functions:
  ra-orders:
    code: functions/orders.ts
    retry: { maxAttempts: 2, initialDelayMs: 10, backoff: fixed }
    trigger: { http: { route: orders, methods: [POST], auth: anonymous } }
  ra-audit:
    code: functions/audit.ts
    retry: { maxAttempts: 2, initialDelayMs: 10, backoff: fixed }
    trigger: { http: { route: audit, methods: [POST], auth: anonymous } }
`
const BROKEN = `export default async (events: any[]) => { throw new Error('orders are broken: ' + events[0]?.body?.n) }\n`
const FIXED = `export default async (events: any[]) => ({ handled: events.length })\n`
const AUDIT = `export default async () => { throw new Error('audit is broken') }\n`

interface BulkResult {
  matched: number
  done: number
  results: Array<{ id: string; function: string; outcome?: Outcome; error?: { code: string } }>
}

let seq = 0
function event(n: number): TriggerEvent {
  seq++
  return {
    id: `replay-all-${process.pid}-${seq}`,
    source: 'test://replay-all',
    time: new Date().toISOString(),
    body: { n },
    meta: { partition: 0, offset: seq },
  }
}

describe('POST /admin/dead-letters/replay', () => {
  const project = projectDir({})
  let t: TestGateway
  const replayAll = async (filter: unknown, status = 200) => {
    const res = await fetch(`${t.url}/admin/dead-letters/replay`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(filter),
    })
    expect(res.status).toBe(status)
    return (await res.json()) as BulkResult
  }
  const letters = async (fn: string) => ((await (await fetch(`${t.url}/admin/dead-letters?function=${fn}`)).json()) as { items: DeadLetter[] }).items

  beforeAll(async () => {
    t = await startGateway({ dir: project.dir, yaml: YAML, files: { 'functions/orders.ts': BROKEN, 'functions/audit.ts': AUDIT } })
    const outcomes = [...(await t.gw.router.deliver('ra-orders', [event(1), event(2), event(3)])), ...(await t.gw.router.deliver('ra-audit', [event(4)]))]
    expect(outcomes.map((o) => o.status)).toEqual(['dead', 'dead', 'dead', 'dead'])
  })
  afterAll(async () => {
    await t.stop()
    project.cleanup()
  })

  it('refuses unknown keys and out-of-range limits with 400', async () => {
    for (const bad of [{ limit: 0 }, { limit: 1001 }, { fn: 'ra-orders' }, { function: '' }, [1]]) {
      const res = await fetch(`${t.url}/admin/dead-letters/replay`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(bad),
      })
      expect(res.status, JSON.stringify(bad)).toBe(400)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('SLUICE_ERR_HTTP_BAD_REQUEST')
    }
    expect(await letters('ra-orders')).toHaveLength(3)
  })

  it('replays nothing when the filter matches nothing', async () => {
    expect(await replayAll({ function: 'ra-orders', code: 'SLUICE_ERR_FUNCTION_TIMEOUT' })).toEqual({ matched: 0, done: 0, results: [] })
    expect(await letters('ra-orders')).toHaveLength(3)
  })

  it('while the function is still broken, each matching letter fails again and is replaced by a new one', async () => {
    const before = await letters('ra-audit')
    expect(before).toHaveLength(1)
    const r = await replayAll({ function: 'ra-audit', code: 'SLUICE_ERR_FUNCTION_THREW' })
    expect(r.matched).toBe(1)
    expect(r.done).toBe(0)
    expect(r.results[0]).toMatchObject({ id: before[0]?.id, function: 'ra-audit', outcome: { status: 'dead', error: { code: 'SLUICE_ERR_FUNCTION_THREW' } } })
    const after = await letters('ra-audit')
    expect(after).toHaveLength(1)
    expect(after[0]?.id).not.toBe(before[0]?.id)
    expect(after[0]?.event.id).toBe(before[0]?.event.id)
    // The filter kept the other function's letters out.
    expect(await letters('ra-orders')).toHaveLength(3)
  })

  it('after the function is fixed, replays the matching letters (up to limit) and removes them', async () => {
    const stored = await letters('ra-orders')
    await t.stop()
    t = await startGateway({ dir: project.dir, yaml: YAML, files: { 'functions/orders.ts': FIXED } })
    expect(await letters('ra-orders')).toHaveLength(3)

    const first = await replayAll({ function: 'ra-orders', limit: 2 })
    expect(first.matched).toBe(2)
    expect(first.done).toBe(2)
    expect(first.results.map((x) => x.id).sort()).toEqual(
      stored
        .slice(0, 2)
        .map((d) => d.id)
        .sort(),
    )
    expect((await letters('ra-orders')).map((d) => d.id)).toEqual([stored[2]?.id])

    const rest = await replayAll({ function: 'ra-orders' })
    expect(rest).toMatchObject({ matched: 1, done: 1, results: [{ id: stored[2]?.id, outcome: { status: 'done' } }] })
    expect(await letters('ra-orders')).toEqual([])
    expect(t.gw.function('ra-orders')?.counts.eventsDone).toBe(3)
    // The still-broken function's letter was not touched.
    expect(await letters('ra-audit')).toHaveLength(1)
  })
})
