/**
 * Methods on /api routes (issue 9): a route that exists but does not list the method answers 405
 * with an Allow header and a coded JSON error, without running the function; an unknown path
 * stays 404. Real gateway, real HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

const ECHO = `export default async (events: any[]) => ({ method: events[0].meta.method, params: events[0].meta.params })\n`

describe('HTTP trigger: methods', () => {
  let t: TestGateway
  beforeAll(async () => {
    t = await startGateway({
      yaml: `functions:
  hm-read:
    code: functions/echo.ts
    trigger: { http: { route: "orders/{id}", methods: [GET], auth: anonymous } }
  hm-write:
    code: functions/echo.ts
    trigger: { http: { route: "orders/{id}/lines", methods: [POST, PUT], auth: anonymous } }
  hm-any:
    code: functions/echo.ts
    trigger: { http: { route: "files/{*path}", methods: [GET, HEAD, DELETE], auth: anonymous } }
`,
      files: { 'functions/echo.ts': ECHO },
    })
  })
  afterAll(() => t?.stop())

  async function expect405(res: Response, allow: string): Promise<void> {
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toBe(allow)
    const body = (await res.json()) as { error: { code: string; message: string; requestId: string } }
    expect(body.error.code).toBe('SLUICE_ERR_HTTP_METHOD_NOT_ALLOWED')
    expect(body.error.message).toContain(allow)
    expect(body.error.requestId).toBe(res.headers.get('x-request-id'))
  }

  it('answers 405 with Allow for a method the route does not list, and runs nothing', async () => {
    await expect405(await fetch(`${t.url}/api/orders/7`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }), 'GET')
    await expect405(await fetch(`${t.url}/api/orders/7`, { method: 'DELETE' }), 'GET')
    await expect405(await fetch(`${t.url}/api/orders/7/lines`, { method: 'GET' }), 'POST, PUT')
    await expect405(await fetch(`${t.url}/api/files/a/b.txt`, { method: 'PATCH', body: 'x' }), 'GET, HEAD, DELETE')
    expect(t.gw.function('hm-read')?.counts.invocations).toBe(0)
    expect(t.gw.function('hm-write')?.counts.invocations).toBe(0)
    expect(t.gw.function('hm-any')?.counts.invocations).toBe(0)
  })

  it('still serves the listed methods, with path parameters, and 404 for unknown paths', async () => {
    const get = await fetch(`${t.url}/api/orders/7/`)
    expect(get.status).toBe(200)
    expect(await get.json()).toEqual({ method: 'GET', params: { id: '7' } })
    const put = await fetch(`${t.url}/api/orders/8/lines`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' })
    expect(await put.json()).toEqual({ method: 'PUT', params: { id: '8' } })
    const del = await fetch(`${t.url}/api/files/x/y`, { method: 'DELETE' })
    expect(await del.json()).toEqual({ method: 'DELETE', params: { path: 'x/y' } })
    const head = await fetch(`${t.url}/api/files/x/y`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    const missing = await fetch(`${t.url}/api/nothing/here`, { method: 'POST' })
    expect(missing.status).toBe(404)
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('SLUICE_ERR_HTTP_NOT_FOUND')
  })
})
