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
`,
      files: { 'functions/echo.ts': `export default async (events: any[]) => ({ status: 200, body: { name: events[0].meta.params.name, got: events[0].body } })` },
    })
  })
  afterAll(() => t.stop())

  it('answers an HTTP function', async () => {
    const res = await fetch(`${t.url}/api/echo/ada`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"x":1}' })
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ name: 'ada', got: { x: 1 } })
  })
})
