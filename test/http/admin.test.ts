/**
 * The admin API and /metrics against a real gateway: health, function listing, synchronous
 * invoke, the admin key, Prometheus output, worker hosts and dead letters (list, get, replay,
 * delete).
 */
import { networkInterfaces } from 'node:os'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FunctionInfo, HealthReport } from '../../src/http/admin.js'
import type { InvocationRecord } from '../../src/router/stats.js'
import type { InvocationResult, TriggerEvent } from '../../src/sdk/index.js'
import type { DeadLetter } from '../../src/store/store.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

const ADMIN_KEY = 'admin-test-key-fedcba9876543210'

interface ErrorJson {
  error: { code: string; message: string; requestId: string }
}

async function body<T>(res: Response, status = 200): Promise<T> {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type') ?? '').toMatch(/^application\/json/)
  return (await res.json()) as T
}

async function expectError(res: Response, status: number, code: string): Promise<ErrorJson['error']> {
  const b = await body<ErrorJson>(res, status)
  expect(b.error.code).toBe(code)
  expect(b.error.requestId).toBe(res.headers.get('x-request-id'))
  return b.error
}

let seq = 0
function event(body: unknown): TriggerEvent {
  seq++
  return { id: `admin-test-${process.pid}-${seq}`, source: 'test://admin', time: new Date().toISOString(), body, meta: { n: seq } }
}

