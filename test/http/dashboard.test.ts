/**
 * The dashboard's routes on the gateway's server: the built page for every app route, hashed
 * assets with a long cache, the message when the UI was not built, and the same access rule as
 * the admin API (admin key for data; loopback only when no key is set). Needs `npm run build`
 * (npm test runs it first).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DASHBOARD_ROUTES, defaultDashboardDir, registerDashboard } from '../../src/http/dashboard.js'
import { createHttpServer } from '../../src/http/server.js'
import { createLogger } from '../../src/log.js'
import { LogCapture, startGateway, type TestGateway } from '../helpers/gateway.js'

const ADMIN_KEY = 'dash-test-key-0123456789abcdef'
const APP_PATHS = ['/', '/functions/db-hello', '/dead-letters']
const FILES = { 'functions/hello.ts': `export default async () => 'hi'\n` }
const YAML = `functions:
  db-hello:
    code: functions/hello.ts
    trigger: { http: { route: hello, methods: [GET], auth: anonymous } }
`

/** The script and stylesheet the built index.html references. */
async function assetPaths(url: string): Promise<string[]> {
  const html = await (await fetch(`${url}/`)).text()
  return [...html.matchAll(/(?:src|href)="(\/ui\/assets\/[^"]+)"/g)].map((m) => m[1] as string)
}

describe('dashboard routes', () => {
  let t: TestGateway
  beforeAll(async () => {
    if (!existsSync(join(defaultDashboardDir(), 'index.html'))) throw new Error(`the dashboard is not built (${defaultDashboardDir()}): run npm run build`)
    t = await startGateway({ yaml: `admin: { key: ${ADMIN_KEY} }\n${YAML}`, files: FILES })
  })
  afterAll(() => t.stop())

  it('lists the app routes the client routes between', () => {
    expect([...DASHBOARD_ROUTES]).toEqual(['/', '/functions/:name', '/dead-letters'])
  })

  it('answers the page for every app route, not cached, under a strict content security policy', async () => {
    for (const p of APP_PATHS) {
      const res = await fetch(`${t.url}${p}`)
      expect(res.status, p).toBe(200)
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8')
      expect(res.headers.get('cache-control')).toBe('no-cache')
      expect(res.headers.get('content-security-policy')).toContain("script-src 'self'")
      expect(res.headers.get('content-security-policy')).not.toContain('unsafe-inline')
      const html = await res.text()
      expect(html).toContain('<div id="app">')
      expect(html).toMatch(/<script type="module" crossorigin src="\/ui\/assets\/index-[\w-]+\.js">/)
    }
  })

  it('serves the hashed assets with their content type and a year-long immutable cache; no network URLs in them', async () => {
    const paths = await assetPaths(t.url)
    expect(paths.some((p) => p.endsWith('.js'))).toBe(true)
    expect(paths.some((p) => p.endsWith('.css'))).toBe(true)
    for (const p of paths) {
      const res = await fetch(`${t.url}${p}`)
      expect(res.status, p).toBe(200)
      expect(res.headers.get('content-type')).toBe(p.endsWith('.js') ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8')
      expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable')
      const text = await res.text()
      expect(text.length).toBeGreaterThan(1000)
      // Works offline: nothing is fetched from a CDN or font service.
      expect(text).not.toMatch(/https?:\/\/(?:cdn|unpkg|fonts\.googleapis|jsdelivr)/)
    }
  })

  it('answers 404 with a coded error for unknown assets and names that try to leave the folder', async () => {
    for (const p of ['/ui/assets/nope.js', '/ui/assets/..%2F..%2Fpackage.json', '/ui/assets/.hidden.js', '/ui/assets/index.html', '/ui/assets/x.exe']) {
      const res = await fetch(`${t.url}${p}`)
      expect(res.status, p).toBe(404)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('SLUICE_ERR_HTTP_NOT_FOUND')
    }
  })

  it('with an admin key: the page shell loads without it (it holds no data); its data calls need the key', async () => {
    // From another address too: the key, not the address, guards the data.
    for (const p of [...APP_PATHS, ...(await assetPaths(t.url))]) {
      const res = await t.gw.app.inject({ method: 'GET', url: p, remoteAddress: '203.0.113.9' })
      expect(res.statusCode, p).toBe(200)
    }
    for (const p of ['/admin/functions', '/admin/events', '/admin/dead-letters', '/metrics']) {
      const res = await t.gw.app.inject({ method: 'GET', url: p })
      expect(res.statusCode, p).toBe(401)
      expect(res.json<{ error: { code: string } }>().error.code).toBe('SLUICE_ERR_HTTP_UNAUTHORIZED')
    }
    const ok = await t.gw.app.inject({ method: 'GET', url: '/admin/functions', headers: { 'x-sluice-key': ADMIN_KEY }, remoteAddress: '203.0.113.9' })
    expect(ok.statusCode).toBe(200)
  })
})

describe('dashboard without an admin key', () => {
  let t: TestGateway
  beforeAll(async () => {
    t = await startGateway({ yaml: YAML, files: FILES })
  })
  afterAll(() => t.stop())

  it('answers loopback callers and refuses others with 403, exactly like the admin API', async () => {
    const assets = await assetPaths(t.url)
    expect(assets.length).toBeGreaterThanOrEqual(1)
    for (const p of [...APP_PATHS, ...assets, '/admin/functions', '/admin/events', '/metrics']) {
      const remote = await t.gw.app.inject({ method: 'GET', url: p, remoteAddress: '203.0.113.9' })
      expect(remote.statusCode, p).toBe(403)
      expect(remote.json<{ error: { code: string } }>().error.code).toBe('SLUICE_ERR_HTTP_FORBIDDEN')
    }
    for (const p of [...APP_PATHS, ...assets, '/admin/functions', '/metrics']) {
      const local = await t.gw.app.inject({ method: 'GET', url: p, remoteAddress: '127.0.0.1' })
      expect(local.statusCode, p).toBe(200)
    }
  })
})

describe('dashboard that was not built', () => {
  let app: FastifyInstance
  const dir = mkdtempSync(join(tmpdir(), 'sluice-no-ui-'))
  beforeAll(async () => {
    app = createHttpServer({ bodyLimit: 1_048_576, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 72_000 }, createLogger('warn', new LogCapture()))
    registerDashboard(app, { dir: join(dir, 'missing') })
    await app.ready()
  })
  afterAll(async () => {
    await app.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('answers every app route with 503 and a page that says to run npm run build', async () => {
    for (const p of APP_PATHS) {
      const res = await app.inject({ method: 'GET', url: p })
      expect(res.statusCode, p).toBe(503)
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8')
      expect(res.body).toContain('npm run build')
      expect(res.body).toContain('has not been built')
    }
    expect((await app.inject({ method: 'GET', url: '/ui/assets/index-abc.js' })).statusCode).toBe(404)
  })
})
