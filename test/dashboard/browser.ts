/**
 * The Debian chromium driven by playwright-core, for the dashboard tests. One browser per test
 * file, a fresh profile folder per launch (removed on close). `.ci/run` installs chromium when
 * /usr/bin/chromium is missing.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { defaultDashboardDir } from '../../src/http/dashboard.js'

export const CHROMIUM = '/usr/bin/chromium'

/** Flags that keep chromium off the network (this machine refuses its calls) and quiet. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
]

export interface TestBrowser {
  context: BrowserContext
  /** A new tab; its console errors and failed requests are collected in `problems`. */
  page(): Promise<Page>
  /** Console errors and uncaught page errors seen so far, across pages. */
  problems: string[]
  close(): Promise<void>
}

/** Throws a clear error when the UI was not built (npm test builds it first). */
export function expectDashboardBuilt(): void {
  if (!existsSync(join(defaultDashboardDir(), 'index.html'))) throw new Error(`the dashboard is not built in ${defaultDashboardDir()}: run npm run build`)
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)`)
}

/** Generous waits: this machine is small and busy. */
export const WAIT_MS = 45_000

/** Polls `check` (which may read the page) every 100 ms until it is true; throws after `timeoutMs`. */
export async function until(check: () => Promise<boolean>, what: string, timeoutMs = WAIT_MS): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

export async function launchBrowser(): Promise<TestBrowser> {
  expectDashboardBuilt()
  const profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1400, height: 1000 },
  })
  const problems: string[] = []
  // The persistent context opens with one blank tab; tests open their own.
  for (const p of context.pages()) await p.close()
  return {
    context,
    problems,
    async page() {
      const p = await context.newPage()
      p.on('console', (m) => {
        if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(`console: ${m.text()}`)
      })
      p.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`))
      return p
    },
    async close() {
      await context.close().catch(() => undefined)
      rmSync(profile, { recursive: true, force: true })
    },
  }
}
