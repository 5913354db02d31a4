/**
 * HTTP trigger, reply side: what a function's return value becomes, how its failures and
 * timeouts answer, back-pressure (429) and a graceful stop with a request in flight. Real
 * gateway, real worker hosts, real HTTP.
 */
import { Agent, request } from 'node:http'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, waitFor, type TestGateway } from '../helpers/gateway.js'

interface ErrorJson {
  error: { code: string; message: string; requestId: string; invocationId?: string }
}

async function errorOf(res: Response, status: number, code: string): Promise<ErrorJson['error']> {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type') ?? '').toMatch(/^application\/json/)
  const body = (await res.json()) as ErrorJson
  expect(body.error.code).toBe(code)
  expect(body.error.requestId).toBe(res.headers.get('x-request-id'))
  return body.error
}

const PNG = [137, 80, 78, 71, 13, 10, 26, 10, 0, 255]

/** Returns a different shape per path parameter. */
const SHAPES = `export default async (events: any[]) => {
  switch (events[0].meta.params.kind) {
    case 'full': return { status: 201, headers: { 'X-One': '1', 'x-num': 7 }, body: { ok: true } }
    case 'plain': return { a: 1, list: [1, 2], status: undefined === 1 }
    case 'array': return [1, 'two', { three: 3 }]
    case 'number': return 42
    case 'text': return { status: 202, body: 'hello text' }
    case 'string': return 'just a string'
    case 'html': return { headers: { 'content-type': 'text/html; charset=utf-8' }, body: '<p>hi</p>' }
    case 'json-string-type': return { headers: { 'content-type': 'application/json' }, body: { k: 'v' } }
    case 'typed-object': return { headers: { 'content-type': 'text/plain' }, body: { a: 1 } }
    case 'typed-number': return { status: 201, headers: { 'content-type': 'text/plain' }, body: 42 }
    case 'b64': return { headers: { 'content-type': 'image/png' }, body: '${Buffer.from(PNG).toString('base64')}', isBase64Encoded: true }
    case 'no-content': return { status: 204 }
    case 'bad-status': return { status: 700, body: 'x' }
    case 'low-status': return { status: 99 }
    case 'string-status': return { status: '200', body: 'x' }
    case 'float-status': return { status: 200.5 }
    case 'bad-headers': return { status: 200, headers: 'x-a: b' }
    case 'inject': return {
      status: 200,
      headers: {
        'x-ok': 'fine',
        'x-crlf': 'a\\r\\nset-cookie: pwned=1',
        'x-lf': 'b\\nx-smuggled: 1',
        'x-cr': 'c\\rx-smuggled2: 1',
        'x-nul': 'a\\u0000b',
        'x-del': 'a\\u007fb',
        'x-emoji': 'a\\u{1F600}',
        'x-latin1': 'caf\\u00e9',
        'bad name': 'v',
        'bad:name': 'v',
        'content-length': '999',
        'transfer-encoding': 'chunked',
        'connection': 'close',
      },
      body: 'safe',
    }
    default: return { status: 400, body: { unknown: events[0].meta.params.kind } }
  }
}
`

