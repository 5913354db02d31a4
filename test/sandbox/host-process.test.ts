/**
 * Worker-host processes as an operator sees them, on `sluice start` in its own process group:
 * hosts get a minimal environment (no admin key, no secrets), log lines carry one `pid` (the
 * gateway's) and name the host's `hostPid`, and Ctrl-C (SIGINT to the whole process group) is a
 * clean shutdown: exit 0, no error-level line, host exits logged at info.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { HostInfo } from '../../src/sandbox/pool.js'
import type { InvocationResult } from '../../src/sdk/index.js'
import { projectDir, waitFor } from '../helpers/gateway.js'
import { sluiceArgs } from '../helpers/sluice-bin.js'

const ADMIN_KEY = `host-env-admin-key-${process.pid}-abcdef0123`
const SECRET = `host-env-secret-${process.pid}-9876543210`

describe.skipIf(process.platform !== 'linux')('worker-host processes', () => {
  const project = projectDir({
    'package.json': '{ "name": "host-process-test", "private": true }',
    'gateway.yaml': `http: { port: 0, host: 127.0.0.1 }
admin: { key: \${SLUICE_ADMIN_KEY} }
store: { path: state.db }
workers: { hosts: 2, prewarm: 1 }
functions:
  hp-clock:
    code: functions/clock.ts
    trigger: { http: { route: clock, auth: anonymous } }
  hp-slow:
    code: functions/slow.ts
    trigger: { http: { route: slow, auth: anonymous } }
    timeoutMs: 10000
    cpuTimeMs: 10000
`,
    'functions/clock.ts': `export default async () => ({ offset: new Date(Date.UTC(2024, 0, 1)).getTimezoneOffset() })
`,
    // Busy for a while, so that Ctrl-C arrives while it runs (isolates have no timers to wait on).
    'functions/slow.ts': `export default async () => { const end = Date.now() + 1500; while (Date.now() < end) {} return { body: 'finished' } }
`,
  })
  let child: ChildProcess
  let raw = ''
  let url = ''
  const lines = () => raw.split('\n').filter((l) => l.trim())
  const parsed = () => lines().map((l) => JSON.parse(l) as Record<string, unknown>)
  const admin = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
    const res = await fetch(`${url}${path}`, { ...init, headers: { 'x-sluice-key': ADMIN_KEY, 'content-type': 'application/json', ...init.headers } })
    expect(res.status).toBe(200)
    return (await res.json()) as T
  }

  beforeAll(async () => {
    // Its own process group (detached), as a shell runs a foreground job.
    child = spawn(process.execPath, [...sluiceArgs(), 'start', '--config', 'gateway.yaml'], {
      cwd: project.dir,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '', SLUICE_ADMIN_KEY: ADMIN_KEY, SLUICE_TEST_SECRET: SECRET, TZ: 'Europe/Amsterdam' },
    })
    child.stdout?.on('data', (d: Buffer) => (raw += d.toString()))
    let stderr = ''
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
    const up = await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}: ${stderr}`)
        return parsed().find((l) => l.msg === 'gateway up')
      },
      60_000,
      'gateway up',
    )
    url = String(up.url)
  })
  afterAll(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(-(child.pid as number), 'SIGKILL')
    project.cleanup()
  })

  it('forks worker hosts without the gateway environment: no admin key, no secrets; TZ still applies in isolates', async () => {
    const { hosts } = await admin<{ hosts: HostInfo[] }>('/admin/hosts')
    expect(hosts.length).toBe(2)
    for (const h of hosts) {
      expect(h.up).toBe(true)
      const environ = readFileSync(`/proc/${h.pid}/environ`, 'utf8')
      const names = environ
        .split('\0')
        .filter(Boolean)
        .map((kv) => kv.slice(0, kv.indexOf('=')))
      expect(environ).not.toContain(ADMIN_KEY)
      expect(environ).not.toContain(SECRET)
      expect(names).not.toContain('SLUICE_ADMIN_KEY')
      expect(names).not.toContain('SLUICE_TEST_SECRET')
      expect(names).toContain('TZ')
      // NODE_CHANNEL_*: set by child_process.fork for the IPC channel.
      for (const n of names)
        expect(n).toMatch(/^(PATH|HOME|TZ|LANG|LANGUAGE|LC_[A-Z_]+|TMPDIR|TMP|TEMP|NODE_ICU_DATA|NODE_V8_COVERAGE|NODE_OPTIONS|NODE_CHANNEL_[A-Z_]+)$/)
    }
    // The gateway itself still sees its environment (the admin key guards the call above).
    expect(readFileSync(`/proc/${child.pid}/environ`, 'utf8')).toContain(ADMIN_KEY)
    const r = await admin<InvocationResult>('/admin/functions/hp-clock/invoke', { method: 'POST', body: JSON.stringify({ events: [{ body: null }] }) })
    expect(r.value).toEqual({ offset: -60 })
  })

  it('writes one pid per log line (the gateway) and names the worker host hostPid', async () => {
    const { hosts } = await admin<{ hosts: HostInfo[] }>('/admin/hosts')
    expect(lines().length).toBeGreaterThan(2)
    for (const l of lines()) expect(l.match(/"pid":/g)?.length, l).toBe(1)
    for (const l of parsed()) expect(l.pid).toBe(child.pid)
    const up = parsed().filter((l) => l.msg === 'worker host up')
    expect(up.map((l) => l.hostPid).sort()).toEqual(hosts.map((h) => h.pid).sort())
  })

  it('shuts down cleanly on SIGINT to the process group (Ctrl-C): the running call finishes, exit 0, host exits at info, no error line', async () => {
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    const slow = fetch(`${url}/api/slow`).then(async (res) => ({ status: res.status, body: await res.text() }))
    await waitFor(async () => (await admin<{ instances: { busy: number } }>('/admin/functions/hp-slow')).instances.busy === 1, 10_000, 'the slow call to run')
    process.kill(-(child.pid as number), 'SIGINT')
    // The worker host ignored the terminal's signal: the gateway drained the call before stopping it.
    expect(await slow).toEqual({ status: 200, body: 'finished' })
    expect(await exited).toBe(0)
    const all = parsed()
    expect(all.filter((l) => l.level === 'error' || l.level === 'fatal')).toEqual([])
    expect(all.filter((l) => /restarting/.test(String(l.msg)))).toEqual([])
    expect(all.find((l) => l.msg === 'stopping: draining in-flight work')).toMatchObject({ signal: 'SIGINT' })
    expect(all.filter((l) => l.msg === 'worker host exited').map((l) => l.level)).toEqual(['info', 'info'])
  })
})