describe('admin API', () => {
  let t: TestGateway
  const get = (path: string) => fetch(`${t.url}${path}`)
  const post = (path: string, payload?: unknown) =>
    fetch(`${t.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      ...(payload === undefined ? {} : { body: typeof payload === 'string' ? payload : JSON.stringify(payload) }),
    })
  const invoke = (fn: string, payload: unknown) => post(`/admin/functions/${fn}/invoke`, payload)

  beforeAll(async () => {
    t = await startGateway({
      yaml: `functions:
  ad-hello:
    code: functions/hello.ts
    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }
  ad-throws:
    code: functions/throws.ts
    trigger: { http: { route: throws, methods: [POST] } }
  ad-nightly:
    code: functions/hello.ts
    trigger: { timer: { schedule: "0 0 3 1 1 *", timezone: UTC } }
  ad-dead:
    code: functions/throws.ts
    retry: { maxAttempts: 2, initialDelayMs: 10, backoff: fixed }
    trigger: { http: { route: dead, methods: [POST], auth: anonymous } }
  ad-flaky:
    code: functions/flaky.ts
    retry: { maxAttempts: 2, initialDelayMs: 10, backoff: fixed }
    trigger: { http: { route: flaky, methods: [POST], auth: anonymous } }
`,
      files: {
        'functions/hello.ts': `export default async (events: any[], ctx: any) => {
  console.log('console line', events.length)
  ctx.log.info('ctx line', { first: events[0]?.body ?? null })
  ctx.log.warn('careful')
  return { count: events.length, bodies: events.map((e) => e.body), ids: events.map((e) => e.id), sources: events.map((e) => e.source), metas: events.map((e) => e.meta) }
}
`,
        'functions/throws.ts': `export default async (events: any[]) => {
  console.error('about to fail', events[0]?.body?.tag ?? '')
  throw new Error('always fails: ' + JSON.stringify(events[0]?.body ?? null))
}
`,
        'functions/flaky.ts': `export default async (events: any[]) => {
  for (const e of events) if (e.body.failUntil > Date.now()) throw new Error('not yet')
  return { ok: true }
}
`,
      },
    })
  })
  afterAll(() => t.stop())

  it('GET /admin/health answers 200 with every connection and host once up', async () => {
    const h = await body<HealthReport>(await get('/admin/health'))
    expect(h.status).toBe('up')
    const byFn = new Map(h.connections.map((c) => [c.function, c]))
    expect([...byFn.keys()].sort()).toEqual(['ad-dead', 'ad-flaky', 'ad-hello', 'ad-nightly', 'ad-throws'])
    expect(byFn.get('ad-hello')).toMatchObject({ kind: 'http', up: true })
    expect(byFn.get('ad-nightly')).toMatchObject({ kind: 'timer', up: true })
    expect(h.hosts.length).toBe(1)
    expect(h.hosts[0]).toMatchObject({ up: true })
    expect(typeof h.hosts[0]?.pid).toBe('number')
  })

  it('GET /admin/functions lists every function with trigger, instances and counts', async () => {
    const { functions } = await body<{ functions: FunctionInfo[] }>(await get('/admin/functions'))
    expect(functions.map((f) => f.name).sort()).toEqual(['ad-dead', 'ad-flaky', 'ad-hello', 'ad-nightly', 'ad-throws'])
    const hello = functions.find((f) => f.name === 'ad-hello')
    expect(hello?.trigger).toMatchObject({ kind: 'http', options: { route: 'hello', methods: ['GET'], auth: 'anonymous' } })
    expect(hello?.instances).toEqual({ total: expect.any(Number), busy: 0, idle: expect.any(Number) })
    expect(hello?.counts).toMatchObject({
      invocations: expect.any(Number),
      failures: expect.any(Number),
      eventsDone: expect.any(Number),
      eventsDead: expect.any(Number),
    })
    expect(functions.find((f) => f.name === 'ad-nightly')?.trigger).toMatchObject({ kind: 'timer', options: { schedule: '0 0 3 1 1 *' } })
    expect(functions.find((f) => f.name === 'ad-dead')?.scale).toMatchObject({ min: 0, max: 4 })
  })

  it('GET /admin/functions/:name gives one function with its recent invocations; unknown names are 404', async () => {
    const before = await body<FunctionInfo & { recent: InvocationRecord[] }>(await get('/admin/functions/ad-hello'))
    expect(before.name).toBe('ad-hello')
    expect(Array.isArray(before.recent)).toBe(true)
    const r = await body<InvocationResult>(await invoke('ad-hello', { events: [{ body: { probe: 1 } }] }))
    const after = await body<FunctionInfo & { recent: InvocationRecord[] }>(await get('/admin/functions/ad-hello'))
    expect(after.counts.invocations).toBe(before.counts.invocations + 1)
    expect(after.instances.total).toBeGreaterThanOrEqual(1)
    expect(after.latencyMs?.p50).toEqual(expect.any(Number))
    expect(after.recent[0]).toMatchObject({ invocationId: r.invocationId, kind: 'sync', ok: true, size: 1 })
    expect(after.recent[0]?.logs.map((l) => l.msg)).toContain('careful')

    await expectError(await get('/admin/functions/no-such-fn'), 404, 'SLUICE_ERR_FUNCTION_NOT_FOUND')
    await expectError(await get('/admin/functions/-bad-name'), 400, 'SLUICE_ERR_HTTP_BAD_REQUEST')
  })

  it('POST /admin/functions/:name/invoke runs synchronously and returns value, logs and invocation id', async () => {
    const r = await body<InvocationResult>(await invoke('ad-hello', { events: [{ body: { x: 1 } }, { id: 'mine', body: 'two', meta: { k: 'v' } }] }))
    expect(r.ok).toBe(true)
    expect(r.invocationId).toMatch(/^[0-9a-f-]{36}$/)
    const v = r.value as { count: number; bodies: unknown[]; ids: string[]; sources: string[]; metas: unknown[] }
    expect(v.count).toBe(2)
    expect(v.bodies).toEqual([{ x: 1 }, 'two'])
    expect(v.ids[1]).toBe('mine')
    expect(v.ids[0]).not.toBe(v.ids[1])
    expect(v.sources).toEqual(['admin://invoke', 'admin://invoke'])
    expect(v.metas).toEqual([{}, { k: 'v' }])
    expect(r.logs.map((l) => [l.level, l.msg])).toEqual([
      ['info', 'console line 2'],
      ['info', 'ctx line {"first":{"x":1}}'],
      ['warn', 'careful'],
    ])
    for (const l of r.logs) expect(typeof l.time).toBe('number')
    // An event without a body arrives with body null.
    const empty = await body<InvocationResult>(await invoke('ad-hello', { events: [{}] }))
    expect((empty.value as { bodies: unknown[] }).bodies).toEqual([null])
  })

  it('invoke of a failing function answers with ok: false, the error code and the logs up to the failure', async () => {
    const r = await body<InvocationResult>(await invoke('ad-throws', { events: [{ body: { tag: 'boom' } }] }))
    expect(r.ok).toBe(false)
    expect(r.error?.code).toBe('SLUICE_ERR_FUNCTION_THREW')
    expect(r.error?.message).toContain('always fails')
    expect(r.logs).toEqual([expect.objectContaining({ level: 'error', msg: 'about to fail boom' })])
    expect(r).not.toHaveProperty('value')
  })

  it('invoke refuses malformed requests with 400 SLUICE_ERR_HTTP_BAD_REQUEST', async () => {
    const bad: unknown[] = [
      {},
      { events: 'nope' },
      { events: { body: 1 } },
      { events: [] },
      { events: [{ body: 1 }], extra: true },
      { events: [{ body: 1, unknown: 2 }] },
      { events: [{ id: '' }] },
      { events: [{ meta: 'not-an-object' }] },
      { events: [1] },
      [],
    ]
    for (const payload of bad) {
      await expectError(await invoke('ad-hello', payload), 400, 'SLUICE_ERR_HTTP_BAD_REQUEST')
    }
    await expectError(await invoke('ad-hello', '{"events": ['), 400, 'SLUICE_ERR_HTTP_BAD_JSON')
    await expectError(await invoke('ad-hello', '{"events":[{"body":{"__proto__":{"a":1}}}]}'), 400, 'SLUICE_ERR_HTTP_PROTO_POISONING')
    await expectError(await post('/admin/functions/ad-hello/invoke'), 400, 'SLUICE_ERR_HTTP_BAD_REQUEST')
  })

  it('invoke of an unknown function is 404 SLUICE_ERR_FUNCTION_NOT_FOUND', async () => {
    const err = await expectError(await invoke('ad-missing', { events: [{ body: 1 }] }), 404, 'SLUICE_ERR_FUNCTION_NOT_FOUND')
    expect(err.message).toContain('ad-missing')
  })

  it('GET /metrics is Prometheus text with invocation counters per function and backlog gauges', async () => {
    await body<InvocationResult>(await invoke('ad-hello', { events: [{ body: 'm' }] }))
    await body<InvocationResult>(await invoke('ad-throws', { events: [{ body: 'm' }] }))
    const res = await get('/metrics')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = await res.text()
    expect(text).toContain('# TYPE sluice_invocations_total counter')
    const sample = (re: RegExp) => Number(re.exec(text)?.[1])
    expect(sample(/^sluice_invocations_total\{function="ad-hello",kind="sync",outcome="ok"\} (\d+)$/m)).toBeGreaterThanOrEqual(1)
    expect(sample(/^sluice_invocations_total\{function="ad-throws",kind="sync",outcome="error"\} (\d+)$/m)).toBeGreaterThanOrEqual(1)
    expect(text).toContain('# TYPE sluice_backlog_events gauge')
    for (const fn of ['ad-hello', 'ad-throws', 'ad-nightly', 'ad-dead', 'ad-flaky']) {
      expect(sample(new RegExp(`^sluice_backlog_events\\{function="${fn}"\\} (\\d+)$`, 'm')), fn).toBe(0)
    }
    expect(sample(/^sluice_worker_hosts_up (\d+)$/m)).toBe(1)
  })

  it('GET /admin/hosts lists the worker hosts', async () => {
    const { hosts } = await body<{ hosts: Array<{ id: number; up: boolean; pid?: number; instances: number; restarts: number }> }>(await get('/admin/hosts'))
    expect(hosts).toHaveLength(1)
    expect(hosts[0]).toMatchObject({ up: true, restarts: 0 })
    expect(hosts[0]?.pid).toEqual(expect.any(Number))
    expect(hosts[0]?.pid).not.toBe(process.pid)
    expect(hosts[0]?.instances).toEqual(expect.any(Number))
  })

  describe('dead letters', () => {
    it('an event that fails every attempt is dead-lettered with its error, attempts and payload', async () => {
      const payload = { tag: 'dl-1', nested: { n: [1, 2, 3] } }
      const ev = event(payload)
      const before = t.gw.function('ad-dead')?.counts
      const [outcome] = await t.gw.router.deliver('ad-dead', [ev])
      expect(outcome?.status).toBe('dead')
      if (outcome?.status !== 'dead') return
      expect(outcome.error.code).toBe('SLUICE_ERR_FUNCTION_THREW')
      const after = t.gw.function('ad-dead')?.counts
      expect(after?.eventsDead).toBe((before?.eventsDead ?? 0) + 1)
      expect(after?.invocations).toBe((before?.invocations ?? 0) + 2)
      expect(after?.retries).toBe((before?.retries ?? 0) + 1)

      const { items } = await body<{ items: DeadLetter[] }>(await get('/admin/dead-letters'))
      const dl = items.find((d) => d.id === outcome.deadLetterId)
      expect(dl).toMatchObject({ function: 'ad-dead', attempts: 2, error: { code: 'SLUICE_ERR_FUNCTION_THREW' } })
      expect(dl?.event).toMatchObject({ id: ev.id, source: ev.source, body: payload, meta: ev.meta })
      expect(dl?.error.message).toContain('dl-1')
      expect(Date.parse(dl?.failedAt ?? '')).toBeGreaterThanOrEqual(Date.parse(dl?.firstAttemptAt ?? ''))

      const one = await body<DeadLetter>(await get(`/admin/dead-letters/${outcome.deadLetterId}`))
      expect(one).toEqual(dl)

      const byFn = await body<{ items: DeadLetter[] }>(await get('/admin/dead-letters?function=ad-dead'))
      expect(byFn.items.every((d) => d.function === 'ad-dead')).toBe(true)
      expect(byFn.items.map((d) => d.id)).toContain(outcome.deadLetterId)
      const other = await body<{ items: DeadLetter[] }>(await get('/admin/dead-letters?function=ad-hello'))
      expect(other.items.map((d) => d.id)).not.toContain(outcome.deadLetterId)
      const byCode = await body<{ items: DeadLetter[] }>(await get('/admin/dead-letters?code=SLUICE_ERR_FUNCTION_TIMEOUT'))
      expect(byCode.items.map((d) => d.id)).not.toContain(outcome.deadLetterId)
      await expectError(await get('/admin/dead-letters?limit=0'), 400, 'SLUICE_ERR_HTTP_BAD_REQUEST')
    })

    it('pages through dead letters with limit and after', async () => {
      const outcomes = await t.gw.router.deliver('ad-dead', [event({ page: 1 }), event({ page: 2 }), event({ page: 3 })])
      const ids = outcomes.map((o) => (o.status === 'dead' ? o.deadLetterId : o.status))
      const first = await body<{ items: DeadLetter[]; next?: string }>(await get('/admin/dead-letters?function=ad-dead&limit=2'))
      expect(first.items).toHaveLength(2)
      expect(first.next).toBe(first.items[1]?.id)
      const seen = first.items.map((d) => d.id)
      let next = first.next
      while (next) {
        const page = await body<{ items: DeadLetter[]; next?: string }>(await get(`/admin/dead-letters?function=ad-dead&limit=2&after=${next}`))
        seen.push(...page.items.map((d) => d.id))
        next = page.next
      }
      expect(new Set(seen).size).toBe(seen.length)
      for (const id of ids) expect(seen).toContain(id)
    })

    it('replay of a letter whose cause remains fails again and replaces it with a new letter', async () => {
      const ev = event({ failUntil: Date.now() + 3_600_000, tag: 'still-broken' })
      const [outcome] = await t.gw.router.deliver('ad-flaky', [ev])
      if (outcome?.status !== 'dead') throw new Error(`expected a dead letter, got ${outcome?.status}`)
      const id = outcome.deadLetterId
      const again = await body<{ id: string; outcome: { status: string; deadLetterId?: string; error?: { code: string } } }>(
        await post(`/admin/dead-letters/${id}/replay`),
      )
      expect(again.id).toBe(id)
      expect(again.outcome.status).toBe('dead')
      expect(again.outcome.error?.code).toBe('SLUICE_ERR_FUNCTION_THREW')
      const newId = again.outcome.deadLetterId as string
      expect(newId).not.toBe(id)
      await expectError(await get(`/admin/dead-letters/${id}`), 404, 'SLUICE_ERR_DEAD_LETTER_NOT_FOUND')
      // A fresh set of attempts: the new letter counts them from 1 again.
      const fresh = await body<DeadLetter>(await get(`/admin/dead-letters/${newId}`))
      expect(fresh).toMatchObject({ function: 'ad-flaky', attempts: 2, event: { id: ev.id, body: ev.body } })
    })

    it('replay after the cause is gone delivers the stored event again; outcome done and the letter is removed', async () => {
      // The function fails while failUntil lies ahead: two attempts 10 ms apart fall well inside it.
      const failUntil = Date.now() + 1500
      const ev = event({ failUntil, tag: 'flaky' })
      const [outcome] = await t.gw.router.deliver('ad-flaky', [ev])
      expect(outcome?.status).toBe('dead')
      if (outcome?.status !== 'dead') return
      const id = outcome.deadLetterId
      expect((await body<DeadLetter>(await get(`/admin/dead-letters/${id}`))).event.body).toEqual({ failUntil, tag: 'flaky' })

      while (Date.now() <= failUntil) await new Promise((r) => setTimeout(r, 50))
      const doneBefore = t.gw.function('ad-flaky')?.counts.eventsDone ?? 0
      const replayed = await body<{ id: string; outcome: { status: string } }>(await post(`/admin/dead-letters/${id}/replay`))
      expect(replayed).toEqual({ id, outcome: { status: 'done' } })
      expect(t.gw.function('ad-flaky')?.counts.eventsDone).toBe(doneBefore + 1)
      await expectError(await get(`/admin/dead-letters/${id}`), 404, 'SLUICE_ERR_DEAD_LETTER_NOT_FOUND')
      const { items } = await body<{ items: DeadLetter[] }>(await get('/admin/dead-letters?function=ad-flaky'))
      expect(items.map((d) => d.event.id)).not.toContain(ev.id)
    })

    it('DELETE /admin/dead-letters/:id removes a letter; unknown ids are 404 SLUICE_ERR_DEAD_LETTER_NOT_FOUND', async () => {
      const [outcome] = await t.gw.router.deliver('ad-dead', [event({ tag: 'to-delete' })])
      if (outcome?.status !== 'dead') throw new Error(`expected a dead letter, got ${outcome?.status}`)
      const id = outcome.deadLetterId
      const del = await fetch(`${t.url}/admin/dead-letters/${id}`, { method: 'DELETE' })
      expect(del.status).toBe(204)
      await expectError(await get(`/admin/dead-letters/${id}`), 404, 'SLUICE_ERR_DEAD_LETTER_NOT_FOUND')
      const { items } = await body<{ items: DeadLetter[] }>(await get('/admin/dead-letters'))
      expect(items.map((d) => d.id)).not.toContain(id)

      await expectError(await fetch(`${t.url}/admin/dead-letters/${id}`, { method: 'DELETE' }), 404, 'SLUICE_ERR_DEAD_LETTER_NOT_FOUND')
      await expectError(await post(`/admin/dead-letters/${id}/replay`), 404, 'SLUICE_ERR_DEAD_LETTER_NOT_FOUND')
      await expectError(await get('/admin/dead-letters/00000000-0000-0000-0000-000000000000'), 404, 'SLUICE_ERR_DEAD_LETTER_NOT_FOUND')
    })
  })
})

describe('admin API with an admin key', () => {
  let t: TestGateway
  beforeAll(async () => {
    t = await startGateway({
      http: { host: '0.0.0.0' },
      yaml: `admin: { key: ${ADMIN_KEY} }
functions:
  ak-hello:
    code: functions/hello.ts
    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }
`,
      files: { 'functions/hello.ts': `export default async () => 'hi'\n` },
    })
  })
  afterAll(() => t.stop())

  const paths = ['/admin/health', '/admin/functions', '/admin/functions/ak-hello', '/admin/hosts', '/admin/dead-letters', '/metrics']

  it('refuses every admin route without the key or with a wrong one, even from loopback', async () => {
    for (const p of paths) {
      await expectError(await fetch(`${t.url}${p}`), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
      await expectError(await fetch(`${t.url}${p}`, { headers: { 'x-sluice-key': `${ADMIN_KEY}x` } }), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
      await expectError(await fetch(`${t.url}${p}`, { headers: { authorization: 'Bearer wrong-key-wrong-key' } }), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
      await expectError(await fetch(`${t.url}${p}`, { headers: { authorization: ADMIN_KEY } }), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
    }
    const inv = await fetch(`${t.url}/admin/functions/ak-hello/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"events":[{}]}',
    })
    await expectError(inv, 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
    expect(t.gw.function('ak-hello')?.counts.invocations).toBe(0)
  })

  it('lets the key in through x-sluice-key and Authorization: Bearer', async () => {
    for (const p of paths) {
      expect((await fetch(`${t.url}${p}`, { headers: { 'x-sluice-key': ADMIN_KEY } })).status, p).toBe(200)
      expect((await fetch(`${t.url}${p}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).status, p).toBe(200)
    }
    const r = await body<InvocationResult>(
      await fetch(`${t.url}/admin/functions/ak-hello/invoke`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_KEY}` },
        body: '{"events":[{}]}',
      }),
    )
    expect(r).toMatchObject({ ok: true, value: 'hi' })
  })

  it('leaves anonymous function routes open', async () => {
    const res = await fetch(`${t.url}/api/hello`)
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('hi')
  })
})

const externalIp = Object.values(networkInterfaces())
  .flat()
  .find((i) => i !== undefined && !i.internal && i.family === 'IPv4')?.address

describe.skipIf(externalIp === undefined)('admin API without an admin key', () => {
  let t: TestGateway
  beforeAll(async () => {
    t = await startGateway({
      http: { host: '0.0.0.0' },
      yaml: `functions:
  nk-hello:
    code: functions/hello.ts
    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }
`,
      files: { 'functions/hello.ts': `export default async () => 'hi'\n` },
    })
  })
  afterAll(() => t.stop())

  it('answers loopback callers and refuses others with 403 SLUICE_ERR_HTTP_FORBIDDEN', async () => {
    expect((await fetch(`${t.url}/admin/health`)).status).toBe(200)
    const remote = t.url.replace('127.0.0.1', externalIp as string)
    await expectError(await fetch(`${remote}/admin/health`), 403, 'SLUICE_ERR_HTTP_FORBIDDEN')
    await expectError(await fetch(`${remote}/metrics`), 403, 'SLUICE_ERR_HTTP_FORBIDDEN')
    // Function routes do not depend on the caller's address.
    expect((await fetch(`${remote}/api/hello`)).status).toBe(200)
  })
})
