import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { appendFileSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { projectDir, waitFor } from '../helpers/gateway.js'
import { collectJsonLines } from '../helpers/gateway-process.js'

/** The CLI as users run it: `node bin/sluice.js` against the build in dist/ (npm test builds first). */
const BIN = resolve('bin/sluice.js')

const FILES = {
  'gateway.yaml': `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1 }
store: { path: .sluice/state.db }
functions:
  hello:
    code: functions/hello.ts
    trigger: { http: { route: "hello/{name}", auth: anonymous } }
  slow:
    code: functions/slow.ts
    trigger: { http: { route: slow, auth: anonymous } }
  broken:
    code: functions/broken.ts
    trigger: { http: { route: broken, auth: anonymous } }
  nightly:
    code: functions/nightly.ts
    trigger: { timer: { schedule: "0 0 3 * * *", runOnStartup: true } }
    retry: { maxAttempts: 2, backoff: fixed, initialDelayMs: 10 }
`,
  'functions/hello.ts': `export default async (events: Array<{ body: unknown; meta: { params?: { name?: string } } }>, ctx: { log: { info(...a: unknown[]): void } }) => {
  ctx.log.info('hello called')
  ctx.log.warn('hello warned')
  return { greeting: 'hello ' + (events[0]?.meta.params?.name || 'cli'), body: events[0]?.body }
}`,
  'functions/slow.ts': `export default async () => { const end = Date.now() + 700; while (Date.now() < end) {} return { slow: true } }`,
  'functions/broken.ts': `export default async () => { throw new Error('kaputt') }`,
  'functions/nightly.ts': `export default async () => { throw new Error('report store offline') }`,
}

const children: ChildProcess[] = []
const cleanups: Array<() => void> = []
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
  for (const c of cleanups.splice(0)) c()
})

function project(files: Record<string, string> = FILES): string {
  const p = projectDir(files)
  cleanups.push(p.cleanup)
  return p.dir
}

const run = (args: string[], cwd: string) => spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 60_000 })

