/**
 * The dashboard's Cluster panel in chromium: two gateways on one PostgreSQL store (a fresh schema)
 * show as two live rows on either's dashboard, with the warning that both run an MQTT trigger
 * without share; a stopped one turns to `stopped`.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { admin, PG_URL, uniqueName } from '../store/pg.js'
import { launchBrowser, until, WAIT_MS, type TestBrowser } from '../dashboard/browser.js'

const KEY = 'cluster-dashboard-key-0123456789'
const uid = () => randomBytes(4).toString('hex')

describe('dashboard Cluster panel', () => {
  const schema = uniqueName('sluice_dash')
  const topic = `sluice-test/cluster-dash/${uid()}`
  const ids = [`dash-a-${uid()}`, `dash-b-${uid()}`]
  let gws: TestGateway[] = []
  let browser: TestBrowser

  const gateway = (id: string) =>
    startGateway({
      store: `{ kind: postgres, url: "${PG_URL}", schema: ${schema} }`,
      yaml: `admin: { key: ${KEY} }
instance: { id: ${id}, heartbeatMs: 200, expiryMs: 1000 }
connections:
  devices: { kind: mqtt, url: "mqtt://127.0.0.1:1883" }
functions:
  plain:
    code: functions/noop.ts
    trigger: { mqtt: { connection: devices, topic: "${topic}", clientId: "${id}-plain" } }
`,
      files: { 'functions/noop.ts': 'export default async function () {}\n' },
    })

  beforeAll(async () => {
    const a = await gateway(ids[0] as string)
    const b = await gateway(ids[1] as string)
    gws = [a, b]
    browser = await launchBrowser()
  })
  afterAll(async () => {
    await browser?.close()
    for (const g of gws) await g.stop()
    await admin(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  })

  it('shows one row per instance, the unshared-trigger warning, and a stopped instance', async () => {
    const [a, b] = gws as [TestGateway, TestGateway]
    const page = await browser.page()
    await page.goto(`${a.url}/`)
    await page.getByTestId('key-prompt').waitFor({ timeout: WAIT_MS })
    await page.getByTestId('key-input').fill(KEY)
    await page.getByTestId('key-submit').click()
    const row = (id: string) => page.getByTestId(`instance-row-${id}`)
    for (const id of ids) await page.locator(`[data-testid="instance-row-${id}"][data-status="live"]`).waitFor({ timeout: WAIT_MS })
    expect(await row(ids[0] as string).textContent()).toContain('(this)')
    await page.locator('[data-testid=cluster-warning][data-code=SLUICE_ERR_CLUSTER_MQTT_UNSHARED]').waitFor({ timeout: WAIT_MS })

    await b.stop()
    gws = [a]
    await until(async () => (await row(ids[1] as string).getAttribute('data-status')) === 'stopped', 'the stopped instance', WAIT_MS)
    expect(browser.problems).toEqual([])
  }, 120_000)
})
