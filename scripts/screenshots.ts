/**
 * Takes the README's dashboard screenshots, docs/dashboard-overview.png and
 * docs/dashboard-function.png: starts a gateway with the demo's functions and two more, drives
 * waves of station telemetry over HTTP so the charts show the autoscaler at work, and photographs
 * the pages in chromium. Run after `npm run build`: `npm run screenshots` (about a minute).
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Writable } from 'node:stream'
import { CONNECTORS } from '../src/config/connectors.js'
import { parseConfig } from '../src/config/load.js'
import { Gateway } from '../src/gateway.js'
import { createLogger } from '../src/log.js'
import { launchBrowser } from '../test/dashboard/browser.js'

const root = resolve(import.meta.dirname, '..')
const TRAFFIC_MS = Number(process.env.SCREENSHOT_TRAFFIC_MS ?? 50_000)

const dir = mkdtempSync(join(tmpdir(), 'sluice-screenshots-'))
mkdirSync(join(dir, 'functions'))
writeFileSync(
  join(dir, 'functions/telemetry.ts'),
  `// POST /api/telemetry: one reading from a station (stored, low batteries flagged).
export default async (events: any[], ctx: any) => {
  const r = events[0]?.body ?? {}
  const end = Date.now() + 8
  while (Date.now() < end) {} // parsing and storing the reading
  if (r.battery < 15) ctx.log.warn('low battery', r.scooter, r.battery)
  ctx.log.info('reading stored', r.station, r.scooter)
  return { status: 202, body: { accepted: r.scooter } }
}
`,
)
writeFileSync(
  join(dir, 'functions/billing-export.ts'),
  `// Exports finished rides to billing; the billing system is down now and then.
export default async (events: any[], ctx: any) => {
  const slot = Math.floor(Date.parse(events[0]?.body?.scheduledAt ?? '') / 5000)
  ctx.log.info('exporting rides for slot', slot)
  if (slot % 4 === 0) throw new Error('billing API answered 503 Service Unavailable')
  return { exported: 40 + (slot % 7) }
}
`,
)
const yaml = `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 2, prewarm: 1 }
store: { path: state.db }
log: { level: warn }
functions:
  station-status:
    code: ${join(root, 'functions/station-status.ts')}
    trigger: { http: { route: "stations/{id}", methods: [GET], auth: anonymous } }
    scale: { min: 1, max: 4 }
  telemetry:
    code: functions/telemetry.ts
    trigger: { http: { route: telemetry, methods: [POST], auth: anonymous } }
    scale: { min: 0, max: 6, idleTimeoutMs: 8000 }
  fleet-report:
    code: ${join(root, 'functions/fleet-report.ts')}
    trigger: { timer: { schedule: "*/10 * * * * *", timezone: Europe/Amsterdam } }
  billing-export:
    code: functions/billing-export.ts
    trigger: { timer: { schedule: "*/5 * * * * *", timezone: Europe/Amsterdam } }
    retry: { maxAttempts: 2, backoff: fixed, initialDelayMs: 200 }
`
const loaded = await parseConfig(yaml, join(dir, 'gateway.yaml'), { connectors: CONNECTORS, root: dir, env: {} })
const quiet = new Writable({ write: (_c, _e, cb) => cb() })
const gw = await Gateway.start({ config: loaded.config, compiled: loaded.compiled, logger: createLogger('warn', quiet) })
const browser = await launchBrowser()

try {
  const page = await browser.page()
  await page.setViewportSize({ width: 1400, height: 900 })
  await page.goto(`${gw.url}/`)

  // Waves of telemetry: concurrency rises and falls, so instances follow it up and down.
  const start = Date.now()
  let seq = 0
  const worker = async (slot: number) => {
    while (Date.now() - start < TRAFFIC_MS) {
      const phase = ((Date.now() - start) / 20_000) * 2 * Math.PI
      const active = Math.round(1 + 11 * Math.max(0, Math.sin(phase)))
      if (slot >= active) {
        await new Promise((r) => setTimeout(r, 100))
        continue
      }
      const n = seq++
      const body = { station: `st-${String(n % 40).padStart(3, '0')}`, scooter: `sc-${n % 900}`, battery: (n * 37) % 100, speed: n % 25, seq: n }
      await fetch(`${gw.url}/api/telemetry`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then((r) =>
        r.arrayBuffer(),
      )
      if (n % 20 === 0) await fetch(`${gw.url}/api/stations/st-${String(n % 40).padStart(3, '0')}`).then((r) => r.arrayBuffer())
    }
  }
  await Promise.all(Array.from({ length: 12 }, (_, i) => worker(i)))

  await page.waitForTimeout(1500)
  await page.screenshot({ path: join(root, 'docs/dashboard-overview.png'), fullPage: true })

  await page.goto(`${gw.url}/functions/telemetry`)
  await page.getByTestId('events-editor').fill(JSON.stringify([{ body: { station: 'st-007', scooter: 'sc-42', battery: 9, speed: 0 } }], null, 2))
  await page.getByTestId('run-button').click()
  await page.getByTestId('run-result').waitFor()
  await page.getByTestId('recent-row').first().click()
  await page.waitForTimeout(1200)
  await page.evaluate('window.scrollTo(0, 0)')
  await page.screenshot({ path: join(root, 'docs/dashboard-function.png'), fullPage: true })
  process.stdout.write(`wrote docs/dashboard-overview.png and docs/dashboard-function.png (${seq} requests)\n`)
} finally {
  await browser.close()
  await gw.stop({ timeoutMs: 10_000 })
  rmSync(dir, { recursive: true, force: true })
}
