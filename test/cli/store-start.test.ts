/**
 * `sluice start` with a PostgreSQL store that cannot be opened: a bad URL, a wrong password (a
 * private cluster with password authentication), a missing database, a refused connection. Each
 * exits non-zero with one line naming the store and the cause with its code, no stack trace, and
 * never the password.
 */
import { spawn } from 'node:child_process'
import { beforeAll, afterAll, describe, expect, it, onTestFinished } from 'vitest'
import { projectDir } from '../helpers/gateway.js'
import { startPgCluster, type PgCluster } from '../store/pg-cluster.js'
import { sluiceArgs } from '../helpers/sluice-bin.js'

const PASSWORD = 'Right-s3cret-pw'
const WRONG = 'Wrong-s3cret-pw'

/** Runs `sluice start` from the sources with this store URL; resolves when it exits (`untilUp`: SIGTERM once up). */
async function start(url: string, opts: { untilUp?: boolean } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = projectDir({
    'gateway.yaml': `http: { port: 0, host: 127.0.0.1 }
workers: { hosts: 1, prewarm: 0 }
store: { kind: postgres, url: "${url}" }
functions:
  hello:
    code: functions/hello.js
    trigger: { http: { route: hello, auth: anonymous } }
`,
    'functions/hello.js': 'export default async () => ({ ok: true })\n',
  })
  onTestFinished(() => p.cleanup())
  const child = spawn(process.execPath, [...sluiceArgs(), 'start', '--config', 'gateway.yaml'], {
    cwd: p.dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  })
  onTestFinished(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  let stdout = ''
  let stderr = ''
  let termSent = false
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString()
    // Up: stop it the way an operator does (SIGTERM drains and exits 0), once it answers HTTP:
    // "gateway up" is logged a moment before `sluice start` installs its signal handlers.
    const up = /\{[^\n]*"msg":"gateway up"[^\n]*\}/.exec(stdout)
    if (opts.untilUp && !termSent && up) {
      termSent = true
      const url = (JSON.parse(up[0]) as { url: string }).url
      void fetch(`${url}/admin/health`).finally(() => child.kill('SIGTERM'))
    }
  })
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)))
  return { code, stdout, stderr }
}

function expectClearFailure(r: { code: number | null; stdout: string; stderr: string }, code: string, secrets: string[]): string {
  expect(r.code, r.stderr).toBe(1)
  const lines = r.stderr.trimEnd().split('\n')
  const first = lines[0] ?? ''
  expect(first).toMatch(/^sluice: /)
  expect(first, r.stderr).toContain(`[${code}]`)
  // A cause line and what to do, nothing else: no stack trace.
  expect(lines.length, r.stderr).toBeLessThanOrEqual(2)
  expect(r.stderr).not.toMatch(/^\s+at /m)
  expect(r.stdout).not.toContain('gateway up')
  for (const s of secrets) expect(r.stdout + r.stderr).not.toContain(s)
  return first
}

describe('sluice start with a PostgreSQL store that cannot be opened', () => {
  let pg: PgCluster
  beforeAll(async () => {
    pg = await startPgCluster({ password: PASSWORD })
  }, 120_000)
  afterAll(() => pg?.close())

  it('wrong password: names the store (password hidden) and the refusal', async () => {
    const r = await start(`postgres://postgres:${WRONG}@127.0.0.1:${pg.port}/postgres`)
    const line = expectClearFailure(r, 'SLUICE_ERR_STORE_AUTH', [WRONG, PASSWORD])
    expect(line).toContain(`PostgreSQL store postgres://postgres:***@127.0.0.1:${pg.port}/postgres`)
    expect(line).toMatch(/password authentication failed/)
  }, 120_000)

  it('missing database: names the database', async () => {
    const r = await start(`postgres://postgres:${PASSWORD}@127.0.0.1:${pg.port}/no_such_db`)
    const line = expectClearFailure(r, 'SLUICE_ERR_STORE_DATABASE_MISSING', [PASSWORD])
    expect(line).toContain('no_such_db')
  }, 120_000)

  it('the right password: the gateway comes up, migrates the schema and stops cleanly', async () => {
    const r = await start(`postgres://postgres:${PASSWORD}@127.0.0.1:${pg.port}/postgres`, { untilUp: true })
    expect(r.stderr).toBe('')
    expect(r.stdout.split('\n').filter((l) => /"level":"(error|warn)"/.test(l))).toEqual([])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('"msg":"store schema migrated"')
    expect(r.stdout).toContain('"msg":"gateway up"')
    expect(r.stdout + r.stderr).not.toContain(PASSWORD)
  }, 120_000)

  it('bad URL and refused connection: the cause, without the password', async () => {
    const bad = await start('postgres://postgres:Bad-url-s3cret@127.0.0.1:notaport/db')
    expectClearFailure(bad, 'SLUICE_ERR_STORE_URL', ['Bad-url-s3cret'])
    const refused = await start('postgres://postgres:Refused-s3cret@127.0.0.1:1/db')
    const line = expectClearFailure(refused, 'SLUICE_ERR_STORE_UNREACHABLE', ['Refused-s3cret'])
    expect(line).toContain('connection refused')
  }, 120_000)
})
