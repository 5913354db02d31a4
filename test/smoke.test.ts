import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from './helpers/gateway.js'

describe('gateway smoke', () => {
  let t: TestGateway
  beforeAll(async () => {
    t = await startGateway({
      yaml: `functions:
  echo:
    code: functions/echo.ts
    trigger: { http: { route: "echo/{name}", methods: [GET, POST], auth: anonymous } }
  files:
    code: functions/files.ts
    trigger: { http: { route: "files/{*path}", methods: [GET], auth: anonymous } }
`,
      files: {
        'functions/echo.ts': `export default async (events: any[]) => ({ status: 200, body: { name: events[0].meta.params.name, got: events[0].body } })`,
        'functions/files.ts': `export default async (events: any[]) => ({ params: events[0].meta.params })`,
      },
    })
  })
  afterAll(() => t.stop())

  it('answers an HTTP function', async () => {
    const res = await fetch(`${t.url}/api/echo/ada`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"x":1}' })
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ name: 'ada', got: { x: 1 } })
  })

  it('names a catch-all parameter as the route does', async () => {
    const res = await fetch(`${t.url}/api/files/a/b/c.txt`)
    expect(await res.json()).toEqual({ params: { path: 'a/b/c.txt' } })
  })

  it('does not run a GET function for HEAD', async () => {
    const res = await fetch(`${t.url}/api/files/x`, { method: 'HEAD' })
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toBe('GET')
    expect(t.gw.function('files')?.counts.invocations).toBe(1)
  })
})
