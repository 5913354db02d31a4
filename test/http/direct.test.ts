/**
 * Direct HTTP (src/gateway/direct-http.ts): once a function has been called, new connections
 * whose first request is for it are handed to the worker host that runs it, which answers them
 * itself. Checked against a real gateway: the function sees the same event, errors and limits
 * read the same, other requests on such a connection still reach the gateway, keys are checked,
 * every invocation is counted, and a stop drains.
 */
import { Agent, request } from 'node:http'
import { writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FunctionInfo } from '../../src/http/admin.js'
import mqtt from 'mqtt'
import { startGateway, type TestGateway, waitFor } from '../helpers/gateway.js'

interface Res {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
}

/** One request on a connection of its own (no agent), so every call is routed afresh. */
function call(
  base: string,
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: string | Buffer; agent?: Agent } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, agent: opts.agent ?? false, headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }))
    })
    req.setTimeout(20_000, () => req.destroy(new Error(`${method} ${path}: no reply in 20 s`)))
    req.on('error', reject)
    req.end(opts.body)
  })
}

/** The MQTT topic the `notify` function writes to. */
const OUT_TOPIC = `sluice-test/direct-${process.pid}-${Date.now()}`

const ECHO = `export default async function (events, ctx) {
  const e = events[0]
  ctx.log.info('echo ' + e.meta.path)
  if (e.meta.query.spin) { const end = Date.now() + Number(e.meta.query.spin); while (Date.now() < end) {} }
  if (e.meta.query.fail) throw new Error('asked to fail')
  if (e.meta.query.status) return { status: Number(e.meta.query.status), headers: { 'x-from': 'fn' }, body: 'custom' }
  return { id: e.id, source: e.source, body: e.body, meta: e.meta }
}
`

