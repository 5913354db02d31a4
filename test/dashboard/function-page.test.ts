/**
 * A function's page in chromium against a real gateway (no admin key: loopback): its config,
 * Test/Run through the admin API with the result and log lines, a failing run, the JSON editor's
 * checks, saved sample events, and recent invocations updating live.
 */
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { launchBrowser, WAIT_MS, type TestBrowser } from './browser.js'

describe('dashboard function page', () => {
  let t: TestGateway
  let browser: TestBrowser
  let page: Page

  const logLines = () => page.locator('[data-testid=run-logs] li').evaluateAll((lis) => lis.map((li) => (li.textContent ?? '').replace(/\s+/g, ' ').trim()))
  const setEditor = (text: string) => page.getByTestId('events-editor').fill(text)

  beforeAll(async () => {
    ;[t, browser] = await Promise.all([
      startGateway({
        yaml: `functions:
  fp-greet:
    code: functions/greet.ts
    trigger: { http: { route: "greet/{name}", methods: [GET], auth: anonymous } }
    scale: { min: 0, max: 3 }
  fp-report:
    code: functions/report.ts
    trigger: { timer: { schedule: "0 0 3 1 1 *", timezone: UTC } }
    retry: { maxAttempts: 3, backoff: fixed, initialDelayMs: 50, maxDelayMs: 50 }
`,
        files: {
          'functions/greet.ts': `export default async (events: any[], ctx: any) => {
  for (const e of events) {
    ctx.log.info('greeting', e.body?.name)
    if (e.body?.shout) ctx.log.warn('shouting at', e.body.name)
  }
  console.error('done with', events.length)
  return { greetings: events.map((e) => 'Hello ' + (e.body?.name ?? 'nobody')) }
}
`,
          'functions/report.ts': `export default async (events: any[], ctx: any) => {
  ctx.log.info('building report')
  if (events.some((e) => e.body?.fail)) throw new Error('report store unreachable')
  return { rows: events.length }
}
`,
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

  it('shows the function and its configuration', async () => {
    await page.goto(`${t.url}/functions/fp-greet`)
    await page.getByTestId('function-config').waitFor({ timeout: WAIT_MS })
    expect(await page.getByTestId('function-name').textContent()).toBe('fp-greet')
    const config = (await page.getByTestId('function-config').textContent()) ?? ''
    expect(config).toContain('functions/greet.ts')
    expect(config).toContain('"route":"greet/{name}"')
    expect(config).toContain('min 0, max 3')
  })

  it('Test/Run invokes the function through the admin API and shows its result and log lines in order', async () => {
    await setEditor('[{ "body": { "name": "Ada", "shout": true } }, { "body": { "name": "Grace" } }]')
    await page.getByTestId('run-button').click()
    await page.getByTestId('run-result').waitFor({ timeout: WAIT_MS })
    expect(await page.getByTestId('run-outcome').textContent()).toBe('ok')
    expect(JSON.parse((await page.getByTestId('run-value').textContent()) ?? '')).toEqual({ greetings: ['Hello Ada', 'Hello Grace'] })
    expect(await logLines()).toEqual(['info greeting Ada', 'warn shouting at Ada', 'info greeting Grace', 'error done with 2'])
    // It really ran in the gateway, once, synchronously, with both events in one batch.
    expect(t.gw.function('fp-greet')?.counts.invocations).toBe(1)

    // The recent-invocations table picks it up from the live feed without a reload.
    const row = page.getByTestId('recent-row').first()
    await row.waitFor({ timeout: WAIT_MS })
    const cells = await row.locator('td').allTextContents()
    expect(cells[1]).toBe('sync')
    expect(cells[2]).toBe('2')
    expect(cells[4]).toContain('ok')
    await row.click()
    // The row shows a preview at once and the invocation's full logs once they are fetched.
    await expect.poll(() => page.locator('tr.detail .logs li').allTextContents(), { timeout: WAIT_MS }).toHaveLength(4)
  })

  it('shows a failing run with its error code, message and the logs up to the failure', async () => {
    await page.goto(`${t.url}/functions/fp-report`)
    await setEditor('[{ "body": { "fail": true } }]')
    await page.getByTestId('run-button').click()
    await page.getByTestId('run-result').waitFor({ timeout: WAIT_MS })
    expect(await page.getByTestId('run-result').getAttribute('data-ok')).toBe('false')
    expect(await page.getByTestId('run-outcome').textContent()).toBe('SLUICE_ERR_FUNCTION_THREW')
    expect(await page.getByTestId('run-error').textContent()).toContain('report store unreachable')
    expect(await logLines()).toEqual(['info building report'])
    // Test/Run has no retries and writes no dead letters.
    expect(t.gw.function('fp-report')?.counts).toMatchObject({ invocations: 1, failures: 1, retries: 0, eventsDead: 0 })
  })

  it('checks the JSON before sending it', async () => {
    await setEditor('[{ "body": ')
    expect(await page.getByTestId('editor-error').textContent()).toMatch(/^not valid JSON/)
    expect(await page.getByTestId('run-button').isDisabled()).toBe(true)
    await setEditor('{ "body": 1 }')
    expect(await page.getByTestId('editor-error').textContent()).toContain('expected an array of events')
    await setEditor('{ "events": [{ "body": 1 }] }')
    expect(await page.getByTestId('editor-error').count()).toBe(0)
    expect(await page.getByTestId('run-button').isDisabled()).toBe(false)
    // A key the admin API does not know is refused by the server, and the page says why.
    await setEditor('[{ "bdy": 1 }]')
    await page.getByTestId('run-button').click()
    await page.getByTestId('run-failure').waitFor({ timeout: WAIT_MS })
    expect(await page.getByTestId('run-failure').textContent()).toContain('SLUICE_ERR_HTTP_BAD_REQUEST')
  })

  it('saves sample events per function and loads them after a reload', async () => {
    const sample = '[{ "body": { "rows": [1, 2, 3] } }]'
    await setEditor(sample)
    await page.getByTestId('sample-name').fill('three rows')
    await page.getByTestId('sample-save').click()
    await page.reload()
    await page.getByTestId('sample-load-three rows').waitFor({ timeout: WAIT_MS })
    // The newest saved sample is what the editor opens with.
    expect(await page.getByTestId('events-editor').inputValue()).toBe(sample)
    await setEditor('[]')
    await page.getByTestId('sample-load-three rows').click()
    expect(await page.getByTestId('events-editor').inputValue()).toBe(sample)
    await page.getByTestId('run-button').click()
    await page.getByTestId('run-value').waitFor({ timeout: WAIT_MS })
    expect(JSON.parse((await page.getByTestId('run-value').textContent()) ?? '')).toEqual({ rows: 1 })

    // Samples belong to their function.
    await page.goto(`${t.url}/functions/fp-greet`)
    await page.getByTestId('events-editor').waitFor({ timeout: WAIT_MS })
    expect(await page.getByTestId('samples').count()).toBe(0)
    expect(browser.problems.filter((p) => !p.includes('400'))).toEqual([])
  })
})
