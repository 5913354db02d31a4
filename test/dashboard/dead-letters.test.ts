/**
 * Dead letters in chromium: events that fail every attempt appear (live, without a reload) with
 * their error, attempts and source position; a replay while the function is still broken fails
 * again; after the function is fixed (a new gateway on the same store), replaying one and then
 * all matching a filter succeeds and empties the list.
 */
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { TriggerEvent } from '../../src/sdk/index.js'
import { projectDir, startGateway, type TestGateway } from '../helpers/gateway.js'
import { launchBrowser, until, WAIT_MS, type TestBrowser } from './browser.js'

const YAML = `functions:
  dl-orders:
    code: functions/orders.ts
    trigger: { timer: { schedule: "0 0 3 1 1 *", timezone: UTC } }
    retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 10, maxDelayMs: 10 }
  dl-status:
    code: functions/status.ts
    trigger: { http: { route: status, methods: [GET], auth: anonymous } }
`
const BROKEN = `export default async (events: any[]) => { throw new Error('warehouse unreachable for orders ' + events.map((e) => e.body.order).join(',')) }\n`
const FIXED = `export default async (events: any[], ctx: any) => { ctx.log.info('stored', events.length); return { stored: events.length } }\n`

function order(n: number): TriggerEvent {
  return {
    id: `order-${n}`,
    source: 'kafka://stream/orders',
    key: 'orders/2',
    time: new Date().toISOString(),
    body: { order: n },
    meta: { topic: 'orders', partition: 2, offset: 40 + n },
  }
}

interface Row {
  id: string
  eventId: string
  cells: string[]
}

describe('dashboard dead letters', () => {
  const project = projectDir({})
  let t: TestGateway
  let browser: TestBrowser
  let page: Page

  const rows = (): Promise<Row[]> =>
    page.locator('[data-testid=dead-letter-row]').evaluateAll((trs) =>
      trs.map((tr) => ({
        id: tr.getAttribute('data-id') ?? '',
        eventId: tr.getAttribute('data-event-id') ?? '',
        cells: [...tr.querySelectorAll('td')].map((td) => td.textContent?.trim() ?? ''),
      })),
    )
  const waitForCount = (n: number) =>
    until(async () => Number(await page.getByTestId('dead-count').getAttribute('data-value')) === n, `${n} dead letters listed`)

  beforeAll(async () => {
    ;[t, browser] = await Promise.all([
      startGateway({ dir: project.dir, yaml: YAML, files: { 'functions/orders.ts': BROKEN, 'functions/status.ts': FIXED } }),
      launchBrowser(),
    ])
    page = await browser.page()
  })
  afterAll(async () => {
    await browser?.close()
    await t?.stop()
    project.cleanup()
  })

  it('lists events that failed every attempt with error, attempts and source position, and new ones arrive live', async () => {
    const outcomes = await t.gw.router.deliver('dl-orders', [order(1), order(2)])
    expect(outcomes.map((o) => o.status)).toEqual(['dead', 'dead'])

    await page.goto(`${t.url}/dead-letters`)
    await waitForCount(2)
    const listed = await rows()
    expect(listed.map((r) => r.eventId).sort()).toEqual(['order-1', 'order-2'])
    for (const r of listed) {
      const n = r.eventId.slice('order-'.length)
      expect(r.cells[1]).toBe('dl-orders')
      expect(r.cells[2]).toContain('SLUICE_ERR_FUNCTION_THREW')
      // Events of one key may share a batch, and so its error.
      expect(r.cells[2]).toMatch(new RegExp(`warehouse unreachable for orders ([0-9],)*${n}\\b`))
      expect(r.cells[3]).toBe('3')
      expect(r.cells[4]).toBe(`kafka://stream/orders · key orders/2 · topic orders · partition 2 · offset ${40 + Number(n)}`)
    }

    // Another failure while the page is open shows up without a reload.
    await t.gw.router.deliver('dl-orders', [order(3)])
    await waitForCount(3)
    expect((await rows()).map((r) => r.eventId).sort()).toEqual(['order-1', 'order-2', 'order-3'])
  })

  it('a replay while the function is still broken fails again and replaces the letter', async () => {
    const before = (await rows()).find((r) => r.eventId === 'order-1') as Row
    await page.locator(`[data-testid=dead-letter-row][data-id="${before.id}"] [data-testid=replay-one]`).click()
    await page.getByTestId('replay-message').filter({ hasText: 'failed again' }).waitFor({ timeout: WAIT_MS })
    await page.locator(`[data-testid=dead-letter-row][data-id="${before.id}"]`).waitFor({ state: 'detached', timeout: WAIT_MS })
    await waitForCount(3)
    const again = (await rows()).find((r) => r.eventId === 'order-1')
    expect(again?.id).toBeDefined()
    expect(again?.id).not.toBe(before.id)
  })

  it('after the function is fixed, replaying one and then all matching the filter succeeds and empties the list', async () => {
    // Deploy the fix: a new gateway with the fixed code on the same state store. (The page leaves
    // first: left open, it would try to reconnect to the stopped gateway.)
    await page.goto('about:blank')
    await t.stop()
    t = await startGateway({ dir: project.dir, yaml: YAML, files: { 'functions/orders.ts': FIXED } })
    await page.goto(`${t.url}/dead-letters`)
    await waitForCount(3)

    const first = (await rows()).find((r) => r.eventId === 'order-2') as Row
    await page.locator(`[data-testid=dead-letter-row][data-id="${first.id}"] [data-testid=replay-one]`).click()
    await page
      .getByTestId('replay-message')
      .filter({ hasText: `Replayed ${first.id}: done` })
      .waitFor({ timeout: WAIT_MS })
    await waitForCount(2)
    expect((await rows()).map((r) => r.eventId).sort()).toEqual(['order-1', 'order-3'])

    // Filter on the function (and error code), then replay everything that matches.
    await page.locator('[data-testid=filter-function] option[value="dl-orders"]').waitFor({ state: 'attached', timeout: WAIT_MS })
    await page.getByTestId('filter-function').selectOption('dl-orders')
    await page.getByTestId('filter-code').fill('SLUICE_ERR_FUNCTION_THREW')
    await page.getByTestId('filter-code').press('Enter')
    await waitForCount(2)
    await page.getByTestId('replay-all').click()
    await page.getByTestId('replay-message').filter({ hasText: 'Replayed 2: 2 done, 0 failed again' }).waitFor({ timeout: WAIT_MS })
    await page.getByTestId('no-dead-letters').waitFor({ timeout: WAIT_MS })

    expect(await t.gw.listDeadLetters({})).toEqual([])
    expect(t.gw.function('dl-orders')?.counts.eventsDone).toBe(3)
    expect(browser.problems).toEqual([])
  })
})
