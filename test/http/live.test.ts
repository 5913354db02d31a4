/**
 * The dashboard's live feed, GET /admin/events (server-sent events), against a real gateway: the
 * admin key in a header or (on this route only) the `key` query parameter, the history sent on
 * connect, snapshots every second, invocation and dead-letter notifications, and the streams
 * ending when the gateway stops.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { LiveActivity, LiveHistory, LiveSnapshot } from '../../src/http/live-types.js'
import type { TriggerEvent } from '../../src/sdk/index.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { openSse, type SseReader } from '../helpers/sse.js'

const ADMIN_KEY = 'live-test-key-0123456789abcdef'
const NAMES = ['lv-dead', 'lv-hello', 'lv-nightly']

let seq = 0
function event(body: unknown): TriggerEvent {
  seq++
  return { id: `live-test-${process.pid}-${seq}`, source: 'test://live', time: new Date().toISOString(), body, meta: {} }
}

describe('GET /admin/events', () => {
  let t: TestGateway
  const open: SseReader[] = []
  const sse = async (path: string, headers: Record<string, string> = {}) => {
    const r = await openSse(`${t.url}${path}`, headers)
    open.push(r)
    return r
  }

  beforeAll(async () => {
    t = await startGateway({
      yaml: `admin: { key: ${ADMIN_KEY} }
functions:
  lv-hello:
    code: functions/hello.ts
    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }
  lv-nightly:
    code: functions/hello.ts
    trigger: { timer: { schedule: "0 0 3 1 1 *", timezone: UTC } }
  lv-dead:
    code: functions/throws.ts
    retry: { maxAttempts: 2, initialDelayMs: 10, backoff: fixed }
    trigger: { http: { route: dead, methods: [POST], auth: anonymous } }
`,
      files: {
        'functions/hello.ts': `export default async (events: any[], ctx: any) => { ctx.log.info('hello', events.length); return { n: events.length } }\n`,
        'functions/throws.ts': `export default async () => { throw new Error('always fails') }\n`,
      },
    })
  })
  afterAll(async () => {
    for (const r of open) r.close()
    await t.stop()
  })

  it('refuses callers without the admin key, or with a wrong one in the header or the query', async () => {
    const inits: RequestInit[] = [{}, { headers: { 'x-sluice-key': 'wrong-key-wrong-key' } }, { headers: { authorization: 'Bearer nope-nope-nope' } }]
    for (const init of inits) {
      const res = await fetch(`${t.url}/admin/events`, init)
      expect(res.status).toBe(401)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('SLUICE_ERR_HTTP_UNAUTHORIZED')
    }
    const wrongQuery = await fetch(`${t.url}/admin/events?key=${ADMIN_KEY}x`)
    expect(wrongQuery.status).toBe(401)
    await wrongQuery.body?.cancel()
  })

  it('accepts the key as a query parameter on this route only', async () => {
    const r = await sse(`/admin/events?key=${encodeURIComponent(ADMIN_KEY)}`)
    expect(r.res.status).toBe(200)
    expect(r.res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const h = await r.next<LiveHistory>('history')
    expect(h.names.sort()).toEqual(NAMES)
    r.close()
    for (const p of ['/admin/functions', '/admin/health', '/metrics', '/admin/dead-letters']) {
      const res = await fetch(`${t.url}${p}?key=${encodeURIComponent(ADMIN_KEY)}`)
      expect(res.status, p).toBe(401)
      await res.body?.cancel()
    }
  })

  it('sends the history on connect, then a snapshot every second with every function, connection and host', async () => {
    const r = await sse('/admin/events', { 'x-sluice-key': ADMIN_KEY })
    expect(r.res.headers.get('cache-control')).toContain('no-cache')
    const h = await r.next<LiveHistory>('history')
    expect(h.stepMs).toBe(1000)
    expect(h.points.length).toBeGreaterThanOrEqual(1)
    for (const p of h.points) {
      expect(p.f).toHaveLength(h.names.length)
      for (const s of p.f) expect(s).toEqual([expect.any(Number), expect.any(Number), expect.any(Number), expect.any(Number)])
    }
    const times = h.points.map((p) => p.t)
    expect([...times].sort((a, b) => a - b)).toEqual(times)

    const first = await r.next<LiveSnapshot>('snapshot')
    const second = await r.next<LiveSnapshot>('snapshot', (s) => s.t > first.t)
    expect(second.t).toBeGreaterThan(first.t)
    expect(second.status).toBe('up')
    expect(second.functions.map((f) => f.name).sort()).toEqual(NAMES)
    const hello = second.functions.find((f) => f.name === 'lv-hello')
    expect(hello).toMatchObject({
      trigger: 'http',
      instances: expect.any(Number),
      busy: 0,
      backlog: 0,
      inflight: 0,
      invocations: expect.any(Number),
      failures: expect.any(Number),
      eventsDone: expect.any(Number),
      eventsDead: expect.any(Number),
      retries: expect.any(Number),
      eventsPerSec: expect.any(Number),
      errorRate: expect.any(Number),
    })
    expect(second.functions.find((f) => f.name === 'lv-nightly')?.trigger).toBe('timer')
    expect(second.connections.map((c) => [c.function, c.kind, c.up]).sort()).toEqual([
      ['lv-dead', 'http', true],
      ['lv-hello', 'http', true],
      ['lv-nightly', 'timer', true],
    ])
    expect(second.hosts).toHaveLength(1)
    expect(second.hosts[0]).toMatchObject({ up: true, pid: expect.any(Number), restarts: 0 })
  })

  it('notifies finished invocations and dead letters, and the counters follow', async () => {
    const r = await sse('/admin/events', { authorization: `Bearer ${ADMIN_KEY}` })
    await r.next<LiveHistory>('history')
    const res = await fetch(`${t.url}/admin/functions/lv-hello/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-sluice-key': ADMIN_KEY },
      body: JSON.stringify({ events: [{ body: 1 }, { body: 2 }] }),
    })
    const inv = (await res.json()) as { invocationId: string }
    const a = await r.next<LiveActivity>('activity', (x) => x.invocations.some((i) => i.invocationId === inv.invocationId))
    expect(a.invocations.find((i) => i.invocationId === inv.invocationId)).toMatchObject({ function: 'lv-hello', kind: 'sync', size: 2, ok: true, failed: 0 })

    const [outcome] = await t.gw.router.deliver('lv-dead', [event({ tag: 'live' })])
    if (outcome?.status !== 'dead') throw new Error(`expected a dead letter, got ${outcome?.status}`)
    const d = await r.next<LiveActivity>('activity', (x) => x.dead.some((l) => l.deadLetterId === outcome.deadLetterId))
    expect(d.dead.find((l) => l.deadLetterId === outcome.deadLetterId)).toMatchObject({
      function: 'lv-dead',
      attempts: 2,
      error: { code: 'SLUICE_ERR_FUNCTION_THREW' },
    })
    const snap = await r.next<LiveSnapshot>('snapshot', (s) => (s.functions.find((f) => f.name === 'lv-dead')?.eventsDead ?? 0) >= 1)
    const dead = snap.functions.find((f) => f.name === 'lv-dead')
    expect(dead?.failures).toBeGreaterThanOrEqual(2)
    expect(dead?.retries).toBeGreaterThanOrEqual(1)
    expect(dead?.errorRate).toBeGreaterThan(0)
    expect(snap.functions.find((f) => f.name === 'lv-hello')?.p50).toEqual(expect.any(Number))
  })

  it('ends open streams when the gateway stops, and the stop does not wait for them', async () => {
    const r = await sse('/admin/events', { 'x-sluice-key': ADMIN_KEY })
    await r.next<LiveHistory>('history')
    expect(t.gw.live.clientCount).toBeGreaterThanOrEqual(1)
    await t.gw.stop({ timeoutMs: 10_000 })
    await r.ended()
    expect(t.gw.live.clientCount).toBe(0)
  })
})