describe('sluice CLI', () => {
  it('validate: ok exits 0 and lists functions', () => {
    const r = run(['validate', '--config', 'gateway.yaml'], project())
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/ok \(4 functions/)
  })

  it('validate: reports every error at once with file:line:col, key path and code, exits 1', () => {
    const dir = project({
      ...FILES,
      'bad.yaml': `functions:
  a:
    code: functions/missing.ts
    trigger: { http: { route: a } }
    batch: { maxSize: 0 }
  b:
    code: functions/hello.ts
    trigger: { timer: { schedule: "* * *" } }
    retyr: {}
`,
    })
    const r = run(['validate', '--config', 'bad.yaml'], dir)
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/bad\.yaml:5:\d+ functions\.a\.batch\.maxSize .*\[SLUICE_ERR_CONFIG_TYPE\]/)
    expect(r.stderr).toMatch(/bad\.yaml:9:5 functions\.b\.retyr .*\[SLUICE_ERR_CONFIG_UNKNOWN_KEY\]/)
    expect(r.stderr).toMatch(/configuration has 2 errors/)
  })

  it('validate: a function that does not compile is an error naming its file and line', () => {
    const dir = project({ ...FILES, 'functions/hello.ts': 'export default async () => {\n  return { oops: }\n}\n' })
    const r = run(['validate', '--config', 'gateway.yaml'], dir)
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/SLUICE_ERR_FUNCTION_COMPILE/)
    expect(r.stderr).toMatch(/functions\/hello\.ts:2:\d+/)
  })

  it('invoke: runs a function locally and prints its result and logs', () => {
    const r = run(['invoke', 'hello', '--config', 'gateway.yaml', '--data', '{"x":1}'], project())
    expect(r.status).toBe(0)
    const out = JSON.parse(r.stdout) as { ok: boolean; value: unknown }
    expect(out.ok).toBe(true)
    expect(out.value).toEqual({ greeting: 'hello cli', body: { x: 1 } })
    // Each log line once: from the result, not again from the sandbox's own logger.
    expect(r.stderr).toBe('[info] hello called\n[warn] hello warned\n')
  })

  it('invoke: a failing function exits 1 with the coded error', () => {
    const r = run(['invoke', 'broken', '--config', 'gateway.yaml'], project())
    expect(r.status).toBe(1)
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, error: { code: 'SLUICE_ERR_FUNCTION_THREW' } })
  })

  it('usage errors exit 2', () => {
    expect(run(['frobnicate'], project()).status).toBe(2)
    expect(run(['invoke'], project()).status).toBe(2)
  })

  it('dead-letters list and replay talk to the running gateway', async () => {
    const dir = project()
    const child = spawn(process.execPath, [BIN, 'start', '--config', 'gateway.yaml'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(child)
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const url = await waitFor(() => /"url":"(http:[^"]+)","functions"/.exec(out)?.[1], 30_000, 'gateway up')
    // The startup run of `nightly` fails twice and lands in the dead-letter store.
    await waitFor(() => out.includes('event dead-lettered'), 30_000, 'a dead letter')
    const list = run(['dead-letters', 'list', '--url', url, '--function', 'nightly', '--json'], dir)
    expect(list.status).toBe(0)
    const items = (JSON.parse(list.stdout) as { items: Array<{ id: string; attempts: number; error: { message: string } }> }).items
    expect(items).toHaveLength(1)
    expect(items[0]).toMatchObject({ attempts: 2, error: { message: expect.stringMatching(/report store offline/) } })
    // Without --json: a table, one row per letter.
    const table = run(['dead-letters', 'list', '--url', url, '--function', 'nightly'], dir)
    expect(table.status).toBe(0)
    const [header, row, ...rest] = table.stdout.split('\n')
    expect(header?.split(/\s{2,}/)).toEqual(['ID', 'FUNCTION', 'ERROR CODE', 'REASON', 'ATTEMPTS', 'FAILED AT'])
    expect(row?.split(/\s{2,}/)).toEqual([
      items[0]!.id,
      'nightly',
      'SLUICE_ERR_FUNCTION_THREW',
      expect.stringMatching(/report store offline/),
      '2',
      expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    ])
    expect(rest[0]).toBe('1 dead letter; replay one with sluice dead-letters replay <id>')
    // Still failing: the replay ends dead again, and the CLI says so with exit code 1.
    const replay = run(['dead-letters', 'replay', items[0]!.id, '--url', url], dir)
    expect(replay.status).toBe(1)
    expect(JSON.parse(replay.stdout)).toMatchObject({ outcome: { status: 'dead' } })
    const unknown = run(['dead-letters', 'replay', 'no-such-id', '--url', url], dir)
    expect(unknown.status).toBe(1)
    expect(unknown.stderr).toBe(
      `sluice: dead letter no-such-id does not exist at ${url} (replayed letters are removed; list them with sluice dead-letters list) [SLUICE_ERR_DEAD_LETTER_NOT_FOUND]\n  what to do: List dead letters with GET /admin/dead-letters.\n`,
    )
    child.kill('SIGTERM')
    // Six CLI processes and a gateway: generous on a loaded machine; a hang still fails.
  }, 180_000)

  it('start: serves, keeps isolated-vm out of its own process, drains on SIGTERM and exits 0', async () => {
    const dir = project()
    const child = spawn(process.execPath, [BIN, 'start', '--config', 'gateway.yaml'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(child)
    const lines: Array<Record<string, unknown>> = []
    collectJsonLines(child.stdout, lines)
    const up = await waitFor(() => lines.find((l) => l.msg === 'gateway up'), 30_000, 'gateway up')
    const url = up.url as string
    const res = await fetch(`${url}/api/hello/ada`)
    expect(await res.json()).toMatchObject({ greeting: 'hello ada' })

    // The CLI process never maps the isolated-vm addon; its worker hosts do.
    const maps = readFileSync(`/proc/${child.pid}/maps`, 'utf8')
    expect(maps).not.toMatch(/isolated_vm\.node/)
    const hosts = (await (await fetch(`${url}/admin/hosts`)).json()) as { hosts: Array<{ pid: number }> }
    expect(readFileSync(`/proc/${hosts.hosts[0]!.pid}/maps`, 'utf8')).toMatch(/isolated_vm\.node/)

    const inflight = fetch(`${url}/api/slow`)
    // Let the request reach the function before the signal.
    await new Promise((r) => setTimeout(r, 150))
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    child.kill('SIGTERM')
    const slow = await inflight
    expect(slow.status).toBe(200)
    expect(await exited).toBe(0)
    expect(lines.some((l) => l.msg === 'gateway stopped')).toBe(true)
    expect(existsSync(join(dir, '.sluice/state.db'))).toBe(true)
  })

  it('start: warns that a changed function file, a file it imports or the config needs a reload (without --watch)', async () => {
    const dir = project({
      ...FILES,
      'functions/hello.ts': `import { PREFIX } from './greeting.js'\n${FILES['functions/hello.ts'].replace("'hello ' +", 'PREFIX +')}`,
      'functions/greeting.ts': "export const PREFIX = 'hello '\n",
    })
    const child = spawn(process.execPath, [BIN, 'start', '--config', 'gateway.yaml'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(child)
    const lines: Array<Record<string, unknown>> = []
    collectJsonLines(child.stdout, lines)
    await waitFor(() => lines.find((l) => l.msg === 'gateway up'), 30_000, 'gateway up')
    // Saved the way editors do: a new file renamed over the old one.
    writeFileSync(join(dir, 'functions/.hello.ts.tmp'), `${readFileSync(join(dir, 'functions/hello.ts'), 'utf8')}\n// edited\n`)
    renameSync(join(dir, 'functions/.hello.ts.tmp'), join(dir, 'functions/hello.ts'))
    const fn = await waitFor(() => lines.find((l) => l.level === 'warn' && l.function === 'hello'), 30_000, 'function file warning')
    expect(fn).toMatchObject({
      file: 'functions/hello.ts',
      msg: 'function file functions/hello.ts changed; the gateway keeps running the code it loaded: reload it (send SIGHUP to the gateway, or POST /admin/reload), or run sluice start --watch to reload on every change',
    })
    appendFileSync(join(dir, 'gateway.yaml'), '# edited\n')
    const cfg = await waitFor(() => lines.find((l) => l.level === 'warn' && l.file === 'gateway.yaml'), 30_000, 'config warning')
    expect(cfg.msg).toMatch(
      /^configuration gateway\.yaml changed on disk; the gateway keeps running the configuration it loaded: reload it \(send SIGHUP.*sluice start --watch/,
    )
    appendFileSync(join(dir, 'functions/greeting.ts'), '// edited\n')
    const imported = await waitFor(() => lines.find((l) => l.level === 'warn' && l.file === 'functions/greeting.ts'), 30_000, 'imported file warning')
    expect(imported).toMatchObject({ function: 'hello', msg: expect.stringMatching(/^file functions\/greeting\.ts, bundled into function hello, changed; /) })
    // Untouched files: no warning about them.
    expect(lines.filter((l) => l.level === 'warn' && typeof l.file === 'string').map((l) => l.file)).toEqual([
      'functions/hello.ts',
      'gateway.yaml',
      'functions/greeting.ts',
    ])
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
  })
})
