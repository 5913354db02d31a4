/**
 * Direct HTTP (src/gateway/direct-http.ts): once a function has been called, new connections
 * whose first request is for it are handed to the worker host that runs it, which answers them
 * itself. Checked against a real gateway: the function sees the same event, errors and limits
 * read the same, other requests on such a connection still reach the gateway, keys are checked,
 * every invocation is counted, and a stop drains.
 */
import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FunctionInfo } from '../../src/http/admin.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

interface Res {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
}

/** One request on a connection of its own (no agent), so every call is routed afresh. */
function call(base: string, method: string, path: string, opts: { headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, agent: false, headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }))
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

const ECHO = `export default async function (events, ctx) {
  const e = events[0]
  ctx.log.info('echo ' + e.meta.path)
  if (e.meta.query.fail) throw new Error('asked to fail')
  if (e.meta.query.status) return { status: Number(e.meta.query.status), headers: { 'x-from': 'fn' }, body: 'custom' }
  return { id: e.id, source: e.source, body: e.body, meta: e.meta }
}
`

describe('direct HTTP', () => {
  let t: TestGateway
  const info = async (name: string) => (await (await fetch(`${t.url}/admin/functions/${name}`)).json()) as FunctionInfo

  beforeAll(async () => {
    t = await startGateway({
      yaml: `functions:
  echo:
    code: functions/echo.js
    trigger: { http: { route: 'echo/{id}/{*rest}', methods: [GET, POST], auth: anonymous } }
`,
      files: { 'functions/echo.js': ECHO },
    })
  })
  afterAll(async () => {
    await t?.stop()
  })

  it('serves a pinned function from the worker host with the same event', async () => {
    const first = await call(t.url, 'GET', '/api/echo/7/a/b?x=1', { headers: { 'x-functions-key': 'hidden', 'x-custom': 'v' } })
    expect(first.status).toBe(200)
    // The gateway answered the first call and pinned the function: the client is asked to reconnect.
    let direct = 0
    for (let i = 0; i < 50 && direct === 0; i++) {
      await call(t.url, 'GET', '/api/echo/7/a/b?x=1')
      direct = (await info('echo')).counts.direct
    }
    expect(direct).toBeGreaterThan(0)
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
  })
})
