/**
 * `sluice start --watch` as users run it (a child process): saving a module an HTTP function
 * imports changes what the function answers, and adding a function to the YAML starts it; the
 * process keeps running and exits 0 on SIGTERM.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it, onTestFinished } from 'vitest'
import { GatewayProcess } from '../helpers/gateway-process.js'
import { projectDir, waitFor } from '../helpers/gateway.js'

const HEAD = `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1, prewarm: 1 }
store: { path: state.db }
functions:
  which:
    code: functions/which.ts
    trigger: { http: { route: which, methods: [GET], auth: anonymous } }
`

it('reloads an edited import and a new function of the YAML', async () => {
  const p = projectDir({
    'package.json': '{"name":"watch-test","private":true}\n',
    'gateway.yaml': HEAD,
    'functions/which.ts': `import { VERSION } from './lib/version'\nexport default async () => ({ status: 200, body: VERSION })\n`,
    'functions/lib/version.ts': `export const VERSION = 'one'\n`,
    'functions/more.ts': `export default async () => ({ status: 200, body: 'more' })\n`,
  })
  onTestFinished(() => p.cleanup())
  const gp = new GatewayProcess(p.dir, 'gateway.yaml', ['--watch'])
  onTestFinished(() => gp.kill())
  await gp.start()
  const get = async (route: string) => {
    const r = await fetch(`${gp.url}/api/${route}`)
    return `${r.status} ${await r.text()}`
  }
  expect(await get('which')).toBe('200 one')
  expect(gp.lines.some((l) => l.msg === 'watching the configuration and function sources: a change reloads the gateway')).toBe(true)

  writeFileSync(join(p.dir, 'functions/lib/version.ts'), `export const VERSION = 'two'\n`)
  await waitFor(async () => (await get('which')) === '200 two', 30_000, 'the edited import answering')

  writeFileSync(
    join(p.dir, 'gateway.yaml'),
    `${HEAD}  more:\n    code: functions/more.ts\n    trigger: { http: { route: more, methods: [GET], auth: anonymous } }\n`,
  )
  await waitFor(async () => (await get('more')) === '200 more', 30_000, 'the added function answering')
  expect(gp.lines.filter((l) => l.msg === 'reload applied').map((l) => [l.added, l.updated])).toEqual([
    [[], ['which']],
    [['more'], []],
  ])
  expect(await gp.stop()).toBe(0)
})
