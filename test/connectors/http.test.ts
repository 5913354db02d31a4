/**
 * HTTP trigger, request side: routes and path parameters, methods, function keys and the admin
 * key, what the function sees of the request, body parsing and its limits. Real gateway, real
 * worker hosts, real HTTP. Replies, errors, back-pressure and shutdown are in http-replies.test.ts.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashKey } from '../../src/http/auth.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

const ADMIN_KEY = 'http-test-admin-key-0123456789abcdef'

interface ErrorJson {
  error: { code: string; message: string; requestId: string; invocationId?: string }
}

/** Every function echoes what it received, so tests can check the event the trigger built. */
const ECHO = `export default async (events: any[]) => {
  const e = events[0]
  return { status: 200, body: { n: events.length, body: e.body, meta: e.meta, id: e.id, source: e.source } }
}
`

/** What the echo function returns. */
interface Echo {
  n: number
  body: unknown
  id: string
  source: string
  meta: { method: string; path: string; params: Record<string, string>; query: Record<string, unknown>; headers: Record<string, unknown>; ip: string }
}

async function json<T = Echo>(res: Response): Promise<T> {
  expect(res.headers.get('content-type') ?? '').toMatch(/^application\/json/)
  return (await res.json()) as T
}

async function expectError(res: Response, status: number, code: string): Promise<ErrorJson> {
  expect(res.status).toBe(status)
  const body = await json<ErrorJson>(res)
  expect(body.error.code).toBe(code)
  expect(typeof body.error.message).toBe('string')
  expect(body.error.requestId).toBe(res.headers.get('x-request-id'))
  return body
}

