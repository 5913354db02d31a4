/**
 * The admin API without an admin key against the attacks of issue 9, on a real gateway: a web
 * page's cross-site POST (text/plain or empty body) replacing a function key or replaying dead
 * letters, DNS-rebinding reads (foreign Host, foreign Origin, Sec-Fetch-Site: cross-site), and a
 * reverse proxy on the same host (http.trustProxy) making every caller look local. Also the
 * security headers of HTTP function replies and the start log line about admin access.
 */
import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

interface Raw {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** A request with full control of Host and the other headers fetch() would set itself. */
function raw(url: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Raw> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        method,
        path,
        headers: { ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers },
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => (text += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

const code = (r: Raw) => (JSON.parse(r.body) as { error?: { code?: string } }).error?.code

const HELLO = `export default async (events: any[]) => ({ hello: events[0].meta.params.id ?? null })\n`
const ECHO = `export default async (events: any[]) => {
  const q = events[0].meta.query
  if (q.own) return { headers: { 'content-type': 'text/html', 'content-security-policy': "default-src 'none'" }, body: '<b>' + q.own + '</b>' }
  return { headers: { 'content-type': 'text/html' }, body: '<script>alert(1)</script>' + (q.text ?? '') }
}
`
const FAIL = `export default async () => { throw new Error('nope') }\n`

describe('admin API without an admin key: cross-site and rebinding attacks', () => {
  let t: TestGateway
  let host: string
  beforeAll(async () => {
    t = await startGateway({
      yaml: `functions:
  aa-secure:
    code: functions/hello.ts
    trigger: { http: { route: "secure/{id}", methods: [GET] } }
  aa-echo:
    code: functions/echo.ts
    trigger: { http: { route: echo, methods: [GET], auth: anonymous } }
  aa-fail:
    code: functions/fail.ts
    retry: { maxAttempts: 1 }
    trigger: { timer: { schedule: "0 0 3 1 1 *", timezone: UTC } }
`,
      files: { 'functions/hello.ts': HELLO, 'functions/echo.ts': ECHO, 'functions/fail.ts': FAIL },
    })
    host = new URL(t.url).host
  })
  afterAll(() => t?.stop())

  const json = { 'content-type': 'application/json' }

  it('refuses a text/plain or untyped POST that would replace a function key, and the key keeps working', async () => {
    const created = await raw(t.url, 'POST', '/admin/functions/aa-secure/keys', { host, ...json }, '{}')
    expect(created.status).toBe(201)
    const { key } = JSON.parse(created.body) as { key: string }

    // What a <form enctype="text/plain"> or fetch(..., { mode: 'no-cors' }) on any web page sends.
    const plain = await raw(t.url, 'POST', '/admin/functions/aa-secure/keys', { host, 'content-type': 'text/plain' }, '')
    expect(plain.status).toBe(415)
    expect(code(plain)).toBe('SLUICE_ERR_HTTP_UNSUPPORTED_MEDIA')
    const untyped = await raw(t.url, 'POST', '/admin/functions/aa-secure/keys', { host })
    expect(untyped.status).toBe(415)
    const form = await raw(t.url, 'POST', '/admin/functions/aa-secure/keys', { host, 'content-type': 'application/x-www-form-urlencoded' }, 'name=default')
    expect(form.status).toBe(415)

    const keys = JSON.parse((await raw(t.url, 'GET', '/admin/functions/aa-secure/keys', { host })).body) as { keys: unknown[] }
    expect(keys.keys).toHaveLength(1)
    const call = await raw(t.url, 'GET', '/api/secure/7', { host, 'x-functions-key': key })
    expect(call.status).toBe(200)
    expect(JSON.parse(call.body)).toEqual({ hello: '7' })
  })

  it('refuses a text/plain POST replaying dead letters; the letter stays', async () => {
    await t.gw.router.deliver('aa-fail', [{ id: `aa-dl-${process.pid}`, source: 'test://aa', time: new Date().toISOString(), body: 1, meta: {} }])
    const before = await t.gw.listDeadLetters({ function: 'aa-fail' })
    expect(before).toHaveLength(1)
    const replay = await raw(t.url, 'POST', '/admin/dead-letters/replay', { host, 'content-type': 'text/plain' }, '{"function":"aa-fail"}')
    expect(replay.status).toBe(415)
    const one = await raw(t.url, 'POST', `/admin/dead-letters/${before[0]?.id}/replay`, { host })
    expect(one.status).toBe(415)
    expect((await t.gw.listDeadLetters({ function: 'aa-fail' })).map((d) => d.id)).toEqual(before.map((d) => d.id))
    // Typed JSON with no body is the way: the letter is replayed (and fails again, so it is replaced).
    const ok = await raw(t.url, 'POST', `/admin/dead-letters/${before[0]?.id}/replay`, { host, ...json })
    expect(ok.status).toBe(200)
    expect((JSON.parse(ok.body) as { outcome: { status: string } }).outcome.status).toBe('dead')
  })

  it('refuses reads and invokes under a foreign Host (DNS rebinding)', async () => {
    for (const path of ['/admin/dead-letters', '/admin/functions', '/admin/health', '/metrics', '/', '/admin/events']) {
      const r = await raw(t.url, 'GET', path, { host: `evil.example:${new URL(t.url).port}` })
      expect(r.status, path).toBe(403)
      expect(code(r), path).toBe('SLUICE_ERR_HTTP_CROSS_SITE')
    }
    const inv = await raw(t.url, 'POST', '/admin/functions/aa-secure/invoke', { host: 'evil.example', ...json }, '{"events":[{}]}')
    expect(inv.status).toBe(403)
    const mint = await raw(t.url, 'POST', '/admin/functions/aa-secure/keys', { host: 'evil.example', ...json }, '{"name":"evil"}')
    expect(mint.status).toBe(403)
    expect(await t.gw.listFunctionKeys('aa-secure')).not.toContainEqual(expect.objectContaining({ name: 'evil' }))
    expect(t.gw.function('aa-secure')?.counts.invocations).toBe(1)
  })

  it('refuses a foreign Origin, a null Origin and Sec-Fetch-Site: cross-site, even with a loopback Host', async () => {
    const variants: Array<Record<string, string>> = [
      { origin: 'http://evil.example' },
      { origin: 'null' },
      { origin: `http://localhost:1` },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
    ]
    for (const headers of variants) {
      const read = await raw(t.url, 'GET', '/admin/dead-letters', { host, ...headers })
      expect(read.status, JSON.stringify(headers)).toBe(403)
      expect(code(read)).toBe('SLUICE_ERR_HTTP_CROSS_SITE')
      const mint = await raw(t.url, 'POST', '/admin/functions/aa-secure/keys', { host, ...json, ...headers }, '{"name":"evil2"}')
      expect(mint.status).toBe(403)
    }
    expect(await t.gw.listFunctionKeys('aa-secure')).not.toContainEqual(expect.objectContaining({ name: 'evil2' }))
  })

  it('serves loopback names and same-origin requests (the dashboard, the CLI, curl)', async () => {
    const port = new URL(t.url).port
    for (const h of [host, `localhost:${port}`, `[::1]:${port}`, 'localhost', `LOCALHOST:${port}`]) {
      const r = await raw(t.url, 'GET', '/admin/health', { host: h })
      expect(r.status, h).toBe(200)
    }
    const same = await raw(t.url, 'GET', '/admin/functions', { host, origin: `http://${host}`, 'sec-fetch-site': 'same-origin' })
    expect(same.status).toBe(200)
    const typed = await raw(
      t.url,
      'POST',
      '/admin/functions/aa-secure/keys',
      { host, origin: `http://${host}`, 'content-type': 'application/json; charset=utf-8' },
      '{"name":"second"}',
    )
    expect(typed.status).toBe(201)
    const fetched = await fetch(`${t.url}/admin/health`)
    expect(fetched.status).toBe(200)
  })

  it('says at start where the admin API is and how it is protected', () => {
    const line = t.logs.lines.find((l) => (l.admin as { protection?: string } | undefined)?.protection !== undefined)
    expect(line?.admin).toEqual({ url: `${t.url}/admin/`, protection: 'loopback' })
    expect(String(line?.msg)).toMatch(/loopback/)
    expect(String(line?.msg)).toMatch(/set admin\.key/)
  })

  it('sends function replies with nosniff and a sandbox CSP unless the function sets its own', async () => {
    const r = await fetch(`${t.url}/api/echo?text=x`)
    expect(r.status).toBe(200)
    expect(r.headers.get('x-content-type-options')).toBe('nosniff')
    expect(r.headers.get('content-security-policy')).toBe('sandbox')
    const own = await fetch(`${t.url}/api/echo?own=y`)
    expect(own.headers.get('content-security-policy')).toBe("default-src 'none'")
    expect(own.headers.get('x-content-type-options')).toBe('nosniff')
  })
})

describe('admin API behind a reverse proxy (http.trustProxy)', () => {
  const KEY = 'proxy-test-admin-key-0123456789'
  let open: TestGateway
  let keyed: TestGateway
  const YAML = `functions:
  tp-hello:
    code: functions/hello.ts
    trigger: { http: { route: "hello/{id}", methods: [GET], auth: anonymous } }
`
  beforeAll(async () => {
    ;[open, keyed] = await Promise.all([
      startGateway({ http: { trustProxy: '127.0.0.1' }, yaml: YAML, files: { 'functions/hello.ts': HELLO } }),
      startGateway({ http: { trustProxy: '127.0.0.1' }, yaml: `admin: { key: ${KEY} }\n${YAML}`, files: { 'functions/hello.ts': HELLO } }),
    ])
  })
  afterAll(() => Promise.all([open?.stop(), keyed?.stop()]))

  it('without an admin key serves no admin API, dashboard or metrics at all, even to the local proxy', async () => {
    const host = new URL(open.url).host
    for (const path of ['/admin/health', '/admin/dead-letters', '/metrics', '/', '/admin/events']) {
      // What a proxy on the same host forwards for a caller anywhere on the internet.
      const proxied = await raw(open.url, 'GET', path, { host, 'x-forwarded-for': '203.0.113.9', 'x-forwarded-host': 'gateway.example.com' })
      expect(proxied.status, path).toBe(403)
      expect(code(proxied), path).toBe('SLUICE_ERR_HTTP_ADMIN_DISABLED')
      expect(JSON.parse(proxied.body).error.message).toMatch(/admin\.key/)
      const direct = await raw(open.url, 'GET', path, { host })
      expect(direct.status, path).toBe(403)
    }
    const mint = await raw(open.url, 'POST', '/admin/functions/tp-hello/keys', { host, 'content-type': 'application/json' }, '{}')
    expect(mint.status).toBe(403)
    // HTTP functions are not affected.
    const fn = await raw(open.url, 'GET', '/api/hello/3', { host, 'x-forwarded-for': '203.0.113.9' })
    expect(fn.status).toBe(200)
    const line = open.logs.lines.find((l) => (l.admin as { protection?: string } | undefined)?.protection === 'disabled')
    expect(line?.level).toBe('warn')
    expect(String(line?.msg)).toMatch(/OFF/)
  })

  it('with an admin key requires the key for proxied callers', async () => {
    const host = new URL(keyed.url).host
    const none = await raw(keyed.url, 'GET', '/admin/health', { host, 'x-forwarded-for': '203.0.113.9' })
    expect(none.status).toBe(401)
    const withKey = await raw(keyed.url, 'GET', '/admin/health', { host: 'gateway.example.com', 'x-forwarded-for': '203.0.113.9', 'x-sluice-key': KEY })
    expect(withKey.status).toBe(200)
    const line = keyed.logs.lines.find((l) => (l.admin as { protection?: string } | undefined)?.protection !== undefined)
    expect((line?.admin as { protection: string }).protection).toBe('key')
  })
})