describe('HTTP trigger: replies and failures', () => {
  let t: TestGateway
  beforeAll(async () => {
    t = await startGateway({
      yaml: `functions:
  r-shapes:
    code: functions/shapes.ts
    trigger: { http: { route: "shape/{kind}", methods: [GET], auth: anonymous } }
  r-throw:
    code: functions/throw.ts
    trigger: { http: { route: throw, methods: [GET, POST], auth: anonymous } }
  r-spin:
    code: functions/spin.ts
    timeoutMs: 200
    trigger: { http: { route: spin, methods: [GET], auth: anonymous } }
  r-ok:
    code: functions/ok.ts
    trigger: { http: { route: ok, methods: [GET], auth: anonymous } }
`,
      files: {
        'functions/shapes.ts': SHAPES,
        'functions/throw.ts': `function deepHelper(): never { throw new Error('db password is hunter2-internal at db.internal:5432') }
export default async (events: any[]) => { if (events[0].meta.query.soft === '1') return { status: 503, body: 'soft' }; deepHelper() }
`,
        'functions/spin.ts': `export default async (events: any[]) => { if (events[0].meta.query.fast === '1') return 'fast'; while (true) {} }\n`,
        'functions/ok.ts': `export default async () => ({ status: 200, body: { ok: true } })\n`,
      },
    })
  })
  afterAll(() => t.stop())

  const shape = (kind: string) => fetch(`${t.url}/api/shape/${kind}`)

  it('sends { status, headers, body } as given, with header names lower-cased', async () => {
    const res = await shape('full')
    expect(res.status).toBe(201)
    expect(res.headers.get('x-one')).toBe('1')
    expect(res.headers.get('x-num')).toBe('7')
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await res.json()).toEqual({ ok: true })
  })

  it('sends any other value as a 200 JSON body', async () => {
    const plain = await shape('plain')
    expect(plain.status).toBe(200)
    expect(plain.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await plain.json()).toEqual({ a: 1, list: [1, 2], status: false })

    const arr = await shape('array')
    expect(arr.status).toBe(200)
    expect(await arr.json()).toEqual([1, 'two', { three: 3 }])

    const num = await shape('number')
    expect(num.status).toBe(200)
    expect(num.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await num.json()).toBe(42)
  })

  it('sends a string body as text/plain unless the function sets a content type', async () => {
    const text = await shape('text')
    expect(text.status).toBe(202)
    expect(text.headers.get('content-type')).toMatch(/^text\/plain/)
    expect(await text.text()).toBe('hello text')

    const str = await shape('string')
    expect(str.status).toBe(200)
    expect(str.headers.get('content-type')).toMatch(/^text\/plain/)
    expect(await str.text()).toBe('just a string')

    const html = await shape('html')
    expect(html.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(await html.text()).toBe('<p>hi</p>')

    const typed = await shape('json-string-type')
    expect(typed.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await typed.json()).toEqual({ k: 'v' })

    // JSON data under a content type the function chose is sent as its JSON text.
    const obj = await shape('typed-object')
    expect(obj.status).toBe(200)
    expect(obj.headers.get('content-type')).toBe('text/plain')
    expect(await obj.text()).toBe('{"a":1}')
    const num = await shape('typed-number')
    expect(num.status).toBe(201)
    expect(await num.text()).toBe('42')
  })

  it('decodes isBase64Encoded bodies to bytes', async () => {
    const res = await shape('b64')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('image/png')
    const bytes = Buffer.from(await res.arrayBuffer())
    expect([...bytes]).toEqual(PNG)
  })

  it('sends a status without a body', async () => {
    const res = await shape('no-content')
    expect(res.status).toBe(204)
    expect(await res.text()).toBe('')
  })

  it('answers an invalid status or headers with 500 SLUICE_ERR_FUNCTION_RESULT_INVALID', async () => {
    for (const kind of ['bad-status', 'low-status', 'string-status', 'float-status', 'bad-headers']) {
      const err = await errorOf(await shape(kind), 500, 'SLUICE_ERR_FUNCTION_RESULT_INVALID')
      expect(err.invocationId, kind).toMatch(/^[0-9a-f-]{36}$/)
    }
  })

  it('drops reply headers with CR/LF, invalid names or framing names', async () => {
    const res = await shape('inject')
    expect(res.status).toBe(200)
    expect(res.headers.get('x-ok')).toBe('fine')
    // Latin-1 is legal in a header (how its bytes are decoded is the client's business).
    expect(res.headers.get('x-latin1')).toMatch(/^caf/)
    for (const h of ['x-crlf', 'x-lf', 'x-cr', 'x-nul', 'x-del', 'x-emoji', 'set-cookie', 'x-smuggled', 'x-smuggled2', 'bad name', 'bad:name']) {
      let v: string | null
      try {
        v = res.headers.get(h)
      } catch {
        v = null // names fetch itself rejects cannot have been sent
      }
      expect(v, h).toBeNull()
    }
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength('safe')))
    expect(res.headers.get('transfer-encoding')).toBeNull()
    expect(await res.text()).toBe('safe')
    // The connection was not closed by the function's header: the next request still works.
    expect((await shape('string')).status).toBe(200)
  })

  it('answers a throwing function with 500 JSON naming the invocation and request, without internals', async () => {
    const res = await fetch(`${t.url}/api/throw`)
    const text = await res.clone().text()
    const err = await errorOf(res, 500, 'SLUICE_ERR_FUNCTION_THREW')
    expect(err.invocationId).toMatch(/^[0-9a-f-]{36}$/)
    expect(err.requestId).toMatch(/^[0-9a-f-]{36}$/)
    for (const leak of ['hunter2', 'db.internal', 'deepHelper', 'throw.ts', 'functions/', ' at ', '    at', 'stack']) {
      expect(text, leak).not.toContain(leak)
    }
    // The invocation id leads an admin to what happened.
    const info = (await (await fetch(`${t.url}/admin/functions/r-throw`)).json()) as {
      recent: Array<{ invocationId: string; ok: boolean; error?: { message: string } }>
    }
    const rec = info.recent.find((r) => r.invocationId === err.invocationId)
    expect(rec?.ok).toBe(false)
    expect(rec?.error?.message).toContain('hunter2')
    // A function's own error status is passed through, not mapped.
    const soft = await fetch(`${t.url}/api/throw?soft=1`)
    expect(soft.status).toBe(503)
    expect(await soft.text()).toBe('soft')
  })

  it('answers a function past its timeoutMs with 504 SLUICE_ERR_FUNCTION_TIMEOUT, and keeps serving', async () => {
    const err = await errorOf(await fetch(`${t.url}/api/spin`), 504, 'SLUICE_ERR_FUNCTION_TIMEOUT')
    expect(err.invocationId).toMatch(/^[0-9a-f-]{36}$/)
    const other = await fetch(`${t.url}/api/ok`)
    expect(other.status).toBe(200)
    expect(await other.json()).toEqual({ ok: true })
    // The stopped function itself runs again on a fresh instance.
    const again = await fetch(`${t.url}/api/spin?fast=1`)
    expect(again.status).toBe(200)
    expect(await again.text()).toBe('fast')
    await errorOf(await fetch(`${t.url}/api/spin`), 504, 'SLUICE_ERR_FUNCTION_TIMEOUT')
  })
})

