/**
 * The dashboard's overview in chromium against a real gateway with an admin key: the key prompt,
 * every configured function with its trigger, the connections, and the instances chart following
 * a burst as the scheduler scales a function up.
 */
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { TriggerEvent } from '../../src/sdk/index.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { launchBrowser, until, WAIT_MS, type TestBrowser } from './browser.js'

const ADMIN_KEY = 'overview-test-key-0123456789abcdef'
const NAMES = ['ov-burst', 'ov-flaky', 'ov-http', 'ov-timer']

describe('dashboard overview', () => {
  let t: TestGateway
  let browser: TestBrowser
  let page: Page

  beforeAll(async () => {
    ;[t, browser] = await Promise.all([
      startGateway({
        yaml: `admin: { key: ${ADMIN_KEY} }
functions:
  ov-http:
    code: functions/hello.ts
    trigger: { http: { route: "stations/{id}", methods: [GET], auth: anonymous } }
  ov-timer:
    code: functions/hello.ts
    trigger: { timer: { schedule: "*/5 * * * * *", timezone: UTC } }
  ov-flaky:
    code: functions/flaky.ts
    retry: { maxAttempts: 2, initialDelayMs: 10, backoff: fixed }
    trigger: { http: { route: flaky, methods: [POST], auth: anonymous } }
  ov-burst:
    code: functions/busy.ts
    batch: { maxSize: 10, maxWaitMs: 0 }
    orderKey: none
    scale: { min: 0, max: 4 }
    # A source that batches (HTTP runs one request per invocation); the tick itself never comes.
    trigger: { timer: { schedule: "0 0 3 1 1 *", timezone: UTC } }
`,
        files: {
          'functions/hello.ts': `export default async (events: any[]) => ({ n: events.length })\n`,
          'functions/flaky.ts': `export default async (events: any[]) => { if (events.some((e) => e.body?.fail)) throw new Error('flag says fail'); return 'ok' }\n`,
          // Each batch keeps its instance busy for a while, so a deep backlog needs more instances.
          'functions/busy.ts': `export default async (events: any[]) => { const end = Date.now() + 50; while (Date.now() < end) {} return events.length }\n`,
        },
      }),
      launchBrowser(),
    ])
    page = await browser.page()
  })
  afterAll(async () => {
    await browser?.close()
    await t?.stop()
  })

  it('asks for the admin key, then lists every configured function with its trigger and the connections', async () => {
    await page.goto(`${t.url}/`)
    await page.getByTestId('key-prompt').waitFor({ timeout: WAIT_MS })
    expect(await page.getByTestId('fn-row-ov-http').count()).toBe(0)
    await page.getByTestId('key-input').fill(ADMIN_KEY)
    await page.getByTestId('key-submit').click()
    await page.getByTestId('key-prompt').waitFor({ state: 'detached', timeout: WAIT_MS })

    for (const name of NAMES) await page.getByTestId(`fn-row-${name}`).waitFor({ timeout: WAIT_MS })
    const rows = await page
      .locator('[data-testid=functions-table] tbody tr')
      .evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent?.trim() ?? '')))
    expect(rows.map((r) => r[0]).sort()).toEqual(NAMES)
    const trigger = new Map(rows.map((r) => [r[0], r[1]]))
    expect(trigger.get('ov-http')).toBe('http stations/{id}')
    expect(trigger.get('ov-timer')).toBe('timer */5 * * * * *')

    await page.getByTestId('live-status').filter({ hasText: 'live' }).waitFor({ timeout: WAIT_MS })
    const connections = await page
      .locator('[data-testid=connections-table] tbody tr')
      .evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent?.trim() ?? '')))
    expect(connections.map((c) => [c[0], c[1], c[3]]).sort()).toEqual([
      ['ov-burst', 'timer', 'up'],
      ['ov-flaky', 'http', 'up'],
      ['ov-http', 'http', 'up'],
      ['ov-timer', 'timer', 'up'],
    ])
    expect(await page.getByTestId('gateway-status').textContent()).toBe('up')
    // The key stays in this tab's session storage only.
    expect(await page.evaluate('[sessionStorage.getItem("sluice.adminKey"), localStorage.getItem("sluice.adminKey")]')).toEqual([ADMIN_KEY, null])
    expect(browser.problems).toEqual([])
  })

  it('the instances chart and the instances column follow a burst as the function scales up', async () => {
    const chart = page.getByTestId('chart-instances')
    const points = async () => Number(await chart.getAttribute('data-points'))
    const series = async (attr: string) => (JSON.parse((await chart.getAttribute(attr)) ?? '{}') as Record<string, number>)['ov-burst'] ?? 0
    const peak = () => series('data-peak')
    const pointsBefore = await points()
    expect(await peak()).toBe(0)

    const events: TriggerEvent[] = Array.from({ length: 3000 }, (_, i) => ({
      id: `burst-${i}`,
      source: 'test://burst',
      time: new Date().toISOString(),
      body: { i },
      meta: {},
    }))
    const burst = t.gw.router.deliver('ov-burst', events)
    // The chart's data (on the element) shows more than one instance of the function at some point.
    await until(async () => (await peak()) >= 2, 'the chart to show 2 or more instances', WAIT_MS * 2)
    const outcomes = await burst
    expect(outcomes.every((o) => o.status === 'done')).toBe(true)
    expect(await peak()).toBeGreaterThanOrEqual(2)
    expect(await peak()).toBeLessThanOrEqual(4)
    // The chart kept getting points while this ran: one per second from the feed.
    await until(async () => (await points()) > pointsBefore + 1, 'more chart points')

    // The events/s chart saw the work too.
    expect((JSON.parse((await page.getByTestId('chart-events').getAttribute('data-peak')) ?? '{}') as Record<string, number>)['ov-burst']).toBeGreaterThan(0)

    // The table and the chart show what the scheduler has (the instances stay until their idle
    // timeout); a snapshot may land between two reads, so read until they agree.
    const total = t.gw.function('ov-burst')?.instances.total ?? 0
    expect(total).toBeGreaterThanOrEqual(1)
    await until(
      async () => Number(await page.getByTestId('fn-instances-ov-burst').getAttribute('data-value')) === total && (await series('data-latest')) === total,
      `the table and the chart to show ${total} instances`,
    )
    expect(t.gw.function('ov-burst')?.counts.eventsDone).toBe(3000)
    expect(browser.problems).toEqual([])
  })
})