describe('HTTP trigger: routes, methods and auth', () => {
  let t: TestGateway
  beforeAll(async () => {
    t = await startGateway({
      yaml: `admin: { key: ${ADMIN_KEY} }
functions:
  h-echo:
    code: functions/echo.ts
    trigger: { http: { route: "shops/{shop}/items/{item}", methods: [GET, POST, PUT], auth: anonymous } }
  h-getonly:
    code: functions/echo.ts
    trigger: { http: { route: getonly, methods: [GET], auth: anonymous } }
  h-secure:
    code: functions/echo.ts
    trigger: { http: { route: "secure/{id}", methods: [GET, POST], auth: function } }
  h-default-auth:
    code: functions/echo.ts
    trigger: { http: { route: default-auth } }
`,
      files: { 'functions/echo.ts': ECHO },
    })
  })
  afterAll(() => t.stop())

  const admin = (path: string, init: RequestInit = {}) =>
    fetch(`${t.url}${path}`, { ...init, headers: { 'x-sluice-key': ADMIN_KEY, ...(init.headers as Record<string, string>) } })

  it('routes /api/<route> with {param} path parameters, query and method into the event', async () => {
    const res = await fetch(`${t.url}/api/shops/s%201/items/42?color=red&tag=a&tag=b`, {
      method: 'PUT',
      // A caller cannot choose its request id.
      headers: { 'content-type': 'application/json', 'x-custom': 'yes', 'x-request-id': 'chosen-by-caller' },
      body: JSON.stringify({ qty: 3 }),
    })
    expect(res.status).toBe(200)
    const requestId = res.headers.get('x-request-id')
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/)
    const out = await json(res)
    expect(out.n).toBe(1)
    expect(out.body).toEqual({ qty: 3 })
    expect(out.id).toBe(requestId)
    expect(out.source).toBe('http://h-echo')
    expect(out.meta.method).toBe('PUT')
    expect(out.meta.params).toEqual({ shop: 's 1', item: '42' })
    expect(out.meta.query).toEqual({ color: 'red', tag: ['a', 'b'] })
    expect(out.meta.path).toBe('/api/shops/s%201/items/42')
    expect(out.meta.headers['x-custom']).toBe('yes')
    expect(out.meta.ip).toBe('127.0.0.1')
  })

  it('answers every configured method and a JSON 404/405 for the others', async () => {
    for (const method of ['GET', 'POST', 'PUT']) {
      const res = await fetch(`${t.url}/api/shops/a/items/b`, { method })
      expect(res.status, method).toBe(200)
      expect((await json(res)).meta.method).toBe(method)
    }
    for (const [url, method] of [
      ['/api/shops/a/items/b', 'DELETE'],
      ['/api/shops/a/items/b', 'PATCH'],
      ['/api/getonly', 'POST'],
      ['/api/getonly', 'DELETE'],
    ] as const) {
      const res = await fetch(`${t.url}${url}`, { method })
      expect([404, 405], `${method} ${url}`).toContain(res.status)
      const body = await json<ErrorJson>(res)
      expect(body.error.code).toMatch(/^SLUICE_ERR_HTTP_/)
      expect(body.error.requestId).toBe(res.headers.get('x-request-id'))
    }
    const ok = await fetch(`${t.url}/api/getonly`)
    expect(ok.status).toBe(200)
  })

  it('answers an unknown route with 404 SLUICE_ERR_HTTP_NOT_FOUND as JSON', async () => {
    for (const path of ['/api/nope', '/api/shops/a/items', '/api/shops/a/items/b/c', '/nothing-here']) {
      const body = await expectError(await fetch(`${t.url}${path}`), 404, 'SLUICE_ERR_HTTP_NOT_FOUND')
      expect(body.error.message).toContain(path)
    }
  })

  it('rejects auth: function routes without a key, with a wrong key, and with an empty key', async () => {
    await expectError(await fetch(`${t.url}/api/secure/1`), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
    await expectError(await fetch(`${t.url}/api/secure/1`, { headers: { 'x-functions-key': 'wrong-key' } }), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
    await expectError(await fetch(`${t.url}/api/secure/1`, { headers: { 'x-functions-key': '' } }), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
    // The route default is auth: function.
    await expectError(await fetch(`${t.url}/api/default-auth`), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
    // Nothing ran: a rejected request never reaches the function.
    expect(t.gw.function('h-secure')?.counts.invocations).toBe(0)
  })

  it('opens auth: function routes with a key made by POST /admin/functions/:name/keys, stored only as a hash', async () => {
    const created = await admin('/admin/functions/h-secure/keys', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'ci' }),
    })
    expect(created.status).toBe(201)
    const { key, name, function: fn } = await json<{ key: string; name: string; function: string }>(created)
    expect(fn).toBe('h-secure')
    expect(name).toBe('ci')
    expect(key.length).toBeGreaterThanOrEqual(32)

    const res = await fetch(`${t.url}/api/secure/7`, { headers: { 'x-functions-key': key } })
    expect(res.status).toBe(200)
    expect((await json(res)).meta.params).toEqual({ id: '7' })

    // A key of one function does not open another.
    await expectError(await fetch(`${t.url}/api/default-auth`, { headers: { 'x-functions-key': key } }), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
    // A wrong key is still refused once keys exist.
    await expectError(await fetch(`${t.url}/api/secure/7`, { headers: { 'x-functions-key': `${key}x` } }), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')

    // The key is shown once: listing keys gives names only.
    const listed = await json<{ keys: Array<Record<string, unknown>> }>(await admin('/admin/functions/h-secure/keys'))
    expect(listed.keys.map((k) => k.name)).toEqual(['ci'])
    expect(JSON.stringify(listed)).not.toContain(key)

    // The store (SQLite file and its WAL) holds the SHA-256 digest, never the key itself.
    const files = readdirSync(t.dir).filter((f) => f.startsWith('state.db'))
    expect(files).toContain('state.db')
    const stored = files.map((f) => readFileSync(join(t.dir, f)).toString('latin1')).join('\n')
    expect(stored).toContain(hashKey(key))
    expect(stored).not.toContain(key)
  })

  it('hides x-functions-key and the admin key from the function', async () => {
    const created = await admin('/admin/functions/h-secure/keys', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"hide"}' })
    const { key } = (await created.json()) as { key: string }
    const res = await fetch(`${t.url}/api/secure/9`, { headers: { 'x-functions-key': key, 'x-visible': 'v' } })
    expect(res.status).toBe(200)
    const out = await json(res)
    expect(out.meta.headers['x-visible']).toBe('v')
    expect(out.meta.headers).not.toHaveProperty('x-functions-key')
    expect(JSON.stringify(out)).not.toContain(key)

    const viaAdmin = await fetch(`${t.url}/api/secure/9`, { headers: { 'x-sluice-key': ADMIN_KEY } })
    expect(viaAdmin.status).toBe(200)
    const text = await viaAdmin.text()
    expect(text).not.toContain(ADMIN_KEY)
    expect((JSON.parse(text) as Echo).meta.headers).not.toHaveProperty('x-sluice-key')
  })

  it('opens auth: function routes with the admin key (x-sluice-key or Bearer), not with a wrong one', async () => {
    expect((await fetch(`${t.url}/api/default-auth`, { headers: { 'x-sluice-key': ADMIN_KEY } })).status).toBe(200)
    const bearer = await fetch(`${t.url}/api/default-auth`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })
    expect(bearer.status).toBe(200)
    expect((await json(bearer)).meta.headers).not.toHaveProperty('authorization')
    await expectError(await fetch(`${t.url}/api/default-auth`, { headers: { 'x-sluice-key': `${ADMIN_KEY}0` } }), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
    // The admin key is not a function key.
    await expectError(await fetch(`${t.url}/api/default-auth`, { headers: { 'x-functions-key': ADMIN_KEY.slice(1) } }), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
  })

  it('stops accepting a function key once it is deleted', async () => {
    const created = await admin('/admin/functions/h-secure/keys', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"temp"}' })
    const { key } = (await created.json()) as { key: string }
    expect((await fetch(`${t.url}/api/secure/1`, { headers: { 'x-functions-key': key } })).status).toBe(200)
    expect((await admin('/admin/functions/h-secure/keys/temp', { method: 'DELETE' })).status).toBe(204)
    await expectError(await fetch(`${t.url}/api/secure/1`, { headers: { 'x-functions-key': key } }), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
  })

  it('rotates a key: creating one under an existing name replaces it; a body is optional', async () => {
    const first = await json<{ key: string; name: string }>(await admin('/admin/functions/h-secure/keys', { method: 'POST' }))
    expect(first.name).toBe('default')
    expect((await fetch(`${t.url}/api/secure/1`, { headers: { 'x-functions-key': first.key } })).status).toBe(200)
    const second = await json<{ key: string; name: string }>(
      await admin('/admin/functions/h-secure/keys', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"default"}' }),
    )
    expect(second.key).not.toBe(first.key)
    expect((await fetch(`${t.url}/api/secure/1`, { headers: { 'x-functions-key': second.key } })).status).toBe(200)
    await expectError(await fetch(`${t.url}/api/secure/1`, { headers: { 'x-functions-key': first.key } }), 401, 'SLUICE_ERR_HTTP_UNAUTHORIZED')
  })

  it('answers key requests for unknown functions and keys with 404', async () => {
    await expectError(await admin('/admin/functions/h-nope/keys', { method: 'POST' }), 404, 'SLUICE_ERR_FUNCTION_NOT_FOUND')
    await expectError(await admin('/admin/functions/h-nope/keys'), 404, 'SLUICE_ERR_FUNCTION_NOT_FOUND')
    await expectError(await admin('/admin/functions/h-secure/keys/never-made', { method: 'DELETE' }), 404, 'SLUICE_ERR_HTTP_NOT_FOUND')
    const bad = await admin('/admin/functions/h-secure/keys', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"has space"}' })
    await expectError(bad, 400, 'SLUICE_ERR_HTTP_BAD_REQUEST')
    const extra = await admin('/admin/functions/h-secure/keys', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"name":"ok","value":"chosen-by-caller"}',
    })
    await expectError(extra, 400, 'SLUICE_ERR_HTTP_BAD_REQUEST')
  })
})

describe('HTTP trigger: request bodies', () => {
  let t: TestGateway
  beforeAll(async () => {
    t = await startGateway({
      http: { bodyLimit: 2048 },
      yaml: `functions:
  b-echo:
    code: functions/echo.ts
    trigger: { http: { route: body, methods: [POST, PUT], auth: anonymous } }
`,
      files: { 'functions/echo.ts': ECHO },
    })
  })
  afterAll(() => t.stop())

  const post = (body: string | Buffer, contentType?: string) =>
    fetch(`${t.url}/api/body`, { method: 'POST', body, ...(contentType ? { headers: { 'content-type': contentType } } : {}) })

  it('parses a JSON body', async () => {
    const res = await post(JSON.stringify({ a: [1, 2], s: 'x', nested: { ok: true } }), 'application/json; charset=utf-8')
    expect(res.status).toBe(200)
    expect((await json(res)).body).toEqual({ a: [1, 2], s: 'x', nested: { ok: true } })
  })

  it('passes text/plain as a string and application/octet-stream as base64', async () => {
    const text = await post('hello {not json} ünïcode', 'text/plain')
    expect(text.status).toBe(200)
    expect((await json(text)).body).toBe('hello {not json} ünïcode')

    const bytes = Buffer.from([0, 1, 2, 250, 255, 10, 13])
    const bin = await post(bytes, 'application/octet-stream')
    expect(bin.status).toBe(200)
    const got = (await json(bin)).body as string
    expect(typeof got).toBe('string')
    expect(Buffer.from(got, 'base64').equals(bytes)).toBe(true)
  })

  it('answers a body over http.bodyLimit with 413 SLUICE_ERR_HTTP_BODY_TOO_LARGE', async () => {
    const before = t.gw.function('b-echo')?.counts.invocations ?? 0
    const big = JSON.stringify({ pad: 'x'.repeat(4096) })
    await expectError(await post(big, 'application/json'), 413, 'SLUICE_ERR_HTTP_BODY_TOO_LARGE')
    await expectError(await post('y'.repeat(3000), 'text/plain'), 413, 'SLUICE_ERR_HTTP_BODY_TOO_LARGE')
    await expectError(await post(Buffer.alloc(3000), 'application/octet-stream'), 413, 'SLUICE_ERR_HTTP_BODY_TOO_LARGE')
    // Just under the limit passes.
    const fits = await post(JSON.stringify({ pad: 'x'.repeat(1900) }), 'application/json')
    expect(fits.status).toBe(200)
    expect(t.gw.function('b-echo')?.counts.invocations).toBe(before + 1)
  })

  it('answers malformed JSON with 400 SLUICE_ERR_HTTP_BAD_JSON', async () => {
    for (const bad of ['{"a":', '{a:1}', "{'a':1}", 'nope', '']) {
      await expectError(await post(bad, 'application/json'), 400, 'SLUICE_ERR_HTTP_BAD_JSON')
    }
  })

  it('refuses __proto__ and constructor.prototype keys with 400 SLUICE_ERR_HTTP_PROTO_POISONING', async () => {
    const before = t.gw.function('b-echo')?.counts.invocations ?? 0
    await expectError(await post('{"__proto__":{"polluted":true}}', 'application/json'), 400, 'SLUICE_ERR_HTTP_PROTO_POISONING')
    await expectError(await post('{"a":{"b":{"__proto__":{"x":1}}}}', 'application/json'), 400, 'SLUICE_ERR_HTTP_PROTO_POISONING')
    await expectError(await post('{"constructor":{"prototype":{"polluted":true}}}', 'application/json'), 400, 'SLUICE_ERR_HTTP_PROTO_POISONING')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(t.gw.function('b-echo')?.counts.invocations).toBe(before)
    // A key merely named like one is fine.
    const ok = await post('{"constructor":"plain","proto":1}', 'application/json')
    expect(ok.status).toBe(200)
    expect((await json(ok)).body).toEqual({ constructor: 'plain', proto: 1 })
  })
})
