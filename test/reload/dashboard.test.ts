/**
 * The dashboard's function page after reloads (chromium against a real gateway): the running
 * version (short bundle hash) and when it was loaded, and a compile error of the latest reload
 * with the version that keeps running.
 */
import { expect, it, onTestFinished } from 'vitest'
import type { FunctionInfo } from '../../src/http/admin.js'
import { launchBrowser, until, WAIT_MS } from '../dashboard/browser.js'
import { reloadProject, startFromFile, versionedFunction, versionModule } from './helpers.js'

it('shows the version and load time of a function and the compile error of a refused reload', async () => {
  const project = reloadProject(
    `functions:
  ver:
    code: functions/ver.ts
    trigger: { timer: { schedule: "0 0 3 1 1 *", timezone: UTC } }
`,
    { 'functions/ver.ts': versionedFunction(), 'functions/version.ts': versionModule('v1') },
  )
  const [{ gw }, browser] = await Promise.all([startFromFile(project), launchBrowser()])
  onTestFinished(() => browser.close())
  const info = () => gw.function('ver') as FunctionInfo

  project.write('functions/version.ts', versionModule('v2'))
  expect((await gw.reload()).changed.updated).toEqual(['ver'])
  const v2 = info()
  const page = await browser.page()
  await page.goto(`${gw.url}/functions/ver`)
  await page.getByTestId('function-config').waitFor({ timeout: WAIT_MS })
  const config = (await page.getByTestId('function-config').textContent()) ?? ''
  expect(config).toContain(`version${v2.version.slice(0, 8)}, loaded `)
  expect(await page.getByTestId('reload-error').count()).toBe(0)

  project.write('functions/version.ts', "export const VERSION = 'v3' +\n")
  const refused = await gw.reload()
  expect(refused.ok).toBe(false)
  await page.reload()
  await page.getByTestId('reload-error').waitFor({ timeout: WAIT_MS })
  const error = (await page.getByTestId('reload-error').textContent()) ?? ''
  expect(error).toContain(`version ${v2.version.slice(0, 8)} keeps running`)
  expect(error).toMatch(/functions\/version\.ts:2:\d+/)
  expect(error).toContain('SLUICE_ERR_FUNCTION_COMPILE')

  // Fixed: the error goes, the new version shows.
  project.write('functions/version.ts', versionModule('v3'))
  expect((await gw.reload()).ok).toBe(true)
  await page.reload()
  await until(async () => ((await page.getByTestId('function-config').textContent()) ?? '').includes(info().version.slice(0, 8)), 'the v3 version on the page')
  expect(await page.getByTestId('reload-error').count()).toBe(0)
  expect(browser.problems).toEqual([])
})