/** Spins for `ms` of wall time (isolates have no timers), then answers. */
const SLOW = `export default async (events: any[]) => {
  const ms = Number(events[0].meta.query.ms ?? 1000)
  const end = Date.now() + ms
  while (Date.now() < end) {}
  return { status: 200, body: { done: events[0].meta.query.n ?? null } }
}
`

describe('HTTP trigger: back-pressure', () => {
  let t: TestGateway | undefined
  afterEach(async () => {
    await t?.stop()
    t = undefined
  })

  it('answers 429 SLUICE_ERR_ROUTER_OVERLOADED with retry-after when the backlog is full', async () => {
    t = await startGateway({
      yaml: `functions:
  bp-slow:
    code: functions/slow.ts
    maxBacklog: 1
    scale: { max: 1 }
    trigger: { http: { route: slow, methods: [GET], auth: anonymous } }
`,
      files: { 'functions/slow.ts': SLOW },
    })
    const url = t.url
    const first = fetch(`${url}/api/slow?ms=1500&n=0`)
    await waitFor(() => t?.gw.router.stats('bp-slow').backlog === 1, 10_000, 'the first request to be accepted')
    const rest = await Promise.all([1, 2, 3].map((n) => fetch(`${url}/api/slow?ms=10&n=${n}`)))
    const refused = rest.filter((r) => r.status === 429)
    expect(refused.length).toBeGreaterThanOrEqual(1)
    for (const r of refused) {
      expect(r.headers.get('retry-after')).toMatch(/^\d+$/)
      await errorOf(r, 429, 'SLUICE_ERR_ROUTER_OVERLOADED')
    }
    for (const r of rest.filter((r) => r.status !== 429)) expect(r.status).toBe(200)
    const ok = await first
    expect(ok.status).toBe(200)
    expect(await ok.json()).toEqual({ done: '0' })
    // Once the backlog drains, requests are accepted again.
    expect((await fetch(`${url}/api/slow?ms=1&n=9`)).status).toBe(200)
  })

  it('queues concurrent POSTs beyond scale.max until an instance frees up', async () => {
    t = await startGateway({
      yaml: `functions:
  bp-queue:
    code: functions/slow.ts
    maxBacklog: 10
    scale: { max: 1 }
    trigger: { http: { route: queue, methods: [POST], auth: anonymous } }
`,
      files: { 'functions/slow.ts': SLOW },
    })
    const url = t.url
    const post = (n: number) =>
      fetch(`${url}/api/queue?ms=300&n=${n}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n }) })
    const results = await Promise.all([0, 1, 2].map(post))
    expect(results.map((r) => r.status)).toEqual([200, 200, 200])
    expect(await Promise.all(results.map((r) => r.json()))).toEqual([{ done: '0' }, { done: '1' }, { done: '2' }])
    expect(t.gw.function('bp-queue')?.instances.total).toBe(1)
  })

  it('drops a queued request whose client went away, so it never runs', async () => {
    t = await startGateway({
      yaml: `functions:
  bp-gone:
    code: functions/slow.ts
    scale: { max: 1 }
    trigger: { http: { route: gone, methods: [POST], auth: anonymous } }
`,
      files: { 'functions/slow.ts': SLOW },
    })
    const { url, gw } = t
    const body = { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"x":1}' }
    const first = fetch(`${url}/api/gone?ms=1500&n=1`, body)
    await waitFor(() => gw.scheduler.stats('bp-gone').busy === 1, 10_000, 'the first request to run')
    const ac = new AbortController()
    const gone = fetch(`${url}/api/gone?ms=1&n=2`, { ...body, signal: ac.signal }).catch((e: unknown) => e)
    await waitFor(() => gw.scheduler.stats('bp-gone').waiting === 1, 10_000, 'the second request to queue')
    ac.abort()
    expect(await gone).toBeInstanceOf(Error)
    await waitFor(() => gw.scheduler.stats('bp-gone').waiting === 0, 10_000, 'the queued request to be dropped')
    expect((await first).status).toBe(200)
    // Waiters are served in order, so had the dropped request stayed queued it would run before this one.
    const third = await fetch(`${url}/api/gone?ms=1&n=3`, body)
    expect(await third.json()).toEqual({ done: '3' })
    expect(gw.function('bp-gone')?.counts.invocations).toBe(2)
  })

  it('runs queued requests that reuse a keep-alive connection, and drops only those of a client that went away', async () => {
    t = await startGateway({
      yaml: `functions:
  bp-keep:
    code: functions/slow.ts
    scale: { max: 1 }
    trigger: { http: { route: keep, methods: [GET], auth: anonymous } }
`,
      files: { 'functions/slow.ts': SLOW },
    })
    const { url, gw } = t
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const sockets = new Set<unknown>()
    const get = (query: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(`${url}/api/keep?${query}`, { agent }, (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => (body += c))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        })
        req.on('socket', (s) => sockets.add(s))
        req.on('error', reject)
        req.end()
      })
    try {
      // One connection, several requests, each queued behind another client's slow request.
      for (let n = 1; n <= 3; n++) {
        const blocker = fetch(`${url}/api/keep?ms=300&n=b${n}`)
        await waitFor(() => gw.scheduler.stats('bp-keep').busy === 1, 10_000, 'the blocking request to run')
        const queued = get(`ms=1&n=${n}`)
        await waitFor(() => gw.scheduler.stats('bp-keep').waiting === 1, 10_000, 'the request to queue')
        expect(await queued).toEqual({ status: 200, body: JSON.stringify({ done: String(n) }) })
        expect((await blocker).status).toBe(200)
      }
      expect(sockets.size).toBe(1)
      // A client going away drops its queued request; the keep-alive connection's next one runs.
      const blocker = fetch(`${url}/api/keep?ms=800&n=b`)
      await waitFor(() => gw.scheduler.stats('bp-keep').busy === 1, 10_000, 'the blocking request to run')
      const ac = new AbortController()
      const gone = fetch(`${url}/api/keep?ms=1&n=gone`, { signal: ac.signal }).catch((e: unknown) => e)
      const kept = get('ms=1&n=kept')
      await waitFor(() => gw.scheduler.stats('bp-keep').waiting === 2, 10_000, 'both requests to queue')
      ac.abort()
      expect(await gone).toBeInstanceOf(Error)
      await waitFor(() => gw.scheduler.stats('bp-keep').waiting === 1, 10_000, 'the abandoned request to be dropped')
      expect(await kept).toEqual({ status: 200, body: JSON.stringify({ done: 'kept' }) })
      expect((await blocker).status).toBe(200)
      expect(sockets.size).toBe(1)
      // 4 blockers and 4 requests on the keep-alive connection; the abandoned one never ran.
      expect(gw.function('bp-keep')?.counts.invocations).toBe(8)
    } finally {
      agent.destroy()
    }
  })
})

describe('HTTP trigger: slow functions', () => {
  let t: TestGateway | undefined
  afterEach(async () => {
    await t?.stop()
    t = undefined
  })

  it('answers a function that runs longer than http.requestTimeoutMs but within its timeoutMs', async () => {
    t = await startGateway({
      http: { requestTimeoutMs: 300 },
      yaml: `functions:
  sl-slow:
    code: functions/slow.ts
    timeoutMs: 10000
    trigger: { http: { route: slow, methods: [GET, POST], auth: anonymous } }
`,
      files: { 'functions/slow.ts': SLOW },
    })
    const res = await fetch(`${t.url}/api/slow?ms=1200&n=1`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ done: '1' })
    const posted = await fetch(`${t.url}/api/slow?ms=1200&n=2`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' })
    expect(posted.status).toBe(200)
    expect(await posted.json()).toEqual({ done: '2' })
  })
})

describe('HTTP trigger: graceful stop', () => {
  let t: TestGateway | undefined
  afterEach(async () => {
    await t?.stop()
    t = undefined
  })

  it('finishes an in-flight request, refuses new ones with 503, then stops listening', async () => {
    t = await startGateway({
      yaml: `functions:
  gs-slow:
    code: functions/slow.ts
    trigger: { http: { route: slow, methods: [GET], auth: anonymous } }
  gs-fast:
    code: functions/slow.ts
    trigger: { http: { route: fast, methods: [GET], auth: anonymous } }
`,
      files: { 'functions/slow.ts': SLOW },
    })
    const { url, gw } = t
    const inflight = fetch(`${url}/api/slow?ms=1500&n=1`)
    await waitFor(() => gw.scheduler.stats('gs-slow').busy === 1, 10_000, 'the slow request to run')

    const stopping = gw.stop({ timeoutMs: 10_000 })
    let inflightDone = false
    void inflight.then(() => (inflightDone = true))
    // While the router drains, the server still listens (fastify's return503OnClosing only starts
    // once the drain is over and app.close() runs); the trigger itself refuses new work with 503.
    const late = await fetch(`${url}/api/fast?ms=1`)
    await errorOf(late, 503, 'SLUICE_ERR_HTTP_SHUTTING_DOWN')
    const health = await fetch(`${url}/admin/health`)
    expect(health.status).toBe(503)
    expect(((await health.json()) as { status: string }).status).toBe('stopping')
    expect(inflightDone).toBe(false)

    const res = await inflight
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ done: '1' })
    await stopping
    expect(gw.function('gs-slow')?.counts.invocations).toBe(1)
    expect(gw.function('gs-fast')?.counts.invocations).toBe(0)

    // Stopped: the port is closed.
    const after = await fetch(`${url}/api/fast`).then(
      () => 'answered',
      (e: unknown) => (e as Error & { cause?: { code?: string } }).cause?.code ?? 'failed',
    )
    expect(after).toBe('ECONNREFUSED')
  })
})