describe('direct HTTP', () => {
  let t: TestGateway
  const info = async (name: string) => (await (await fetch(`${t.url}/admin/functions/${name}`)).json()) as FunctionInfo
  /** Calls `path` on fresh connections until a worker host answers one directly. */
  async function untilDirect(fn: string, path: string, headers: Record<string, string> = {}): Promise<void> {
    // The first request pins the function; its host may still be loading its HTTP server.
    for (const until = Date.now() + 30_000; Date.now() < until; ) {
      const before = (await info(fn)).counts.direct
      await call(t.url, 'GET', path, { headers })
      if ((await info(fn)).counts.direct > before) return
      await new Promise((r) => setTimeout(r, 20))
    }
    throw new Error(`${fn} was never served directly`)
  }

  beforeAll(async () => {
    t = await startGateway({
      http: { requestTimeoutMs: 1000 },
      hosts: 2,
      yaml: `connections:
  devices: { kind: mqtt, url: mqtt://127.0.0.1:1883 }
functions:
  notify:
    code: functions/notify.js
    trigger: { http: { route: 'notify/{id}', methods: [POST], auth: anonymous } }
    outputs:
      cmd: { mqtt: { connection: devices, topic: ${OUT_TOPIC}, qos: 1 } }
  echo:
    code: functions/echo.js
    trigger: { http: { route: 'echo/{id}/{*rest}', methods: [GET, POST], auth: anonymous } }
    timeoutMs: 1000
  keyed:
    code: functions/echo.js
    trigger: { http: { route: keyed, methods: [GET] } }
  ver:
    code: functions/ver.js
    trigger: { http: { route: ver, methods: [GET], auth: anonymous } }
  long:
    code: functions/echo.js
    trigger: { http: { route: 'long/{id}/{*rest}', methods: [GET], auth: anonymous } }
    timeoutMs: 10000
`,
      files: {
        'functions/echo.js': ECHO,
        'functions/ver.js': 'export default async () => ({ version: 1 })',
        'functions/notify.js':
          'export default async (events, ctx) => { ctx.output("cmd", { id: events[0].meta.params.id, body: events[0].body }); return { sent: true } }',
      },
    })
  })
  afterAll(async () => {
    await t?.stop()
  })

  it('serves a pinned function from the worker host with the same event', async () => {
    const first = await call(t.url, 'GET', '/api/echo/7/a/b?x=1', { headers: { 'x-functions-key': 'hidden', 'x-custom': 'v' } })
    expect(first.status).toBe(200)
    // The gateway answered the first call and pinned the function.
    await untilDirect('echo', '/api/echo/7/a/b?x=1')
    const before = (await info('echo')).counts
    const res = await call(t.url, 'POST', '/api/echo/9/c/d?x=2&x=3', { headers: { 'content-type': 'application/json', 'x-custom': 'v' }, body: '{"a":[1,2]}' })
    expect(res.status).toBe(200)
    expect(res.headers['x-content-type-options']).toBe('nosniff')
    expect(res.headers['x-request-id']).toBeTruthy()
    const got = JSON.parse(res.text)
    expect(got.id).toBe(res.headers['x-request-id'])
    expect(got.source).toBe('http://echo')
    expect(got.body).toEqual({ a: [1, 2] })
    expect(got.meta.params).toEqual({ id: '9', rest: 'c/d' })
    expect(got.meta.query).toEqual({ x: ['2', '3'] })
    expect(got.meta.headers['x-custom']).toBe('v')
    expect(got.meta.method).toBe('POST')
    const after = (await info('echo')).counts
    expect(after.direct).toBe(before.direct + 1)
    expect(after.invocations).toBe(before.invocations + 1)
    // In the recent list with a preview of its result.
    const detail = (await (await fetch(`${t.url}/admin/functions/echo`)).json()) as { recent: Array<{ ok: boolean; result?: string }> }
    expect(detail.recent.some((r) => r.ok && r.result?.includes('"body":{"a":[1,2]}'))).toBe(true)
  })

  it('answers errors as the gateway does, and counts them', async () => {
    await untilDirect('echo', '/api/echo/1/x')
    const before = (await info('echo')).counts
    const thrown = await call(t.url, 'GET', '/api/echo/1/x?fail=1')
    expect(thrown.status).toBe(500)
    const err = JSON.parse(thrown.text).error
    expect(err.code).toBe('SLUICE_ERR_FUNCTION_THREW')
    expect(err.requestId).toBe(thrown.headers['x-request-id'])
    expect(err.invocationId).toMatch(/^[0-9a-f-]{36}$/)
    const custom = await call(t.url, 'GET', '/api/echo/1/x?status=418')
    expect(custom.status).toBe(418)
    expect(custom.headers['x-from']).toBe('fn')
    expect(custom.headers['content-type']).toMatch(/^text\/plain/)
    expect(custom.text).toBe('custom')
    const after = (await info('echo')).counts
    expect(after.direct).toBe(before.direct + 2)
    expect(after.failures).toBe(before.failures + 1)
    // The failure is in the recent list with its logs, and its log line in the gateway's log.
    const detail = (await (await fetch(`${t.url}/admin/functions/echo`)).json()) as {
      recent: Array<{ invocationId: string; ok: boolean; error?: { code: string } }>
    }
    const rec = detail.recent.find((r) => r.invocationId === err.invocationId)
    expect(rec?.ok).toBe(false)
    expect(rec?.error?.code).toBe('SLUICE_ERR_FUNCTION_THREW')
    expect(t.logs.lines.some((l) => l.invocationId === err.invocationId && l.source === 'function' && l.msg === 'echo /api/echo/1/x')).toBe(true)
  })

  it('forwards other requests on a handed connection to the gateway', async () => {
    await untilDirect('echo', '/api/echo/2/y')
    /** Makes a connection that a worker host serves, then sends `method path` on it. */
    async function onHostSocket(method: string, path: string, opts: { headers?: Record<string, string>; body?: string } = {}): Promise<Res> {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      try {
        const before = (await info('echo')).counts.direct
        expect((await call(t.url, 'GET', '/api/echo/2/y', { agent })).status).toBe(200)
        expect((await info('echo')).counts.direct).toBe(before + 1)
        return await call(t.url, method, path, { ...opts, agent })
      } finally {
        agent.destroy()
      }
    }
    // Answered by the gateway, with Connection: close so the client's next connection is routed afresh.
    const health = await onHostSocket('GET', '/admin/health')
    expect(health.status).toBe(200)
    expect(JSON.parse(health.text).status).toBe('up')
    expect(health.headers.connection).toBe('close')
    const missing = await onHostSocket('GET', '/api/nothing-here')
    expect(missing.status).toBe(404)
    expect(JSON.parse(missing.text).error.code).toBe('SLUICE_ERR_HTTP_NOT_FOUND')
    const wrongMethod = await onHostSocket('DELETE', '/api/echo/2/y')
    expect(wrongMethod.status).toBe(405)
    expect(wrongMethod.headers.allow).toBe('GET, POST')
    const posted = await onHostSocket('POST', '/admin/functions/echo/invoke', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ events: [{ id: 'fwd-1', source: 'test', time: new Date().toISOString(), body: { n: 1 }, meta: { path: '/x', query: {} } }] }),
    })
    expect(posted.status).toBe(200)
    expect(JSON.parse(posted.text).value.body).toEqual({ n: 1 })
    // The live feed streams: it cannot come back through the host; the client reconnects.
    const live = await onHostSocket('GET', '/admin/events')
    expect(live.status).toBe(421)
    expect(JSON.parse(live.text).error.code).toBe('SLUICE_ERR_HTTP_MISDIRECTED')
    // Larger than http.bodyLimit on a handed connection: refused by the host's own server.
    const big = await onHostSocket('POST', '/api/echo/2/y', { headers: { 'content-type': 'application/json' }, body: `"${'x'.repeat(1_100_000)}"` })
    expect(big.status).toBe(413)
    expect(JSON.parse(big.text).error.code).toBe('SLUICE_ERR_HTTP_BODY_TOO_LARGE')
  })

  it('times out a slow request on a handed connection (http.requestTimeoutMs)', async () => {
    await untilDirect('echo', '/api/echo/5/v')
    const port = Number(new URL(t.url).port)
    const socket = connect(port, '127.0.0.1')
    let received = ''
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
    socket.on('data', (d: Buffer) => {
      received += d.toString('latin1')
      // After the first (direct) reply, start a second request and never finish its head.
      if (received.includes('"rest":"v"') && !received.includes('408')) socket.write('GET /api/echo/5/v HTTP/1.1\r\nHost: x\r\n')
    })
    const before = (await info('echo')).counts.direct
    socket.write('GET /api/echo/5/v HTTP/1.1\r\nHost: x\r\n\r\n')
    await closed
    expect(received).toMatch(/^HTTP\/1\.1 200/)
    expect(received).toContain('HTTP/1.1 408')
    expect((await info('echo')).counts.direct).toBe(before + 1)
  })

  it('runs a request on another instance while a long one holds the pinned instance', async () => {
    await untilDirect('long', '/api/long/6/u')
    const order: string[] = []
    // Seconds of work (within the function's 10 s deadline): the quick calls come long before it ends.
    const slow = call(t.url, 'GET', '/api/long/6/u?spin=3000').then((r) => {
      order.push('slow')
      return r
    })
    await new Promise((r) => setTimeout(r, 150))
    const quick = await Promise.all([1, 2, 3].map(() => call(t.url, 'GET', '/api/long/6/u')))
    order.push('quick')
    expect(quick.map((r) => r.status)).toEqual([200, 200, 200])
    expect((await slow).status).toBe(200)
    expect(order).toEqual(['quick', 'slow'])
  })

  it('serves the new code after a reload', async () => {
    await untilDirect('ver', '/api/ver')
    expect(JSON.parse((await call(t.url, 'GET', '/api/ver')).text)).toEqual({ version: 1 })
    writeFileSync(join(t.dir, 'gateway.yaml'), t.yaml)
    writeFileSync(join(t.dir, 'functions/ver.js'), 'export default async () => ({ version: 2 })')
    const r = await t.gw.reload()
    expect(r.errors).toEqual([])
    expect(r.ok).toBe(true)
    await untilDirect('ver', '/api/ver')
    const before = (await info('ver')).counts.direct
    const res = await call(t.url, 'GET', '/api/ver')
    expect(JSON.parse(res.text)).toEqual({ version: 2 })
    expect((await info('ver')).counts.direct).toBe(before + 1)
  })

  it('keeps a connection whose first request is not whole in its first bytes, and serves it', async () => {
    await untilDirect('echo', '/api/echo/8/t')
    const port = Number(new URL(t.url).port)
    /** Writes `parts` on a raw connection, a pause between them, and returns the reply text. */
    const raw = (parts: string[]) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1')
        let text = ''
        socket.on('data', (d: Buffer) => {
          text += d.toString('latin1')
          if (/\r\n\r\n[\s\S]*\}$/.test(text)) socket.end()
        })
        socket.on('close', () => resolve(text))
        socket.on('error', reject)
        void (async () => {
          for (const p of parts) {
            socket.write(p)
            await new Promise((r) => setTimeout(r, 50))
          }
        })()
      })
    const before = (await info('echo')).counts
    const head = 'POST /api/echo/8/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n'
    const split = await raw([`${head}Content-Length: 9\r\n\r\n{"a":`, '"b"}'])
    expect(split).toMatch(/^HTTP\/1\.1 200/)
    expect(split).toContain('"body":{"a":"b"}')
    const chunked = await raw([`${head}Transfer-Encoding: chunked\r\n\r\n9\r\n{"a":"c"}\r\n`, '0\r\n\r\n'])
    expect(chunked).toMatch(/^HTTP\/1\.1 200/)
    expect(chunked).toContain('"body":{"a":"c"}')
    const after = (await info('echo')).counts
    // Both through the gateway.
    expect(after.invocations).toBe(before.invocations + 2)
    expect(after.direct).toBe(before.direct)
  })

  it('publishes what a direct invocation writes to its outputs before it replies', async () => {
    const sub = await mqtt.connectAsync('mqtt://127.0.0.1:1883')
    try {
      const got: Array<{ id: string; body: unknown }> = []
      sub.on('message', (_topic, payload) => got.push(JSON.parse(payload.toString()) as { id: string; body: unknown }))
      await sub.subscribeAsync(OUT_TOPIC, { qos: 1 })
      const post = (id: string) =>
        call(t.url, 'POST', `/api/notify/${id}`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n: id }) })
      for (const until = Date.now() + 30_000; Date.now() < until; ) {
        const before = (await info('notify')).counts.direct
        expect((await post('warm')).status).toBe(200)
        if ((await info('notify')).counts.direct > before) break
        await new Promise((r) => setTimeout(r, 20))
      }
      const before = (await info('notify')).counts
      const res = await post('d1')
      expect(res.status).toBe(200)
      expect(JSON.parse(res.text)).toEqual({ sent: true })
      const after = (await info('notify')).counts
      expect(after.direct).toBe(before.direct + 1)
      await waitFor(() => got.some((m) => m.id === 'd1'), 10_000, 'the output message')
      expect(got.find((m) => m.id === 'd1')?.body).toEqual({ n: 'd1' })
    } finally {
      await sub.endAsync()
    }
  })

  it('checks function keys on the host, and follows key changes', async () => {
    const refused = await call(t.url, 'GET', '/api/keyed')
    expect(refused.status).toBe(401)
    const key = await t.gw.createFunctionKey('keyed', 'direct-test')
    await untilDirect('keyed', '/api/keyed', { 'x-functions-key': key })
    const before = (await info('keyed')).counts.direct
    const noKey = await call(t.url, 'GET', '/api/keyed')
    expect(noKey.status).toBe(401)
    expect(JSON.parse(noKey.text).error.code).toBe('SLUICE_ERR_HTTP_UNAUTHORIZED')
    expect((await call(t.url, 'GET', '/api/keyed', { headers: { 'x-functions-key': key } })).status).toBe(200)
    expect((await info('keyed')).counts.direct).toBeGreaterThan(before)
    expect(await t.gw.deleteFunctionKey('keyed', 'direct-test')).toBe(true)
    let status = 0
    for (let i = 0; i < 50 && status !== 401; i++) {
      status = (await call(t.url, 'GET', '/api/keyed', { headers: { 'x-functions-key': key } })).status
      if (status !== 401) await new Promise((r) => setTimeout(r, 20))
    }
    expect(status).toBe(401)
  })

  it('stops an instance that passes its deadline and keeps answering', async () => {
    await untilDirect('echo', '/api/echo/3/z')
    const slow = await call(t.url, 'GET', '/api/echo/3/z?spin=5000')
    expect(slow.status).toBe(504)
    expect(JSON.parse(slow.text).error.code).toBe('SLUICE_ERR_FUNCTION_TIMEOUT')
    const next = await call(t.url, 'GET', '/api/echo/3/z')
    expect(next.status).toBe(200)
    expect(JSON.parse(next.text).meta.params).toEqual({ id: '3', rest: 'z' })
  })

  it('keeps answering after the worker host that served the connections is killed', async () => {
    await untilDirect('echo', '/api/echo/9/s')
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    try {
      expect((await call(t.url, 'GET', '/api/echo/9/s', { agent })).status).toBe(200)
      for (const h of t.gw.hosts()) process.kill(h.pid, 'SIGKILL')
      // The handed connection went with its host; new ones are served (by the gateway, then direct again).
      let ok = 0
      for (const until = Date.now() + 30_000; ok < 5 && Date.now() < until; ) {
        const r = await call(t.url, 'GET', '/api/echo/9/s').catch(() => undefined)
        if (r?.status === 200) ok++
        else await new Promise((r) => setTimeout(r, 50))
      }
      expect(ok).toBe(5)
      await untilDirect('echo', '/api/echo/9/s')
    } finally {
      agent.destroy()
    }
  })

  it('lets a request running on a worker host finish when the gateway stops', async () => {
    await untilDirect('echo', '/api/echo/4/w')
    const running = call(t.url, 'GET', '/api/echo/4/w?spin=400')
    await new Promise((r) => setTimeout(r, 100))
    const stopped = t.stop()
    const res = await running
    expect(res.status).toBe(200)
    expect(JSON.parse(res.text).meta.params).toEqual({ id: '4', rest: 'w' })
    await stopped
  })
})

describe('direct HTTP switched off', () => {
  it('serves every request from the gateway with http.direct: false', async () => {
    const t = await startGateway({
      http: { direct: false },
      yaml: `functions:
  echo:
    code: functions/echo.js
    trigger: { http: { route: 'echo/{id}/{*rest}', methods: [GET], auth: anonymous } }
`,
      files: { 'functions/echo.js': ECHO },
    })
    try {
      for (let i = 0; i < 20; i++) expect((await call(t.url, 'GET', '/api/echo/1/a')).status).toBe(200)
      const counts = ((await (await fetch(`${t.url}/admin/functions/echo`)).json()) as FunctionInfo).counts
      expect(counts.invocations).toBe(20)
      expect(counts.direct).toBe(0)
    } finally {
      await t.stop()
    }
  })
})
